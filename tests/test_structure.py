"""Pins on the project's shape: registered tasks, import direction, compose file, settings docs."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from core.config import Settings, describe

ROOT = Path(__file__).resolve().parents[1]


def test_registered_celery_tasks_are_pinned():
    from worker.celery_app import app, configure
    from worker.taskbase import WardrobeTask

    ours = {name for name in app.tasks if not name.startswith("celery.")}
    assert ours == {"wardrobe.ingest", "wardrobe.segment", "wardrobe.reap_stale_jobs", "wardrobe.collect_garbage",
                    "wardrobe.export", "wardrobe.deliver_webhook", "wardrobe.sweep_webhooks"}
    # one task base; the three that do work retried by Celery (backoff with jitter) and closed by on_failure
    assert all(isinstance(app.tasks[name], WardrobeTask) for name in ours)
    for name, ids in (("wardrobe.ingest", ("job_id",)), ("wardrobe.segment", ("job_id", "photo_ids")),
                      ("wardrobe.export", ("export_id",))):
        t = app.tasks[name]
        assert t.autoretry_for == (Exception,) and t.retry_jitter and t.retry_backoff and t.retry_backoff_max == 60
        assert t.ids == ids and t.give_up is not None
    assert not any(getattr(app.tasks[n], "autoretry_for", ()) for n in ours - {"wardrobe.ingest", "wardrobe.segment", "wardrobe.export"})
    configure()  # as a worker process starts: nothing is read from the environment at import
    # the --beat worker runs both sweeps: lost work re-sent, unreferenced objects and stale temp files removed
    beat = app.conf.beat_schedule
    assert set(beat) == {"reap-stale-jobs", "collect-garbage", "sweep-webhooks"}
    assert beat["sweep-webhooks"]["task"] == "wardrobe.sweep_webhooks"  # due webhook retries and lost messages
    assert beat["reap-stale-jobs"]["task"] == "wardrobe.reap_stale_jobs"
    assert beat["collect-garbage"]["task"] == "wardrobe.collect_garbage"
    assert beat["collect-garbage"]["schedule"] == float(Settings.from_env().gc_interval) > 0
    # a sweep still queued when the next is sent is dropped: sweeps never pile up in the pool slots
    assert all(e["options"]["expires"] == e["schedule"] > 0 for e in beat.values())
    for name in ("wardrobe.ingest", "wardrobe.segment", "wardrobe.export"):
        t = app.tasks[name]
        assert t.acks_late and t.reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_transport_options["visibility_timeout"] > app.conf.task_time_limit
    assert app.conf.task_routes["wardrobe.segment"]["queue"] == "segment"
    assert app.conf.task_routes["wardrobe.ingest"]["queue"] == "ingest"
    assert app.conf.task_routes["wardrobe.export"]["queue"] == "export"
    assert app.conf.task_routes["wardrobe.deliver_webhook"]["queue"] == "webhooks"
    assert app.conf.task_routes["wardrobe.sweep_webhooks"]["queue"] == "webhooks"


def _imports(pkg: str) -> set[str]:
    found = set()
    for path in (ROOT / pkg).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_import_direction():
    # api -> services -> db -> core; worker -> services, segmentation -> core; training -> segmentation;
    # nothing imports api
    ours = {"api", "worker", "segmentation", "training", "cli", "db", "services", "core", "bench", "tests"}
    for pkg in ("core", "db", "services", "worker", "segmentation", "training", "cli"):
        assert "api" not in _imports(pkg), pkg
    assert not {"worker", "segmentation", "training", "cli"} & _imports("api")
    assert not (ours - {"core"}) & _imports("core")  # what every process shares imports nothing of ours
    assert not (ours - {"db", "core"}) & _imports("db")  # the catalogue: core only
    assert not (ours - {"services", "db", "core"}) & _imports("services")  # start-up, and acting on what db did
    # the model at serving time is its own room: the worker and training use it, it uses neither
    assert not (ours - {"core", "segmentation"}) & _imports("segmentation")  # core only
    assert "training" not in _imports("worker")  # serving does not depend on training
    assert "worker" not in _imports("training")
    for pkg in ("api", "worker", "segmentation", "training", "cli", "db", "core", "bench"):
        assert "tests" not in _imports(pkg), pkg  # the test doubles and helpers ship with no product and no benchmark


def test_db_persists_and_ids_are_parsed_once():
    """No Session-wide listeners (side effects for every session in the process): transitions record
    events, and the service layer acts on them once their transaction committed. Ids become UUIDs at
    the task boundary (worker.taskbase) or the route (api.deps.parse_uuid), not again in every body."""
    for pkg in ("api", "worker", "segmentation", "training", "cli", "db", "services", "core"):
        for path in (ROOT / pkg).rglob("*.py"):
            text = path.read_text()
            assert not re.search(r"listens_for\(\s*Session", text), path
            assert "uuid.UUID(str(" not in text, path


def test_the_worker_queries_through_db():
    """worker -> db: the task bodies call db/ functions; no query is built in worker/ (sqlalchemy's
    exceptions may be caught there)."""
    for path in sorted((ROOT / "worker").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not [m for m in modules if m.split(".")[0] == "sqlalchemy" and m != "sqlalchemy.exc"], (path, modules)


STORAGE_CALLS = {"delete", "delete_many", "delete_prefix", "put_bytes", "put_file", "get_bytes", "download_to", "list",
                 "abort_multipart", "drop_partial", "stale_partials", "append", "complete_multipart", "exists"}


def test_db_touches_no_storage():
    """db/ says what to delete (events, or the keys it returns); the service layer deletes them after the
    commit (services.dispatch, services.objects, services.sweeper). No storage, boto or runtime in db/."""
    for path in sorted((ROOT / "db").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not [m for m in modules if m.split(".")[0] in ("boto3", "botocore")
                            or m in ("core.storage", "core.s3", "core.localstore")], (path, modules)
                names = {a.name for a in node.names}
                assert not names & {"Storage", "open_storage", "S3Storage", "LocalStorage", "Runtime"}, (path, names)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in STORAGE_CALLS:
                owner = node.func.value
                name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
                assert name != "storage", f"{path.relative_to(ROOT)}:{node.lineno}: storage.{node.func.attr}"


def test_test_doubles_live_in_tests_and_a_worker_loads_one_by_name(monkeypatch):
    import dataclasses

    import pytest

    import segmentation.serving as segmenter
    from core.config import SettingError
    from tests.fakes import FAKE_SEGMENTER, FakeSegmenter

    for pkg in ("api", "worker", "segmentation", "training", "cli", "db", "services", "core", "bench"):
        for path in (ROOT / pkg).rglob("*.py"):
            assert not re.search(r"^\s*class Fake", path.read_text(), re.M), path
    assert "fake" not in {f.name.split("_")[0] for f in dataclasses.fields(Settings)}
    monkeypatch.setattr(segmenter, "_segmenter", None)
    monkeypatch.setenv("WARDROBE_FAKE_DELAY_MS", "7")
    loaded = segmenter.get_segmenter(Settings(segmenter=FAKE_SEGMENTER))
    assert type(loaded) is FakeSegmenter and loaded.delay == 0.007
    assert segmenter.get_segmenter(Settings(segmenter="yolo")) is loaded  # once per process
    for bad in ("fake", "tests.fakes:NoSuchClass", "no_such_module:Fake", ":FakeSegmenter"):
        monkeypatch.setattr(segmenter, "_segmenter", None)
        with pytest.raises(SettingError):
            segmenter.get_segmenter(Settings(segmenter=bad))


def test_every_package_is_installed_and_copied_into_the_image():
    packages = sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in ("tests", "bench"))
    include = (ROOT / "pyproject.toml").read_text()
    copied = re.findall(r"^COPY (\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    for name in packages:
        assert f'"{name}*"' in include, name
        assert name in copied, name


def test_api_process_never_imports_torch(tmp_path):
    code = (
        "import os, sys; os.environ['WARDROBE_DATA_DIR']=sys.argv[1]\n"
        "from api.app import create_app; app = create_app(); c = app.test_client()\n"
        "assert c.get('/healthz').status_code == 200\n"
        "bad = [m for m in ('torch', 'ultralytics', 'cv2', 'worker') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_compose_agrees_with_the_code():
    from tests.test_compose import load_compose

    services = load_compose()["services"]  # as compose sees it with .env.example as the .env
    known = {name for name, _default, _type in describe()}
    cli_commands = {c for f in (ROOT / "cli").glob("*.py") for c in re.findall(r'add_parser\("([\w-]+)"', f.read_text())}
    for name in ("postgres", "redis", "minio", "minio-bucket", "migrate", "api", "worker-ingest", "worker-segment",
                 "worker-segment-gpu", "worker-export", "worker-webhooks"):
        assert name in services, name
    for name, svc in services.items():
        env = svc.get("environment") or {}
        if isinstance(env, dict):
            for var in env:
                if var.startswith("WARDROBE_"):
                    assert var in known, f"{name}: {var} is not a setting"
        cmd = svc.get("command")
        if cmd and cmd[0] == "wardrobe":
            assert cmd[1] in cli_commands, f"{name}: wardrobe {cmd[1]}"
    # the API listens where its proxy sends requests; only the proxy is published, on this machine only
    api_cmd = services["api"]["command"]
    assert api_cmd[api_cmd.index("--port") + 1] == "8000" and services["api"]["expose"] == ["8000"]
    assert "ports" not in services["api"] and services["proxy"]["environment"]["API_UPSTREAM"] == "api:8000"
    assert services["proxy"]["ports"] == ["127.0.0.1:8000:8080"]
    env = services["api"]["environment"]
    assert "@postgres:5432/" in env["WARDROBE_DATABASE_URL"]
    assert env["WARDROBE_BROKER_URL"].startswith("redis://redis:6379")
    assert env["WARDROBE_S3_ENDPOINT_URL"] == "http://minio:9000"
    bucket = env["WARDROBE_STORAGE_URL"].removeprefix("s3://")
    mc = services["minio-bucket"]
    assert 'local/$S3_BUCKET' in " ".join(mc["entrypoint"]) and mc["environment"]["S3_BUCKET"] == bucket
    assert services["minio"]["environment"]["MINIO_ROOT_USER"] == env["AWS_ACCESS_KEY_ID"]
    assert services["minio"]["environment"]["MINIO_ROOT_PASSWORD"] == env["AWS_SECRET_ACCESS_KEY"]
    for name in ("worker-segment", "worker-segment-gpu"):
        seg = services[name]
        assert seg["command"][seg["command"].index("--queues") + 1] == "segment"
    gpu = services["worker-segment-gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    ing = services["worker-ingest"]
    assert ing["command"][ing["command"].index("--queues") + 1] == "ingest"
    exp = services["worker-export"]
    assert exp["command"][exp["command"].index("--queues") + 1] == "export"
    hooks = services["worker-webhooks"]
    assert hooks["command"][hooks["command"].index("--queues") + 1] == "webhooks"


def test_readme_documents_every_setting():
    """In the README, or in the documentation beside it (docs/: the notes are folded into the docs site)."""
    readme = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))])
    for name, _default, _type in describe():
        assert f"`{name}`" in readme, name


def test_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("WARDROBE_MAX_ENTRIES", "7")
    monkeypatch.setenv("WARDROBE_CONF", "0.4")
    monkeypatch.setenv("WARDROBE_PRELOAD_MODEL", "false")
    s = Settings.from_env()
    assert (s.max_entries, s.conf, s.preload_model) == (7, 0.4, False)


def test_no_import_cycles():
    """Between our modules, counting imports inside functions too: each room can be read bottom up."""
    packages = ("api", "worker", "segmentation", "core", "db", "services", "training", "cli")
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for pkg in packages for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            deps |= {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
            deps -= {n for n in deps if modules[n].name == "__init__.py"}  # a package's (empty) __init__
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_log_lines_carry_their_fields(caplog):
    import logging

    from core import logs

    handler = logging.StreamHandler(__import__("io").StringIO())
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logger = logging.getLogger("wardrobe.test-fields")
    logger.addHandler(handler)
    try:
        logs.attach(logger)
        logs.attach(logger)  # once is enough
        logger.warning("ingest of job %s: %s", "j-1", "gone", extra=logs.fields(job_id="j-1", task="ingest", photo_id=None))
        logger.warning("no fields here")
    finally:
        logger.removeHandler(handler)
    assert handler.stream.getvalue().splitlines() == [
        "wardrobe.test-fields: ingest of job j-1: gone job_id=j-1 task=ingest", "wardrobe.test-fields: no fields here"]
    import pytest

    with pytest.raises(ValueError):
        logs.fields(jobid="typo")


def test_the_openapi_document_s_enums_are_the_code_s():
    """api/openapi.yaml is a file now: a class, colour, status or webhook event added in the code and not
    in the document shows here."""
    from api.openapi import SPEC
    from core.palette import COLOR_NAMES
    from core.taxonomy import NAMES, SUPERCATEGORIES
    from db.models import ExportStatus, JobStatus
    from db.webhooks import EVENTS

    enums: list[list] = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("enum"), list):
                enums.append(node["enum"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(SPEC)
    for code in (list(NAMES), list(SUPERCATEGORIES), list(COLOR_NAMES), list(EVENTS)):
        overlapping = [e for e in enums if set(e) & set(code)]
        assert overlapping and all(e == code for e in overlapping), code
    schemas = SPEC["components"]["schemas"]
    assert schemas["Job"]["properties"]["status"]["enum"] == [s.value for s in JobStatus]
    assert schemas["Export"]["properties"]["status"]["enum"] == [s.value for s in ExportStatus]


def test_production_files_and_functions_stay_small():
    """No file over 350 lines and no function over 60 in the product (tests, bench and migrations aside):
    a long one is split by what its parts do."""
    long_files, long_functions = [], []
    for pkg in ("api", "worker", "segmentation", "training", "cli", "db", "services", "core"):
        for path in (ROOT / pkg).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            text = path.read_text()
            if len(text.splitlines()) > 350:
                long_files.append(str(path.relative_to(ROOT)))
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert not long_files and not long_functions, (long_files, long_functions)
