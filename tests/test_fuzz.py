"""Fuzzing: the API from its own OpenAPI document (schemathesis) and the zip reader (hypothesis).
No input may produce a 5xx or an unhandled exception."""
from __future__ import annotations

import io
import zipfile

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import jpeg_bytes, zip_bytes
from worker.images import ImageRejected, decode_photo
from worker.zipreader import ArchiveRejected, EntryRejected, Limits, candidate_entries, open_zip, read_entry

LIMITS = Limits(max_entries=50, max_entry_bytes=2_000_000, max_total_bytes=4_000_000, max_ratio=100)
SEED_ZIP = zip_bytes({"a.jpg": jpeg_bytes(32, 24), "b/c.png": b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "d.txt": b"hello" * 50})


def read_all(data: bytes) -> list[str]:
    """Everything the ingest worker does with a zip's bytes, short of storage and the DB."""
    outcomes = []
    try:
        zf = open_zip(io.BytesIO(data))
        entries = candidate_entries(zf, LIMITS)
    except ArchiveRejected as e:
        return [e.code]
    budget = [LIMITS.max_total_bytes]
    for _, info in entries:
        try:
            raw = read_entry(zf, info, LIMITS, budget)
            decode_photo(raw, max_pixels=4_000_000, work_max_side=256)
            outcomes.append("ok")
        except (EntryRejected, ImageRejected) as e:
            outcomes.append(e.code)
    return outcomes


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(SEED_ZIP) - 1), st.integers(0, 255)), min_size=1, max_size=12))
def test_mutated_zips_never_raise_unhandled(mutations):
    data = bytearray(SEED_ZIP)
    for pos, val in mutations:
        data[pos] = val
    read_all(bytes(data))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(st.tuples(st.integers(0, len(SEED_ZIP) - 1), st.integers(0, 255)), min_size=1, max_size=12))
def test_upload_check_refuses_cleanly(tmp_path_factory, mutations):
    """The API's cheap zip check on mutated zips: accepted, or an ApiError (a 4xx), nothing else."""
    from api.errors import ApiError
    from services.uploads import check_zip
    from core.config import Settings

    data = bytearray(SEED_ZIP)
    for pos, val in mutations:
        data[pos] = val
    path = tmp_path_factory.mktemp("z") / "u.zip"
    path.write_bytes(bytes(data))
    try:
        check_zip(str(path), Settings())
    except ApiError as e:
        assert 400 <= e.status < 500


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_never_raise_unhandled(blob):
    read_all(blob)
    read_all(b"PK\x03\x04" + blob)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(min_size=1, max_size=40), st.binary(max_size=2000), min_size=1, max_size=6))
def test_arbitrary_names_and_contents(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            try:
                zf.writestr(name, data)
            except (ValueError, UnicodeEncodeError, IndexError):  # names zipfile itself cannot write
                pass
    read_all(buf.getvalue())


def test_api_never_answers_5xx(app, make_user):
    """Every operation of /v1/openapi.json, with generated parameters and bodies, signed in and not."""
    _, token = make_user()
    schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", app)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 12

    for op in operations:
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def run(case):
            for headers in ({"Authorization": f"Bearer {token}"}, {}):
                response = case.call(headers=headers)
                assert response.status_code < 500, (case.path, case.method, response.status_code, response.text[:300])
                if response.status_code >= 400 and case.path != "/readyz":
                    assert set(response.json()["error"]) == {"code", "message"}

        run()
