"""``checkout.session.*``: link the customer to the user, move the checkout record forward.

Through ``apply_checkout_session``; ``completed`` and
``async_payment_succeeded`` fire ``CheckoutCompleted``. A payment-mode session also stores
its one-time purchase (``apply_purchase``)
and fires ``PurchaseCompleted`` when its payment went through.
"""

from __future__ import annotations

from billingkit.domain import CheckoutRecord, EventStatus, PurchaseStatus
from billingkit.ports import CheckoutSession
from billingkit.services.apply import apply_checkout_session
from billingkit.services.hooks import CheckoutCompleted, HookKind, PurchaseCompleted
from billingkit.services.webhooks.handlers import HandlerContext
from billingkit.services.webhooks.handlers.purchases import apply_purchase
from billingkit.stripe_objects import checkout_session_from_stripe

__all__ = ["checkout_event"]

_COMPLETING = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})


def checkout_event(ctx: HandlerContext) -> EventStatus:
    """Link the customer, advance the checkout record, fire ``CheckoutCompleted``."""
    session = checkout_session_from_stripe(ctx.event.object, created_fallback=ctx.event.created_at)
    applied = apply_checkout_session(ctx.uow, session, catalog=ctx.catalog)
    if ctx.event.type in _COMPLETING and ctx.hooks.wants(HookKind.CHECKOUT_COMPLETED):
        ctx.hooks.emit(
            CheckoutCompleted(
                event_id=ctx.event.id,
                event_type=ctx.event.type,
                user_id=applied.user_id,
                session_id=session.id,
                customer_id=session.customer_id,
                mode=session.mode,
                payment_status=session.payment_status,
                subscription_id=session.subscription_id,
                plan_key=applied.record.plan_key if applied.record is not None else None,
            )
        )
    if session.mode == "payment":
        _purchase(ctx, session, applied.user_id, applied.record)
    return EventStatus.PROCESSED


def _purchase(
    ctx: HandlerContext,
    session: CheckoutSession,
    user_id: str | None,
    record: CheckoutRecord | None,
) -> None:
    """Store the one-time purchase; ``PurchaseCompleted`` on the event that says it is paid.

    The two paying events of a session exclude each other (``completed`` paid, or
    ``completed`` unpaid then ``async_payment_succeeded``), and the ledger runs each once:
    the hook fires once per purchase, even when the success page stored it first.
    """
    plan_key = record.plan_key if record is not None else session.metadata.get("plan_key")
    _, after = apply_purchase(
        ctx.uow, session, user_id=user_id, plan_key=plan_key, event_type=ctx.event.type
    )
    paying = ctx.event.type == "checkout.session.async_payment_succeeded" or (
        ctx.event.type == "checkout.session.completed" and session.payment_status != "unpaid"
    )
    if (
        paying
        and after is not None
        and after.status is not PurchaseStatus.FAILED
        and ctx.hooks.wants(HookKind.PURCHASE_COMPLETED)
    ):
        ctx.hooks.emit(
            PurchaseCompleted(
                event_id=ctx.event.id,
                event_type=ctx.event.type,
                user_id=after.user_id,
                purchase=after,
            )
        )
