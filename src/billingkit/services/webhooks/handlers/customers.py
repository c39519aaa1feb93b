"""``customer.updated``/``customer.deleted``: email and deleted flag of a linked customer.

``ignored`` for a customer no user is linked to; behind the customer's watermark
(``apply_customer``).
"""

from __future__ import annotations

from billingkit.domain import EventStatus
from billingkit.ports import SaveOutcome
from billingkit.services.apply import apply_customer
from billingkit.services.webhooks.handlers import HandlerContext
from billingkit.stripe_objects import customer_from_stripe

__all__ = ["customer_deleted", "customer_updated"]


def customer_updated(ctx: HandlerContext) -> EventStatus:
    """``customer.updated``: email (and deleted flag) of a linked customer."""
    return _customer(ctx, deleted=False)


def customer_deleted(ctx: HandlerContext) -> EventStatus:
    """``customer.deleted``: mark a linked customer deleted."""
    return _customer(ctx, deleted=True)


def _customer(ctx: HandlerContext, *, deleted: bool) -> EventStatus:
    customer = customer_from_stripe(ctx.event.object)
    outcome = apply_customer(ctx.uow, customer, watermark=ctx.event.created, deleted=deleted)
    if outcome is None:
        return EventStatus.IGNORED
    return EventStatus.PROCESSED if outcome is SaveOutcome.WRITTEN else EventStatus.STALE
