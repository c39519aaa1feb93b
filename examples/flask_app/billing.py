"""The composition root of the Flask example: settings in, billingkit's services out.

:func:`build_billing` is the only place that builds a gateway, a repository or a service:
it chooses them from the settings and hands them to :meth:`billingkit.Billing.build`, which
wires the four services. :func:`~examples.flask_app.app.create_app` calls it once and hands
the :class:`~billingkit.Billing` to billingkit's Flask extension
(``BillingKit(app, billing=...)``); views read it as
:data:`billingkit.contrib.flask.current_billing`, and :func:`fake_gateway` tells whether it
runs on the fake Stripe. (An app on Stripe only needs no such function:
``BillingKit(app)`` builds the services from ``app.config``.)

Two modes, chosen by the settings:

* ``STRIPE_API_KEY`` and ``STRIPE_WEBHOOK_SECRET`` both set: Stripe itself (use test-mode
  keys) through :class:`~billingkit.adapters.stripe_sdk.StripeSdkGateway`, on the real clock.
* Neither set: :class:`~billingkit.testing.FakeStripeGateway`, seeded with the plans'
  prices. The services run on the fake's clock, so the events it signs verify and moving
  its time (renewals, failed payments) moves the app's time too.

Setting only one of the two is a configuration error: half a Stripe setup would silently
become a fake one.

``BILLING_DEFERRED`` picks how webhooks are applied: in the request (``""``, the default), or
deferred to Celery (``"celery"``) or RQ (``"rq"``) workers (:mod:`examples.flask_app.tasks`):
:func:`make_dispatcher` gives the processor the dispatcher that sends each stored event's id
to the queue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from billingkit import Billing
from billingkit.adapters.sqlalchemy import SqlAlchemyRepository, upgrade
from billingkit.config import AccessPolicy, BillingConfig
from billingkit.domain import Interval, PlanDefinition
from billingkit.errors import ConfigurationError
from billingkit.ports import Clock, Dispatcher, StripeGateway, system_clock
from billingkit.services.hooks import PaymentFailed, SubscriptionActivated, SubscriptionCanceled
from billingkit.testing import FakeStripeGateway

__all__ = [
    "DEFAULT_PLANS_FILE",
    "FAKE_WEBHOOK_SECRET",
    "FakePrice",
    "PlansFile",
    "build_billing",
    "fake_gateway",
    "load_plans",
    "make_dispatcher",
    "price_env_var",
]

logger = logging.getLogger("flask_app.billing")

#: The plans shipped with the example (lookup keys; see README.md to use your own).
DEFAULT_PLANS_FILE = Path(__file__).with_name("plans.json")
#: The values of ``BILLING_DEFERRED``: inline (in the request), Celery or RQ workers.
DEFERRED_MODES = ("", "celery", "rq")
#: Signing secret shared by the fake Stripe and the webhook processor in fake mode. Not a
#: secret: fake mode never talks to Stripe.
FAKE_WEBHOOK_SECRET = "whsec_flask_demo_fake_stripe"


@dataclass(frozen=True)
class FakePrice:
    """What the fake Stripe charges for one lookup key or price id (minor units)."""

    amount: int = 1000
    currency: str = "usd"
    #: The event name of the meter a metered price bills from (seeded in the fake).
    meter: str | None = None


@dataclass(frozen=True)
class PlansFile:
    """The plans and the access policy, as read from the plans file."""

    plans: tuple[PlanDefinition, ...]
    free_plan: str | None = None
    past_due_grace_days: int = 0
    fake_prices: Mapping[str, FakePrice] = field(default_factory=dict)
    #: Plan key -> the Billing Meter event name its usage is recorded under.
    meters: Mapping[str, str] = field(default_factory=dict)
    #: Promotion codes seeded in the fake Stripe: code -> ``{"percent_off": ...}`` or
    #: ``{"amount_off": ..., "currency": ...}``.
    promotion_codes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def price_env_var(plan_key: str, interval: Interval) -> str:
    """The environment variable that overrides one price, e.g. ``BILLING_PRICE_PRO_MONTH``."""
    name = "".join(c if c.isalnum() else "_" for c in plan_key).upper()
    return f"BILLING_PRICE_{name}_{interval.value.upper()}"


def load_plans(path: str | Path, environ: Mapping[str, str]) -> PlansFile:
    """Read the plans file; ``BILLING_PRICE_<PLAN>_<INTERVAL>`` in ``environ`` wins.

    Each price is a Stripe price id (``price_...``) or a lookup key. Raises
    :class:`~billingkit.errors.ConfigurationError` for a missing or malformed file.
    """
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read the plans file {path}: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("plans"), list):
        raise ConfigurationError(f"the plans file {path} needs a 'plans' list")
    plans = []
    for entry in raw["plans"]:
        prices = dict(entry.get("prices", {}))
        for interval in Interval:
            override = environ.get(price_env_var(str(entry.get("key", "")), interval))
            if override:
                prices[interval.value] = override
        try:
            plans.append(PlanDefinition.model_validate({**entry, "prices": prices}))
        except ValueError as exc:
            raise ConfigurationError(f"invalid plan in {path}: {exc}") from None
    fake_prices = {
        ref: FakePrice(**values) for ref, values in dict(raw.get("fake_prices", {})).items()
    }
    return PlansFile(
        plans=tuple(plans),
        free_plan=raw.get("free_plan"),
        past_due_grace_days=int(raw.get("past_due_grace_days", 0)),
        fake_prices=fake_prices,
        meters={str(k): str(v) for k, v in dict(raw.get("meters", {})).items()},
        promotion_codes=dict(raw.get("promotion_codes", {})),
    )


def build_billing(settings: Mapping[str, Any], *, dispatch: bool = True) -> Billing:
    """Build billingkit's services from the app's settings (see the module docstring).

    Keys read: ``STRIPE_API_KEY``, ``STRIPE_WEBHOOK_SECRET``, ``BILLING_DATABASE_URL``,
    ``BILLING_PLANS_FILE``, ``BILLING_PAST_DUE_GRACE_DAYS`` (``None``: the plans file's),
    ``FAKE_START`` (the fake's initial time; ``None``: now), ``ENVIRON`` (for price
    overrides) and ``BILLING_DEFERRED`` (with ``BILLING_BROKER_URL``, ``BILLING_QUEUE``).
    ``dispatch=False`` builds a worker's services: same settings, no dispatcher, and in fake
    mode the real clock (the worker's fake is not the web app's, and its time stands still).
    """
    mode = settings.get("BILLING_DEFERRED") or ""
    if mode not in DEFERRED_MODES:
        raise ConfigurationError("BILLING_DEFERRED must be '', 'celery' or 'rq'")
    api_key = settings.get("STRIPE_API_KEY") or ""
    webhook_secret = settings.get("STRIPE_WEBHOOK_SECRET") or ""
    if bool(api_key) != bool(webhook_secret):
        raise ConfigurationError(
            "set both STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET (Stripe test mode), "
            "or neither (the fake Stripe)"
        )
    plans = load_plans(settings["BILLING_PLANS_FILE"], settings.get("ENVIRON") or {})
    grace = settings.get("BILLING_PAST_DUE_GRACE_DAYS")
    config = BillingConfig(
        plans=plans.plans,
        free_plan=plans.free_plan,
        webhook_secrets=(webhook_secret or FAKE_WEBHOOK_SECRET,),
        access=AccessPolicy(
            past_due_grace_days=plans.past_due_grace_days if grace is None else int(grace)
        ),
    )

    gateway: StripeGateway
    clock: Clock = system_clock
    if api_key:
        from billingkit.adapters.stripe_sdk import StripeSdkGateway

        gateway = StripeSdkGateway.from_api_key(api_key)
    else:
        start = settings.get("FAKE_START") or system_clock().replace(microsecond=0)
        fake = FakeStripeGateway(webhook_secret=FAKE_WEBHOOK_SECRET, start=start)
        seed_fake_prices(fake, plans)
        gateway, clock = fake, fake.now
        if not dispatch:
            # A worker: its fake is not the web process's, and its time stands still; the
            # ledger's retry times need a clock that moves.
            clock = system_clock

    repository = SqlAlchemyRepository(settings["BILLING_DATABASE_URL"])
    upgrade(repository.engine)  # the shipped migrations; safe on every start
    billing = Billing.build(config, gateway, repository, clock=clock)
    billing.webhooks.on(SubscriptionActivated, _tell_activated)
    billing.webhooks.on(PaymentFailed, _tell_payment_failed)
    billing.webhooks.on(SubscriptionCanceled, _tell_canceled)
    if mode and dispatch:
        billing.webhooks.dispatcher = make_dispatcher(mode, settings)
    return billing


def make_dispatcher(mode: str, settings: Mapping[str, Any]) -> Dispatcher:
    """The dispatcher sending stored events to the ``"celery"`` or ``"rq"`` workers."""
    from examples.flask_app.tasks import DEFAULT_BROKER_URL, DEFAULT_QUEUE

    if mode == "celery":
        from examples.flask_app.tasks import make_celery

        from billingkit.contrib.celery import CeleryDispatcher, install

        return CeleryDispatcher(install(make_celery(settings)))
    from redis import Redis
    from rq import Queue

    from billingkit.contrib.rq import RqDispatcher

    connection = Redis.from_url(settings.get("BILLING_BROKER_URL") or DEFAULT_BROKER_URL)
    return RqDispatcher(
        Queue(settings.get("BILLING_QUEUE") or DEFAULT_QUEUE, connection=connection)
    )


def seed_fake_prices(fake: FakeStripeGateway, plans: PlansFile) -> None:
    """Seed the fake: a product per paid plan, a price for each of its refs (metered ones
    on their meter), and the promotion codes."""
    for meter in sorted({p.meter for p in plans.fake_prices.values() if p.meter}):
        fake.add_meter(meter)
    for code, terms in plans.promotion_codes.items():
        fake.add_promotion_code(code, **terms)
    for plan in plans.plans:
        if plan.is_free:
            continue
        product = fake.add_product(plan.name)
        for interval, ref in plan.prices.items():
            charge = plans.fake_prices.get(ref.lookup_key or ref.price_id or "", FakePrice())
            fake.add_price(
                amount=charge.amount,
                currency=charge.currency,
                interval=interval,
                lookup_key=ref.lookup_key,
                price_id=ref.price_id,
                product=product,
                meter=charge.meter,
            )


def fake_gateway(billing: Billing) -> FakeStripeGateway | None:
    """The fake Stripe the services run on in fake mode; ``None`` on Stripe itself."""
    return billing.gateway if isinstance(billing.gateway, FakeStripeGateway) else None


# Hooks run inside the event's transaction and again on a redelivery of a failed event:
# anything with a side effect should key it on event.event_id. These only log.


def _tell_activated(event: SubscriptionActivated) -> None:
    logger.info(
        "user %s: subscription %s is %s (event %s)",
        event.user_id,
        event.subscription.id,
        event.subscription.status.value,
        event.event_id,
    )


def _tell_payment_failed(event: PaymentFailed) -> None:
    logger.info("user %s: a payment failed (event %s)", event.user_id, event.event_id)


def _tell_canceled(event: SubscriptionCanceled) -> None:
    logger.info("user %s: subscription %s canceled", event.user_id, event.subscription.id)
