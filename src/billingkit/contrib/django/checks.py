"""System checks: ``manage.py check`` reports a missing secret or a bad plan configuration.

Registered by the app's ``ready()``; they read ``settings.BILLINGKIT`` and build nothing (no
Stripe client, no database connection).

* ``billingkit.E001``: ``BILLINGKIT`` is missing or not a dict, or has an unknown key;
* ``billingkit.E002``: ``STRIPE_API_KEY`` or ``WEBHOOK_SECRETS`` missing (without
  ``FAKE_STRIPE``), or ``PLANS`` missing;
* ``billingkit.E003``: the plans or options are refused by ``BillingConfig``
  (duplicate keys, unknown free plan, bad price reference, ...);
* ``billingkit.W001``: ``FAKE_STRIPE`` is on while ``DEBUG`` is off;
* ``billingkit.E004``: ``USE_TZ`` is off (billingkit stores aware UTC datetimes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from billingkit._optional import requires_extra
from billingkit.contrib.django.conf import SETTING, billing_settings, config_from_settings
from billingkit.errors import ConfigurationError

with requires_extra("django"):
    from django.apps import AppConfig
    from django.conf import settings
    from django.core.checks import CheckMessage, Error, Warning

__all__ = ["check_settings"]

_HINT = f"See settings.{SETTING} in billingkit's Django guide."


def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """The checks of the module docstring."""
    messages: list[CheckMessage] = []
    if not settings.USE_TZ:
        messages.append(Error("billingkit needs USE_TZ = True", hint=_HINT, id="billingkit.E004"))
    try:
        values = billing_settings()
    except ConfigurationError as exc:
        return [*messages, Error(str(exc), hint=_HINT, id="billingkit.E001")]
    try:
        config_from_settings(values)
    except ConfigurationError as exc:
        missing = str(exc).startswith("set ")
        code = "billingkit.E002" if missing else "billingkit.E003"
        messages.append(Error(str(exc), hint=_HINT, id=code))
    if values.get("FAKE_STRIPE") and not settings.DEBUG:
        messages.append(
            Warning(
                f"settings.{SETTING}['FAKE_STRIPE'] is on with DEBUG off",
                hint="The fake Stripe never charges anyone: use it in development and tests.",
                id="billingkit.W001",
            )
        )
    return messages
