"""Customer billing details: what plan a user is on and whether access is granted.

Answered from the repository alone: ``CustomerDetails.for_user`` (with the default
payment method and, with ``features_source="stripe_entitlements"``, the active
entitlements) and ``CustomerDetails.card_expiring`` never call Stripe, so they are cheap
enough to call on every request. **The one read that calls Stripe** is
``CustomerDetails.next_invoice`` (an invoice preview: one call per user per
``BillingConfig.next_invoice_cache_seconds``, answered from memory in between).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from billingkit.config import BillingConfig
from billingkit.domain import (
    PlanDefinition,
    Purchase,
    Subscription,
    SubscriptionStatus,
    UTCDateTime,
    Value,
)
from billingkit.domain.access import grants_access
from billingkit.domain.invoices import InvoiceSummary
from billingkit.domain.money import Money
from billingkit.domain.payment_methods import PaymentMethodSummary
from billingkit.errors import ConfigurationError, InvalidInputError
from billingkit.ports import (
    Clock,
    InvoicePreviewRequest,
    Repository,
    StripeGateway,
    UnitOfWork,
    require_aware_clock,
    system_clock,
)
from billingkit.services.catalog import PlanCatalog

__all__ = ["BillingDetails", "CustomerDetails", "UpcomingInvoice"]

#: Cached next invoices kept before expired ones are swept out.
_NEXT_INVOICE_SWEEP = 1024
#: Subscription statuses that have a next charge to preview.
_BILLED = frozenset(
    {SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING, SubscriptionStatus.PAST_DUE}
)


class BillingDetails(Value):
    """A user's billing state at one moment, as the app needs it to gate features.

    Attributes:
        user_id: the app's user.
        plan_key: key of the plan the user is on (the free plan when not subscribed), or
            ``None`` (no subscription and no free plan configured, or a subscription whose
            price no configured plan uses).
        plan: that plan's definition, or ``None`` when ``plan_key`` is not (or no longer) in
            the configuration: status and access are still reported.
        plan_problem: why ``plan`` is ``None``, in words for a log or an alert (the price no
            configured plan uses, the plan key no longer configured, no free plan), else
            ``None``. Webhooks signal the unknown price once with ``SubscriptionPlanUnknown``.
        subscription_id: the subscription these details describe, or ``None``.
        status: its Stripe status, or ``None`` without a (live) subscription.
        has_access: whether the app should grant the plan's features (see
            ``grants_access``); true on the free plan.
        price_id: the subscribed Stripe price, if any.
        quantity: the subscription's quantity (seats); 0 without a subscription.
        current_period_end: when the current billing period ends (renews or stops).
        cancel_at_period_end: the subscription stops at ``current_period_end``.
        cancel_at: a scheduled cancellation time, if any.
        trial_end: when the trial ends, if any.
        other_plans: with ``allow_multiple_subscriptions``, the plans of the user's *other*
            subscriptions that grant access (add-ons): ``has_feature`` and ``limit``
            combine them with ``plan``. Empty otherwise.
        other_subscription_ids: those subscriptions' ids, newest first.
        payment_method: the customer's default payment method (``invoice_settings``'
            default, else the most recently created attached method), or ``None``.
        entitlements: the lookup keys of the customer's active Stripe Entitlements when
            ``features_source`` is ``"stripe_entitlements"`` and these details describe a
            subscription (``None`` otherwise: features come from the plan).
    """

    user_id: str
    plan_key: str | None = None
    plan: PlanDefinition | None = None
    plan_problem: str | None = None
    subscription_id: str | None = None
    status: SubscriptionStatus | None = None
    has_access: bool = False
    price_id: str | None = None
    quantity: int = 0
    current_period_end: UTCDateTime | None = None
    cancel_at_period_end: bool = False
    cancel_at: UTCDateTime | None = None
    trial_end: UTCDateTime | None = None
    other_plans: tuple[PlanDefinition, ...] = ()
    other_subscription_ids: tuple[str, ...] = ()
    payment_method: PaymentMethodSummary | None = None
    entitlements: tuple[str, ...] | None = None

    @property
    def is_subscribed(self) -> bool:
        """Whether these details describe a (non-terminal) Stripe subscription."""
        return self.subscription_id is not None

    def _entitled_plans(self) -> list[PlanDefinition]:
        if not self.has_access:
            return []
        plans = [self.plan] if self.plan is not None else []
        return plans + list(self.other_plans)

    @property
    def features(self) -> frozenset[str]:
        """Every feature granted now: the union over ``plan`` and ``other_plans``.

        Empty without access.
        """
        return frozenset(name for plan in self._entitled_plans() for name in plan.features)

    def has_feature(self, name: str) -> bool:
        """Whether access is granted and the user has feature ``name``.

        The feature comes from the customer's active Stripe Entitlements when
        ``entitlements`` is set (``features_source="stripe_entitlements"``), else from
        ``plan`` and, with several subscriptions, ``other_plans``.
        """
        if self.entitlements is not None:
            return self.has_access and name in self.entitlements
        return name in self.features

    def limit(self, name: str, default: int | None = 0) -> int | None:
        """The limit ``name`` (``None`` meaning unlimited) while access is granted.

        Over ``plan`` and ``other_plans``, the larger value wins and ``None`` (unlimited)
        beats any number. Without access, without a plan, or when no plan defines ``name``,
        returns ``default`` (0 unless given): a lapsed subscription never keeps a paid
        plan's limits.
        """
        values = [plan.limits[name] for plan in self._entitled_plans() if name in plan.limits]
        if not values:
            return default
        if any(value is None for value in values):
            return None
        return max(value for value in values if value is not None)


class UpcomingInvoice(Value):
    """The next charge of a user's subscription, from Stripe's invoice preview.

    Attributes:
        subscription_id: the subscription it bills.
        amount_due: what will be charged (after discounts, credit balance).
        total: the invoice total.
        at: when Stripe will attempt the charge (or the period end), if known.
    """

    subscription_id: str
    amount_due: Money
    total: Money
    at: UTCDateTime | None = None


class CustomerDetails:
    """Answers "what plan is this user on and is access granted", without calling Stripe.

    Args:
        config: plans, free plan and the ``AccessPolicy``.
        repository: where subscriptions are stored (read through one unit of work).
        catalog: maps a stored price id to a plan when the subscription has no plan key; only
            its configured ids and already cached prices are used, never a Stripe call.
        clock: current time, for the past-due grace period and card expiry.
        gateway: Stripe, for ``next_invoice`` only (the one read that calls it);
            without one, ``next_invoice`` raises ``ConfigurationError``.
    """

    def __init__(
        self,
        config: BillingConfig,
        *,
        repository: Repository,
        catalog: PlanCatalog,
        clock: Clock = system_clock,
        gateway: StripeGateway | None = None,
    ) -> None:
        self._config = config
        self._repository = repository
        self._catalog = catalog
        self._clock = require_aware_clock(clock)
        self._gateway = gateway
        self._next_invoices: dict[str, tuple[datetime, UpcomingInvoice | None]] = {}
        self._next_lock = threading.Lock()

    def for_user(self, user_id: str) -> BillingDetails:
        """The billing details of ``user_id`` now.

        Among the user's subscriptions, the newest one granting access wins, else the newest
        live (non-terminal) one. A user without one (or with only canceled or expired ones)
        is on ``config.free_plan`` with access, or on no plan without access when no free
        plan is configured. A subscription whose plan is no longer configured still reports
        its status and access, with ``plan`` ``None``.

        With ``config.allow_multiple_subscriptions``, every other live subscription that
        grants access adds its plan to ``other_plans``: ``BillingDetails.has_feature``
        and ``BillingDetails.limit`` then answer for all of them (features: union;
        limits: the larger, ``None`` = unlimited wins). The other fields describe the newest
        granting one. Without that setting only that one counts.

        Raises ``InvalidInputError`` for a blank ``user_id``.
        """
        _check_user(user_id)
        stripe_features = self._config.features_source == "stripe_entitlements"
        entitlements: tuple[str, ...] | None = None
        with self._repository.unit_of_work() as uow:
            subscriptions = uow.subscriptions_for_user(user_id)
            link = uow.customer_for_user(user_id)
            method = _default_method(uow, link.customer_id) if link is not None else None
            if stripe_features and link is not None and subscriptions:
                summary = uow.entitlements_for_customer(link.customer_id)
                entitlements = summary.lookup_keys if summary is not None else ()
        now = self._clock()
        chosen = self._choose(subscriptions, now)
        if chosen is None:
            return self._free(user_id).model_copy(update={"payment_method": method})
        if stripe_features and entitlements is None:
            entitlements = ()  # a subscription without a linked customer: none known
        subscription, access = chosen
        details = self._describe(user_id, subscription, access).model_copy(
            update={"payment_method": method, "entitlements": entitlements}
        )
        if not (access and self._config.allow_multiple_subscriptions):
            return details
        others = [
            sub
            for sub in self._live(subscriptions)
            if sub.id != subscription.id and grants_access(sub, self._config.access, now)
        ]
        plans = [self._plan_of(sub)[1] for sub in others]
        return details.model_copy(
            update={
                "other_plans": tuple(plan for plan in plans if plan is not None),
                "other_subscription_ids": tuple(sub.id for sub in others),
            }
        )

    def subscriptions(self, user_id: str, *, include_ended: bool = False) -> list[BillingDetails]:
        """Every subscription of ``user_id``, newest first, each described on its own.

        One ``BillingDetails`` per subscription (its plan, status, access, dates; no
        ``other_plans``), for an account page listing a base plan and its add-ons. Canceled
        and expired (``incomplete_expired``) ones are left out unless ``include_ended``.
        From the repository alone: no Stripe call. Raises
        ``InvalidInputError`` for a blank ``user_id``.
        """
        _check_user(user_id)
        with self._repository.unit_of_work() as uow:
            stored = uow.subscriptions_for_user(user_id)
        now = self._clock()
        listed = _newest_first(stored) if include_ended else self._live(stored)
        return [
            self._describe(user_id, sub, grants_access(sub, self._config.access, now))
            for sub in listed
        ]

    def purchases(self, user_id: str) -> list[Purchase]:
        """The user's one-time purchases, newest first, with their status and refunds.

        From the repository alone: no Stripe call. ``status.is_paid`` tells what was paid
        (refunded ones included; ``status`` says how much came back). Raises
        ``InvalidInputError`` for a blank ``user_id``.
        """
        _check_user(user_id)
        with self._repository.unit_of_work() as uow:
            return uow.purchases_for_user(user_id)

    def _plan_of(self, subscription: Subscription) -> tuple[str | None, PlanDefinition | None]:
        plan_key = subscription.plan_key
        if plan_key is None and subscription.price_id is not None:
            plan_key = self._catalog.plan_key_for_price(subscription.price_id, load=False)
        plan = self._config.plan_definition(plan_key) if plan_key is not None else None
        return plan_key, plan

    def _describe(self, user_id: str, subscription: Subscription, access: bool) -> BillingDetails:
        plan_key, plan = self._plan_of(subscription)
        problem: str | None = None
        if plan is not None:
            problem = None
        elif plan_key is not None:
            problem = f"the subscription's plan {plan_key!r} is not configured"
        elif subscription.price_id is None:
            problem = "the subscription has no price"
        else:
            problem = (
                f"the subscription's price {subscription.price_id!r} matches no configured plan"
            )
        return BillingDetails(
            user_id=user_id,
            plan_key=plan_key,
            plan=plan,
            plan_problem=problem,
            subscription_id=subscription.id,
            status=subscription.status,
            has_access=access,
            price_id=subscription.price_id,
            quantity=subscription.quantity,
            current_period_end=subscription.current_period_end,
            cancel_at_period_end=subscription.cancel_at_period_end,
            cancel_at=subscription.cancel_at,
            trial_end=subscription.trial_end,
        )

    @staticmethod
    def _live(subscriptions: Sequence[Subscription]) -> list[Subscription]:
        return _newest_first(sub for sub in subscriptions if not sub.status.is_terminal)

    def _choose(
        self, subscriptions: Sequence[Subscription], now: datetime
    ) -> tuple[Subscription, bool] | None:
        """The relevant live subscription and whether it grants access."""
        live = self._live(subscriptions)
        for subscription in live:
            if grants_access(subscription, self._config.access, now):
                return subscription, True
        return (live[0], False) if live else None

    def _free(self, user_id: str) -> BillingDetails:
        key = self._config.free_plan
        if key is None:
            return BillingDetails(
                user_id=user_id, plan_problem="no subscription and no free plan configured"
            )
        return BillingDetails(
            user_id=user_id,
            plan_key=key,
            plan=self._config.plan_definition(key),
            has_access=True,
        )

    def invoices(
        self, user_id: str, *, limit: int = 20, before: str | datetime | None = None
    ) -> list[InvoiceSummary]:
        """The user's invoice history, newest first, from the repository: no Stripe call.

        ``limit`` (1..100) caps the page. ``before`` pages on: an invoice id (the last one of
        the previous page; an unknown id raises ``InvalidInputError``) or an aware datetime
        (invoices created before it). Deleted drafts are not listed; ``amount_refunded`` is
        what the invoice's charges refunded so far.

        Raises ``InvalidInputError`` for a blank ``user_id``, a
        ``limit`` out of range, or a bad ``before``.
        """
        _check_user(user_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
            raise InvalidInputError("limit must be an integer from 1 to 100")
        with self._repository.unit_of_work() as uow:
            cursor: tuple[datetime, str] | None = None
            if isinstance(before, datetime):
                if before.tzinfo is None or before.utcoffset() is None:
                    raise InvalidInputError("before must be a timezone-aware datetime")
                cursor = (before, "")
            elif isinstance(before, str):
                anchor = uow.get_invoice(before) if before else None
                if anchor is None or anchor.created is None:
                    raise InvalidInputError(f"before: no invoice {before!r} in the history")
                cursor = (anchor.created, anchor.id)
            elif before is not None:
                raise InvalidInputError("before must be an invoice id or a datetime")
            return uow.invoices_for_user(user_id, limit=limit, before=cursor)

    # ------------------------------------------------------------------ payment methods

    def card_expiring(self, user_id: str, within_days: int = 30) -> PaymentMethodSummary | None:
        """The user's default card if it has expired or expires within ``within_days``.

        Answers the "your card ending 4242 expires soon" banner from the repository (no
        Stripe call): ``None`` without a default method, for a method that is not a card
        (or has no expiry), and for a card valid beyond the window. A card works through
        the last day of its expiry month.

        Raises ``InvalidInputError`` for a blank ``user_id`` or a
        negative ``within_days``.
        """
        user_id = _check_user(user_id)
        if isinstance(within_days, bool) or not isinstance(within_days, int) or within_days < 0:
            raise InvalidInputError("within_days must be a non-negative integer")
        with self._repository.unit_of_work() as uow:
            link = uow.customer_for_user(user_id)
            method = _default_method(uow, link.customer_id) if link is not None else None
        if method is None or not method.expires_within(self._clock(), within_days):
            return None
        return method

    # ------------------------------------------------------------------ upcoming invoice

    def next_invoice(self, user_id: str) -> UpcomingInvoice | None:
        """Amount and date of the user's next charge, from Stripe's invoice preview.

        **Calls Stripe** (one ``preview_invoice``) for a user with an active, trialing or
        past-due subscription that is not set to end at its period end, then answers from
        memory for ``BillingConfig.next_invoice_cache_seconds``. ``None`` (no call) when
        there is no such subscription. Gateway errors propagate (nothing is cached).

        Raises:
            InvalidInputError: a blank ``user_id``.
            ConfigurationError: the service was built without a ``gateway``.
        """
        user_id = _check_user(user_id)
        if self._gateway is None:
            raise ConfigurationError("CustomerDetails needs gateway= to preview the next invoice")
        now = self._clock()
        with self._next_lock:
            cached = self._next_invoices.get(user_id)
        if cached is not None and now < cached[0]:
            return cached[1]
        with self._repository.unit_of_work() as uow:
            subscriptions = uow.subscriptions_for_user(user_id)
        chosen = self._choose(subscriptions, now)
        upcoming: UpcomingInvoice | None = None
        if chosen is not None:
            subscription = chosen[0]
            if subscription.status in _BILLED and not subscription.cancel_at_period_end:
                preview = self._gateway.preview_invoice(
                    InvoicePreviewRequest(
                        customer_id=subscription.customer_id,
                        subscription_id=subscription.id,
                    )
                )
                upcoming = UpcomingInvoice(
                    subscription_id=subscription.id,
                    amount_due=preview.next_invoice_total or preview.amount_due,
                    total=preview.total,
                    at=preview.next_invoice_at,
                )
        ttl = self._config.next_invoice_cache_seconds
        if ttl > 0:
            with self._next_lock:
                if len(self._next_invoices) >= _NEXT_INVOICE_SWEEP:
                    # forget expired answers, so the cache holds recently asked users only
                    self._next_invoices = {
                        user: entry for user, entry in self._next_invoices.items() if entry[0] > now
                    }
                self._next_invoices[user_id] = (now + timedelta(seconds=ttl), upcoming)
        return upcoming


def _check_user(user_id: object) -> str:
    """``user_id`` itself; a blank or non-string one is an ``InvalidInputError``."""
    if not isinstance(user_id, str) or not user_id.strip():
        raise InvalidInputError("user_id must be a non-empty string")
    return user_id


def _newest_first(subscriptions: Iterable[Subscription]) -> list[Subscription]:
    return sorted(subscriptions, key=lambda sub: (sub.created, sub.id), reverse=True)


def _default_method(uow: UnitOfWork, customer_id: str) -> PaymentMethodSummary | None:
    """The customer's default method, else its most recently created attached one."""
    default = uow.default_payment_method(customer_id)
    if default is not None and default.payment_method_id is not None:
        method = uow.get_payment_method(default.payment_method_id)
        if method is not None and not method.detached:
            return method
    methods = uow.payment_methods_for_customer(customer_id)
    return methods[0] if methods else None
