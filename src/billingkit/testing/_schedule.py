"""The billing clock: what falls due as the fake's time moves, run in time order.

Steps: Checkout Session expiry, trial-will-end notices, trial and period ends (renewal or
cancellation at period end, entering a subscription schedule's next phase), automatic payment
retries and the expiry of pending updates (23 h). What each step does to a
subscription is ``Subscriptions``' business; this
module only knows *when*. A new timed behaviour (a subscription schedule's next phase, a
meter's billing) adds its offers to ``Schedule._next_due``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

from billingkit.domain import from_timestamp
from billingkit.testing._changes import Changes
from billingkit.testing._checkout import Checkout
from billingkit.testing._state import LIVE, FakeState, SubRecord
from billingkit.testing._subscriptions import Subscriptions

__all__ = ["Schedule"]

_TRIAL_WILL_END_NOTICE = timedelta(days=3)
_MAX_STEPS = 100_000


class Schedule:
    """Runs every step due up to a moment, earliest first, then sets the clock there."""

    def __init__(
        self,
        state: FakeState,
        checkout: Checkout,
        subscriptions: Subscriptions,
        changes: Changes,
    ) -> None:
        self._state = state
        self._checkout = checkout
        self._subscriptions = subscriptions
        self._changes = changes

    def advance_to(self, moment: datetime) -> None:
        """Run the due steps up to ``moment`` (aware), then move the clock to it."""
        state = self._state
        for _ in range(_MAX_STEPS):
            due = self._next_due(moment)
            if due is None:
                break
            when, action = due
            state.catch_up(when)
            action()
        else:  # pragma: no cover - a bug in the schedule, not a test outcome
            raise RuntimeError("FakeStripeGateway: too many scheduled steps")
        state.catch_up(moment.astimezone(timezone.utc))

    def _next_due(self, limit: datetime) -> tuple[datetime, Callable[[], None]] | None:
        """The earliest scheduled step at or before ``limit`` (ties: creation order)."""
        best: tuple[datetime, Callable[[], None]] | None = None

        def offer(when: datetime, action: Callable[[], None]) -> None:
            nonlocal best
            if when <= limit and (best is None or when < best[0]):
                best = (when, action)

        state = self._state
        for entry in state.sessions.values():
            if entry.json["status"] == "open":
                offer(
                    from_timestamp(entry.json["expires_at"]), partial(self._checkout.expire, entry)
                )
        for sub in state.subs.values():
            status = sub.json["status"]
            period_end = from_timestamp(sub.json["items"]["data"][0]["current_period_end"])
            if status == "trialing":
                trial_end = from_timestamp(sub.json["trial_end"])
                if not sub.trial_will_end_sent:
                    trial_start = from_timestamp(sub.json["trial_start"])
                    notice = max(trial_end - _TRIAL_WILL_END_NOTICE, trial_start)
                    offer(notice, partial(self._trial_will_end, sub))
                offer(trial_end, partial(self._period_ends, sub))
            elif status in LIVE:
                offer(period_end, partial(self._period_ends, sub))
            expiry = self._changes.pending_expiry(sub)
            if expiry is not None:
                offer(from_timestamp(expiry), partial(self._subscriptions.expire_pending, sub))
        for invoice in state.invoices.values():
            retry = invoice["next_payment_attempt"]
            if invoice["status"] == "open" and retry is not None:
                offer(from_timestamp(retry), partial(self._retry, invoice))
        return best

    def _trial_will_end(self, sub: SubRecord) -> None:
        sub.trial_will_end_sent = True
        state = self._state
        state.emit("customer.subscription.trial_will_end", sub.json, state.timestamp())

    def _period_ends(self, sub: SubRecord) -> None:
        behavior = sub.missing_payment_method
        if sub.json["status"] == "trialing" and behavior in ("cancel", "pause"):
            # A trial started without a card ended without one (Stripe's trial_settings).
            if behavior == "cancel":
                self._subscriptions.end(
                    sub, self._state.timestamp(), reason="cancellation_requested"
                )
            else:
                self._subscriptions.pause(sub)
            return
        if sub.json["cancel_at_period_end"]:
            self._subscriptions.end(sub, self._state.timestamp(), reason="cancellation_requested")
        else:
            self._changes.at_period_end(sub)
            self._subscriptions.renew(sub)

    def _retry(self, invoice: dict[str, Any]) -> None:
        state = self._state
        sub = state.subs[invoice["parent"]["subscription_details"]["subscription"]]
        self._subscriptions.collect(sub, invoice, state.timestamp())
