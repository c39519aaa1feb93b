"""The Django app of billingkit: ``"billingkit.contrib.django"`` in ``INSTALLED_APPS``."""

from __future__ import annotations

from typing import Any

from billingkit._optional import requires_extra

with requires_extra("django"):
    from django.apps import AppConfig
    from django.core import checks
    from django.core.signals import setting_changed

__all__ = ["BillingkitConfig"]


def _forget_billing(*, setting: str, **kwargs: Any) -> None:
    from billingkit.contrib.django.conf import SETTING, reset_billing

    if setting == SETTING:
        reset_billing()


class BillingkitConfig(AppConfig):
    """billingkit's tables (customers, subscriptions, checkouts, events), admin and checks.

    App label ``billingkit``: ``manage.py migrate billingkit``, ``billingkit_*`` tables.
    """

    name = "billingkit.contrib.django"
    label = "billingkit"
    verbose_name = "Billing (billingkit)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks; rebuild the services when ``BILLINGKIT`` changes."""
        from billingkit.contrib.django.checks import check_settings

        checks.register(check_settings)
        setting_changed.connect(_forget_billing, dispatch_uid="billingkit.reset_billing")
