"""Subscription management: a subscription's item id and schedule id.

``item_id`` (``si_...``) lets a plan or seat change be one Stripe request; ``schedule_id``
names the subscription schedule of a change scheduled for the period end. Both nullable:
rows stored before this revision get them from the next event or are fetched once.

Revision ID: bk0005
Revises: bk0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "bk0005"
down_revision = "bk0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``item_id`` and ``schedule_id`` to ``billingkit_subscriptions``."""
    with op.batch_alter_table("billingkit_subscriptions") as batch:
        batch.add_column(sa.Column("item_id", sa.String(255), nullable=True))
        batch.add_column(sa.Column("schedule_id", sa.String(255), nullable=True))


def downgrade() -> None:
    """Drop the two columns."""
    with op.batch_alter_table("billingkit_subscriptions") as batch:
        batch.drop_column("schedule_id")
        batch.drop_column("item_id")
