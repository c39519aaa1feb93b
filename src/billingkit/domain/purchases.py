"""One-time purchases: a Checkout in payment mode, its payment and its refunds.

A ``Purchase`` is keyed by its Checkout Session id; its status only moves forward
(``advance_purchase``): ``pending`` (a delayed payment method, e.g. a bank debit, is
still settling) -> ``paid`` or ``failed``; ``paid`` -> ``partially_refunded`` ->
``refunded``. The amount refunded never decreases, so a late or repeated refund event
changes nothing.
"""

from __future__ import annotations

from enum import Enum

from pydantic import Field, NonNegativeInt

from billingkit.domain._base import UTCDateTime, Value
from billingkit.domain.money import Money

__all__ = ["Purchase", "PurchaseStatus", "advance_purchase"]


class PurchaseStatus(str, Enum):
    """Where a one-time purchase stands."""

    PENDING = "pending"  # checkout completed, a delayed payment method still settling
    PAID = "paid"
    FAILED = "failed"  # the delayed payment failed: nothing was paid
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"

    def __str__(self) -> str:
        return self.value

    @property
    def is_paid(self) -> bool:
        """Whether the purchase was paid (refunds included: it was paid once)."""
        return self in _PAID


_PAID = frozenset({PurchaseStatus.PAID, PurchaseStatus.PARTIALLY_REFUNDED, PurchaseStatus.REFUNDED})
#: Forward order: a status is replaced only by a later one.
_RANK = {
    PurchaseStatus.PENDING: 0,
    PurchaseStatus.FAILED: 1,
    PurchaseStatus.PAID: 1,
    PurchaseStatus.PARTIALLY_REFUNDED: 2,
    PurchaseStatus.REFUNDED: 3,
}


class Purchase(Value):
    """A one-time purchase: who bought what, for how much, and what became of it.

    ``amount`` and ``amount_refunded`` are minor units of ``currency`` (see ``total``,
    ``refunded``). ``plan_key`` is the plan (product) bought, from the checkout
    billingkit started. ``payment_intent_id`` ties refunds (``charge.refunded``) to it.
    """

    session_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    customer_id: str | None = None
    plan_key: str | None = None
    payment_intent_id: str | None = None
    amount: NonNegativeInt
    currency: str = Field(min_length=3, max_length=3)
    amount_refunded: NonNegativeInt = 0
    status: PurchaseStatus
    created_at: UTCDateTime

    @property
    def total(self) -> Money:
        """What was charged, as money."""
        return Money(amount=self.amount, currency=self.currency)

    @property
    def refunded(self) -> Money:
        """What was refunded so far, as money."""
        return Money(amount=self.amount_refunded, currency=self.currency)


def advance_purchase(
    stored: Purchase,
    *,
    status: PurchaseStatus | None = None,
    amount_refunded: int | None = None,
    payment_intent_id: str | None = None,
) -> Purchase:
    """``stored`` moved forward, never back.

    A ``status`` earlier than the stored one is ignored (``paid`` never becomes
    ``pending``; ``failed`` and ``paid`` are final against each other). ``amount_refunded``
    only grows, and sets the refund status: ``refunded`` once it covers ``amount``, else
    ``partially_refunded``. A known ``payment_intent_id`` is kept.
    """
    new_status = stored.status
    if status is not None and _RANK[status] > _RANK[stored.status]:
        new_status = status
    refunded = stored.amount_refunded
    if amount_refunded is not None and amount_refunded > refunded:
        refunded = amount_refunded
        new_status = (
            PurchaseStatus.REFUNDED
            if refunded >= stored.amount
            else PurchaseStatus.PARTIALLY_REFUNDED
        )
    intent = stored.payment_intent_id or payment_intent_id
    if (new_status, refunded, intent) == (
        stored.status,
        stored.amount_refunded,
        stored.payment_intent_id,
    ):
        return stored
    return stored.model_copy(
        update={"status": new_status, "amount_refunded": refunded, "payment_intent_id": intent}
    )
