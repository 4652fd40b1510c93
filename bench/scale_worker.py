"""`wardrobe worker` with the benchmark's instant stand-in segmenter (bench/standin.py) installed
in place of the model: `python -m bench.scale_worker --queues ingest,segment --concurrency N`.

The stand-in is set as the process's segmenter before Celery forks its pool, so every pool
process inherits it and `get_segmenter` never loads a model. Everything else is the product's
own worker: the same tasks, settings, retries and signals. Used by `make bench-scale` only."""
from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    os.environ["WARDROBE_PRELOAD_MODEL"] = "false"  # nothing to load: the stand-in is already there
    import segmentation.serving as segmenter
    from bench.standin import InstantSegmenter

    segmenter._segmenter = InstantSegmenter(batch=int(os.environ.get("BENCH_STANDIN_BATCH", "32")))
    from cli.main import main as wardrobe

    return wardrobe(["worker", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
