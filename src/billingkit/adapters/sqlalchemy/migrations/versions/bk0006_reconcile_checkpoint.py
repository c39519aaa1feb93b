"""Reconcile: billingkit_reconcile_checkpoints, and subscriptions indexed by created.

The checkpoint table keeps where an interrupted reconcile stopped; reconcile reads the
stored subscriptions one listed page's span of seconds at a time.

Revision ID: bk0006
Revises: bk0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "bk0006"
down_revision = "bk0005"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


def upgrade() -> None:
    """Create the checkpoint table (one row per run name) and index subscriptions' created."""
    updated_at = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    op.create_table(
        "billingkit_reconcile_checkpoints",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("scope", sa.String(512), nullable=False),
        sa.Column("starting_after", sa.String(255), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("updated_at", updated_at, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_billingkit_reconcile_checkpoints"),
        **_MYSQL,
    )
    op.create_index("ix_billingkit_subscriptions_created", "billingkit_subscriptions", ["created"])


def downgrade() -> None:
    """Drop the index and the checkpoint table."""
    op.drop_index("ix_billingkit_subscriptions_created", table_name="billingkit_subscriptions")
    op.drop_table("billingkit_reconcile_checkpoints")
