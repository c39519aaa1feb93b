"""Subscription simulation: start, change, pause, resume, renew, collect and end.

The one place that changes a subscription's JSON and emits its events. The schedule
(``billingkit.testing._schedule``) calls it when periods end and retries fall due; the
checkout and the portal-like controls call it for what a customer does. Future updates
(proration, promotion codes, subscription schedules) belong here too.
"""

from __future__ import annotations

import calendar
import copy
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from billingkit.domain import from_timestamp, to_timestamp
from billingkit.ports import CheckoutSessionRequest
from billingkit.testing import _shapes
from billingkit.testing._invoices import Invoices, Payment
from billingkit.testing._state import LIVE, FakeState, SubRecord, diff, invalid, not_found

__all__ = ["Subscriptions", "add_interval"]


def add_interval(anchor: datetime, interval: str, count: int, periods: int) -> datetime:
    """``anchor`` moved by ``periods`` billing periods (month ends clamp, like Stripe)."""
    if interval in ("day", "week"):
        days = count * periods * (7 if interval == "week" else 1)
        return anchor + timedelta(days=days)
    months = count * periods * (12 if interval == "year" else 1)
    month_index = anchor.month - 1 + months
    year, month = anchor.year + month_index // 12, month_index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


class Subscriptions:
    """Changes subscriptions as Stripe would, emitting each change as events."""

    def __init__(self, state: FakeState, invoices: Invoices) -> None:
        self._state = state
        self._invoices = invoices

    def live(self, subscription_id: str, *, allow_paused: bool = False) -> SubRecord:
        """The subscription if it can still be changed (paused ones only when allowed)."""
        sub = self._state.sub(subscription_id)
        allowed = LIVE | {"paused"} if allow_paused else LIVE
        if sub.json["status"] not in allowed:
            raise invalid(
                f"subscription {subscription_id} is {sub.json['status']}; it cannot be changed"
            )
        return sub

    # ------------------------------------------------------------------ lifecycle

    def start(
        self, request: CheckoutSessionRequest, price: dict[str, Any], at: int, invoice_id: str
    ) -> SubRecord:
        """Create the subscription a completed Checkout asked for.

        ``trialing`` until ``trial_days`` end, else ``active``; ``latest_invoice`` is
        ``invoice_id`` (opened by the caller). Emits ``customer.subscription.created``.
        """
        state = self._state
        ident = state.new_id("sub")
        recurring = price["recurring"]
        trial_end = None
        if request.trial_days:
            trial_end = at + request.trial_days * 86_400
            anchor, period_start, period_end = from_timestamp(trial_end), at, trial_end
        else:
            anchor = from_timestamp(at)
            period_start = at
            period_end = to_timestamp(
                add_interval(anchor, recurring["interval"], recurring["interval_count"], 1)
            )
        item = _shapes.subscription_item_json(
            id=state.new_id("si"),
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
            livemode=state.livemode,
        )
        sub = SubRecord(
            json=sub_json,
            anchor=anchor,
            interval=recurring["interval"],
            interval_count=recurring["interval_count"],
            period_index=-1 if trial_end else 0,
        )
        state.subs[ident] = sub
        state.emit("customer.subscription.created", sub_json, at)
        return sub

    def update(
        self,
        sub: SubRecord,
        *,
        price_id: str | None,
        quantity: int | None,
        cancel_at_period_end: bool | None,
        metadata: Mapping[str, str] | None,
    ) -> None:
        """Change price, quantity, metadata or the scheduled end, without proration.

        Emits ``customer.subscription.updated`` when something changed.
        """
        state = self._state
        before = copy.deepcopy(sub.json)
        item = sub.json["items"]["data"][0]
        if price_id is not None and price_id != item["price"]["id"]:
            price = state.prices.get(price_id)
            if price is None:
                raise not_found("price", price_id)
            if price["recurring"] is None or not price["active"]:
                raise invalid(f"price '{price_id}' is not an active recurring price")
            item["price"] = copy.deepcopy(price)
            item["plan"] = _shapes.plan_json(price)
            sub.json["currency"] = price["currency"]
            recurring = price["recurring"]
            sub.interval = recurring["interval"]
            sub.interval_count = recurring["interval_count"]
        if quantity is not None:
            if quantity < 1:
                raise invalid("quantity must be at least 1")
            item["quantity"] = quantity
        if metadata is not None:
            sub.json["metadata"] = dict(metadata)
        if cancel_at_period_end is not None:
            self._set_cancel_at_period_end(sub, cancel_at_period_end)
        changes = diff(before, sub.json)
        if changes:
            at = state.timestamp()
            state.emit("customer.subscription.updated", sub.json, at, previous=changes)

    def pause(self, sub: SubRecord) -> None:
        """Status ``paused``; emits ``customer.subscription.paused`` then ``updated``."""
        state = self._state
        before = copy.deepcopy(sub.json)
        sub.json["status"] = "paused"
        at = state.timestamp()
        state.emit("customer.subscription.paused", sub.json, at)
        changes = diff(before, sub.json)
        state.emit("customer.subscription.updated", sub.json, at, previous=changes)

    def resume(self, sub: SubRecord) -> None:
        """A paused sub restarts now with a new, invoiced period.

        Emits ``customer.subscription.resumed``, ``updated`` and the invoice events.
        """
        state = self._state
        if sub.json["status"] != "paused":
            raise invalid(f"subscription {sub.json['id']} is not paused")
        at = state.timestamp()
        before = copy.deepcopy(sub.json)
        sub.anchor, sub.period_index = state.now, 0
        self._set_period(sub, at, to_timestamp(self._period_end(sub)))
        sub.json["status"] = "active"
        sub.json["billing_cycle_anchor"] = at
        state.emit("customer.subscription.resumed", sub.json, at)
        self._bill_new_period(sub, before, at, "subscription_update")

    def renew(self, sub: SubRecord) -> None:
        """The current period (or trial) ended now: start the next one and bill it."""
        at = self._state.timestamp()
        before = copy.deepcopy(sub.json)
        if sub.json["status"] == "trialing":
            sub.json["status"] = "active"
        sub.period_index += 1
        start = add_interval(sub.anchor, sub.interval, sub.interval_count, sub.period_index)
        self._set_period(sub, to_timestamp(start), to_timestamp(self._period_end(sub)))
        self._bill_new_period(sub, before, at, "subscription_cycle")

    def collect(
        self, sub: SubRecord, invoice: dict[str, Any], at: int, *, may_fail: bool = True
    ) -> None:
        """Attempt the invoice's payment at ``at`` and move the sub's status with it.

        A decline makes an ``active``/``trialing`` sub ``past_due`` and ends it once no retry
        is left; a payment makes a ``past_due``/``unpaid``/``incomplete`` sub ``active``.
        """
        if sub.pending is not None and invoice["id"] == sub.pending["invoice"]:
            if self._invoices.attempt(sub, invoice, at, may_fail=may_fail) is Payment.PAID:
                self.apply_pending(sub, at)
            else:
                invoice["next_payment_attempt"] = None  # a pending update is not retried
            return
        outcome = self._invoices.attempt(sub, invoice, at, may_fail=may_fail)
        status = sub.json["status"]
        if outcome is Payment.EXHAUSTED:
            self.end(sub, at, reason="payment_failed")
        elif outcome is Payment.RETRYING:
            if status in ("active", "trialing"):
                self._set_status(sub, "past_due", at)
        elif status in ("past_due", "unpaid", "incomplete"):
            self._set_status(sub, "active", at)

    def set_item(
        self, sub: SubRecord, price: dict[str, Any], quantity: int, *, restart_at: int | None
    ) -> None:
        """Put ``price`` x ``quantity`` on the sub's item (no event).

        ``restart_at`` starts a new billing period there (an interval change resets the
        billing cycle anchor, as Stripe does).
        """
        item = sub.json["items"]["data"][0]
        item["price"] = copy.deepcopy(price)
        item["plan"] = _shapes.plan_json(price)
        item["quantity"] = quantity
        sub.json["currency"] = price["currency"]
        recurring = price["recurring"]
        sub.interval = recurring["interval"]
        sub.interval_count = recurring["interval_count"]
        if restart_at is not None:
            sub.anchor, sub.period_index = from_timestamp(restart_at), 0
            self._set_period(sub, restart_at, to_timestamp(self._period_end(sub)))
            sub.json["billing_cycle_anchor"] = restart_at

    def apply_pending(self, sub: SubRecord, at: int) -> None:
        """The pending update's invoice was paid: apply it.

        Emits ``customer.subscription.updated`` then
        ``customer.subscription.pending_update_applied``.
        """
        pending = sub.pending
        if pending is None:
            return
        before = copy.deepcopy(sub.json)
        self.set_item(sub, pending["price"], pending["quantity"], restart_at=pending["restart_at"])
        sub.pending = None
        sub.json["pending_update"] = None
        state = self._state
        state.emit("customer.subscription.updated", sub.json, at, previous=diff(before, sub.json))
        state.emit("customer.subscription.pending_update_applied", sub.json, at)

    def expire_pending(self, sub: SubRecord) -> None:
        """The pending update was not paid within 23 hours: drop it.

        Emits ``customer.subscription.pending_update_expired``. The subscription keeps its
        old price; the unpaid invoice stays open with no automatic retry.
        """
        if sub.pending is None:
            return
        sub.pending = None
        sub.json["pending_update"] = None
        state = self._state
        state.emit("customer.subscription.pending_update_expired", sub.json, state.timestamp())

    def end(self, sub: SubRecord, at: int, *, reason: str) -> None:
        """Cancel for good; emits ``customer.subscription.deleted``."""
        sub.json["status"] = "canceled"
        sub.json["ended_at"] = at
        if sub.json["canceled_at"] is None:
            sub.json["canceled_at"] = at
        sub.json["cancellation_details"] = {"comment": None, "feedback": None, "reason": reason}
        self._invoices.stop_retries(sub.json["id"])
        self._state.emit("customer.subscription.deleted", sub.json, at)

    # ------------------------------------------------------------------ internals

    def _period_end(self, sub: SubRecord) -> datetime:
        return add_interval(sub.anchor, sub.interval, sub.interval_count, sub.period_index + 1)

    def _set_period(self, sub: SubRecord, start: int, end: int) -> None:
        item = sub.json["items"]["data"][0]
        item["current_period_start"], item["current_period_end"] = start, end

    def _set_status(self, sub: SubRecord, status: str, at: int) -> None:
        before = copy.deepcopy(sub.json)
        sub.json["status"] = status
        self._state.emit(
            "customer.subscription.updated", sub.json, at, previous=diff(before, sub.json)
        )

    def _set_cancel_at_period_end(self, sub: SubRecord, cancel: bool) -> None:
        period_end = sub.json["items"]["data"][0]["current_period_end"]
        sub.json["cancel_at_period_end"] = cancel
        sub.json["cancel_at"] = period_end if cancel else None
        sub.json["canceled_at"] = self._state.timestamp() if cancel else None
        sub.json["cancellation_details"] = {
            "comment": None,
            "feedback": None,
            "reason": "cancellation_requested" if cancel else None,
        }

    def _bill_new_period(
        self, sub: SubRecord, before: Mapping[str, Any], at: int, reason: str
    ) -> None:
        """After the sub's period moved: ``updated`` and the invoice at ``at``, payment at +1."""
        state = self._state
        invoice_id = state.new_id("in")
        sub.json["latest_invoice"] = invoice_id
        state.emit("customer.subscription.updated", sub.json, at, previous=diff(before, sub.json))
        invoice = self._invoices.open(sub, at, reason, invoice_id)
        self.collect(sub, invoice, at + 1)
        state.catch_up(from_timestamp(at + 1))
