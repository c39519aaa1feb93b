"""``billingkit catalog``: the app's plans with their live Stripe prices."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from billingkit.cli._app import AppLocator
from billingkit.cli._common import (
    EXIT_CODES_HELP,
    ExitCode,
    echo_json,
    exit_with,
    stdout_console,
)
from billingkit.domain import Interval, Plan, PlanDefinition, Price, PriceRef

__all__ = ["catalog", "catalog_rows"]


def _ref_text(ref: PriceRef) -> str:
    return ref.price_id if ref.price_id is not None else f"lookup_key={ref.lookup_key}"


def catalog_rows(definitions: list[PlanDefinition], plans: list[Plan]) -> list[dict[str, Any]]:
    """One row per plan and configured interval (one for a free plan), in catalog order.

    ``available`` is false when the configured price is missing at Stripe, archived, or
    bills on another interval (the catalog then refuses to sell it).
    """
    by_key = {plan.key: plan for plan in plans}
    rows: list[dict[str, Any]] = []
    for definition in definitions:
        plan = by_key[definition.key]
        common = {"plan": definition.key, "name": definition.name}
        if definition.is_free:
            rows.append(
                {
                    **common,
                    "interval": None,
                    "configured": None,
                    "available": True,
                    "price_id": None,
                    "lookup_key": None,
                    "amount": 0,
                    "currency": None,
                    "display": "free",
                    "stale": False,
                }
            )
            continue
        for interval, ref in definition.prices.items():
            price: Price | None = plan.prices.get(interval)
            amount = price.amount if price is not None else None
            rows.append(
                {
                    **common,
                    "interval": interval.value,
                    "configured": _ref_text(ref),
                    "available": price is not None,
                    "price_id": price.id if price is not None else None,
                    "lookup_key": price.lookup_key if price is not None else None,
                    "amount": price.unit_amount if price is not None else None,
                    "currency": price.currency if price is not None else None,
                    "display": _display(price, amount is not None),
                    "stale": plan.stale,
                }
            )
    return rows


def _display(price: Price | None, per_unit: bool) -> str:
    if price is None:
        return "missing or not sellable"
    if not per_unit:
        return f"tiered ({price.currency.upper()})"
    assert price.amount is not None
    text = price.amount.format()
    if price.interval is not Interval.ONE_TIME:
        every = price.interval.value
        if price.interval_count > 1:
            every = f"{price.interval_count} {every}s"
        text += f" / {every}"
    return text


@click.command(
    epilog=f"""\b
Examples:
  billingkit catalog
  billingkit catalog --json | jq '.[] | select(.available | not)'

{EXIT_CODES_HELP} Exit 1 when a configured price is missing or not sellable."""
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.pass_obj
def catalog(app: AppLocator, as_json: bool) -> None:
    """Show the plans with their live Stripe prices (one Stripe call for all of them)."""
    billing = app.load()
    plans = billing.catalog.plans()
    definitions = sorted(billing.config.plans, key=lambda plan: (plan.order, plan.key))
    rows = catalog_rows(definitions, plans)
    if as_json:
        echo_json(rows)
    else:
        table = Table(title="Plans", title_justify="left")
        for column in ("plan", "name", "interval", "price", "stripe price"):
            table.add_column(column, overflow="fold")
        for row in rows:
            shown = row["display"]
            if not row["available"]:
                shown = f"[red]✗ {shown}[/red]"
            stripe_price = row["price_id"] or row["configured"] or ""
            table.add_row(row["plan"], row["name"], row["interval"] or "", shown, stripe_price)
        stdout_console().print(table)
        if not rows:
            click.echo("no plans configured (BillingConfig.plans is empty)")
    if any(not row["available"] for row in rows):
        click.echo(
            "some configured prices are missing at Stripe, archived, or bill on another "
            "interval: fix the price ids/lookup keys in BillingConfig.plans",
            err=True,
        )
        exit_with(ExitCode.PROBLEM)
