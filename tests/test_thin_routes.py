"""Pins on the API's routes (issue 38, "routes without SQL"): the API asks db/ for rows and services/ for
what changes them; it builds no SQL and runs none itself, and its modules borrow nothing private from
each other. Each check reads the source (ast), so it names the file and line that broke it."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What an API module may take from SQLAlchemy: exceptions to answer (IntegrityError, DBAPIError) and the
# Session class to annotate the request's session with. Everything else (select, update, delete, text,
# func, and_, ...) builds SQL, which is db/'s.
ALLOWED_SQLALCHEMY = {("sqlalchemy.exc", "*"), ("sqlalchemy.orm", "Session")}
# Session methods that run SQL, whoever calls them; the API's own objects have no such methods
RUNS_SQL = {"execute", "scalar", "scalars", "query"}
# Session methods that read or write a row when handed a table's class (s.get(Job, id), s.delete(...))
ROW_METHODS = {"get", "add", "add_all", "delete", "merge"}


def _modules(pkg: str) -> dict[str, ast.Module]:
    return {str(p.relative_to(ROOT)): ast.parse(p.read_text()) for p in sorted((ROOT / pkg).rglob("*.py"))}


def sql_in(path: str, tree: ast.Module) -> list[str]:
    """Where an API module builds or runs SQL: a SQLAlchemy import beyond ALLOWED_SQLALCHEMY, a call of a
    method in RUNS_SQL, or a session method in ROW_METHODS given a table class from db.models."""
    found, models = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "db.models":
                models |= {a.asname or a.name for a in node.names}
            if node.module.split(".")[0] == "sqlalchemy":
                found += [f"{path}:{node.lineno}: from {node.module} import {a.name}" for a in node.names
                          if (node.module, "*") not in ALLOWED_SQLALCHEMY and (node.module, a.name) not in ALLOWED_SQLALCHEMY]
        elif isinstance(node, ast.Import):
            found += [f"{path}:{node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] == "sqlalchemy"]
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        method, first = node.func.attr, node.args[0] if node.args else None
        if isinstance(first, ast.Call):  # s.add(Job(...))
            first = first.func
        if method in RUNS_SQL or (method in ROW_METHODS and isinstance(first, ast.Name) and first.id in models):
            found.append(f"{path}:{node.lineno}: .{method}(...)")
    return found


def private_borrowing(path: str, tree: ast.Module) -> list[str]:
    """Where an API module takes a private name (`_name`) of another API module: imported from it, or
    read off it as an attribute (`from api import uploads` ... `uploads._accepted`)."""
    found, api_modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "api":
            for a in node.names:
                if a.name.startswith("_"):
                    found.append(f"{path}:{node.lineno}: from {node.module} import {a.name}")
                elif node.module == "api":
                    api_modules.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            api_modules |= {a.asname or a.name for a in node.names if a.name.split(".")[0] == "api"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if isinstance(node.value, ast.Name) and node.value.id in api_modules:
                found.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def _route_modules(modules: dict[str, ast.Module]) -> set[str]:
    """The API modules that hold routes: those that make a Blueprint."""
    return {Path(path).stem for path, tree in modules.items()
            if any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "Blueprint" for n in ast.walk(tree))}


def test_the_api_builds_and_runs_no_sql():
    modules = _modules("api")
    assert len(_route_modules(modules)) >= 10  # the check reads the routes (a moved folder would pass it)
    found = [hit for path, tree in modules.items() for hit in sql_in(path, tree)]
    assert not found, "SQL belongs in db/ (reads and writes) or services/ (commit, then act):\n" + "\n".join(found)


def test_no_api_module_borrows_another_s_private_names():
    found = [hit for path, tree in _modules("api").items() for hit in private_borrowing(path, tree)]
    assert not found, "\n".join(found)


def test_routes_are_imported_only_by_the_app():
    """A route module's helpers that another route needs live in a module of their own (api.bodies,
    api.paging, api.deps) or below the API (services/, db/): routes do not borrow from routes."""
    modules = _modules("api")
    routes = _route_modules(modules)
    found = []
    for path, tree in modules.items():
        if path == "api/app.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + ([f"api.{a.name}" for a in node.names] if node.module == "api" else [])
                found += [f"{path}:{node.lineno}: {t}" for t in targets
                          if t.startswith("api.") and t.split(".")[1] in routes and t != f"api.{Path(path).stem}"]
    assert not found, "\n".join(found)


def test_services_know_no_flask():
    """services/ takes the request's resources as arguments (services.context.Ctx) and refuses with
    services.errors.Refused, which the API answers as it is: no Flask below the API."""
    for path, tree in {**_modules("services"), **_modules("db")}.items():
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            assert not [n for n in names if n.split(".")[0] in ("flask", "werkzeug", "api")], f"{path}:{node.lineno}"


def test_the_checks_catch_what_they_name():
    """The two source checks on the shapes of code they were written against (api/uploads.py,
    api/completion.py and api/jobs.py before this change), so that a check that finds nothing is not
    simply blind."""
    before = ast.parse(
        "from flask import g\n"
        "from sqlalchemy import delete, select, text\n"
        "from sqlalchemy.exc import IntegrityError\n"
        "from sqlalchemy.orm import Session\n"
        "from api import uploads\n"
        "from api.uploads import _accepted, commit_job\n"
        "from db.models import Job, User\n"
        "def f(s, jid):\n"
        "    s.execute(delete(Job).where(Job.id == jid))\n"
        "    s.scalar(select(Job).where(Job.id == jid))\n"
        "    s.get(User, g.user_id)\n"
        "    s.add(Job(id=jid))\n"
        "    s.delete(s)\n"  # an instance: not a table class, not counted
        "    return uploads._user_lock, uploads.check_quota\n")
    assert sql_in("x.py", before) == [
        "x.py:2: from sqlalchemy import delete", "x.py:2: from sqlalchemy import select",
        "x.py:2: from sqlalchemy import text", "x.py:9: .execute(...)", "x.py:10: .scalar(...)",
        "x.py:11: .get(...)", "x.py:12: .add(...)"]
    assert private_borrowing("x.py", before) == ["x.py:6: from api.uploads import _accepted", "x.py:14: uploads._user_lock"]
