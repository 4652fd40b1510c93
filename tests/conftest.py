"""Test fixtures on real services: PostgreSQL, Redis and an S3 endpoint (moto server over HTTP).

PostgreSQL and Redis are started by scripts/services.sh (run by `make test`);
the moto server is started here, on a free port, for the session.
"""
from __future__ import annotations

import io
import os
import uuid
import zipfile
from pathlib import Path

import pytest

from bench.scratch import free_port, scratch_database, scratch_s3, wait_port  # noqa: F401 - tests import the port helpers from here
from tests.fakes import FAKE_SEGMENTER

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
EXAMPLES = ROOT / "examples" / "photos"
PG_ADMIN = os.environ.get("WARDROBE_TEST_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("WARDROBE_TEST_REDIS", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory):
    if os.environ.get("WARDROBE_TEST_S3_ENDPOINT"):
        yield os.environ["WARDROBE_TEST_S3_ENDPOINT"]
        return
    with open(tmp_path_factory.mktemp("moto") / "moto.log", "wb") as log, scratch_s3(log) as endpoint:
        yield endpoint


def temp_database(prefix: str = "wardrobe_test"):
    """A fresh, empty PostgreSQL database for the block; dropped after, connections and all."""
    return scratch_database(PG_ADMIN, prefix)


@pytest.fixture(scope="session")
def pg_url():
    with temp_database() as url:
        yield url
        from db import session as dbs

        if dbs._engine is not None:
            dbs._engine.dispose()


@pytest.fixture(scope="session")
def settings(pg_url, moto_endpoint, tmp_path_factory):
    from core.config import Settings
    from db.migrate import upgrade

    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    upgrade(pg_url)
    return Settings.from_env(
        data_dir=str(tmp_path_factory.mktemp("data")),
        database_url=pg_url,
        broker_url=REDIS_URL,
        storage_url=f"s3://wardrobe-test-{uuid.uuid4().hex[:8]}",
        s3_endpoint_url=moto_endpoint,
        segmenter=FAKE_SEGMENTER,
        auto_migrate=False,
        log_level="WARNING",
        # the deployment's review default is the served model card's; the suite pins the mechanics at 0.5
        review_below=0.5,
    )


@pytest.fixture(scope="session")
def rt(settings):
    from services.bootup import bootup

    return bootup(settings, force=True)


@pytest.fixture()
def clean_db(rt):
    from sqlalchemy import text

    from db.session import engine

    with engine().begin() as c:
        c.execute(text("TRUNCATE items, photos, jobs, api_tokens, users CASCADE"))
    yield rt


@pytest.fixture()
def app(clean_db):
    from api.app import create_app

    app = create_app(clean_db.settings)
    app.testing = True
    return app


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def make_user(clean_db):
    from db.session import session_scope
    from db.users import create_user

    def _make(name: str | None = None):
        with session_scope() as s:
            user, token = create_user(s, name or f"user-{uuid.uuid4().hex[:8]}")
            return user.id, token

    return _make


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def example_photos(n: int | None = None) -> dict[str, bytes]:
    paths = sorted(EXAMPLES.glob("*.jpg"))[:n]
    return {p.name: p.read_bytes() for p in paths}


def jpeg_bytes(w: int = 64, h: int = 48, color=(200, 30, 30), exif_orientation: int | None = None) -> bytes:
    from PIL import Image

    im = Image.new("RGB", (w, h), color)
    buf = io.BytesIO()
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        im.save(buf, "JPEG", exif=exif.tobytes())
    else:
        im.save(buf, "JPEG")
    return buf.getvalue()
