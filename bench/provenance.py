"""Where a benchmark record comes from: the command that made it, when, on what machine, at which commit.
Every benchmark stamps its JSON with this (`recorded`), so the docs site can say it beside each figure."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def cpu() -> dict:
    """The CPU's model name, cores and the flags that decide the CPU backend's speed."""
    from core.cpu import cpu_flags, cpu_model

    flags = cpu_flags()
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "flags": [f for f in FLAGS if f in flags]}


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def stamp(report: dict, module: str, argv: list[str] | None = None) -> dict:
    """Add `recorded`: {command, date, machine, commit} to a benchmark's report (in place; returned)."""
    args = sys.argv[1:] if argv is None else argv
    settings = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("WARDROBE_") and k != "WARDROBE_TOKEN")
    report["recorded"] = {
        "command": " ".join([*settings, "python -m", module, *args]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": cpu(),
        "commit": _commit(),
    }
    return report
