"""Make Ultralytics run offline and use the cores it is given.

Shared by training and the worker: called before the first `import ultralytics`
work so no font, weight or package is fetched at run time.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def prepare_ultralytics(threads: int | None = None, config_dir: str | os.PathLike | None = None) -> None:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    cfg = Path(config_dir or os.environ.get("YOLO_CONFIG_DIR") or Path.home() / ".cache" / "wardrobe" / "ultralytics")
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    font = cfg / "Ultralytics" / "Arial.ttf"
    if not font.exists():
        # Ultralytics downloads Arial.ttf for plots and labels; matplotlib ships a TTF.
        try:
            import matplotlib

            src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
            font.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, font)
        except Exception:  # noqa: BLE001 - plots are optional; inference does not need the font
            pass
    if threads:
        import torch

        torch.set_num_threads(threads)
        import ultralytics.utils.torch_utils as tu

        # Ultralytics resets torch to NUM_THREADS (cores - 1) when it selects a CPU device.
        tu.NUM_THREADS = threads
