"""db/ persists and records what happened (db.events); the service layer acts on it once the
transaction committed (services.dispatch), and never for one that rolled back."""
from __future__ import annotations

import uuid

import pytest


@pytest.fixture()
def dispatched(rt, monkeypatch):
    from db import session as dbs

    seen: list = []
    monkeypatch.setattr(dbs, "_dispatch", [seen.extend])
    return seen


def test_a_unit_of_work_hands_its_events_over_after_it_commits_and_drops_them_on_rollback(dispatched):
    from sqlalchemy import text

    from db import events
    from db.session import session_scope

    ended = events.JobEnded(uuid.uuid4(), "failed", True, "uploads/x.zip")
    with session_scope() as s:
        s.execute(text("SELECT 1"))
        events.record(s, ended)
        assert dispatched == []  # not before the commit
    assert dispatched == [ended]

    with pytest.raises(RuntimeError):
        with session_scope() as s:
            s.execute(text("SELECT 1"))
            events.record(s, events.WebhooksDue((uuid.uuid4(),)))
            raise RuntimeError("rolled back")
    assert dispatched == [ended]


def test_a_session_s_rolled_back_events_are_not_sent_with_its_next_commit(rt, monkeypatch):
    from sqlalchemy import text

    from db import events
    from db.session import new_session
    from services import dispatch

    sent: list = []
    monkeypatch.setattr(dispatch, "dispatch", sent.append)
    s = new_session()
    try:
        s.execute(text("SELECT 1"))
        events.record(s, events.WebhooksDue((uuid.uuid4(),)))
        s.rollback()
        s.execute(text("SELECT 1"))
        kept = events.WebhooksDue((uuid.uuid4(),))
        events.record(s, kept)
        dispatch.commit(s)
    finally:
        s.close()
    assert sent == [[kept]]


def test_an_ended_job_s_zip_goes_after_the_commit_with_retention_zero(make_user, rt, settings):
    from dataclasses import replace

    from core.storage import ObjectNotFound
    from db import jobstate
    from db.models import Job
    from db.session import session_scope
    from services.bootup import bootup

    # a job that fails before its zip is read keeps the zip for a retry (upload_retry_retention): both zero here
    now_zero = bootup(replace(settings, upload_retention=0, upload_retry_retention=0), force=True)
    try:
        uid, _ = make_user()
        key = f"uploads/{uuid.uuid4()}.zip"
        now_zero.storage.put_bytes(key, b"PK", "application/zip")
        with session_scope() as s:
            job = Job(user_id=uid, upload_key=key, upload_sha256="0" * 64)
            s.add(job)
        with session_scope() as s:
            assert jobstate.fail(s, job.id, "test", "ended")
            s.flush()
            assert now_zero.storage.get_bytes(key) == b"PK"  # still there inside the transaction
        with pytest.raises(ObjectNotFound):
            now_zero.storage.get_bytes(key)
    finally:
        bootup(settings, force=True)
