"""duplicate photos by content hash; idempotency keys for uploads

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('pending', 'done', 'failed')"
NEW_STATUSES = "status IN ('pending', 'done', 'failed', 'duplicate')"
LIVE = sa.text("status IN ('pending', 'done')")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as b:
        b.add_column(sa.Column("photos_duplicate", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("photos") as b:
        b.add_column(sa.Column("duplicate_of", sa.Uuid(), nullable=True))
        b.create_foreign_key("fk_photos_duplicate_of", "photos", ["duplicate_of"], ["id"], ondelete="SET NULL")
        b.drop_constraint("ck_photos_status", type_="check")
        b.create_check_constraint("ck_photos_status", NEW_STATUSES)
    op.create_index("uq_photos_user_sha256_live", "photos", ["user_id", "sha256"], unique=True,
                    postgresql_where=LIVE, sqlite_where=LIVE)
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "key"),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_index("uq_photos_user_sha256_live", table_name="photos")
    op.execute("DELETE FROM photos WHERE status = 'duplicate'")
    with op.batch_alter_table("photos") as b:
        b.drop_constraint("ck_photos_status", type_="check")
        b.create_check_constraint("ck_photos_status", OLD_STATUSES)
        b.drop_constraint("fk_photos_duplicate_of", type_="foreignkey")
        b.drop_column("duplicate_of")
    with op.batch_alter_table("jobs") as b:
        b.drop_column("photos_duplicate")
