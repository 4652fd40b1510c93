"""Make Ultralytics run offline and use the cores it is given.

Shared by training and the worker: called before the first `import ultralytics`
work so no font, weight or package is fetched at run time (`ultralytics_offline`).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def ultralytics_offline() -> None:
    """No network and no installs from Ultralytics, in this process and the ones it starts.

    Ultralytics 8.4 reads YOLO_AUTOINSTALL (pip- or uv-installs a missing requirement at run time,
    e.g. `pi-heif` the first time PIL cannot identify a file) and YOLO_OFFLINE (its `ONLINE` check,
    which gates installs, update checks and usage events) once, when `ultralytics.utils` is first
    imported: so both are set here, before that. Where it was imported already, its module
    constants are turned off too. Cheap: imports nothing."""
    import sys

    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    for name, attrs in (("ultralytics.utils", ("AUTOINSTALL", "ONLINE")), ("ultralytics.utils.checks", ("AUTOINSTALL", "ONLINE")),
                        ("ultralytics.utils.events", ("ONLINE",))):
        mod = sys.modules.get(name)
        for attr in attrs:
            if mod is not None and hasattr(mod, attr):
                setattr(mod, attr, False)
    events = getattr(sys.modules.get("ultralytics.utils.events"), "events", None)
    if events is not None and hasattr(events, "enabled"):
        events.enabled = False  # decided when the module was imported


def prepare_ultralytics(threads: int | None = None, config_dir: str | os.PathLike | None = None) -> None:
    ultralytics_offline()
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
