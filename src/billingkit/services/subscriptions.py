"""Managing a user's subscription from the app's own code: plan, seats, cancel, resume, codes.

``SubscriptionService`` acts only on subscriptions stored for the app's ``user_id``.
Every operation follows the same steps:

1. **Pick** the subscription in one read: the user's only live one, or the one named by
   ``subscription_id`` (required when the user has several). An id that is not the user's
   raises ``SubscriptionOwnershipError`` before any Stripe call.
2. **One Stripe request** (``apply_promotion_code``: two, the lookup and the update) with an
   idempotency key derived from stable inputs: the operation, the user, the subscription,
   the target and the stored state the decision was made on (its watermark, status, price,
   quantity, cancel flag and schedule). A double click, or a retry after a lost answer,
   sends the same key while the stored state is unchanged, and Stripe replays its first
   answer instead of acting twice; once the change is stored, the same request finds
   nothing to do and makes no call at all.
3. **Apply Stripe's answer** through ``apply_answer``, the
   same ordering guard webhooks use, so the app sees the new state at once; the hooks of
   the transition fire there (synthetic ``event_id`` ``"bk_api:" + key``), and the webhook
   that follows finds the transition already stored and fires nothing. See
   ``docs/subscriptions.md``.

A failed Stripe call raises the ``GatewayError`` (``retryable`` set)
and stores nothing.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from billingkit.config import BillingConfig
from billingkit.domain import (
    Interval,
    Money,
    Price,
    Subscription,
    SubscriptionStatus,
    UTCDateTime,
    Value,
)
from billingkit.errors import (
    AmbiguousSubscriptionError,
    InvalidInputError,
    InvalidPromotionCodeError,
    NoSubscriptionError,
    SubscriptionOwnershipError,
    SubscriptionStateError,
    UnknownPlanError,
)
from billingkit.ports import (
    Clock,
    InvoicePreview,
    InvoicePreviewRequest,
    ProrationBehavior,
    Repository,
    ScheduledChange,
    StripeGateway,
    SubscriptionUpdate,
    SubscriptionUpdateResult,
    UnitOfWork,
    require_aware_clock,
    system_clock,
)
from billingkit.services.apply import (
    HookSource,
    ScheduledTarget,
    apply_answer,
    emit_transitions,
)
from billingkit.services.catalog import PlanCatalog
from billingkit.services.hooks import API_EVENT_PREFIX, HookRegistry

__all__ = ["ChangePreview", "SubscriptionResult", "SubscriptionService", "operation_key"]

_PRORATIONS = ("create_prorations", "none", "always_invoice")
_PAUSED = SubscriptionStatus.PAUSED


class SubscriptionResult(Value):
    """What an operation did, with the subscription as now stored.

    Attributes:
        outcome: ``applied`` (Stripe made the change; stored), ``pending_payment`` (Stripe
            kept a plan or seat change waiting for its invoice to be paid: the subscription
            is unchanged until then), ``scheduled`` (takes effect at ``effective_at``) or
            ``unchanged`` (already so: no Stripe call was made).
        subscription: the stored subscription after the operation.
        invoice_id: the invoice the change created, if any.
        hosted_invoice_url: where the user pays (or authenticates) a pending change.
        pending_expires_at: when Stripe drops a pending change left unpaid.
        action_required: the payment needs the customer (3-D Secure) at the invoice URL.
        effective_at: when a scheduled change or cancellation takes effect.
        schedule_id: the subscription schedule of a scheduled change.
    """

    outcome: Literal["applied", "pending_payment", "scheduled", "unchanged"]
    subscription: Subscription
    invoice_id: str | None = None
    hosted_invoice_url: str | None = None
    pending_expires_at: UTCDateTime | None = None
    action_required: bool = False
    effective_at: UTCDateTime | None = None
    schedule_id: str | None = None

    @property
    def applied(self) -> bool:
        """Whether the change is in effect now (``applied``)."""
        return self.outcome == "applied"

    @property
    def pending_payment(self) -> bool:
        """Whether the change waits for the user to pay ``hosted_invoice_url``."""
        return self.outcome == "pending_payment"


class ChangePreview(Value):
    """What a plan or seat change would bill; show it on the confirm page.

    Attributes:
        plan_key: the target plan.
        price_id: the target Stripe price.
        quantity: the target quantity.
        proration: the proration behaviour previewed (``always_invoice`` for an interval
            switch: Stripe invoices those at once).
        due_now: charged when the change is made (zero when nothing is invoiced now).
        next_invoice_total: the next invoice's amount, when it is the one previewed.
        next_invoice_at: when that invoice is issued.
        proration_date: the second prorations were computed at; pass it to
            ``SubscriptionService.change_plan`` to be billed exactly this.
        invoice: Stripe's whole preview (lines, discounts).
    """

    plan_key: str
    price_id: str
    quantity: int
    proration: ProrationBehavior
    due_now: Money
    next_invoice_total: Money | None = None
    next_invoice_at: UTCDateTime | None = None
    proration_date: UTCDateTime
    invoice: InvoicePreview


def _digest(namespace: str, *parts: str) -> str:
    hasher = hashlib.sha256(namespace.encode())
    for part in parts:
        hasher.update(b"\x00")
        hasher.update(part.encode())
    return hasher.hexdigest()


def _fingerprint(subscription: Subscription) -> str:
    """The stored state a decision was made on (part of every operation's key)."""
    return "|".join(
        (
            str(subscription.watermark),
            subscription.status.value,
            subscription.price_id or "",
            str(subscription.quantity),
            str(subscription.cancel_at_period_end),
            subscription.schedule_id or "",
        )
    )


def operation_key(operation: str, user_id: str, subscription: Subscription, *target: str) -> str:
    """The idempotency key of ``operation`` on ``subscription`` towards ``target``.

    Derived from the operation, the user, the subscription id, the target (plan price,
    quantity, proration, code...) and the stored state it was decided on
    (``_fingerprint``): equal while nothing changed, so a repeated request is replayed
    by Stripe, not applied twice; different once the change is stored.
    """
    digest = _digest(
        "billingkit/subscription-op/v1",
        operation,
        user_id,
        subscription.id,
        _fingerprint(subscription),
        *target,
    )
    return f"billingkit-sub-{operation}-{digest[:40]}"


class SubscriptionService:
    """Change plan (with preview), seats, cancel, resume and promotion codes for a user.

    Args:
        config: plans and the free plan (changing to it cancels at period end).
        gateway: Stripe; one request per operation.
        repository: where the user's subscriptions are stored.
        catalog: resolves plan + interval to a price (served from its cache; a cold cache
            costs its one list call first).
        hooks: the registry the webhook processor fires into (``Billing.build`` passes
            ``billing.webhooks.hooks``): transitions an answer stores fire there.
        clock: the current time (proration dates of previews).
    """

    def __init__(
        self,
        config: BillingConfig,
        *,
        gateway: StripeGateway,
        repository: Repository,
        catalog: PlanCatalog,
        hooks: HookRegistry | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self._config = config
        self._gateway = gateway
        self._repository = repository
        self._catalog = catalog
        self._hooks = hooks if hooks is not None else HookRegistry()
        self._clock = require_aware_clock(clock)

    # ------------------------------------------------------------------ reading

    def subscription(self, user_id: str, subscription_id: str | None = None) -> Subscription:
        """The live subscription operations act on (no Stripe call).

        Raises ``NoSubscriptionError``,
        ``AmbiguousSubscriptionError`` or
        ``SubscriptionOwnershipError`` as every operation does.
        """
        _check_user(user_id)
        with self._repository.unit_of_work() as uow:
            return _pick(uow, user_id, subscription_id)

    # ------------------------------------------------------------------ plan

    def change_plan(
        self,
        user_id: str,
        plan_key: str,
        interval: Interval | str | None = None,
        *,
        proration: ProrationBehavior = "create_prorations",
        when: Literal["now", "period_end"] = "now",
        proration_date: datetime | None = None,
        subscription_id: str | None = None,
    ) -> SubscriptionResult:
        """Move the user's subscription to ``plan_key`` billed every ``interval``.

        ``interval`` defaults to the current one. ``when="now"`` updates the subscription's
        item (never a second subscription) with ``proration`` (Stripe's
        ``create_prorations`` default, ``none`` or ``always_invoice``) and Stripe's
        ``pending_if_incomplete``: a change that charges now and is declined stays
        ``pending_payment`` on the old plan, with the invoice URL to pay. An interval switch
        is invoiced at once by Stripe. ``when="period_end"`` schedules the change for the end
        of the period (a subscription schedule; undo with ``undo_scheduled_change``).
        The free plan (``config.free_plan``, or any plan without prices) cancels at period
        end. Changing to the current plan undoes a scheduled change, else does nothing.

        Raises ``UnknownPlanError``,
        ``SubscriptionStateError`` (a now-change while one is
        scheduled, or a paused/incomplete subscription), the selection errors and
        ``GatewayError``.
        """
        _check_user(user_id)
        _check_proration(proration)
        if when not in ("now", "period_end"):
            raise InvalidInputError("when must be 'now' or 'period_end'")
        definition = self._config.plan_definition(plan_key)
        if definition is None:
            raise UnknownPlanError(f"unknown plan {plan_key!r}")
        if plan_key == self._config.free_plan or definition.is_free:
            return self.cancel(user_id, at_period_end=True, subscription_id=subscription_id)
        current = self.subscription(user_id, subscription_id)
        wanted = interval if interval is not None else self._interval_of(current)
        price = self._catalog.price_for(plan_key, wanted)
        if current.price_id == price.id:
            if current.schedule_id is not None:
                return self.undo_scheduled_change(user_id, subscription_id=current.id)
            return SubscriptionResult(outcome="unchanged", subscription=current)
        _require_changeable(current)
        if when == "period_end":
            return self._schedule(user_id, current, price.id, plan_key)
        if current.schedule_id is not None:
            raise SubscriptionStateError(
                "a change is scheduled for the end of the period: undo it first "
                "(undo_scheduled_change)"
            )
        current = self._with_item(current)
        key = operation_key("change_plan", user_id, current, price.id, proration)
        update = SubscriptionUpdate(
            subscription_id=current.id,
            item_id=current.item_id,
            price_id=price.id,
            proration_behavior=proration,
            proration_date=proration_date,
            payment_behavior="pending_if_incomplete",
            idempotency_key=key,
        )
        return self._modified(update, "change_plan", key)

    def preview_change(
        self,
        user_id: str,
        plan_key: str,
        interval: Interval | str | None = None,
        *,
        proration: ProrationBehavior = "create_prorations",
        quantity: int | None = None,
        subscription_id: str | None = None,
    ) -> ChangePreview:
        """What changing to ``plan_key``/``interval`` (and ``quantity``) would bill; one call.

        An interval switch is previewed as ``always_invoice`` (Stripe invoices it now), so
        ``due_now`` is honest. Nothing is stored. Same errors as ``change_plan``.
        """
        _check_user(user_id)
        _check_proration(proration)
        if quantity is not None:
            _check_quantity(quantity)
        current = self.subscription(user_id, subscription_id)
        wanted = interval if interval is not None else self._interval_of(current)
        price = self._catalog.price_for(plan_key, wanted)
        if self._is_switch(current, price.interval):
            proration = "always_invoice"
        current = self._with_item(current)
        at = self._clock()
        invoice = self._gateway.preview_invoice(
            InvoicePreviewRequest(
                customer_id=current.customer_id,
                subscription_id=current.id,
                item_id=current.item_id,
                price_id=price.id,
                quantity=quantity,
                proration_behavior=proration,
                proration_date=at,
            )
        )
        return ChangePreview(
            plan_key=plan_key,
            price_id=price.id,
            quantity=quantity if quantity is not None else current.quantity,
            proration=proration,
            due_now=invoice.due_now,
            next_invoice_total=invoice.next_invoice_total,
            next_invoice_at=invoice.next_invoice_at,
            proration_date=at,
            invoice=invoice,
        )

    def undo_scheduled_change(
        self, user_id: str, *, subscription_id: str | None = None
    ) -> SubscriptionResult:
        """Drop the change scheduled for the period end (releases the schedule); one call.

        Raises ``SubscriptionStateError`` when none is scheduled.
        """
        _check_user(user_id)
        current = self.subscription(user_id, subscription_id)
        if current.schedule_id is None:
            raise SubscriptionStateError(f"no change is scheduled on {current.id}")
        key = operation_key("undo_scheduled_change", user_id, current, current.schedule_id)
        started = self._now_second()
        self._gateway.release_subscription_schedule(current.schedule_id, idempotency_key=key)
        answered = current.model_copy(update={"schedule_id": None})
        return self._store(answered, "undo_scheduled_change", key, started, outcome="applied")

    # ------------------------------------------------------------------ seats

    def set_quantity(
        self,
        user_id: str,
        quantity: int,
        *,
        proration: ProrationBehavior = "create_prorations",
        subscription_id: str | None = None,
    ) -> SubscriptionResult:
        """Set the number of seats; ``pending_payment`` when the charge now is declined.

        Raises ``InvalidInputError`` for a quantity below 1.
        """
        _check_user(user_id)
        _check_quantity(quantity)
        _check_proration(proration)
        current = self.subscription(user_id, subscription_id)
        if current.quantity == quantity:
            return SubscriptionResult(outcome="unchanged", subscription=current)
        _require_changeable(current)
        current = self._with_item(current)
        key = operation_key("set_quantity", user_id, current, str(quantity), proration)
        update = SubscriptionUpdate(
            subscription_id=current.id,
            item_id=current.item_id,
            quantity=quantity,
            proration_behavior=proration,
            payment_behavior="pending_if_incomplete",
            idempotency_key=key,
        )
        return self._modified(update, "set_quantity", key)

    # ------------------------------------------------------------------ cancel / resume

    def cancel(
        self,
        user_id: str,
        *,
        at_period_end: bool = True,
        prorate: bool = False,
        subscription_id: str | None = None,
    ) -> SubscriptionResult:
        """Cancel at the end of the period (default), or now.

        At period end the user keeps access until ``current_period_end`` and
        ``resume`` undoes it. Now ends the subscription at once; ``prorate`` credits
        the unused time on a final invoice (a net credit goes to the customer's balance).
        """
        _check_user(user_id)
        current = self.subscription(user_id, subscription_id)
        if at_period_end:
            if current.cancel_at_period_end:
                return SubscriptionResult(
                    outcome="unchanged",
                    subscription=current,
                    effective_at=current.cancel_at or current.current_period_end,
                )
            if current.schedule_id is not None:
                raise SubscriptionStateError(
                    "a change is scheduled for the end of the period: undo it first"
                )
            key = operation_key("cancel", user_id, current, "period_end")
            update = SubscriptionUpdate(
                subscription_id=current.id, cancel_at_period_end=True, idempotency_key=key
            )
            result = self._modified(update, "cancel", key)
            stored = result.subscription
            return result.model_copy(
                update={"effective_at": stored.cancel_at or stored.current_period_end}
            )
        key = operation_key("cancel", user_id, current, "now", str(prorate))
        started = self._now_second()
        answer = self._gateway.cancel_subscription_now(
            current.id, prorate=prorate, invoice_now=prorate, idempotency_key=key
        )
        return self._store(answer, "cancel", key, started, outcome="applied")

    def resume(self, user_id: str, *, subscription_id: str | None = None) -> SubscriptionResult:
        """Undo a scheduled cancellation, or resume a paused subscription; one call.

        Raises ``SubscriptionStateError`` when it is neither.
        """
        _check_user(user_id)
        current = self.subscription(user_id, subscription_id)
        if current.status is _PAUSED:
            key = operation_key("resume", user_id, current, "paused")
            started = self._now_second()
            answer = self._gateway.resume_paused_subscription(current.id, idempotency_key=key)
            return self._store(answer, "resume", key, started, outcome="applied")
        if not current.cancel_at_period_end:
            raise SubscriptionStateError(
                f"subscription {current.id} is neither paused nor set to cancel"
            )
        key = operation_key("resume", user_id, current, "cancel")
        update = SubscriptionUpdate(
            subscription_id=current.id, cancel_at_period_end=False, idempotency_key=key
        )
        return self._modified(update, "resume", key)

    # ------------------------------------------------------------------ promotion codes

    def apply_promotion_code(
        self, user_id: str, code: str, *, subscription_id: str | None = None
    ) -> SubscriptionResult:
        """Apply the active promotion ``code`` to the subscription (lookup + update).

        Raises ``InvalidPromotionCodeError`` for an unknown,
        expired, inactive or used-up code, or one restricted to another customer.
        """
        _check_user(user_id)
        if not isinstance(code, str) or not code.strip():
            raise InvalidInputError("code must be a non-empty string")
        current = self.subscription(user_id, subscription_id)
        promo = self._gateway.find_promotion_code(code.strip())
        if promo is None or not promo.active:
            raise InvalidPromotionCodeError(f"the promotion code {code.strip()!r} is not valid")
        if promo.customer_id is not None and promo.customer_id != current.customer_id:
            raise InvalidPromotionCodeError(
                f"the promotion code {code.strip()!r} is not valid for this customer"
            )
        key = operation_key("apply_promotion_code", user_id, current, promo.id)
        update = SubscriptionUpdate(
            subscription_id=current.id, promotion_code=promo.id, idempotency_key=key
        )
        return self._modified(update, "apply_promotion_code", key)

    # ------------------------------------------------------------------ internals

    def _schedule(
        self, user_id: str, current: Subscription, price_id: str, plan_key: str
    ) -> SubscriptionResult:
        key = operation_key("schedule_change", user_id, current, price_id)
        started = self._now_second()
        schedule = self._gateway.schedule_subscription_change(
            ScheduledChange(
                subscription_id=current.id,
                price_id=price_id,
                quantity=current.quantity,
                existing_schedule_id=current.schedule_id,
                metadata={"plan_key": plan_key},
                idempotency_key=key,
            )
        )
        answered = current.model_copy(update={"schedule_id": schedule.id})
        effective = schedule.phases[-1].start if schedule.phases else current.current_period_end
        target = ScheduledTarget(price_id=price_id, plan_key=plan_key)
        result = self._store(
            answered, "change_plan", key, started, outcome="scheduled", target=target
        )
        return result.model_copy(update={"effective_at": effective, "schedule_id": schedule.id})

    def _modified(self, update: SubscriptionUpdate, operation: str, key: str) -> SubscriptionResult:
        started = self._now_second()
        answer = self._gateway.modify_subscription(update)
        outcome: Literal["applied", "pending_payment"] = (
            "applied" if answer.applied else "pending_payment"
        )
        result = self._store(answer.subscription, operation, key, started, outcome=outcome)
        return _with_invoice(result, answer)

    def _store(
        self,
        answered: Subscription,
        operation: str,
        key: str,
        started: int,
        *,
        outcome: Literal["applied", "pending_payment", "scheduled"],
        target: ScheduledTarget | None = None,
    ) -> SubscriptionResult:
        """Apply Stripe's answer (ordering guard) and fire its transition's hooks.

        ``started`` is the second the request was sent: events it caused are created then
        or later, events from before it are older (see ``apply_answer``).
        """
        with self._repository.unit_of_work() as uow:
            change = apply_answer(uow, answered, answered_at=started, catalog=self._catalog)
            stored = change.current if change.current is not None else answered
            if change.written:
                emit_transitions(
                    self._hooks,
                    change.previous,
                    stored,
                    source=HookSource(
                        API_EVENT_PREFIX + key, f"billingkit.subscriptions.{operation}"
                    ),
                    catalog=self._catalog,
                    scheduled=target,
                )
        return SubscriptionResult(outcome=outcome, subscription=stored)

    def _now_second(self) -> int:
        return int(self._clock().timestamp())

    def _with_item(self, current: Subscription) -> Subscription:
        """``current`` with its item id; fetched once for a subscription stored without it."""
        if current.item_id is not None:
            return current
        started = self._now_second()
        fetched = self._gateway.retrieve_subscription(current.id)
        if fetched.item_id is None:
            raise SubscriptionStateError(f"subscription {current.id} has no item to change")
        with self._repository.unit_of_work() as uow:
            change = apply_answer(uow, fetched, answered_at=started, catalog=self._catalog)
        return change.current if change.current is not None else fetched

    def _interval_of(self, subscription: Subscription) -> Interval:
        """The interval of the stored price (through the catalog's cached prices)."""
        price = self._price(subscription.price_id)
        if price is None:
            raise UnknownPlanError(
                f"the interval of subscription {subscription.id} is unknown: pass interval="
            )
        return price.interval

    def _price(self, price_id: str | None) -> Price | None:
        if price_id is None:
            return None
        key = self._catalog.plan_key_for_price(price_id)
        if key is None:
            return None
        prices = self._catalog.plan(key).prices.values()
        return next((price for price in prices if price.id == price_id), None)

    def _is_switch(self, current: Subscription, interval: Interval) -> bool:
        price = self._price(current.price_id)
        return price is not None and price.interval is not interval


def _with_invoice(
    result: SubscriptionResult, answer: SubscriptionUpdateResult
) -> SubscriptionResult:
    return result.model_copy(
        update={
            "invoice_id": answer.invoice_id,
            "hosted_invoice_url": answer.hosted_invoice_url,
            "pending_expires_at": answer.pending_expires_at,
            "action_required": answer.payment_intent_status == "requires_action",
        }
    )


def _check_user(user_id: object) -> None:
    if not isinstance(user_id, str) or not user_id.strip():
        raise InvalidInputError("user_id must be a non-empty string")


def _check_quantity(quantity: object) -> None:
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
        raise InvalidInputError("quantity must be an integer of at least 1")


def _check_proration(proration: object) -> None:
    if proration not in _PRORATIONS:
        raise InvalidInputError(f"proration must be one of {', '.join(_PRORATIONS)}")


def _require_changeable(current: Subscription) -> None:
    if current.status in (_PAUSED, SubscriptionStatus.INCOMPLETE):
        raise SubscriptionStateError(
            f"subscription {current.id} is {current.status.value}: resume or complete it first"
        )


def _pick(uow: UnitOfWork, user_id: str, subscription_id: str | None) -> Subscription:
    """The user's live subscription to act on (see the module docstring)."""
    mine = uow.subscriptions_for_user(user_id)
    if subscription_id is not None:
        for subscription in mine:
            if subscription.id == subscription_id:
                if subscription.status.is_terminal:
                    raise NoSubscriptionError(
                        f"subscription {subscription_id} has ended ({subscription.status.value})"
                    )
                return subscription
        if uow.get_subscription(subscription_id) is not None:
            raise SubscriptionOwnershipError(
                f"subscription {subscription_id} does not belong to this user"
            )
        raise NoSubscriptionError(f"no subscription {subscription_id} is stored for this user")
    live = [sub for sub in mine if not sub.status.is_terminal]
    if not live:
        raise NoSubscriptionError("the user has no live subscription")
    if len(live) > 1:
        ids = ", ".join(sub.id for sub in live)
        raise AmbiguousSubscriptionError(
            f"the user has {len(live)} live subscriptions ({ids}): pass subscription_id"
        )
    return live[0]
