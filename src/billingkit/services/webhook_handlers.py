"""One handler per Stripe event type, in one explicit registry: :data:`HANDLERS`.

A handler receives a :class:`HandlerContext` (the open unit of work, the parsed event, the
gateway, the catalog and the hook registry), stores what the event's data says through
:mod:`billingkit.services.apply`, fires hooks, and returns the ledger status: ``PROCESSED``,
``STALE`` (older than the stored state) or ``IGNORED`` (nothing of ours). Types missing from
the registry are recorded as ``ignored`` by the processor.

What each family stores:

* ``checkout.session.*`` — links the customer to the user and moves the stored checkout
  record forward (:func:`~billingkit.services.apply.apply_checkout_session`).
* ``customer.subscription.*`` — the subscription state in ``data.object``, behind the
  ordering guard (:func:`~billingkit.services.apply.apply_subscription`).
* ``invoice.*`` — **no subscription state**: an invoice does not carry the subscription's
  status or period, and Stripe announces those changes with
  ``customer.subscription.updated``, so nothing is inferred from an invoice and nothing is
  fetched. ``invoice.payment_failed`` and ``invoice.payment_action_required`` fire their
  hooks; ``invoice.paid``/``invoice.payment_succeeded`` are validated and recorded.
* ``customer.updated``/``customer.deleted`` — email and deleted flag of a linked customer
  (``ignored`` for a customer no user is linked to).
* ``price.*``, ``plan.*``, ``product.*`` — invalidate the catalog's cached prices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from billingkit.domain import (
    EventStatus,
    Money,
    Subscription,
    SubscriptionStatus,
    from_timestamp,
)
from billingkit.errors import WebhookPayloadError
from billingkit.ports import SaveOutcome, StripeGateway, UnitOfWork
from billingkit.services.apply import (
    PlanResolver,
    SubscriptionChange,
    apply_checkout_session,
    apply_customer,
    apply_subscription,
)
from billingkit.services.hooks import (
    CheckoutCompleted,
    HookKind,
    HookRegistry,
    InvoiceHookEvent,
    PaymentActionRequired,
    PaymentFailed,
    PlanChanged,
    SubscriptionActivated,
    SubscriptionCanceled,
    TrialWillEnd,
)
from billingkit.stripe_objects import (
    checkout_session_from_stripe,
    customer_from_stripe,
    invoice_subscription_id,
    subscription_from_stripe,
)

if TYPE_CHECKING:
    from billingkit.services.webhooks import WebhookEvent

__all__ = ["HANDLERS", "Handler", "HandlerContext", "WebhookCatalog"]


class WebhookCatalog(PlanResolver, Protocol):
    """What the webhook processor needs from the catalog (``PlanCatalog`` satisfies it)."""

    def invalidate(self) -> None:
        """Forget cached prices."""
        ...


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """Everything a handler may use; built by the processor for one event."""

    uow: UnitOfWork
    event: WebhookEvent
    gateway: StripeGateway
    catalog: WebhookCatalog
    hooks: HookRegistry


#: A handler: applies one event inside its unit of work and returns the ledger status.
Handler = Callable[[HandlerContext], EventStatus]

_ACCESS = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING})


# --------------------------------------------------------------------------- subscriptions


def _subscription_event(ctx: HandlerContext) -> EventStatus:
    """``customer.subscription.*``: store the state (ordering guard), then fire hooks."""
    event = ctx.event
    incoming = subscription_from_stripe(event.object)
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
    return EventStatus.PROCESSED


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
    old_status = _previous_status(previous) if not created else None
    common = {"event_id": event.id, "event_type": event.type, "user_id": current.user_id}

    if (
        hooks.wants(HookKind.SUBSCRIPTION_ACTIVATED)
        and status_changed
        and incoming.status in _ACCESS
        and current.status in _ACCESS
        and old_status not in _ACCESS
    ):
        hooks.emit(
            SubscriptionActivated(**common, subscription=current, previous_status=old_status)
        )
    if (
        hooks.wants(HookKind.SUBSCRIPTION_CANCELED)
        and current.status is SubscriptionStatus.CANCELED
        and incoming.status is SubscriptionStatus.CANCELED
        and (event.type == "customer.subscription.deleted" or "status" in previous)
        and old_status is not SubscriptionStatus.CANCELED
    ):
        hooks.emit(SubscriptionCanceled(**common, subscription=current))
    if hooks.wants(HookKind.PLAN_CHANGED):
        old_price = _previous_price_id(previous)
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


def _previous_status(previous: Mapping[str, Any]) -> SubscriptionStatus | None:
    raw = previous.get("status")
    if raw is None:
        return None
    try:
        return SubscriptionStatus(raw)
    except ValueError:
        raise WebhookPayloadError(
            f"data.previous_attributes.status: unknown value {raw!r}"
        ) from None


def _id_of(value: object) -> str | None:
    if type(value) is str:
        return value or None
    if isinstance(value, Mapping):
        ident = value.get("id")
        return ident if type(ident) is str and ident else None
    return None


def _previous_price_id(previous: Mapping[str, Any]) -> str | None:
    """The first item's price (or legacy plan) before the update, if the update changed it."""
    items = previous.get("items")
    if isinstance(items, Mapping):
        data = items.get("data")
        if isinstance(data, list) and data and isinstance(data[0], Mapping):
            first = data[0]
            return _id_of(first.get("price")) or _id_of(first.get("plan"))
    return _id_of(previous.get("plan"))


# --------------------------------------------------------------------------- checkout


def _checkout_event(ctx: HandlerContext) -> EventStatus:
    """``checkout.session.*``: link the customer, advance the checkout record."""
    session = checkout_session_from_stripe(
        ctx.event.object, created_fallback=ctx.event.created_at
    )
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


_COMPLETING = frozenset(
    {"checkout.session.completed", "checkout.session.async_payment_succeeded"}
)


# --------------------------------------------------------------------------- invoices


def _invoice_recorded(ctx: HandlerContext) -> EventStatus:
    """``invoice.paid``/``invoice.payment_succeeded``: validated and recorded, no state."""
    invoice_subscription_id(ctx.event.object)
    return EventStatus.PROCESSED


def _invoice_payment_failed(ctx: HandlerContext) -> EventStatus:
    """``invoice.payment_failed``: the payment-failed hook (state comes with the sub)."""
    return _invoice_hook(ctx, HookKind.PAYMENT_FAILED, PaymentFailed)


def _invoice_action_required(ctx: HandlerContext) -> EventStatus:
    """``invoice.payment_action_required``: the payment-action-required hook."""
    return _invoice_hook(ctx, HookKind.PAYMENT_ACTION_REQUIRED, PaymentActionRequired)


def _invoice_hook(
    ctx: HandlerContext, kind: HookKind, cls: type[InvoiceHookEvent]
) -> EventStatus:
    invoice = ctx.event.object
    subscription_id = invoice_subscription_id(invoice)
    if not ctx.hooks.wants(kind):
        return EventStatus.PROCESSED
    invoice_id = invoice.get("id")
    if type(invoice_id) is not str or not invoice_id:
        raise WebhookPayloadError("invoice.id: missing")
    customer_id = _id_of(invoice.get("customer"))
    link = ctx.uow.customer_by_id(customer_id) if customer_id is not None else None
    ctx.hooks.emit(
        cls(
            event_id=ctx.event.id,
            event_type=ctx.event.type,
            user_id=link.user_id if link is not None else None,
            customer_id=customer_id,
            subscription_id=subscription_id,
            invoice_id=invoice_id,
            amount_due=_amount(invoice, "amount_due"),
            attempt_count=_optional(invoice, "attempt_count", int),
            next_payment_attempt=_moment(invoice, "next_payment_attempt"),
            hosted_invoice_url=_optional(invoice, "hosted_invoice_url", str),
        )
    )
    return EventStatus.PROCESSED


def _optional(obj: Mapping[str, Any], field: str, kind: type[Any]) -> Any:
    value = obj.get(field)
    if value is None or type(value) is kind:
        return value
    raise WebhookPayloadError(f"invoice.{field}: expected {kind.__name__}")


def _amount(invoice: Mapping[str, Any], field: str) -> Money | None:
    amount = _optional(invoice, field, int)
    currency = invoice.get("currency")
    if amount is None or type(currency) is not str:
        return None
    try:
        return Money(amount=amount, currency=currency)
    except ValueError:
        raise WebhookPayloadError(f"invoice.currency: bad value {currency!r}") from None


def _moment(obj: Mapping[str, Any], field: str) -> Any:
    value = obj.get(field)
    if value is None:
        return None
    if type(value) is int:
        return from_timestamp(value)
    raise WebhookPayloadError(f"invoice.{field}: expected Unix seconds")


# --------------------------------------------------------------------------- customers, catalog


def _customer_updated(ctx: HandlerContext) -> EventStatus:
    """``customer.updated``: email (and deleted flag) of a linked customer."""
    return _customer(ctx, deleted=False)


def _customer_deleted(ctx: HandlerContext) -> EventStatus:
    """``customer.deleted``: mark a linked customer deleted."""
    return _customer(ctx, deleted=True)


def _customer(ctx: HandlerContext, *, deleted: bool) -> EventStatus:
    customer = customer_from_stripe(ctx.event.object)
    outcome = apply_customer(ctx.uow, customer, watermark=ctx.event.created, deleted=deleted)
    if outcome is None:
        return EventStatus.IGNORED
    return EventStatus.PROCESSED if outcome is SaveOutcome.WRITTEN else EventStatus.STALE


def _catalog_changed(ctx: HandlerContext) -> EventStatus:
    """``price.*``/``plan.*``/``product.*``: the cached prices are out of date."""
    ctx.catalog.invalidate()
    return EventStatus.PROCESSED


#: Stripe event type -> handler. The only dispatch table: no lookup by name or prefix.
HANDLERS: Mapping[str, Handler] = {
    "checkout.session.completed": _checkout_event,
    "checkout.session.async_payment_succeeded": _checkout_event,
    "checkout.session.async_payment_failed": _checkout_event,
    "checkout.session.expired": _checkout_event,
    "customer.subscription.created": _subscription_event,
    "customer.subscription.updated": _subscription_event,
    "customer.subscription.deleted": _subscription_event,
    "customer.subscription.paused": _subscription_event,
    "customer.subscription.resumed": _subscription_event,
    "customer.subscription.pending_update_applied": _subscription_event,
    "customer.subscription.trial_will_end": _subscription_event,
    "invoice.paid": _invoice_recorded,
    "invoice.payment_succeeded": _invoice_recorded,
    "invoice.payment_failed": _invoice_payment_failed,
    "invoice.payment_action_required": _invoice_action_required,
    "customer.updated": _customer_updated,
    "customer.deleted": _customer_deleted,
    "price.created": _catalog_changed,
    "price.updated": _catalog_changed,
    "price.deleted": _catalog_changed,
    "plan.created": _catalog_changed,
    "plan.updated": _catalog_changed,
    "plan.deleted": _catalog_changed,
    "product.created": _catalog_changed,
    "product.updated": _catalog_changed,
    "product.deleted": _catalog_changed,
}
