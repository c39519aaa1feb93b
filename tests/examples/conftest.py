"""Fixtures for the example apps' tests (examples/).

Django (examples/django_project): settings can be configured only once per process, so the
``django_project`` fixture configures them once, lazily (only when a Django test runs), from
the demo's own settings module with three changes: the SQLite database is a file in a
temporary directory, Stripe is the fake (``BILLINGKIT["FAKE_STRIPE"]``, no keys), and the
fake's events are queued for the test to deliver through the test client. It also declares a
``postgres`` database alias whose database is created only by ``django_postgres``.

Flask (examples/flask_app): ``make_flask_app`` builds apps from ``create_app`` on the fake
Stripe with SQLite in the test's temporary directory, and closes them afterwards.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

DJANGO_PROJECT = Path(__file__).resolve().parents[2] / "examples" / "django_project"


# --------------------------------------------------------------------------- Django


@pytest.fixture(scope="session")
def django_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Configure Django for this process (once) and migrate the SQLite test database.

    Returns the project directory (on ``sys.path`` from then on).
    """
    import django
    from django.conf import settings
    from django.core.management import call_command
    from tests.integration.databases import admin_url

    if settings.configured:
        if "postgres" not in settings.DATABASES:  # configured by something else
            pytest.fail("Django was configured before the django_project fixture ran")
        return DJANGO_PROJECT
    if str(DJANGO_PROJECT) not in sys.path:
        sys.path.insert(0, str(DJANGO_PROJECT))
    from demo_site import settings as demo

    values = {name: getattr(demo, name) for name in dir(demo) if name.isupper()}
    sqlite_file = tmp_path_factory.mktemp("django") / "billing_demo.sqlite3"
    server = admin_url("postgres")
    values["DATABASES"] = {
        "default": {**demo.DATABASES["default"], "NAME": str(sqlite_file)},
        # Its database is created (and NAME pointed at it) by django_postgres only.
        "postgres": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": server.database or "postgres",
            "HOST": server.host or "127.0.0.1",
            "PORT": str(server.port or 5432),
            "USER": server.username or "postgres",
            "PASSWORD": server.password or "",
            "OPTIONS": {"connect_timeout": 5},
        },
    }
    values["BILLINGKIT"] = {
        **demo.BILLINGKIT,
        "STRIPE_API_KEY": "",
        "WEBHOOK_SECRETS": [],
        "FAKE_STRIPE": True,
    }
    values["BILLING_DEMO_FAKE_DELIVERY"] = "queue"
    settings.configure(**values)
    django.setup()
    call_command("migrate", verbosity=0)
    return DJANGO_PROJECT


@pytest.fixture(scope="session")
def django_postgres(django_project: Path) -> Iterator[str]:
    """The ``postgres`` alias on a scratch PostgreSQL database, migrated; dropped after.

    Skipped when the server is unreachable (a failure with BILLINGKIT_REQUIRE_SERVICES=1).
    """
    from django.core.management import call_command
    from django.db import connections
    from tests.integration.databases import scratch_database

    with scratch_database("postgres") as url:
        connection = connections["postgres"]
        previous = connection.settings_dict["NAME"]
        # The settings dict is shared by this alias's connections on every thread.
        connection.settings_dict["NAME"] = url.database
        try:
            call_command("migrate", database="postgres", verbosity=0)
            yield "postgres"
        finally:
            connections.close_all()
            connection.settings_dict["NAME"] = previous


@pytest.fixture
def clear_billing_tables(django_project: Path) -> Callable[[str], None]:
    """A function deleting every row of billingkit's tables on a database alias."""
    from django.apps import apps

    def clear(alias: str) -> None:
        for model in apps.get_app_config("billingkit").get_models():
            model.objects.using(alias).all().delete()

    return clear


# --------------------------------------------------------------------------- Flask


@pytest.fixture
def make_flask_app(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Build examples/flask_app apps on the fake Stripe, SQLite under ``tmp_path``.

    Call it with setting overrides (e.g. ``FAKE_DELIVERY="http"``); every app built is
    closed after the test.
    """
    from examples.flask_app import create_app
    from examples.flask_app.walkthrough import fake_mode_settings

    built: list[Any] = []

    def make(**overrides: Any) -> Any:
        folder = tmp_path / f"flask{len(built)}"
        folder.mkdir()
        app = create_app(fake_mode_settings(folder, **overrides))
        built.append(app)
        return app

    yield make
    from billingkit.contrib.flask import BillingKit

    for app in built:
        BillingKit.billing_for(app).close()
