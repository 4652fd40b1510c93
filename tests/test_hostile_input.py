"""Bad input gets a clear answer and harms nothing else: upload-time refusals (HTTP 4xx)
and per-entry errors on the job, each checked against what the protection does."""
from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from db.models import Item, Photo
from db.session import session_scope
from tests.conftest import auth, example_photos, jpeg_bytes, zip_bytes
from tests.helpers import run_job
from tests.test_api import assert_error, upload
from tests.test_pipeline import job_row, new_job


def photos_of(job_id) -> dict[str, Photo]:
    with session_scope() as s:
        return {p.entry_name: p for p in s.scalars(select(Photo).where(Photo.job_id == job_id))}


def ingest_zip(rt, user_id, data: bytes, **overrides):
    rt2 = type(rt)(settings=replace(rt.settings, **overrides), storage=rt.storage) if overrides else rt
    job_id = new_job(rt2, user_id, data)
    run_job(rt2, job_id)
    return job_id, photos_of(job_id)


def image_bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def stored_rgb(rt, photo: Photo) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(rt.storage.get_bytes(photo.storage_key))).convert("RGB")).astype(int)


# --- at upload -----------------------------------------------------------------

def test_truncated_and_corrupt_zips_are_422(client, make_user):
    _, token = make_user()
    good = zip_bytes(example_photos(2))
    assert_error(upload(client, token, good[: len(good) // 2]), 422, "invalid_zip")
    corrupt = bytearray(good)
    cd = corrupt.find(b"PK\x01\x02")
    corrupt[cd : cd + 4] = b"XX\x01\x02"  # a broken central directory record
    assert_error(upload(client, token, bytes(corrupt)), 422, "invalid_zip")


def test_zip_without_images_is_422(client, make_user):
    _, token = make_user()
    assert_error(upload(client, token, zip_bytes({"a.txt": b"x", "b.pdf": b"%PDF"})), 422, "no_images")


def test_limits_from_the_directory_are_413(client, make_user, app):
    _, token = make_user()
    rt = app.extensions["wardrobe"]
    app.extensions["wardrobe"] = type(rt)(settings=replace(rt.settings, max_entries=3), storage=rt.storage)
    assert_error(upload(client, token, zip_bytes({f"{i}.jpg": jpeg_bytes() for i in range(4)})), 413, "too_many_entries")
    app.extensions["wardrobe"] = type(rt)(settings=replace(rt.settings, max_total_uncompressed_bytes=10_000), storage=rt.storage)
    assert_error(upload(client, token, zip_bytes({"big.jpg": b"\0" * 20_000})), 413, "zip_too_large")
    app.extensions["wardrobe"] = rt


# --- per entry -----------------------------------------------------------------

def _set_flag(data: bytes, flag: int) -> bytes:
    b = bytearray(data)
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = b.find(sig)
        while i != -1:
            old = struct.unpack_from("<H", b, i + off)[0]
            struct.pack_into("<H", b, i + off, old | flag)
            i = b.find(sig, i + 4)
    return bytes(b)


def test_encrypted_entry_is_refused(make_user, rt):
    uid, _ = make_user()
    data = _set_flag(zip_bytes({"secret.jpg": jpeg_bytes()}), 0x1)
    data = data.replace(b"secret.jpg", b"secret.jpg", 2)
    ok = zip_bytes({"ok.jpg": jpeg_bytes(30, 30, (0, 0, 255))})
    job_id, photos = ingest_zip(rt, uid, data)
    assert photos["secret.jpg"].error_code == "encrypted"
    _, photos2 = ingest_zip(rt, uid, ok)
    assert photos2["ok.jpg"].status == "done"


def test_hostile_names_are_shown_never_used(make_user, rt, tmp_path):
    uid, _ = make_user()
    names = ["../../evil.jpg", "..\\..\\win.jpg", "C:\\photos\\drive.jpg", "/etc/abs.jpg", "ok/\x07bell.jpg"]
    entries = {}
    for i, n in enumerate(names):
        entries[n] = jpeg_bytes(20 + i, 20, (i * 40, 10, 10))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, d in entries.items():
            zf.writestr(zipfile.ZipInfo(n), d)
        link = zipfile.ZipInfo("link.jpg")
        link.external_attr = (0o120777 << 16)  # a symlink entry
        zf.writestr(link, "/etc/passwd")
    job_id, photos = ingest_zip(rt, uid, buf.getvalue())
    assert photos["link.jpg"].error_code == "symlink"
    done = [p for p in photos.values() if p.status == "done"]
    assert len(done) == len(names)
    for p in done:
        assert p.storage_key == f"users/{uid}/photos/{p.id}.jpg"
    assert "../../evil.jpg" in photos and "?" in "".join(photos)  # names kept for display, control characters made printable


def test_zip_bombs_are_stopped_on_the_bytes_read(make_user, rt):
    uid, _ = make_user()
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, 600_000, dtype=np.uint8).tobytes()
    entries = {
        "zeros.jpg": b"\0" * 3_000_000,  # inflates ~1000x
        "big.jpg": noise + noise,  # 1.2 MB, over the per-entry cap
        "nested.jpg": zip_bytes({"inner.jpg": jpeg_bytes()}),
        "fine.jpg": jpeg_bytes(),
    }
    job_id, photos = ingest_zip(rt, uid, zip_bytes(entries), max_compression_ratio=50, max_entry_bytes=1_000_000)
    assert photos["zeros.jpg"].error_code == "compression_ratio"
    assert photos["big.jpg"].error_code == "entry_too_large"
    assert photos["nested.jpg"].error_code == "nested_archive"
    assert photos["fine.jpg"].status == "done"
    assert job_row(job_id).status == "partially_succeeded"


def test_total_inflated_size_is_capped(make_user, rt):
    uid, _ = make_user()
    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 256, 700_000, dtype=np.uint8).tobytes() for _ in range(2))
    job_id, photos = ingest_zip(rt, uid, zip_bytes({"a.jpg": a, "b.jpg": b}), max_total_uncompressed_bytes=1_000_000)
    assert photos["a.jpg"].error_code == "unreadable_image" or photos["a.jpg"].error_code == "not_an_image"
    assert photos["b.jpg"].error_code == "archive_too_large"


def test_lying_size_headers_do_not_inflate_more(make_user, rt):
    """An entry whose headers declare fewer bytes than it holds is cut at the declared size and fails its CRC."""
    uid, _ = make_user()
    real = jpeg_bytes(200, 200)
    data = bytearray(zip_bytes({"liar.jpg": real}))
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        i = data.find(sig)
        struct.pack_into("<I", data, i + off, 100)  # uncompressed size: 100 bytes
    _, photos = ingest_zip(rt, uid, bytes(data))
    assert photos["liar.jpg"].error_code in ("corrupt_entry", "unreadable_image")


def test_content_decides_not_the_extension(make_user, rt):
    uid, _ = make_user()
    png_named_jpg = image_bytes(Image.new("RGB", (30, 20), (0, 200, 0)), "PNG")
    job_id, photos = ingest_zip(rt, uid, zip_bytes({"really-png.jpg": png_named_jpg, "text.png": b"hello world",
                                                   "empty.jpg": b""}))
    assert photos["really-png.jpg"].status == "done"
    assert photos["text.png"].error_code == "not_an_image"
    assert photos["empty.jpg"].error_code == "not_an_image"


def test_decompression_bomb_is_refused_before_decoding(make_user, rt):
    uid, _ = make_user()
    big = image_bytes(Image.new("L", (3000, 3000), 0), "PNG")  # tiny file, 9 Mpx
    _, photos = ingest_zip(rt, uid, zip_bytes({"bomb.png": big}), max_pixels=4_000_000)
    assert photos["bomb.png"].error_code == "too_many_pixels"


def test_large_photo_is_downscaled_to_the_working_size(make_user, rt):
    uid, _ = make_user()
    im = Image.new("RGB", (5000, 2500), (10, 120, 200))
    _, photos = ingest_zip(rt, uid, zip_bytes({"huge.jpg": image_bytes(im, "JPEG", quality=70)}), work_max_side=1024)
    p = photos["huge.jpg"]
    assert (p.width, p.height) == (1024, 512) and (p.original_width, p.original_height) == (5000, 2500)
    assert Image.open(io.BytesIO(rt.storage.get_bytes(p.storage_key))).size == (1024, 512)


def test_originals_are_kept_only_when_asked(make_user, rt):
    uid, _ = make_user()
    raw = image_bytes(Image.new("RGB", (3000, 1000), (10, 120, 200)), "JPEG", quality=70)
    _, photos = ingest_zip(rt, uid, zip_bytes({"big.jpg": raw}), work_max_side=1000)
    assert not rt.storage.exists(f"users/{uid}/originals/{photos['big.jpg'].id}")
    raw2 = image_bytes(Image.new("RGB", (3000, 1000), (200, 60, 10)), "JPEG", quality=70)
    _, photos = ingest_zip(rt, uid, zip_bytes({"big2.jpg": raw2}), work_max_side=1000, keep_originals=True)
    p = photos["big2.jpg"]
    assert rt.storage.get_bytes(f"users/{uid}/originals/{p.id}") == raw2
    assert (p.width, p.original_width) == (1000, 3000)


def _anim_gif() -> bytes:
    frames = [Image.new("P", (40, 30), i) for i in (1, 2, 3)]
    for f, c in zip(frames, ((255, 0, 0), (0, 255, 0), (0, 0, 255))):
        f.putpalette(list(c) * 256)
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def test_every_colour_mode_and_format_becomes_rgb(make_user, rt):
    uid, _ = make_user()
    pal = Image.new("P", (40, 30), 0)
    pal.putpalette([0, 0, 255] + [255, 0, 0] * 255)
    pal.info["transparency"] = 0  # index 0 (blue) is transparent
    g16 = Image.fromarray(np.full((30, 40), 40000, np.uint16))
    entries = {
        "cmyk.jpg": image_bytes(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG"),
        "grey.png": image_bytes(Image.new("L", (40, 30), 128), "PNG"),
        "sixteen.png": image_bytes(g16, "PNG"),
        "palette.png": image_bytes(pal, "PNG", transparency=0),
        "rgba.png": image_bytes(Image.new("RGBA", (40, 30), (255, 0, 0, 0)), "PNG"),
        # a key colour marks transparency (tRNS) in an RGB or grey PNG: optimisers write these
        "rgb-key.png": image_bytes(Image.new("RGB", (40, 30), (0, 0, 0)), "PNG", transparency=(0, 0, 0)),
        "grey-key.png": image_bytes(Image.new("L", (40, 30), 0), "PNG", transparency=0),
        "anim.gif": _anim_gif(),
        "photo.webp": image_bytes(Image.new("RGB", (40, 30), (0, 0, 200)), "WEBP", lossless=True),
    }
    try:
        import pillow_heif  # noqa: F401

        entries["phone.heic"] = image_bytes(Image.new("RGB", (64, 48), (200, 100, 0)), "HEIF")
    except Exception:  # noqa: BLE001
        pytest.fail("pillow-heif is a worker dependency and must be installed")
    job_id, photos = ingest_zip(rt, uid, zip_bytes(entries))
    assert {n: p.status for n, p in photos.items()} == {n: "done" for n in entries}
    px = {n: stored_rgb(rt, p)[15, 20] for n, p in photos.items()}
    assert np.allclose(px["cmyk.jpg"], (255, 0, 0), atol=40)
    assert np.allclose(px["grey.png"], (128, 128, 128), atol=3)
    assert np.allclose(px["sixteen.png"], (155, 155, 155), atol=3)  # 40000/65535 of full scale
    assert np.allclose(px["palette.png"], (255, 255, 255), atol=3)  # transparent -> flattened on white
    assert np.allclose(px["rgba.png"], (255, 255, 255), atol=3)
    assert np.allclose(px["rgb-key.png"], (255, 255, 255), atol=3)  # not the key colour, black
    assert np.allclose(px["grey-key.png"], (255, 255, 255), atol=3)
    assert np.allclose(px["anim.gif"], (255, 0, 0), atol=10)  # the first frame
    assert np.allclose(px["photo.webp"], (0, 0, 200), atol=6)
    assert np.allclose(px["phone.heic"], (200, 100, 0), atol=20)


# PIL transposes that undo each EXIF orientation (what a camera does to the pixels)
_TO_RAW = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_270}


def test_all_eight_exif_orientations_end_upright(make_user, rt):
    uid, _ = make_user()
    upright = np.zeros((60, 90, 3), np.uint8)
    upright[:30, :45] = (255, 0, 0)  # top-left red
    upright[:30, 45:] = (0, 255, 0)  # top-right green
    upright[30:, :45] = (0, 0, 255)  # bottom-left blue
    upright[30:, 45:] = (255, 255, 0)  # bottom-right yellow
    up = Image.fromarray(upright)
    entries = {}
    for k, op in _TO_RAW.items():
        raw = up if op is None else up.transpose(op)
        exif = Image.Exif()
        exif[0x0112] = k
        entries[f"o{k}.jpg"] = image_bytes(raw, "JPEG", quality=95, exif=exif.tobytes())
    job_id, photos = ingest_zip(rt, uid, zip_bytes(entries))
    for k in _TO_RAW:
        p = photos[f"o{k}.jpg"]
        assert (p.width, p.height) == (90, 60), k
        got = stored_rgb(rt, p)
        for (y, x), colour in {(10, 10): (255, 0, 0), (10, 80): (0, 255, 0), (50, 10): (0, 0, 255), (50, 80): (255, 255, 0)}.items():
            assert np.allclose(got[y, x], colour, atol=40), (k, (y, x), got[y, x])
    # the masks and cut-outs are computed on the upright photo: the fake's ellipse sits where it should
    with session_scope() as s:
        item = s.scalar(select(Item).where(Item.photo_id == photos["o6.jpg"].id, Item.class_id == 2))
    x1, y1, x2, y2 = item.bbox
    assert x2 - x1 > y2 - y1  # wide, like the upright photo


def test_same_photo_twice_is_processed_once(make_user, rt):
    uid, _ = make_user()
    a = example_photos(1)
    name, data = next(iter(a.items()))
    job1, photos1 = ingest_zip(rt, uid, zip_bytes({name: data, "copy-" + name: data}))
    assert sorted(p.status for p in photos1.values()) == ["done", "duplicate"]
    j = job_row(job1)
    assert j.status == "succeeded" and (j.photos_done, j.photos_duplicate, j.items_found) == (1, 1, 2)
    original = next(p for p in photos1.values() if p.status == "done")
    assert next(p for p in photos1.values() if p.status == "duplicate").duplicate_of == original.id
    job2, photos2 = ingest_zip(rt, uid, zip_bytes({"again.jpg": data}))
    assert photos2["again.jpg"].status == "duplicate" and photos2["again.jpg"].duplicate_of == original.id
    assert job_row(job2).status == "succeeded"
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Item).where(Item.user_id == uid)) == 2
    # another user's identical photo is theirs, processed for them
    other, _ = make_user()
    _, photos3 = ingest_zip(rt, other, zip_bytes({"mine.jpg": data}))
    assert photos3["mine.jpg"].status == "done"


def test_duplicates_are_reported_on_the_job(client, make_user, rt):
    _, token = make_user()
    photos = example_photos(1)
    (name, data), = photos.items()
    job_id = upload(client, token, zip_bytes({name: data, "dup.jpg": data})).get_json()["id"]
    run_job(rt, job_id)
    job = client.get(f"/v1/jobs/{job_id}", headers=auth(token)).get_json()
    assert job["status"] == "succeeded" and job["progress"]["photos_duplicate"] == 1
    assert job["progress"]["percent"] == 100.0
    assert [d["entry"] for d in job["duplicates"]] == ["dup.jpg"]
    assert job["errors"] == []


def test_entry_with_a_nul_name(client, make_user, rt):
    """A name starting with a NUL byte reads as empty: found by the fuzzer, once a crash in both API and worker."""
    _, token = make_user()
    data = bytearray(zip_bytes({"Xphoto.jpg": jpeg_bytes(), "ok.jpg": jpeg_bytes(30, 30, (0, 90, 0))}))
    for sig, name_at in ((b"PK\x03\x04", 30), (b"PK\x01\x02", 46)):
        i = data.find(sig)
        assert data[i + name_at : i + name_at + 1] == b"X"
        data[i + name_at] = 0
    resp = upload(client, token, bytes(data))
    assert resp.status_code == 202, resp.get_data(as_text=True)
    run_job(rt, resp.get_json()["id"])
    job = client.get(f"/v1/jobs/{resp.get_json()['id']}", headers=auth(token)).get_json()
    assert job["status"] == "succeeded" and job["progress"]["photos_done"] == 2


def test_broken_metadata_is_one_photos_business_not_the_jobs(make_user, rt):
    """A JPEG whose EXIF block is not TIFF (Pillow raises SyntaxError on reading it when the file has
    a JFIF DPI) and a PNG with a comment too long for a JPEG COM marker: each raised out of the
    decoder, the ingest task retried and then failed the whole job at that entry. Their pixels are
    fine: both photos are kept, upright as they are, and the others are untouched."""
    from PIL.PngImagePlugin import PngInfo

    uid, _ = make_user()
    bad_exif = image_bytes(Image.new("RGB", (64, 48), (200, 30, 30)), "JPEG", dpi=(72, 72), exif=b"Exif\x00\x00JUNKJUNK")
    big_bad_exif = image_bytes(Image.new("RGB", (3000, 2000), (30, 30, 200)), "JPEG", dpi=(72, 72),
                               exif=b"Exif\x00\x00JUNKJUNK")
    notes = PngInfo()
    notes.add_text("comment", "x" * 70_000)
    long_comment = image_bytes(Image.new("RGB", (40, 30), (30, 200, 30)), "PNG", pnginfo=notes)
    job_id, photos = ingest_zip(rt, uid, zip_bytes({"a-good.jpg": jpeg_bytes(), "b-exif.jpg": bad_exif,
                                                   "c-big-exif.jpg": big_bad_exif, "d-comment.png": long_comment,
                                                   "e-good.jpg": jpeg_bytes(color=(90, 90, 90))}))
    assert job_row(job_id).status == "succeeded"
    assert {n: p.status for n, p in photos.items()} == dict.fromkeys(
        ["a-good.jpg", "b-exif.jpg", "c-big-exif.jpg", "d-comment.png", "e-good.jpg"], "done")
    assert stored_rgb(rt, photos["d-comment.png"])[15, 20].tolist() == pytest.approx([30, 200, 30], abs=6)
    assert (photos["c-big-exif.jpg"].width, photos["c-big-exif.jpg"].height)[0] > photos["c-big-exif.jpg"].height
    assert b"x" * 100 not in rt.storage.get_bytes(photos["d-comment.png"].storage_key)  # no comment copied


def test_a_decoder_surprise_fails_that_photo_only(make_user, rt, monkeypatch):
    """Whatever a decoder raises on one photo's bytes is that photo's error (unreadable_image), never a
    retried and then failed job."""
    uid, _ = make_user()
    odd = image_bytes(Image.new("RGB", (41, 31), (9, 9, 9)), "PNG")
    real = Image.Image.save

    def surprised(im, fp, format=None, **params):  # the working JPEG's encoder, on this photo only
        if im.size == (41, 31):
            raise OSError("an encoder's surprise")
        return real(im, fp, format, **params)

    monkeypatch.setattr(Image.Image, "save", surprised)
    job_id, photos = ingest_zip(rt, uid, zip_bytes({"good.jpg": jpeg_bytes(), "odd.png": odd}))
    assert photos["odd.png"].status == "failed" and photos["odd.png"].error_code == "unreadable_image"
    assert photos["good.jpg"].status == "done" and job_row(job_id).status == "partially_succeeded"


def test_a_dark_16_bit_photo_stays_dark(make_user, rt):
    """A 16-bit grey photo whose values are all at most 255 (of 65535) is nearly black; it was read
    as 8-bit and came out light grey (200 of 255)."""
    uid, _ = make_user()
    dark = image_bytes(Image.fromarray(np.full((30, 40), 200, np.uint16)), "PNG")
    bright = image_bytes(Image.fromarray(np.full((30, 40), 50_000, np.uint16)), "PNG")
    _, photos = ingest_zip(rt, uid, zip_bytes({"dark.png": dark, "bright.png": bright}))
    assert stored_rgb(rt, photos["dark.png"])[15, 20].tolist() == pytest.approx([1, 1, 1], abs=3)
    assert stored_rgb(rt, photos["bright.png"])[15, 20].tolist() == pytest.approx([195, 195, 195], abs=3)


def test_the_tasks_time_running_out_is_not_the_photos_fault(monkeypatch):
    """Celery's soft time limit is raised wherever the task is: in the decoder it must go up to the
    ingest task (which retries from this entry), not fail a good photo as unreadable."""
    from celery.exceptions import SoftTimeLimitExceeded

    from worker.images import decode_photo

    data = image_bytes(Image.new("RGB", (41, 31), (9, 9, 9)), "PNG")

    def out_of_time(*_a, **_k):
        raise SoftTimeLimitExceeded()

    for where in ("save", "load"):
        with monkeypatch.context() as m:
            m.setattr(Image.Image, where, out_of_time)
            with pytest.raises(SoftTimeLimitExceeded):
                decode_photo(data, max_pixels=10_000_000, work_max_side=1024)
