"""Subscription management as the app asks for it.

Plan changes with proration, pending updates, invoice previews, cancel now, promotion codes
and subscription schedules.

Proration is Stripe's, by the second: for a change at ``t`` in the period ``[start, end)``
the unused time of the old item is credited, ``-round(old_amount * (end - t) / (end -
start))``, and the remaining time of the new one charged, ``round(new_amount * (end - t) /
(end - start))`` (each line rounded half up to a minor unit; ``amount`` is unit price x
quantity). ``create_prorations`` keeps both lines as invoice items for the next invoice,
``always_invoice`` invoices and charges them now, ``none`` makes none. An interval change
(monthly to yearly) resets the billing cycle: the new price is invoiced now for a full new
period, with the credit for the old one.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from billingkit.domain import from_timestamp, to_timestamp
from billingkit.errors import GatewayCardError
from billingkit.ports import InvoicePreviewRequest, ScheduledChange, SubscriptionUpdate
from billingkit.testing import _shapes
from billingkit.testing._catalog import Catalog
from billingkit.testing._invoices import Invoices
from billingkit.testing._state import FakeState, SubRecord, diff, invalid, not_found
from billingkit.testing._subscriptions import Subscriptions, add_interval

__all__ = ["PENDING_UPDATE_LIFETIME", "Changes"]

#: How long Stripe keeps a ``pending_if_incomplete`` update waiting for its payment.
PENDING_UPDATE_LIFETIME = 23 * 3600
_MONTHS = {"month": 1, "year": 12}


def _share(amount: int, remaining: int, total: int) -> int:
    """``amount * remaining / total`` rounded half up (amount >= 0)."""
    return (2 * amount * remaining + total) // (2 * total)


class Changes:
    """Changes live subscriptions the way Stripe's API does, emitting Stripe's events."""

    def __init__(
        self,
        state: FakeState,
        catalog: Catalog,
        invoices: Invoices,
        subscriptions: Subscriptions,
    ) -> None:
        self._state = state
        self._catalog = catalog
        self._invoices = invoices
        self._subscriptions = subscriptions

    # ------------------------------------------------------------------ helpers

    def _target(
        self, sub: SubRecord, item_id: str | None, price_id: str | None, quantity: int | None
    ) -> tuple[dict[str, Any], int]:
        """The price JSON and quantity the item would have after the change."""
        item = sub.json["items"]["data"][0]
        if item_id is not None and item_id != item["id"]:
            raise not_found("subscription_item", item_id)
        price = item["price"]
        if price_id is not None and price_id != price["id"]:
            found = self._state.prices.get(price_id)
            if found is None:
                raise not_found("price", price_id)
            if found["recurring"] is None or not found["active"]:
                raise invalid(f"price '{price_id}' is not an active recurring price")
            if found["currency"] != sub.json["currency"]:
                raise invalid("a subscription's items must all be in one currency")
            price = found
        return price, item["quantity"] if quantity is None else quantity

    def _moment(self, sub: SubRecord, proration_date: int | None) -> int:
        item = sub.json["items"]["data"][0]
        if proration_date is None:
            return self._state.timestamp()
        if not item["current_period_start"] <= proration_date <= item["current_period_end"]:
            raise invalid("proration_date must be within the current billing period")
        return proration_date

    def _line(
        self,
        sub_json: dict[str, Any],
        price: dict[str, Any],
        quantity: int,
        amount: int,
        start: int,
        end: int,
        *,
        proration: bool,
        label: str,
    ) -> dict[str, Any]:
        product = self._state.products[price["product"]]["name"]
        return _shapes.line_json(
            id=self._state.new_id("il"),
            invoice=None,
            subscription=sub_json,
            price=price,
            quantity=quantity,
            amount=amount,
            description=f"{label}{quantity} × {product}",  # noqa: RUF001 - Stripe's wording
            period_start=start,
            period_end=end,
            proration=proration,
            livemode=self._state.livemode,
        )

    def _prorations(
        self,
        sub: SubRecord,
        price: dict[str, Any],
        quantity: int,
        at: int,
        *,
        restart: bool,
    ) -> list[dict[str, Any]]:
        """Proration lines for a change at ``at``.

        The credit for the old item's unused time and (unless ``restart``) the charge for
        the new one's remaining time.
        """
        item = sub.json["items"]["data"][0]
        start, end = item["current_period_start"], item["current_period_end"]
        remaining, total = end - at, end - start
        if remaining <= 0 or total <= 0:
            return []
        old_amount = (item["price"]["unit_amount"] or 0) * item["quantity"]
        new_amount = (price["unit_amount"] or 0) * quantity
        moment = from_timestamp(at).strftime("%d %b %Y")
        credit = self._line(
            sub.json,
            item["price"],
            item["quantity"],
            -_share(old_amount, remaining, total),
            at,
            end,
            proration=True,
            label="Unused time on ",
        )
        credit["description"] += f" after {moment}"
        lines = [credit]
        if not restart:
            charge = self._line(
                sub.json,
                price,
                quantity,
                _share(new_amount, remaining, total),
                at,
                end,
                proration=True,
                label="Remaining time on ",
            )
            charge["description"] += f" after {moment}"
            lines.append(charge)
        return lines

    def _after(
        self, sub: SubRecord, price: dict[str, Any], quantity: int, restart_at: int | None
    ) -> dict[str, Any]:
        """A copy of the sub's JSON with the new item (and new period on a restart)."""
        after = copy.deepcopy(sub.json)
        item = after["items"]["data"][0]
        item["price"] = copy.deepcopy(price)
        item["plan"] = _shapes.plan_json(price)
        item["quantity"] = quantity
        if restart_at is not None:
            recurring = price["recurring"]
            end = add_interval(
                from_timestamp(restart_at), recurring["interval"], recurring["interval_count"], 1
            )
            item["current_period_start"] = restart_at
            item["current_period_end"] = to_timestamp(end)
        return after

    def _coupon_invoices(self, coupon: dict[str, Any], sub: SubRecord) -> int | None:
        if coupon["duration"] == "forever":
            return None
        if coupon["duration"] == "once":
            return 1
        months_per_period = _MONTHS.get(sub.interval, 1) * sub.interval_count
        months: int = coupon["duration_in_months"]
        return max(1, math.ceil(months / months_per_period))

    def _update_invoice(
        self,
        sub: SubRecord,
        after: dict[str, Any],
        now: int,
        invoice_id: str,
        lines: list[dict[str, Any]],
        coupon: dict[str, Any] | None,
        *,
        restart: bool,
    ) -> dict[str, Any]:
        """The draft invoice a change bills now: waiting items, prorations (and a new period).

        An interval change (``restart``) also bills the new price's first period, first.
        """
        chosen = list(sub.pending_items) + lines
        if restart:
            default = self._invoices.draft(
                sub, after, now, "subscription_update", invoice_id, None, None
            )
            chosen = default["lines"]["data"] + chosen
        return self._invoices.draft(
            sub, after, now, "subscription_update", invoice_id, chosen, coupon
        )

    # ------------------------------------------------------------------ update

    def modify(self, update: SubscriptionUpdate) -> dict[str, Any]:
        """Apply ``update`` as ``POST /v1/subscriptions/{id}``; returns the sub's JSON.

        See the module docstring for proration. Payment of an invoice made now:
        ``pending_if_incomplete`` and a decline leave the sub unchanged with a
        ``pending_update`` (events ``invoice.created``, ``invoice.finalized``,
        ``invoice.payment_failed``, then ``customer.subscription.updated``);
        ``error_if_incomplete`` and a decline raise the 402 and change nothing; otherwise
        the change applies (``customer.subscription.updated`` then the invoice events) and a
        decline makes the sub ``past_due``.
        """
        state = self._state
        sub = self._subscriptions.live(update.subscription_id)
        if sub.pending is not None and (update.price_id or update.quantity):
            raise invalid("the subscription has a pending update; pay or let it expire first")
        price, quantity = self._target(sub, update.item_id, update.price_id, update.quantity)
        item = sub.json["items"]["data"][0]
        at = self._moment(
            sub, None if update.proration_date is None else to_timestamp(update.proration_date)
        )
        changed = price["id"] != item["price"]["id"] or quantity != item["quantity"]
        behavior = update.proration_behavior or "create_prorations"
        payment = update.payment_behavior or "allow_incomplete"
        promo = (
            None
            if update.promotion_code is None
            else self._catalog.redeemable(update.promotion_code)
        )
        if payment == "pending_if_incomplete" and (
            promo is not None
            or update.cancel_at_period_end is not None
            or update.metadata is not None
        ):
            raise invalid(
                "pending_if_incomplete only supports changes to items and proration "
                "(not discounts, cancel_at_period_end or metadata)"
            )
        trialing = sub.json["status"] == "trialing"
        old_recurring = item["price"]["recurring"]
        new_recurring = price["recurring"]
        restart = (old_recurring["interval"], old_recurring["interval_count"]) != (
            new_recurring["interval"],
            new_recurring["interval_count"],
        )
        invoice_now = changed and not trialing and (behavior == "always_invoice" or restart)
        lines = (
            self._prorations(sub, price, quantity, at, restart=restart)
            if changed and not trialing and behavior != "none"
            else []
        )
        before = copy.deepcopy(sub.json)
        now = state.timestamp()
        if not invoice_now:
            if changed:
                self._subscriptions.set_item(sub, price, quantity, restart_at=None)
                sub.pending_items.extend(lines)
            self._other_fields(sub, update, promo)
            changes = diff(before, sub.json)
            if changes:
                state.emit("customer.subscription.updated", sub.json, now, previous=changes)
            return sub.json
        restart_at = now if restart else None
        after = self._after(sub, price, quantity, restart_at)
        invoice_id = state.new_id("in")
        coupon = promo["promotion"]["coupon"] if promo is not None else sub.coupon
        draft = self._update_invoice(sub, after, now, invoice_id, lines, coupon, restart=restart)
        declines = self._invoices.declines(sub, draft["amount_due"])
        if declines and payment == "error_if_incomplete":
            sub.fail_next_payment = False
            raise GatewayCardError(
                "Your card was declined.",
                http_status=402,
                code="card_declined",
                user_message="Your card was declined.",
            )
        sub.pending_items = []
        if declines and payment == "pending_if_incomplete":
            self._invoices.issue(sub, draft, now)
            self._invoices.attempt(sub, draft, now, may_fail=True)
            draft["next_payment_attempt"] = None
            new_item = after["items"]["data"][0]
            sub.pending = {
                "invoice": invoice_id,
                "price": copy.deepcopy(price),
                "quantity": quantity,
                "restart_at": restart_at,
            }
            sub.json["pending_update"] = {
                "billing_cycle_anchor": restart_at,
                "expires_at": now + PENDING_UPDATE_LIFETIME,
                "subscription_items": [copy.deepcopy(new_item)],
                "trial_end": None,
                "trial_from_plan": None,
            }
            state.emit(
                "customer.subscription.updated", sub.json, now, previous=diff(before, sub.json)
            )
            return sub.json
        self._subscriptions.set_item(sub, price, quantity, restart_at=restart_at)
        self._other_fields(sub, update, promo)
        sub.json["latest_invoice"] = invoice_id
        state.emit("customer.subscription.updated", sub.json, now, previous=diff(before, sub.json))
        self._invoices.issue(sub, draft, now)
        self._subscriptions.collect(sub, draft, now)
        return sub.json

    def _other_fields(
        self, sub: SubRecord, update: SubscriptionUpdate, promo: dict[str, Any] | None
    ) -> None:
        if promo is not None:
            coupon = self._catalog.redeem(promo)
            sub.coupon = copy.deepcopy(coupon)
            sub.coupon_invoices_left = self._coupon_invoices(coupon, sub)
            sub.json["discounts"] = [f"di_{coupon['id']}"]
        if update.metadata is not None:
            sub.json["metadata"] = dict(update.metadata)
        if update.cancel_at_period_end is not None:
            period_end = sub.json["items"]["data"][0]["current_period_end"]
            cancel = update.cancel_at_period_end
            sub.json["cancel_at_period_end"] = cancel
            sub.json["cancel_at"] = period_end if cancel else None
            sub.json["canceled_at"] = self._state.timestamp() if cancel else None
            sub.json["cancellation_details"] = {
                "comment": None,
                "feedback": None,
                "reason": "cancellation_requested" if cancel else None,
            }

    # ------------------------------------------------------------------ preview

    def preview(self, request: InvoicePreviewRequest) -> dict[str, Any]:
        """The invoice a change would issue, computed like ``modify``.

        The invoice issued now (``always_invoice`` or an interval change), else the next
        renewal invoice with the prorations on it. Nothing is stored, redeemed or emitted.
        """
        state = self._state
        sub = self._subscriptions.live(request.subscription_id)
        if sub.json["customer"] != request.customer_id:
            raise invalid("the subscription does not belong to this customer")
        price, quantity = self._target(sub, request.item_id, request.price_id, request.quantity)
        item = sub.json["items"]["data"][0]
        at = self._moment(
            sub, None if request.proration_date is None else to_timestamp(request.proration_date)
        )
        changed = price["id"] != item["price"]["id"] or quantity != item["quantity"]
        behavior = request.proration_behavior
        coupon = sub.coupon
        if request.promotion_code is not None:
            coupon = self._catalog.redeemable(request.promotion_code)["promotion"]["coupon"]
        trialing = sub.json["status"] == "trialing"
        old = item["price"]["recurring"]
        new = price["recurring"]
        restart = (old["interval"], old["interval_count"]) != (
            new["interval"],
            new["interval_count"],
        )
        counters = copy.copy(state.counters)  # a preview allocates no ids
        lines = (
            self._prorations(sub, price, quantity, at, restart=restart)
            if changed and not trialing and behavior != "none"
            else []
        )
        now = state.timestamp()
        preview_id = f"upcoming_{sub.json['id']}"
        if changed and not trialing and (behavior == "always_invoice" or restart):
            after = self._after(sub, price, quantity, now if restart else None)
            invoice = self._update_invoice(
                sub, after, now, preview_id, lines, coupon, restart=restart
            )
        else:
            period_end = item["current_period_end"]
            after = self._after(sub, price, quantity, period_end)
            chosen = list(sub.pending_items)
            if behavior == "create_prorations":
                chosen += lines
            if not (request.cancel_at_period_end or sub.json["cancel_at_period_end"]):
                default = self._invoices.draft(
                    sub, after, period_end, "subscription_cycle", preview_id, None, None
                )
                chosen = default["lines"]["data"] + chosen
            invoice = self._invoices.draft(
                sub, after, period_end, "upcoming", preview_id, chosen, coupon
            )
            invoice["next_payment_attempt"] = period_end
        state.counters = counters
        balance = state.customers[sub.json["customer"]].get("balance") or 0
        due = invoice["total"] + balance
        invoice["starting_balance"] = balance
        invoice["amount_due"] = invoice["amount_remaining"] = max(due, 0)
        return invoice

    # ------------------------------------------------------------------ cancel now

    def cancel_now(self, subscription_id: str, *, prorate: bool, invoice_now: bool) -> SubRecord:
        """``DELETE /v1/subscriptions/{id}``: ends now; emits ``customer.subscription.deleted``.

        ``prorate`` credits the unused time of the period; ``invoice_now`` then issues a
        final invoice with that credit and the waiting proration items (a net credit goes
        to the customer's balance), else they wait for the customer's next invoice.
        """
        state = self._state
        sub = self._subscriptions.live(subscription_id, allow_paused=True)
        at = state.timestamp()
        item = sub.json["items"]["data"][0]
        lines: list[dict[str, Any]] = []
        if prorate and sub.json["status"] not in ("trialing", "paused"):
            lines = self._prorations(sub, item["price"], item["quantity"], at, restart=True)
        waiting = list(sub.pending_items) + lines
        sub.pending_items = []
        self._subscriptions.end(sub, at, reason="cancellation_requested")
        if invoice_now and waiting:
            invoice_id = state.new_id("in")
            draft = self._invoices.draft(
                sub, sub.json, at, "subscription_update", invoice_id, waiting, None
            )
            self._invoices.issue(sub, draft, at)
            self._invoices.attempt(sub, draft, at, may_fail=True)
        elif waiting:
            state.customer_items.setdefault(sub.json["customer"], []).extend(waiting)
        return sub

    # ------------------------------------------------------------------ schedules

    def schedule_change(self, change: ScheduledChange) -> dict[str, Any]:
        """Create (or reuse) the sub's schedule with a second phase from the period end.

        Emits ``subscription_schedule.created`` and ``customer.subscription.updated``
        (its ``schedule``) for a new schedule, then ``subscription_schedule.updated``.
        """
        state = self._state
        sub = self._subscriptions.live(change.subscription_id)
        price, quantity = self._target(sub, None, change.price_id, change.quantity)
        item = sub.json["items"]["data"][0]
        start, end = item["current_period_start"], item["current_period_end"]
        at = state.timestamp()
        current = sub.json["schedule"]
        if change.existing_schedule_id is None:
            if current is not None:
                raise invalid(
                    f"subscription {sub.json['id']} is already attached to schedule {current}",
                    "subscription_schedule_exists",
                )
            first = _shapes.schedule_phase_json(
                price=item["price"]["id"],
                quantity=item["quantity"],
                start=start,
                end=end,
                proration_behavior="create_prorations",
            )
            schedule = _shapes.subscription_schedule_json(
                id=state.new_id("sub_sched"),
                customer=sub.json["customer"],
                subscription=sub.json["id"],
                created=at,
                phases=[first],
                metadata=change.metadata,
                livemode=state.livemode,
            )
            state.schedules[schedule["id"]] = schedule
            state.emit("subscription_schedule.created", schedule, at)
            before = copy.deepcopy(sub.json)
            sub.json["schedule"] = schedule["id"]
            state.emit(
                "customer.subscription.updated", sub.json, at, previous=diff(before, sub.json)
            )
        else:
            schedule = self.schedule(change.existing_schedule_id)
            if schedule["subscription"] != sub.json["id"] or schedule["status"] != "active":
                raise invalid(f"schedule {schedule['id']} does not drive this subscription")
        before = copy.deepcopy(schedule)
        recurring = price["recurring"]
        second_end = add_interval(
            from_timestamp(end), recurring["interval"], recurring["interval_count"], 1
        )
        second = _shapes.schedule_phase_json(
            price=price["id"],
            quantity=quantity,
            start=end,
            end=to_timestamp(second_end),
            proration_behavior="none",
        )
        schedule["phases"] = [schedule["phases"][0], second]
        if change.metadata:
            schedule["metadata"] = dict(change.metadata)
        state.emit("subscription_schedule.updated", schedule, at, previous=diff(before, schedule))
        return schedule

    def schedule(self, schedule_id: str) -> dict[str, Any]:
        """The schedule; unknown ids raise NotFound."""
        found = self._state.schedules.get(schedule_id)
        if found is None:
            raise not_found("subscription_schedule", schedule_id)
        return found

    def release(self, schedule_id: str) -> dict[str, Any]:
        """Release: the sub runs on as it is.

        Emits ``subscription_schedule.released`` and ``customer.subscription.updated``.
        """
        state = self._state
        schedule = self.schedule(schedule_id)
        if schedule["status"] not in ("active", "not_started"):
            raise invalid(
                f"You cannot release a subscription schedule that is {schedule['status']}."
            )
        at = state.timestamp()
        sub_id = schedule["subscription"]
        schedule.update(
            status="released", released_at=at, released_subscription=sub_id, subscription=None
        )
        state.emit("subscription_schedule.released", schedule, at)
        sub = state.subs.get(sub_id or "")
        if sub is not None and sub.json["schedule"] == schedule_id:
            before = copy.deepcopy(sub.json)
            sub.json["schedule"] = None
            state.emit(
                "customer.subscription.updated", sub.json, at, previous=diff(before, sub.json)
            )
        return schedule

    def at_period_end(self, sub: SubRecord) -> None:
        """Before a renewal: move the sub's schedule to the phase starting now.

        A next phase puts its price and quantity on the item (the renewal then bills it)
        and emits ``subscription_schedule.updated``; the end of the last phase completes
        the schedule (``subscription_schedule.completed``) and releases the sub.
        """
        state = self._state
        schedule_id = sub.json["schedule"]
        if schedule_id is None:
            return
        schedule = state.schedules[schedule_id]
        at = state.timestamp()
        phases = schedule["phases"]
        upcoming = [phase for phase in phases if phase["start_date"] == at]
        if upcoming:
            phase = upcoming[0]
            entry = phase["items"][0]
            price = state.prices[entry["price"]]
            self._subscriptions.set_item(sub, price, entry["quantity"], restart_at=None)
            sub.anchor, sub.period_index = from_timestamp(at), -1
            before = copy.deepcopy(schedule)
            schedule["current_phase"] = {"end_date": phase["end_date"], "start_date": at}
            state.emit(
                "subscription_schedule.updated", schedule, at, previous=diff(before, schedule)
            )
        elif phases and phases[-1]["end_date"] is not None and phases[-1]["end_date"] <= at:
            schedule.update(
                status="completed",
                completed_at=at,
                current_phase=None,
                released_subscription=sub.json["id"],
            )
            state.emit("subscription_schedule.completed", schedule, at)
            sub.json["schedule"] = None

    def pending_expiry(self, sub: SubRecord) -> int | None:
        """When the sub's pending update expires (Unix seconds), if it has one."""
        pending = sub.json.get("pending_update")
        return None if pending is None else int(pending["expires_at"])
