"""The fake's state: the Stripe objects it holds, ids, the clock and the event queue.

Every other module of the fake reads and changes a ``FakeState``; none keeps Stripe
objects of its own. Nothing here locks: the facade holds ``FakeState.lock`` around each
public call.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from billingkit.domain import to_timestamp
from billingkit.errors import GatewayInvalidRequestError, GatewayNotFoundError
from billingkit.ports import CheckoutSessionRequest
from billingkit.testing._events import Delivery, build_event, signed_delivery

__all__ = [
    "LIVE",
    "FakeState",
    "SessionRecord",
    "SubRecord",
    "diff",
    "invalid",
    "not_found",
]

#: Subscription statuses that bill and can be changed (``paused`` is handled apart).
LIVE = frozenset({"active", "trialing", "past_due", "unpaid"})


@dataclass
class SubRecord:
    """A subscription's Stripe JSON plus the schedule state Stripe keeps privately."""

    json: dict[str, Any]
    anchor: datetime
    interval: str
    interval_count: int
    period_index: int
    trial_will_end_sent: bool = False
    fail_next_payment: bool = False
    #: Proration invoice items waiting for the next invoice (``create_prorations``).
    pending_items: list[dict[str, Any]] = field(default_factory=list)
    #: A ``pending_if_incomplete`` change waiting for its invoice: the item JSON to apply,
    #: its interval and the invoice id.
    pending: dict[str, Any] | None = None
    #: The coupon discounting the sub's invoices, and how many invoices it still applies
    #: to (``None``: forever).
    coupon: dict[str, Any] | None = None
    coupon_invoices_left: int | None = None
    #: A trial started without a card (``payment_method_collection=if_required``): what
    #: happens at its end if none was added (``cancel``, ``pause``, ``create_invoice``).
    missing_payment_method: str | None = None


@dataclass
class SessionRecord:
    """A Checkout Session's Stripe JSON plus the request it was created from."""

    json: dict[str, Any]
    request: CheckoutSessionRequest


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Stripe's ``previous_attributes``: old values of the top-level fields that changed."""
    return {key: copy.deepcopy(old.get(key)) for key in new if old.get(key) != new[key]}


def not_found(kind: str, ident: str) -> GatewayNotFoundError:
    """The 404 Stripe answers for an unknown ``kind`` id."""
    return GatewayNotFoundError(
        f"No such {kind}: '{ident}'", http_status=404, code="resource_missing"
    )


def invalid(message: str, code: str | None = None) -> GatewayInvalidRequestError:
    """The 400 Stripe answers for a request it refuses."""
    return GatewayInvalidRequestError(message, http_status=400, code=code)


class FakeState:
    """One fake Stripe account: its objects, id counters, clock and emitted events."""

    def __init__(
        self,
        *,
        secret: str,
        start: datetime,
        livemode: bool,
        api_version: str,
        retry_delays: Sequence[timedelta],
    ) -> None:
        self.lock = threading.RLock()
        self.secret = secret
        #: The fake's current time (aware UTC); only moves forward.
        self.now = start
        self.livemode = livemode
        self.api_version = api_version
        self.retry_delays = tuple(retry_delays)
        self.counters: Counter[str] = Counter()
        self.customers: dict[str, dict[str, Any]] = {}
        #: Customers whose every payment fails (``set_card_declining``).
        self.declining: set[str] = set()
        self.products: dict[str, dict[str, Any]] = {}
        self.prices: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, SessionRecord] = {}
        self.subs: dict[str, SubRecord] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.coupons: dict[str, dict[str, Any]] = {}
        self.promotion_codes: dict[str, dict[str, Any]] = {}
        self.schedules: dict[str, dict[str, Any]] = {}
        self.webhook_endpoints: dict[str, dict[str, Any]] = {}
        #: Proration credits of subscriptions canceled without ``invoice_now``, per customer.
        self.customer_items: dict[str, list[dict[str, Any]]] = {}
        #: Events not yet drained, and every event ever emitted (both oldest first).
        self.pending: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ ids and clock

    def new_id(self, prefix: str) -> str:
        """The next deterministic id for ``prefix`` (``cus_fake0001``, ...)."""
        self.counters[prefix] += 1
        return f"{prefix}_fake{self.counters[prefix]:04d}"

    def timestamp(self) -> int:
        """The current time in Unix seconds."""
        return to_timestamp(self.now)

    def catch_up(self, moment: datetime) -> None:
        """Move the clock to ``moment`` unless it is already later."""
        self.now = max(self.now, moment)

    # ------------------------------------------------------------------ events

    def emit(
        self,
        type: str,
        obj: Mapping[str, Any],
        at: int,
        *,
        previous: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue a ``type`` event carrying a snapshot of ``obj``, created at ``at``."""
        event = build_event(
            type,
            copy.deepcopy(dict(obj)),
            created=at,
            event_id=self.new_id("evt"),
            previous_attributes=previous,
            livemode=self.livemode,
            api_version=self.api_version,
        )
        self.pending.append(event)
        self.log.append(event)

    def deliveries(self) -> list[Delivery]:
        """The pending events, signed at the current time."""
        at = self.timestamp()
        return [signed_delivery(e, self.secret, timestamp=at) for e in self.pending]

    # ------------------------------------------------------------------ lookups

    def customer(self, customer_id: str) -> dict[str, Any]:
        """The customer's JSON (maybe a deleted stub); unknown ids raise NotFound."""
        customer = self.customers.get(customer_id)
        if customer is None:
            raise not_found("customer", customer_id)
        return customer

    def session(self, session_id: str) -> SessionRecord:
        """The Checkout Session; unknown ids raise NotFound."""
        entry = self.sessions.get(session_id)
        if entry is None:
            raise not_found("checkout.session", session_id)
        return entry

    def sub(self, subscription_id: str) -> SubRecord:
        """The subscription; unknown ids raise NotFound."""
        sub = self.subs.get(subscription_id)
        if sub is None:
            raise not_found("subscription", subscription_id)
        return sub

    def find(self, object_id: str) -> dict[str, Any]:
        """The stored JSON of any object (not a copy); unknown ids raise NotFound."""
        for store in (
            self.customers,
            self.products,
            self.prices,
            self.invoices,
            self.payment_intents,
            self.coupons,
            self.promotion_codes,
            self.schedules,
        ):
            if object_id in store:
                return store[object_id]
        if object_id in self.subs:
            return self.subs[object_id].json
        if object_id in self.sessions:
            return self.sessions[object_id].json
        raise not_found("object", object_id)
