"""The one code path that applies Stripe object state to the repository.

Shared by the webhook handlers (:mod:`billingkit.services.webhook_handlers`) and by
``CheckoutService.confirm_checkout``, so a checkout confirmed on the success page and the
same checkout announced by a webhook end in the same stored state, whichever comes first;
the later one changes nothing. Every function works inside a unit of work the caller opened
and takes the collaborators it needs (gateway, catalog) explicitly.

API
---
* :func:`apply_subscription` — a subscription state carried by a Stripe event whose
  ``created`` second is ``watermark``. Guarded by the per-object watermark; resolves
  same-second ties (see below). Returns a :class:`SubscriptionChange`.
* :func:`apply_fetched_subscription` — a subscription state fetched from Stripe outside any
  event (``confirm_checkout``). Never calls the gateway.
* :func:`apply_checkout_session` — a Checkout Session (from an event, or retrieved with its
  subscription expanded): links the customer to the user, advances the stored
  :class:`~billingkit.domain.CheckoutRecord`, stores an expanded subscription as fetched.
* :func:`link_customer` — tie a user to a Stripe customer (unique both ways).
* :func:`apply_customer` — a customer's email/deleted flag carried by an event.

Watermarks: what they mean and why the final state is the newest one
--------------------------------------------------------------------
A stored subscription's ``watermark`` is a second on **Stripe's** clock: the newest instant
whose changes the stored state is known to include. The local clock is never used (it is not
Stripe's clock, and Stripe test clocks make object timestamps unrelated to event times), so a
skewed server can never make a real update look old and drop it.

* **Event state** (``apply_subscription``): the event's ``created`` second. The write is
  conditional (``UnitOfWork.save_subscription``): higher watermark replaces, lower is stale,
  a terminal state (canceled, incomplete_expired) is never replaced by a live one. When
  the state is fully known without the stored one (``user_id`` in its metadata, plan
  resolved by the catalog), the conditional write is tried first, with no tie allowed and
  no read: it succeeds only where the rules below would write it anyway (newer than an
  event-ordered stored state, or nothing stored); any other answer falls through to the
  read-and-decide path below, unchanged.
* **Same-second tie** (incoming watermark == stored watermark): Stripe's one-second
  resolution cannot order the two states, so, in this order:

  1. same state as stored -> nothing to resolve, no gateway call (the write only fills a
     missing ``user_id``/``plan_key``);
  2. terminal-state rule: an incoming terminal state beats a stored live one (a canceled
     subscription is never live again, so the terminal one is the later); a stored terminal
     state keeps a live one out;
  3. otherwise the subscription is **re-fetched** through the gateway and the fetched state is
     stored with ``allow_tie`` and watermark = the tied second. This is sound because the
     fetch happens after the tied event was delivered, so the fetched state includes every
     change made at or before that second. (It may include later ones too: an event from a
     later second then still replaces it, and since the newest event always carries the
     newest state, the final state is still the newest.)

  ``retrieve_subscription`` is never called without a tie. (Resolving a plan key may load
  the catalog's prices — one cached ``list_prices`` per TTL for the whole catalog — when
  plans are configured by lookup key.)
* **Fetched outside any event** (``apply_fetched_subscription``): we know the fetched state is
  the truth at fetch time, but not at which Stripe second. It is stored with watermark
  :data:`FETCHED_WATERMARK` (0, "order unknown"), and only when nothing event-ordered is
  stored (a stored event state stays: a newer state than it always arrives as a newer
  event). The next event for that subscription is then treated like a tie: equal state ->
  stored with the event's watermark; different state -> re-fetched and stored with the
  event's watermark (same reasoning as above). So a success page that showed "active" never
  regresses to an older "incomplete" carried by a late ``customer.subscription.created``,
  and no state is lost: every event with a state different from what is stored either wins
  or triggers a fetch of the truth.

Together: for any delivery order, with any duplicates, every event either writes, is
provably older than what is stored, or causes a re-fetch of a state at least as new as
itself, so once the newest event has been applied the stored state is its state (or a
re-fetched state at least as new), and a state never moves to an older watermark.

Links that arrive late
----------------------
A subscription event can come before ``checkout.session.completed``. Its state is stored by
customer id, with ``user_id`` from the subscription's ``metadata["user_id"]`` (set at
checkout) or from an existing customer link; when the link arrives later (the session names
its subscription), the stored row gets the user id too, so both orders store the same row
(the repository also ties subscriptions to users through the customer link). Links are only
made from checkout sessions, never from metadata alone.

Checkout records
----------------
A Checkout Session only ever moves forward (``open`` -> ``complete``/``expired``, ``unpaid``
-> ``paid``), so the stored record takes the furthest status and payment status seen: order
and duplicates do not matter and no watermark is needed. Sessions billingkit did not start
(no stored record) still link the customer but create no record, since the plan and interval
are unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

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

__all__ = [
    "FETCHED_WATERMARK",
    "USER_ID_METADATA_KEY",
    "CheckoutApplied",
    "PlanResolver",
    "SubscriptionChange",
    "apply_checkout_session",
    "apply_customer",
    "apply_fetched_subscription",
    "apply_subscription",
    "link_customer",
]

#: Metadata key (on sessions, subscriptions and customers) carrying the app's user id.
USER_ID_METADATA_KEY = "user_id"


class PlanResolver(Protocol):
    """What the sync functions need from the plan catalog (``PlanCatalog`` satisfies it)."""

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
    """

    outcome: SaveOutcome
    current: Subscription | None
    refetched: bool = False

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
    # A None keeps the stored user_id/plan_key (the repository's rule): mirror it here so
    # the returned state is exactly what is stored.
    user_id = subscription.user_id or (stored.user_id if stored is not None else None)
    if user_id is None:
        link = uow.customer_by_id(subscription.customer_id)
        if link is not None:
            user_id = link.user_id
    plan_key = subscription.plan_key
    if plan_key is None and subscription.price_id is not None:
        plan_key = catalog.plan_key_for_price(subscription.price_id)
    if plan_key is None and stored is not None:
        plan_key = stored.plan_key
    if (
        user_id == subscription.user_id
        and plan_key == subscription.plan_key
        and watermark == subscription.watermark
    ):
        return subscription
    return subscription.model_copy(
        update={"user_id": user_id, "plan_key": plan_key, "watermark": watermark}
    )


def _fully_known(
    subscription: Subscription, watermark: int, catalog: PlanResolver
) -> Subscription | None:
    """The state to store when it needs nothing from the stored one, else ``None``.

    That is when ``user_id`` (the subscription's metadata, set by billingkit's checkout)
    and ``plan_key`` (resolved by the catalog) are known: :func:`_prepare` would then take
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
    return subscription.model_copy(update={"plan_key": plan_key, "watermark": watermark})


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

    Stored (with :data:`FETCHED_WATERMARK`) when nothing is stored yet or only another
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


# --------------------------------------------------------------------------- customers


def link_customer(
    uow: UnitOfWork, *, user_id: str, customer_id: str, email: str | None = None
) -> CustomerLink:
    """Tie ``user_id`` to ``customer_id`` (idempotent; unique in both directions).

    Returns the stored link. Raises :class:`~billingkit.errors.ConflictError` when either
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
    ``client_reference_id``. Links the session's customer to the user, moves the stored
    record forward (never back) and stores an expanded ``subscription`` with
    :func:`apply_fetched_subscription`. Never calls the gateway.
    """
    record = uow.get_checkout(session.id)
    owner = user_id or _session_user_id(session, record)
    link: CustomerLink | None = None
    if owner is not None and session.customer_id is not None:
        link = link_customer(
            uow, user_id=owner, customer_id=session.customer_id, email=session.customer_email
        )

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
