"""Checkout Sessions: creation, the customer paying (or not), expiry.

Setup mode and promotion codes at checkout belong here.
"""

from __future__ import annotations

import copy
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
                else (price["unit_amount"] or 0) * request.quantity
            ),
            currency=price["currency"],
            allow_promotion_codes=request.allow_promotion_codes,
            livemode=state.livemode,
        )
        state.sessions[ident] = SessionRecord(json=session, request=request)
        return session

    def complete(self, session_id: str) -> dict[str, Any]:
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
        if request.mode == "subscription":
            self._pay_subscription(session, request, start)
        else:
            self._pay_once(session, request, start)
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
        invoice = self._invoices.open(sub, start, "subscription_create", invoice_id)
        session["subscription"] = sub.json["id"]
        session["invoice"] = invoice["id"]
        subscriptions.collect(sub, invoice, start + 1, may_fail=False)
        session["payment_status"] = "no_payment_required" if invoice["amount_due"] == 0 else "paid"

    def _pay_once(
        self, session: dict[str, Any], request: CheckoutSessionRequest, start: int
    ) -> None:
        """A succeeded payment intent (T) for a one-time purchase."""
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
        state.emit("payment_intent.succeeded", intent, start)
        session["payment_intent"] = intent["id"]
        session["payment_status"] = "paid"
