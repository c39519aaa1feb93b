"""``customer.subscription.*``: store the state in ``data.object``, then fire hooks.

The state goes through the ordering guard (``apply_subscription``).
Activated and canceled are judged by the event's own transition (its type and
``previous_attributes``) and only if the stored state agrees; API answers never fire them,
so the ledger alone keeps them once. Plan changed, quantity, cancel scheduled/undone and
plan change scheduled are judged from the stored states before and after the write
(``emit_transitions``, the rule API answers use), so the
first of answer and webhook to store the transition fires it; plan changed falls back to
the event's ``previous_attributes`` when only a fetched state (``confirm_checkout``) or
nothing was stored before. "Activated" and "recovered" follow the configured access policy
(``is_activation``, ``is_recovery``). See ``docs/webhooks.md#hooks`` and
``docs/subscriptions.md#hooks-exactly-once``.
"""

from __future__ import annotations

from billingkit.domain import EventStatus, Subscription, SubscriptionStatus
from billingkit.domain.access import is_activation, is_recovery
from billingkit.ports import FETCHED_WATERMARK
from billingkit.services.apply import (
    STATE_HOOKS,
    HookSource,
    SubscriptionChange,
    apply_subscription,
    emit_transitions,
)
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
    unknown_price = _unknown_price_wanted(ctx, incoming)
    before = (
        ctx.uow.get_subscription(incoming.id)
        if unknown_price or any(ctx.hooks.wants(kind) for kind in _TRANSITION_HOOKS)
        else None
    )
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
    known = before if before is not None and before.watermark != FETCHED_WATERMARK else None
    _emit_transitions(ctx, incoming, change, current, known)
    # "Plan changed" of an event-ordered stored state is a stored-state transition too (the
    # API answer's rule); previous_attributes only decides it after a fetched state.
    kinds = STATE_HOOKS if known is None else STATE_HOOKS | {HookKind.PLAN_CHANGED}
    emit_transitions(
        ctx.hooks,
        before,
        current,
        source=HookSource(event.id, event.type),
        catalog=ctx.catalog,
        kinds=kinds,
    )
    if unknown_price:
        _emit_plan_unknown(ctx, before, incoming, current)
    return EventStatus.PROCESSED


#: Hooks whose rule needs the stored state before the write.
_TRANSITION_HOOKS = STATE_HOOKS | {HookKind.PLAN_CHANGED}


def _unknown_price_wanted(ctx: HandlerContext, incoming: Subscription) -> bool:
    """Whether someone listens for an unknown plan and no plan uses the new price.

    Only then is the stored state read for it (one query on this rare path; a known price
    never reads for it).
    """
    return (
        ctx.hooks.wants(HookKind.SUBSCRIPTION_PLAN_UNKNOWN)
        and incoming.price_id is not None
        and incoming.plan_key is None
        and ctx.catalog.plan_key_for_price(incoming.price_id) is None
    )


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
    ctx: HandlerContext,
    incoming: Subscription,
    change: SubscriptionChange,
    current: Subscription,
    known: Subscription | None,
) -> None:
    """Hooks judged by the event's own transition, if the stored state agrees.

    ``known`` is the event-ordered stored state before the write (``None`` when nothing or
    only a fetched state was stored); with one, "plan changed" is left to
    ``emit_transitions``.
    """
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
    if hooks.wants(HookKind.PLAN_CHANGED) and known is None:
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
