"""billingkit_purchases: one-time purchases (Checkout in payment mode) and their refunds.

Revision ID: bk0007
Revises: bk0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "bk0007"
# The task named bk0001; chained after the head on main (bk0003) so the suite has one head.
# The coordinator re-chains revisions when merging.
down_revision = "bk0006"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


def upgrade() -> None:
    """Create the purchases table, its user and payment-intent indexes."""
    when = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    op.create_table(
        "billingkit_purchases",
        sa.Column("session_id", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("customer_id", sa.String(255), nullable=True),
        sa.Column("plan_key", sa.String(255), nullable=True),
        sa.Column("payment_intent_id", sa.String(255), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.PrimaryKeyConstraint("session_id", name="pk_billingkit_purchases"),
        **_MYSQL,
    )
    op.create_index(
        "ix_billingkit_purchases_payment_intent_id", "billingkit_purchases", ["payment_intent_id"]
    )
    op.create_index(
        "ix_billingkit_purchases_user_id_created_at",
        "billingkit_purchases",
        ["user_id", "created_at"],
    )


def downgrade() -> None:
    """Drop the purchases table (the purchases in it are lost)."""
    op.drop_table("billingkit_purchases")
