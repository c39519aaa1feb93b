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
    path("account/plan/preview/", views.preview_change, name="preview_change"),
    path("account/plan/", views.change_plan, name="change_plan"),
    path("account/plan/undo/", views.undo_change, name="undo_change"),
    path("account/seats/", views.set_seats, name="set_seats"),
    path("account/cancel/", views.cancel, name="cancel"),
    path("account/resume/", views.resume, name="resume"),
    path("account/promotion-code/", views.promotion_code, name="promotion_code"),
    path("account/card/", views.update_card, name="update_card"),
    path("account/usage/", views.record_usage, name="record_usage"),
    # fake mode only (404 when Stripe keys are configured)
    path("fake-stripe/checkout/<str:session_id>/", views.fake_checkout, name="fake_checkout"),
    path("fake-stripe/setup/<str:session_id>/", views.fake_setup, name="fake_setup"),
    path("fake-stripe/portal/", views.fake_portal, name="fake_portal"),
    path("fake-stripe/clock/", views.fake_clock, name="fake_clock"),
]
