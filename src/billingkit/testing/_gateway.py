"""FakeStripeGateway: an in-process, stateful Stripe for tests and demos."""

from __future__ import annotations

import calendar
import copy
import json
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from functools import partial
from typing import Any, TypeVar

from billingkit.domain import Interval, Price, Subscription, from_timestamp, to_timestamp
from billingkit.errors import (
    ConfigurationError,
    GatewayCardError,
    GatewayError,
    GatewayInvalidRequestError,
    GatewayNotFoundError,
)
from billingkit.ports import (
    CheckoutSession,
    CheckoutSessionRequest,
    Clock,
    PortalSession,
    StripeCustomer,
    StripeGateway,
)
from billingkit.stripe_objects import (
    checkout_session_from_stripe,
    customer_from_stripe,
    price_from_stripe,
    subscription_from_stripe,
)
from billingkit.testing import _shapes
from billingkit.testing._events import FAKE_API_VERSION, Delivery, build_event, signed_delivery

__all__ = ["DEFAULT_RETRY_DELAYS", "DEFAULT_START", "PORT_OPERATIONS", "FakeStripeGateway"]

T = TypeVar("T")

#: Where a fake's clock starts unless told otherwise.
DEFAULT_START = datetime(2026, 1, 5, 9, 0, 0, tzinfo=timezone.utc)
#: Delays between a failed renewal payment and each automatic retry (Stripe's default-like
#: schedule); after the last retry fails the subscription is canceled.
DEFAULT_RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(days=3),
    timedelta(days=5),
    timedelta(days=7),
)
#: The :class:`~billingkit.ports.StripeGateway` methods, i.e. the keys of ``calls``.
PORT_OPERATIONS = frozenset(
    {
        "create_customer",
        "retrieve_customer",
        "create_checkout_session",
        "retrieve_checkout_session",
        "list_prices",
        "retrieve_subscription",
        "create_billing_portal_session",
    }
)
_IDEMPOTENCY_TTL = timedelta(hours=24)
_TRIAL_WILL_END_NOTICE = timedelta(days=3)
_SESSION_LIFETIME = timedelta(hours=24)
_LIVE = frozenset({"active", "trialing", "past_due", "unpaid"})
_MAX_STEPS = 100_000


class _Unset(Enum):
    UNSET = 0


#: Marker for "leave unchanged" in :meth:`FakeStripeGateway.update_price`.
UNSET = _Unset.UNSET


@dataclass
class _Failure:
    error: GatewayError
    after_applying: bool


@dataclass
class _IdempotentResult:
    operation: str
    fingerprint: str
    result: Any
    at: datetime


@dataclass
class _Sub:
    """A subscription's Stripe JSON plus the schedule state Stripe keeps privately."""

    json: dict[str, Any]
    anchor: datetime
    interval: str
    interval_count: int
    period_index: int
    trial_will_end_sent: bool = False
    fail_next_payment: bool = False


@dataclass
class _Session:
    json: dict[str, Any]
    request: CheckoutSessionRequest
    seq: int = field(default=0)


def _add_interval(anchor: datetime, interval: str, count: int, periods: int) -> datetime:
    """``anchor`` moved by ``periods`` billing periods (month ends clamp, like Stripe)."""
    if interval in ("day", "week"):
        days = count * periods * (7 if interval == "week" else 1)
        return anchor + timedelta(days=days)
    months = count * periods * (12 if interval == "year" else 1)
    month_index = anchor.month - 1 + months
    year, month = anchor.year + month_index // 12, month_index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Stripe's ``previous_attributes``: old values of the top-level fields that changed."""
    return {key: copy.deepcopy(old.get(key)) for key in new if old.get(key) != new[key]}


def _not_found(kind: str, ident: str) -> GatewayNotFoundError:
    return GatewayNotFoundError(
        f"No such {kind}: '{ident}'", http_status=404, code="resource_missing"
    )


def _invalid(message: str, code: str | None = None) -> GatewayInvalidRequestError:
    return GatewayInvalidRequestError(message, http_status=400, code=code)


class FakeStripeGateway(StripeGateway):
    """A stateful, deterministic, thread-safe Stripe implementing the gateway port.

    It keeps customers, products and prices, Checkout Sessions, subscriptions and invoices
    as Stripe JSON (API version :data:`FAKE_API_VERSION`), answers the port methods with
    billingkit values parsed from that JSON, and emits every change as a Stripe event,
    signed with ``webhook_secret`` when collected with :meth:`drain_events`.

    Ids are deterministic (``cus_fake0001``, ``price_fake0001``, ``sub_fake0001``, ...). The
    fake has its own clock (:meth:`now`, usable as the services' ``Clock``) that only moves
    through :meth:`advance` / :meth:`advance_to` (which run renewals, trial ends, payment
    retries and scheduled cancellations) and the second a payment takes in
    :meth:`complete_checkout`. Every port call is counted in :attr:`calls`; failures can be
    injected with :meth:`fail_next`. Create calls honour idempotency keys like Stripe (24 h).

    Operations that are not port methods (seeding the catalog, completing a checkout, portal
    actions, moving time) are the test's own doing: they are not counted in :attr:`calls`.
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
        self._secret = webhook_secret
        self._now = start.astimezone(timezone.utc)
        self._livemode = livemode
        self._api_version = api_version
        self._retry_delays = tuple(retry_delays)
        self._lock = threading.RLock()
        self._counters: Counter[str] = Counter()
        self._customers: dict[str, dict[str, Any]] = {}
        self._declining: set[str] = set()
        self._products: dict[str, dict[str, Any]] = {}
        self._prices: dict[str, dict[str, Any]] = {}
        self._sessions: dict[str, _Session] = {}
        self._subs: dict[str, _Sub] = {}
        self._invoices: dict[str, dict[str, Any]] = {}
        self._payment_intents: dict[str, dict[str, Any]] = {}
        self._idempotency: dict[str, _IdempotentResult] = {}
        self._failures: dict[str, deque[_Failure]] = {}
        self._pending: list[dict[str, Any]] = []
        self._log: list[dict[str, Any]] = []
        #: Port calls made so far, keyed by method name (failed attempts included).
        self.calls: Counter[str] = Counter()

    def __repr__(self) -> str:
        return (
            f"FakeStripeGateway(now={self._now.isoformat()}, customers={len(self._customers)}, "
            f"subscriptions={len(self._subs)}, pending_events={len(self._pending)})"
        )

    # ------------------------------------------------------------------------------ clock

    def now(self) -> datetime:
        """The fake's current time (aware UTC); pass ``gateway.now`` as a ``Clock``."""
        with self._lock:
            return self._now

    @property
    def clock(self) -> Clock:
        """The fake's clock as a ``Clock`` callable (same as the bound :meth:`now`)."""
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
            self.advance_to(self._now + delta)

    def advance_to(self, moment: datetime) -> None:
        """Move time forward to ``moment`` (aware), like :meth:`advance`."""
        if moment.tzinfo is None:
            raise ConfigurationError("moment must be a timezone-aware datetime")
        with self._lock:
            for _ in range(_MAX_STEPS):
                due = self._next_due(moment)
                if due is None:
                    break
                when, action = due
                self._now = max(self._now, when)
                action()
            else:  # pragma: no cover - a bug in the schedule, not a test outcome
                raise RuntimeError("FakeStripeGateway: too many scheduled steps")
            self._now = max(self._now, moment.astimezone(timezone.utc))

    # ------------------------------------------------------------------------------ events

    def pending_events(self) -> list[Delivery]:
        """Undelivered events as signed deliveries (signed at the fake's current time)."""
        with self._lock:
            at = to_timestamp(self._now)
            return [signed_delivery(e, self._secret, timestamp=at) for e in self._pending]

    def drain_events(self) -> list[Delivery]:
        """Like :meth:`pending_events`, and forget them (each is delivered once)."""
        with self._lock:
            deliveries = self.pending_events()
            self._pending.clear()
            return deliveries

    def emitted_events(self) -> list[dict[str, Any]]:
        """Every event emitted so far (delivered or not), oldest first, as dicts."""
        with self._lock:
            return copy.deepcopy(self._log)

    # ------------------------------------------------------------------------------ tooling

    @property
    def total_calls(self) -> int:
        """Number of port calls made so far."""
        with self._lock:
            return sum(self.calls.values())

    def reset_calls(self) -> None:
        """Zero :attr:`calls` (e.g. after seeding a flow)."""
        with self._lock:
            self.calls.clear()

    def fail_next(
        self, operation: str, error: GatewayError, *, after_applying: bool = False
    ) -> None:
        """Make the next call of port method ``operation`` raise ``error``.

        By default nothing happens before the error (Stripe refused the request). With
        ``after_applying`` the call takes effect first and its response is lost, as when a
        connection drops after Stripe processed a request: a retry with the same idempotency
        key then gets the original object. Several failures queue up in order.
        """
        if operation not in PORT_OPERATIONS:
            raise ConfigurationError(f"unknown gateway operation {operation!r}")
        with self._lock:
            self._failures.setdefault(operation, deque()).append(
                _Failure(error=error, after_applying=after_applying)
            )

    def stripe_object(self, object_id: str) -> dict[str, Any]:
        """A copy of the stored Stripe JSON of any object (customer, price, sub, ...)."""
        with self._lock:
            for store in (
                self._customers,
                self._products,
                self._prices,
                self._invoices,
                self._payment_intents,
            ):
                if object_id in store:
                    return copy.deepcopy(store[object_id])
            if object_id in self._subs:
                return copy.deepcopy(self._subs[object_id].json)
            if object_id in self._sessions:
                return copy.deepcopy(self._sessions[object_id].json)
            raise _not_found("object", object_id)

    def checkout_request(self, session_id: str) -> CheckoutSessionRequest:
        """The request a Checkout Session was created from."""
        with self._lock:
            return self._session(session_id).request

    def subscription_ids(self, customer_id: str | None = None) -> list[str]:
        """Ids of the subscriptions (of one customer, or all), oldest first."""
        with self._lock:
            return [
                sub_id
                for sub_id, sub in self._subs.items()
                if customer_id is None or sub.json["customer"] == customer_id
            ]

    def latest_invoice(self, subscription_id: str) -> dict[str, Any]:
        """A copy of the subscription's latest invoice JSON."""
        with self._lock:
            invoice_id = self._sub(subscription_id).json["latest_invoice"]
            if invoice_id is None:
                raise _not_found("invoice", f"latest of {subscription_id}")
            return copy.deepcopy(self._invoices[invoice_id])

    # ------------------------------------------------------------------------------ catalog

    def add_product(self, name: str, *, product_id: str | None = None) -> str:
        """Seed a product; returns its id (``prod_fake0001`` unless given)."""
        with self._lock:
            ident = product_id or self._new_id("prod")
            if ident in self._products:
                raise ConfigurationError(f"product {ident!r} already exists")
            self._products[ident] = _shapes.product_json(
                id=ident, name=name, created=to_timestamp(self._now), livemode=self._livemode
            )
            return ident

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
    ) -> Price:
        """Seed a price (and its product unless ``product`` names an existing one).

        ``amount`` is in minor units (``None`` only when ``tiered``); ``interval`` is
        ``"day"``/``"week"``/``"month"``/``"year"`` or ``Interval.ONE_TIME`` for a one-time
        price. Returns the price as the gateway's ``list_prices`` would.
        """
        chosen = Interval(interval)
        if amount is None and not tiered:
            raise ConfigurationError("a per-unit price needs an amount")
        if isinstance(amount, bool) or (amount is not None and amount < 0):
            raise ConfigurationError("amount must be a non-negative integer of minor units")
        if interval_count < 1:
            raise ConfigurationError("interval_count must be at least 1")
        with self._lock:
            if lookup_key is not None and self._price_by_lookup_key(lookup_key) is not None:
                raise ConfigurationError(f"lookup key {lookup_key!r} is already in use")
            if product is None:
                product = self.add_product(product_name or f"Product {len(self._products) + 1}")
            elif product not in self._products:
                raise ConfigurationError(f"unknown product {product!r}")
            ident = price_id or self._new_id("price")
            if ident in self._prices:
                raise ConfigurationError(f"price {ident!r} already exists")
            price = _shapes.price_json(
                id=ident,
                product=product,
                created=to_timestamp(self._now),
                currency=currency.lower(),
                unit_amount=amount,
                interval=None if chosen is Interval.ONE_TIME else chosen.value,
                interval_count=interval_count,
                lookup_key=lookup_key,
                tiered=tiered,
                livemode=self._livemode,
            )
            price["active"] = active
            self._prices[ident] = price
            return price_from_stripe(price, self._products[product])

    def update_price(
        self,
        price_id: str,
        *,
        active: bool | None = None,
        lookup_key: str | _Unset | None = UNSET,
    ) -> Price:
        """Change a price's ``active`` flag or lookup key; emits ``price.updated``."""
        with self._lock:
            price = self._prices.get(price_id)
            if price is None:
                raise _not_found("price", price_id)
            before = copy.deepcopy(price)
            if active is not None:
                price["active"] = active
            if not isinstance(lookup_key, _Unset):
                holder = None if lookup_key is None else self._price_by_lookup_key(lookup_key)
                if holder is not None and holder["id"] != price_id:
                    raise _invalid(f"lookup key {lookup_key!r} is in use", "lookup_key_exists")
                price["lookup_key"] = lookup_key
            changes = _diff(before, price)
            if changes:
                self._emit("price.updated", price, to_timestamp(self._now), previous=changes)
            return price_from_stripe(price, self._products[price["product"]])

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
            ident = self._new_id("cus")
            customer = _shapes.customer_json(
                id=ident,
                created=to_timestamp(self._now),
                email=email,
                metadata={**(metadata or {}), "user_id": user_id},
                livemode=self._livemode,
            )
            self._customers[ident] = customer
            self._emit("customer.created", customer, to_timestamp(self._now))
            return customer_from_stripe(customer)

        return self._call("create_customer", create, idempotency_key, params)

    def retrieve_customer(self, customer_id: str) -> StripeCustomer:
        """The customer (``deleted`` set once deleted); unknown ids raise NotFound."""

        def retrieve() -> StripeCustomer:
            return customer_from_stripe(self._customer(customer_id))

        return self._call("retrieve_customer", retrieve)

    def create_checkout_session(self, request: CheckoutSessionRequest) -> CheckoutSession:
        """Create an open session (url, 24 h expiry) and record ``request``.

        Refuses (``GatewayInvalidRequestError``) an unknown or deleted customer, an unknown
        or inactive price, a one-time price in subscription mode or a recurring one in
        payment mode, and trial days outside subscription mode.
        """
        params = request.model_dump(mode="json", exclude={"idempotency_key"})

        def create() -> CheckoutSession:
            customer = self._customer(request.customer_id)
            if customer.get("deleted"):
                raise _invalid(f"No such customer: '{request.customer_id}'", "resource_missing")
            price = self._prices.get(request.price_id)
            if price is None:
                raise GatewayNotFoundError(
                    f"No such price: '{request.price_id}'", http_status=400,
                    code="resource_missing",
                )  # fmt: skip
            if not price["active"]:
                raise _invalid(f"The price '{request.price_id}' is not active")
            recurring = price["recurring"] is not None
            if recurring != (request.mode == "subscription"):
                raise _invalid(
                    f"price '{request.price_id}' is {'recurring' if recurring else 'one-time'}, "
                    f"which does not fit mode '{request.mode}'"
                )
            if request.trial_days is not None and request.mode != "subscription":
                raise _invalid("trial days need subscription mode")
            ident = self._new_id("cs_test")
            created = to_timestamp(self._now)
            session = _shapes.checkout_session_json(
                id=ident,
                created=created,
                expires_at=created + int(_SESSION_LIFETIME.total_seconds()),
                mode=request.mode,
                customer=request.customer_id,
                client_reference_id=request.client_reference_id,
                metadata=request.metadata,
                success_url=request.success_url,
                cancel_url=request.cancel_url,
                amount_total=(
                    0 if request.trial_days else (price["unit_amount"] or 0) * request.quantity
                ),
                currency=price["currency"],
                allow_promotion_codes=request.allow_promotion_codes,
                livemode=self._livemode,
            )
            self._sessions[ident] = _Session(json=session, request=request)
            return checkout_session_from_stripe(session)

        return self._call("create_checkout_session", create, request.idempotency_key, params)

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession:
        """The session with its subscription expanded (``CheckoutSession.subscription``)."""

        def retrieve() -> CheckoutSession:
            return self._expanded(self._session(session_id).json)

        return self._call("retrieve_checkout_session", retrieve)

    def list_prices(
        self, *, price_ids: Sequence[str] = (), lookup_keys: Sequence[str] = ()
    ) -> list[Price]:
        """Every known price among ``price_ids`` and ``lookup_keys``, with product names."""

        def list_() -> list[Price]:
            wanted_ids, wanted_keys = set(price_ids), set(lookup_keys)
            return [
                price_from_stripe(price, self._products.get(price["product"]))
                for price in self._prices.values()
                if price["id"] in wanted_ids or price["lookup_key"] in wanted_keys
            ]

        return self._call("list_prices", list_)

    def retrieve_subscription(self, subscription_id: str) -> Subscription:
        """The subscription's current state (``watermark`` 0)."""

        def retrieve() -> Subscription:
            return subscription_from_stripe(self._sub(subscription_id).json)

        return self._call("retrieve_subscription", retrieve)

    def create_billing_portal_session(
        self, *, customer_id: str, return_url: str, idempotency_key: str | None = None
    ) -> PortalSession:
        """A portal session ``bps_fakeNNNN`` for an existing customer."""
        params = {"customer_id": customer_id, "return_url": return_url}

        def create() -> PortalSession:
            customer = self._customer(customer_id)
            if customer.get("deleted"):
                raise _invalid(f"No such customer: '{customer_id}'", "resource_missing")
            ident = self._new_id("bps")
            return PortalSession(
                id=ident,
                url=f"https://billing.stripe.com/p/session/test_{ident}",
                customer_id=customer_id,
                return_url=return_url,
            )

        return self._call("create_billing_portal_session", create, idempotency_key, params)

    # ------------------------------------------------------------------------------ checkout

    def complete_checkout(self, session_id: str) -> CheckoutSession:
        """Act as if the customer paid on the Checkout page.

        Subscription mode: creates the subscription (``trialing`` with trial days, else
        ``active``; metadata from ``subscription_metadata``), its first invoice (0 during a
        trial) paid, and emits ``customer.subscription.created``, ``invoice.created``,
        ``invoice.finalized`` (second T), then ``invoice.paid``,
        ``invoice.payment_succeeded`` and ``checkout.session.completed`` (T+1). Payment mode:
        ``payment_intent.succeeded`` (T) and ``checkout.session.completed`` (T+1). The
        clock ends at T+1. A customer whose card declines gets ``GatewayCardError`` and the
        session stays open. Returns the session as ``retrieve_checkout_session`` would.
        """
        with self._lock:
            entry = self._session(session_id)
            session = entry.json
            if session["status"] != "open":
                raise _invalid(f"checkout session {session_id} is {session['status']}")
            request = entry.request
            customer = self._customer(request.customer_id)
            if request.customer_id in self._declining:
                raise GatewayCardError(
                    "Your card was declined.",
                    http_status=402,
                    code="card_declined",
                    user_message="Your card was declined.",
                )
            start = to_timestamp(self._now)
            price = self._prices[request.price_id]
            if request.mode == "subscription":
                invoice_id = self._new_id("in")
                sub = self._start_subscription(request, price, start, invoice_id)
                invoice = self._open_invoice(sub, start, "subscription_create", invoice_id)
                session["subscription"] = sub.json["id"]
                session["invoice"] = invoice["id"]
                self._attempt_payment(sub, invoice, start + 1, may_fail=False)
                session["payment_status"] = (
                    "no_payment_required" if invoice["amount_due"] == 0 else "paid"
                )
            else:
                intent = _shapes.payment_intent_json(
                    id=self._new_id("pi"),
                    created=start,
                    amount=session["amount_total"],
                    currency=session["currency"],
                    customer=request.customer_id,
                    livemode=self._livemode,
                )
                self._payment_intents[intent["id"]] = intent
                self._emit("payment_intent.succeeded", intent, start)
                session["payment_intent"] = intent["id"]
                session["payment_status"] = "paid"
            session["status"] = "complete"
            session["url"] = None
            session["customer_details"] = {
                "address": None,
                "business_name": None,
                "email": customer.get("email"),
                "individual_name": None,
                "name": None,
                "phone": None,
                "tax_exempt": "none",
                "tax_ids": [],
            }
            self._emit("checkout.session.completed", session, start + 1)
            self._now = max(self._now, from_timestamp(start + 1))
            return self._expanded(session)

    def expire_checkout(self, session_id: str) -> None:
        """Expire an open session now; emits ``checkout.session.expired``."""
        with self._lock:
            self._expire(self._session(session_id))

    # ------------------------------------------------------------------------------ payments

    def fail_next_payment(self, subscription_id: str) -> None:
        """Make the subscription's next payment attempt fail (once)."""
        with self._lock:
            self._sub(subscription_id).fail_next_payment = True

    def set_card_declining(self, customer_id: str, declining: bool = True) -> None:
        """Make every payment of this customer fail (or succeed again) until changed."""
        with self._lock:
            self._customer(customer_id)
            if declining:
                self._declining.add(customer_id)
            else:
                self._declining.discard(customer_id)

    def retry_payment(self, subscription_id: str) -> Subscription:
        """Retry the subscription's open invoice now (the customer fixed their card)."""
        with self._lock:
            sub = self._sub(subscription_id)
            invoice = self._invoices.get(sub.json["latest_invoice"] or "")
            if invoice is None or invoice["status"] != "open":
                raise _invalid(f"subscription {subscription_id} has no open invoice")
            self._attempt_payment(sub, invoice, to_timestamp(self._now))
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
            sub = self._live_sub(subscription_id)
            before = copy.deepcopy(sub.json)
            item = sub.json["items"]["data"][0]
            if price_id is not None and price_id != item["price"]["id"]:
                price = self._prices.get(price_id)
                if price is None:
                    raise _not_found("price", price_id)
                if price["recurring"] is None or not price["active"]:
                    raise _invalid(f"price '{price_id}' is not an active recurring price")
                item["price"] = copy.deepcopy(price)
                item["plan"] = _shapes.plan_json(price)
                sub.json["currency"] = price["currency"]
                recurring = price["recurring"]
                sub.interval = recurring["interval"]
                sub.interval_count = recurring["interval_count"]
            if quantity is not None:
                if quantity < 1:
                    raise _invalid("quantity must be at least 1")
                item["quantity"] = quantity
            if metadata is not None:
                sub.json["metadata"] = dict(metadata)
            if cancel_at_period_end is not None:
                self._set_cancel_at_period_end(sub, cancel_at_period_end)
            changes = _diff(before, sub.json)
            if changes:
                at = to_timestamp(self._now)
                self._emit("customer.subscription.updated", sub.json, at, previous=changes)
            return subscription_from_stripe(sub.json)

    def cancel_subscription(self, subscription_id: str) -> Subscription:
        """Cancel now; emits ``customer.subscription.deleted``."""
        with self._lock:
            sub = self._live_sub(subscription_id, allow_paused=True)
            self._end(sub, to_timestamp(self._now), reason="cancellation_requested")
            return subscription_from_stripe(sub.json)

    def pause_subscription(self, subscription_id: str) -> Subscription:
        """Pause: status ``paused``, no billing until resumed.

        Emits ``customer.subscription.paused`` and ``customer.subscription.updated``.
        """
        with self._lock:
            sub = self._live_sub(subscription_id)
            before = copy.deepcopy(sub.json)
            sub.json["status"] = "paused"
            at = to_timestamp(self._now)
            self._emit("customer.subscription.paused", sub.json, at)
            changes = _diff(before, sub.json)
            self._emit("customer.subscription.updated", sub.json, at, previous=changes)
            return subscription_from_stripe(sub.json)

    def resume_subscription(self, subscription_id: str) -> Subscription:
        """Resume a paused subscription: a new period starts now and is invoiced.

        Emits ``customer.subscription.resumed``, ``customer.subscription.updated`` and the
        invoice events (a failed payment leaves it ``past_due``).
        """
        with self._lock:
            sub = self._sub(subscription_id)
            if sub.json["status"] != "paused":
                raise _invalid(f"subscription {subscription_id} is not paused")
            at = to_timestamp(self._now)
            before = copy.deepcopy(sub.json)
            sub.anchor, sub.period_index = self._now, 0
            self._set_period(sub, at, to_timestamp(self._period_end(sub)))
            sub.json["status"] = "active"
            sub.json["billing_cycle_anchor"] = at
            self._emit("customer.subscription.resumed", sub.json, at)
            self._bill_new_period(sub, before, at, "subscription_update")
            return subscription_from_stripe(sub.json)

    def delete_customer(self, customer_id: str) -> None:
        """Delete a customer: its live subscriptions end, then ``customer.deleted``."""
        with self._lock:
            customer = self._customer(customer_id)
            if customer.get("deleted"):
                raise _not_found("customer", customer_id)
            at = to_timestamp(self._now)
            for sub in self._subs.values():
                if sub.json["customer"] == customer_id and sub.json["status"] in _LIVE | {"paused"}:
                    self._end(sub, at, reason="cancellation_requested")
            self._emit("customer.deleted", customer, at)
            self._customers[customer_id] = {
                "id": customer_id,
                "object": "customer",
                "deleted": True,
            }

    # ------------------------------------------------------------------------------ internals

    def _new_id(self, prefix: str) -> str:
        self._counters[prefix] += 1
        return f"{prefix}_fake{self._counters[prefix]:04d}"

    def _emit(
        self,
        type: str,
        obj: Mapping[str, Any],
        at: int,
        *,
        previous: Mapping[str, Any] | None = None,
    ) -> None:
        event = build_event(
            type,
            copy.deepcopy(dict(obj)),
            created=at,
            event_id=self._new_id("evt"),
            previous_attributes=previous,
            livemode=self._livemode,
            api_version=self._api_version,
        )
        self._pending.append(event)
        self._log.append(event)

    def _call(
        self,
        operation: str,
        action: Callable[[], T],
        idempotency_key: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> T:
        with self._lock:
            self.calls[operation] += 1
            queue = self._failures.get(operation)
            failure = queue.popleft() if queue else None
            if failure is not None and not failure.after_applying:
                raise failure.error
            if idempotency_key is None:
                result = action()
            else:
                result = self._idempotent(operation, idempotency_key, params or {}, action)
            if failure is not None:
                raise failure.error
            return result

    def _idempotent(
        self, operation: str, key: str, params: Mapping[str, Any], action: Callable[[], T]
    ) -> T:
        fingerprint = json.dumps([operation, params], sort_keys=True, default=str)
        stored = self._idempotency.get(key)
        if stored is not None and self._now - stored.at <= _IDEMPOTENCY_TTL:
            if stored.fingerprint != fingerprint:
                raise _invalid(
                    "Keys for idempotent requests can only be used with the same parameters "
                    "they were first used with.",
                    "idempotency_error",
                )
            result: T = stored.result
            return result
        result = action()
        self._idempotency[key] = _IdempotentResult(operation, fingerprint, result, self._now)
        return result

    def _customer(self, customer_id: str) -> dict[str, Any]:
        customer = self._customers.get(customer_id)
        if customer is None:
            raise _not_found("customer", customer_id)
        return customer

    def _session(self, session_id: str) -> _Session:
        entry = self._sessions.get(session_id)
        if entry is None:
            raise _not_found("checkout.session", session_id)
        return entry

    def _expanded(self, session: dict[str, Any]) -> CheckoutSession:
        """``session`` as ``retrieve_checkout_session`` answers it: subscription expanded."""
        expanded = copy.deepcopy(session)
        if expanded["subscription"] is not None:
            expanded["subscription"] = copy.deepcopy(self._subs[expanded["subscription"]].json)
        return checkout_session_from_stripe(expanded)

    def _sub(self, subscription_id: str) -> _Sub:
        sub = self._subs.get(subscription_id)
        if sub is None:
            raise _not_found("subscription", subscription_id)
        return sub

    def _live_sub(self, subscription_id: str, *, allow_paused: bool = False) -> _Sub:
        sub = self._sub(subscription_id)
        allowed = _LIVE | {"paused"} if allow_paused else _LIVE
        if sub.json["status"] not in allowed:
            raise _invalid(
                f"subscription {subscription_id} is {sub.json['status']}; it cannot be changed"
            )
        return sub

    def _price_by_lookup_key(self, lookup_key: str) -> dict[str, Any] | None:
        for price in self._prices.values():
            if price["lookup_key"] == lookup_key:
                return price
        return None

    def _period_end(self, sub: _Sub) -> datetime:
        return _add_interval(sub.anchor, sub.interval, sub.interval_count, sub.period_index + 1)

    def _set_period(self, sub: _Sub, start: int, end: int) -> None:
        item = sub.json["items"]["data"][0]
        item["current_period_start"], item["current_period_end"] = start, end

    def _start_subscription(
        self, request: CheckoutSessionRequest, price: dict[str, Any], at: int, invoice_id: str
    ) -> _Sub:
        ident = self._new_id("sub")
        recurring = price["recurring"]
        trial_end = None
        if request.trial_days:
            trial_end = at + request.trial_days * 86_400
            anchor, period_start, period_end = from_timestamp(trial_end), at, trial_end
        else:
            anchor = from_timestamp(at)
            period_start = at
            period_end = to_timestamp(
                _add_interval(anchor, recurring["interval"], recurring["interval_count"], 1)
            )
        item = _shapes.subscription_item_json(
            id=self._new_id("si"),
            subscription=ident,
            price=price,
            quantity=request.quantity,
            created=at,
            period_start=period_start,
            period_end=period_end,
        )
        sub_json = _shapes.subscription_json(
            id=ident,
            customer=request.customer_id,
            created=at,
            currency=price["currency"],
            item=item,
            status="trialing" if trial_end else "active",
            metadata=request.subscription_metadata,
            trial_start=at if trial_end else None,
            trial_end=trial_end,
            latest_invoice=invoice_id,
            livemode=self._livemode,
        )
        sub = _Sub(
            json=sub_json,
            anchor=anchor,
            interval=recurring["interval"],
            interval_count=recurring["interval_count"],
            period_index=-1 if trial_end else 0,
        )
        self._subs[ident] = sub
        self._emit("customer.subscription.created", sub_json, at)
        return sub

    def _open_invoice(
        self, sub: _Sub, at: int, reason: str, invoice_id: str
    ) -> dict[str, Any]:
        """Create the invoice ``invoice_id`` for the sub's current period.

        Emits ``invoice.created`` then ``invoice.finalized``, both at ``at``.
        """
        item = sub.json["items"]["data"][0]
        price = item["price"]
        trialing = sub.json["status"] == "trialing"
        amount = 0 if trialing else (price["unit_amount"] or 0) * item["quantity"]
        ident = invoice_id
        customer = self._customers.get(sub.json["customer"], {})
        invoice = _shapes.invoice_json(
            id=ident,
            number=f"FAKE-{ident[-4:]}",
            customer=sub.json["customer"],
            customer_email=customer.get("email"),
            subscription=sub.json,
            product_name=self._products[price["product"]]["name"],
            line_id=self._new_id("il"),
            created=at,
            billing_reason=reason,
            amount=amount,
            livemode=self._livemode,
        )
        self._invoices[ident] = invoice
        sub.json["latest_invoice"] = ident
        self._emit("invoice.created", invoice, at)
        invoice["status"] = "open"
        invoice["effective_at"] = at
        invoice["status_transitions"]["finalized_at"] = at
        self._emit("invoice.finalized", invoice, at)
        return invoice

    def _attempt_payment(
        self, sub: _Sub, invoice: dict[str, Any], at: int, *, may_fail: bool = True
    ) -> None:
        invoice["attempt_count"] += 1
        invoice["attempted"] = True
        declined = may_fail and invoice["amount_due"] > 0 and (
            sub.fail_next_payment or sub.json["customer"] in self._declining
        )
        if may_fail:
            sub.fail_next_payment = False
        if declined:
            attempts = invoice["attempt_count"]
            retry = (
                at + int(self._retry_delays[attempts - 1].total_seconds())
                if attempts <= len(self._retry_delays)
                else None
            )
            invoice["next_payment_attempt"] = retry
            self._emit("invoice.payment_failed", invoice, at)
            if retry is None:
                self._end(sub, at, reason="payment_failed")
            elif sub.json["status"] in ("active", "trialing"):
                self._set_status(sub, "past_due", at)
            return
        invoice["status"] = "paid"
        invoice["amount_paid"] = invoice["amount_due"]
        invoice["amount_remaining"] = 0
        invoice["next_payment_attempt"] = None
        invoice["status_transitions"]["paid_at"] = at
        self._emit("invoice.paid", invoice, at)
        self._emit("invoice.payment_succeeded", invoice, at)
        if sub.json["status"] in ("past_due", "unpaid", "incomplete"):
            self._set_status(sub, "active", at)

    def _set_status(self, sub: _Sub, status: str, at: int) -> None:
        before = copy.deepcopy(sub.json)
        sub.json["status"] = status
        self._emit("customer.subscription.updated", sub.json, at, previous=_diff(before, sub.json))

    def _set_cancel_at_period_end(self, sub: _Sub, cancel: bool) -> None:
        period_end = sub.json["items"]["data"][0]["current_period_end"]
        sub.json["cancel_at_period_end"] = cancel
        sub.json["cancel_at"] = period_end if cancel else None
        sub.json["canceled_at"] = to_timestamp(self._now) if cancel else None
        sub.json["cancellation_details"] = {
            "comment": None,
            "feedback": None,
            "reason": "cancellation_requested" if cancel else None,
        }

    def _end(self, sub: _Sub, at: int, *, reason: str) -> None:
        """Cancel for good; emits ``customer.subscription.deleted``."""
        sub.json["status"] = "canceled"
        sub.json["ended_at"] = at
        if sub.json["canceled_at"] is None:
            sub.json["canceled_at"] = at
        sub.json["cancellation_details"] = {"comment": None, "feedback": None, "reason": reason}
        for invoice in self._invoices.values():
            details = invoice["parent"]["subscription_details"]
            if details["subscription"] == sub.json["id"] and invoice["status"] == "open":
                invoice["next_payment_attempt"] = None
        self._emit("customer.subscription.deleted", sub.json, at)

    def _bill_new_period(
        self, sub: _Sub, before: Mapping[str, Any], at: int, reason: str
    ) -> None:
        """After the sub's period moved: ``updated`` and the invoice at ``at``, payment at +1."""
        invoice_id = self._new_id("in")
        sub.json["latest_invoice"] = invoice_id
        self._emit(
            "customer.subscription.updated", sub.json, at, previous=_diff(before, sub.json)
        )
        invoice = self._open_invoice(sub, at, reason, invoice_id)
        self._attempt_payment(sub, invoice, at + 1)
        self._now = max(self._now, from_timestamp(at + 1))

    # ----------------------------------------------------------------------- the schedule

    def _next_due(self, limit: datetime) -> tuple[datetime, Callable[[], None]] | None:
        """The earliest scheduled step at or before ``limit`` (ties: creation order)."""
        best: tuple[datetime, Callable[[], None]] | None = None

        def offer(when: datetime, action: Callable[[], None]) -> None:
            nonlocal best
            if when <= limit and (best is None or when < best[0]):
                best = (when, action)

        for entry in self._sessions.values():
            if entry.json["status"] == "open":
                offer(from_timestamp(entry.json["expires_at"]), partial(self._expire, entry))
        for sub in self._subs.values():
            status = sub.json["status"]
            period_end = from_timestamp(sub.json["items"]["data"][0]["current_period_end"])
            if status == "trialing":
                trial_end = from_timestamp(sub.json["trial_end"])
                if not sub.trial_will_end_sent:
                    trial_start = from_timestamp(sub.json["trial_start"])
                    notice = max(trial_end - _TRIAL_WILL_END_NOTICE, trial_start)
                    offer(notice, partial(self._trial_will_end, sub))
                offer(trial_end, partial(self._period_ends, sub))
            elif status in _LIVE:
                offer(period_end, partial(self._period_ends, sub))
        for invoice in self._invoices.values():
            retry = invoice["next_payment_attempt"]
            if invoice["status"] == "open" and retry is not None:
                offer(from_timestamp(retry), partial(self._retry, invoice))
        return best

    def _expire(self, entry: _Session) -> None:
        if entry.json["status"] != "open":
            raise _invalid(f"checkout session {entry.json['id']} is {entry.json['status']}")
        entry.json["status"] = "expired"
        entry.json["url"] = None
        self._emit("checkout.session.expired", entry.json, to_timestamp(self._now))

    def _trial_will_end(self, sub: _Sub) -> None:
        sub.trial_will_end_sent = True
        self._emit("customer.subscription.trial_will_end", sub.json, to_timestamp(self._now))

    def _period_ends(self, sub: _Sub) -> None:
        at = to_timestamp(self._now)
        if sub.json["cancel_at_period_end"]:
            self._end(sub, at, reason="cancellation_requested")
            return
        before = copy.deepcopy(sub.json)
        if sub.json["status"] == "trialing":
            sub.json["status"] = "active"
        sub.period_index += 1
        start = _add_interval(sub.anchor, sub.interval, sub.interval_count, sub.period_index)
        self._set_period(sub, to_timestamp(start), to_timestamp(self._period_end(sub)))
        self._bill_new_period(sub, before, at, "subscription_cycle")

    def _retry(self, invoice: dict[str, Any]) -> None:
        sub = self._subs[invoice["parent"]["subscription_details"]["subscription"]]
        self._attempt_payment(sub, invoice, to_timestamp(self._now))
