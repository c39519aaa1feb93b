"""Ordering rules: when a newer Stripe state replaces a stored one.

The watermark rule is what every repository's ``save_subscription`` implements atomically;
the checkout rule moves a stored Checkout Session forward, never back. See
``docs/webhooks.md`` ("Ordering").
"""

from __future__ import annotations

from enum import Enum

from billingkit.domain.billing import (
    TERMINAL_STATUSES,
    CheckoutRecord,
    Subscription,
    SubscriptionStatus,
)

__all__ = ["FETCHED_WATERMARK", "SaveOutcome", "advance_checkout", "decide_save"]

#: Watermark of a subscription state fetched from Stripe outside any event ("order
#: unknown"): a save treats it as a tie with any event's.
FETCHED_WATERMARK = 0


class SaveOutcome(str, Enum):
    """What a conditional (watermark-guarded) write did."""

    WRITTEN = "written"  # inserted or replaced
    STALE = "stale"  # the stored state is newer (or terminal): nothing written
    TIE = "tie"  # same watermark (or stored order unknown) and ties not allowed: nothing written


def decide_save(
    stored_status: SubscriptionStatus, stored_watermark: int, new: Subscription, allow_tie: bool
) -> SaveOutcome:
    """The reference rule of ``save_subscription`` against an existing stored state.

    In order: a terminal stored status is never left (``STALE``); a lower watermark is
    ``STALE``; an equal one, or a stored ``FETCHED_WATERMARK``, is ``WRITTEN`` only with
    ``allow_tie`` (``TIE`` otherwise); a higher one is ``WRITTEN``.
    """
    if stored_status in TERMINAL_STATUSES and new.status not in TERMINAL_STATUSES:
        return SaveOutcome.STALE
    if new.watermark < stored_watermark:
        return SaveOutcome.STALE
    if not allow_tie and stored_watermark in (new.watermark, FETCHED_WATERMARK):
        return SaveOutcome.TIE
    return SaveOutcome.WRITTEN


_STATUS_RANK = {"open": 0, "complete": 1, "expired": 1}
_PAYMENT_RANK = {"unpaid": 0, "paid": 1, "no_payment_required": 1}


def advance_checkout(
    record: CheckoutRecord,
    *,
    status: str | None,
    payment_status: str,
    customer_id: str | None,
    subscription_id: str | None,
) -> CheckoutRecord:
    """``record`` moved forward to what Stripe reports, never backward.

    ``open`` may become ``complete`` or ``expired`` and ``unpaid`` may become paid, never
    the reverse; a customer or subscription id is filled once. Returns ``record`` itself
    when nothing moves.
    """
    update: dict[str, object] = {}
    if status is not None and _STATUS_RANK[status] > _STATUS_RANK[record.status]:
        update["status"] = status
    if _PAYMENT_RANK[payment_status] > _PAYMENT_RANK[record.payment_status]:
        update["payment_status"] = payment_status
    if record.customer_id is None and customer_id is not None:
        update["customer_id"] = customer_id
    if record.subscription_id is None and subscription_id is not None:
        update["subscription_id"] = subscription_id
    return record.model_copy(update=update) if update else record
