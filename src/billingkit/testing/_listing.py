"""List calls paginated like Stripe's, and seeding what they list.

Stripe lists newest ``created`` first and pages with ``limit`` (at most 100),
``starting_after`` (the last id of the previous page) and ``has_more``. The fake orders each
store by ``created`` then insertion order, both descending, and finds the cursor's place by
that same key, so a cursor works with any filter, as Stripe's does.

Seeding (``add_customer``, ``add_subscription``, ``add_webhook_endpoint``) creates objects
the way another integration (or the Dashboard) would have: a customer without billingkit's
``user_id`` metadata, a subscription that never went through Checkout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from billingkit.domain import SubscriptionStatus, to_timestamp
from billingkit.errors import ConfigurationError
from billingkit.testing import _shapes
from billingkit.testing._state import FakeState, SubRecord, invalid, not_found
from billingkit.testing._subscriptions import add_interval

__all__ = ["MAX_PAGE_SIZE", "Listing"]

#: Stripe's largest ``limit``.
MAX_PAGE_SIZE = 100

Predicate = Callable[[Mapping[str, Any]], bool]


class Listing:
    """Pages through the fake's stores; seeds customers, subscriptions and endpoints."""

    def __init__(self, state: FakeState) -> None:
        self._state = state

    # ------------------------------------------------------------------ pagination

    @staticmethod
    def page(
        objects: Iterable[Mapping[str, Any]],
        *,
        kind: str,
        starting_after: str | None,
        limit: int,
        keep: Predicate,
    ) -> tuple[list[Mapping[str, Any]], bool]:
        """One page of ``objects`` (a store's values in insertion order) and ``has_more``."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise invalid(f"limit must be between 1 and {MAX_PAGE_SIZE}", "parameter_invalid")
        ordered = sorted(
            ((obj.get("created", 0), index, obj) for index, obj in enumerate(objects)),
            key=lambda entry: (entry[0], entry[1]),
            reverse=True,
        )
        start = 0
        if starting_after is not None:
            start = next(
                (pos + 1 for pos, entry in enumerate(ordered) if entry[2]["id"] == starting_after),
                -1,
            )
            if start < 0:
                raise not_found(kind, starting_after)
        found: list[Mapping[str, Any]] = []
        for _, _, obj in ordered[start:]:
            if keep(obj):
                if len(found) == limit:
                    return found, True
                found.append(obj)
        return found, False

    # ------------------------------------------------------------------ seeding

    def add_customer(
        self, *, email: str | None, name: str | None, metadata: Mapping[str, str] | None
    ) -> dict[str, Any]:
        """A customer made outside billingkit; emits ``customer.created``."""
        state = self._state
        ident = state.new_id("cus")
        customer = _shapes.customer_json(
            id=ident,
            created=state.timestamp(),
            email=email,
            metadata=dict(metadata or {}),
            livemode=state.livemode,
        )
        customer["name"] = name
        state.customers[ident] = customer
        state.emit("customer.created", customer, state.timestamp())
        return customer

    def add_subscription(
        self,
        customer_id: str,
        price_id: str,
        *,
        status: str,
        quantity: int,
        metadata: Mapping[str, str] | None,
        cancel_at_period_end: bool,
        created: int | None = None,
    ) -> SubRecord:
        """A subscription made outside Checkout (no invoice); emits its ``created`` event.

        ``created`` (Unix seconds, not after now) backdates its creation, as for a
        subscription imported from elsewhere; the current period still starts now.
        """
        state = self._state
        if created is not None and created > state.timestamp():
            raise ConfigurationError("created must not be in the future")
        if status not in {s.value for s in SubscriptionStatus}:
            raise ConfigurationError(f"unknown subscription status {status!r}")
        customer = state.customer(customer_id)
        if customer.get("deleted"):
            raise invalid(f"No such customer: '{customer_id}'", "resource_missing")
        price = state.prices.get(price_id)
        if price is None or price.get("recurring") is None:
            raise ConfigurationError(f"unknown recurring price {price_id!r}")
        ident = state.new_id("sub")
        at = state.timestamp()
        recurring = price["recurring"]
        period_end = to_timestamp(
            add_interval(state.now, recurring["interval"], recurring["interval_count"], 1)
        )
        item = _shapes.subscription_item_json(
            id=state.new_id("si"),
            subscription=ident,
            price=price,
            quantity=quantity,
            created=at,
            period_start=at,
            period_end=period_end,
        )
        sub_json = _shapes.subscription_json(
            id=ident,
            customer=customer_id,
            created=at,
            currency=price["currency"],
            item=item,
            status=status,
            metadata=dict(metadata or {}),
            trial_start=None,
            trial_end=None,
            latest_invoice=None,
            livemode=state.livemode,
        )
        if created is not None:
            sub_json.update(created=created, start_date=created)
        if status in ("canceled", "incomplete_expired"):
            sub_json["canceled_at"] = at
            sub_json["ended_at"] = at
        elif cancel_at_period_end:
            sub_json.update(cancel_at_period_end=True, cancel_at=period_end, canceled_at=at)
        sub = SubRecord(
            json=sub_json,
            anchor=state.now,
            interval=recurring["interval"],
            interval_count=recurring["interval_count"],
            period_index=0,
        )
        state.subs[ident] = sub
        state.emit("customer.subscription.created", sub_json, at)
        return sub

    def add_webhook_endpoint(
        self,
        url: str,
        *,
        enabled_events: Iterable[str],
        status: str,
        api_version: str | None,
    ) -> dict[str, Any]:
        """A webhook endpoint of the account (``we_fakeNNNN``)."""
        if status not in ("enabled", "disabled"):
            raise ConfigurationError("status must be 'enabled' or 'disabled'")
        state = self._state
        ident = state.new_id("we")
        endpoint: dict[str, Any] = {
            "id": ident,
            "object": "webhook_endpoint",
            "api_version": api_version,
            "application": None,
            "created": state.timestamp(),
            "description": None,
            "enabled_events": list(enabled_events),
            "livemode": state.livemode,
            "metadata": {},
            "status": status,
            "url": url,
        }
        state.webhook_endpoints[ident] = endpoint
        return endpoint
