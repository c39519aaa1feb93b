"""The demo's billing glue: its hooks, and fake Stripe's delivery of events.

billingkit's services come from ``settings.BILLINGKIT`` through
:func:`billingkit.contrib.django.get_billing` (built on first use, shared by every thread).
This module adds what is the demo's own:

* :func:`configure` registers the demo's hooks (``BILLINGKIT["CONFIGURE"]`` names it);
* in fake mode (no Stripe keys: ``BILLINGKIT["FAKE_STRIPE"]``), :func:`fake_gateway` returns
  the fake Stripe the services run on, and :func:`deliver_fake_events` sends its signed
  events to the app's own webhook endpoint, as Stripe would. The demo's local pages play
  Stripe Checkout and the billing portal (``views.fake_*``).
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from dataclasses import dataclass

from django.conf import settings

from billingkit import Billing
from billingkit.contrib.django import get_billing
from billingkit.services.hooks import PaymentFailed, SubscriptionActivated, SubscriptionCanceled
from billingkit.testing import FakeStripeGateway

__all__ = ["DeliveryReport", "configure", "deliver_fake_events", "fake_gateway"]

logger = logging.getLogger("billing_demo")


def configure(billing: Billing) -> None:
    """Register the demo's hooks on the services (called once, when they are built)."""
    billing.webhooks.on(SubscriptionActivated, _log_activated)
    billing.webhooks.on(PaymentFailed, _log_payment_failed)
    billing.webhooks.on(SubscriptionCanceled, _log_canceled)
    if isinstance(billing.gateway, FakeStripeGateway):
        _seed_fake(billing.gateway)


def _seed_fake(fake: FakeStripeGateway) -> None:
    """Fake mode: the meters of the metered plans and the demo's promotion codes."""
    for event_name in sorted(set(settings.BILLING_DEMO_METERED_PLANS.values())):
        fake.add_meter(event_name)
    for code, percent_off in settings.BILLING_DEMO_FAKE_PROMOTION_CODES.items():
        fake.add_promotion_code(code, percent_off=percent_off)


def fake_gateway() -> FakeStripeGateway | None:
    """The fake Stripe the services run on in fake mode; ``None`` on Stripe itself."""
    gateway = get_billing().gateway
    return gateway if isinstance(gateway, FakeStripeGateway) else None


# --------------------------------------------------------------------------- hooks


def _log_activated(event: SubscriptionActivated) -> None:
    logger.info("user %s: subscription %s is %s", event.user_id, event.subscription.id,
                event.subscription.status.value)  # fmt: skip


def _log_payment_failed(event: PaymentFailed) -> None:
    logger.info("user %s: payment of invoice %s failed", event.user_id, event.invoice_id)


def _log_canceled(event: SubscriptionCanceled) -> None:
    logger.info("user %s: subscription %s canceled", event.user_id, event.subscription.id)


# --------------------------------------------------------------------------- fake delivery


@dataclass(frozen=True)
class DeliveryReport:
    """What the app's webhook endpoint answered to one fake event."""

    event_type: str
    status: int


def deliver_fake_events(webhook_url: str) -> list[DeliveryReport]:
    """Fake mode: send the fake's pending events to ``webhook_url``, as Stripe would.

    With ``BILLING_DEMO_FAKE_DELIVERY = "http"`` each signed event is POSTed over HTTP to the
    app's own endpoint, in order, through the whole Django stack (the server must handle
    requests on several threads, as runserver does). With ``"queue"`` nothing is sent: the
    events stay at the fake for the caller (the tests deliver them with Django's test
    client). Returns one report per delivered event.
    """
    fake = fake_gateway()
    if fake is None or settings.BILLING_DEMO_FAKE_DELIVERY != "http":
        return []
    reports = []
    for delivery in fake.drain_events():
        request = urllib.request.Request(
            webhook_url,
            data=delivery.payload,
            method="POST",
            headers={"Content-Type": "application/json", "Stripe-Signature": delivery.signature},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status = int(response.status)
        except urllib.error.HTTPError as error:
            status = error.code
        except urllib.error.URLError as error:
            logger.warning("could not deliver %s to %s: %s", delivery.id, webhook_url, error)
            status = 0
        reports.append(DeliveryReport(delivery.type, status))
    return reports
