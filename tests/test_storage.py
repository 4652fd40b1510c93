"""One storage interface, two backends: a local folder and S3 (moto server over HTTP)."""
from __future__ import annotations

import io
import uuid

import pytest

from core.storage import LocalStorage, ObjectNotFound, S3Storage, StorageError, open_storage


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, moto_endpoint):
    if request.param == "local":
        return LocalStorage(tmp_path / "objects")
    return S3Storage(f"store-test-{uuid.uuid4().hex[:8]}", endpoint_url=moto_endpoint, create_bucket=True)


def test_round_trip_and_missing(store):
    store.put_file("users/u/a.bin", io.BytesIO(b"x" * 3_000_000), "application/octet-stream")
    assert store.size("users/u/a.bin") == 3_000_000
    assert b"".join(store.iter_chunks("users/u/a.bin", 1 << 20)) == b"x" * 3_000_000
    store.put_bytes("users/u/b.txt", b"hello", "text/plain")
    assert store.get_bytes("users/u/b.txt") == b"hello"
    assert store.exists("users/u/b.txt") and not store.exists("users/u/nope")
    with pytest.raises(ObjectNotFound):
        store.get_bytes("users/u/nope")
    with pytest.raises(ObjectNotFound):
        store.size("users/u/nope")
    assert store.delete_prefix("users/u/") == 2
    assert not store.exists("users/u/a.bin")
    store.ping()


def test_download_to(store, tmp_path):
    store.put_bytes("k/one", b"abc")
    store.download_to("k/one", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"abc"


def test_local_keys_cannot_escape(tmp_path):
    s = LocalStorage(tmp_path / "root")
    with pytest.raises(StorageError):
        s.put_bytes("../outside", b"x")
    assert not (tmp_path / "outside").exists()


def test_unreachable_s3_is_a_storage_error():
    s = S3Storage("nobucket", endpoint_url="http://127.0.0.1:1")
    with pytest.raises(StorageError):
        s.ping()


def test_open_storage_urls(tmp_path):
    assert isinstance(open_storage(f"file://{tmp_path}"), LocalStorage)
    with pytest.raises(ValueError):
        open_storage("ftp://x")
