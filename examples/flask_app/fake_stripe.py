"""Fake mode only: local pages playing Stripe, and Stripe's webhook deliveries.

* ``/fake-stripe/checkout/<id>`` plays Stripe Checkout: "Pay" completes the session on the
  :class:`~billingkit.testing.FakeStripeGateway`, then the fake's signed events are
  delivered to the app's own ``POST /webhooks/stripe`` (:func:`deliver_pending`), then the
  browser goes to the session's success URL, as Stripe would send it.
* ``/fake-stripe/setup/<id>`` plays setup-mode Checkout ("update card"): "Save card"
  completes the session (``complete_setup_checkout``), delivers the events (the new card
  becomes the default) and returns to the account page.
* ``/fake-stripe/portal`` plays the billing portal: cancel at period end (or undo it),
  update the card and pay an open invoice.
* ``/fake-stripe/clock`` is a developer page: move the fake's time (renewals, payment
  retries, cancellations at period end run on the way; recorded usage is flushed first, as
  a cron job would), make payments fail or the card expire, see the next invoice with its
  metered usage, and read the webhook ledger.

Nothing here is needed with real Stripe; the blueprint is registered in fake mode only.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from examples.flask_app.app import login_required
from examples.flask_app.billing import fake_gateway
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from billingkit import Billing
from billingkit.contrib.flask import WEBHOOK_ENDPOINT, current_billing
from billingkit.domain import EventStatus, from_timestamp
from billingkit.errors import GatewayCardError, GatewayError
from billingkit.testing import Delivery, FakeStripeGateway

__all__ = ["DeliveryReport", "deliver_pending", "fake_stripe", "queue_counts"]

logger = logging.getLogger("flask_app.fake_stripe")

fake_stripe = Blueprint("fake_stripe", __name__, url_prefix="/fake-stripe")

_ADVANCES = {"1d": timedelta(days=1), "4d": timedelta(days=4), "7d": timedelta(days=7)}


@dataclass(frozen=True)
class DeliveryReport:
    """What the app's webhook endpoint answered to one delivered event."""

    event_id: str
    event_type: str
    status: int
    outcome: str


def deliver_pending() -> list[DeliveryReport]:
    """Send the fake's pending events, in order, to this app's ``POST /webhooks/stripe``.

    ``FAKE_DELIVERY = "http"``: over HTTP to the app's own URL, exactly as Stripe would
    (raw body, ``Stripe-Signature`` header); ``"test_client"``: through Flask's test client.
    Either way the whole request path runs: signature check, ledger, state. The reports are
    also kept (newest last) for the clock page.
    """
    reports = [_deliver(delivery) for delivery in _fake().drain_events()]
    kept: list[DeliveryReport] = current_app.extensions.setdefault("fake_deliveries", [])
    kept.extend(reports)
    del kept[:-50]
    if reports:
        answers = Counter(f"{r.status} {r.outcome}".strip() for r in reports)
        plural = "s" if len(reports) > 1 else ""
        flash(
            f"Stripe delivered {len(reports)} signed event{plural} to /webhooks/stripe: "
            + ", ".join(f"{answer} ({count})" for answer, count in sorted(answers.items()))
        )
    return reports


def _deliver(delivery: Delivery) -> DeliveryReport:
    headers = {"Content-Type": "application/json", "Stripe-Signature": delivery.signature}
    if current_app.config["FAKE_DELIVERY"] == "test_client":
        answer = current_app.test_client().post(
            url_for(WEBHOOK_ENDPOINT), data=delivery.payload, headers=headers
        )
        status, body = answer.status_code, answer.get_data()
    else:
        target = url_for(WEBHOOK_ENDPOINT, _external=True)
        outgoing = urllib.request.Request(target, data=delivery.payload, headers=headers)
        try:
            with urllib.request.urlopen(outgoing, timeout=30) as response:
                status, body = int(response.status), response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        except urllib.error.URLError as error:
            logger.warning("could not deliver %s to %s: %s", delivery.id, target, error)
            status, body = 0, b"{}"
    try:
        answer_json = json.loads(body)
        outcome = str(answer_json.get("outcome") or answer_json.get("error") or "")
    except (ValueError, AttributeError):
        outcome = ""
    return DeliveryReport(delivery.id, delivery.type, status, outcome)


def _fake() -> FakeStripeGateway:
    fake = fake_gateway(current_billing)
    if fake is None:  # pragma: no cover - the blueprint is registered in fake mode only
        abort(404)
    return fake


def _customer_id(user_id: str) -> str | None:
    with current_billing.repository.unit_of_work() as uow:
        link = uow.customer_for_user(user_id)
    return link.customer_id if link is not None else None


def _subscriptions(customer_id: str | None) -> list[dict[str, Any]]:
    """The customer's subscriptions in the fake, newest first, flattened for templates."""
    if customer_id is None:
        return []
    fake = _fake()
    rows = []
    for sub_id in reversed(fake.subscription_ids(customer_id)):
        sub = fake.stripe_object(sub_id)
        item = sub["items"]["data"][0]
        invoice = fake.latest_invoice(sub_id) if sub["latest_invoice"] else None
        rows.append(
            {
                "id": sub_id,
                "status": sub["status"],
                "price": item["price"]["lookup_key"] or item["price"]["id"],
                "period_end": from_timestamp(item["current_period_end"]),
                "cancel_at_period_end": sub["cancel_at_period_end"],
                "open_invoice": invoice is not None and invoice["status"] == "open",
                "live": sub["status"] not in ("canceled", "incomplete_expired"),
            }
        )
    return rows


def _live_subscription(user_id: str) -> dict[str, Any]:
    live = [row for row in _subscriptions(_customer_id(user_id)) if row["live"]]
    if not live:
        abort(404, "no live subscription at the fake Stripe")
    return live[0]


# --------------------------------------------------------------------------- Checkout


@fake_stripe.get("/checkout/<session_id>")
def checkout(session_id: str) -> str:
    """The fake's Checkout page for one session."""
    return render_template("fake_checkout.html", stripe_session=_session(session_id))


def _session(session_id: str) -> dict[str, Any]:
    try:
        return _fake().stripe_object(session_id)
    except GatewayError:
        abort(404, "no such checkout session")


@fake_stripe.post("/checkout/<session_id>/pay")
def pay(session_id: str) -> BaseResponse | tuple[str, int]:
    """Pay: the fake completes the session, its events are delivered, then the redirect."""
    checkout_session = _session(session_id)
    try:
        _fake().complete_checkout(session_id)
    except GatewayCardError as error:
        logger.info("checkout %s: card declined: %s", session_id, error)
        flash("Your card was declined. Try another card.")
        return render_template("fake_checkout.html", stripe_session=checkout_session), 402
    except GatewayError as error:  # e.g. the session expired or was already paid
        logger.warning("checkout %s cannot be paid: %s", session_id, error)
        flash("This checkout can no longer be paid: start again from the plans.")
        return render_template("fake_checkout.html", stripe_session=checkout_session), 400
    deliver_pending()
    success_url: str = checkout_session["success_url"]
    return redirect(success_url.replace("{CHECKOUT_SESSION_ID}", session_id), 303)


@fake_stripe.post("/checkout/<session_id>/cancel")
def cancel(session_id: str) -> BaseResponse:
    """Back to the app's cancel URL, as Stripe's back link does."""
    return redirect(_session(session_id)["cancel_url"], 303)


@fake_stripe.get("/setup/<session_id>")
def setup(session_id: str) -> str:
    """The fake's setup-mode Checkout page: save a new card (nothing is charged)."""
    return render_template("fake_setup.html", stripe_session=_session(session_id))


@fake_stripe.post("/setup/<session_id>/save")
def save_card(session_id: str) -> BaseResponse | tuple[str, int]:
    """Save the card: the fake completes the setup session, its events are delivered
    (the new card becomes the default), then the browser goes back to the success URL."""
    checkout_session = _session(session_id)
    last4 = request.form.get("last4", "4444")
    month, year = request.form.get("exp_month", "12"), request.form.get("exp_year", "2030")
    if not (len(last4) == 4 and last4.isdigit() and month.isdigit() and year.isdigit()):
        flash("Enter the card's last four digits and its expiry month and year.")
        return render_template("fake_setup.html", stripe_session=checkout_session), 400
    if not 1 <= int(month) <= 12:
        flash("The expiry month is 1 to 12.")
        return render_template("fake_setup.html", stripe_session=checkout_session), 400
    try:
        _fake().complete_setup_checkout(
            session_id, last4=last4, exp_month=int(month), exp_year=int(year)
        )
    except GatewayError as error:  # e.g. the session expired or was already completed
        logger.warning("setup checkout %s cannot be completed: %s", session_id, error)
        flash("This page can no longer save a card: start again from your account.")
        return render_template("fake_setup.html", stripe_session=checkout_session), 400
    deliver_pending()
    flash(f"Card ending {last4} saved.")
    return redirect(checkout_session["success_url"], 303)


# --------------------------------------------------------------------------- portal


@fake_stripe.get("/portal")
@login_required
def portal() -> str:
    """The fake billing portal of the logged-in user's Stripe customer."""
    customer_id = _customer_id(session["user_id"])
    return render_template(
        "fake_portal.html", customer_id=customer_id, subscriptions=_subscriptions(customer_id)
    )


@fake_stripe.post("/portal")
@login_required
def portal_action() -> BaseResponse:
    """Cancel at period end, undo it, or update the card and pay the open invoice."""
    fake = _fake()
    subscription = _live_subscription(session["user_id"])
    action = request.form.get("action")
    if action == "cancel_at_period_end":
        fake.update_subscription(subscription["id"], cancel_at_period_end=True)
    elif action == "keep":
        fake.update_subscription(subscription["id"], cancel_at_period_end=False)
    elif action == "update_card":
        customer_id = fake.stripe_object(subscription["id"])["customer"]
        fake.set_card_declining(customer_id, False)
        if subscription["open_invoice"]:
            fake.retry_payment(subscription["id"])
    else:
        abort(400, "unknown portal action")
    deliver_pending()
    return redirect(url_for("fake_stripe.portal"), 303)


# --------------------------------------------------------------------------- clock


@fake_stripe.get("/clock")
@login_required
def clock() -> str:
    """Developer page: the fake's time, the user's subscriptions and the webhook ledger."""
    billing = current_billing
    with billing.repository.unit_of_work() as uow:
        ledger = uow.list_events(limit=1000)[-15:]
    return render_template(
        "fake_clock.html",
        now=_fake().now(),
        subscriptions=_subscriptions(_customer_id(session["user_id"])),
        ledger=list(reversed(ledger)),
        deliveries=list(reversed(current_app.extensions.get("fake_deliveries", [])))[:15],
        queue=queue_counts(billing, current_app.config.get("BILLING_DEFERRED") or ""),
        next_invoice=_next_invoice(session["user_id"]),
    )


def _next_invoice(user_id: str) -> dict[str, Any] | None:
    """The user's next invoice: Stripe's preview amount, and the metered usage it bills.

    ``metered`` is what the fake's meter summed this period for the user's metered plan
    (the usage ``flush`` sent): the renewal invoice bills it as its metered line.
    """
    billing = current_billing
    details = billing.customers.for_user(user_id)
    upcoming = billing.customers.next_invoice(user_id)
    if upcoming is None or details.plan_key is None:
        return None
    meter = current_app.config["PLAN_METERS"].get(details.plan_key)
    customer_id = _customer_id(user_id)
    metered = None
    if meter is not None and customer_id is not None:
        live = [row for row in _subscriptions(customer_id) if row["live"]]
        start = from_timestamp(
            _fake().stripe_object(live[0]["id"])["items"]["data"][0]["current_period_start"]
        )
        metered = {"meter": meter, "units": _fake().meter_usage(customer_id, meter, start=start)}
    return {
        "amount": upcoming.amount_due.format(),
        "at": upcoming.at,
        "metered": metered,
    }


def queue_counts(billing: Billing, mode: str) -> dict[str, Any]:
    """The webhook ledger at a glance: the mode, counts by status, the oldest pending age."""
    webhooks = billing.webhooks
    age = webhooks.oldest_pending_age()
    return {
        "mode": mode or "inline",
        "pending": webhooks.pending_count(),
        "failed": webhooks.event_count(EventStatus.FAILED),
        "processed": webhooks.event_count(EventStatus.PROCESSED),
        "ignored": webhooks.event_count(EventStatus.IGNORED),
        "stale": webhooks.event_count(EventStatus.STALE),
        "dead": webhooks.event_count(EventStatus.DEAD),
        "oldest_pending_seconds": None if age is None else int(age.total_seconds()),
    }


@fake_stripe.post("/clock")
@login_required
def clock_action() -> BaseResponse:
    """Move time or make payments fail, then deliver what Stripe would send."""
    fake = _fake()
    action = request.form.get("action", "")
    if action in (*_ADVANCES, "renewal"):  # a cron job sends recorded usage to Stripe
        _flush_usage()
    if action in _ADVANCES:
        fake.advance(_ADVANCES[action])
    elif action == "renewal":
        fake.advance_to(_next_renewal(session["user_id"], fake.now()))
    elif action in ("card_declines", "card_works"):
        subscription = _live_subscription(session["user_id"])
        customer_id = fake.stripe_object(subscription["id"])["customer"]
        fake.set_card_declining(customer_id, action == "card_declines")
    elif action == "card_expiring":  # the default card now expires this month
        _expire_card_soon(fake)
    elif action == "flush_usage":
        _flush_usage()
        return redirect(url_for("fake_stripe.clock"), 303)
    elif action == "fail_next_payment":
        fake.fail_next_payment(_live_subscription(session["user_id"])["id"])
    elif action == "drain":  # apply what is due now, as a `drain` worker would
        drained = current_billing.webhooks.drain()
        flash(f"Drained {drained.total} event(s): {drained.processed} processed.")
        return redirect(url_for("fake_stripe.clock"), 303)
    else:
        abort(400, "unknown clock action")
    deliver_pending()
    return redirect(url_for("fake_stripe.clock"), 303)


def _flush_usage() -> None:
    """Send the recorded usage to the fake's meters, as the app's cron job would."""
    flushed = current_billing.usage.flush()
    if flushed.sent:
        flash(f"Usage flushed to Stripe: {flushed.sent} record(s) sent.")


def _expire_card_soon(fake: FakeStripeGateway) -> None:
    method = current_billing.customers.for_user(session["user_id"]).payment_method
    if method is None:
        abort(404, "no card at the fake Stripe")
    now = fake.now()
    fake.update_card_expiry(method.id, now.month, now.year)


def _next_renewal(user_id: str, now: datetime) -> datetime:
    """Just past the end of the user's current period (a month on without one)."""
    ends = [row["period_end"] for row in _subscriptions(_customer_id(user_id)) if row["live"]]
    future = [end for end in ends if end > now]
    return (min(future) if future else now + timedelta(days=30)) + timedelta(minutes=1)
