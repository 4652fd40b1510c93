"""Every first-party import in bench/ resolves, including the ones inside functions.

The benchmarks import lazily (each phase pulls in what it needs), so a module moved elsewhere breaks
`make soak` or `make chaos` only minutes into a run; nothing in the suite runs them whole.
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"api", "bench", "cli", "core", "db", "segmentation", "services", "training", "worker"}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                yield node.lineno, node.module, alias.name


@pytest.mark.parametrize("path", sorted((ROOT / "bench").glob("*.py")), ids=lambda p: p.name)
def test_every_first_party_import_in_bench_resolves(path):
    missing = []
    for line, module, name in _imports(path):
        if module.split(".")[0] not in FIRST_PARTY:
            continue
        if importlib.util.find_spec(module) is None:
            missing.append(f"{path.name}:{line}: no module {module}")
        elif name is not None and not hasattr(importlib.import_module(module), name):
            # a submodule is an attribute only once imported: `from pkg import mod` finds it as one
            if not hasattr(importlib.import_module(module), "__path__") or \
                    importlib.util.find_spec(f"{module}.{name}") is None:
                missing.append(f"{path.name}:{line}: {module} has no {name}")
    assert not missing, "\n".join(missing)
