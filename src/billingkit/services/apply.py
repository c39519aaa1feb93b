"""The one code path that applies Stripe object state to the repository.

Shared by the webhook handlers (``billingkit.services.webhooks.handlers``) and
``CheckoutService.confirm_checkout``, so a checkout confirmed on the success page and the
same checkout announced by a webhook end in the same stored state, whichever comes first.
Every function works inside a unit of work the caller opened and takes its collaborators
(gateway, catalog) explicitly:

* ``apply_subscription`` — a state carried by an event whose ``created`` second is
  ``watermark``; the ordering guard, with the gateway re-fetch on a same-second tie.
* ``apply_fetched_subscription`` — a state fetched outside any event (watermark
  ``FETCHED_WATERMARK``, "order unknown"); never calls the gateway.
* ``apply_checkout_session`` — links the customer to the user, moves the stored
  ``CheckoutRecord`` forward, stores an expanded subscription.
* ``apply_answer`` — a state Stripe answered to a ``SubscriptionService`` request;
  stored at once (the app sees it), with the stored watermark kept.
* ``emit_transitions`` — the hooks of a stored-state transition (before -> after),
  shared by the API-answer path and the webhook handlers so each fires once.
* ``link_customer``, ``apply_customer`` — the user <-> customer link (made only from
  checkout sessions, never from metadata alone); a customer's email/deleted flag.

Hooks exactly once: see ``docs/subscriptions.md#hooks-exactly-once``.

The rules themselves (watermark decision, terminal states, checkout forward-only) live in
``billingkit.domain.ordering``. Why the final state is always the newest event's:
``docs/webhooks.md#why-the-final-state-is-the-newest``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from billingkit.domain import CheckoutRecord, CustomerLink, Subscription
from billingkit.domain.ordering import advance_checkout
from billingkit.ports import (
    FETCHED_WATERMARK,
    CheckoutSession,
    SaveOutcome,
    StripeCustomer,
    StripeGateway,
    UnitOfWork,
)
from billingkit.services.hooks import (
    CancelScheduled,
    CancelUndone,
    HookKind,
    HookRegistry,
    PlanChanged,
    PlanChangeScheduled,
    QuantityChanged,
)

__all__ = [
    "ANSWER_HOOKS",
    "FETCHED_WATERMARK",
    "STATE_HOOKS",
    "USER_ID_METADATA_KEY",
    "CheckoutApplied",
    "HookSource",
    "PlanResolver",
    "ScheduledTarget",
    "SubscriptionChange",
    "apply_answer",
    "apply_checkout_session",
    "apply_customer",
    "apply_fetched_subscription",
    "apply_subscription",
    "emit_transitions",
    "link_customer",
]

_V = TypeVar("_V", Subscription, CustomerLink)
_new = object.__new__
_set = object.__setattr__


def _replaced(value: _V, **changes: Any) -> _V:
    """``value.model_copy(update=changes)`` for changes this module already checked.

    Pydantic's ``model_copy`` costs several microseconds on the hot path of every event
    (a shallow copy of each private attribute, then the update); this sets the same four
    attributes on a fresh instance.
    """
    copied = _new(type(value))
    values = value.__dict__.copy()
    values.update(changes)
    _set(copied, "__dict__", values)
    _set(copied, "__pydantic_fields_set__", value.__pydantic_fields_set__ | changes.keys())
    _set(copied, "__pydantic_extra__", None)
    _set(copied, "__pydantic_private__", None)
    return copied


#: Metadata key (on sessions, subscriptions and customers) carrying the app's user id.
USER_ID_METADATA_KEY = "user_id"


class PlanResolver(Protocol):
    """What applying state needs from the plan catalog (``PlanCatalog`` satisfies it)."""

    def plan_key_for_price(self, price_id: str) -> str | None:
        """The key of the plan using ``price_id``, or ``None``."""
        ...


@dataclass(frozen=True, slots=True)
class SubscriptionChange:
    """What applying a subscription state did.

    Attributes:
        outcome: ``WRITTEN`` (stored, possibly after a re-fetch) or ``STALE`` (the stored
            state is newer or terminal; nothing changed). Never ``TIE``: ties are resolved.
        current: the stored state after: the new state when written, else the stored one
            (``None`` if nothing is stored). The state before is not reported: a newer
            state is written without reading the old one.
        refetched: whether the gateway was called to resolve a tie.
        previous: the stored state before, when the caller read it (``apply_answer``
            always does; ``None`` otherwise or when nothing was stored).
    """

    outcome: SaveOutcome
    current: Subscription | None
    refetched: bool = False
    previous: Subscription | None = None

    @property
    def written(self) -> bool:
        """Whether the stored state was written."""
        return self.outcome is SaveOutcome.WRITTEN


@dataclass(frozen=True, slots=True)
class CheckoutApplied:
    """What applying a Checkout Session did.

    Attributes:
        user_id: the user the session belongs to, if known.
        link: the stored customer link, if a customer and user were known.
        record: the stored checkout record after the update, or ``None`` (not started by
            billingkit).
        newly_completed: whether this call moved the record to ``complete``.
        subscription: the result of storing an expanded subscription, if the session had one.
    """

    user_id: str | None
    link: CustomerLink | None
    record: CheckoutRecord | None
    newly_completed: bool
    subscription: SubscriptionChange | None


# --------------------------------------------------------------------------- subscriptions


def _prepare(
    uow: UnitOfWork,
    subscription: Subscription,
    stored: Subscription | None,
    watermark: int,
    catalog: PlanResolver,
) -> Subscription:
    """The state to store: watermark set, plan key resolved, user id filled if knowable."""
    # A None keeps the stored user_id, and the stored plan_key for an unchanged price (the
    # repository's rule): mirror it here so the returned state is exactly what is stored.
    user_id = subscription.user_id or (stored.user_id if stored is not None else None)
    if user_id is None:
        link = uow.customer_by_id(subscription.customer_id)
        if link is not None:
            user_id = link.user_id
    plan_key = subscription.plan_key
    if plan_key is None and subscription.price_id is not None:
        plan_key = catalog.plan_key_for_price(subscription.price_id)
    if plan_key is None and stored is not None and stored.price_id == subscription.price_id:
        plan_key = stored.plan_key
    if (
        user_id == subscription.user_id
        and plan_key == subscription.plan_key
        and watermark == subscription.watermark
    ):
        return subscription
    return _replaced(subscription, user_id=user_id, plan_key=plan_key, watermark=watermark)


def _fully_known(
    subscription: Subscription, watermark: int, catalog: PlanResolver
) -> Subscription | None:
    """The state to store when it needs nothing from the stored one, else ``None``.

    That is when ``user_id`` (the subscription's metadata, set by billingkit's checkout)
    and ``plan_key`` (resolved by the catalog) are known: ``_prepare`` would then take
    neither from the stored state nor from the customer link.
    """
    if subscription.user_id is None:
        return None
    plan_key = subscription.plan_key
    if plan_key is None and subscription.price_id is not None:
        plan_key = catalog.plan_key_for_price(subscription.price_id)
    if plan_key is None:
        return None
    if plan_key == subscription.plan_key and watermark == subscription.watermark:
        return subscription
    return _replaced(subscription, plan_key=plan_key, watermark=watermark)


def _needs_refetch(stored: Subscription, incoming: Subscription) -> bool:
    """Whether the order of ``incoming`` against ``stored`` is unknown and matters."""
    if stored.watermark != incoming.watermark and stored.watermark != FETCHED_WATERMARK:
        return False  # ordered by watermark
    if incoming.same_state(stored):
        return False
    stored_terminal = stored.status.is_terminal
    incoming_terminal = incoming.status.is_terminal
    # Terminal-state rule: one side terminal, the other live -> the terminal one is later.
    return stored_terminal == incoming_terminal


def apply_subscription(
    uow: UnitOfWork,
    subscription: Subscription,
    *,
    watermark: int,
    gateway: StripeGateway,
    catalog: PlanResolver,
) -> SubscriptionChange:
    """Store ``subscription``, carried by an event created at second ``watermark``.

    Ordering guard (see the module docstring): higher watermark replaces, lower is stale,
    terminal states stay; a same-second tie with a different state is resolved by the
    terminal-state rule or by re-fetching through ``gateway.retrieve_subscription`` (the
    only gateway call, and only for a tie). ``plan_key`` is resolved through ``catalog``;
    ``user_id`` comes from the metadata or the customer link.
    """
    known = _fully_known(subscription, watermark, catalog)
    if known is not None:
        # Write first: a state newer than the stored one (or the first) is stored by one
        # conditional write, with no read. Anything else (stale, tie, fetched state stored)
        # declines and is decided below against the stored state, exactly as without it.
        if uow.save_subscription(known) is SaveOutcome.WRITTEN:
            return SubscriptionChange(SaveOutcome.WRITTEN, known)
        subscription = known
    stored = uow.get_subscription(subscription.id)
    incoming = _prepare(uow, subscription, stored, watermark, catalog)
    if stored is None:
        return SubscriptionChange(uow.save_subscription(incoming), incoming)
    if _needs_refetch(stored, incoming):
        return _refetch(uow, stored, watermark, gateway, catalog)
    tie = incoming.watermark == stored.watermark or stored.watermark == FETCHED_WATERMARK
    outcome = uow.save_subscription(incoming, allow_tie=tie)
    if outcome is SaveOutcome.TIE:
        # Another writer stored a different state for this second in the meantime.
        return _refetch(uow, stored, watermark, gateway, catalog)
    return _change(outcome, stored, incoming)


def _refetch(
    uow: UnitOfWork,
    stored: Subscription,
    watermark: int,
    gateway: StripeGateway,
    catalog: PlanResolver,
) -> SubscriptionChange:
    """Resolve a tie: store the state fetched now, with the tied second as its watermark."""
    fetched = gateway.retrieve_subscription(stored.id)
    resolved = _prepare(uow, fetched, stored, watermark, catalog)
    outcome = uow.save_subscription(resolved, allow_tie=True)
    return _change(outcome, stored, resolved, refetched=True)


def apply_fetched_subscription(
    uow: UnitOfWork, subscription: Subscription, *, catalog: PlanResolver
) -> SubscriptionChange:
    """Store a subscription state fetched from Stripe outside any event.

    Stored (with ``FETCHED_WATERMARK``) when nothing is stored yet or only another
    fetched state; a stored event-ordered state is kept (``STALE``): anything newer than it
    arrives as a newer event. Never calls the gateway.
    """
    stored = uow.get_subscription(subscription.id)
    if stored is not None and stored.watermark != FETCHED_WATERMARK:
        return SubscriptionChange(SaveOutcome.STALE, stored)
    incoming = _prepare(uow, subscription, stored, FETCHED_WATERMARK, catalog)
    outcome = uow.save_subscription(incoming, allow_tie=True)
    return _change(outcome, stored, incoming)


def _change(
    outcome: SaveOutcome,
    stored: Subscription | None,
    written: Subscription,
    *,
    refetched: bool = False,
) -> SubscriptionChange:
    if outcome is SaveOutcome.WRITTEN:
        return SubscriptionChange(outcome, written, refetched)
    return SubscriptionChange(SaveOutcome.STALE, stored, refetched)


def apply_answer(
    uow: UnitOfWork, subscription: Subscription, *, answered_at: int, catalog: PlanResolver
) -> SubscriptionChange:
    """Store the state Stripe answered to a request billingkit just made.

    Stripe answered after applying the request, so the answer is newer than every event
    created before the request: it is stored with watermark ``answered_at`` (the Unix second
    the request was *sent*, on the service's clock), or the stored watermark if that is
    higher. A webhook from before the request is then stale; one the request caused is
    created that second or later: a tie (same state: nothing changes; another state:
    re-fetched) or newer (replaces it, normally with the same state).
    When only a fetched state (``confirm_checkout``) or nothing is stored, the answer is
    stored as fetched too (order unknown), so the subscription's first events still apply.
    A concurrent writer that stored a newer watermark meanwhile wins (``STALE``); a
    terminal state is never left. ``previous`` is the state read before the write: the
    transition's hooks are judged against it (``emit_transitions``).
    """
    stored = uow.get_subscription(subscription.id)
    if stored is None or stored.watermark == FETCHED_WATERMARK:
        watermark = FETCHED_WATERMARK
    else:
        watermark = max(stored.watermark, answered_at)
    incoming = _prepare(uow, subscription, stored, watermark, catalog)
    if stored is not None and incoming.same_state(stored) and watermark == stored.watermark:
        return SubscriptionChange(SaveOutcome.STALE, stored, previous=stored)
    outcome = uow.save_subscription(incoming, allow_tie=True)
    change = _change(outcome, stored, incoming)
    return SubscriptionChange(change.outcome, change.current, previous=stored)


# --------------------------------------------------------------------------- transitions

#: The hooks ``emit_transitions`` judges from the stored states alone.
STATE_HOOKS = frozenset(
    {
        HookKind.PLAN_CHANGE_SCHEDULED,
        HookKind.QUANTITY_CHANGED,
        HookKind.CANCEL_SCHEDULED,
        HookKind.CANCEL_UNDONE,
    }
)
#: Every hook an API answer's transition fires. "Activated" and "canceled" are left to the
#: webhook's event rule (its type and ``previous_attributes``, deduplicated by the ledger):
#: a stored state can reach those statuses without any hook (a tie re-fetch stores Stripe's
#: current state), so "already stored" cannot mean "already told" for them.
ANSWER_HOOKS = STATE_HOOKS | {HookKind.PLAN_CHANGED}


@dataclass(frozen=True, slots=True)
class HookSource:
    """Who stored a transition: a Stripe event, or an API answer (synthetic id and type)."""

    event_id: str
    event_type: str


@dataclass(frozen=True, slots=True)
class ScheduledTarget:
    """What a change scheduled by the app moves to (only the API answer knows it)."""

    price_id: str
    plan_key: str | None


def _cancel_pending(subscription: Subscription) -> bool:
    return not subscription.status.is_terminal and (
        subscription.cancel_at_period_end or subscription.cancel_at is not None
    )


def emit_transitions(
    hooks: HookRegistry,
    before: Subscription | None,
    after: Subscription,
    *,
    source: HookSource,
    catalog: PlanResolver,
    kinds: Collection[HookKind] = ANSWER_HOOKS,
    scheduled: ScheduledTarget | None = None,
) -> None:
    """Fire the hooks (of ``kinds``) of the stored-state transition ``before`` -> ``after``.

    Plan changed, plan change scheduled, quantity changed, cancel scheduled and cancel undone
    (``ANSWER_HOOKS``). A hook fires only when the write changed the stored state in its
    field, so whichever of the API answer and the webhook stores a transition first fires
    it, and the other finds nothing changed. ``before`` ``None`` (first stored state) fires
    nothing here: creation hooks belong to the webhook's event rule.
    """
    if before is None:
        return
    common = {"event_id": source.event_id, "event_type": source.event_type}
    common_user = {**common, "user_id": after.user_id}

    def wants(kind: HookKind) -> bool:
        return kind in kinds and hooks.wants(kind)

    if (
        wants(HookKind.PLAN_CHANGED)
        and before.price_id is not None
        and after.price_id is not None
        and before.price_id != after.price_id
    ):
        hooks.emit(
            PlanChanged(
                **common_user,
                subscription=after,
                previous_price_id=before.price_id,
                previous_plan_key=before.plan_key or catalog.plan_key_for_price(before.price_id),
            )
        )
    if (
        wants(HookKind.QUANTITY_CHANGED)
        and before.quantity != after.quantity
        and not after.status.is_terminal
    ):
        hooks.emit(
            QuantityChanged(**common_user, subscription=after, previous_quantity=before.quantity)
        )
    if wants(HookKind.CANCEL_SCHEDULED) and _cancel_pending(after) and not _cancel_pending(before):
        hooks.emit(
            CancelScheduled(
                **common_user,
                subscription=after,
                cancel_at=after.cancel_at or after.current_period_end,
            )
        )
    if (
        wants(HookKind.CANCEL_UNDONE)
        and _cancel_pending(before)
        and not (_cancel_pending(after) or after.status.is_terminal)
    ):
        hooks.emit(CancelUndone(**common_user, subscription=after))
    if (
        wants(HookKind.PLAN_CHANGE_SCHEDULED)
        and after.schedule_id is not None
        and after.schedule_id != before.schedule_id
        and not after.status.is_terminal
    ):
        hooks.emit(
            PlanChangeScheduled(
                **common_user,
                subscription=after,
                schedule_id=after.schedule_id,
                price_id=scheduled.price_id if scheduled is not None else None,
                plan_key=scheduled.plan_key if scheduled is not None else None,
                effective_at=after.current_period_end,
            )
        )


# --------------------------------------------------------------------------- customers


def link_customer(
    uow: UnitOfWork, *, user_id: str, customer_id: str, email: str | None = None
) -> CustomerLink:
    """Tie ``user_id`` to ``customer_id`` (idempotent; unique in both directions).

    Returns the stored link. Raises ``ConflictError`` when either
    side is already linked to someone else.
    """
    existing = uow.customer_by_id(customer_id)
    if existing is not None and existing.user_id == user_id:
        return existing
    return uow.link_customer(CustomerLink(user_id=user_id, customer_id=customer_id, email=email))


def apply_customer(
    uow: UnitOfWork, customer: StripeCustomer, *, watermark: int, deleted: bool = False
) -> SaveOutcome | None:
    """Store a linked customer's email and deleted flag, carried by an event.

    Returns ``None`` when the customer is not linked to any user (nothing to store),
    otherwise what the watermark-guarded ``update_customer`` did.
    """
    link = uow.customer_by_id(customer.id)
    if link is None:
        return None
    gone = deleted or customer.deleted
    updated = link.model_copy(
        update={
            "email": link.email if gone else customer.email,
            "deleted": gone,
            "watermark": watermark,
        }
    )
    return uow.update_customer(updated)


# --------------------------------------------------------------------------- checkout


def _session_user_id(session: CheckoutSession, record: CheckoutRecord | None) -> str | None:
    """Who a session belongs to: the stored record's user, else metadata, else reference."""
    if record is not None:
        return record.user_id
    metadata: Mapping[str, str] = session.metadata
    return metadata.get(USER_ID_METADATA_KEY) or session.client_reference_id or None


def apply_checkout_session(
    uow: UnitOfWork,
    session: CheckoutSession,
    *,
    catalog: PlanResolver,
    user_id: str | None = None,
) -> CheckoutApplied:
    """Apply a Checkout Session's state.

    ``user_id`` is the user the caller verified (``confirm_checkout``); without it the user
    comes from the stored record, the session's ``metadata["user_id"]`` or its
    ``client_reference_id``, and last from the user already linked to the session's
    customer (a session billingkit did not start). Links the session's customer to the user,
    moves the stored record forward (never back) and stores an expanded ``subscription`` with
    ``apply_fetched_subscription``. Never calls the gateway.
    """
    record = uow.get_checkout(session.id)
    owner = user_id or _session_user_id(session, record)
    link: CustomerLink | None = None
    if owner is not None and session.customer_id is not None:
        link = link_customer(
            uow, user_id=owner, customer_id=session.customer_id, email=session.customer_email
        )
    elif owner is None and session.customer_id is not None:
        link = uow.customer_by_id(session.customer_id)
        owner = link.user_id if link is not None else None

    newly_completed = False
    if record is not None:
        updated = _advance(record, session)
        if updated != record:
            uow.save_checkout(updated)
            newly_completed = updated.status == "complete" and record.status != "complete"
            record = updated

    change: SubscriptionChange | None = None
    if session.subscription is not None:
        change = apply_fetched_subscription(uow, session.subscription, catalog=catalog)
    elif owner is not None and session.subscription_id is not None:
        _tie_to_user(uow, session.subscription_id, owner)
    return CheckoutApplied(owner, link, record, newly_completed, change)


def _tie_to_user(uow: UnitOfWork, subscription_id: str, user_id: str) -> None:
    """Record the user on a subscription stored before its link arrived (same state)."""
    stored = uow.get_subscription(subscription_id)
    if stored is not None and stored.user_id is None:
        uow.save_subscription(stored.model_copy(update={"user_id": user_id}), allow_tie=True)


def _advance(record: CheckoutRecord, session: CheckoutSession) -> CheckoutRecord:
    """The record moved forward to what ``session`` says, never backward."""
    return advance_checkout(
        record,
        status=session.status,
        payment_status=session.payment_status,
        customer_id=session.customer_id,
        subscription_id=session.subscription_id,
    )
