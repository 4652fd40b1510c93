"""cut-out size: cut-outs may be scaled down from the bbox (WARDROBE_CUTOUT_MAX_SIDE)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: rows made before this revision have cut-outs the size of their bbox
    with op.batch_alter_table("items") as b:
        b.add_column(sa.Column("cutout_width", sa.Integer(), nullable=True))
        b.add_column(sa.Column("cutout_height", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("items") as b:
        b.drop_column("cutout_height")
        b.drop_column("cutout_width")
