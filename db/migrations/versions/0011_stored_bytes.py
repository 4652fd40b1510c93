"""Stored bytes for the storage quota: users.stored_bytes (photos and cut-outs, moved with their rows),
photos.stored_bytes and items.cutout_bytes (what a delete gives back). Rows made before this revision
have no size: they count as 0 until deleted (their objects' sizes are not known to a migration).
And webhook_endpoints.private_ok: registered at a private address while the API allowed them.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as b:
        b.add_column(sa.Column("stored_bytes", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("photos") as b:
        b.add_column(sa.Column("stored_bytes", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("items") as b:
        b.add_column(sa.Column("cutout_bytes", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("webhook_endpoints") as b:
        b.add_column(sa.Column("private_ok", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as b:
        b.drop_column("private_ok")
    with op.batch_alter_table("items") as b:
        b.drop_column("cutout_bytes")
    with op.batch_alter_table("photos") as b:
        b.drop_column("stored_bytes")
    with op.batch_alter_table("users") as b:
        b.drop_column("stored_bytes")
