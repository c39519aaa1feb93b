"""``customer.subscription.*``: store the state in ``data.object``, then fire hooks.

The state goes through the ordering guard (``apply_subscription``).
Hooks are judged by the event's own transition (its type and ``previous_attributes``) and
only if the stored state agrees; "activated" follows the configured access policy
(``is_activation``), "recovered" too (``is_recovery``). See ``docs/webhooks.md#hooks``.
"""

from __future__ import annotations

from billingkit.domain import EventStatus, Subscription, SubscriptionStatus
from billingkit.domain.access import is_activation, is_recovery
from billingkit.services.apply import FETCHED_WATERMARK, SubscriptionChange, apply_subscription
from billingkit.services.hooks import (
    HookKind,
    PlanChanged,
    SubscriptionActivated,
    SubscriptionCanceled,
    SubscriptionPlanUnknown,
    SubscriptionRecovered,
    TrialWillEnd,
)
from billingkit.services.webhooks.handlers import HandlerContext
from billingkit.stripe_objects import previous_price_id, previous_status, subscription_from_stripe

__all__ = ["subscription_event"]


def subscription_event(ctx: HandlerContext) -> EventStatus:
    """Store the subscription state (ordering guard), then fire hooks."""
    event = ctx.event
    incoming = subscription_from_stripe(event.object)
    before = _state_before_an_unknown_price(ctx, incoming)
    change = apply_subscription(
        ctx.uow, incoming, watermark=event.created, gateway=ctx.gateway, catalog=ctx.catalog
    )
    current = change.current
    # Trial ending is informational: worth telling while the stored state is still a trial,
    # even if a later update (e.g. metadata) made this event's own state stale.
    if (
        event.type == "customer.subscription.trial_will_end"
        and current is not None
        and current.status is SubscriptionStatus.TRIALING
    ):
        _emit_trial_will_end(ctx, current)
    if not change.written:
        return EventStatus.STALE
    assert current is not None  # written
    _emit_transitions(ctx, incoming, change, current)
    if before is not None:
        _emit_plan_unknown(ctx, before[0], incoming, current)
    return EventStatus.PROCESSED


def _state_before_an_unknown_price(
    ctx: HandlerContext, incoming: Subscription
) -> tuple[Subscription | None] | None:
    """The stored state, read only when someone listens and no plan uses the new price.

    ``None`` when there is nothing to tell; else a 1-tuple with the state before (itself
    ``None`` for a subscription not stored yet). The read costs one query on this rare
    path only: a known price never reads.
    """
    if (
        not ctx.hooks.wants(HookKind.SUBSCRIPTION_PLAN_UNKNOWN)
        or incoming.price_id is None
        or incoming.plan_key is not None
        or ctx.catalog.plan_key_for_price(incoming.price_id) is not None
    ):
        return None
    return (ctx.uow.get_subscription(incoming.id),)


def _emit_plan_unknown(
    ctx: HandlerContext, before: Subscription | None, incoming: Subscription, current: Subscription
) -> None:
    """Once per transition to a price no plan uses: the first event-ordered state at it."""
    if current.price_id != incoming.price_id or current.price_id is None:
        return  # a re-fetch stored another state
    if (
        before is not None
        and before.watermark != FETCHED_WATERMARK
        and before.price_id == current.price_id
    ):
        return  # told when the subscription moved to this price
    ctx.hooks.emit(
        SubscriptionPlanUnknown(
            event_id=ctx.event.id,
            event_type=ctx.event.type,
            user_id=current.user_id,
            subscription_id=current.id,
            price_id=current.price_id,
            subscription=current,
        )
    )


def _emit_trial_will_end(ctx: HandlerContext, current: Subscription) -> None:
    if ctx.hooks.wants(HookKind.TRIAL_WILL_END):
        ctx.hooks.emit(
            TrialWillEnd(
                event_id=ctx.event.id,
                event_type=ctx.event.type,
                user_id=current.user_id,
                subscription=current,
                trial_end=current.trial_end,
            )
        )


def _emit_transitions(
    ctx: HandlerContext, incoming: Subscription, change: SubscriptionChange, current: Subscription
) -> None:
    """Hooks judged by the event's own transition, and only if the stored state agrees."""
    event, hooks = ctx.event, ctx.hooks
    previous = event.previous_attributes or {}
    created = event.type == "customer.subscription.created"
    status_changed = created or "status" in previous
    old_status = previous_status(previous) if not created else None
    common = {"event_id": event.id, "event_type": event.type, "user_id": current.user_id}

    if (
        hooks.wants(HookKind.SUBSCRIPTION_ACTIVATED)
        and status_changed
        and is_activation(old_status, incoming.status, ctx.access)
        and current.status in ctx.access.granting_statuses
    ):
        hooks.emit(
            SubscriptionActivated(**common, subscription=current, previous_status=old_status)
        )
    _emit_recovered(ctx, incoming, current, status_changed, old_status)
    if (
        hooks.wants(HookKind.SUBSCRIPTION_CANCELED)
        and current.status is SubscriptionStatus.CANCELED
        and incoming.status is SubscriptionStatus.CANCELED
        and (event.type == "customer.subscription.deleted" or "status" in previous)
        and old_status is not SubscriptionStatus.CANCELED
    ):
        hooks.emit(SubscriptionCanceled(**common, subscription=current))
    if hooks.wants(HookKind.PLAN_CHANGED):
        old_price = previous_price_id(previous)
        if (
            old_price is not None
            and old_price != incoming.price_id
            and current.price_id == incoming.price_id
        ):
            hooks.emit(
                PlanChanged(
                    **common,
                    subscription=current,
                    previous_price_id=old_price,
                    previous_plan_key=ctx.catalog.plan_key_for_price(old_price),
                )
            )


def _emit_recovered(
    ctx: HandlerContext,
    incoming: Subscription,
    current: Subscription,
    status_changed: bool,
    old_status: SubscriptionStatus | None,
) -> None:
    """``SubscriptionRecovered``: the event's own move back to access, if the store agrees."""
    if (
        ctx.hooks.wants(HookKind.SUBSCRIPTION_RECOVERED)
        and status_changed
        and old_status is not None
        and is_recovery(old_status, incoming.status, ctx.access)
        and current.status in ctx.access.granting_statuses
    ):
        ctx.hooks.emit(
            SubscriptionRecovered(
                event_id=ctx.event.id,
                event_type=ctx.event.type,
                user_id=current.user_id,
                subscription=current,
                previous_status=old_status,
            )
        )
