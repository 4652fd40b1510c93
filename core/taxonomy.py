"""The catalogue's 23 garment classes: the model's class ids, in this order, forever.

Names are Fashionpedia's category names, so annotation files map onto the
taxonomy by name alone.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GarmentClass:
    id: int
    name: str
    supercategory: str


CLASSES: tuple[GarmentClass, ...] = tuple(
    GarmentClass(i, name, sup)
    for i, (name, sup) in enumerate(
        [
            ("shoe", "legs and feet"),
            ("dress", "wholebody"),
            ("top, t-shirt, sweatshirt", "upperbody"),
            ("pants", "lowerbody"),
            ("jacket", "upperbody"),
            ("bag, wallet", "others"),
            ("belt", "waist"),
            ("shirt, blouse", "upperbody"),
            ("skirt", "lowerbody"),
            ("glasses", "head"),
            ("tights, stockings", "legs and feet"),
            ("headband, head covering, hair accessory", "head"),
            ("watch", "arms and hands"),
            ("coat", "wholebody"),
            ("shorts", "lowerbody"),
            ("hat", "head"),
            ("sweater", "upperbody"),
            ("scarf", "others"),
            ("cardigan", "upperbody"),
            ("jumpsuit", "wholebody"),
            ("vest", "upperbody"),
            ("cape", "wholebody"),
            ("leg warmer", "legs and feet"),
        ]
    )
)

NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
BY_NAME: dict[str, GarmentClass] = {c.name: c for c in CLASSES}
SUPERCATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(c.supercategory for c in CLASSES))
# every way a user may name a class: its full name or any one of its comma-separated names,
# in any case ("bag", "Wallet" and "bag, wallet" are all class 5); no two classes share a name
ALIASES: dict[str, GarmentClass] = {
    **{part.strip().lower(): c for c in CLASSES for part in c.name.split(",")},
    **{c.name.lower(): c for c in CLASSES},
}


def find_class(name: str) -> GarmentClass | None:
    """The class a user means by `name` (see ALIASES), or None."""
    if not isinstance(name, str):
        return None
    parts = [" ".join(part.split()) for part in name.lower().split(",")]
    return ALIASES.get(", ".join(parts))


def by_id(class_id: int) -> GarmentClass:
    if not 0 <= class_id < len(CLASSES):
        raise ValueError(f"class id {class_id} is outside the 23-class taxonomy")
    return CLASSES[class_id]
