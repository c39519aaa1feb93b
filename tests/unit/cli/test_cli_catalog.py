"""``billingkit catalog``: the plans with their live prices, in one Stripe call."""

from __future__ import annotations

import json
from collections.abc import Callable

from click.testing import Result

from billingkit.errors import GatewayServerError

from .cli_support import App, assert_clean_error


def test_the_table_shows_every_plan_and_price_after_one_stripe_call(
    app: App, run: Callable[..., Result]
) -> None:
    app.stripe.reset_calls()
    result = run("catalog")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any("free" in line and "Free" in line for line in lines)
    assert any("month" in line and "19.00 USD / month" in line for line in lines)
    assert any("year" in line and "190.00 USD / year" in line for line in lines)
    assert app.stripe.calls["list_prices"] == 1
    assert app.stripe.total_calls == 1


def test_json_rows_have_stable_keys_and_exact_amounts(app: App, run: Callable[..., Result]) -> None:
    result = run("catalog", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(row["plan"], row["interval"]) for row in rows] == [
        ("free", None),
        ("pro", "month"),
        ("pro", "year"),
    ]
    monthly = rows[1]
    assert list(monthly) == [
        "plan",
        "name",
        "interval",
        "configured",
        "available",
        "price_id",
        "lookup_key",
        "amount",
        "currency",
        "display",
        "stale",
    ]
    assert monthly["amount"] == 1900
    assert monthly["currency"] == "usd"
    assert monthly["lookup_key"] == "pro_monthly"
    assert monthly["configured"] == "lookup_key=pro_monthly"
    assert monthly["price_id"].startswith("price_")
    assert all(row["available"] for row in rows)


def test_an_archived_price_is_flagged_and_exits_1(app: App, run: Callable[..., Result]) -> None:
    yearly = next(p for p in app.stripe.list_prices(lookup_keys=["pro_yearly"]))
    app.stripe.update_price(yearly.id, active=False)
    result = run("catalog", "--json")
    assert result.exit_code == 1, result.output
    rows = {row["interval"]: row for row in json.loads(result.stdout)}
    assert rows["year"]["available"] is False
    assert rows["year"]["price_id"] is None
    assert rows["month"]["available"] is True
    assert "missing at Stripe, archived" in result.stderr

    table = run("catalog")
    assert table.exit_code == 1
    assert "✗ missing or not sellable" in table.stdout


def test_stripe_down_is_a_clean_error_with_exit_3(app: App, run: Callable[..., Result]) -> None:
    app.stripe.fail_next("list_prices", GatewayServerError("boom", retryable=True))
    assert_clean_error(run("catalog"), 3, "could not be loaded", "retry later")
