"""Engine and sessions. One engine per process; forked workers dispose the parent's.

`session_scope` is db's own short unit of work: after it commits, the events its transitions
recorded (db.events) go to the dispatcher the service layer installed at start-up
(services.bootup → `dispatch_with`); with none installed they are dropped, and the sweeps catch up
(the webhook sweep sends lost messages, the sweeper deletes zips past their retention)."""
from __future__ import annotations

import collections
import functools
from contextlib import contextmanager
from typing import Callable, Iterator

from sqlalchemy import create_engine, event, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from db import events, interrupts

_engine: Engine | None = None
_factory: sessionmaker | None = None
_dispatch: list[Callable[[list[events.Event]], None]] = []


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")  # API reads while the worker writes
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, no fsync per commit
            cur.close()

        return engine
    kw = {}
    try:  # a catalogue page decodes three JSON columns per item: orjson does it several times faster
        import orjson

        kw["json_deserializer"] = orjson.loads
    except ImportError:
        pass
    eng = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, pool_recycle=1800, **kw)
    if eng.dialect.driver == "psycopg":
        interrupts.guard(eng)  # a statement cut off by a time limit: cancelled, its connection dropped
    return eng


def configure(url: str) -> Engine:
    global _engine, _factory
    if _engine is not None:
        _engine.dispose()
    _engine = make_engine(url)
    _factory = sessionmaker(bind=_engine, expire_on_commit=False)
    return _engine


def engine() -> Engine:
    if _engine is None:
        raise RuntimeError("database not configured: call services.bootup.bootup() first")
    return _engine


def new_session() -> Session:
    if _factory is None:
        raise RuntimeError("database not configured: call services.bootup.bootup() first")
    return _factory()


@functools.lru_cache(maxsize=64)
def _row_type(fields: tuple[str, ...]):
    return collections.namedtuple("Row", fields, rename=True)


def read_all(statement, params: dict | None = None) -> list:
    """The rows of one read-only statement, as named tuples, on a pooled connection in autocommit.
    A lone SELECT is its own snapshot, so the BEGIN and ROLLBACK a session's transaction wraps
    around it would be two round trips to the server for nothing; and a named tuple reads a
    column by name several times faster than SQLAlchemy's Row (the catalogue page reads twenty
    columns of fifty rows)."""
    with engine().connect() as conn:
        result = conn.execution_options(isolation_level="AUTOCOMMIT").execute(statement, params)
        make = _row_type(tuple(result.keys()))._make
        return [make(row) for row in result.all()]  # .all(): one fetch, not one per row


@contextmanager
def session_scope() -> Iterator[Session]:
    """A short unit of work: commit on success, roll back on error, always close."""
    s = new_session()
    try:
        yield s
        tx = s.get_transaction()
        s.commit()
        done = events.take(s, tx)
    except BaseException:
        s.rollback()
        events.take(s, None)
        raise
    finally:
        s.close()
    if done and _dispatch:
        _dispatch[0](done)


def dispatch_with(fn: Callable[[list[events.Event]], None]) -> None:
    """The service layer's dispatcher for what session_scope's units of work did (services.bootup)."""
    _dispatch[:] = [fn]


def dispose_after_fork() -> None:
    """Drop connections inherited from the parent process (they are not fork-safe)."""
    if _engine is not None:
        _engine.dispose(close=False)


def lock_row(s: Session, model, row_id) -> None:
    """Hold the row of `model` with this id until the transaction ends, so that what the caller reads
    next cannot be changed by a concurrent request before it writes (a count under a limit, a state
    that decides what to do): SELECT ... FOR UPDATE on PostgreSQL. SQLite has no row locks, and its
    reads take no lock at all; a no-op UPDATE, as the transaction's first write, takes its one write
    lock instead (waiting up to busy_timeout), so the same requests run one after the other there too."""
    if s.get_bind().dialect.name == "sqlite":
        s.execute(update(model).where(model.id == row_id).values(id=model.id))
    else:
        s.scalar(select(model.id).where(model.id == row_id).with_for_update())


def ping(s: Session) -> None:
    """One round trip to the database (the API's /readyz); raises when it does not answer."""
    s.execute(text("SELECT 1"))
