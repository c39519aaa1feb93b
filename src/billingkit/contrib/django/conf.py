"""The ``BILLINGKIT`` setting, mapped to ``BillingConfig``, and ``get_billing``.

::

    # settings.py
    BILLINGKIT = {
        "PLANS": [...],                         # PlanDefinition objects or dicts (required)
        "FREE_PLAN": "free",
        "STRIPE_API_KEY": os.environ["STRIPE_API_KEY"],
        "WEBHOOK_SECRETS": [os.environ["STRIPE_WEBHOOK_SECRET"]],   # a list during rotation
    }

Keys (the Django spelling of what ``billingkit.contrib.flask.billing_from_config``
reads from ``app.config``):

``PLANS`` (required)
    The plans: ``PlanDefinition`` objects or dicts of their fields.
``FREE_PLAN``
    Key of the plan of users without a subscription.
``STRIPE_API_KEY``, ``WEBHOOK_SECRETS`` (required unless ``FAKE_STRIPE``)
    The secret key and the endpoint's signing secrets (one string, or a list during rotation;
    blank entries, e.g. an unset environment variable, are left out).
``FAKE_STRIPE``
    ``True``: run on ``billingkit.testing.FakeStripeGateway`` (development and tests;
    never talks to Stripe), seeded with one price per configured plan interval and driving
    the services' clock. ``FAKE_PRICES`` maps a lookup key or price id to its amount in
    minor units (default 1000). The signing secret is ``WEBHOOK_SECRETS[0]`` if given,
    else ``FAKE_WEBHOOK_SECRET``.
``DATABASE``
    The database alias of billingkit's tables (default ``"default"``).
``OPTIONS``
    Any other ``BillingConfig`` field, e.g.
    ``{"access": {"past_due_grace_days": 3}, "livemode": True}``.
``CONFIGURE``
    Dotted path of a callable (or the callable) given the built ``Billing``
    once, to register hooks: ``"myapp.billing.configure"``.
``USER_ID``
    Dotted path of a callable (or the callable) ``request -> str | None`` giving the
    current user's billing id; default ``str(request.user.pk)`` for an authenticated user.
    Used by ``requires_feature`` and the
    ``has_feature`` template filter.

``get_billing`` builds the services on first use (never at import time), once, under a
lock, and returns the same object afterwards (the services are thread-safe). Changing the
setting (``override_settings``) makes the next call build new ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, cast

from billingkit._optional import requires_extra
from billingkit.composition import Billing
from billingkit.config import BillingConfig
from billingkit.errors import ConfigurationError

with requires_extra("django"):
    from django.conf import settings
    from django.http import HttpRequest
    from django.utils.module_loading import import_string

__all__ = [
    "FAKE_WEBHOOK_SECRET",
    "SETTING",
    "billing_from_settings",
    "billing_settings",
    "config_from_settings",
    "get_billing",
    "reset_billing",
    "user_id_for",
]

#: The name of the Django setting.
SETTING = "BILLINGKIT"
#: The signing secret of the fake Stripe when ``WEBHOOK_SECRETS`` is not set. Not a secret:
#: fake mode never talks to Stripe.
FAKE_WEBHOOK_SECRET = "whsec_billingkit_fake_stripe"
_FAKE_DEFAULT_AMOUNT = 1000
_KNOWN = frozenset(
    {
        "PLANS",
        "FREE_PLAN",
        "STRIPE_API_KEY",
        "WEBHOOK_SECRETS",
        "FAKE_STRIPE",
        "FAKE_PRICES",
        "DATABASE",
        "OPTIONS",
        "CONFIGURE",
        "USER_ID",
    }
)


def billing_settings() -> Mapping[str, Any]:
    """The ``BILLINGKIT`` setting; ``ConfigurationError`` if unusable."""
    values = getattr(settings, SETTING, None)
    if values is None:
        raise ConfigurationError(f"set {SETTING} = {{...}} in your Django settings")
    if not isinstance(values, Mapping):
        raise ConfigurationError(f"{SETTING} must be a dict, not {type(values).__name__}")
    unknown = sorted(set(values) - _KNOWN)
    if unknown:
        raise ConfigurationError(
            f"unknown {SETTING} key(s): {', '.join(map(str, unknown))}; "
            f"known: {', '.join(sorted(_KNOWN))}"
        )
    return values


def _secrets(values: Mapping[str, Any]) -> tuple[str, ...]:
    """The signing secrets; blank ones (an unset environment variable) do not count."""
    raw = values.get("WEBHOOK_SECRETS") or ()
    return tuple(secret for secret in ((raw,) if isinstance(raw, str) else raw) if secret)


def config_from_settings(values: Mapping[str, Any] | None = None) -> BillingConfig:
    """The ``BillingConfig`` the setting describes (no gateway, no database).

    Raises ``ConfigurationError`` for a missing secret or a plan
    configuration ``BillingConfig`` refuses.
    """
    values = billing_settings() if values is None else values
    fake = bool(values.get("FAKE_STRIPE"))
    secrets = _secrets(values)
    missing = [name for name in ("PLANS",) if not values.get(name)]
    if not fake:
        missing += [name for name in ("STRIPE_API_KEY",) if not values.get(name)]
        if not secrets:
            missing.append("WEBHOOK_SECRETS")
    if missing:
        raise ConfigurationError(
            f"set {', '.join(missing)} in settings.{SETTING} (or FAKE_STRIPE: True)"
        )
    options = dict(values.get("OPTIONS") or {})
    try:
        return BillingConfig(
            **options,
            plans=values["PLANS"],
            free_plan=values.get("FREE_PLAN"),
            webhook_secrets=secrets or (FAKE_WEBHOOK_SECRET,),
        )
    except TypeError as exc:  # OPTIONS repeating PLANS, FREE_PLAN or WEBHOOK_SECRETS
        raise ConfigurationError(f"settings.{SETTING}['OPTIONS']: {exc}") from exc


def _callable(values: Mapping[str, Any], key: str) -> Callable[..., Any] | None:
    target = values.get(key)
    if target is None:
        return None
    if isinstance(target, str):
        try:
            target = import_string(target)
        except ImportError as exc:
            raise ConfigurationError(f"settings.{SETTING}[{key!r}]: {exc}") from exc
    if not callable(target):
        raise ConfigurationError(f"settings.{SETTING}[{key!r}] is not callable")
    return cast("Callable[..., Any]", target)


def billing_from_settings(values: Mapping[str, Any] | None = None) -> Billing:
    """Build the services the setting describes (see the module docstring).

    Stripe itself through ``StripeSdkGateway``, or the
    fake with ``FAKE_STRIPE``; the repository is
    ``DjangoRepository`` on ``DATABASE``.
    """
    values = billing_settings() if values is None else values
    config = config_from_settings(values)
    configure = _callable(values, "CONFIGURE")
    from billingkit.contrib.django.repository import DjangoRepository

    repository = DjangoRepository(values.get("DATABASE") or "default")
    if values.get("FAKE_STRIPE"):
        from billingkit.ports import system_clock
        from billingkit.testing import FakeStripeGateway

        fake = FakeStripeGateway(
            webhook_secret=config.secret_values()[0],
            start=system_clock().replace(microsecond=0),
        )
        _seed(fake, config, values.get("FAKE_PRICES") or {})
        billing = Billing.build(config, fake, repository, clock=fake.now)
    else:
        from billingkit.adapters.stripe_sdk import StripeSdkGateway

        gateway = StripeSdkGateway.from_api_key(values["STRIPE_API_KEY"])
        billing = Billing.build(config, gateway, repository)
    if configure is not None:
        configure(billing)
    return billing


def _seed(fake: Any, config: BillingConfig, amounts: Mapping[str, int]) -> None:
    """Give the fake one product per paid plan and a price per configured interval."""
    for plan in config.plans:
        if plan.is_free:
            continue
        product = fake.add_product(plan.name)
        for interval, ref in plan.prices.items():
            fake.add_price(
                amount=amounts.get(ref.lookup_key or ref.price_id or "", _FAKE_DEFAULT_AMOUNT),
                interval=interval,
                lookup_key=ref.lookup_key,
                price_id=ref.price_id,
                product=product,
            )


_lock = threading.Lock()
_billing: Billing | None = None


def get_billing() -> Billing:
    """The project's ``Billing``, built from ``settings.BILLINGKIT`` once."""
    global _billing
    built = _billing
    if built is None:
        with _lock:
            if _billing is None:
                _billing = billing_from_settings()
            built = _billing
    return built


def reset_billing() -> None:
    """Forget the built services: the next ``get_billing`` builds new ones (tests)."""
    global _billing
    with _lock:
        _billing = None


def user_id_for(request: HttpRequest) -> str | None:
    """The billing id of the request's user (``USER_ID``, default the authenticated pk)."""
    resolve = _callable(billing_settings(), "USER_ID")
    if resolve is not None:
        found = resolve(request)
        return None if found is None else str(found)
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return str(user.pk)
