"""billingkit tables: invoice history and the charges (payments) behind it.

Revision ID: bk0004
Revises: bk0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "bk0004"
down_revision = "bk0003"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


def _when(name: str) -> sa.Column[object]:
    kind = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    return sa.Column(name, kind, nullable=True)


def _id(name: str, *, nullable: bool = True) -> sa.Column[str]:
    return sa.Column(name, sa.String(255), nullable=nullable)


def upgrade() -> None:
    """Create ``billingkit_invoices`` and ``billingkit_charges`` with their indexes."""
    op.create_table(
        "billingkit_invoices",
        _id("id", nullable=False),
        _id("customer_id"),
        _id("user_id"),
        _id("number"),
        sa.Column("status", sa.String(16), nullable=False),
        _id("billing_reason"),
        _id("subscription_id"),
        _when("period_start"),
        _when("period_end"),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("total", sa.BigInteger(), nullable=True),
        sa.Column("amount_due", sa.BigInteger(), nullable=True),
        sa.Column("amount_paid", sa.BigInteger(), nullable=True),
        sa.Column("amount_remaining", sa.BigInteger(), nullable=True),
        _when("created"),
        sa.Column("hosted_invoice_url", sa.Text(), nullable=True),
        sa.Column("invoice_pdf", sa.Text(), nullable=True),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=True),
        _when("next_payment_attempt"),
        _id("payment_intent_id"),
        _id("charge_id"),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("watermark", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_billingkit_invoices"),
        **_MYSQL,
    )
    op.create_index("ix_billingkit_invoices_customer_id", "billingkit_invoices", ["customer_id"])
    op.create_index("ix_billingkit_invoices_user_id", "billingkit_invoices", ["user_id"])
    op.create_table(
        "billingkit_charges",
        _id("key", nullable=False),
        _id("charge_id"),
        _id("payment_intent_id"),
        _id("invoice_id"),
        _id("customer_id"),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        sa.Column("refunded", sa.Boolean(), nullable=False),
        _when("created"),
        sa.PrimaryKeyConstraint("key", name="pk_billingkit_charges"),
        **_MYSQL,
    )
    op.create_index("ix_billingkit_charges_invoice_id", "billingkit_charges", ["invoice_id"])


def downgrade() -> None:
    """Drop both tables (the invoice history is rebuilt by replaying the events)."""
    op.drop_table("billingkit_charges")
    op.drop_table("billingkit_invoices")
