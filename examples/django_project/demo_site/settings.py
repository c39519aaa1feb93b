"""Settings of the billingkit Django demo.

Environment variables (all optional):

* ``STRIPE_API_KEY`` and ``STRIPE_WEBHOOK_SECRET``: set both to run against Stripe (test
  mode); without them the demo runs on billingkit's ``FakeStripeGateway``.
* ``BILLING_DEMO_DB``: path of the SQLite database (default ``db.sqlite3`` next to
  ``manage.py``).
* ``DJANGO_SECRET_KEY``, ``DJANGO_DEBUG`` (``1``/``0``), ``DJANGO_ALLOWED_HOSTS`` (comma
  separated).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-billingkit-demo-only")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",  # /admin/: billingkit's event ledger, subscriptions, customers
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "billingkit.contrib.django",  # billingkit's tables, webhook view, admin, checks, command
    "billing_demo",  # the pages: pricing, checkout, account
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_site.urls"
WSGI_APPLICATION = "demo_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# The demo user lives in a signed-cookie session (a name, no password); Django's auth is
# there for the admin only (`python manage.py createsuperuser`).
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

DATABASES: dict[str, dict[str, Any]] = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BILLING_DEMO_DB", str(BASE_DIR / "db.sqlite3")),
        "OPTIONS": {
            # Every transaction takes the write lock when it begins; others wait up to
            # `timeout` seconds instead of failing on a lock upgrade (webhooks and pages
            # run on several threads under runserver). WAL keeps readers unblocked.
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        },
    }
}

USE_TZ = True  # required by billingkit.contrib.django: billingkit stores aware UTC datetimes
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"billingkit": {"handlers": ["console"], "level": "INFO"}},
}

# ----------------------------------------------------------------------------- billing

STRIPE_API_KEY = os.environ.get("STRIPE_API_KEY", "")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")

#: The plans for sale. Prices are Stripe lookup keys: create prices with these lookup keys in
#: your Stripe test account (see README.md); the fake Stripe seeds them itself.
BILLING_PLANS: list[dict[str, Any]] = [
    {
        "key": "free",
        "name": "Free",
        "description": "Try it out.",
        "order": 0,
        "features": ["projects"],
        "limits": {"projects": 1},
    },
    {
        "key": "pro",
        "name": "Pro",
        "description": "For professionals.",
        "order": 1,
        "prices": {"month": "demo_pro_monthly", "year": "demo_pro_yearly"},
        "features": ["projects", "exports", "priority_support"],
        "limits": {"projects": 20},
    },
    {
        "key": "team",
        "name": "Team",
        "description": "For teams.",
        "order": 2,
        "prices": {"month": "demo_team_monthly"},
        "features": ["projects", "exports", "priority_support", "sso"],
        "limits": {"projects": None},
    },
    {
        # Metered: a recurring price with usage_type=metered on a Billing Meter whose event
        # name is "api_calls" (BILLING_DEMO_METERED_PLANS); Stripe bills the period's usage.
        "key": "scale",
        "name": "Scale",
        "description": "Pay for the API calls you make.",
        "order": 3,
        "prices": {"month": "demo_scale_metered"},
        "features": ["projects", "exports", "api"],
        "limits": {"projects": None},
    },
]

#: The metered plans: plan key -> the meter event name its price bills. The account page
#: shows the usage this period (``UsageService.usage``) for these plans.
BILLING_DEMO_METERED_PLANS: dict[str, str] = {"scale": "api_calls"}

#: Fake mode only: promotion codes the fake Stripe knows (code -> percent off, once).
BILLING_DEMO_FAKE_PROMOTION_CODES: dict[str, float] = {"WELCOME20": 20}

#: billingkit's settings (billingkit.contrib.django). Without Stripe keys the demo runs on
#: billingkit's fake Stripe, seeded with FAKE_PRICES (USD cents per lookup key).
BILLINGKIT: dict[str, Any] = {
    "PLANS": BILLING_PLANS,
    "FREE_PLAN": "free",
    "STRIPE_API_KEY": STRIPE_API_KEY,
    "WEBHOOK_SECRETS": [STRIPE_WEBHOOK_SECRET],
    "FAKE_STRIPE": not (STRIPE_API_KEY or STRIPE_WEBHOOK_SECRET),
    "FAKE_PRICES": {
        "demo_pro_monthly": 1200,
        "demo_pro_yearly": 12000,
        "demo_team_monthly": 4900,
        "demo_scale_metered": 2,
    },
    # a past_due subscription keeps access this many days after the failed renewal
    "OPTIONS": {"access": {"past_due_grace_days": 3}},
    "CONFIGURE": "billing_demo.billing.configure",  # registers the demo's hooks
    "USER_ID": "billing_demo.views.billing_user_id",  # the demo's signed-in name
}

#: Fake mode only: how "pay" on the fake checkout page delivers the fake's signed events.
#: "http" POSTs them to this app's own /webhooks/stripe (needs a threaded server such as
#: runserver); "queue" leaves them at the fake for the caller to deliver (the tests do).
BILLING_DEMO_FAKE_DELIVERY = os.environ.get("BILLING_DEMO_FAKE_DELIVERY", "http")
