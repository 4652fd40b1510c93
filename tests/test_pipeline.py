"""Worker task bodies (ingest, segment) with the fake segmenter, on the real services."""
from __future__ import annotations

import io
import uuid
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from core.storage import keys
from db.models import Item, Job, Photo
from db.session import session_scope
from tests.fakes import FakeSegmenter
from tests.conftest import example_photos, jpeg_bytes, zip_bytes
from tests.helpers import run_job
from worker import ingest, segment
from worker.cutouts import rasterize


def new_job(rt, user_id, data: bytes) -> uuid.UUID:
    job_id = uuid.uuid4()
    key = keys.upload(user_id, job_id)
    rt.storage.put_bytes(key, data, "application/zip")
    with session_scope() as s:
        s.add(Job(id=job_id, user_id=user_id, upload_key=key, upload_sha256="0" * 64, upload_bytes=len(data)))
    return job_id


def job_row(job_id) -> Job:
    with session_scope() as s:
        return s.get(Job, job_id)


def count(model, **where) -> int:
    with session_scope() as s:
        q = select(func.count()).select_from(model)
        for k, v in where.items():
            q = q.where(getattr(model, k) == v)
        return s.scalar(q)


def test_every_task_run_twice_duplicates_nothing(make_user, rt):
    uid, _ = make_user()
    job_id = new_job(rt, uid, zip_bytes(example_photos(4)))
    run_job(rt, job_id, twice=True)
    job = job_row(job_id)
    assert job.status == "succeeded"
    assert (job.photos_total, job.photos_done, job.photos_failed, job.items_found) == (4, 4, 0, 8)
    assert count(Photo, job_id=job_id) == 4
    assert count(Item, job_id=job_id) == 8


class SecondDelivery(FakeSegmenter):
    """Another worker's run of the same photos (another model version, or a GPU that batched them
    differently: the same garments, outlined a little differently), in whose model call the first
    delivery runs to its end and commits."""

    version = "fake-other"

    def __init__(self, first):
        super().__init__()
        self.first = first

    def segment(self, photos):
        self.first()
        return [[half(d) for d in dets] for dets in super().segment(photos)]


def half(d):
    """The detection shrunk to half its size about its centre."""
    x1, y1, x2, y2 = d.bbox
    c = np.array([(x1 + x2) / 2, (y1 + y2) / 2], np.float32)
    return replace(d, bbox=(c[0] - (x2 - x1) / 4, c[1] - (y2 - y1) / 4, c[0] + (x2 - x1) / 4, c[1] + (y2 - y1) / 4),
                   polygons=[c + (p - c) / 2 for p in d.polygons])


def test_a_losing_delivery_never_overwrites_the_winners_cut_outs(make_user, rt):
    uid, _ = make_user()
    job_id = new_job(rt, uid, zip_bytes(example_photos(2)))
    chunks: list[list] = []
    ingest.run(job_id, rt, send_segment=lambda j, ids: chunks.append(list(ids)))
    (ids,) = chunks
    first = lambda: segment.run(job_id, ids, rt, FakeSegmenter())  # noqa: E731
    assert segment.run(job_id, ids, rt, SecondDelivery(first)) == 0  # its photos were done meanwhile: no rows
    with session_scope() as s:
        items = list(s.scalars(select(Item).where(Item.job_id == job_id)))
    assert len(items) == 4 and {i.model_version for i in items} == {"fake-1"}
    for item in items:  # each row's cut-out is the one its own delivery made, not the loser's
        stored = Image.open(io.BytesIO(rt.storage.get_bytes(item.cutout_key)))
        assert stored.size == (item.cutout_width, item.cutout_height), item.category


@pytest.mark.parametrize("overlap", ["on", "off"])
def test_post_processing_beside_or_after_the_model_writes_the_same(make_user, rt, overlap):
    uid, _ = make_user()
    job_id = new_job(rt, uid, zip_bytes(example_photos(5)))
    rt_mode = replace(rt, settings=replace(rt.settings, post_overlap=overlap, segment_chunk=5))
    seen_threads = set()
    real = segment.items_for

    def spy(*args):
        import threading

        seen_threads.add(threading.current_thread().name)
        return real(*args)

    segment.items_for, saved = spy, segment.items_for
    try:
        run_job(rt_mode, job_id, twice=True)
    finally:
        segment.items_for = saved
    job = job_row(job_id)
    assert (job.status, job.photos_done, job.items_found) == ("succeeded", 5, 10)
    assert count(Item, job_id=job_id) == 10
    on_post_thread = {n for n in seen_threads if n.startswith("wardrobe-post")}
    assert bool(on_post_thread) == (overlap == "on"), seen_threads


def test_rows_wait_for_their_cutouts_and_a_failed_upload_writes_none_of_its_photo(make_user, rt, monkeypatch):
    """Cut-outs are uploaded in the background and the rows naming them are written later: a
    cut-out that fails to store keeps its photo's rows out (the photo stays pending and the task
    raises, to be retried), and no row ever names a cut-out that is not in storage."""
    from core.storage import StorageError

    uid, _ = make_user()
    job_id = new_job(rt, uid, zip_bytes(example_photos(3)))
    chunks = []
    ingest.run(job_id, rt, send_segment=lambda j, ids: chunks.append(list(ids)))
    real_put, failed = rt.storage.put_bytes, []

    def put_failing_once(key, data, content_type="application/octet-stream"):
        if "/cutouts/" in key and not failed:
            failed.append(key)
            raise StorageError(f"injected failure storing {key}")
        return real_put(key, data, content_type)

    monkeypatch.setattr(segment, "COMMIT_EVERY", 1)  # a commit after each photo: later ones follow the failure
    rt.storage.put_bytes = put_failing_once  # the real store, with one upload failing
    try:
        with pytest.raises(StorageError):
            segment.run(job_id, chunks[0], rt, FakeSegmenter())
    finally:
        del rt.storage.put_bytes
    failed_photo = uuid.UUID(failed[0].split("/")[3])
    with session_scope() as s:
        assert s.get(Photo, failed_photo).status == "pending"
        assert s.scalar(select(func.count()).select_from(Item).where(Item.photo_id == failed_photo)) == 0
        written = list(s.scalars(select(Item.cutout_key).where(Item.job_id == job_id)))
    assert all(rt.storage.exists(k) for k in written)

    # the retry does the rest; every row's cut-out is in storage
    assert segment.run(job_id, chunks[0], rt, FakeSegmenter()) == 3 - len(written) // 2
    with session_scope() as s:
        keys_now = list(s.scalars(select(Item.cutout_key).where(Item.job_id == job_id)))
    assert len(keys_now) == 6 and all(rt.storage.exists(k) for k in keys_now)
    assert job_row(job_id).status == "succeeded"


def test_segment_redelivered_after_commit_writes_nothing(make_user, rt):
    uid, _ = make_user()
    job_id = new_job(rt, uid, zip_bytes(example_photos(2)))
    chunks = []
    ingest.run(job_id, rt, send_segment=lambda j, ids: chunks.append(list(ids)))
    assert job_row(job_id).status == "running"
    assert segment.run(job_id, chunks[0], rt, FakeSegmenter()) == 2
    assert segment.run(job_id, chunks[0], rt, FakeSegmenter()) == 0
    assert count(Item, job_id=job_id) == 4
    assert job_row(job_id).items_found == 4


STAGES = ("load", "infer", "post", "store", "post_cpu", "cutout", "features", "commit")


def stage_seconds() -> dict:
    from prometheus_client import REGISTRY

    return {st: REGISTRY.get_sample_value("wardrobe_segment_stage_seconds_total", {"stage": st}) or 0.0
            for st in STAGES}


def test_segment_stages_go_to_the_metrics_unless_an_observer_is_passed(make_user, rt):
    uid, _ = make_user()
    job_id = new_job(rt, uid, zip_bytes(example_photos(4)))
    chunks = []
    ingest.run(job_id, rt, send_segment=lambda j, ids: chunks.append(list(ids)))
    before = stage_seconds()
    assert segment.run(job_id, chunks[0][:2], rt, FakeSegmenter()) == 2
    after = stage_seconds()
    assert all(after[st] > before[st] for st in STAGES), (before, after)

    class Observer:
        def __init__(self):
            self.seen: dict[str, float] = {}

        def add(self, stage, seconds):
            self.seen[stage] = self.seen.get(stage, 0.0) + seconds

    mine = Observer()
    assert segment.run(job_id, chunks[0][2:], rt, FakeSegmenter(), stages=mine) == 2
    assert set(mine.seen) == set(STAGES) and mine.seen["infer"] > 0
    assert stage_seconds() == after  # the benchmark's figures stay out of the process's metrics


def test_ingest_redelivered_midway_resumes_without_duplicates(make_user, rt):
    """A first ingest that died after storing some photos: the second stores only the rest."""
    uid, _ = make_user()
    job_id = new_job(rt, uid, zip_bytes(example_photos(4)))
    sent = []

    class Boom(Exception):
        pass

    def send_then_die(j, ids):
        sent.append(list(ids))
        raise Boom

    rt_small = type(rt)(settings=rt.settings.__class__(**{**rt.settings.__dict__, "segment_chunk": 2}), storage=rt.storage)
    try:
        ingest.run(job_id, rt_small, send_segment=send_then_die)
    except Boom:
        pass
    assert count(Photo, job_id=job_id) == 2  # died after the first chunk
    chunks = []
    ingest.run(job_id, rt_small, send_segment=lambda j, ids: chunks.append(list(ids)))
    assert count(Photo, job_id=job_id) == 4
    for ids in chunks:
        segment.run(job_id, ids, rt, FakeSegmenter())
    job = job_row(job_id)
    assert job.status == "succeeded" and job.photos_done == 4 and job.items_found == 8


def test_ingest_stores_ahead_of_rows_and_a_failed_upload_leaves_no_row_without_its_photo(make_user, rt):
    """Ingest uploads photos ahead of writing their rows. A photo that fails to store stops the
    task (to be retried) without a row; the rows already written all have their photo in storage,
    and the retry stores the rest."""
    from core.storage import StorageError

    uid, _ = make_user()
    job_id = new_job(rt, uid, zip_bytes(example_photos(5)))
    real_put, calls = rt.storage.put_bytes, []

    def put_failing_third(key, data, content_type="application/octet-stream"):
        calls.append(key)
        if len(calls) == 3:
            raise StorageError(f"injected failure storing {key}")
        return real_put(key, data, content_type)

    rt.storage.put_bytes = put_failing_third  # the real store, with the third photo's upload failing
    try:
        with pytest.raises(StorageError):
            ingest.run(job_id, rt, send_segment=lambda j, ids: None)
    finally:
        del rt.storage.put_bytes
    with session_scope() as s:
        first = list(s.scalars(select(Photo.storage_key).where(Photo.job_id == job_id)))
    assert calls[2] not in first and len(first) < 5
    assert all(rt.storage.exists(k) for k in first)

    chunks = []
    ingest.run(job_id, rt, send_segment=lambda j, ids: chunks.append(list(ids)))
    with session_scope() as s:
        stored = list(s.scalars(select(Photo.storage_key).where(Photo.job_id == job_id)))
    assert len(stored) == 5 and all(rt.storage.exists(k) for k in stored)
    for ids in chunks:
        segment.run(job_id, ids, rt, FakeSegmenter())
    assert job_row(job_id).status == "succeeded" and job_row(job_id).photos_done == 5


@pytest.mark.parametrize("cap", ["photos", "bytes"])
def test_ingest_holds_at_most_its_cap_of_photos_ahead_of_their_rows(make_user, rt, monkeypatch, cap):
    """Photos uploading ahead of their rows are capped by count and by bytes: with a cap that lets
    one photo be held (the newest), the photo before it has its row by the time the next upload
    starts."""
    if cap == "photos":
        monkeypatch.setattr(ingest, "INGEST_UPLOADS_IN_FLIGHT", 1)
    else:
        monkeypatch.setattr(ingest, "INGEST_BYTES_IN_FLIGHT", 1)
    uid, _ = make_user()
    job_id = new_job(rt, uid, zip_bytes(example_photos(5)))
    real_put, rows_seen = rt.storage.put_bytes, []

    def put_counting_rows(key, data, content_type="application/octet-stream"):
        rows_seen.append(count(Photo, job_id=job_id))
        return real_put(key, data, content_type)

    rt.storage.put_bytes = put_counting_rows
    try:
        ingest.run(job_id, rt, send_segment=lambda j, ids: None)
    finally:
        del rt.storage.put_bytes
    assert len(rows_seen) == 5 and count(Photo, job_id=job_id) == 5
    assert all(seen >= i - 1 for i, seen in enumerate(rows_seen)), rows_seen


@pytest.mark.parametrize("max_side", [0, 60])
def test_cutout_is_rgba_with_the_mask_as_alpha(make_user, rt, max_side):
    """Full size (0), or scaled down to a long side of 60 px: either way the alpha is the stored
    polygons, drawn at the cut-out's scale, and the colour is the photo's."""
    import cv2

    uid, _ = make_user()
    job_id = new_job(rt, uid, zip_bytes(example_photos(1)))
    run_job(replace(rt, settings=replace(rt.settings, cutout_max_side=max_side)), job_id)
    with session_scope() as s:
        items = list(s.scalars(select(Item).where(Item.job_id == job_id)))
        photo = s.get(Photo, items[0].photo_id)
    stored = np.asarray(Image.open(io.BytesIO(rt.storage.get_bytes(photo.storage_key))).convert("RGB"))
    assert {i.cutout_content_type for i in items} == {"image/webp", "image/png"}
    scaled = 0
    for item in items:
        cut = Image.open(io.BytesIO(rt.storage.get_bytes(item.cutout_key)))
        assert cut.mode == "RGBA"
        x1, y1, x2, y2 = item.bbox
        bw, bh = x2 - x1, y2 - y1
        assert cut.size == (item.cutout_width, item.cutout_height)
        if max_side and max(bw, bh) > max_side:
            scaled += 1
            assert max(cut.size) == max_side
            assert abs(cut.width / cut.height - bw / bh) < 0.02  # the aspect ratio is kept
        else:
            assert cut.size == (bw, bh)
        sx, sy = cut.width / bw, cut.height / bh
        alpha = np.asarray(cut)[..., 3]
        expected = rasterize([np.array(p) for p in item.polygons], cut.width, cut.height, (x1, y1), (sx, sy))
        # alpha is the mask, exactly (WebP keeps alpha lossless)
        assert (alpha == expected).all()
        assert item.area_fraction == pytest.approx(int((expected > 0).sum()) / (sx * sy) / (photo.width * photo.height),
                                                   abs=1e-6)
        # colour inside the mask is the photo's (lossy WebP: close, not equal)
        rgb = np.asarray(cut)[..., :3].astype(int)
        inside = expected > 0
        ref = cv2.resize(stored[y1:y2, x1:x2], cut.size, interpolation=cv2.INTER_AREA)
        diff = np.abs(rgb[inside] - ref[inside].astype(int)).mean()
        assert diff < 8
    assert scaled == (len(items) if max_side else 0)  # the fake's garments are all longer than 60 px


def test_unreadable_entries_are_per_entry_errors(make_user, rt):
    uid, _ = make_user()
    entries = example_photos(1) | {"broken.jpg": b"\xff\xd8\xff\xe0 definitely not a jpeg", "readme.txt": b"hi",
                                   "__MACOSX/._x.jpg": b"junk", "folder/": b""}
    job_id = new_job(rt, uid, zip_bytes(entries))
    run_job(rt, job_id)
    job = job_row(job_id)
    assert job.status == "partially_succeeded"
    assert (job.photos_total, job.photos_done, job.photos_failed) == (3, 1, 2)
    with session_scope() as s:
        failed = {p.entry_name: p.error_code for p in s.scalars(select(Photo).where(Photo.job_id == job_id, Photo.status == "failed"))}
    assert failed == {"broken.jpg": "unreadable_image", "readme.txt": "not_an_image"}


def test_job_with_no_readable_photo_fails(make_user, rt):
    uid, _ = make_user()
    job_id = new_job(rt, uid, zip_bytes({"a.txt": b"x", "b.jpg": b"nope"}))
    run_job(rt, job_id)
    job = job_row(job_id)
    assert job.status == "failed" and job.photos_failed == 2 and job.photos_done == 0


def test_corrupt_zip_in_storage_fails_the_job(make_user, rt):
    uid, _ = make_user()
    job_id = new_job(rt, uid, b"PK\x03\x04 truncated garbage")
    run_job(rt, job_id)
    job = job_row(job_id)
    assert job.status == "failed" and job.error_code == "bad_zip"


def test_exif_orientation_is_applied(make_user, rt):
    uid, _ = make_user()
    job_id = new_job(rt, uid, zip_bytes({"rot.jpg": jpeg_bytes(80, 40, exif_orientation=6)}))
    run_job(rt, job_id)
    with session_scope() as s:
        p = s.scalar(select(Photo).where(Photo.job_id == job_id))
    assert (p.width, p.height) == (40, 80)  # turned upright
    assert (p.original_width, p.original_height) == (40, 80)
    assert Image.open(io.BytesIO(rt.storage.get_bytes(p.storage_key))).size == (40, 80)


def test_storage_keys_are_server_made_and_user_scoped(make_user, rt):
    uid, _ = make_user()
    job_id = new_job(rt, uid, zip_bytes({"../../etc/passwd.jpg": jpeg_bytes(), "/abs/x.jpg": jpeg_bytes(20, 20)}))
    run_job(rt, job_id)
    with session_scope() as s:
        photos = list(s.scalars(select(Photo).where(Photo.job_id == job_id)))
        items = list(s.scalars(select(Item).where(Item.job_id == job_id)))
    assert len(photos) == 2
    for p in photos:
        assert p.storage_key == f"users/{uid}/photos/{p.id}.jpg"
    for i in items:
        assert i.cutout_key.startswith(f"users/{uid}/cutouts/{i.photo_id}/")


def test_stored_photos_decode_fast_and_exactly_and_truncated_ones_are_refused():
    from worker.segment import decode_stored

    for data in example_photos(3).values():
        fast = decode_stored(data)
        with Image.open(io.BytesIO(data)) as im:
            assert (fast == np.asarray(im.convert("RGB"))).all()
    with pytest.raises(OSError):
        decode_stored(data[: len(data) // 2])
