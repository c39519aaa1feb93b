"""Django app configuration of billing_demo."""

from __future__ import annotations

from django.apps import AppConfig


class BillingDemoConfig(AppConfig):
    """The demo's views and templates; billingkit's tables are billingkit.contrib.django's."""

    name = "billing_demo"
    verbose_name = "billingkit demo"
