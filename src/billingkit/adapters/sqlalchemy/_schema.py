"""The billingkit tables, in their own ``MetaData``.

Every table name starts with ``billingkit_`` so the tables can live in the app's own
database (and its own Alembic history) without clashing. The constraints carry the
guarantees the services rely on:

* ``billingkit_events.id`` is the primary key: an event id is claimed at most once;
* ``billingkit_customers`` is unique on ``customer_id`` (primary key) *and* on ``user_id``:
  one Stripe customer per user and one user per Stripe customer;
* ``billingkit_subscriptions.id`` and ``billingkit_checkouts.session_id`` are primary keys;
* ``billingkit_invoices.id`` and ``billingkit_charges.key`` are primary keys (one stored
  summary per invoice, one record per payment).

On MySQL/MariaDB the tables use the ``utf8mb4_bin`` collation, because Stripe ids and the
app's user ids are case-sensitive (the default collations are not).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

__all__ = [
    "CHARGES",
    "CHECKOUTS",
    "CUSTOMERS",
    "CUSTOMER_HISTORY",
    "DEFAULT_PAYMENT_METHODS",
    "ENTITLEMENTS",
    "EVENTS",
    "INVOICES",
    "PAYMENT_METHODS",
    "PURCHASES",
    "RECONCILE_CHECKPOINTS",
    "SUBSCRIPTIONS",
    "USAGE",
    "UTCDateTime",
    "metadata",
]

#: The MetaData holding every billingkit table (and nothing else).
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Table options applied on MySQL/MariaDB only (other dialects ignore ``mysql_*`` keys).
_MYSQL_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}

#: Stripe ids are at most 255 characters (Stripe documents 255 as its string limit).
_ID = 255


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime, with microseconds, on every dialect.

    Stored as ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL, as naive UTC elsewhere
    (``DATETIME(6)`` on MySQL/MariaDB); always returned timezone-aware in UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """``DATETIME(6)`` on MySQL/MariaDB (plain ``DATETIME`` drops the microseconds)."""
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Normalise to UTC; naive values are refused (they are ambiguous)."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("billingkit stores timezone-aware datetimes only")
        value = value.astimezone(timezone.utc)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _id(name: str, **kwargs: Any) -> Column[str]:
    return Column(name, String(_ID), **kwargs)


def _when(name: str, *, nullable: bool = True) -> Column[datetime]:
    return Column(name, UTCDateTime(), nullable=nullable)


#: Payloads are kept up to the webhook body limit (1 MiB by default): BLOB (64 KiB) on
#: MySQL/MariaDB would be too small, so LONGBLOB there.
_Payload = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")

CUSTOMERS = Table(
    "billingkit_customers",
    metadata,
    _id("customer_id", primary_key=True),
    _id("user_id", nullable=False, unique=True),
    Column("email", String(512), nullable=True),
    Column("deleted", Boolean(), nullable=False, default=False),
    Column("watermark", BigInteger(), nullable=False, default=0),
    **_MYSQL_OPTIONS,
)

#: A user's former links, moved here by ``relink_customer`` when a deleted Stripe customer is
#: replaced: still found by customer id, still the user's for their subscriptions.
CUSTOMER_HISTORY = Table(
    "billingkit_customer_history",
    metadata,
    _id("customer_id", primary_key=True),
    _id("user_id", nullable=False, index=True),
    Column("email", String(512), nullable=True),
    Column("deleted", Boolean(), nullable=False, default=False),
    Column("watermark", BigInteger(), nullable=False, default=0),
    _id("replaced_by", nullable=False),
    **_MYSQL_OPTIONS,
)

SUBSCRIPTIONS = Table(
    "billingkit_subscriptions",
    metadata,
    _id("id", primary_key=True),
    _id("customer_id", nullable=False, index=True),
    _id("user_id", nullable=True, index=True),
    Column("status", String(32), nullable=False),
    _id("price_id", nullable=True),
    _id("plan_key", nullable=True),
    Column("quantity", Integer(), nullable=False),
    _when("current_period_start"),
    _when("current_period_end"),
    Column("cancel_at_period_end", Boolean(), nullable=False),
    _when("cancel_at"),
    _when("canceled_at"),
    _when("ended_at"),
    _when("trial_start"),
    _when("trial_end"),
    _when("created", nullable=False),
    Column("livemode", Boolean(), nullable=False),
    Column("metadata", JSON(), nullable=False),
    Column("watermark", BigInteger(), nullable=False),
    # bk0005 (subscription management): the first item's id and the driving schedule.
    _id("item_id", nullable=True),
    _id("schedule_id", nullable=True),
    Index(None, "created"),
    **_MYSQL_OPTIONS,
)

CHECKOUTS = Table(
    "billingkit_checkouts",
    metadata,
    _id("session_id", primary_key=True),
    _id("user_id", nullable=False),
    _id("customer_id", nullable=True),
    _id("plan_key", nullable=False),
    Column("interval", String(16), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("payment_status", String(32), nullable=False),
    Column("url", Text(), nullable=True),
    _when("expires_at"),
    _id("subscription_id", nullable=True),
    _id("request_key", nullable=False),
    _when("created_at", nullable=False),
    Index(None, "user_id", "request_key", "created_at"),
    **_MYSQL_OPTIONS,
)

EVENTS = Table(
    "billingkit_events",
    metadata,
    _id("id", primary_key=True),
    _id("type", nullable=False),
    _when("created", nullable=False),
    Column("livemode", Boolean(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer(), nullable=False),
    Column("last_error", Text(), nullable=True),
    Column("payload", _Payload, nullable=False),
    _when("received_at", nullable=False),
    _when("processed_at"),
    # deferred mode (migration bk0003): when a failed event is due again
    _when("next_attempt_at"),
    Index(None, "status", "received_at"),
    Index(None, "received_at"),
    # the drain query: due statuses, oldest ``created`` first
    Index(None, "status", "created"),
    **_MYSQL_OPTIONS,
)

# --------------------------------------------------------------------------- invoices (bk0004)

#: One row per invoice: the flat form of ``billingkit.domain.invoices.InvoiceSummary``
#: (``invoice_to_columns``): amounts in minor units of the one ``currency``.
INVOICES = Table(
    "billingkit_invoices",
    metadata,
    _id("id", primary_key=True),
    _id("customer_id", nullable=True, index=True),
    _id("user_id", nullable=True, index=True),
    _id("number", nullable=True),
    Column("status", String(16), nullable=False),
    _id("billing_reason", nullable=True),
    _id("subscription_id", nullable=True),
    _when("period_start"),
    _when("period_end"),
    Column("currency", String(3), nullable=True),
    Column("total", BigInteger(), nullable=True),
    Column("amount_due", BigInteger(), nullable=True),
    Column("amount_paid", BigInteger(), nullable=True),
    Column("amount_remaining", BigInteger(), nullable=True),
    _when("created"),
    Column("hosted_invoice_url", Text(), nullable=True),
    Column("invoice_pdf", Text(), nullable=True),
    Column("lines", JSON(), nullable=False),
    Column("attempt_count", Integer(), nullable=True),
    _when("next_payment_attempt"),
    _id("payment_intent_id", nullable=True),
    _id("charge_id", nullable=True),
    Column("livemode", Boolean(), nullable=False),
    Column("watermark", BigInteger(), nullable=False),
    **_MYSQL_OPTIONS,
)

#: One row per payment (``billingkit.domain.invoices.ChargeRecord``), keyed by its payment
#: intent id (else its charge id); an invoice's refunded amount sums its rows.
CHARGES = Table(
    "billingkit_charges",
    metadata,
    _id("key", primary_key=True),
    _id("charge_id", nullable=True),
    _id("payment_intent_id", nullable=True),
    _id("invoice_id", nullable=True, index=True),
    _id("customer_id", nullable=True),
    Column("amount", BigInteger(), nullable=True),
    Column("currency", String(3), nullable=True),
    Column("amount_refunded", BigInteger(), nullable=False),
    Column("refunded", Boolean(), nullable=False),
    _when("created"),
    **_MYSQL_OPTIONS,
)

RECONCILE_CHECKPOINTS = Table(
    "billingkit_reconcile_checkpoints",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("scope", String(512), nullable=False),
    _id("starting_after", nullable=False),
    Column("counts", JSON(), nullable=False),
    _when("updated_at", nullable=False),
    **_MYSQL_OPTIONS,
)

#: One-time purchases (Checkout in payment mode), keyed by session; refunds find them by
#: payment intent (migration bk0007).
PURCHASES = Table(
    "billingkit_purchases",
    metadata,
    _id("session_id", primary_key=True),
    _id("user_id", nullable=False),
    _id("customer_id", nullable=True),
    _id("plan_key", nullable=True),
    _id("payment_intent_id", nullable=True, index=True),
    Column("amount", BigInteger(), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_refunded", BigInteger(), nullable=False),
    Column("status", String(32), nullable=False),
    _when("created_at", nullable=False),
    Index(None, "user_id", "created_at"),
    **_MYSQL_OPTIONS,
)

# payment methods and entitlements (migration bk0008) -------------------------------------

PAYMENT_METHODS = Table(
    "billingkit_payment_methods",
    metadata,
    _id("id", primary_key=True),
    _id("customer_id", nullable=True, index=True),
    Column("type", String(64), nullable=False),
    Column("card_brand", String(64), nullable=True),
    Column("last4", String(16), nullable=True),
    Column("exp_month", Integer(), nullable=True),
    Column("exp_year", Integer(), nullable=True),
    Column("wallet", String(64), nullable=True),
    Column("detached", Boolean(), nullable=False),
    _when("created"),
    Column("watermark", BigInteger(), nullable=False),
    **_MYSQL_OPTIONS,
)

DEFAULT_PAYMENT_METHODS = Table(
    "billingkit_default_payment_methods",
    metadata,
    _id("customer_id", primary_key=True),
    _id("payment_method_id", nullable=True),
    Column("watermark", BigInteger(), nullable=False),
    **_MYSQL_OPTIONS,
)

ENTITLEMENTS = Table(
    "billingkit_entitlements",
    metadata,
    _id("customer_id", primary_key=True),
    Column("lookup_keys", JSON(), nullable=False),
    Column("watermark", BigInteger(), nullable=False),
    **_MYSQL_OPTIONS,
)


#: The usage outbox (migration bk0009): metered usage recorded in the app's transaction,
#: waiting to be sent to Stripe as meter events. ``identifier`` (Stripe's limit: 100) is the
#: primary key, so recording an identifier twice stores it once.
USAGE = Table(
    "billingkit_usage",
    metadata,
    Column("identifier", String(100), primary_key=True),
    _id("user_id", nullable=False),
    Column("event_name", String(100), nullable=False),
    Column("value", BigInteger(), nullable=False),
    _when("timestamp", nullable=False),
    _when("recorded_at", nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer(), nullable=False),
    Column("last_error", Text(), nullable=True),
    # when a failed record is due again, or when the lease of a sending one ends
    _when("next_attempt_at"),
    _when("sent_at"),
    # the flush query: due statuses, oldest first
    Index(None, "status", "recorded_at"),
    # CustomerDetails-style reads: a user's usage of one meter in a period
    Index(None, "user_id", "event_name", "timestamp"),
    **_MYSQL_OPTIONS,
)
