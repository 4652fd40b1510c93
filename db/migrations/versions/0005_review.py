"""review: the model's alternative classes per item, a per-user review threshold

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UNREVIEWED = sa.text("status = 'ok' AND corrected_at IS NULL")


def upgrade() -> None:
    # both nullable: rows made before this revision have no alternatives, and a user with no
    # threshold of their own follows WARDROBE_REVIEW_BELOW
    with op.batch_alter_table("items") as b:
        b.add_column(sa.Column("alternatives", sa.JSON(), nullable=True))
    op.create_index("ix_items_user_review", "items", ["user_id", "confidence", "id"],
                    postgresql_where=UNREVIEWED, sqlite_where=UNREVIEWED)
    with op.batch_alter_table("users") as b:
        b.add_column(sa.Column("review_below", sa.Float(), nullable=True))
        b.create_check_constraint("ck_users_review_below",
                                  "review_below IS NULL OR (review_below >= 0 AND review_below <= 1)")


def downgrade() -> None:
    with op.batch_alter_table("users") as b:
        b.drop_constraint("ck_users_review_below", type_="check")
        b.drop_column("review_below")
    op.drop_index("ix_items_user_review", table_name="items")
    with op.batch_alter_table("items") as b:
        b.drop_column("alternatives")
