"""Settings, read once from the environment (WARDROBE_*). Every knob lives here.

With nothing set, everything runs on one machine with no server: SQLite,
a local storage directory and a filesystem Celery broker under WARDROBE_DATA_DIR.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "models" / "wardrobe-yolov8s-seg.pt"

MiB = 1024 * 1024


TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class SettingError(ValueError):
    """A WARDROBE_* variable whose value the setting cannot take; the message names it."""


def _env(name: str, default):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(default, bool):
        value = raw.strip().lower()
        if value not in TRUE | FALSE:
            raise SettingError(f"{name} must be true or false (1/0, yes/no, on/off), not {raw!r}")
        return value in TRUE
    try:
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        kind = "a whole number" if isinstance(default, int) else "a number"
        raise SettingError(f"{name} must be {kind}, not {raw!r}") from None
    return raw


@dataclass(frozen=True)
class Settings:
    data_dir: str = str(Path.home() / ".local" / "share" / "wardrobe")
    database_url: str = ""  # default: sqlite file in data_dir
    broker_url: str = ""  # default: filesystem transport in data_dir
    storage_url: str = ""  # file:///dir or s3://bucket; default: file in data_dir
    s3_endpoint_url: str = ""  # MinIO, moto or another S3-compatible endpoint; empty for AWS
    s3_region: str = "us-east-1"
    s3_create_bucket: bool = True
    s3_max_attempts: int = 5  # boto3's own retries per call, before the task's retries
    s3_presign_endpoint_url: str = ""  # the S3 endpoint as clients reach it, for presigned part URLs; empty: s3_endpoint_url
    auto_migrate: bool | None = None  # default: on for SQLite only

    # Upload limits (checked at upload from the zip's directory, and again on the bytes read)
    max_upload_bytes: int = 2048 * MiB
    max_entries: int = 5000
    max_entry_bytes: int = 64 * MiB
    max_total_uncompressed_bytes: int = 8192 * MiB
    max_compression_ratio: int = 200
    max_pixels: int = 80_000_000  # decompression-bomb cap, checked before full decode
    work_max_side: int = 2048  # photos are stored and segmented at most this large
    keep_originals: bool = False  # also store the uploaded bytes of photos that were rotated, converted or downscaled
    photo_jpeg_quality: int = 90
    # Resumable uploads (api/resumable.py): sessions that take the zip over many requests
    upload_session_ttl: int = 86400  # seconds a session stays open; then the sweeper drops its parts or chunks
    upload_part_size: int = 8 * MiB  # S3 multipart: bytes per part (at least 5 MiB; larger where 10,000 parts would not do)
    max_upload_sessions: int = 10  # a user's open sessions; one more is 429 (0: no limit)

    # Model and segmentation
    model: str = str(DEFAULT_MODEL)
    segmenter: str = "yolo"  # yolo | module:Class, a segmenter of your own (tests.fakes:FakeSegmenter for the tests)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    backend: str = "auto"  # auto (CPU: shipped OpenVINO int8, else or on AMX the OpenVINO export; GPU: PyTorch) | pytorch | openvino | openvino-int8
    imgsz: int = 0  # 0 = the imgsz in the model card beside the weights (else 640)
    conf: float = 0.0  # an item's least confidence; 0 = the model card's serve_conf (else 0.25)
    iou: float = 0.7
    max_det: int = 100
    # One item per garment: after the model's per-class NMS, a detection whose box overlaps a more
    # confident one's by this IoU, or whose mask lies this much inside it, is the same garment
    # (its class becomes one of the item's alternatives). Shoes are exempt from the mask test:
    # a left and a right shoe often touch.
    merge_box_iou: float = 0.7
    merge_mask_overlap: float = 0.7
    alternatives_conf: float = 0.1  # detections down to this confidence can offer their class as an alternative (lower costs predict time: make bench)
    # a photo none of whose detections reaches its class's threshold keeps its most confident one from
    # this confidence up (0: off): one garment photographed alone, its item then marked for review
    keep_one_conf: float = 0.1
    mask_refine_radius: int = 16  # guided-filter radius in photo pixels (0: masks traced as the model gives them)
    mask_refine_share: float = 0.0  # >0: a thin garment's radius is this share of its box's short side, if smaller (measured worse: 0)
    mask_refine_eps: float = 1e-3
    batch_size: int = 0  # photos per forward pass; 0 = 1 on the CPU, sized to free memory on a GPU
    threads: int = 0  # inference threads per worker process (OpenVINO on the lean path, else torch); 0 = cores / processes
    segment_chunk: int = 16  # photos per segment task
    post_overlap: str = "on"  # post-process on a second thread beside the model: on | off (in turn with it)
    preload_model: bool = True  # load the model when a worker process starts, not on its first task
    cutout_format: str = "webp"  # webp | png
    cutout_quality: int = 80
    cutout_max_side: int = 1024  # cut-outs are scaled down to at most this long side; 0 = the photo's pixels

    # Celery
    task_time_limit: int = 1800
    task_max_retries: int = 5
    visibility_timeout: int = 7200  # must exceed task_time_limit: redelivery after a lost worker
    worker_concurrency: int = 0  # 0 = number of cores
    worker_max_memory_mb: int = 0  # a pool process above this RSS is replaced after its task (0: never)
    reap_interval: int = 15  # seconds between sweeps for stale jobs (workers started with --beat)
    stale_after: int = 60  # a queued/running job that has not moved for this long, with no work left in the broker, gets it re-sent
    worker_metrics_port: int = 0  # a worker answers GET /metrics on this port (its main process; 0: not at all)
    gc_interval: int = 3600  # seconds between sweeps for unreferenced objects and stale temp files (--beat workers; 0: none)
    gc_grace: int = 3600  # an object or temp file younger than this is never swept (an upload or a task may still be writing it)
    upload_retention: int = 0  # seconds an ended job's zip is kept (0: deleted when the job ends; -1: kept for ever)
    # seconds the zip of a job that failed or was cancelled before it was read to its end is kept, so that
    # POST /v1/jobs/<id>/retry can read the rest (-1: for ever); then the sweeper deletes it
    upload_retry_retention: int = 86400
    export_retention: int = 7 * 86400  # seconds a finished export's zip is kept (-1: for ever); then the sweeper deletes it
    export_max_bytes: int = 10 * 2**30  # an export whose zip grows past this fails as export_too_large (0: no cap); it is built on the worker's temp disk

    # API
    secret_key: str = ""  # signs expiring image URLs; empty = generated once and kept in the data dir
    signed_url_ttl: int = 3600  # seconds a signed cut-out or photo URL stays valid
    token_cache_seconds: float = 5.0  # an API process trusts a token it checked this long (0 = check every request)
    allow_signup: bool = False  # let the web page create users (the demo turns it on)
    page_default: int = 50
    page_max: int = 200
    # Per-user limits (0: no limit)
    max_uploads_in_flight: int = 5  # a user's queued or running jobs; one more upload is 429
    max_uploads_per_hour: int = 120  # a user's uploads accepted in the last hour; one more is 429 (Retry-After: when one ages out)
    # a user's stored bytes: photos (and originals), cut-outs, kept upload zips and exports (db.quota). An upload
    # past it is 413, a photo past it fails at ingest, an export past it fails
    max_stored_bytes: int = 20 * 1024 * MiB
    max_exports: int = 2  # a user's kept export zips; one more that succeeds replaces the oldest (0: no limit)
    review_below: float = 0.5  # items below this confidence need review, for users who set no threshold of their own
    # Live progress (GET /v1/jobs/<id>/events, api/events.py)
    events_poll: float = 1.0  # seconds between looks at the jobs table for a stream (one primary-key read; more only when it moved)
    events_max_seconds: int = 300  # a stream ends after this long; the client reconnects with Last-Event-ID and loses nothing
    events_heartbeat: float = 15.0  # seconds between keep-alive comments (proxies close idle connections)
    events_max_streams: int = 8  # open streams per API process; one more is 503 with Retry-After (the client polls instead)
    events_max_streams_per_user: int = 3  # of those, one user's at most; one more is 429 (0: no cap but the process's)
    client_idle_timeout: float = 60.0  # `wardrobe serve` (gevent): a connection that sends or takes nothing this long is closed

    # Webhooks (db.webhooks, worker.webhooks)
    webhook_allow_private: bool = False  # let endpoints resolve to loopback/private/link-local addresses (tests, a private network)
    webhook_timeout: float = 10.0  # seconds one attempt may take in all: connect, send, the answer's status
    # seconds to wait before each retry after a 5xx, 429, timeout or connection error, with +-20 % jitter:
    # Standard Webhooks' suggested schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), then two days more
    webhook_retry_schedule: str = "5,300,1800,7200,18000,36000,36000,86400,86400"
    webhook_progress_interval: float = 5.0  # at most one job.progress event per job and endpoint this often
    webhook_sweep_interval: int = 10  # seconds between sweeps for due retries and lost messages (--beat workers)
    webhook_requeue_after: int = 120  # a due delivery whose task message was sent this long ago is sent again
    webhook_keep_days: int = 30  # finished deliveries and their attempts are listed this long, then deleted
    webhook_max_endpoints: int = 20  # endpoints per user
    log_level: str = "INFO"


    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """The settings from WARDROBE_* variables, then `overrides`. The review default, where the
        deployment sets none, is the served model's (its card's `review_below`, chosen from
        `make quality`: the confidence below which its items are right less often)."""
        values = {}
        for f in fields(cls):
            default = f.default
            if f.name == "auto_migrate":  # unset: decided by the database (see bootup)
                values[f.name] = _env("WARDROBE_AUTO_MIGRATE", False) if os.environ.get("WARDROBE_AUTO_MIGRATE") else None
                continue
            values[f.name] = _env("WARDROBE_" + f.name.upper(), default)
        values.update(overrides)
        if "review_below" not in overrides and not os.environ.get("WARDROBE_REVIEW_BELOW"):
            values["review_below"] = _card_review_below(values["model"], values["review_below"])
        settings = cls(**values)
        _check_retry_schedule(settings.webhook_retry_schedule)
        check_placeholder_secrets(settings)
        return settings

    # Derived values ---------------------------------------------------------
    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_path / 'wardrobe.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_queue_dir(self) -> Path:
        return self.data_path / "broker"

    @property
    def storage(self) -> str:
        return self.storage_url or f"file://{self.data_path / 'objects'}"

    def resolved_secret_key(self) -> bytes:
        if self.secret_key:
            return self.secret_key.encode()
        return _data_dir_key(str(self.data_path))

    @property
    def should_auto_migrate(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate


@functools.lru_cache(maxsize=8)
def _data_dir_key(data_dir: str) -> bytes:
    """The data dir's signing key, made on first use; every process sharing the dir reads the same one."""
    path = Path(data_dir) / "secret_key"
    if not path.exists():
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".secret_key.{os.getpid()}")
        tmp.write_text(secrets.token_hex(32))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # atomic and never overwrites: the first process's key wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_text().strip().encode()


PLACEHOLDER = "change-me"  # how .env.example and deploy/k8s/base/secret.yaml mark the secrets to be chosen


def check_placeholder_secrets(settings: "Settings", environ=None) -> None:
    """Refuse to start with a secret still as the examples ship it (`cp .env.example .env` and nothing
    changed), naming each one: not the API, a worker or the migration, in compose or anywhere else."""
    from urllib.parse import urlsplit

    environ = os.environ if environ is None else environ
    found = []
    if PLACEHOLDER in (settings.secret_key or "").lower():
        found.append("WARDROBE_SECRET_KEY")
    for name, url, compose in (("WARDROBE_DATABASE_URL", settings.database_url, "POSTGRES_PASSWORD"),
                               ("WARDROBE_BROKER_URL", settings.broker_url, None)):
        try:
            password = urlsplit(url or "").password or ""
        except ValueError:
            password = ""
        if PLACEHOLDER in password.lower():
            found.append(f"the password in {name}" + (f" ({compose} in compose's .env)" if compose else ""))
    for name, compose in (("AWS_ACCESS_KEY_ID", "MINIO_ROOT_USER"), ("AWS_SECRET_ACCESS_KEY", "MINIO_ROOT_PASSWORD")):
        if PLACEHOLDER in environ.get(name, "").lower():
            found.append(f"{name} ({compose} in compose's .env)")
    if found:
        raise SettingError(f"placeholder secrets ({PLACEHOLDER}...) left as the example ships them: {'; '.join(found)}. "
                           "Set each to a long random string, e.g. "
                           "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")


def _check_retry_schedule(raw: str) -> None:
    """Refused at start, not when the first webhook attempt fails (after the event was sent)."""
    for part in raw.replace(" ", "").split(","):
        try:
            ok = part == "" or float(part) >= 0
        except ValueError:
            ok = False
        if not ok:
            raise SettingError(f"WARDROBE_WEBHOOK_RETRY_SCHEDULE must be seconds separated by commas, "
                               f"like 30,300,1800, not {raw!r}")


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, type) for every setting: the README's table is checked against it."""
    out = []
    for f in fields(Settings):
        out.append(("WARDROBE_" + f.name.upper(), str(f.default), f.type if isinstance(f.type, str) else f.type.__name__))
    return out


def _card_review_below(model: str, default: float) -> float:
    """The model card's review threshold (a JSON file beside the weights; no model is loaded)."""
    import json

    try:
        value = json.loads(Path(model).with_suffix(".json").read_text()).get("review_below")
    except (OSError, ValueError, AttributeError):
        return default
    return float(value) if isinstance(value, (int, float)) and 0 < value <= 1 else default
