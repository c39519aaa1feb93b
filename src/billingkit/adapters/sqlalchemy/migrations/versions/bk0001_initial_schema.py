"""billingkit tables: customers, subscriptions, checkouts, event ledger.

Revision ID: bk0001
Revises:
Create Date: 2026-05-09
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "bk0001"
down_revision = None
branch_labels = ("billingkit",)
depends_on = None

_MYSQL: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


def _when(name: str, *, nullable: bool = True) -> sa.Column[object]:
    kind = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    return sa.Column(name, kind, nullable=nullable)


def _id(name: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(255), nullable=nullable)


def upgrade() -> None:
    """Create the four billingkit tables and their indexes."""
    op.create_table(
        "billingkit_customers",
        _id("customer_id"),
        _id("user_id"),
        sa.Column("email", sa.String(512), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("watermark", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name="pk_billingkit_customers"),
        sa.UniqueConstraint("user_id", name="uq_billingkit_customers_user_id"),
        **_MYSQL,
    )
    op.create_table(
        "billingkit_subscriptions",
        _id("id"),
        _id("customer_id"),
        _id("user_id", nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        _id("price_id", nullable=True),
        _id("plan_key", nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        _when("current_period_start"),
        _when("current_period_end"),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        _when("cancel_at"),
        _when("canceled_at"),
        _when("ended_at"),
        _when("trial_start"),
        _when("trial_end"),
        _when("created", nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("watermark", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_billingkit_subscriptions"),
        **_MYSQL,
    )
    op.create_index(
        "ix_billingkit_subscriptions_customer_id", "billingkit_subscriptions", ["customer_id"]
    )
    op.create_index("ix_billingkit_subscriptions_user_id", "billingkit_subscriptions", ["user_id"])
    op.create_table(
        "billingkit_checkouts",
        _id("session_id"),
        _id("user_id"),
        _id("customer_id", nullable=True),
        _id("plan_key"),
        sa.Column("interval", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("payment_status", sa.String(32), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        _when("expires_at"),
        _id("subscription_id", nullable=True),
        _id("request_key"),
        _when("created_at", nullable=False),
        sa.PrimaryKeyConstraint("session_id", name="pk_billingkit_checkouts"),
        **_MYSQL,
    )
    op.create_index(
        "ix_billingkit_checkouts_user_id_request_key_created_at",
        "billingkit_checkouts",
        ["user_id", "request_key", "created_at"],
    )
    op.create_table(
        "billingkit_events",
        _id("id"),
        _id("type"),
        _when("created", nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "payload",
            sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"),
            nullable=False,
        ),
        _when("received_at", nullable=False),
        _when("processed_at"),
        sa.PrimaryKeyConstraint("id", name="pk_billingkit_events"),
        **_MYSQL,
    )
    op.create_index(
        "ix_billingkit_events_status_received_at", "billingkit_events", ["status", "received_at"]
    )
    op.create_index("ix_billingkit_events_received_at", "billingkit_events", ["received_at"])


def downgrade() -> None:
    """Drop the billingkit tables (and everything stored in them)."""
    op.drop_table("billingkit_events")
    op.drop_table("billingkit_checkouts")
    op.drop_table("billingkit_subscriptions")
    op.drop_table("billingkit_customers")
