"""Root URLs: everything lives in the billing_demo app."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("", include("billing_demo.urls"))]
