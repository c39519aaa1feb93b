"""Deferred webhook processing: ``next_attempt_at`` on the ledger and the drain index.

Revision ID: bk0003
Revises: bk0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "bk0003"
down_revision = "bk0002"
branch_labels = None
depends_on = None

_INDEX = "ix_billingkit_events_status_created"


def upgrade() -> None:
    """Add ``billingkit_events.next_attempt_at`` and the (status, created) index."""
    kind = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    with op.batch_alter_table("billingkit_events") as batch:
        batch.add_column(sa.Column("next_attempt_at", kind, nullable=True))
    op.create_index(_INDEX, "billingkit_events", ["status", "created"])


def downgrade() -> None:
    """Drop the index and the column (dead events become failed: older code knows no 'dead')."""
    op.execute("UPDATE billingkit_events SET status = 'failed' WHERE status = 'dead'")
    op.drop_index(_INDEX, table_name="billingkit_events")
    with op.batch_alter_table("billingkit_events") as batch:
        batch.drop_column("next_attempt_at")
