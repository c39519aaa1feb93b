"""Metered usage as billingkit keeps it: outbox records waiting for Stripe Billing Meters.

``UsageService.record`` stores a ``UsageRecord`` in the app's unit of work (a
transactional outbox); ``UsageService.flush`` sends due records to Stripe as meter events
under their ``identifier`` (Stripe deduplicates on it) and marks them sent.
"""

from __future__ import annotations

from enum import Enum

from pydantic import Field, NonNegativeInt

from billingkit.domain._base import UTCDateTime, Value

__all__ = ["UsageRecord", "UsageStatus", "UsageTotal"]


class UsageStatus(str, Enum):
    """Where a usage record is on its way to Stripe.

    ``pending`` (never tried) -> ``sending`` (claimed by a flush, until its lease ends) ->
    ``sent``; a failed attempt makes it ``failed`` (due again at ``next_attempt_at``) and
    the failure that reaches the maximum makes it ``dead`` (kept, visible, never sent).
    """

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"

    def __str__(self) -> str:
        return self.value


class UsageRecord(Value):
    """One meter event recorded by the app, stored until Stripe has it.

    ``identifier`` is the meter event's identifier at Stripe (unique per account for at
    least 24 hours there; the primary key here), so sending a record twice is harmless.
    ``value`` is a whole number of units; ``timestamp`` the moment of the usage (Stripe
    accepts events up to 35 days old). ``next_attempt_at`` is when a ``failed`` record is
    due again, or when the lease of a ``sending`` one ends.
    """

    identifier: str = Field(min_length=1, max_length=100)
    user_id: str = Field(min_length=1, max_length=255)
    event_name: str = Field(min_length=1, max_length=100)
    value: NonNegativeInt
    timestamp: UTCDateTime
    recorded_at: UTCDateTime
    status: UsageStatus = UsageStatus.PENDING
    attempts: NonNegativeInt = 0
    last_error: str | None = None
    next_attempt_at: UTCDateTime | None = None
    sent_at: UTCDateTime | None = None


class UsageTotal(Value):
    """What was recorded locally for one user and meter event name in a period.

    ``value`` sums every record of the period (sent or not, dead ones excluded: Stripe will
    never bill them); ``records`` counts them and ``unsent`` those not yet at Stripe.
    """

    value: int = 0
    records: int = 0
    unsent: int = 0
