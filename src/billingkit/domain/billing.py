"""Customers, subscriptions, checkout sessions and ledger entries as billingkit stores them."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Literal

from pydantic import Field, NonNegativeInt

from billingkit.domain._base import UTCDateTime, Value
from billingkit.domain.plans import Interval

__all__ = [
    "LIVE_STATUSES",
    "TERMINAL_STATUSES",
    "CheckoutRecord",
    "CustomerLink",
    "EventRecord",
    "EventStatus",
    "Subscription",
    "SubscriptionStatus",
]


class SubscriptionStatus(str, Enum):
    """All eight statuses a Stripe subscription can have."""

    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    UNPAID = "unpaid"
    PAUSED = "paused"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        """A terminal subscription never changes status again."""
        return self in TERMINAL_STATUSES


#: Statuses a subscription never leaves.
TERMINAL_STATUSES = frozenset({SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED})
#: Statuses that count as "already subscribed" for a new checkout.
LIVE_STATUSES = frozenset(set(SubscriptionStatus) - TERMINAL_STATUSES)


class CustomerLink(Value):
    """The app's ``user_id`` tied to a Stripe customer id; unique in both directions."""

    user_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    email: str | None = None
    deleted: bool = False
    #: Unix seconds of the newest Stripe event applied to this customer (0: none yet).
    watermark: int = 0


class Subscription(Value):
    """A Stripe subscription's state as billingkit stores it.

    ``price_id``, ``quantity`` and ``item_id`` (its ``si_...`` id, what a price or quantity
    change names) describe the first subscription item; ``schedule_id`` is the subscription
    schedule driving it (a change scheduled for the period end), if any. ``watermark`` is the
    ordering guard: the Unix ``created`` second of the Stripe event that carried this state;
    a stored state is only replaced by one with a higher watermark (ties are resolved by the
    webhook processor), and a terminal state only by another terminal state.
    """

    id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    user_id: str | None = None
    status: SubscriptionStatus
    price_id: str | None = None
    plan_key: str | None = None
    quantity: int = 1
    item_id: str | None = None
    schedule_id: str | None = None
    current_period_start: UTCDateTime | None = None
    current_period_end: UTCDateTime | None = None
    cancel_at_period_end: bool = False
    cancel_at: UTCDateTime | None = None
    canceled_at: UTCDateTime | None = None
    ended_at: UTCDateTime | None = None
    trial_start: UTCDateTime | None = None
    trial_end: UTCDateTime | None = None
    created: UTCDateTime
    livemode: bool = False
    metadata: Mapping[str, str] = Field(default_factory=dict)
    watermark: int = 0

    def same_state(self, other: Subscription) -> bool:
        """Whether both describe the same state, ignoring the watermark and user tie."""
        ignore = {"watermark", "user_id", "plan_key"}
        return self.model_dump(exclude=ignore) == other.model_dump(exclude=ignore)


class CheckoutRecord(Value):
    """A Checkout Session billingkit started (or confirmed) for a user."""

    session_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    customer_id: str | None = None
    plan_key: str
    interval: Interval
    mode: Literal["subscription", "payment"]
    status: Literal["open", "complete", "expired"] = "open"
    payment_status: Literal["paid", "unpaid", "no_payment_required"] = "unpaid"
    url: str | None = None
    expires_at: UTCDateTime | None = None
    subscription_id: str | None = None
    #: Fingerprint of the request inputs, to answer a double submit with the same session.
    request_key: str = ""
    created_at: UTCDateTime


class EventStatus(str, Enum):
    """Where a Stripe event stands in the ledger."""

    PENDING = "pending"  # received and stored, not yet applied (deferred mode)
    PROCESSING = "processing"  # claimed by a worker inside an open unit of work
    PROCESSED = "processed"
    IGNORED = "ignored"  # no handler for its type
    STALE = "stale"  # older than the stored state; nothing changed
    FAILED = "failed"  # its effects were rolled back; a redelivery is processed again
    DEAD = "dead"  # failed ``webhook_max_attempts`` times: never retried automatically

    def __str__(self) -> str:
        return self.value


class EventRecord(Value):
    """One Stripe event in the ledger, with the verified raw payload kept for replay.

    ``attempts`` counts the times it was taken up to be applied (0 while it is pending and
    was never tried); ``next_attempt_at`` is when a failed event is due again (``None``: due
    now, or never for a finished or dead one).
    """

    id: str = Field(min_length=1)
    type: str
    created: UTCDateTime
    livemode: bool = False
    status: EventStatus = EventStatus.PROCESSING
    attempts: NonNegativeInt = 1
    last_error: str | None = None
    payload: bytes = b""
    received_at: UTCDateTime
    processed_at: UTCDateTime | None = None
    next_attempt_at: UTCDateTime | None = None
