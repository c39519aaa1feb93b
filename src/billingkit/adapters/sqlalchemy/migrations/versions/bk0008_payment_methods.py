"""Payment methods, customers' default payment methods and Stripe entitlement summaries.

Revision ID: bk0008
Revises: bk0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "bk0008"
down_revision = "bk0007"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


def upgrade() -> None:
    """Create the payment-method, default-payment-method and entitlement tables."""
    when = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    op.create_table(
        "billingkit_payment_methods",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("customer_id", sa.String(255), nullable=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("card_brand", sa.String(64), nullable=True),
        sa.Column("last4", sa.String(16), nullable=True),
        sa.Column("exp_month", sa.Integer(), nullable=True),
        sa.Column("exp_year", sa.Integer(), nullable=True),
        sa.Column("wallet", sa.String(64), nullable=True),
        sa.Column("detached", sa.Boolean(), nullable=False),
        sa.Column("created", when, nullable=True),
        sa.Column("watermark", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_billingkit_payment_methods"),
        **_MYSQL,
    )
    op.create_index(
        "ix_billingkit_payment_methods_customer_id",
        "billingkit_payment_methods",
        ["customer_id"],
    )
    op.create_table(
        "billingkit_default_payment_methods",
        sa.Column("customer_id", sa.String(255), nullable=False),
        sa.Column("payment_method_id", sa.String(255), nullable=True),
        sa.Column("watermark", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name="pk_billingkit_default_payment_methods"),
        **_MYSQL,
    )
    op.create_table(
        "billingkit_entitlements",
        sa.Column("customer_id", sa.String(255), nullable=False),
        sa.Column("lookup_keys", sa.JSON(), nullable=False),
        sa.Column("watermark", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name="pk_billingkit_entitlements"),
        **_MYSQL,
    )


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("billingkit_entitlements")
    op.drop_table("billingkit_default_payment_methods")
    op.drop_index(
        "ix_billingkit_payment_methods_customer_id", table_name="billingkit_payment_methods"
    )
    op.drop_table("billingkit_payment_methods")
