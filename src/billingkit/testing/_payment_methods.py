"""Payment methods, setup-mode Checkout, default methods and Stripe Entitlements.

Emits what Stripe emits, in its order:

* completing a setup-mode session: ``payment_method.attached``, ``setup_intent.created``,
  ``setup_intent.succeeded`` (second T), then ``checkout.session.completed`` (T+1);
* ``set_default`` (the port's ``set_default_payment_method``): ``customer.updated`` (the
  customer's ``invoice_settings.default_payment_method``), then
  ``customer.subscription.updated`` per subscription;
* attaching, updating (the card updater's ``payment_method.automatically_updated``) and
  detaching a method; setting a customer's active entitlements
  (``entitlements.active_entitlement_summary.updated``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from billingkit.domain import from_timestamp
from billingkit.ports import SetupSessionRequest
from billingkit.testing import _shapes
from billingkit.testing._customers import Customers
from billingkit.testing._state import FakeState, diff, invalid, not_found

__all__ = ["PaymentMethods", "SetupSessionRecord"]

_SESSION_LIFETIME = timedelta(hours=24)


@dataclass
class SetupSessionRecord:
    """A setup-mode Checkout Session's JSON and the request it was created from."""

    json: dict[str, Any]
    request: SetupSessionRequest


def payment_method_json(
    *,
    id: str,
    customer: str | None,
    created: int,
    brand: str,
    last4: str,
    exp_month: int,
    exp_year: int,
    wallet: str | None,
    livemode: bool,
) -> dict[str, Any]:
    """A ``payment_method`` of type ``card`` (current API shape)."""
    return {
        "id": id,
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {
            "address": None,
            "email": None,
            "name": None,
            "phone": None,
            "tax_id": None,
        },
        "card": {
            "brand": brand,
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": "pass",
            },
            "country": "US",
            "display_brand": brand,
            "exp_month": exp_month,
            "exp_year": exp_year,
            "fingerprint": f"fp{id[-8:]}",
            "funding": "credit",
            "generated_from": None,
            "last4": last4,
            "networks": {"available": [brand], "preferred": None},
            "regulated_status": "unregulated",
            "three_d_secure_usage": {"supported": True},
            "wallet": None if wallet is None else {"type": wallet, wallet: {}},
        },
        "created": created,
        "customer": customer,
        "customer_account": None,
        "livemode": livemode,
        "metadata": {},
        "type": "card",
    }


class PaymentMethods:
    """Stores payment methods, setup sessions and entitlements of the fake account."""

    def __init__(self, state: FakeState, customers: Customers) -> None:
        self._state = state
        self._customers = customers
        self.methods: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, SetupSessionRecord] = {}
        self.setup_intents: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ setup sessions

    def create_session(self, request: SetupSessionRequest) -> dict[str, Any]:
        """An open setup-mode session (24 h) for an existing customer."""
        state = self._state
        self._customers.existing(request.customer_id)
        ident = state.new_id("cs_test")
        created = state.timestamp()
        session = _shapes.checkout_session_json(
            id=ident,
            created=created,
            expires_at=created + int(_SESSION_LIFETIME.total_seconds()),
            mode="setup",
            customer=request.customer_id,
            client_reference_id=request.client_reference_id,
            metadata=request.metadata,
            success_url=request.success_url,
            cancel_url=request.cancel_url,
            amount_total=0,
            currency="usd",
            allow_promotion_codes=False,
            livemode=state.livemode,
        )
        session.update(
            amount_subtotal=None,
            amount_total=None,
            currency=None,
            payment_status="no_payment_required",
        )
        self.sessions[ident] = SetupSessionRecord(json=session, request=request)
        return session

    def find(self, object_id: str) -> dict[str, Any] | None:
        """The stored JSON of a method, setup intent or setup session, else ``None``."""
        if object_id in self.sessions:
            return self.sessions[object_id].json
        return self.methods.get(object_id) or self.setup_intents.get(object_id)

    def session(self, session_id: str) -> SetupSessionRecord | None:
        """The setup session with that id, if it is one."""
        return self.sessions.get(session_id)

    def complete_session(
        self,
        session_id: str,
        *,
        brand: str,
        last4: str,
        exp_month: int,
        exp_year: int,
        wallet: str | None,
    ) -> tuple[dict[str, Any], str]:
        """The user saves a card: returns the completed session and the new method's id."""
        state = self._state
        entry = self.sessions.get(session_id)
        if entry is None:
            raise not_found("checkout.session", session_id)
        session = entry.json
        if session["status"] != "open":
            raise invalid(f"checkout session {session_id} is {session['status']}")
        customer_id = entry.request.customer_id
        self._customers.existing(customer_id)
        at = state.timestamp()
        method_id = self.attach(
            customer_id,
            brand=brand,
            last4=last4,
            exp_month=exp_month,
            exp_year=exp_year,
            wallet=wallet,
        )
        intent_id = state.new_id("seti")
        intent: dict[str, Any] = {
            "id": intent_id,
            "object": "setup_intent",
            "application": None,
            "cancellation_reason": None,
            "client_secret": f"{intent_id}_secret_fake",
            "created": at,
            "customer": customer_id,
            "description": None,
            "last_setup_error": None,
            "latest_attempt": None,
            "livemode": state.livemode,
            "mandate": None,
            "metadata": dict(entry.request.metadata),
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": None,
            "payment_method_types": ["card"],
            "single_use_mandate": None,
            "status": "requires_payment_method",
            "usage": "off_session",
        }
        state.emit("setup_intent.created", intent, at)
        intent.update(payment_method=method_id, status="succeeded")
        state.emit("setup_intent.succeeded", intent, at)
        self.setup_intents[intent_id] = intent
        session.update(status="complete", url=None, setup_intent=intent_id)
        state.emit("checkout.session.completed", session, at + 1)
        state.catch_up(from_timestamp(at + 1))
        return session, method_id

    def expire_session(self, session_id: str) -> None:
        """Expire an open setup session; emits ``checkout.session.expired``."""
        entry = self.sessions.get(session_id)
        if entry is None:
            raise not_found("checkout.session", session_id)
        if entry.json["status"] != "open":
            raise invalid(f"checkout session {session_id} is {entry.json['status']}")
        entry.json.update(status="expired", url=None)
        self._state.emit("checkout.session.expired", entry.json, self._state.timestamp())

    # ------------------------------------------------------------------ methods

    def attach(
        self,
        customer_id: str,
        *,
        brand: str,
        last4: str,
        exp_month: int,
        exp_year: int,
        wallet: str | None,
    ) -> str:
        """A new card attached to the customer; emits ``payment_method.attached``."""
        state = self._state
        self._customers.existing(customer_id)
        if not (1 <= exp_month <= 12) or not (len(last4) == 4 and last4.isdigit()):
            raise invalid("invalid card details", "invalid_card")
        ident = state.new_id("pm")
        method = payment_method_json(
            id=ident,
            customer=customer_id,
            created=state.timestamp(),
            brand=brand,
            last4=last4,
            exp_month=exp_month,
            exp_year=exp_year,
            wallet=wallet,
            livemode=state.livemode,
        )
        self.methods[ident] = method
        state.emit("payment_method.attached", method, state.timestamp())
        return ident

    def method(self, method_id: str) -> dict[str, Any]:
        """The stored method; unknown ids raise NotFound."""
        method = self.methods.get(method_id)
        if method is None:
            raise not_found("payment_method", method_id)
        return method

    def update_expiry(self, method_id: str, exp_month: int, exp_year: int) -> None:
        """The card updater renewed the card; emits ``payment_method.automatically_updated``."""
        method = self.method(method_id)
        if method["customer"] is None:
            raise invalid(f"payment method {method_id} is detached")
        before = copy.deepcopy(method)
        method["card"].update(exp_month=exp_month, exp_year=exp_year)
        self._state.emit(
            "payment_method.automatically_updated",
            method,
            self._state.timestamp(),
            previous=diff(before, method),
        )

    def detach(self, method_id: str) -> None:
        """Detach the method (for good); emits ``payment_method.detached``."""
        state = self._state
        method = self.method(method_id)
        customer_id = method["customer"]
        if customer_id is None:
            raise invalid(f"payment method {method_id} is not attached to a customer")
        method["customer"] = None
        state.emit(
            "payment_method.detached", method, state.timestamp(), previous={"customer": customer_id}
        )
        customer = state.customers.get(customer_id, {})
        settings = customer.get("invoice_settings") or {}
        if settings.get("default_payment_method") == method_id:
            before = copy.deepcopy(customer)
            settings["default_payment_method"] = None
            state.emit(
                "customer.updated", customer, state.timestamp(), previous=diff(before, customer)
            )

    def set_default(
        self, customer_id: str, method_id: str, subscription_ids: Sequence[str]
    ) -> None:
        """The port's ``set_default_payment_method``: customer first, then each subscription."""
        state = self._state
        customer = self._customers.existing(customer_id)
        method = self.method(method_id)
        if method["customer"] != customer_id:
            raise invalid(
                f"The payment method {method_id} is not attached to customer {customer_id}"
            )
        subs = [state.sub(sub_id) for sub_id in subscription_ids]
        for sub in subs:
            if sub.json["customer"] != customer_id:
                raise invalid(f"subscription {sub.json['id']} belongs to another customer")
        at = state.timestamp()
        before = copy.deepcopy(customer)
        customer["invoice_settings"]["default_payment_method"] = method_id
        if before != customer:
            state.emit("customer.updated", customer, at, previous=diff(before, customer))
        for sub in subs:
            previous = sub.json.get("default_payment_method")
            if previous != method_id:
                sub.json["default_payment_method"] = method_id
                state.emit(
                    "customer.subscription.updated",
                    sub.json,
                    at,
                    previous={"default_payment_method": previous},
                )

    # ------------------------------------------------------------------ entitlements

    def set_entitlements(self, customer_id: str, lookup_keys: Sequence[str]) -> None:
        """Emit the customer's ``entitlements.active_entitlement_summary.updated``."""
        state = self._state
        self._customers.existing(customer_id)
        data = [
            {
                "id": f"ent_fake_{key}",
                "object": "entitlements.active_entitlement",
                "feature": f"feat_fake_{key}",
                "livemode": state.livemode,
                "lookup_key": key,
            }
            for key in dict.fromkeys(lookup_keys)
        ]
        summary = {
            "object": "entitlements.active_entitlement_summary",
            "customer": customer_id,
            "entitlements": {
                "object": "list",
                "data": data,
                "has_more": False,
                "url": "/v1/customer/" + customer_id + "/entitlements",
            },
            "livemode": state.livemode,
        }
        state.emit("entitlements.active_entitlement_summary.updated", summary, state.timestamp())
