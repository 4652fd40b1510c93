"""Training presets: the seed's three runs and the ones used for the shipped weights."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    imgsz: int
    epochs: int
    batch: int = 16
    time_hours: float | None = None  # Ultralytics `time=`: a wall-clock budget that overrides epochs
    description: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("seed-1024-50", 1024, 50, batch=8, description="seed run 1: imgsz 1024, 50 epochs, default augmentation"),
        Preset("seed-1024-200", 1024, 200, batch=8, description="seed run 2: imgsz 1024, 200 epochs, default augmentation"),
        Preset("seed-640-50", 640, 50, batch=16, description="seed run 3 (the seed's best): imgsz 640, 50 epochs, default augmentation"),
        Preset("shared-cpu", 320, 30, batch=16, description="shared CCP data on a 2-core CPU: imgsz 320"),
        Preset("shared-gpu", 640, 300, batch=64, time_hours=0.15, description="shared CCP data on one GPU: imgsz 640, a 9-minute budget"),
        Preset("smoke", 64, 1, batch=2, description="one tiny epoch to check the pipeline"),
    ]
}
