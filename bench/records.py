"""The committed benchmark records (docs/benchmarks/*.json): what kind each is, and where it comes from
(command, date, machine, model version). The docs site renders the newest of each kind (bench/report.py)."""
from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

# kind: (file name prefix, the command that makes such a record, what it measures)
KINDS = {
    "pipeline": ("make bench", "inference and the pipeline: PyTorch against the worker's backend, mask accuracy"),
    "quality": ("make quality", "the catalogue a user sees: the val photos through the real API and worker"),
    "api": ("make bench-api", "the API's latency at 200 requests/s and the upload's memory"),
    "chaos": ("make chaos", "faults during real jobs, counted against a fault-free run"),
    "scale": ("make bench-scale", "the control plane's ceiling with an instant stand-in model"),
    # before "lean", whose records' names it begins with
    "lean-layouts": ("python -m bench.lean --layouts", "the worker's layouts: real workers against the bare model"),
    "lean": ("python -m bench.lean", "the lean CPU worker against the Ultralytics path"),
    "soak": ("make soak", "a long run under load, one fault every few minutes"),
    "slowclients": ("python -m bench.slowclients", "the API beside half-open and slow clients"),
}
# kinds measured with no model, or a stand-in for it: the model version does not apply
NO_MODEL = {"api": "no model in the path", "chaos": "a stand-in segmenter", "scale": "an instant stand-in",
            "soak": "a stand-in segmenter", "slowclients": "no model in the path"}


@dataclass
class Record:
    path: Path
    kind: str
    data: dict

    @property
    def recorded(self) -> dict:
        return self.data.get("recorded") or {}

    @property
    def date(self) -> str:
        """The record's own date; else the date in its file name; else when it was committed."""
        if self.recorded.get("date") or self.data.get("date"):
            return self.recorded.get("date") or self.data["date"]
        m = re.search(r"\d{4}-\d\d-\d\d", self.path.name)
        when = committed(self.path)
        return m.group(0) if m else f"{when} (committed; the record has no date)" if when else "not recorded"

    @property
    def sort_key(self) -> tuple[str, str]:
        """(the day it was measured, a finer time): records of one day without a time of their own are
        ordered by when they were committed."""
        own = self.recorded.get("date") or self.data.get("date")
        if own:
            return own[:10], own
        return self.date[:10], committed(self.path) or ""

    @property
    def machine(self) -> str:
        m = self.recorded.get("machine") or self.data.get("machine")
        if not m:
            return "not recorded"
        flags = m.get("flags") or [f for f in ("avx512_bf16", "amx_bf16") if m.get(f)] or ["no avx512_bf16"]
        gpu = f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU"
        return f"{m.get('cpu')}, {m.get('cores')} cores ({', '.join(flags)}){gpu}"

    @property
    def model_version(self) -> str | None:
        return self.data.get("model_version")

    @property
    def model(self) -> str:
        if self.kind in NO_MODEL:
            return "none (" + NO_MODEL[self.kind] + ")"
        return f"`{self.model_version}`" if self.model_version else "not recorded"

    @property
    def command(self) -> str:
        if self.recorded.get("command"):
            return f"`{self.recorded['command']}`"
        make = KINDS[self.kind][0]
        if self.kind == "pipeline":
            if "pipeline_workers" not in self.data:
                return "`python -m bench.pipeline --large 0 --no-workers` (no worker rows in the record)"
            return "`make bench-640`" if self.data.get("imgsz") == 640 else f"`{make}`"
        settings = " ".join(f"{k}={v}" for k, v in sorted((self.data.get("settings") or {}).items()))
        return f"`{settings + ' ' if settings else ''}{make}`" + ("" if settings or self.kind != "quality" else
                                                                    " (settings not recorded)")


def committed(path: Path) -> str | None:
    """When git last committed the file (None outside a checkout, or for a file not committed)."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%cI", "--", path.name], cwd=path.parent,
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def kind_of(path: Path) -> str | None:
    name = path.stem
    return next((k for k in KINDS if name == k or name.startswith(k + "-")), None)


def load(folder: Path) -> list[Record]:
    out = []
    for path in sorted(folder.glob("*.json")):
        kind = kind_of(path)
        if kind:
            out.append(Record(path, kind, json.loads(path.read_text())))
    return out


def _same(value: str, default: str) -> bool:
    try:
        return float(value) == float(default)
    except ValueError:
        return value.strip().lower() == default.strip().lower()


def changed_settings(rec: Record) -> dict[str, str]:
    """The settings a record was measured with that differ from the code's defaults: an experiment's."""
    from core.config import describe

    defaults = {name: default for name, default, _type in describe()}
    return {k: v for k, v in (rec.data.get("settings") or {}).items() if k in defaults and not _same(v, defaults[k])}


def newest(records: list[Record], kind: str, **match) -> Record | None:
    """The newest record of a kind whose fields equal `match` (e.g. imgsz=384), preferring one measured
    at the default settings (what is served) over an experiment's."""
    fit = [r for r in records if r.kind == kind and all(r.data.get(k) == v for k, v in match.items())]
    served = [r for r in fit if not changed_settings(r)]
    return max(served or fit, key=lambda r: r.sort_key, default=None)
