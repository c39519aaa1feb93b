"""billingkit's tables as Django models (app label ``billingkit``, tables ``billingkit_*``).

The database constraints carry the guarantees billingkit relies on, so they hold with any
number of processes and threads:

* ``StoredEvent.id`` is the primary key: an event id is claimed at most once (a duplicate
  insert fails with ``IntegrityError``, never a read-then-write);
* ``StoredCustomer`` has ``customer_id`` as primary key *and* ``user_id`` unique: one Stripe
  customer per user and one user per Stripe customer; a user's former customers (deleted at
  Stripe and replaced) move to ``StoredCustomerHistory``;
* ``StoredSubscription.id`` and ``StoredCheckout.session_id`` are primary keys;
* ``StoredInvoice.id`` and ``StoredCharge.key`` are primary keys.
* ``StoredSubscription.id``, ``StoredCheckout.session_id`` and ``StoredPurchase.session_id``
  are primary keys.

Field sizes follow billingkit's SQLAlchemy schema (Stripe ids fit in 255 characters).
Datetimes are stored in UTC (``USE_TZ = True`` is required) to the microsecond.
"""

from __future__ import annotations

from datetime import datetime

from billingkit._optional import requires_extra

with requires_extra("django"):
    from django.db import models

_ID = 255


class StoredCustomer(models.Model):
    """A user of the app linked to a Stripe customer (``billingkit.domain.CustomerLink``)."""

    customer_id: models.CharField[str, str] = models.CharField(max_length=_ID, primary_key=True)
    user_id: models.CharField[str, str] = models.CharField(max_length=_ID, unique=True)
    email: models.CharField[str | None, str | None] = models.CharField(max_length=512, null=True)
    deleted: models.BooleanField[bool, bool] = models.BooleanField(default=False)
    watermark: models.BigIntegerField[int, int] = models.BigIntegerField(default=0)

    class Meta:  # noqa: D106 - Django options
        verbose_name = "customer"

    def __str__(self) -> str:
        return f"{self.user_id} ({self.customer_id})"


class StoredCustomerHistory(models.Model):
    """A user's former link to a deleted Stripe customer, replaced by ``replaced_by``."""

    customer_id: models.CharField[str, str] = models.CharField(max_length=_ID, primary_key=True)
    user_id: models.CharField[str, str] = models.CharField(max_length=_ID, db_index=True)
    email: models.CharField[str | None, str | None] = models.CharField(max_length=512, null=True)
    deleted: models.BooleanField[bool, bool] = models.BooleanField(default=False)
    watermark: models.BigIntegerField[int, int] = models.BigIntegerField(default=0)
    replaced_by: models.CharField[str, str] = models.CharField(max_length=_ID)

    class Meta:  # noqa: D106 - Django options
        verbose_name = "former customer"
        verbose_name_plural = "former customers"

    def __str__(self) -> str:
        return f"{self.user_id} ({self.customer_id}, replaced by {self.replaced_by})"


class StoredSubscription(models.Model):
    """A Stripe subscription's state (``billingkit.domain.Subscription``)."""

    id: models.CharField[str, str] = models.CharField(max_length=_ID, primary_key=True)
    customer_id: models.CharField[str, str] = models.CharField(max_length=_ID, db_index=True)
    user_id: models.CharField[str | None, str | None] = models.CharField(
        max_length=_ID, null=True, db_index=True
    )
    status: models.CharField[str, str] = models.CharField(max_length=32)
    price_id: models.CharField[str | None, str | None] = models.CharField(max_length=_ID, null=True)
    plan_key: models.CharField[str | None, str | None] = models.CharField(max_length=_ID, null=True)
    quantity: models.IntegerField[int, int] = models.IntegerField()
    current_period_start: models.DateTimeField[datetime | None, datetime | None] = (
        models.DateTimeField(null=True)
    )
    current_period_end: models.DateTimeField[datetime | None, datetime | None] = (
        models.DateTimeField(null=True)
    )
    cancel_at_period_end: models.BooleanField[bool, bool] = models.BooleanField()
    cancel_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True
    )
    canceled_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True
    )
    ended_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True
    )
    trial_start: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True
    )
    trial_end: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True
    )
    created: models.DateTimeField[datetime, datetime] = models.DateTimeField(db_index=True)
    livemode: models.BooleanField[bool, bool] = models.BooleanField()
    metadata: models.JSONField = models.JSONField(default=dict)
    watermark: models.BigIntegerField[int, int] = models.BigIntegerField()
    # 0004 (subscription management): the first item's id and the driving schedule.
    item_id: models.CharField[str | None, str | None] = models.CharField(max_length=_ID, null=True)
    schedule_id: models.CharField[str | None, str | None] = models.CharField(
        max_length=_ID, null=True
    )

    class Meta:  # noqa: D106 - Django options
        verbose_name = "subscription"

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"


class StoredCheckout(models.Model):
    """A Checkout Session billingkit started (``billingkit.domain.CheckoutRecord``)."""

    session_id: models.CharField[str, str] = models.CharField(max_length=_ID, primary_key=True)
    user_id: models.CharField[str, str] = models.CharField(max_length=_ID)
    customer_id: models.CharField[str | None, str | None] = models.CharField(
        max_length=_ID, null=True
    )
    plan_key: models.CharField[str, str] = models.CharField(max_length=_ID)
    interval: models.CharField[str, str] = models.CharField(max_length=16)
    mode: models.CharField[str, str] = models.CharField(max_length=16)
    status: models.CharField[str, str] = models.CharField(max_length=16)
    payment_status: models.CharField[str, str] = models.CharField(max_length=32)
    url: models.TextField[str | None, str | None] = models.TextField(null=True)
    expires_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True
    )
    subscription_id: models.CharField[str | None, str | None] = models.CharField(
        max_length=_ID, null=True
    )
    request_key: models.CharField[str, str] = models.CharField(max_length=_ID)
    created_at: models.DateTimeField[datetime, datetime] = models.DateTimeField()

    class Meta:  # noqa: D106 - Django options
        verbose_name = "checkout session"
        indexes = (
            models.Index(
                fields=["user_id", "request_key", "created_at"],
                name="billingkit_checkout_request",
            ),
        )


class StoredEvent(models.Model):
    """One Stripe event in the ledger, with its raw payload (``billingkit.domain.EventRecord``)."""

    id: models.CharField[str, str] = models.CharField(max_length=_ID, primary_key=True)
    type: models.CharField[str, str] = models.CharField(max_length=_ID)
    created: models.DateTimeField[datetime, datetime] = models.DateTimeField()
    livemode: models.BooleanField[bool, bool] = models.BooleanField()
    status: models.CharField[str, str] = models.CharField(max_length=16)
    attempts: models.IntegerField[int, int] = models.IntegerField()
    last_error: models.TextField[str | None, str | None] = models.TextField(null=True)
    payload: models.BinaryField[bytes, bytes | memoryview] = models.BinaryField()
    received_at: models.DateTimeField[datetime, datetime] = models.DateTimeField()
    processed_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True
    )
    #: Deferred mode: when a failed event is due again.
    next_attempt_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True
    )

    class Meta:  # noqa: D106 - Django options
        verbose_name = "ledger event"
        indexes = (
            models.Index(fields=["status", "received_at"], name="billingkit_event_status"),
            models.Index(fields=["received_at", "id"], name="billingkit_event_received"),
            # the drain query: due statuses, oldest ``created`` first
            models.Index(fields=["status", "created"], name="billingkit_event_due"),
        )

    def __str__(self) -> str:
        return f"{self.id} ({self.type})"


class StoredInvoice(models.Model):
    """An invoice summary (``billingkit.domain.invoices.InvoiceSummary``, flat form).

    The amounts are minor units of ``currency`` (``invoice_to_columns``).
    """

    id: models.CharField[str, str] = models.CharField(max_length=_ID, primary_key=True)
    customer_id: models.CharField[str | None, str | None] = models.CharField(
        max_length=_ID, null=True, db_index=True
    )
    user_id: models.CharField[str | None, str | None] = models.CharField(
        max_length=_ID, null=True, db_index=True
    )
    number: models.CharField[str | None, str | None] = models.CharField(max_length=_ID, null=True)
    status: models.CharField[str, str] = models.CharField(max_length=16)
    billing_reason: models.CharField[str | None, str | None] = models.CharField(
        max_length=_ID, null=True
    )
    subscription_id: models.CharField[str | None, str | None] = models.CharField(
        max_length=_ID, null=True
    )
    period_start: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True
    )
    period_end: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True
    )
    currency: models.CharField[str | None, str | None] = models.CharField(max_length=3, null=True)
    total: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(null=True)
    amount_due: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(null=True)
    amount_paid: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(null=True)
    amount_remaining: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(
        null=True
    )
    created: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True
    )
    hosted_invoice_url: models.TextField[str | None, str | None] = models.TextField(null=True)
    invoice_pdf: models.TextField[str | None, str | None] = models.TextField(null=True)
    lines: models.JSONField = models.JSONField(default=list)
    attempt_count: models.IntegerField[int | None, int | None] = models.IntegerField(null=True)
    next_payment_attempt: models.DateTimeField[datetime | None, datetime | None] = (
        models.DateTimeField(null=True)
    )
    payment_intent_id: models.CharField[str | None, str | None] = models.CharField(
        max_length=_ID, null=True
    )
    charge_id: models.CharField[str | None, str | None] = models.CharField(
        max_length=_ID, null=True
    )
    livemode: models.BooleanField[bool, bool] = models.BooleanField()
    watermark: models.BigIntegerField[int, int] = models.BigIntegerField()

    class Meta:  # noqa: D106 - Django options
        verbose_name = "invoice"

    def __str__(self) -> str:
        return f"{self.number or self.id} ({self.status})"


class StoredCharge(models.Model):
    """One payment (``billingkit.domain.invoices.ChargeRecord``, flat form)."""

    key: models.CharField[str, str] = models.CharField(max_length=_ID, primary_key=True)
    charge_id: models.CharField[str | None, str | None] = models.CharField(
        max_length=_ID, null=True
    )
    payment_intent_id: models.CharField[str | None, str | None] = models.CharField(
        max_length=_ID, null=True
    )
    invoice_id: models.CharField[str | None, str | None] = models.CharField(
        max_length=_ID, null=True, db_index=True
    )
    customer_id: models.CharField[str | None, str | None] = models.CharField(
        max_length=_ID, null=True
    )
    amount: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(null=True)
    currency: models.CharField[str | None, str | None] = models.CharField(max_length=3, null=True)
    amount_refunded: models.BigIntegerField[int, int] = models.BigIntegerField()
    refunded: models.BooleanField[bool, bool] = models.BooleanField()
    created: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True
    )

    class Meta:  # noqa: D106 - Django options
        verbose_name = "charge"

    def __str__(self) -> str:
        return f"{self.key} (refunded {self.amount_refunded})"


class StoredReconcileCheckpoint(models.Model):
    """Where an interrupted reconcile stopped (``domain.reconcile.ReconcileCheckpoint``)."""

    name: models.CharField[str, str] = models.CharField(max_length=100, primary_key=True)
    scope: models.CharField[str, str] = models.CharField(max_length=512)
    starting_after: models.CharField[str, str] = models.CharField(max_length=_ID)
    counts: models.JSONField = models.JSONField()
    updated_at: models.DateTimeField[datetime, datetime] = models.DateTimeField()

    class Meta:  # noqa: D106 - Django options
        verbose_name = "reconcile checkpoint"

    def __str__(self) -> str:
        return f"{self.name} (after {self.starting_after})"


class StoredPurchase(models.Model):
    """A one-time purchase (``billingkit.domain.Purchase``): Checkout in payment mode."""

    session_id: models.CharField[str, str] = models.CharField(max_length=_ID, primary_key=True)
    user_id: models.CharField[str, str] = models.CharField(max_length=_ID)
    customer_id: models.CharField[str | None, str | None] = models.CharField(
        max_length=_ID, null=True
    )
    plan_key: models.CharField[str | None, str | None] = models.CharField(max_length=_ID, null=True)
    payment_intent_id: models.CharField[str | None, str | None] = models.CharField(
        max_length=_ID, null=True, db_index=True
    )
    amount: models.BigIntegerField[int, int] = models.BigIntegerField()
    currency: models.CharField[str, str] = models.CharField(max_length=3)
    amount_refunded: models.BigIntegerField[int, int] = models.BigIntegerField(default=0)
    status: models.CharField[str, str] = models.CharField(max_length=32)
    created_at: models.DateTimeField[datetime, datetime] = models.DateTimeField()

    class Meta:  # noqa: D106 - Django options
        verbose_name = "one-time purchase"
        indexes = (models.Index(fields=["user_id", "created_at"], name="billingkit_purchase_user"),)

    def __str__(self) -> str:
        return f"{self.session_id} ({self.user_id}, {self.status})"


class StoredPaymentMethod(models.Model):
    """A customer's payment method (``billingkit.domain.payment_methods.PaymentMethodSummary``)."""

    id: models.CharField[str, str] = models.CharField(max_length=_ID, primary_key=True)
    customer_id: models.CharField[str | None, str | None] = models.CharField(
        max_length=_ID, null=True, db_index=True
    )
    type: models.CharField[str, str] = models.CharField(max_length=64)
    card_brand: models.CharField[str | None, str | None] = models.CharField(
        max_length=64, null=True
    )
    last4: models.CharField[str | None, str | None] = models.CharField(max_length=16, null=True)
    exp_month: models.IntegerField[int | None, int | None] = models.IntegerField(null=True)
    exp_year: models.IntegerField[int | None, int | None] = models.IntegerField(null=True)
    wallet: models.CharField[str | None, str | None] = models.CharField(max_length=64, null=True)
    detached: models.BooleanField[bool, bool] = models.BooleanField(default=False)
    created: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True
    )
    watermark: models.BigIntegerField[int, int] = models.BigIntegerField(default=0)

    class Meta:  # noqa: D106 - Django options
        verbose_name = "payment method"

    def __str__(self) -> str:
        return f"{self.id} ({self.card_brand or self.type} {self.last4 or ''})".strip()


class StoredDefaultPaymentMethod(models.Model):
    """Which payment method is a customer's default (``DefaultPaymentMethod``)."""

    customer_id: models.CharField[str, str] = models.CharField(max_length=_ID, primary_key=True)
    payment_method_id: models.CharField[str | None, str | None] = models.CharField(
        max_length=_ID, null=True
    )
    watermark: models.BigIntegerField[int, int] = models.BigIntegerField(default=0)

    class Meta:  # noqa: D106 - Django options
        verbose_name = "default payment method"

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.payment_method_id}"


class StoredEntitlements(models.Model):
    """A customer's active Stripe entitlement lookup keys (``EntitlementSummary``)."""

    customer_id: models.CharField[str, str] = models.CharField(max_length=_ID, primary_key=True)
    lookup_keys: models.JSONField[list[str], list[str]] = models.JSONField(default=list)
    watermark: models.BigIntegerField[int, int] = models.BigIntegerField(default=0)

    class Meta:  # noqa: D106 - Django options
        verbose_name = "entitlement summary"
        verbose_name_plural = "entitlement summaries"

    def __str__(self) -> str:
        return f"{self.customer_id}: {', '.join(self.lookup_keys)}"


class StoredUsage(models.Model):
    """One metered usage record in the outbox (``billingkit.domain.usage.UsageRecord``).

    ``identifier`` (the meter event's identifier at Stripe) is the primary key: recording it
    twice stores it once.
    """

    identifier: models.CharField[str, str] = models.CharField(max_length=100, primary_key=True)
    user_id: models.CharField[str, str] = models.CharField(max_length=_ID)
    event_name: models.CharField[str, str] = models.CharField(max_length=100)
    value: models.BigIntegerField[int, int] = models.BigIntegerField()
    timestamp: models.DateTimeField[datetime, datetime] = models.DateTimeField()
    recorded_at: models.DateTimeField[datetime, datetime] = models.DateTimeField()
    status: models.CharField[str, str] = models.CharField(max_length=16)
    attempts: models.IntegerField[int, int] = models.IntegerField()
    last_error: models.TextField[str | None, str | None] = models.TextField(null=True)
    #: When a failed record is due again, or when the lease of a sending one ends.
    next_attempt_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True
    )
    sent_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True
    )

    class Meta:  # noqa: D106 - Django options
        verbose_name = "usage record"
        indexes = (
            # the flush query: due statuses, oldest first
            models.Index(fields=["status", "recorded_at"], name="billingkit_usage_due"),
            # a user's usage of one meter in a period
            models.Index(
                fields=["user_id", "event_name", "timestamp"], name="billingkit_usage_user"
            ),
        )

    def __str__(self) -> str:
        return f"{self.identifier} ({self.event_name} x {self.value})"
