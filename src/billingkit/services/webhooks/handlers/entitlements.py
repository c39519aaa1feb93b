"""``entitlements.active_entitlement_summary.updated``: the customer's active features.

Stores the lookup keys of the customer's active Stripe entitlements (linked to a user or not
yet) behind ``save_entitlements`` (the newer summary wins;
Stripe sends the whole summary each time). ``CustomerDetails`` reads them when
``BillingConfig.features_source`` is ``"stripe_entitlements"``. No Stripe call.
"""

from __future__ import annotations

from billingkit.domain import EventStatus
from billingkit.ports import SaveOutcome
from billingkit.services.webhooks.handlers import HandlerContext
from billingkit.stripe_objects import entitlement_summary_from_stripe

__all__ = ["entitlement_summary_updated"]


def entitlement_summary_updated(ctx: HandlerContext) -> EventStatus:
    """Store the customer's active entitlement lookup keys."""
    summary = entitlement_summary_from_stripe(ctx.event.object)
    summary = summary.model_copy(update={"watermark": ctx.event.created})
    outcome = ctx.uow.save_entitlements(summary)
    return EventStatus.PROCESSED if outcome is SaveOutcome.WRITTEN else EventStatus.STALE
