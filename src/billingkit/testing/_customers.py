"""Customers: creation, deletion, whether their card declines, billing-portal sessions.

Payment methods (attach, default, a declining card) belong here when the fake gets them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from billingkit.ports import PortalSession
from billingkit.testing import _shapes
from billingkit.testing._state import LIVE, FakeState, invalid, not_found
from billingkit.testing._subscriptions import Subscriptions

__all__ = ["Customers"]


class Customers:
    """Creates and deletes customers and answers for their cards."""

    def __init__(self, state: FakeState, subscriptions: Subscriptions) -> None:
        self._state = state
        self._subscriptions = subscriptions

    def existing(self, customer_id: str) -> dict[str, Any]:
        """The customer; unknown ids raise NotFound, deleted ones InvalidRequest."""
        customer = self._state.customer(customer_id)
        if customer.get("deleted"):
            raise invalid(f"No such customer: '{customer_id}'", "resource_missing")
        return customer

    def create(
        self, *, user_id: str, email: str | None, metadata: Mapping[str, str] | None
    ) -> dict[str, Any]:
        """A new customer with ``metadata["user_id"]``; emits ``customer.created``."""
        state = self._state
        ident = state.new_id("cus")
        customer = _shapes.customer_json(
            id=ident,
            created=state.timestamp(),
            email=email,
            metadata={**(metadata or {}), "user_id": user_id},
            livemode=state.livemode,
        )
        state.customers[ident] = customer
        state.emit("customer.created", customer, state.timestamp())
        return customer

    def delete(self, customer_id: str) -> None:
        """End the customer's live subscriptions, then ``customer.deleted``."""
        state = self._state
        customer = state.customer(customer_id)
        if customer.get("deleted"):
            raise not_found("customer", customer_id)
        at = state.timestamp()
        for sub in state.subs.values():
            if sub.json["customer"] == customer_id and sub.json["status"] in LIVE | {"paused"}:
                self._subscriptions.end(sub, at, reason="cancellation_requested")
        state.emit("customer.deleted", customer, at)
        state.customers[customer_id] = {"id": customer_id, "object": "customer", "deleted": True}

    def set_declining(self, customer_id: str, declining: bool) -> None:
        """Make every payment of the customer fail (or succeed again)."""
        self._state.customer(customer_id)
        if declining:
            self._state.declining.add(customer_id)
        else:
            self._state.declining.discard(customer_id)

    def portal_session(self, customer_id: str, return_url: str) -> PortalSession:
        """A billing-portal session ``bps_fakeNNNN`` for an existing customer."""
        self.existing(customer_id)
        ident = self._state.new_id("bps")
        return PortalSession(
            id=ident,
            url=f"https://billing.stripe.com/p/session/test_{ident}",
            customer_id=customer_id,
            return_url=return_url,
        )
