"""``invoice.*``: hooks only, **no subscription state**.

An invoice does not carry the subscription's status or period, and Stripe announces those
changes with ``customer.subscription.updated``: nothing is inferred from an invoice and
nothing is fetched. ``invoice.payment_failed`` and ``invoice.payment_action_required`` fire
their hooks; ``invoice.paid``/``invoice.payment_succeeded`` are validated and recorded.
"""

from __future__ import annotations

from billingkit.domain import EventStatus
from billingkit.services.hooks import (
    HookKind,
    InvoiceHookEvent,
    PaymentActionRequired,
    PaymentFailed,
)
from billingkit.services.webhooks.handlers import HandlerContext
from billingkit.stripe_objects import invoice_from_stripe, invoice_subscription_id

__all__ = ["invoice_action_required", "invoice_payment_failed", "invoice_recorded"]


def invoice_recorded(ctx: HandlerContext) -> EventStatus:
    """``invoice.paid``/``invoice.payment_succeeded``: validated and recorded, no state."""
    invoice_subscription_id(ctx.event.object)
    return EventStatus.PROCESSED


def invoice_payment_failed(ctx: HandlerContext) -> EventStatus:
    """``invoice.payment_failed``: the payment-failed hook (state comes with the sub)."""
    return _invoice_hook(ctx, HookKind.PAYMENT_FAILED, PaymentFailed)


def invoice_action_required(ctx: HandlerContext) -> EventStatus:
    """``invoice.payment_action_required``: the payment-action-required hook."""
    return _invoice_hook(ctx, HookKind.PAYMENT_ACTION_REQUIRED, PaymentActionRequired)


def _invoice_hook(ctx: HandlerContext, kind: HookKind, cls: type[InvoiceHookEvent]) -> EventStatus:
    if not ctx.hooks.wants(kind):
        invoice_subscription_id(ctx.event.object)  # validated even when nobody listens
        return EventStatus.PROCESSED
    invoice = invoice_from_stripe(ctx.event.object)
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
