"""``billingkit doctor``: the webhook-endpoint checks and the API key's mode."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import Result

from billingkit import Billing, InMemoryRepository
from billingkit.errors import GatewayAuthenticationError
from billingkit.services.webhooks.registry import HANDLERS
from billingkit.testing import FakeStripeGateway

from .cli_support import SECRET, START, build_app, install, make_config


def _checks(result: Result) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def _failing(result: Result) -> dict[str, list[str]]:
    failing: dict[str, list[str]] = {}
    for row in _checks(result):
        if not row["ok"]:
            failing.setdefault(str(row["check"]), []).append(str(row["detail"]))
    return failing


def test_each_endpoint_problem_is_named_with_its_fix(
    monkeypatch: pytest.MonkeyPatch, run: Callable[..., Result]
) -> None:
    app = build_app()
    stripe = app.stripe
    every_but_two = sorted(set(HANDLERS) - {"invoice.paid", "customer.subscription.deleted"})
    stripe.add_webhook_endpoint("https://app.example/partial", enabled_events=every_but_two)
    stripe.add_webhook_endpoint("http://app.example/plain", status="disabled")
    stripe.add_webhook_endpoint("https://app.example/old", api_version="2015-10-16")
    stripe.add_webhook_endpoint("https://app.example/odd", api_version="yesterday")
    stripe.add_webhook_endpoint("https://app.example/listed", enabled_events=sorted(HANDLERS))
    install(monkeypatch, app.billing)

    result = run("doctor", "--json")
    assert result.exit_code == 1, result.output
    failing = _failing(result)
    assert set(failing) == {
        "webhook endpoint we_fake0002",
        "webhook endpoint we_fake0003",
        "webhook endpoint we_fake0004",
        "webhook endpoint we_fake0005",
    }
    partial = failing["webhook endpoint we_fake0002"]
    assert partial == [
        "https://app.example/partial: does not receive 2 event type(s) billingkit handles: "
        "customer.subscription.deleted, invoice.paid"
    ]
    plain = failing["webhook endpoint we_fake0003"]
    assert [detail.split(": ", 1)[1] for detail in plain] == [
        "disabled",
        "not on https (http://app.example/plain)",
    ]
    assert "2015-10-16 is not one billingkit reads" in failing["webhook endpoint we_fake0004"][0]
    assert "yesterday is not one billingkit reads" in failing["webhook endpoint we_fake0005"][0]
    passing = {str(row["check"]) for row in _checks(result) if row["ok"]}
    assert {"webhook endpoint we_fake0001", "webhook endpoint we_fake0006"} <= passing
    assert all(row["fix"] for row in _checks(result) if not row["ok"])
    assert stripe.calls["list_webhook_endpoints"] == 1

    text = run("doctor")
    assert "✗ webhook endpoint we_fake0003: http://app.example/plain: disabled" in text.stdout


def test_endpoints_are_listed_page_by_page(
    monkeypatch: pytest.MonkeyPatch, run: Callable[..., Result]
) -> None:
    app = build_app()
    for number in range(150):
        app.stripe.add_webhook_endpoint(f"https://app.example/hook/{number}")
    install(monkeypatch, app.billing)
    result = run("doctor", "--json")
    assert result.exit_code == 0, result.output
    assert (
        sum(1 for row in _checks(result) if str(row["check"]).startswith("webhook endpoint "))
        == 151
    )
    assert app.stripe.calls["list_webhook_endpoints"] == 2


def test_no_endpoint_is_a_problem(
    monkeypatch: pytest.MonkeyPatch, run: Callable[..., Result]
) -> None:
    stripe = FakeStripeGateway(webhook_secret=SECRET, start=START)
    stripe.add_price(amount=1900, interval="month", lookup_key="pro_monthly")
    stripe.add_price(amount=19000, interval="year", lookup_key="pro_yearly")
    install(
        monkeypatch, Billing.build(make_config(), stripe, InMemoryRepository(), clock=stripe.now)
    )
    result = run("doctor", "--json")
    assert result.exit_code == 1
    assert _failing(result) == {"webhook endpoints": ["no webhook endpoint in this Stripe account"]}
    mode = next(row for row in _checks(result) if row["check"] == "API key mode")
    assert mode["ok"] is True
    assert "nothing returned" in str(mode["detail"])


def test_a_key_that_cannot_list_endpoints_is_a_problem(
    monkeypatch: pytest.MonkeyPatch, run: Callable[..., Result]
) -> None:
    app = build_app()
    install(monkeypatch, app.billing)
    app.stripe.fail_next(
        "list_webhook_endpoints", GatewayAuthenticationError("rk_... lacks webhook_endpoint_read")
    )
    result = run("doctor", "--json")
    assert result.exit_code == 1
    assert list(_failing(result)) == ["webhook endpoints"]
    row = next(r for r in _checks(result) if r["check"] == "webhook endpoints")
    assert "Webhook Endpoints: read" in str(row["fix"])


def test_a_live_key_with_a_test_config_is_a_problem(
    monkeypatch: pytest.MonkeyPatch, run: Callable[..., Result]
) -> None:
    stripe = FakeStripeGateway(webhook_secret=SECRET, start=START, livemode=True)
    stripe.add_price(amount=1900, interval="month", lookup_key="pro_monthly")
    stripe.add_price(amount=19000, interval="year", lookup_key="pro_yearly")
    stripe.add_webhook_endpoint("https://app.example/billing/webhook")
    install(
        monkeypatch, Billing.build(make_config(), stripe, InMemoryRepository(), clock=stripe.now)
    )
    result = run("doctor", "--json")
    assert result.exit_code == 1
    mode = _failing(result)["API key mode"]
    assert mode == ["the API key is a live-mode key; the config's livemode is False"]
