"""``billingkit doctor``: every check passes on a healthy app; each problem is named with a fix."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from billingkit import Billing, BillingConfig, PlanDefinition
from billingkit.adapters.sqlalchemy import SqlAlchemyRepository
from billingkit.errors import GatewayAuthenticationError

from .cli_support import App, build_app, install


def _checks(result: Result) -> dict[str, dict[str, object]]:
    return {row["check"]: row for row in json.loads(result.stdout)}


def test_a_healthy_app_passes_every_check_with_two_stripe_calls(
    app: App, run: Callable[..., Result]
) -> None:
    app.stripe.reset_calls()
    result = run("doctor", "--json")
    assert result.exit_code == 0, result.output
    checks = _checks(result)
    assert list(checks) == [
        "webhook secret #1",
        "database",
        "price pro/month",
        "price pro/year",
        "webhook endpoint we_fake0001",
        "API key mode",
    ]
    assert all(check["ok"] and check["fix"] is None for check in checks.values())
    assert app.stripe.calls["list_prices"] == 1
    assert app.stripe.calls["list_webhook_endpoints"] == 1
    assert app.stripe.total_calls == 2

    text = run("doctor")
    assert text.exit_code == 0
    assert "✓ price pro/month:" in text.stdout
    assert text.stdout.rstrip().endswith("all checks passed")


def test_each_problem_is_a_cross_with_its_fix_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, run: Callable[..., Result]
) -> None:
    base = build_app()
    stripe = base.stripe
    yearly = stripe.list_prices(lookup_keys=["pro_yearly"])[0]
    stripe.update_price(yearly.id, active=False)
    stripe.add_price(amount=900, interval="year", lookup_key="lite_monthly", product_name="Lite")
    stripe.add_price(amount=800, currency="eur", interval="month", lookup_key="team_eur")
    stripe.add_price(amount=8000, currency="usd", interval="year", lookup_key="team_usd")
    config = BillingConfig(
        plans=[
            PlanDefinition(
                key="pro", name="Pro", prices={"month": "pro_monthly", "year": "pro_yearly"}
            ),
            PlanDefinition(key="lite", name="Lite", order=1, prices={"month": "lite_monthly"}),
            PlanDefinition(
                key="team", name="Team", order=2, prices={"month": "team_eur", "year": "team_usd"}
            ),
            PlanDefinition(key="gone", name="Gone", order=3, prices={"month": "price_nowhere"}),
        ],
        webhook_secrets=["sk_test_not_a_webhook_secret"],
    )
    install(monkeypatch, Billing.build(config, stripe, base.repository, clock=stripe.now))
    result = run("doctor", "--json")
    assert result.exit_code == 1, result.output
    checks = _checks(result)
    failing = {name for name, check in checks.items() if not check["ok"]}
    assert failing == {
        "webhook secret #1",
        "price pro/year",
        "price lite/month",
        "plan team",
        "price gone/month",
    }
    assert "archived" in str(checks["price pro/year"]["detail"])
    assert "bills year, configured as month" in str(checks["price lite/month"]["detail"])
    assert "eur, usd" in str(checks["plan team"]["detail"])
    assert "price_nowhere not found" in str(checks["price gone/month"]["detail"])
    assert all(checks[name]["fix"] for name in failing)
    assert "sk_test_not_a_webhook_secret" not in result.stdout  # secrets never printed

    text = run("doctor")
    assert text.exit_code == 1
    assert "✗ plan team: prices in several currencies" in text.stdout
    assert "    fix: " in text.stdout
    assert "5 problem(s) found" in text.stdout


def test_stripe_refusing_the_key_is_a_failed_check(app: App, run: Callable[..., Result]) -> None:
    app.stripe.fail_next("list_prices", GatewayAuthenticationError("Invalid API Key provided"))
    result = run("doctor", "--json")
    assert result.exit_code == 1
    stripe = _checks(result)["stripe"]
    assert stripe["ok"] is False
    assert "Invalid API Key" in str(stripe["detail"])
    assert "API key" in str(stripe["fix"])


def test_an_unmigrated_sql_database_asks_for_migrate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, run: Callable[..., Result]
) -> None:
    base = build_app()
    repository = SqlAlchemyRepository(f"sqlite:///{tmp_path / 'billing.db'}")
    install(monkeypatch, Billing.build(base.billing.config, base.stripe, repository))
    try:
        before = _checks(run("doctor", "--json"))["database"]
        assert before["ok"] is False
        assert before["fix"] == "run: billingkit migrate"
        assert run("migrate").exit_code == 0
        after = run("doctor", "--json")
        assert after.exit_code == 0, after.output
        assert "at head" in str(_checks(after)["database"]["detail"])
    finally:
        repository.close()
