"""``path("", include("billingkit.contrib.django.urls"))``: ``POST webhooks/stripe``.

The URL is named ``billingkit:stripe_webhook``. Mount it under a prefix of your choice
(``path("billing/", include(...))``) and give Stripe the full URL.
"""

from __future__ import annotations

from billingkit._optional import requires_extra
from billingkit.contrib.django.views import stripe_webhook

with requires_extra("django"):
    from django.urls import URLPattern, path

__all__ = ["app_name", "urlpatterns"]

app_name = "billingkit"

urlpatterns: list[URLPattern] = [
    path("webhooks/stripe", stripe_webhook, name="stripe_webhook"),
]
