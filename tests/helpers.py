"""Run a job's task bodies in-process (fake segmenter), as the workers would."""
from __future__ import annotations

from tests.fakes import FakeSegmenter
from worker import ingest, segment


def run_job(rt, job_id, segmenter=None, twice: bool = False) -> list[list]:
    """Ingest, then segment every chunk ingest sent. With twice=True every task runs two times."""
    chunks: list[list] = []
    seg = segmenter or FakeSegmenter()
    runs = 2 if twice else 1
    for _ in range(runs):
        ingest.run(job_id, rt, send_segment=lambda j, ids: chunks.append(list(ids)))
    for ids in list(chunks):
        for _ in range(runs):
            segment.run(job_id, ids, rt, seg)
    return chunks
