"""Colour names for garments: shared by the worker (naming) and the API (filtering)."""

# A small wardrobe palette: names people use for clothes, with a typical sRGB value each.
PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 22), "charcoal": (60, 62, 66), "grey": (128, 128, 128), "light grey": (190, 190, 192),
    "white": (245, 245, 242), "cream": (240, 230, 205), "beige": (215, 195, 160), "khaki": (170, 155, 110),
    "camel": (190, 145, 90), "brown": (110, 70, 40), "burgundy": (110, 25, 40), "red": (200, 30, 35),
    "pink": (235, 150, 175), "coral": (245, 120, 95), "orange": (240, 130, 30), "mustard": (205, 160, 40),
    "yellow": (245, 215, 50), "olive": (110, 110, 45), "green": (50, 140, 60), "mint": (160, 220, 190),
    "teal": (30, 120, 125), "turquoise": (60, 200, 200), "light blue": (150, 190, 230), "blue": (40, 90, 190),
    "denim": (80, 105, 140), "navy": (25, 35, 75), "purple": (105, 50, 140), "lavender": (185, 165, 215),
}
COLOR_NAMES = tuple(PALETTE)
