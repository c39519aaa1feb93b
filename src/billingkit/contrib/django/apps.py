"""The Django app of billingkit: ``"billingkit.contrib.django"`` in ``INSTALLED_APPS``."""

from __future__ import annotations

from billingkit._optional import requires_extra

with requires_extra("django"):
    from django.apps import AppConfig

__all__ = ["BillingkitConfig"]


class BillingkitConfig(AppConfig):
    """The app holding billingkit's tables (customers, subscriptions, checkouts, events)."""

    name = "billingkit.contrib.django"
    label = "billingkit"
    verbose_name = "Billing (billingkit)"
    default_auto_field = "django.db.models.BigAutoField"
