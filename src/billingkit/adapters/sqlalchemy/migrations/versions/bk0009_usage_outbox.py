"""Usage-based billing: the ``billingkit_usage`` outbox table.

Revision ID: bk0009
Revises: bk0008
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "bk0009"
down_revision = "bk0008"
branch_labels = None
depends_on = None

_TABLE = "billingkit_usage"


def upgrade() -> None:
    """Create the usage outbox and its two indexes."""
    when = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    op.create_table(
        _TABLE,
        sa.Column("identifier", sa.String(100), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("event_name", sa.String(100), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", when, nullable=False),
        sa.Column("recorded_at", when, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", when, nullable=True),
        sa.Column("sent_at", when, nullable=True),
        sa.PrimaryKeyConstraint("identifier", name="pk_billingkit_usage"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_index("ix_billingkit_usage_status_recorded_at", _TABLE, ["status", "recorded_at"])
    op.create_index(
        "ix_billingkit_usage_user_id_event_name_timestamp",
        _TABLE,
        ["user_id", "event_name", "timestamp"],
    )


def downgrade() -> None:
    """Drop the usage outbox (unsent usage is lost: flush before downgrading)."""
    op.drop_index("ix_billingkit_usage_user_id_event_name_timestamp", table_name=_TABLE)
    op.drop_index("ix_billingkit_usage_status_recorded_at", table_name=_TABLE)
    op.drop_table(_TABLE)
