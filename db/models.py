"""The catalogue's tables. The jobs table is the only truth about progress."""
from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.base import Base, enum_check as _enum_check, utcnow
from db.webhook_tables import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint  # noqa: F401


class JobStatus(str, enum.Enum):
    """Stable, public job states (the API's `status`)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIALLY_SUCCEEDED = "partially_succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"



class ExportStatus(str, enum.Enum):
    """A catalogue export's public states (the API's `status`)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"  # succeeded, and its zip was deleted after WARDROBE_EXPORT_RETENTION


class PhotoStatus(str, enum.Enum):
    PENDING = "pending"  # stored, waiting for segmentation
    DONE = "done"
    FAILED = "failed"  # unreadable entry, or segmentation gave up: error_code says why
    DUPLICATE = "duplicate"  # same bytes as a photo the user already has (duplicate_of); no items of its own


class ItemStatus(str, enum.Enum):
    OK = "ok"
    NOT_GARMENT = "not_garment"  # a user said the model was wrong: kept for training, hidden from the catalogue


UNREVIEWED = "status = 'ok' AND corrected_at IS NULL"  # items no user has looked at yet


class User(Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # items below this confidence need the user's review; null = the deployment's WARDROBE_REVIEW_BELOW
    review_below: Mapped[float | None] = mapped_column(Float)
    # bytes of the user's stored photos (originals too) and cut-outs: moved in the transactions that add
    # or delete their rows (db.quota); uploads' zips and exports are few and summed from their rows
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    __table_args__ = (
        CheckConstraint("review_below IS NULL OR (review_below >= 0 AND review_below <= 1)",
                        name="ck_users_review_below"),
    )

    tokens: Mapped[list["ApiToken"]] = relationship(back_populates="user", cascade="all, delete-orphan")


class ApiToken(Base):
    """Only a SHA-256 of the token is stored; the token itself is shown once."""

    __tablename__ = "api_tokens"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings to tell tokens apart
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship(back_populates="tokens")


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(32), default=JobStatus.QUEUED.value)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    upload_key: Mapped[str] = mapped_column(String(512))
    upload_name: Mapped[str | None] = mapped_column(String(512))
    upload_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    upload_sha256: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    photos_total: Mapped[int] = mapped_column(Integer, default=0)
    photos_done: Mapped[int] = mapped_column(Integer, default=0)
    photos_failed: Mapped[int] = mapped_column(Integer, default=0)
    items_found: Mapped[int] = mapped_column(Integer, default=0)
    photos_duplicate: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ingest_finished: Mapped[bool] = mapped_column(default=False)
    # zip positions of photos the user deleted after the job ended: out of its counts, never read again
    deleted_entries: Mapped[list] = mapped_column(JSON, default=list, server_default="[]")
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        _enum_check("jobs", "status", JobStatus),
        Index("ix_jobs_user_created", "user_id", "created_at"),
        Index("ix_jobs_status_updated", "status", "updated_at"),
        UniqueConstraint("user_id", "idempotency_key", name="uq_jobs_user_idempotency"),
    )


class Photo(Base):
    """One image entry of an uploaded zip, readable or not."""

    __tablename__ = "photos"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    entry_index: Mapped[int] = mapped_column(Integer)  # position in the zip: the re-run key
    entry_name: Mapped[str] = mapped_column(String(1024))  # shown to the user, never used as a path
    status: Mapped[str] = mapped_column(String(16), default=PhotoStatus.PENDING.value)
    storage_key: Mapped[str | None] = mapped_column(String(512))
    sha256: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    original_width: Mapped[int | None] = mapped_column(Integer)
    original_height: Mapped[int | None] = mapped_column(Integer)
    stored_bytes: Mapped[int | None] = mapped_column(BigInteger)  # the stored photo's bytes (and its original's); null before 0011
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    duplicate_of: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("photos.id", ondelete="SET NULL", name="fk_photos_duplicate_of"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        _enum_check("photos", "status", PhotoStatus),
        UniqueConstraint("job_id", "entry_index", name="uq_photos_job_entry"),
        Index("ix_photos_user_sha256", "user_id", "sha256"),
        Index("ix_photos_job_status", "job_id", "status"),
        # one live photo per content hash and user: the same bytes uploaded again are a duplicate
        Index("uq_photos_user_sha256_live", "user_id", "sha256", unique=True,
              postgresql_where=text("status IN ('pending', 'done')"), sqlite_where=text("status IN ('pending', 'done')")),
    )


class IdempotencyKey(Base):
    """`Idempotency-Key` of an upload: same key and payload -> the same job."""

    __tablename__ = "idempotency_keys"
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))  # NULL while accepting
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UploadMode(str, enum.Enum):
    """How a resumable upload's bytes travel (the session's public `mode`)."""

    S3_MULTIPART = "s3_multipart"  # the client PUTs parts to presigned URLs, straight into the bucket
    CHUNKED = "chunked"  # the client PATCHes chunks to the API, which appends them (folder storage)


class UploadSessionStatus(str, enum.Enum):
    OPEN = "open"  # bytes still arriving
    ASSEMBLED = "assembled"  # S3: the multipart upload is completed into one object, no job yet (complete refused by a quota)
    COMPLETED = "completed"  # the job exists: job_id


class UploadSession(Base):
    """A resumable upload (api/resumable.py): the zip arrives over many requests, then becomes a job.
    job_id is chosen at creation so that the S3 object lands at its job's key; the job row exists
    only once the session is completed (hence no foreign key)."""

    __tablename__ = "upload_sessions"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=UploadSessionStatus.OPEN.value)
    filename: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(BigInteger)  # declared at creation
    sha256: Mapped[str | None] = mapped_column(String(64))  # declared by the client, if it did
    part_size: Mapped[int | None] = mapped_column(BigInteger)  # S3: every part but the last is this long
    object_key: Mapped[str] = mapped_column(String(512))  # S3: the job's upload key; chunked: the partial file
    multipart_id: Mapped[str | None] = mapped_column(String(1024))  # S3's UploadId while the upload is open
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        _enum_check("upload_sessions", "mode", UploadMode),
        _enum_check("upload_sessions", "status", UploadSessionStatus),
        Index("ix_upload_sessions_user_created", "user_id", "created_at"),
        Index("ix_upload_sessions_expires", "expires_at"),
    )


class Item(Base):
    """One garment instance found on a photo."""

    __tablename__ = "items"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    photo_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    instance_index: Mapped[int] = mapped_column(SmallInteger)  # order within the photo's detections
    class_id: Mapped[int] = mapped_column(SmallInteger)
    category: Mapped[str] = mapped_column(String(64))
    supercategory: Mapped[str] = mapped_column(String(32))
    confidence: Mapped[float] = mapped_column(Float)
    bbox: Mapped[list] = mapped_column(JSON)  # [x1, y1, x2, y2] in stored-photo pixels
    polygons: Mapped[list] = mapped_column(JSON)  # [[[x, y], ...], ...] in stored-photo pixels
    area_fraction: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(128))
    cutout_key: Mapped[str] = mapped_column(String(512))
    cutout_content_type: Mapped[str] = mapped_column(String(32))
    cutout_width: Mapped[int | None] = mapped_column(Integer)  # null on rows made before 0004: the bbox's size
    cutout_height: Mapped[int | None] = mapped_column(Integer)
    cutout_bytes: Mapped[int | None] = mapped_column(BigInteger)  # the stored cut-out's size; null before 0011
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    colors: Mapped[list | None] = mapped_column(JSON)  # [{hex, name, fraction}], largest first
    color: Mapped[str | None] = mapped_column(String(32))  # the dominant colour's name (filterable)
    phash: Mapped[int | None] = mapped_column(BigInteger)  # 64-bit dHash of the cut-out, stored signed
    duplicate_of: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("items.id", ondelete="SET NULL", name="fk_items_duplicate_of"))
    status: Mapped[str] = mapped_column(String(16), default=ItemStatus.OK.value, server_default=ItemStatus.OK.value)
    original_class_id: Mapped[int | None] = mapped_column(SmallInteger)  # the model's class, when a user corrected it
    corrected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # a user corrected or confirmed it
    # the model's other classes for this garment, best first, at most 3: [{class_id, category, confidence}]
    alternatives: Mapped[list | None] = mapped_column(JSON)

    __table_args__ = (
        CheckConstraint("class_id >= 0 AND class_id < 23", name="ck_items_class_id"),
        _enum_check("items", "status", ItemStatus),
        Index("ix_items_user_color", "user_id", "color", "created_at"),
        UniqueConstraint("photo_id", "instance_index", name="uq_items_photo_instance"),
        Index("ix_items_user_created", "user_id", "created_at", "id"),
        Index("ix_items_user_category", "user_id", "category", "created_at"),
        Index("ix_items_user_supercategory", "user_id", "supercategory", "created_at"),
        Index("ix_items_job", "job_id"),
        Index("ix_items_photo", "photo_id"),
        # the review list: a user's unreviewed items, least certain first
        Index("ix_items_user_review", "user_id", "confidence", "id",
              postgresql_where=text(UNREVIEWED), sqlite_where=text(UNREVIEWED)),
    )


class Export(Base):
    """A user's catalogue as a zip (COCO JSON, photos, cut-outs), built by the `wardrobe.export` task.
    This row is the only truth about its progress."""

    __tablename__ = "exports"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=ExportStatus.QUEUED.value)
    photos_total: Mapped[int] = mapped_column(Integer, default=0)
    photos_done: Mapped[int] = mapped_column(Integer, default=0)
    items_total: Mapped[int] = mapped_column(Integer, default=0)
    items_done: Mapped[int] = mapped_column(Integer, default=0)
    storage_key: Mapped[str | None] = mapped_column(String(512))  # set when the zip is stored
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)  # the reaper's clock

    __table_args__ = (
        _enum_check("exports", "status", ExportStatus),
        Index("ix_exports_user_created", "user_id", "created_at"),
        Index("ix_exports_status_updated", "status", "updated_at"),
        # one export in the making per user: a second POST answers the one under way
        Index("uq_exports_user_active", "user_id", unique=True,
              postgresql_where=text("status IN ('queued', 'running')"),
              sqlite_where=text("status IN ('queued', 'running')")),
    )
