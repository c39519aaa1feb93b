"""billingkit_customer_history: a user's former customer links (relink_customer).

Revision ID: bk0002
Revises: bk0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "bk0002"
down_revision = "bk0001"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


def upgrade() -> None:
    """Create the customer history table and its user index."""
    op.create_table(
        "billingkit_customer_history",
        sa.Column("customer_id", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("email", sa.String(512), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("watermark", sa.BigInteger(), nullable=False),
        sa.Column("replaced_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name="pk_billingkit_customer_history"),
        **_MYSQL,
    )
    op.create_index(
        "ix_billingkit_customer_history_user_id", "billingkit_customer_history", ["user_id"]
    )


def downgrade() -> None:
    """Drop the customer history table (the former links in it are lost)."""
    op.drop_table("billingkit_customer_history")
