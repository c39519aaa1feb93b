"""``checkout.session.*``: link the customer to the user, move the checkout record forward.

Through ``apply_checkout_session``; ``completed`` and
``async_payment_succeeded`` fire ``CheckoutCompleted``.
"""

from __future__ import annotations

from billingkit.domain import EventStatus
from billingkit.services.apply import apply_checkout_session
from billingkit.services.hooks import CheckoutCompleted, HookKind
from billingkit.services.webhooks.handlers import HandlerContext
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
    return EventStatus.PROCESSED
