"""Billing meters and meter events of the fake Stripe (usage-based billing)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from billingkit.domain import to_timestamp
from billingkit.errors import ConfigurationError
from billingkit.testing._state import FakeState, invalid

__all__ = ["Meters"]

#: How far back and ahead of now Stripe accepts a meter event's timestamp.
_PAST = timedelta(days=35)
_FUTURE = timedelta(minutes=5)


class Meters:
    """Meters by event name and the meter events counted, deduplicated by identifier."""

    def __init__(self, state: FakeState) -> None:
        self._state = state
        #: Meter JSON by event name (Stripe allows one meter per event name).
        self.meters: dict[str, dict[str, Any]] = {}
        #: Meter event JSON by identifier, oldest first.
        self.meter_events: dict[str, dict[str, Any]] = {}
        #: Per subscription: the Unix second up to which its usage has been invoiced.
        self.billed_until: dict[str, int] = {}

    def add_meter(self, event_name: str, *, display_name: str | None, active: bool) -> str:
        """Seed a ``sum`` meter for ``event_name``; returns its id."""
        if not event_name or len(event_name) > 100:
            raise ConfigurationError("a meter's event name has 1 to 100 characters")
        if event_name in self.meters:
            raise ConfigurationError(f"a meter for {event_name!r} already exists")
        state = self._state
        meter_id = state.new_id("mtr")
        self.meters[event_name] = {
            "id": meter_id,
            "object": "billing.meter",
            "created": state.timestamp(),
            "display_name": display_name or event_name,
            "event_name": event_name,
            "status": "active" if active else "inactive",
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
            "value_settings": {"event_payload_key": "value"},
            "livemode": state.livemode,
        }
        return meter_id

    def meter_id(self, event_name: str) -> str:
        """The id of the meter of ``event_name``; an unknown one is a ConfigurationError."""
        meter = self.meters.get(event_name)
        if meter is None:
            raise ConfigurationError(f"no meter for {event_name!r}: add_meter it first")
        return str(meter["id"])

    def billable(self, subscription: Mapping[str, Any], price: Mapping[str, Any]) -> int | None:
        """Units of a metered ``price`` to bill on ``subscription``'s new invoice, else None.

        The usage counted since the subscription's last invoice (its start for the first),
        up to the start of its current period: metered usage is billed in arrears.
        """
        recurring = price.get("recurring") or {}
        if recurring.get("usage_type") != "metered":
            return None
        until = subscription["items"]["data"][0]["current_period_start"]
        since = self.billed_until.get(subscription["id"], until)
        self.billed_until[subscription["id"]] = until
        event_name = next(
            name for name, meter in self.meters.items() if meter["id"] == recurring["meter"]
        )
        return sum(
            int(event["payload"]["value"])
            for event in self.events(customer_id=subscription["customer"], event_name=event_name)
            if since <= event["timestamp"] < until
        )

    def create(
        self,
        *,
        event_name: str,
        customer_id: str,
        value: int,
        identifier: str,
        timestamp: datetime,
    ) -> dict[str, Any]:
        """Count the event unless its identifier was counted; returns the stored event."""
        state = self._state
        seen = self.meter_events.get(identifier)
        if seen is not None:
            return dict(seen)
        meter = self.meters.get(event_name)
        if meter is None or meter["status"] != "active":
            raise invalid(f"No active meter was found for event_name '{event_name}'.")
        customer = state.customer(customer_id)
        if customer.get("deleted"):
            raise invalid(f"No such customer: '{customer_id}'", "resource_missing")
        if timestamp < state.now - _PAST or timestamp > state.now + _FUTURE:
            raise invalid(
                "Timestamp must be within the past 35 calendar days or up to 5 minutes in "
                "the future.",
                "timestamp_out_of_range",
            )
        event = {
            "object": "billing.meter_event",
            "created": state.timestamp(),
            "event_name": event_name,
            "identifier": identifier,
            "livemode": state.livemode,
            "payload": {"stripe_customer_id": customer_id, "value": str(value)},
            "timestamp": to_timestamp(timestamp),
        }
        self.meter_events[identifier] = event
        return dict(event)

    def events(self, *, customer_id: str | None, event_name: str | None) -> list[dict[str, Any]]:
        """The counted events, optionally of one customer and event name, oldest first."""
        return [
            dict(event)
            for event in self.meter_events.values()
            if (customer_id is None or event["payload"]["stripe_customer_id"] == customer_id)
            and (event_name is None or event["event_name"] == event_name)
        ]

    def total(
        self,
        customer_id: str,
        event_name: str,
        *,
        start: datetime | None,
        end: datetime | None,
    ) -> int:
        """The summed value of the matching events in ``[start, end)``."""
        low = None if start is None else to_timestamp(start)
        high = None if end is None else to_timestamp(end)
        return sum(
            int(event["payload"]["value"])
            for event in self.events(customer_id=customer_id, event_name=event_name)
            if (low is None or event["timestamp"] >= low)
            and (high is None or event["timestamp"] < high)
        )
