"""billingkit.contrib.django on the example project: settings, webhook view, admin, checks,
the decorator, the template filter and ``manage.py billingkit``.

The project is the example's (``tests/examples/conftest.py``), in fake mode: billingkit's
services come from ``settings.BILLINGKIT`` through ``get_billing()``.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.contract.repository_contract import make_subscription

from billingkit.errors import ConfigurationError
from billingkit.testing import build_event, signed_delivery

WEBHOOK = "/webhooks/stripe"


@pytest.fixture
def fresh(django_project: object, clear_billing_tables: Callable[[str], None]) -> Iterator[None]:
    """Empty billing tables and services built anew from settings."""
    from billingkit.contrib.django import reset_billing

    clear_billing_tables("default")
    reset_billing()
    yield
    reset_billing()


def _billing() -> Any:
    from billingkit.contrib.django import get_billing

    return get_billing()


def _ping(event_id: str = "evt_ping_1", secret: str | None = None) -> Any:
    """A signed event of a type billingkit ignores (recorded, answered 200)."""
    event = build_event(
        "ping.test", {"id": "obj_1", "object": "ping"}, created=int(time.time()), event_id=event_id
    )
    return signed_delivery(event, secret or _billing().config.secret_values()[0])


def _subscribe(user_id: str, plan_key: str = "pro") -> None:
    with _billing().repository.unit_of_work() as uow:
        uow.save_subscription(
            make_subscription(
                f"sub_{user_id}", customer_id=f"cus_{user_id}", user_id=user_id, plan_key=plan_key
            )
        )


def _settings(**changes: Any) -> Any:
    """``override_settings`` of ``BILLINGKIT`` with ``changes`` (``None`` drops a key)."""
    from django.conf import settings
    from django.test import override_settings

    values = {**settings.BILLINGKIT, **changes}
    return override_settings(BILLINGKIT={k: v for k, v in values.items() if v is not None})


# --------------------------------------------------------------------------- get_billing


def test_get_billing_is_built_once_and_rebuilt_when_the_setting_changes(fresh: None) -> None:
    from billingkit.contrib.django import get_billing
    from billingkit.contrib.django.repository import DjangoRepository
    from billingkit.testing import FakeStripeGateway

    first = get_billing()
    assert get_billing() is first
    assert isinstance(first.gateway, FakeStripeGateway)
    assert isinstance(first.repository, DjangoRepository)
    assert [plan.key for plan in first.config.plans] == ["free", "pro", "team", "scale"]
    assert first.config.access.past_due_grace_days == 3
    with _settings(FREE_PLAN=None):
        second = get_billing()
        assert second is not first and second.config.free_plan is None
    assert get_billing() is not second


def test_get_billing_builds_one_object_for_concurrent_first_calls(fresh: None) -> None:
    import threading

    from billingkit.contrib.django import get_billing

    seen: list[object] = []
    barrier = threading.Barrier(4)

    def call() -> None:
        barrier.wait()
        seen.append(get_billing())

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 4 and all(found is seen[0] for found in seen)


def test_the_fake_is_seeded_with_the_configured_prices(fresh: None) -> None:
    prices = {plan.key: plan.prices for plan in _billing().catalog.plans()}
    assert prices["pro"]["month"].unit_amount == 1200
    assert prices["team"]["month"].unit_amount == 4900


def test_stripe_keys_give_the_sdk_gateway(fresh: None) -> None:
    from billingkit.adapters.stripe_sdk import StripeSdkGateway

    keys = {"STRIPE_API_KEY": "sk_test_123", "WEBHOOK_SECRETS": "whsec_x", "CONFIGURE": None}
    with _settings(FAKE_STRIPE=False, **keys):
        billing = _billing()
        assert isinstance(billing.gateway, StripeSdkGateway)
        assert billing.config.secret_values() == ["whsec_x"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"FAKE_STRIPE": False, "STRIPE_API_KEY": None}, "set STRIPE_API_KEY, WEBHOOK_SECRETS"),
        ({"PLANS": None}, "set PLANS"),
        ({"COLOUR": "blue"}, "unknown BILLINGKIT key(s): COLOUR"),
        ({"FREE_PLAN": "gold"}, "gold"),
        ({"CONFIGURE": "billing_demo.no_such_module.configure"}, "CONFIGURE"),
        ({"USER_ID": 42}, "USER_ID"),
        ({"OPTIONS": {"plans": []}}, "settings.BILLINGKIT['OPTIONS']: "),
        ({"OPTIONS": {"colour": "blue"}}, "colour"),
    ],
)
def test_bad_settings_are_configuration_errors(
    fresh: None, changes: dict[str, Any], message: str
) -> None:
    from django.test import RequestFactory

    from billingkit.contrib.django.conf import user_id_for

    with _settings(**changes), pytest.raises(ConfigurationError, match=re.escape(message)):
        _billing()
        user_id_for(RequestFactory().get("/"))


def test_a_missing_or_wrong_setting_is_a_configuration_error(fresh: None) -> None:
    from django.test import override_settings

    with override_settings(BILLINGKIT=None), pytest.raises(ConfigurationError, match="set BILL"):
        _billing()
    with override_settings(BILLINGKIT=["PLANS"]), pytest.raises(ConfigurationError, match="dict"):
        _billing()


# --------------------------------------------------------------------------- webhook view


def test_the_webhook_view_records_a_signed_event_with_csrf_enforced(fresh: None) -> None:
    from django.test import Client

    delivery = _ping()
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        WEBHOOK,
        data=delivery.payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=delivery.signature,
    )
    assert response.status_code == 200
    assert json.loads(response.content)["outcome"] == "ignored"
    with _billing().repository.unit_of_work() as uow:
        stored = uow.get_event("evt_ping_1")
    assert stored is not None and stored.payload == delivery.payload  # the raw bytes


def test_the_webhook_view_answers_400_to_a_bad_signature_and_405_to_get(fresh: None) -> None:
    from django.test import Client

    client = Client()
    delivery = _ping(secret="whsec_someone_else")
    response = client.post(
        WEBHOOK,
        data=delivery.payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=delivery.signature,
    )
    assert response.status_code == 400
    assert client.get(WEBHOOK).status_code == 405
    with _billing().repository.unit_of_work() as uow:
        assert uow.get_event("evt_ping_1") is None


class _Unreadable(io.RawIOBase):
    """A request body stream that fails the test if the view reads it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise AssertionError("the body was read")


def test_a_declared_oversized_body_is_refused_before_reading(fresh: None) -> None:
    from django.test import RequestFactory

    from billingkit.contrib.django.views import stripe_webhook

    cap = _billing().config.webhook_max_body_bytes
    request = RequestFactory().post(WEBHOOK, data=b"{}", content_type="application/json")
    request.META["CONTENT_LENGTH"] = str(cap + 1)
    request.META["wsgi.input"] = _Unreadable()
    request._stream = _Unreadable()  # type: ignore[assignment]
    response = stripe_webhook(request)
    assert response.status_code == 400
    assert response["Connection"] == "close"
    assert json.loads(response.content) == {"error": f"body larger than {cap} bytes"}


def test_a_body_passing_the_cap_while_read_is_refused(fresh: None) -> None:
    from django.test import RequestFactory

    from billingkit.contrib.django.views import stripe_webhook

    cap = _billing().config.webhook_max_body_bytes
    request = RequestFactory().post(WEBHOOK, data=b"x" * (cap + 10), content_type="text/plain")
    del request.META["CONTENT_LENGTH"]  # e.g. chunked: the size is known only by reading
    read: list[int] = []
    original = request.read

    def tracking_read(size: int | None = None) -> bytes:
        chunk = original(size)
        read.append(len(chunk))
        return chunk

    request.read = tracking_read  # type: ignore[method-assign]
    response = stripe_webhook(request)
    assert response.status_code == 400
    assert sum(read) == cap + 1  # stopped one byte past the cap


# --------------------------------------------------------------------------- decorator, tags


def _by_query(request: Any) -> str | None:
    found: str | None = request.GET.get("user")
    return found


def test_requires_feature_lets_only_users_with_the_feature_in(fresh: None) -> None:
    from django.core.exceptions import PermissionDenied
    from django.http import HttpRequest, HttpResponse
    from django.test import RequestFactory

    from billingkit.contrib.django.decorators import requires_feature

    @requires_feature("exports")
    def export(request: HttpRequest) -> HttpResponse:
        return HttpResponse("csv")

    factory = RequestFactory()
    with _settings(USER_ID="tests.examples.test_django_contrib._by_query"):
        _subscribe("ann")
        assert export(factory.get("/?user=ann")).content == b"csv"
        assert export(factory.get("/")).status_code == 401
        with pytest.raises(PermissionDenied, match="exports"):
            export(factory.get("/?user=bob"))  # free plan

        def custom(request: HttpRequest, feature: str, details: Any) -> HttpResponse:
            return HttpResponse(f"{feature}:{details.plan.key}", status=402)

        guarded = requires_feature("sso", denied=custom)(export)
        answer = guarded(factory.get("/?user=ann"))
        assert (answer.status_code, answer.content) == (402, b"sso:pro")


def test_the_default_user_id_is_the_authenticated_users_pk(fresh: None) -> None:
    from django.contrib.auth.models import AnonymousUser, User
    from django.test import RequestFactory

    from billingkit.contrib.django.conf import user_id_for

    request = RequestFactory().get("/")
    with _settings(USER_ID=None):
        assert user_id_for(request) is None
        request.user = AnonymousUser()
        assert user_id_for(request) is None
        request.user = User(pk=7, username="ann")
        assert user_id_for(request) == "7"


def test_the_template_filter_and_tag(fresh: None) -> None:
    from django.contrib.auth.models import AnonymousUser, User
    from django.template import Context, Template
    from django.test import RequestFactory

    template = Template(
        '{% load billingkit %}{% if who|has_feature:"exports" %}yes{% else %}no{% endif %}'
        "{% billing_details request as details %}/{{ details.plan.key|default:'-' }}"
    )
    factory = RequestFactory()
    with _settings(USER_ID="tests.examples.test_django_contrib._by_query"):
        _subscribe("7")
        ann = factory.get("/?user=7")

        def render(who: object, request: Any = ann) -> str:
            return template.render(Context({"who": who, "request": request}))

        assert render(ann) == "yes/pro"
        assert render("7") == "yes/pro"
        assert render(User(pk=7, username="ann")) == "yes/pro"
        assert render(factory.get("/?user=bob"), factory.get("/?user=bob")) == "no/free"
        assert render(AnonymousUser(), factory.get("/")) == "no/-"
        assert render("") == "no/pro"
        assert render(None) == "no/pro"


# --------------------------------------------------------------------------- checks


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        (
            {"FAKE_STRIPE": False, "WEBHOOK_SECRETS": None, "STRIPE_API_KEY": "sk_x"},
            "billingkit.E002",
        ),
        (
            {"PLANS": [{"key": "pro", "name": "Pro"}, {"key": "pro", "name": "Pro"}]},
            "billingkit.E003",
        ),
        ({"FREE_PLAN": "gold"}, "billingkit.E003"),
        ({"SECRET": "x"}, "billingkit.E001"),
    ],
)
def test_manage_py_check_reports_bad_settings(
    fresh: None, changes: dict[str, Any], code: str
) -> None:
    from django.core.checks import run_checks
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    assert [m for m in run_checks() if m.id and m.id.startswith("billingkit.")] == []
    with _settings(**changes):
        found = [m.id for m in run_checks() if m.id and m.id.startswith("billingkit.")]
        assert found == [code]
        with pytest.raises(SystemCheckError, match=code):
            call_command("check")


def test_checks_warn_about_the_fake_without_debug_and_need_use_tz(fresh: None) -> None:
    from django.core.checks import run_checks
    from django.test import override_settings

    def ids() -> list[str]:
        return [m.id for m in run_checks() if m.id and m.id.startswith("billingkit.")]

    with override_settings(DEBUG=False):
        assert ids() == ["billingkit.W001"]
    with override_settings(USE_TZ=False):
        assert ids() == ["billingkit.E004"]
    with override_settings(BILLINGKIT=None):
        assert ids() == ["billingkit.E001"]


# --------------------------------------------------------------------------- admin


@pytest.fixture
def admin_client(fresh: None) -> Any:
    from django.contrib.auth.models import User
    from django.test import Client

    User.objects.filter(username="admin").delete()
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def _post_ping(event_id: str) -> None:
    from django.test import Client

    delivery = _ping(event_id)
    response = Client().post(
        WEBHOOK,
        data=delivery.payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=delivery.signature,
    )
    assert response.status_code == 200


def _failed_ping(event_id: str, payload: bytes | None = None) -> None:
    """Record ``event_id`` in the ledger as failed (as a crashed hook leaves it)."""
    from datetime import datetime, timezone

    from billingkit.domain import EventRecord

    now = datetime.now(timezone.utc)
    body = _ping(event_id).payload if payload is None else payload
    record = EventRecord(id=event_id, type="ping.test", created=now, received_at=now, payload=body)
    with _billing().repository.unit_of_work() as uow:
        uow.claim_event(record)
        uow.mark_event_failed(record, "boom")


def test_the_admin_ledger_filters_shows_the_payload_and_replays(admin_client: Any) -> None:
    _failed_ping("evt_a")
    _post_ping("evt_b")
    base = "/admin/billingkit/storedevent/"
    failed = admin_client.get(base, {"status__exact": "failed", "type": "ping.test"})
    assert failed.status_code == 200
    assert b"evt_a" in failed.content and b"evt_b" not in failed.content
    ignored = admin_client.get(base, {"status__exact": "ignored"}).content
    assert b"evt_b" in ignored and b"evt_a" not in ignored
    page = admin_client.get(f"{base}evt_a/change/")
    assert page.status_code == 200
    assert b"&quot;type&quot;: &quot;ping.test&quot;" in page.content  # indented JSON
    assert admin_client.get(f"{base}add/").status_code == 403
    assert admin_client.post(f"{base}evt_a/delete/").status_code == 403
    answer = admin_client.post(
        base, {"action": "replay", "_selected_action": ["evt_a", "evt_b"]}, follow=True
    )
    assert answer.status_code == 200
    messages = re.findall(r'<li class="info">(.*?)</li>', answer.content.decode())
    # Django's admin capitalises messages; an event already handled is not applied twice
    assert sorted(messages) == ["Evt_a: ignored", "Evt_b: duplicate"]
    with _billing().repository.unit_of_work() as uow:
        replayed = uow.get_event("evt_a")
    assert replayed is not None and replayed.status.value == "ignored"


def test_the_admin_shows_a_non_json_payload_as_text_and_reports_a_failed_replay(
    admin_client: Any,
) -> None:
    import html

    _failed_ping("evt_garbled", payload=b"<not json>")
    base = "/admin/billingkit/storedevent/"
    page = admin_client.get(f"{base}evt_garbled/change/")
    assert page.status_code == 200
    assert "<pre" in page.content.decode() and "&lt;not json&gt;" in page.content.decode()
    assert "evt_garbled (ping.test)" in html.unescape(page.content.decode())  # the title
    answer = admin_client.post(
        base, {"action": "replay", "_selected_action": ["evt_garbled"]}, follow=True
    )
    errors = re.findall(r'<li class="error">(.*?)</li>', answer.content.decode())
    assert len(errors) == 1 and errors[0].startswith("Evt_garbled: ")


def test_the_admin_shows_subscriptions_and_customers_read_only(admin_client: Any) -> None:
    from billingkit.domain import CustomerLink

    _subscribe("ann")
    with _billing().repository.unit_of_work() as uow:
        uow.link_customer(CustomerLink(user_id="ann", customer_id="cus_ann"))
    subscriptions = admin_client.get("/admin/billingkit/storedsubscription/")
    assert b"sub_ann" in subscriptions.content
    customers = admin_client.get("/admin/billingkit/storedcustomer/", {"q": "ann"})
    assert b"cus_ann" in customers.content
    change = admin_client.get("/admin/billingkit/storedsubscription/sub_ann/change/")
    assert change.status_code == 200 and b'name="_save"' not in change.content
    assert b"sub_ann (active)" in change.content
    customer = admin_client.get("/admin/billingkit/storedcustomer/cus_ann/change/")
    assert b"ann (cus_ann)" in customer.content


# --------------------------------------------------------------------------- manage.py billingkit


def test_manage_py_billingkit_runs_the_cli_on_the_apps_services(
    fresh: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from django.core.management import call_command

    _post_ping("evt_cli")
    call_command("billingkit", "events", "list", "--json")
    listed = json.loads(capsys.readouterr().out)
    assert [event["id"] for event in listed] == ["evt_cli"]
    call_command("billingkit", "catalog", "--json")
    assert "pro" in capsys.readouterr().out


def test_manage_py_billingkit_reports_failures_and_passes_help_through(
    fresh: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from django.core.management import CommandError, call_command, execute_from_command_line

    with pytest.raises(CommandError, match="exited with status"):
        call_command("billingkit", "events", "show", "evt_missing")
    with pytest.raises(SystemExit) as done:
        execute_from_command_line(["manage.py", "billingkit", "--help"])
    assert done.value.code == 0
    assert "Usage: manage.py billingkit" in capsys.readouterr().out
    import billingkit.contrib.django._cli_app as cli_app

    with pytest.raises(AttributeError, match="no attribute 'billings'"):
        cli_app.billings  # noqa: B018


@pytest.mark.parametrize(
    "module",
    [
        "billingkit.contrib.django",
        "billingkit.contrib.django.views",
        "billingkit.contrib.django.admin",
    ],
)
def test_without_django_the_app_names_the_extra(module: str) -> None:
    import subprocess
    import sys

    code = f"import sys; sys.modules['django'] = None; import {module}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert "MissingExtraError" in done.stderr
    assert 'pip install "billingkit[django]"' in done.stderr
