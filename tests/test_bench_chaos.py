"""The chaos and soak harnesses keep going through the faults they cause themselves."""
from __future__ import annotations

from dataclasses import replace

from bench.chaos import busy_children
from core.queue import make_celery
from tests.procs import RedisServer


def test_busy_children_after_the_broker_restarts_empty(settings, tmp_path):
    """The soak restarts Redis and later asks which pool process is busy: it used to die there on the
    pooled connection to the Redis that was gone (ConnectionError: closed by server)."""
    redis = RedisServer(tmp_path).start()
    try:
        app = make_celery(replace(settings, broker_url=redis.url))
        assert busy_children(app, {1}) == []  # no worker answers: none busy
        redis.kill()
        assert busy_children(app, {1}) == []  # the broker is down: none busy, no exception
        redis.start()
        assert busy_children(app, {1}) == []
    finally:
        redis.kill()


def test_the_load_s_zips_never_repeat_a_photo():
    """The soak uploads hundreds of zips: its photos repeated every 256 seeds, so a user's later upload
    was recorded as duplicates and the soak counted them lost (144 in a 30-minute run)."""
    import hashlib
    import io
    import zipfile

    from bench.chaos import photos_zip

    def hashes(seed):
        with zipfile.ZipFile(io.BytesIO(photos_zip(4, seed))) as zf:
            return {hashlib.sha256(zf.read(n)).hexdigest() for n in zf.namelist()}

    seen = [hashes(s) for s in (1, 2, 257, 513, 1025)]
    assert all(len(h) == 4 for h in seen)
    assert len(set().union(*seen)) == 4 * len(seen)


def test_the_soak_measures_growth_from_the_first_sample_after_the_warm_up():
    from bench.soak import warm_sample

    samples = [{"at_s": 60, "workers": 1}, {"at_s": 120, "workers": 2}, {"at_s": 181, "workers": 3}]
    assert warm_sample(samples, 180) == samples[2]
    assert warm_sample(samples, 120) == samples[1]
    assert warm_sample(samples, 240) is None  # a run shorter than its warm-up has no such figure
