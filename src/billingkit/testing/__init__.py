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
