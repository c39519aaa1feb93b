"""Django glue: a reusable app with billingkit's tables, webhook view, admin and commands.

Install with ``pip install "billingkit[django]"``, then::

    # settings.py
    INSTALLED_APPS = [..., "billingkit.contrib.django"]
    USE_TZ = True
    BILLINGKIT = {
        "PLANS": [...],
        "STRIPE_API_KEY": os.environ["STRIPE_API_KEY"],
        "WEBHOOK_SECRETS": [os.environ["STRIPE_WEBHOOK_SECRET"]],
    }

    # urls.py
    urlpatterns = [..., path("billing/", include("billingkit.contrib.django.urls"))]

    # views.py
    from billingkit.contrib.django import get_billing
    from billingkit.contrib.django.decorators import requires_feature

    @requires_feature("exports")
    def export(request): ...

``manage.py migrate`` creates the tables (app label ``billingkit``);
``get_billing`` builds the services from ``settings.BILLINGKIT`` on first use (see
``billingkit.contrib.django.conf``); ``POST billing/webhooks/stripe`` is Stripe's endpoint
(``views``); the admin shows the event ledger (with a
"replay" action), subscriptions and customers; ``manage.py check`` reports a missing secret
or a bad plan configuration; ``manage.py billingkit ...`` is the ``billingkit`` command;
``{% load billingkit %}`` gives the ``has_feature`` filter.

The repository, ``DjangoRepository``, passes
billingkit's Repository contract suite on SQLite and PostgreSQL.

Only this package of billingkit imports Django.
"""

from __future__ import annotations

from billingkit.contrib.django.conf import get_billing, reset_billing

__all__ = ["get_billing", "reset_billing"]
