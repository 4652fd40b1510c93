"""A statement cut off by an exception from outside the database (a Celery soft time limit, a gevent
timeout): the query is cancelled on the server and its connection is discarded, and the exception that
cut it off is what the caller sees.

Left to SQLAlchemy and psycopg alone, an exception raised while psycopg waits for the server (the soft
limit's signal handler raises in the middle of a query) leaves the connection ACTIVE: the rollback that
follows fails with "another command is already in progress", that OperationalError replaces the soft
limit (so `except SoftTimeLimitExceeded` never sees it, and a job's error reads as a database fault),
and the connection is closed on the client side only. The server's backend goes on with the statement,
holding the transaction's row locks, until the statement ends: the retry, the next task in the same
process, then waits on those locks and is cut off in turn (tests/test_time_limits.py). psycopg cancels
the query itself for KeyboardInterrupt only.
"""
from __future__ import annotations

import logging

from sqlalchemy import event
from sqlalchemy.engine import Engine

log = logging.getLogger("wardrobe.db")

CANCEL_TIMEOUT = 5.0  # seconds: a cancel is a round trip to the server, within a soft limit's grace


def _cancel_if_active(raw) -> bool:
    """Cancel the statement in flight on a psycopg connection, if there is one (then True)."""
    from psycopg.pq import TransactionStatus

    if raw is None or raw.closed or raw.info.transaction_status != TransactionStatus.ACTIVE:
        return False
    try:
        raw.cancel_safe(timeout=CANCEL_TIMEOUT)
    except Exception as e:  # noqa: BLE001 - the server is gone too: closing the connection is all there is
        log.warning("cancelling an interrupted statement failed: %s", e)
    return True


def guard(engine: Engine) -> None:
    """Install the handling on a psycopg engine (db.session.make_engine)."""
    import psycopg

    try:
        from billiard.exceptions import SoftTimeLimitExceeded

        interrupts: tuple[type, ...] = (SoftTimeLimitExceeded,)
    except ImportError:  # no Celery where this runs: no soft time limit either
        interrupts = ()

    @event.listens_for(engine, "handle_error")
    def _interrupted(ctx):  # noqa: ANN001, ANN202
        _discard_if_cut_off(ctx)
        if interrupts and isinstance(ctx.original_exception, interrupts) and ctx.sqlalchemy_exception is not None:
            # cut off while SQLAlchemy prepared the statement (no cursor yet), SQLAlchemy wraps the soft
            # limit in a StatementError: what it raises instead is the soft limit itself
            return ctx.original_exception
        return None

    def _discard_if_cut_off(ctx) -> None:  # noqa: ANN001
        if (isinstance(ctx.original_exception, psycopg.Error) or ctx.connection is None or ctx.connection.closed
                or ctx.connection.invalidated):
            return
        try:
            raw = ctx.connection.connection.dbapi_connection
        except Exception:  # noqa: BLE001 - whatever went wrong here must not stand in for the original error
            return
        if _cancel_if_active(raw):
            # treated as a lost connection: SQLAlchemy discards this one (not the whole pool) before the
            # rollback, so the rollback raises nothing and the interrupt is what propagates
            ctx.is_disconnect = True
            ctx.invalidate_pool_on_disconnect = False

    ping = engine.dialect.do_ping

    def do_ping(raw) -> bool:  # noqa: ANN001
        # The pool's check before a checkout switches autocommit on and back in a `finally`; cut off
        # mid-ping, switching back raises ProgrammingError ("connection in transaction status ACTIVE")
        # over the interrupt. The pool discards the connection either way; the interrupt goes up.
        try:
            return ping(raw)
        except psycopg.Error as e:
            cause = e.__context__
            # only an interrupt (Celery's soft limit, or a BaseException such as KeyboardInterrupt): a ping
            # run inside a caller's `except` block has that error as its context too, and it must not
            # replace the ping's own
            interrupt = cause is not None and (isinstance(cause, interrupts) or not isinstance(cause, Exception))
            if interrupt and _cancel_if_active(raw):
                raise cause from None
            raise

    engine.dialect.do_ping = do_ping
