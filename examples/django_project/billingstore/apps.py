"""Django app configuration of billingstore."""

from __future__ import annotations

from django.apps import AppConfig


class BillingStoreConfig(AppConfig):
    """The app holding billingkit's tables (customers, subscriptions, checkouts, events)."""

    name = "billingstore"
    label = "billingstore"
    verbose_name = "billingkit store"
    default_auto_field = "django.db.models.BigAutoField"
