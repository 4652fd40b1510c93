"""item colours, perceptual hashes and near-duplicates, user corrections

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items") as b:
        b.add_column(sa.Column("colors", sa.JSON(), nullable=True))
        b.add_column(sa.Column("color", sa.String(length=32), nullable=True))
        b.add_column(sa.Column("phash", sa.BigInteger(), nullable=True))
        b.add_column(sa.Column("duplicate_of", sa.Uuid(), nullable=True))
        b.add_column(sa.Column("status", sa.String(length=16), server_default="ok", nullable=False))
        b.add_column(sa.Column("original_class_id", sa.SmallInteger(), nullable=True))
        b.add_column(sa.Column("corrected_at", sa.DateTime(timezone=True), nullable=True))
        b.create_foreign_key("fk_items_duplicate_of", "items", ["duplicate_of"], ["id"], ondelete="SET NULL")
        b.create_check_constraint("ck_items_status", "status IN ('ok', 'not_garment')")
        b.create_index("ix_items_user_color", ["user_id", "color", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("items") as b:
        b.drop_index("ix_items_user_color")
        b.drop_constraint("ck_items_status", type_="check")
        b.drop_constraint("fk_items_duplicate_of", type_="foreignkey")
        for col in ("corrected_at", "original_class_id", "status", "duplicate_of", "phash", "color", "colors"):
            b.drop_column(col)
