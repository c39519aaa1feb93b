"""Checkout Sessions: creation, the customer paying (or not), expiry.

The checkout options are honoured as Stripe does: a coupon or promotion code applied up
front must exist (and be usable) and discounts the payment or the subscription's invoices;
a trial started without a card (``payment_method_collection=if_required``) is canceled or
paused when it ends and no card was added (``Checkout.add_payment_method``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from billingkit.domain import from_timestamp
from billingkit.errors import GatewayCardError, GatewayNotFoundError
from billingkit.ports import CheckoutSession, CheckoutSessionRequest
from billingkit.stripe_objects import checkout_session_from_stripe
from billingkit.testing import _shapes
from billingkit.testing._customers import Customers
from billingkit.testing._invoices import Invoices
from billingkit.testing._state import FakeState, SessionRecord, invalid
from billingkit.testing._subscriptions import Subscriptions

__all__ = ["SESSION_LIFETIME", "Checkout"]

#: How long a Checkout Session stays open.
SESSION_LIFETIME = timedelta(hours=24)


class Checkout:
    """Creates, completes and expires Checkout Sessions."""

    def __init__(
        self,
        state: FakeState,
        customers: Customers,
        subscriptions: Subscriptions,
        invoices: Invoices,
    ) -> None:
        self._state = state
        self._customers = customers
        self._subscriptions = subscriptions
        self._invoices = invoices
        #: Payment-mode sessions paid with a delayed method, still settling.
        self._settling: set[str] = set()
        #: The charge of each one-time payment intent, created when it succeeds.
        self._charges: dict[str, dict[str, Any]] = {}

    def expanded(self, session: dict[str, Any]) -> CheckoutSession:
        """``session`` as ``retrieve_checkout_session`` answers it: subscription expanded."""
        expanded = copy.deepcopy(session)
        if expanded["subscription"] is not None:
            sub = self._state.subs[expanded["subscription"]]
            expanded["subscription"] = copy.deepcopy(sub.json)
        return checkout_session_from_stripe(expanded)

    def create(self, request: CheckoutSessionRequest) -> dict[str, Any]:
        """An open session (24 h) for ``request``, after Stripe's checks of it."""
        state = self._state
        self._customers.existing(request.customer_id)
        price = state.prices.get(request.price_id)
        if price is None:
            raise GatewayNotFoundError(
                f"No such price: '{request.price_id}'", http_status=400,
                code="resource_missing",
            )  # fmt: skip
        if not price["active"]:
            raise invalid(f"The price '{request.price_id}' is not active")
        recurring = price["recurring"] is not None
        if recurring != (request.mode == "subscription"):
            raise invalid(
                f"price '{request.price_id}' is {'recurring' if recurring else 'one-time'}, "
                f"which does not fit mode '{request.mode}'"
            )
        if request.trial_days is not None and request.mode != "subscription":
            raise invalid("trial days need subscription mode")
        coupon = self._discount(request)
        metered = recurring and price["recurring"].get("usage_type") == "metered"
        if metered != request.metered:
            raise invalid(
                "Quantity should not be specified where usage_type is `metered`."
                if metered
                else "Quantity is required for a price whose usage_type is not `metered`.",
                "parameter_invalid",
            )
        ident = state.new_id("cs_test")
        created = state.timestamp()
        session = _shapes.checkout_session_json(
            id=ident,
            created=created,
            expires_at=created + int(SESSION_LIFETIME.total_seconds()),
            mode=request.mode,
            customer=request.customer_id,
            client_reference_id=request.client_reference_id,
            metadata=request.metadata,
            success_url=request.success_url,
            cancel_url=request.cancel_url,
            amount_total=(
                0
                if request.trial_days or request.metered  # metered: billed in arrears
                else _discounted((price["unit_amount"] or 0) * request.quantity, coupon)
            ),
            currency=price["currency"],
            allow_promotion_codes=request.allow_promotion_codes,
            livemode=state.livemode,
        )
        _options_json(session, request, coupon)
        state.sessions[ident] = SessionRecord(json=session, request=request)
        return session

    def _discount(self, request: CheckoutSessionRequest) -> dict[str, Any] | None:
        """The coupon a discount applied up front names, checked as Stripe does."""
        state = self._state
        if request.coupon is not None:
            coupon = state.coupons.get(request.coupon)
            if coupon is None:
                raise GatewayNotFoundError(
                    f"No such coupon: '{request.coupon}'", http_status=400,
                    code="resource_missing",
                )  # fmt: skip
            return coupon
        if request.promotion_code is not None:
            promo = state.promotion_codes.get(request.promotion_code)
            if promo is None or not promo["active"]:
                raise invalid(f"The promotion code '{request.promotion_code}' is not active.")
            coupon_id: str = promo["promotion"]["coupon"]["id"]
            return state.coupons[coupon_id]
        return None

    def add_payment_method(self, customer_id: str) -> None:
        """The customer added a card: their trials started without one now convert."""
        self._customers.existing(customer_id)
        for sub in self._state.subs.values():
            if sub.json["customer"] == customer_id:
                sub.missing_payment_method = None

    def complete(self, session_id: str, *, delayed: bool = False) -> dict[str, Any]:
        """The customer pays: see ``FakeStripeGateway.complete_checkout``."""
        state = self._state
        entry = state.session(session_id)
        session = entry.json
        if session["status"] != "open":
            raise invalid(f"checkout session {session_id} is {session['status']}")
        request = entry.request
        customer = state.customer(request.customer_id)
        if request.customer_id in state.declining:
            raise GatewayCardError(
                "Your card was declined.",
                http_status=402,
                code="card_declined",
                user_message="Your card was declined.",
            )
        start = state.timestamp()
        if delayed and request.mode != "payment":
            raise invalid("a delayed payment method is simulated for payment mode only")
        if request.mode == "subscription":
            self._pay_subscription(session, request, start)
        else:
            self._pay_once(session, request, start, delayed=delayed)
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
        state.emit("checkout.session.completed", session, start + 1)
        state.catch_up(from_timestamp(start + 1))
        return session

    def expire(self, entry: SessionRecord) -> None:
        """Expire an open session now; emits ``checkout.session.expired``."""
        if entry.json["status"] != "open":
            raise invalid(f"checkout session {entry.json['id']} is {entry.json['status']}")
        entry.json["status"] = "expired"
        entry.json["url"] = None
        self._state.emit("checkout.session.expired", entry.json, self._state.timestamp())

    def _pay_subscription(
        self, session: dict[str, Any], request: CheckoutSessionRequest, start: int
    ) -> None:
        """Subscription, first invoice (T) and its payment (T+1), which cannot fail."""
        state = self._state
        subscriptions = self._subscriptions
        invoice_id = state.new_id("in")
        price = state.prices[request.price_id]
        sub = subscriptions.start(request, price, start, invoice_id)
        if request.payment_method_collection == "if_required" and request.trial_days:
            sub.missing_payment_method = request.trial_end_behavior or "create_invoice"
        coupon = self._discount(request)
        if coupon is not None:
            sub.coupon = copy.deepcopy(coupon)
            sub.coupon_invoices_left = _coupon_invoices(coupon, sub.interval, sub.interval_count)
            sub.json["discounts"] = [f"di_{coupon['id']}"]
        invoice = self._invoices.open(sub, start, "subscription_create", invoice_id)
        session["subscription"] = sub.json["id"]
        session["invoice"] = invoice["id"]
        subscriptions.collect(sub, invoice, start + 1, may_fail=False)
        session["payment_status"] = "no_payment_required" if invoice["amount_due"] == 0 else "paid"

    def _pay_once(
        self,
        session: dict[str, Any],
        request: CheckoutSessionRequest,
        start: int,
        *,
        delayed: bool = False,
    ) -> None:
        """A succeeded payment intent (T) for a one-time purchase; ``processing`` if delayed."""
        state = self._state
        intent = _shapes.payment_intent_json(
            id=state.new_id("pi"),
            created=start,
            amount=session["amount_total"],
            currency=session["currency"],
            customer=request.customer_id,
            livemode=state.livemode,
        )
        state.payment_intents[intent["id"]] = intent
        session["payment_intent"] = intent["id"]
        if delayed:
            intent["status"] = "processing"
            intent["amount_received"] = 0
            state.emit("payment_intent.processing", intent, start)
            session["payment_status"] = "unpaid"
            self._settling.add(session["id"])
            return
        self._charge(intent, start)
        state.emit("payment_intent.succeeded", intent, start)
        session["payment_status"] = "paid"

    def settle(self, session_id: str, *, succeeded: bool) -> dict[str, Any]:
        """A delayed payment settles: see ``FakeStripeGateway.settle_delayed_payment``."""
        state = self._state
        entry = state.session(session_id)
        if session_id not in self._settling:
            raise invalid(f"checkout session {session_id} has no delayed payment settling")
        self._settling.discard(session_id)
        session = entry.json
        intent = state.payment_intents[session["payment_intent"]]
        at = state.timestamp()
        if succeeded:
            intent["status"] = "succeeded"
            intent["amount_received"] = intent["amount"]
            self._charge(intent, at)
            state.emit("payment_intent.succeeded", intent, at)
            session["payment_status"] = "paid"
            state.emit("checkout.session.async_payment_succeeded", session, at + 1)
        else:
            intent["status"] = "requires_payment_method"
            state.emit("payment_intent.payment_failed", intent, at)
            state.emit("checkout.session.async_payment_failed", session, at + 1)
        state.catch_up(from_timestamp(at + 1))
        return session

    def refund(self, session_id: str, amount: int | None) -> dict[str, Any]:
        """Refund a one-time payment: see ``FakeStripeGateway.refund_payment``."""
        state = self._state
        session = state.session(session_id).json
        charge = self._charges.get(session.get("payment_intent") or "")
        if charge is None:
            raise invalid(f"checkout session {session_id} has no succeeded payment to refund")
        left = charge["amount"] - charge["amount_refunded"]
        amount = left if amount is None else amount
        if amount < 1 or amount > left:
            raise invalid(f"refund amount must be between 1 and {left}")
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        state.emit("charge.refunded", charge, state.timestamp())
        return charge

    def _charge(self, intent: dict[str, Any], at: int) -> None:
        charge = _charge_json(self._state.new_id("ch"), intent, at, self._state.livemode)
        self._charges[intent["id"]] = charge
        intent["latest_charge"] = charge["id"]


_MONTHS = {"day": 1 / 30, "week": 1 / 4, "month": 1, "year": 12}


def _coupon_invoices(coupon: dict[str, Any], interval: str, interval_count: int) -> int | None:
    """How many invoices ``coupon`` discounts (``None``: all of them)."""
    if coupon["duration"] == "forever":
        return None
    if coupon["duration"] == "once":
        return 1
    months: int = coupon["duration_in_months"]
    return max(1, math.ceil(months / (_MONTHS.get(interval, 1) * interval_count)))


def _discounted(amount: int, coupon: dict[str, Any] | None) -> int:
    """``amount`` after ``coupon`` (percent off rounded half up, amount off floored at 0)."""
    if coupon is None:
        return amount
    if coupon["percent_off"] is not None:
        off: int = math.floor(amount * coupon["percent_off"] / 100 + 0.5)
        return amount - off
    amount_off: int = coupon["amount_off"] or 0
    return max(amount - amount_off, 0)


def _options_json(
    session: dict[str, Any], request: CheckoutSessionRequest, coupon: dict[str, Any] | None
) -> None:
    """The options Stripe echoes on the session."""
    if request.automatic_tax:
        session["automatic_tax"] = {
            "enabled": True,
            "liability": {"type": "self"},
            "provider": "stripe",
            "status": "requires_location_inputs",
        }
    if request.tax_id_collection:
        session["tax_id_collection"] = {"enabled": True, "required": "never"}
    session["billing_address_collection"] = request.billing_address_collection
    session["payment_method_collection"] = request.payment_method_collection or "always"
    session["locale"] = request.locale
    if coupon is not None:
        session["discounts"] = [
            {"coupon": request.coupon, "promotion_code": request.promotion_code}
        ]


def _charge_json(ident: str, intent: Mapping[str, Any], at: int, livemode: bool) -> dict[str, Any]:
    """The ``charge`` of a succeeded one-time payment intent."""
    return {
        "id": ident,
        "object": "charge",
        "amount": intent["amount"],
        "amount_captured": intent["amount"],
        "amount_refunded": 0,
        "captured": True,
        "created": at,
        "currency": intent["currency"],
        "customer": intent["customer"],
        "description": None,
        "invoice": None,
        "livemode": livemode,
        "metadata": {},
        "paid": True,
        "payment_intent": intent["id"],
        "refunded": False,
        "status": "succeeded",
    }
