"""`make bench-scale`'s parts that can be checked quickly: its stand-in segmenter goes through the
product's own pipeline like the model's detections (five garments a photo, outlines of many
vertices, WebP cut-outs whose alpha is the outline), and the bottleneck it names follows its figures."""
from __future__ import annotations

from sqlalchemy import select

from bench.scale import bottleneck
from bench.standin import GARMENTS, InstantSegmenter
from db.models import Item
from db.session import session_scope
from tests.conftest import example_photos, zip_bytes
from tests.test_pipeline import job_row, new_job
from worker import ingest, segment


def test_the_stand_in_goes_through_the_real_pipeline(make_user, rt):
    uid, _ = make_user()
    job_id = new_job(rt, uid, zip_bytes(example_photos(2)))
    chunks: list[list] = []
    ingest.run(job_id, rt, send_segment=lambda j, ids: chunks.append(list(ids)))
    seg = InstantSegmenter(batch=2)
    assert sum(segment.run(job_id, c, rt, seg) for c in chunks) == 2
    job = job_row(job_id)
    assert (job.status, job.photos_done, job.items_found) == ("succeeded", 2, 2 * len(GARMENTS))
    with session_scope() as s:
        items = s.scalars(select(Item).where(Item.job_id == job_id)).all()
    assert {i.model_version for i in items} == {"bench-standin-1"}
    assert all(len(i.polygons[0]) >= 40 and i.cutout_content_type == "image/webp" and i.colors for i in items)
    assert sorted(i.class_id for i in items) == sorted([g[0] for g in GARMENTS] * 2)
    assert all(rt.storage.get_bytes(i.cutout_key)[:4] == b"RIFF" for i in items)


def _step(machine_busy=0.5, worker=0.4, postgres=0.05, procs=2, active=0.1, waits=None):
    return {"processes": procs, "machine_busy": machine_busy,
            "cores_busy": {"api": 0.1, "worker": worker, "postgres": postgres, "redis": 0.01, "moto (S3)": 0.2,
                           "other (not this benchmark)": 0.0},
            "cpu_ms_per_photo": {"api": 1.0, "worker": 25.0, "postgres": 1.5, "redis": 0.1, "moto (S3)": 10.0},
            "pg_active_backends": {"mean": active, "by_wait": waits or {"CPU": 1.0}}}


def test_the_named_bottleneck_follows_the_figures():
    assert bottleneck(_step(machine_busy=0.97, worker=1.6), 2).startswith("CPU: the machine's 2 cores were 97% busy; "
                                                                          "the largest share is the worker")
    assert bottleneck(_step(machine_busy=0.6, worker=1.9, procs=2), 16).startswith("the worker's processes")
    locks = bottleneck(_step(active=3.0, waits={"Lock:transactionid": 0.5, "CPU": 0.5}), 16)
    assert locks.startswith("database locks: 1.50 backends waiting on a lock")
    assert bottleneck(_step(active=0.1, waits={"Lock:tuple": 1.0}), 16).startswith("nothing saturated")  # 0.1 of a backend
