"""FakeStripeGateway: an in-process, stateful Stripe for tests and demos.

The class is a facade: it checks arguments, holds the one lock around each public call,
runs port methods through ``Controls`` and turns the
Stripe JSON its parts keep into billingkit values. The parts (see the package docstring)
do the work.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from billingkit.domain import Interval, Price, Subscription, to_timestamp
from billingkit.errors import ConfigurationError, GatewayError
from billingkit.ports import (
    LIST_PAGE_SIZE,
    CheckoutSession,
    CheckoutSessionRequest,
    Clock,
    InvoicePreview,
    InvoicePreviewRequest,
    MeterEvent,
    Page,
    PortalSession,
    PromotionCode,
    ScheduledChange,
    SetupSessionRequest,
    StripeCustomer,
    StripeGateway,
    SubscriptionSchedule,
    SubscriptionUpdate,
    SubscriptionUpdateResult,
    WebhookEndpoint,
)
from billingkit.stripe_objects import (
    checkout_session_from_stripe,
    customer_from_stripe,
    invoice_preview_from_stripe,
    meter_event_from_stripe,
    promotion_code_from_stripe,
    subscription_from_stripe,
    subscription_schedule_from_stripe,
    subscription_update_result_from_stripe,
    webhook_endpoint_from_stripe,
)
from billingkit.testing._catalog import UNSET, Catalog, Unset
from billingkit.testing._changes import Changes
from billingkit.testing._checkout import Checkout
from billingkit.testing._controls import Controls
from billingkit.testing._customers import Customers
from billingkit.testing._events import FAKE_API_VERSION, Delivery
from billingkit.testing._invoices import Invoices
from billingkit.testing._listing import Listing
from billingkit.testing._meters import Meters
from billingkit.testing._payment_methods import PaymentMethods
from billingkit.testing._schedule import Schedule
from billingkit.testing._state import FakeState
from billingkit.testing._subscriptions import Subscriptions

__all__ = ["DEFAULT_RETRY_DELAYS", "DEFAULT_START", "FakeStripeGateway"]

_V = TypeVar("_V")

#: Where a fake's clock starts unless told otherwise.
DEFAULT_START = datetime(2026, 1, 5, 9, 0, 0, tzinfo=timezone.utc)
#: Delays between a failed renewal payment and each automatic retry (Stripe's default-like
#: schedule); after the last retry fails the subscription is canceled.
DEFAULT_RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(days=3),
    timedelta(days=5),
    timedelta(days=7),
)


class FakeStripeGateway(StripeGateway):
    """A stateful, deterministic, thread-safe Stripe implementing the gateway port.

    It keeps customers, products and prices, Checkout Sessions, subscriptions and invoices
    as Stripe JSON (API version ``FAKE_API_VERSION``), answers the port methods with
    billingkit values parsed from that JSON, and emits every change as a Stripe event,
    signed with ``webhook_secret`` when collected with ``drain_events``.

    Ids are deterministic (``cus_fake0001``, ``price_fake0001``, ``sub_fake0001``, ...). The
    fake has its own clock (``now``, usable as the services' ``Clock``) that only moves
    through ``advance`` / ``advance_to`` (which run renewals, trial ends, payment
    retries and scheduled cancellations) and the second a payment takes in
    ``complete_checkout``. Every port call is counted in ``calls``; failures can be
    injected with ``fail_next``. Create calls honour idempotency keys like Stripe (24 h).

    Operations that are not port methods (seeding the catalog, completing a checkout, portal
    actions, moving time) are the test's own doing: they are not counted in ``calls``.
    """

    def __init__(
        self,
        *,
        webhook_secret: str,
        start: datetime = DEFAULT_START,
        livemode: bool = False,
        api_version: str = FAKE_API_VERSION,
        retry_delays: Sequence[timedelta] = DEFAULT_RETRY_DELAYS,
    ) -> None:
        """Build an empty Stripe account whose events are signed with ``webhook_secret``.

        ``start`` (aware) is the clock's initial time; ``retry_delays`` the waits before each
        automatic retry of a failed renewal payment.
        """
        if not webhook_secret:
            raise ConfigurationError("FakeStripeGateway needs a webhook signing secret")
        if start.tzinfo is None:
            raise ConfigurationError("start must be a timezone-aware datetime")
        if any(delay <= timedelta(0) for delay in retry_delays):
            raise ConfigurationError("retry delays must be positive")
        state = FakeState(
            secret=webhook_secret,
            start=start.astimezone(timezone.utc),
            livemode=livemode,
            api_version=api_version,
            retry_delays=retry_delays,
        )
        self._state = state
        self._lock = state.lock
        self._controls = Controls(state)
        self._catalog = Catalog(state)
        self._invoices = Invoices(state)
        self._subscriptions = Subscriptions(state, self._invoices)
        self._customers = Customers(state, self._subscriptions)
        self._checkout = Checkout(state, self._customers, self._subscriptions, self._invoices)
        self._changes = Changes(state, self._catalog, self._invoices, self._subscriptions)
        self._schedule = Schedule(state, self._checkout, self._subscriptions, self._changes)
        self._listing = Listing(state)
        self._payment_methods = PaymentMethods(state, self._customers)
        self._meters = Meters(state)
        self._invoices.metered_usage = self._meters.billable

    def __repr__(self) -> str:
        state = self._state
        return (
            f"FakeStripeGateway(now={state.now.isoformat()}, customers={len(state.customers)}, "
            f"subscriptions={len(state.subs)}, pending_events={len(state.pending)})"
        )

    @property
    def calls(self) -> Counter[str]:
        """Port calls made so far, keyed by method name (failed attempts included)."""
        return self._controls.calls

    @calls.setter
    def calls(self, value: Counter[str]) -> None:
        self._controls.calls = value

    # ------------------------------------------------------------------------------ clock

    def now(self) -> datetime:
        """The fake's current time (aware UTC); pass ``gateway.now`` as a ``Clock``."""
        with self._lock:
            return self._state.now

    @property
    def clock(self) -> Clock:
        """The fake's clock as a ``Clock`` callable (same as the bound ``now``)."""
        return self.now

    def advance(self, delta: timedelta) -> None:
        """Move time forward by ``delta``, running everything due on the way.

        Due work runs in time order: trial-will-end notices (3 days before a trial ends),
        trial ends (first real invoice), renewals at period end (new period, invoice paid or
        failed), automatic payment retries, cancellations at period end, and the expiry of
        open Checkout Sessions (24 h). Each change is emitted as events.
        """
        if delta < timedelta(0):
            raise ConfigurationError("time only moves forward")
        with self._lock:
            self.advance_to(self._state.now + delta)

    def advance_to(self, moment: datetime) -> None:
        """Move time forward to ``moment`` (aware), like ``advance``."""
        if moment.tzinfo is None:
            raise ConfigurationError("moment must be a timezone-aware datetime")
        with self._lock:
            self._schedule.advance_to(moment)

    # ------------------------------------------------------------------------------ events

    def pending_events(self) -> list[Delivery]:
        """Undelivered events as signed deliveries (signed at the fake's current time)."""
        with self._lock:
            return self._state.deliveries()

    def drain_events(self) -> list[Delivery]:
        """Like ``pending_events``, and forget them (each is delivered once)."""
        with self._lock:
            deliveries = self._state.deliveries()
            self._state.pending.clear()
            return deliveries

    def emitted_events(self) -> list[dict[str, Any]]:
        """Every event emitted so far (delivered or not), oldest first, as dicts."""
        with self._lock:
            return copy.deepcopy(self._state.log)

    # ------------------------------------------------------------------------------ tooling

    @property
    def total_calls(self) -> int:
        """Number of port calls made so far."""
        with self._lock:
            return sum(self.calls.values())

    def reset_calls(self) -> None:
        """Zero ``calls`` (e.g. after seeding a flow)."""
        with self._lock:
            self.calls.clear()

    def fail_next(
        self,
        operation: str,
        error: GatewayError,
        *,
        after_applying: bool = False,
        after_calls: int = 0,
    ) -> None:
        """Make the next call of port method ``operation`` raise ``error``.

        By default nothing happens before the error (Stripe refused the request). With
        ``after_applying`` the call takes effect first and its response is lost, as when a
        connection drops after Stripe processed a request: a retry with the same idempotency
        key then gets the original object. ``after_calls`` lets that many calls succeed
        first (a failure in the middle of a batch). Several failures queue up in order.
        """
        with self._lock:
            self._controls.fail_next(
                operation, error, after_applying=after_applying, after_calls=after_calls
            )

    def stripe_object(self, object_id: str) -> dict[str, Any]:
        """A copy of the stored Stripe JSON of any object (customer, price, sub, ...)."""
        with self._lock:
            found = self._payment_methods.find(object_id)
            return copy.deepcopy(found if found is not None else self._state.find(object_id))

    def checkout_request(self, session_id: str) -> CheckoutSessionRequest:
        """The request a Checkout Session was created from."""
        with self._lock:
            return self._state.session(session_id).request

    def subscription_ids(self, customer_id: str | None = None) -> list[str]:
        """Ids of the subscriptions (of one customer, or all), oldest first."""
        with self._lock:
            return [
                sub_id
                for sub_id, sub in self._state.subs.items()
                if customer_id is None or sub.json["customer"] == customer_id
            ]

    def latest_invoice(self, subscription_id: str) -> dict[str, Any]:
        """A copy of the subscription's latest invoice JSON."""
        with self._lock:
            return self._invoices.latest_copy(subscription_id)

    # ------------------------------------------------------------------------------ catalog

    def add_product(self, name: str, *, product_id: str | None = None) -> str:
        """Seed a product; returns its id (``prod_fake0001`` unless given)."""
        with self._lock:
            return self._catalog.add_product(name, product_id)

    def add_price(
        self,
        *,
        amount: int | None,
        currency: str = "usd",
        interval: Interval | str = Interval.MONTH,
        interval_count: int = 1,
        lookup_key: str | None = None,
        product: str | None = None,
        product_name: str | None = None,
        tiered: bool = False,
        active: bool = True,
        price_id: str | None = None,
        meter: str | None = None,
    ) -> Price:
        """Seed a price (and its product unless ``product`` names an existing one).

        ``amount`` is in minor units (``None`` only when ``tiered``); ``interval`` is
        ``"day"``/``"week"``/``"month"``/``"year"`` or ``Interval.ONE_TIME`` for a one-time
        price. ``meter`` (the event name of a meter seeded with ``add_meter``) makes a
        metered price: each renewal invoice bills ``amount`` per unit of the usage the meter
        counted over the period that ended. Returns the price as ``list_prices`` would.
        """
        with self._lock:
            if meter is not None:
                meter_id = self._meters.meter_id(meter)
                if Interval(interval) is Interval.ONE_TIME:
                    raise ConfigurationError("a metered price must be recurring")
            price = self._catalog.add_price(
                amount=amount,
                currency=currency,
                interval=interval,
                interval_count=interval_count,
                lookup_key=lookup_key,
                product=product,
                product_name=product_name,
                tiered=tiered,
                active=active,
                price_id=price_id,
            )
            if meter is not None:
                price["recurring"]["usage_type"] = "metered"
                price["recurring"]["meter"] = meter_id
            return self._catalog.price_value(price)

    def update_price(
        self,
        price_id: str,
        *,
        active: bool | None = None,
        lookup_key: str | Unset | None = UNSET,
    ) -> Price:
        """Change a price's ``active`` flag or lookup key; emits ``price.updated``."""
        with self._lock:
            price = self._catalog.update_price(price_id, active=active, lookup_key=lookup_key)
            return self._catalog.price_value(price)

    # ------------------------------------------------------------------------------ port

    def create_customer(
        self,
        *,
        user_id: str,
        email: str | None,
        idempotency_key: str,
        metadata: Mapping[str, str] | None = None,
    ) -> StripeCustomer:
        """Create ``cus_fakeNNNN`` with ``metadata["user_id"]``; emits ``customer.created``."""
        params = {"user_id": user_id, "email": email, "metadata": dict(metadata or {})}

        def create() -> StripeCustomer:
            customer = self._customers.create(user_id=user_id, email=email, metadata=metadata)
            return customer_from_stripe(customer)

        with self._lock:
            return self._controls.call("create_customer", create, idempotency_key, params)

    def retrieve_customer(self, customer_id: str) -> StripeCustomer:
        """The customer (``deleted`` set once deleted); unknown ids raise NotFound."""

        def retrieve() -> StripeCustomer:
            return customer_from_stripe(self._state.customer(customer_id))

        with self._lock:
            return self._controls.call("retrieve_customer", retrieve)

    def create_checkout_session(self, request: CheckoutSessionRequest) -> CheckoutSession:
        """Create an open session (url, 24 h expiry) and record ``request``.

        Refuses (``GatewayInvalidRequestError``) an unknown or deleted customer, an unknown
        or inactive price, a one-time price in subscription mode or a recurring one in
        payment mode, and trial days outside subscription mode.
        """
        params = request.model_dump(mode="json", exclude={"idempotency_key"})

        def create() -> CheckoutSession:
            return checkout_session_from_stripe(self._checkout.create(request))

        with self._lock:
            operation = "create_checkout_session"
            return self._controls.call(operation, create, request.idempotency_key, params)

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession:
        """The session with its subscription expanded (``CheckoutSession.subscription``)."""

        def retrieve() -> CheckoutSession:
            setup = self._payment_methods.session(session_id)
            if setup is not None:
                return checkout_session_from_stripe(setup.json)
            return self._checkout.expanded(self._state.session(session_id).json)

        with self._lock:
            return self._controls.call("retrieve_checkout_session", retrieve)

    def list_prices(
        self, *, price_ids: Sequence[str] = (), lookup_keys: Sequence[str] = ()
    ) -> list[Price]:
        """Every known price among ``price_ids`` and ``lookup_keys``, with product names."""

        def list_() -> list[Price]:
            return self._catalog.matching(price_ids, lookup_keys)

        with self._lock:
            return self._controls.call("list_prices", list_)

    def retrieve_subscription(self, subscription_id: str) -> Subscription:
        """The subscription's current state (``watermark`` 0)."""

        def retrieve() -> Subscription:
            return subscription_from_stripe(self._state.sub(subscription_id).json)

        with self._lock:
            return self._controls.call("retrieve_subscription", retrieve)

    def create_billing_portal_session(
        self, *, customer_id: str, return_url: str, idempotency_key: str | None = None
    ) -> PortalSession:
        """A portal session ``bps_fakeNNNN`` for an existing customer."""
        params = {"customer_id": customer_id, "return_url": return_url}

        def create() -> PortalSession:
            return self._customers.portal_session(customer_id, return_url)

        with self._lock:
            operation = "create_billing_portal_session"
            return self._controls.call(operation, create, idempotency_key, params)

    # ------------------------------------------------------------------------------ checkout

    def complete_checkout(self, session_id: str, *, delayed: bool = False) -> CheckoutSession:
        """Act as if the customer paid on the Checkout page.

        Subscription mode: creates the subscription (``trialing`` with trial days, else
        ``active``; metadata from ``subscription_metadata``), its first invoice (0 during a
        trial) paid, and emits ``customer.subscription.created``, ``invoice.created``,
        ``invoice.finalized`` (second T), then ``invoice.paid``,
        ``invoice.payment_succeeded`` and ``checkout.session.completed`` (T+1). Payment mode:
        ``payment_intent.succeeded`` (T) and ``checkout.session.completed`` (T+1). The
        clock ends at T+1. A customer whose card declines gets ``GatewayCardError`` and the
        session stays open. Returns the session as ``retrieve_checkout_session`` would.
        ``delayed`` (payment mode): the customer chose a delayed payment method (a bank
        debit): ``payment_intent.processing`` and the session completes ``unpaid``; settle
        it with ``settle_delayed_payment``.
        """
        with self._lock:
            return self._checkout.expanded(self._checkout.complete(session_id, delayed=delayed))

    def settle_delayed_payment(self, session_id: str, *, succeeded: bool = True) -> CheckoutSession:
        """A delayed payment (``complete_checkout(..., delayed=True)``) settles now.

        Succeeded: ``payment_intent.succeeded`` (T) and
        ``checkout.session.async_payment_succeeded`` (T+1), the session ``paid``. Failed:
        ``payment_intent.payment_failed`` and ``checkout.session.async_payment_failed``.
        """
        with self._lock:
            return self._checkout.expanded(self._checkout.settle(session_id, succeeded=succeeded))

    def refund_payment(self, session_id: str, amount: int | None = None) -> dict[str, Any]:
        """Refund ``amount`` (minor units; ``None``: what is left) of a one-time payment.

        Emits ``charge.refunded`` with the charge's running ``amount_refunded`` (and
        ``refunded`` true once all of it is). Returns the charge's JSON.
        """
        with self._lock:
            return copy.deepcopy(self._checkout.refund(session_id, amount))

    def add_payment_method(self, customer_id: str) -> None:
        """Act as if the customer added a card (e.g. in the billing portal).

        Their trials started without a card (``payment_method_collection=if_required``)
        then convert to ``active`` and bill at their end instead of being canceled or
        paused (the ``trial_end_behavior``).
        """
        with self._lock:
            self._checkout.add_payment_method(customer_id)

    def expire_checkout(self, session_id: str) -> None:
        """Expire an open session now; emits ``checkout.session.expired``."""
        with self._lock:
            self._checkout.expire(self._state.session(session_id))

    # ------------------------------------------------------------------------------ payments

    def fail_next_payment(self, subscription_id: str) -> None:
        """Make the subscription's next payment attempt fail (once)."""
        with self._lock:
            self._state.sub(subscription_id).fail_next_payment = True

    def set_card_declining(self, customer_id: str, declining: bool = True) -> None:
        """Make every payment of this customer fail (or succeed again) until changed."""
        with self._lock:
            self._customers.set_declining(customer_id, declining)

    def retry_payment(self, subscription_id: str) -> Subscription:
        """Retry the subscription's open invoice now (the customer fixed their card)."""
        with self._lock:
            sub = self._state.sub(subscription_id)
            invoice = self._invoices.open_of(sub)
            self._subscriptions.collect(sub, invoice, self._state.timestamp())
            return subscription_from_stripe(sub.json)

    # ------------------------------------------------------------------------------ portal

    def update_subscription(
        self,
        subscription_id: str,
        *,
        price_id: str | None = None,
        quantity: int | None = None,
        cancel_at_period_end: bool | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Subscription:
        """Change a live subscription as the billing portal would.

        A new price takes effect on the current period (no proration invoice).
        ``cancel_at_period_end=True`` schedules the end (``cancel_at`` = period end,
        ``canceled_at`` = now); ``False`` undoes it. Emits ``customer.subscription.updated``
        with ``previous_attributes`` when something changed.
        """
        with self._lock:
            sub = self._subscriptions.live(subscription_id)
            self._subscriptions.update(
                sub,
                price_id=price_id,
                quantity=quantity,
                cancel_at_period_end=cancel_at_period_end,
                metadata=metadata,
            )
            return subscription_from_stripe(sub.json)

    def cancel_subscription(self, subscription_id: str) -> Subscription:
        """Cancel now; emits ``customer.subscription.deleted``."""
        with self._lock:
            sub = self._subscriptions.live(subscription_id, allow_paused=True)
            self._subscriptions.end(sub, self._state.timestamp(), reason="cancellation_requested")
            return subscription_from_stripe(sub.json)

    def pause_subscription(self, subscription_id: str) -> Subscription:
        """Pause: status ``paused``, no billing until resumed.

        Emits ``customer.subscription.paused`` and ``customer.subscription.updated``.
        """
        with self._lock:
            sub = self._subscriptions.live(subscription_id)
            self._subscriptions.pause(sub)
            return subscription_from_stripe(sub.json)

    def resume_subscription(self, subscription_id: str) -> Subscription:
        """Resume a paused subscription: a new period starts now and is invoiced.

        Emits ``customer.subscription.resumed``, ``customer.subscription.updated`` and the
        invoice events (a failed payment leaves it ``past_due``).
        """
        with self._lock:
            sub = self._state.sub(subscription_id)
            self._subscriptions.resume(sub)
            return subscription_from_stripe(sub.json)

    def delete_customer(self, customer_id: str) -> None:
        """Delete a customer: its live subscriptions end, then ``customer.deleted``."""
        with self._lock:
            self._customers.delete(customer_id)

    # ------------------------------------------------------------------ promotion codes

    def add_promotion_code(
        self,
        code: str,
        *,
        percent_off: float | None = None,
        amount_off: int | None = None,
        currency: str | None = None,
        duration: str = "once",
        duration_in_months: int | None = None,
        expires_at: datetime | None = None,
        max_redemptions: int | None = None,
        active: bool = True,
    ) -> PromotionCode:
        """Seed a coupon and a customer-facing promotion ``code`` for it.

        Exactly one of ``percent_off`` (0-100) or ``amount_off`` (minor units of
        ``currency``). ``duration`` ``once`` discounts one invoice, ``repeating``
        ``duration_in_months`` months of invoices, ``forever`` all. Returns the code as
        ``find_promotion_code`` answers it (its ``id`` is ``promo_fakeNNNN``).
        """
        if expires_at is not None and expires_at.tzinfo is None:
            raise ConfigurationError("expires_at must be a timezone-aware datetime")
        with self._lock:
            promo = self._catalog.add_promotion_code(
                code,
                percent_off=percent_off,
                amount_off=amount_off,
                currency=currency,
                duration=duration,
                duration_in_months=duration_in_months,
                expires_at=None if expires_at is None else int(expires_at.timestamp()),
                max_redemptions=max_redemptions,
                active=active,
            )
            return promotion_code_from_stripe(promo)

    def set_promotion_code_active(self, promotion_code_id: str, active: bool) -> PromotionCode:
        """Deactivate (or reactivate) a promotion code; emits ``promotion_code.updated``."""
        with self._lock:
            promo = self._catalog.set_promotion_code_active(promotion_code_id, active)
            return promotion_code_from_stripe(promo)

    # ------------------------------------------------------------------ subscription management

    def _update_result(self, sub_json: dict[str, Any]) -> SubscriptionUpdateResult:
        """The sub as ``modify_subscription`` answers it (latest invoice expanded)."""
        expanded = copy.deepcopy(sub_json)
        invoice = self._state.invoices.get(sub_json["latest_invoice"] or "")
        if invoice is not None:
            invoice = copy.deepcopy(invoice)
            if invoice["status"] == "open":
                invoice["hosted_invoice_url"] = (
                    f"https://invoice.stripe.com/i/acct_fake/{invoice['id']}"
                )
            intent = None
            if invoice["attempted"]:
                intent = "succeeded" if invoice["status"] == "paid" else "requires_payment_method"
            if intent is not None:
                payment = {"payment_intent": {"id": f"pi_{invoice['id']}", "status": intent}}
                invoice["payments"] = {"object": "list", "data": [{"payment": payment}]}
            expanded["latest_invoice"] = invoice
        return subscription_update_result_from_stripe(expanded)

    def modify_subscription(self, update: SubscriptionUpdate) -> SubscriptionUpdateResult:
        """Change the item, discount or scheduled end as Stripe's update does.

        Prorations by the second (see ``billingkit.testing._changes``):
        ``create_prorations`` puts the credit and charge on the next invoice,
        ``always_invoice`` (and any interval change) invoices and charges them now,
        ``none`` makes none. With ``pending_if_incomplete`` a declined card leaves the
        subscription on its old price with a ``pending_update`` (emits ``invoice.created``,
        ``invoice.finalized``, ``invoice.payment_failed``, ``customer.subscription.updated``);
        paying that invoice later (``retry_payment``) applies it
        (``customer.subscription.updated``, ``customer.subscription.pending_update_applied``),
        and after 23 hours it expires (``customer.subscription.pending_update_expired``).
        ``error_if_incomplete`` raises ``GatewayCardError`` and changes nothing. A success
        emits ``customer.subscription.updated`` then the invoice events.
        """
        params = update.model_dump(mode="json", exclude={"idempotency_key"})

        def modify() -> SubscriptionUpdateResult:
            return self._update_result(self._changes.modify(update))

        with self._lock:
            operation = "modify_subscription"
            return self._controls.call(operation, modify, update.idempotency_key, params)

    def cancel_subscription_now(
        self,
        subscription_id: str,
        *,
        prorate: bool = False,
        invoice_now: bool = False,
        idempotency_key: str,
    ) -> Subscription:
        """End now (emits ``customer.subscription.deleted``).

        ``prorate`` credits the unused time; with ``invoice_now`` a final invoice carries it
        (a net credit goes to the customer's balance), else it waits on the customer.
        """
        params = {"id": subscription_id, "prorate": prorate, "invoice_now": invoice_now}

        def cancel() -> Subscription:
            sub = self._changes.cancel_now(
                subscription_id, prorate=prorate, invoice_now=invoice_now
            )
            return subscription_from_stripe(sub.json)

        with self._lock:
            operation = "cancel_subscription_now"
            return self._controls.call(operation, cancel, idempotency_key, params)

    def resume_paused_subscription(
        self, subscription_id: str, *, idempotency_key: str
    ) -> Subscription:
        """Resume a paused subscription, like ``resume_subscription``, as a port call."""

        def resume() -> Subscription:
            sub = self._state.sub(subscription_id)
            self._subscriptions.resume(sub)
            return subscription_from_stripe(sub.json)

        with self._lock:
            operation = "resume_paused_subscription"
            params = {"id": subscription_id}
            return self._controls.call(operation, resume, idempotency_key, params)

    def preview_invoice(self, request: InvoicePreviewRequest) -> InvoicePreview:
        """What ``modify_subscription`` with the same fields would bill; no side effect."""

        def preview() -> InvoicePreview:
            invoice = self._changes.preview(request)
            charged_now = request.proration_behavior == "always_invoice"
            return invoice_preview_from_stripe(invoice, charged_now=charged_now)

        with self._lock:
            return self._controls.call("preview_invoice", preview)

    def schedule_subscription_change(self, change: ScheduledChange) -> SubscriptionSchedule:
        """A schedule whose second phase, from the period end, has the new price.

        At that period end (``advance``) the subscription renews on the new price and
        ``subscription_schedule.updated`` is emitted; at the end of that phase the schedule
        completes (``subscription_schedule.completed``) and the subscription runs on.
        """
        params = change.model_dump(mode="json", exclude={"idempotency_key"})

        def schedule() -> SubscriptionSchedule:
            return subscription_schedule_from_stripe(self._changes.schedule_change(change))

        with self._lock:
            operation = "schedule_subscription_change"
            return self._controls.call(operation, schedule, change.idempotency_key, params)

    def release_subscription_schedule(
        self, schedule_id: str, *, idempotency_key: str
    ) -> SubscriptionSchedule:
        """Release: the scheduled change is dropped (``subscription_schedule.released``)."""

        def release() -> SubscriptionSchedule:
            return subscription_schedule_from_stripe(self._changes.release(schedule_id))

        with self._lock:
            operation = "release_subscription_schedule"
            params = {"id": schedule_id}
            return self._controls.call(operation, release, idempotency_key, params)

    def find_promotion_code(self, code: str) -> PromotionCode | None:
        """The active, unexpired, not used-up promotion code ``code`` (case-insensitive)."""

        def find() -> PromotionCode | None:
            promo = self._catalog.find_promotion_code(code)
            return None if promo is None else promotion_code_from_stripe(promo)

        with self._lock:
            return self._controls.call("find_promotion_code", find)

    # ------------------------------------------------------------------------ charges

    def refund(self, charge_or_invoice: str, amount: int | None = None) -> dict[str, Any]:
        """Refund a charge (or the charge that paid an invoice): all of it, or ``amount``.

        Emits ``charge.refunded`` with the charge's cumulative ``amount_refunded``; returns a
        copy of the charge. More than is left to refund is an invalid-request error.
        """
        with self._lock:
            charge = self._invoices.refund(charge_or_invoice, amount, self._state.timestamp())
            return copy.deepcopy(charge)

    def open_dispute(
        self, charge_or_invoice: str, *, reason: str = "fraudulent", amount: int | None = None
    ) -> dict[str, Any]:
        """The customer disputes a charge (or an invoice's): emits ``charge.dispute.created``.

        Returns a copy of the dispute (status ``needs_response``); close it with
        ``close_dispute``.
        """
        with self._lock:
            dispute = self._invoices.open_dispute(
                charge_or_invoice, reason=reason, amount=amount, at=self._state.timestamp()
            )
            return copy.deepcopy(dispute)

    def close_dispute(self, dispute_id: str, *, won: bool) -> dict[str, Any]:
        """Close a dispute as ``won`` or ``lost``: emits ``charge.dispute.closed``."""
        with self._lock:
            dispute = self._invoices.close_dispute(dispute_id, won=won, at=self._state.timestamp())
            return copy.deepcopy(dispute)

    def charge_for(self, charge_or_invoice: str) -> dict[str, Any]:
        """A copy of a charge, by its id or by the id of the invoice it paid."""
        with self._lock:
            return copy.deepcopy(self._invoices.charge_for(charge_or_invoice))

    # ------------------------------------------------------------------ list calls

    def _pages(
        self,
        operation: str,
        kind: str,
        store: Callable[[], Iterable[Mapping[str, Any]]],
        keep: Callable[[Mapping[str, Any]], bool],
        parse: Callable[[Mapping[str, Any]], _V],
        starting_after: str | None,
        page_size: int,
    ) -> Iterator[Page[_V]]:
        """Stripe's pagination: one counted call per page, the cursor moving on each.

        Each page is read and parsed under the lock when the iterator reaches it.
        """
        cursor = starting_after
        while True:

            def fetch(after: str | None = cursor) -> Page[_V]:
                found, more = self._listing.page(
                    store(), kind=kind, starting_after=after, limit=page_size, keep=keep
                )
                items = tuple(parse(obj) for obj in found)
                last = str(found[-1]["id"]) if more and found else None
                return Page(items=items, has_more=last is not None, next_cursor=last)

            with self._lock:
                page = self._controls.call(operation, fetch)
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def list_subscriptions(
        self,
        *,
        customer_id: str | None = None,
        created_gte: datetime | None = None,
        starting_after: str | None = None,
        page_size: int = LIST_PAGE_SIZE,
    ) -> Iterator[Page[Subscription]]:
        """Every subscription (all statuses), newest first, one counted call per page."""
        since = None if created_gte is None else to_timestamp(created_gte)

        def keep(sub: Mapping[str, Any]) -> bool:
            return (customer_id is None or sub["customer"] == customer_id) and (
                since is None or sub["created"] >= since
            )

        def store() -> list[dict[str, Any]]:
            return [record.json for record in self._state.subs.values()]

        return self._pages(
            "list_subscriptions",
            "subscription",
            store,
            keep,
            subscription_from_stripe,
            starting_after,
            page_size,
        )

    def list_customers(
        self,
        *,
        email: str | None = None,
        created_gte: datetime | None = None,
        starting_after: str | None = None,
        page_size: int = LIST_PAGE_SIZE,
    ) -> Iterator[Page[StripeCustomer]]:
        """Every customer not deleted, newest first, one counted call per page."""
        since = None if created_gte is None else to_timestamp(created_gte)

        def keep(customer: Mapping[str, Any]) -> bool:
            return (
                not customer.get("deleted")
                and (email is None or customer.get("email") == email)
                and (since is None or customer["created"] >= since)
            )

        def store() -> Iterable[dict[str, Any]]:
            return self._state.customers.values()

        return self._pages(
            "list_customers",
            "customer",
            store,
            keep,
            customer_from_stripe,
            starting_after,
            page_size,
        )

    def list_webhook_endpoints(
        self, *, starting_after: str | None = None, page_size: int = LIST_PAGE_SIZE
    ) -> Iterator[Page[WebhookEndpoint]]:
        """The endpoints added with ``add_webhook_endpoint``, one call per page."""

        def store() -> Iterable[dict[str, Any]]:
            return self._state.webhook_endpoints.values()

        return self._pages(
            "list_webhook_endpoints",
            "webhook_endpoint",
            store,
            lambda _: True,
            webhook_endpoint_from_stripe,
            starting_after,
            page_size,
        )

    # ------------------------------------------------------------------ seeding for lists

    def add_customer(
        self,
        *,
        email: str | None = None,
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> StripeCustomer:
        """Seed a customer made outside billingkit (no ``user_id`` unless in ``metadata``).

        Emits ``customer.created``. Not a port call (not counted).
        """
        with self._lock:
            return customer_from_stripe(
                self._listing.add_customer(email=email, name=name, metadata=metadata)
            )

    def add_subscription(
        self,
        customer_id: str,
        price_id: str,
        *,
        status: str = "active",
        quantity: int = 1,
        metadata: Mapping[str, str] | None = None,
        cancel_at_period_end: bool = False,
        created: datetime | None = None,
    ) -> Subscription:
        """Seed a subscription made outside Checkout, with no invoice.

        ``status`` is any of Stripe's eight (a ``canceled`` one is ended now). ``created``
        (aware, not in the future) backdates it, as for one imported from elsewhere;
        its current period starts now either way. It renews with ``advance`` like
        the others. Emits ``customer.subscription.created``.
        """
        if created is not None and created.tzinfo is None:
            raise ConfigurationError("created must be a timezone-aware datetime")
        with self._lock:
            sub = self._listing.add_subscription(
                customer_id,
                price_id,
                status=status,
                quantity=quantity,
                metadata=metadata,
                cancel_at_period_end=cancel_at_period_end,
                created=None if created is None else to_timestamp(created),
            )
            return subscription_from_stripe(sub.json)

    def add_webhook_endpoint(
        self,
        url: str,
        *,
        enabled_events: Iterable[str] = ("*",),
        status: str = "enabled",
        api_version: str | None = FAKE_API_VERSION,
    ) -> WebhookEndpoint:
        """Seed a webhook endpoint (``we_fakeNNNN``) that ``list_webhook_endpoints`` lists.

        ``enabled_events`` ``("*",)`` receives every type; ``api_version`` ``None`` means the
        account's default.
        """
        with self._lock:
            endpoint = self._listing.add_webhook_endpoint(
                url, enabled_events=enabled_events, status=status, api_version=api_version
            )
            return webhook_endpoint_from_stripe(endpoint)

    def remove_subscription(self, subscription_id: str) -> None:
        """Forget a subscription entirely, as when test-mode data is deleted.

        No event: afterwards Stripe answers 404 for it and lists do not show it.
        """
        with self._lock:
            self._state.sub(subscription_id)
            del self._state.subs[subscription_id]

    # ------------------------------------------------------------------------ payment methods

    def create_setup_checkout_session(self, request: SetupSessionRequest) -> CheckoutSession:
        """An open setup-mode session (24 h) for an existing customer; nothing is charged."""
        params = request.model_dump(mode="json", exclude={"idempotency_key"})

        def create() -> CheckoutSession:
            return checkout_session_from_stripe(self._payment_methods.create_session(request))

        with self._lock:
            operation = "create_setup_checkout_session"
            return self._controls.call(operation, create, request.idempotency_key, params)

    def set_default_payment_method(
        self,
        *,
        customer_id: str,
        payment_method_id: str,
        subscription_ids: Sequence[str] = (),
        idempotency_key: str,
    ) -> None:
        """Set the default; emits ``customer.updated`` and ``customer.subscription.updated``.

        Counted once in ``calls`` (the real gateway makes ``1 + len(subscription_ids)``
        requests). Refuses a method not attached to the customer and another customer's
        subscription.
        """
        params = {
            "customer": customer_id,
            "payment_method": payment_method_id,
            "subscriptions": list(subscription_ids),
        }

        def set_default() -> None:
            self._payment_methods.set_default(customer_id, payment_method_id, subscription_ids)

        with self._lock:
            operation = "set_default_payment_method"
            self._controls.call(operation, set_default, idempotency_key, params)

    def complete_setup_checkout(
        self,
        session_id: str,
        *,
        brand: str = "visa",
        last4: str = "4242",
        exp_month: int = 12,
        exp_year: int = 2030,
        wallet: str | None = None,
    ) -> str:
        """Act as if the user saved a card on a setup-mode Checkout page; returns its id.

        Emits ``payment_method.attached``, ``setup_intent.created``,
        ``setup_intent.succeeded`` (second T, the intent carrying the session's metadata),
        then ``checkout.session.completed`` (T+1). Not a port call.
        """
        with self._lock:
            return self._payment_methods.complete_session(
                session_id,
                brand=brand,
                last4=last4,
                exp_month=exp_month,
                exp_year=exp_year,
                wallet=wallet,
            )[1]

    def expire_setup_checkout(self, session_id: str) -> None:
        """Expire an open setup-mode session; emits ``checkout.session.expired``."""
        with self._lock:
            self._payment_methods.expire_session(session_id)

    def attach_payment_method(
        self,
        customer_id: str,
        *,
        brand: str = "visa",
        last4: str = "4242",
        exp_month: int = 12,
        exp_year: int = 2030,
        wallet: str | None = None,
    ) -> str:
        """Attach a new card to the customer (``payment_method.attached``); returns its id."""
        with self._lock:
            return self._payment_methods.attach(
                customer_id,
                brand=brand,
                last4=last4,
                exp_month=exp_month,
                exp_year=exp_year,
                wallet=wallet,
            )

    def update_card_expiry(self, payment_method_id: str, exp_month: int, exp_year: int) -> None:
        """The card updater renews a card (``payment_method.automatically_updated``)."""
        with self._lock:
            self._payment_methods.update_expiry(payment_method_id, exp_month, exp_year)

    def detach_payment_method(self, payment_method_id: str) -> None:
        """Detach a method (``payment_method.detached``; ``customer.updated`` if default)."""
        with self._lock:
            self._payment_methods.detach(payment_method_id)

    def set_entitlements(self, customer_id: str, lookup_keys: Sequence[str]) -> None:
        """Set the customer's active entitlements (Stripe dashboard features).

        Emits ``entitlements.active_entitlement_summary.updated`` with one active entitlement
        per lookup key. Not a port call.
        """
        with self._lock:
            self._payment_methods.set_entitlements(customer_id, lookup_keys)

    # ------------------------------------------------------------------------ billing meters

    def add_meter(
        self, event_name: str, *, display_name: str | None = None, active: bool = True
    ) -> str:
        """Seed a sum meter for ``event_name`` (``mtr_fakeNNNN``); returns its id."""
        with self._lock:
            return self._meters.add_meter(event_name, display_name=display_name, active=active)

    def meter_events(
        self, *, customer_id: str | None = None, event_name: str | None = None
    ) -> list[MeterEvent]:
        """The meter events Stripe counted (one per identifier), oldest first."""
        with self._lock:
            return [
                meter_event_from_stripe(event)
                for event in self._meters.events(customer_id=customer_id, event_name=event_name)
            ]

    def meter_usage(
        self,
        customer_id: str,
        event_name: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> int:
        """The summed value of the customer's events with ``start <= timestamp < end``."""
        with self._lock:
            return self._meters.total(customer_id, event_name, start=start, end=end)

    def create_meter_event(
        self,
        *,
        event_name: str,
        customer_id: str,
        value: int,
        identifier: str,
        timestamp: datetime,
    ) -> MeterEvent:
        """Count a meter event once per identifier (a repeat answers the first one).

        Refuses (``GatewayInvalidRequestError``) an unknown or inactive meter, an unknown or
        deleted customer, and a timestamp older than 35 days or more than 5 minutes ahead.
        """

        def create() -> MeterEvent:
            event = self._meters.create(
                event_name=event_name,
                customer_id=customer_id,
                value=value,
                identifier=identifier,
                timestamp=timestamp,
            )
            return meter_event_from_stripe(event)

        with self._lock:
            return self._controls.call("create_meter_event", create)
