"""The composition root: billingkit's services, built once from Django settings.

Views call :func:`billing` and use the services of the :class:`billingkit.Billing` it
returns; nothing else in the project builds a gateway, a repository or a service.
:func:`build_billing` chooses the gateway and repository from settings and lets
:meth:`billingkit.Billing.build` wire the services. They are built on the first call (never
at import time) and shared by every thread afterwards (they are thread-safe).

* ``STRIPE_API_KEY`` and ``STRIPE_WEBHOOK_SECRET`` both set: Stripe itself, through
  ``StripeSdkGateway`` (use test-mode keys).
* Neither set: billingkit's ``FakeStripeGateway``, seeded with the configured plans' prices,
  whose clock the services use (:func:`fake_gateway` returns it). The demo then serves a
  local page playing Stripe Checkout and one playing the billing portal (``views.fake_*``),
  and delivers the fake's signed events to this app's own webhook endpoint (see
  :func:`deliver_fake_events`).
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from billingkit import Billing
from billingkit.config import AccessPolicy, BillingConfig
from billingkit.contrib.django.repository import DjangoRepository
from billingkit.domain import PlanDefinition
from billingkit.ports import Clock, StripeGateway, system_clock
from billingkit.services.hooks import PaymentFailed, SubscriptionActivated, SubscriptionCanceled
from billingkit.testing import FakeStripeGateway

__all__ = [
    "FAKE_PRICES",
    "FAKE_WEBHOOK_SECRET",
    "DeliveryReport",
    "billing",
    "build_billing",
    "deliver_fake_events",
    "fake_gateway",
    "reset_billing",
]

logger = logging.getLogger("billing_demo")

#: The signing secret shared by the fake gateway and the webhook processor in fake mode.
#: Not a secret: fake mode never talks to Stripe.
FAKE_WEBHOOK_SECRET = "whsec_billing_demo_fake_stripe"
#: Amounts (USD cents) the fake gives the configured lookup keys.
FAKE_PRICES = {"demo_pro_monthly": 1200, "demo_pro_yearly": 12000, "demo_team_monthly": 4900}
_FAKE_DEFAULT_AMOUNT = 1000


_lock = threading.Lock()
_billing: Billing | None = None


def billing() -> Billing:
    """The project's services, built from settings on the first call."""
    global _billing
    built = _billing
    if built is None:
        with _lock:
            if _billing is None:
                _billing = build_billing()
            built = _billing
    return built


def fake_gateway() -> FakeStripeGateway | None:
    """The fake Stripe the services run on in fake mode; ``None`` on Stripe itself."""
    gateway = billing().gateway
    return gateway if isinstance(gateway, FakeStripeGateway) else None


def reset_billing() -> None:
    """Forget the built services: the next :func:`billing` builds new ones (tests use it)."""
    global _billing
    with _lock:
        _billing = None


def build_billing() -> Billing:
    """Build billingkit's services from Django settings (see the module docstring)."""
    api_key: str = settings.STRIPE_API_KEY
    webhook_secret: str = settings.STRIPE_WEBHOOK_SECRET
    if bool(api_key) != bool(webhook_secret):
        raise ImproperlyConfigured(
            "set both STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET (Stripe test mode), "
            "or neither (the fake Stripe)"
        )
    plans = tuple(PlanDefinition.model_validate(plan) for plan in settings.BILLING_PLANS)
    gateway: StripeGateway
    clock: Clock = system_clock
    if api_key:
        from billingkit.adapters.stripe_sdk import StripeSdkGateway

        gateway = StripeSdkGateway.from_api_key(api_key)
    else:
        fake = FakeStripeGateway(
            webhook_secret=FAKE_WEBHOOK_SECRET, start=system_clock().replace(microsecond=0)
        )
        _seed(fake, plans)
        gateway, clock, webhook_secret = fake, fake.now, FAKE_WEBHOOK_SECRET
    config = BillingConfig(
        plans=plans,
        free_plan=settings.BILLING_FREE_PLAN,
        webhook_secrets=(webhook_secret,),
        access=AccessPolicy(past_due_grace_days=settings.BILLING_PAST_DUE_GRACE_DAYS),
    )
    services = Billing.build(config, gateway, DjangoRepository(), clock=clock)
    services.webhooks.on(SubscriptionActivated, _log_activated)
    services.webhooks.on(PaymentFailed, _log_payment_failed)
    services.webhooks.on(SubscriptionCanceled, _log_canceled)
    return services


def _seed(fake: FakeStripeGateway, plans: tuple[PlanDefinition, ...]) -> None:
    """Give the fake one product per paid plan and a price per configured lookup key/id."""
    for plan in plans:
        if plan.is_free:
            continue
        product = fake.add_product(plan.name)
        for interval, ref in plan.prices.items():
            key = ref.lookup_key or ref.price_id or ""
            fake.add_price(
                amount=FAKE_PRICES.get(key, _FAKE_DEFAULT_AMOUNT),
                interval=interval,
                lookup_key=ref.lookup_key,
                price_id=ref.price_id,
                product=product,
            )


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
