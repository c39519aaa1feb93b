"""The demo's URLs."""

from __future__ import annotations

from django.urls import path

from billing_demo import views

app_name = "billing_demo"

urlpatterns = [
    path("", views.pricing, name="pricing"),
    path("login/", views.login, name="login"),
    path("logout/", views.logout, name="logout"),
    path("checkout/", views.start_checkout, name="start_checkout"),
    path("checkout/success/", views.checkout_success, name="checkout_success"),
    path("account/", views.account, name="account"),
    path("account/portal/", views.billing_portal, name="billing_portal"),
    path("account/exports/", views.exports, name="exports"),
    # fake mode only (404 when Stripe keys are configured)
    path("fake-stripe/checkout/<str:session_id>/", views.fake_checkout, name="fake_checkout"),
    path("fake-stripe/portal/", views.fake_portal, name="fake_portal"),
    path("fake-stripe/clock/", views.fake_clock, name="fake_clock"),
]
