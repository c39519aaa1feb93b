"""``payment_method.*``, ``setup_intent.succeeded`` and the default in ``customer.updated``.

Stored per Stripe customer (linked to a user or not yet: the link may arrive later), behind
the ordering guard of ``save_payment_method`` (newer wins,
a detached method never comes back) and
``save_default_payment_method``.

**The one handler that calls Stripe**: a ``setup_intent.succeeded`` whose metadata says it
came from ``CheckoutService.start_payment_method_update`` makes the new method the
customer's default and each of its live subscriptions' default:
``StripeGateway.set_default_payment_method``, ``1 + live subscriptions`` requests whose
idempotency keys derive from the event id, so a redelivery or a retry after a failure (the
event fails and Stripe retries it) repeats the same requests, which Stripe answers without
doing them twice. Every other event here makes no call.
"""

from __future__ import annotations

import hashlib

from billingkit.domain import EventStatus
from billingkit.domain.payment_methods import (
    PAYMENT_METHOD_UPDATE,
    PURPOSE_METADATA_KEY,
    DefaultPaymentMethod,
)
from billingkit.ports import SaveOutcome, UnitOfWork
from billingkit.services.webhooks.handlers import HandlerContext
from billingkit.services.webhooks.handlers.customers import customer_updated
from billingkit.stripe_objects import (
    customer_default_payment_method,
    payment_method_from_stripe,
    setup_intent_from_stripe,
)

__all__ = [
    "customer_updated_with_default",
    "default_payment_method_idempotency_key",
    "payment_method_detached",
    "payment_method_event",
    "setup_intent_succeeded",
]


def default_payment_method_idempotency_key(event_id: str) -> str:
    """The idempotency key of the default-method update a ``setup_intent.succeeded`` makes."""
    digest = hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"billingkit-default-pm-{digest}"


def _status(outcome: SaveOutcome) -> EventStatus:
    return EventStatus.PROCESSED if outcome is SaveOutcome.WRITTEN else EventStatus.STALE


def payment_method_event(ctx: HandlerContext) -> EventStatus:
    """``payment_method.attached``/``updated``/``automatically_updated``: store the summary."""
    method = payment_method_from_stripe(ctx.event.object)
    method = method.model_copy(update={"watermark": ctx.event.created})
    return _status(ctx.uow.save_payment_method(method))


def payment_method_detached(ctx: HandlerContext) -> EventStatus:
    """``payment_method.detached``: the method is detached for good."""
    method = payment_method_from_stripe(ctx.event.object)
    method = method.model_copy(update={"watermark": ctx.event.created, "detached": True})
    return _status(ctx.uow.save_payment_method(method))


def customer_updated_with_default(ctx: HandlerContext) -> EventStatus:
    """``customer.updated``: e-mail and deleted flag, plus the default payment method.

    The default is stored for any customer (linked or not yet); the event is ``processed``
    when either part was written.
    """
    status = customer_updated(ctx)
    told, default = customer_default_payment_method(ctx.event.object)
    if not told:
        return status
    customer_id = str(ctx.event.object["id"])  # checked by customer_updated
    outcome = ctx.uow.save_default_payment_method(
        DefaultPaymentMethod(
            customer_id=customer_id, payment_method_id=default, watermark=ctx.event.created
        )
    )
    if outcome is SaveOutcome.WRITTEN or status is EventStatus.PROCESSED:
        return EventStatus.PROCESSED
    return EventStatus.STALE


def setup_intent_succeeded(ctx: HandlerContext) -> EventStatus:
    """``setup_intent.succeeded``: store an expanded method; finish a payment-method update.

    Only a SetupIntent billingkit started (``metadata["billingkit_purpose"]``) with a
    customer and a payment method changes defaults at Stripe (see the module docstring).
    """
    intent = setup_intent_from_stripe(ctx.event.object)
    if intent.payment_method is not None:
        method = intent.payment_method.model_copy(update={"watermark": ctx.event.created})
        if method.customer_id is None:
            method = method.model_copy(update={"customer_id": intent.customer_id})
        ctx.uow.save_payment_method(method)
    ours = intent.metadata.get(PURPOSE_METADATA_KEY) == PAYMENT_METHOD_UPDATE
    if not ours or intent.customer_id is None or intent.payment_method_id is None:
        return EventStatus.PROCESSED
    ctx.gateway.set_default_payment_method(
        customer_id=intent.customer_id,
        payment_method_id=intent.payment_method_id,
        subscription_ids=_live_subscriptions(ctx.uow, intent.customer_id),
        idempotency_key=default_payment_method_idempotency_key(ctx.event.id),
    )
    ctx.uow.save_default_payment_method(
        DefaultPaymentMethod(
            customer_id=intent.customer_id,
            payment_method_id=intent.payment_method_id,
            watermark=ctx.event.created,
        )
    )
    return EventStatus.PROCESSED


def _live_subscriptions(uow: UnitOfWork, customer_id: str) -> list[str]:
    """The ids of the customer's stored non-terminal subscriptions, oldest first."""
    link = uow.customer_by_id(customer_id)
    if link is None:
        return []
    return [
        sub.id
        for sub in reversed(uow.subscriptions_for_user(link.user_id))
        if sub.customer_id == customer_id and not sub.status.is_terminal
    ]
