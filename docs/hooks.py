"""MkDocs hooks: the pages made at build time from what the repository holds, never copied by hand.

- api/reference.md: the OpenAPI document the API serves at /v1/openapi.json (docs/openapi_md.py renders it);
- benchmarks.md: the newest committed record of each kind in docs/benchmarks/ (bench/report.py renders them);
- model/card.md: models/README.md, which `wardrobe ship` writes beside the weights;
- sessions/*.md: the recorded sessions, docs/sessions/*.txt, one page each, and their index.
"""
from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the hooks import the project's own modules (bench.report, api.openapi)
    sys.path.insert(0, str(ROOT))
SESSIONS = ROOT / "docs" / "sessions"


def _session_pages() -> list[tuple[str, Path]]:
    """(title, recording) for each recorded session, by file name."""
    return [(p.stem.replace("-", " ").capitalize(), p) for p in sorted(SESSIONS.glob("*.txt"))]


def on_config(config):
    """The sessions' pages go into the nav under 'Recorded sessions', one per recording."""
    for i, entry in enumerate(config["nav"]):
        if isinstance(entry, dict) and "Recorded sessions" in entry:
            config["nav"][i] = {"Recorded sessions": [{"Overview": "sessions/index.md"}] + [
                {title: f"sessions/{path.stem}.md"} for title, path in _session_pages()]}
    return config


def _sessions_index() -> str:
    lines = ["# Recorded sessions", "",
             "Real terminal sessions against a running API, recorded by the scripts named in each and kept "
             "as they were printed. The topic pages quote them in part; here they are whole.", ""]
    for title, path in _session_pages():
        first = path.read_text().splitlines()[0] if path.stat().st_size else ""
        lines.append(f"- [{title}]({path.stem}.md): `docs/sessions/{path.name}`, starting `{first[:90]}`")
    return "\n".join(lines) + "\n"


def _session(title: str, path: Path) -> str:
    return (f"# {title}\n\nThe recording `docs/sessions/{path.name}`, whole, as the script that made it printed it."
            f"\n\n```text\n{path.read_text().rstrip()}\n```\n")


def _model_card() -> str:
    text = (ROOT / "models" / "README.md").read_text()
    return ("!!! note \"Generated\"\n    This page is `models/README.md`, which `wardrobe ship` writes beside the "
            "shipped weights, rendered at build time.\n\n" + text)


def on_files(files, config):
    from bench.report import benchmarks_page
    from docs.openapi_md import load_spec, render

    generated = {
        "api/reference.md": render(load_spec(ROOT)),
        "benchmarks.md": benchmarks_page(ROOT),
        "model/card.md": _model_card(),
        "sessions/index.md": _sessions_index(),
    }
    for title, path in _session_pages():
        generated[f"sessions/{path.stem}.md"] = _session(title, path)
    for uri, content in generated.items():
        files.append(File.generated(config, uri, content=content))
    return files
