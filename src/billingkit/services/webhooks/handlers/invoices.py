"""``invoice.*`` and ``invoice_payment.paid``: the stored invoice history, and hooks.

Every ``invoice.*`` event stores the invoice summary it carries through the ordering guard
(``save_invoice``: newer wins, ``paid``/``void``/
``uncollectible`` never go back to ``draft``/``open``, same-second ties by progress);
``invoice.deleted`` stores a ``deleted`` tombstone so a late ``invoice.created`` cannot bring
the draft back. An invoice does **not** change the subscription: its status and period come
with ``customer.subscription.updated``. ``invoice.payment_failed`` and
``invoice.payment_action_required`` fire their hooks once per event, as before.
``invoice_payment.paid`` (basil and later) ties a payment intent to its invoice, so refunds of
that payment reach the invoice's refunded amount.
"""

from __future__ import annotations

from billingkit.domain import EventStatus
from billingkit.domain.invoices import ChargeRecord, InvoiceSummary
from billingkit.ports import SaveOutcome, UnitOfWork
from billingkit.services.hooks import (
    HookKind,
    InvoiceHookEvent,
    PaymentActionRequired,
    PaymentFailed,
)
from billingkit.services.webhooks.handlers import HandlerContext
from billingkit.stripe_objects import invoice_from_stripe, invoice_payment_from_stripe

__all__ = [
    "apply_invoice",
    "invoice_action_required",
    "invoice_event",
    "invoice_payment_failed",
    "invoice_payment_paid",
    "invoice_recorded",
]


def apply_invoice(uow: UnitOfWork, invoice: InvoiceSummary, *, watermark: int) -> SaveOutcome:
    """Store ``invoice``, carried by an event created at second ``watermark``.

    The user comes from the customer link; a payment the invoice names (before basil:
    ``payment_intent``/``charge``) is tied to it as a charge record, so its refunds count.
    Returns what the watermark-guarded write did (``WRITTEN`` or ``STALE``).
    """
    user_id = invoice.user_id
    if user_id is None and invoice.customer_id is not None:
        link = uow.customer_by_id(invoice.customer_id)
        user_id = link.user_id if link is not None else None
    stored = invoice.model_copy(update={"user_id": user_id, "watermark": watermark})
    outcome = uow.save_invoice(stored)
    key = invoice.payment_intent_id or invoice.charge_id
    if key is not None:
        uow.save_charge(
            ChargeRecord(
                key=key,
                charge_id=invoice.charge_id,
                payment_intent_id=invoice.payment_intent_id,
                invoice_id=invoice.id,
                customer_id=invoice.customer_id,
            )
        )
    return outcome


def invoice_event(ctx: HandlerContext) -> EventStatus:
    """Any ``invoice.*`` without a hook: store the summary (ordering guard)."""
    invoice = _read(ctx)
    outcome = apply_invoice(ctx.uow, invoice, watermark=ctx.event.created)
    return EventStatus.PROCESSED if outcome is SaveOutcome.WRITTEN else EventStatus.STALE


#: ``invoice.paid``/``invoice.payment_succeeded`` were "recorded" before they were stored.
invoice_recorded = invoice_event


def invoice_payment_failed(ctx: HandlerContext) -> EventStatus:
    """``invoice.payment_failed``: store the summary, fire the payment-failed hook."""
    return _invoice_hook(ctx, HookKind.PAYMENT_FAILED, PaymentFailed)


def invoice_action_required(ctx: HandlerContext) -> EventStatus:
    """``invoice.payment_action_required``: store the summary, fire its hook."""
    return _invoice_hook(ctx, HookKind.PAYMENT_ACTION_REQUIRED, PaymentActionRequired)


def invoice_payment_paid(ctx: HandlerContext) -> EventStatus:
    """``invoice_payment.paid``: tie the payment intent (or charge) to its invoice."""
    ctx.uow.save_charge(invoice_payment_from_stripe(ctx.event.object))
    return EventStatus.PROCESSED


def _read(ctx: HandlerContext) -> InvoiceSummary:
    return invoice_from_stripe(ctx.event.object, deleted=ctx.event.type == "invoice.deleted")


def _invoice_hook(ctx: HandlerContext, kind: HookKind, cls: type[InvoiceHookEvent]) -> EventStatus:
    """Store the summary; the hook fires for the event whatever the stored order says.

    (A payment that failed is worth telling even when a later state is already stored:
    the ledger makes it once per event.)
    """
    invoice = _read(ctx)
    apply_invoice(ctx.uow, invoice, watermark=ctx.event.created)
    if ctx.hooks.wants(kind):
        customer_id = invoice.customer_id
        link = ctx.uow.customer_by_id(customer_id) if customer_id is not None else None
        ctx.hooks.emit(
            cls(
                event_id=ctx.event.id,
                event_type=ctx.event.type,
                user_id=link.user_id if link is not None else None,
                customer_id=customer_id,
                subscription_id=invoice.subscription_id,
                invoice_id=invoice.id,
                amount_due=invoice.amount_due,
                attempt_count=invoice.attempt_count,
                next_payment_attempt=invoice.next_payment_attempt,
                hosted_invoice_url=invoice.hosted_invoice_url,
            )
        )
    return EventStatus.PROCESSED
