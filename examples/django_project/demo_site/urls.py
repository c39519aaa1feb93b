"""Root URLs: the demo's pages, billingkit's webhook and the admin."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("billing_demo.urls")),
    path("", include("billingkit.contrib.django.urls")),  # POST /webhooks/stripe
    path("admin/", admin.site.urls),
]
