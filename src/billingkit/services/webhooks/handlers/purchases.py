"""One-time purchases: stored from payment-mode Checkout Sessions, refunded by charges.

``apply_purchase`` is called for a payment-mode session by the ``checkout.session.*``
handler and by ``CheckoutService.confirm_checkout`` (the same path, so whichever comes first
stores it and the other changes nothing). ``purchase_refunded``, called by the
``charge.refunded`` handler of ``handlers/charges.py``, records a purchase's refunds. The
purchase only moves forward (``advance_purchase``); see ``docs/checkout.md``.

Until the invoices work lands a shared ``handlers/charges.py``, ``charge.refunded`` is
registered here; a charge that paid no purchase is ``ignored``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from billingkit.domain import EventStatus, Money, Purchase, PurchaseStatus
from billingkit.domain.purchases import advance_purchase
from billingkit.errors import WebhookPayloadError
from billingkit.ports import CheckoutSession, UnitOfWork
from billingkit.services.hooks import HookKind, PurchaseRefunded
from billingkit.services.webhooks.handlers import HandlerContext

__all__ = ["PurchaseChange", "apply_purchase", "purchase_refunded", "purchase_status"]

#: (stored before, stored after) — either may be ``None``.
PurchaseChange = tuple[Purchase | None, Purchase | None]


def purchase_status(
    session: CheckoutSession, event_type: str | None = None
) -> PurchaseStatus | None:
    """The purchase status a payment-mode session (and its event) means, or ``None``.

    Complete and paid (or nothing due) -> ``paid``; complete and unpaid -> ``pending`` (a
    delayed payment method settling); ``async_payment_failed`` -> ``failed``. An open or
    expired session is no purchase.
    """
    if event_type == "checkout.session.async_payment_failed":
        return PurchaseStatus.FAILED
    if event_type == "checkout.session.async_payment_succeeded":
        return PurchaseStatus.PAID
    if session.status != "complete":
        return None
    return PurchaseStatus.PENDING if session.payment_status == "unpaid" else PurchaseStatus.PAID


def apply_purchase(
    uow: UnitOfWork,
    session: CheckoutSession,
    *,
    user_id: str | None,
    plan_key: str | None,
    event_type: str | None = None,
) -> PurchaseChange:
    """Store (or move forward) the purchase of a payment-mode ``session``.

    Needs the session's user (``None``: nothing stored, nobody to credit) and its
    currency. Returns the stored purchase before and after.
    """
    status = purchase_status(session, event_type)
    if session.mode != "payment" or user_id is None or session.currency is None:
        return None, None
    stored = uow.get_purchase(session.id)
    if stored is None:
        if status is None:
            return None, None
        purchase = Purchase(
            session_id=session.id,
            user_id=user_id,
            customer_id=session.customer_id,
            plan_key=plan_key,
            payment_intent_id=session.payment_intent_id,
            amount=session.amount_total or 0,
            currency=session.currency,
            status=status,
            created_at=session.created,
        )
        uow.save_purchase(purchase)
        return None, purchase
    updated = advance_purchase(stored, status=status, payment_intent_id=session.payment_intent_id)
    if updated != stored:
        uow.save_purchase(updated)
    return stored, updated


def _charge_refund(obj: Mapping[str, Any]) -> tuple[str | None, int, str]:
    """``(payment_intent id, amount_refunded, currency)`` of a ``charge`` object."""
    intent = obj.get("payment_intent")
    if isinstance(intent, Mapping):
        intent = intent.get("id")
    if intent is not None and not isinstance(intent, str):
        raise WebhookPayloadError("charge.payment_intent: expected an id")
    refunded = obj.get("amount_refunded")
    if not isinstance(refunded, int) or isinstance(refunded, bool) or refunded < 0:
        raise WebhookPayloadError("charge.amount_refunded: expected a non-negative integer")
    currency = obj.get("currency")
    if not isinstance(currency, str) or len(currency) != 3:
        raise WebhookPayloadError("charge.currency: expected a currency code")
    return intent, refunded, currency.lower()


def purchase_refunded(ctx: HandlerContext) -> EventStatus:
    """``charge.refunded``: raise the purchase's amount refunded; fire ``PurchaseRefunded``.

    The charge carries the running total (``amount_refunded``), so a repeated or late
    event finds nothing to add. A charge that paid no stored purchase (an invoice's) is
    ``ignored`` here.
    """
    intent, refunded, currency = _charge_refund(ctx.event.object)
    stored = ctx.uow.purchase_by_payment_intent(intent) if intent is not None else None
    if stored is None or currency != stored.currency:
        return EventStatus.IGNORED
    updated = advance_purchase(stored, amount_refunded=refunded)
    if updated == stored:
        return EventStatus.STALE
    ctx.uow.save_purchase(updated)
    if ctx.hooks.wants(HookKind.PURCHASE_REFUNDED):
        ctx.hooks.emit(
            PurchaseRefunded(
                event_id=ctx.event.id,
                event_type=ctx.event.type,
                user_id=updated.user_id,
                purchase=updated,
                refund=Money(
                    amount=updated.amount_refunded - stored.amount_refunded,
                    currency=updated.currency,
                ),
                fully_refunded=updated.status is PurchaseStatus.REFUNDED,
            )
        )
    return EventStatus.PROCESSED
