"""billingkit's public test kit: a fake Stripe, event builders and webhook signing.

Use it in your app's tests (and in demos) instead of patching the ``stripe`` package::

    from datetime import timedelta
    from billingkit.testing import FakeStripeGateway

    stripe = FakeStripeGateway(webhook_secret="whsec_test")
    monthly = stripe.add_price(amount=2000, interval="month", lookup_key="pro_monthly",
                               product_name="Pro")

    # wire your services with gateway=stripe and clock=stripe.now, then:
    session = checkout.start_checkout(...)          # calls stripe.create_checkout_session
    stripe.complete_checkout(session.session_id)    # the customer "pays"
    for delivery in stripe.drain_events():          # signed, in Stripe's JSON shapes
        processor.handle(delivery.payload, delivery.signature)

    stripe.advance(timedelta(days=31))              # renewal: new period, invoice paid
    stripe.fail_next_payment(subscription_id)
    stripe.advance(timedelta(days=31))              # invoice.payment_failed -> past_due

    assert stripe.calls["list_prices"] == 1         # count Stripe calls per port method

Deliveries are signed at the fake's current time, so give the webhook processor the fake's
clock (``stripe.now``) or a tolerance that covers it.

Lower-level helpers build and sign events yourself::

    from billingkit.testing import build_event, sign_payload, signed_delivery

    event = build_event("customer.subscription.updated", subscription_json, created=1767603600)
    delivery = signed_delivery(event, "whsec_test", timestamp=1767603600)
    header = sign_payload(b"{...}", "whsec_test")          # a Stripe-Signature value

How the fake is built (for contributors): ``FakeStripeGateway`` (``_gateway``) is a thin
facade. It holds the account's one re-entrant lock around every public call, runs the port
methods through the controls and turns the Stripe JSON its parts keep into billingkit
values. The parts are plain objects composed once in its constructor, each given the shared
state and the parts it calls (no mixins, no cycles):

- ``_state``: ``FakeState``, the Stripe objects, deterministic ids, the clock and the event
  queue (``emit``); lookups that raise Stripe's 404.
- ``_controls``: call counting, injected failures and the idempotency cache.
- ``_catalog``: seeding and changing products and prices, coupons and promotion codes.
- ``_invoices``: invoices (lines, discounts, customer balance) and payment attempts, which
  answer a ``Payment`` outcome.
- ``_subscriptions``: the subscription simulation (start, update, pause, resume, renew,
  collect, end), shared by the schedule and the portal-like controls (later plan changes
  with proration, subscription schedules).
- ``_customers``: customers, declining cards and portal sessions (later payment methods).
- ``_changes``: subscription management as the app asks for it (the port's
  ``modify_subscription``, ``cancel_subscription_now``, ``preview_invoice``, subscription
  schedules): by-second prorations, pending updates, previews, promotion-code discounts.
- ``_checkout``: Checkout Sessions: create, complete, expire (later setup mode).
- ``_schedule``: the billing clock, i.e. which step is due when ``advance`` runs (session
  expiry, trial notices, period ends and schedule phases, payment retries, pending-update
  expiry), earliest first.
- ``_shapes`` and ``_events``: Stripe's JSON shapes, event envelopes and signing.

A new port method is a facade method plus the part it belongs to; a paginated list call
reads ``FakeState``'s insertion-ordered stores.
"""

from billingkit.testing._catalog import UNSET
from billingkit.testing._controls import PORT_OPERATIONS
from billingkit.testing._events import (
    FAKE_API_VERSION,
    Delivery,
    build_event,
    sign_payload,
    signed_delivery,
)
from billingkit.testing._gateway import DEFAULT_RETRY_DELAYS, DEFAULT_START, FakeStripeGateway

__all__ = [
    "DEFAULT_RETRY_DELAYS",
    "DEFAULT_START",
    "FAKE_API_VERSION",
    "PORT_OPERATIONS",
    "UNSET",
    "Delivery",
    "FakeStripeGateway",
    "build_event",
    "sign_payload",
    "signed_delivery",
]
