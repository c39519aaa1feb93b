"""``billingkit doctor``: check the configuration against Stripe and the database.

The checks that need no port call beyond those that exist today: webhook secrets look like
Stripe signing secrets; the database is reachable (and, on SQL, at the migration head);
every configured price exists at Stripe, is active, bills on the configured interval, in
the configured mode, and each plan charges in one currency — all prices fetched with the
catalog's one ``list_prices`` call; the account's webhook endpoints (one
``list_webhook_endpoints`` call per 100): at least one, each enabled, on https, receiving
every event type billingkit handles and in an API version billingkit reads; and the API
key's mode (seen on the objects Stripe returns) matches ``BillingConfig.livemode``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

import click

from billingkit.cli._app import AppLocator
from billingkit.cli._common import EXIT_CODES_HELP, ExitCode, echo_json, exit_with, stdout_console
from billingkit.composition import Billing
from billingkit.domain import Interval, Price, PriceRef
from billingkit.errors import GatewayError, RepositoryError
from billingkit.ports import WebhookEndpoint
from billingkit.services.webhooks.registry import HANDLERS

__all__ = ["Check", "doctor", "run_checks"]

_SECRET_PREFIX = "whsec_"
#: The oldest Stripe API version whose webhook payloads billingkit reads.
OLDEST_READABLE_API_VERSION = "2017-01-27"
_API_VERSION = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:\.[a-z]+)?$")


@dataclass(frozen=True)
class Check:
    """One finding: ``ok`` with what was checked, or not ok with the ``fix``."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def as_json(self) -> dict[str, Any]:
        """Stable JSON keys."""
        return {"check": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}


def _secret_checks(billing: Billing) -> list[Check]:
    secrets = billing.config.secret_values()
    if not secrets:
        return [
            Check(
                "webhook secret",
                False,
                "no webhook secret configured",
                "set BillingConfig.webhook_secrets to the endpoint's signing secret (whsec_...)",
            )
        ]
    checks = []
    for number, secret in enumerate(secrets, start=1):
        name = f"webhook secret #{number}"
        looks_right = secret.startswith(_SECRET_PREFIX) and len(secret) > len(_SECRET_PREFIX) + 8
        if looks_right:
            checks.append(Check(name, True, "looks like a Stripe signing secret"))
        else:
            # Never print the secret, not even in part.
            checks.append(
                Check(
                    name,
                    False,
                    f"does not look like a Stripe signing secret (expected {_SECRET_PREFIX}...)",
                    "copy the endpoint's signing secret from the Stripe Dashboard (Developers"
                    " > Webhooks > your endpoint > Signing secret), or from `stripe listen`;"
                    " not the API key",
                )
            )
    return checks


def _database_check(billing: Billing) -> Check:
    repository = billing.repository
    adapter = sys.modules.get("billingkit.adapters.sqlalchemy")
    sql_class = getattr(adapter, "SqlAlchemyRepository", None)
    try:
        if sql_class is not None and isinstance(repository, sql_class):
            from billingkit.cli.migrate import migration_state

            state = migration_state(repository)
            if not state.at_head:
                pending = ", ".join(revision for revision, _ in state.pending)
                return Check(
                    "database",
                    False,
                    f"reachable, but {len(state.pending)} migration(s) pending ({pending})",
                    "run: billingkit migrate",
                )
            with repository.unit_of_work() as uow:
                uow.list_events(limit=1)
            return Check("database", True, f"reachable, at head ({', '.join(state.current)})")
        with repository.unit_of_work() as uow:
            uow.list_events(limit=1)
    except RepositoryError as exc:
        return Check(
            "database",
            False,
            f"{type(exc).__name__}: {exc}",
            "check the database URL, the server and the credentials",
        )
    return Check("database", True, f"reachable ({type(repository).__name__}, no migrations)")


def _describe(ref: PriceRef) -> str:
    return ref.price_id if ref.price_id is not None else f"lookup_key={ref.lookup_key}"


def _price_problem(price: Price, interval: Interval, livemode: bool) -> str | None:
    if not price.active:
        return f"{price.id} is archived (inactive)"
    if price.interval is not interval:
        return f"{price.id} bills {price.interval.value}, configured as {interval.value}"
    if price.livemode != livemode:
        mode = "live" if price.livemode else "test"
        return f"{price.id} is a {mode}-mode price; the config's livemode is {livemode}"
    return None


def _price_checks(billing: Billing) -> list[Check]:
    config = billing.config
    refs = [
        (plan, interval, ref)
        for plan in sorted(config.plans, key=lambda p: (p.order, p.key))
        for interval, ref in plan.prices.items()
    ]
    if not refs:
        return [Check("prices", True, "no paid plans configured: nothing to check at Stripe")]
    ids = sorted({ref.price_id for _, _, ref in refs if ref.price_id is not None})
    keys = sorted({ref.lookup_key for _, _, ref in refs if ref.lookup_key is not None})
    try:
        prices = billing.gateway.list_prices(price_ids=ids, lookup_keys=keys)
    except GatewayError as exc:
        return [
            Check(
                "stripe",
                False,
                f"could not list prices: {type(exc).__name__}: {exc}",
                "check the Stripe API key (and its mode) and the network",
            )
        ]
    by_id = {price.id: price for price in prices}
    by_key = {price.lookup_key: price for price in prices if price.lookup_key is not None}
    checks: list[Check] = []
    currencies: dict[str, set[str]] = {}
    for plan, interval, ref in refs:
        name = f"price {plan.key}/{interval.value}"
        found = by_id.get(ref.price_id) if ref.price_id else by_key.get(ref.lookup_key or "")
        if found is None:
            checks.append(
                Check(
                    name,
                    False,
                    f"{_describe(ref)} not found at Stripe",
                    "create the price in Stripe, or correct the id/lookup key in "
                    "BillingConfig.plans",
                )
            )
            continue
        currencies.setdefault(plan.key, set()).add(found.currency)
        problem = _price_problem(found, interval, config.livemode)
        if problem is not None:
            checks.append(
                Check(
                    name,
                    False,
                    problem,
                    "point the plan at an active price of that interval (a lookup key lets "
                    "you move it without a deploy)",
                )
            )
            continue
        amount = found.amount.format() if found.amount is not None else "tiered"
        checks.append(Check(name, True, f"{found.id}: active, {amount} every {interval.value}"))
    for plan_key, seen in currencies.items():
        if len(seen) > 1:
            checks.append(
                Check(
                    f"plan {plan_key}",
                    False,
                    f"prices in several currencies ({', '.join(sorted(seen))})",
                    "give every interval of a plan prices in the same currency",
                )
            )
    return checks


def _endpoint_problems(endpoint: WebhookEndpoint) -> list[tuple[str, str]]:
    """``(problem, fix)`` for each way ``endpoint`` falls short."""
    problems: list[tuple[str, str]] = []
    if endpoint.status != "enabled":
        problems.append(("disabled", "enable it in the Dashboard (Developers > Webhooks)"))
    if not endpoint.url.lower().startswith("https://"):
        problems.append(
            (f"not on https ({endpoint.url})", "serve the webhook URL over https (TLS)")
        )
    if "*" not in endpoint.enabled_events:
        missing = sorted(set(HANDLERS) - set(endpoint.enabled_events))
        if missing:
            problems.append(
                (
                    f"does not receive {len(missing)} event type(s) billingkit handles: "
                    + ", ".join(missing),
                    "add them to the endpoint's events (or select all events)",
                )
            )
    version = endpoint.api_version
    match = _API_VERSION.match(version) if version is not None else None
    if version is not None and (match is None or match[1] < OLDEST_READABLE_API_VERSION):
        problems.append(
            (
                f"API version {version} is not one billingkit reads "
                f"(oldest: {OLDEST_READABLE_API_VERSION})",
                "create a new endpoint with the gateway's API version and retire this one",
            )
        )
    return problems


def _endpoint_checks(billing: Billing) -> tuple[list[Check], set[bool]]:
    """The endpoint checks, and the livemodes of the endpoints Stripe returned."""
    try:
        endpoints = [
            endpoint for page in billing.gateway.list_webhook_endpoints() for endpoint in page.items
        ]
    except GatewayError as exc:
        fix = "check the Stripe API key (a restricted key needs Webhook Endpoints: read)"
        return [Check("webhook endpoints", False, f"could not list: {exc}", fix)], set()
    if not endpoints:
        return [
            Check(
                "webhook endpoints",
                False,
                "no webhook endpoint in this Stripe account",
                "add one pointing at the app's webhook URL (Dashboard > Developers > "
                "Webhooks), with the events billingkit handles",
            )
        ], set()
    checks: list[Check] = []
    for endpoint in endpoints:
        name = f"webhook endpoint {endpoint.id}"
        problems = _endpoint_problems(endpoint)
        if not problems:
            version = endpoint.api_version or "the account's default API version"
            checks.append(Check(name, True, f"{endpoint.url}: enabled, all events, {version}"))
        for problem, fix in problems:
            checks.append(Check(name, False, f"{endpoint.url}: {problem}", fix))
    return checks, {endpoint.livemode for endpoint in endpoints}


def _mode_check(billing: Billing, seen: set[bool]) -> Check:
    wanted = "live" if billing.config.livemode else "test"
    if not seen:
        return Check("API key mode", True, f"nothing returned to tell the mode; config: {wanted}")
    if len(seen) == 1 and seen == {billing.config.livemode}:
        return Check("API key mode", True, f"{wanted} mode key, as configured")
    found = "live" if True in seen else "test"
    return Check(
        "API key mode",
        False,
        f"the API key is a {found}-mode key; the config's livemode is {billing.config.livemode}",
        f"use a {wanted}-mode key (sk_{wanted}_...) or set BillingConfig.livemode",
    )


def run_checks(billing: Billing) -> list[Check]:
    """Every check, in order: secrets, database, prices, webhook endpoints, key mode."""
    endpoint_checks, modes = _endpoint_checks(billing)
    return [
        *_secret_checks(billing),
        _database_check(billing),
        *_price_checks(billing),
        *endpoint_checks,
        _mode_check(billing, modes),
    ]


@click.command(
    epilog=f"""\b
Examples:
  billingkit doctor
  billingkit doctor --json | jq '.[] | select(.ok | not)'

{EXIT_CODES_HELP} Exit 1 when a check fails."""
)
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.pass_obj
def doctor(app: AppLocator, as_json: bool) -> None:
    """Check the configuration against Stripe and the database; say how to fix what fails.

    Checks: webhook secrets look like signing secrets; the database is reachable and at the
    migration head; every configured price exists at Stripe, is active, bills on the
    configured interval and mode, and each plan uses one currency (one Stripe call); the
    webhook endpoints exist, are enabled, on https, receive every event type billingkit
    handles and use an API version it reads (one call); the API key's mode matches
    livemode.
    """
    checks = run_checks(app.load())
    if as_json:
        echo_json([check.as_json() for check in checks])
    else:
        console = stdout_console()
        for check in checks:
            mark = "[green]✓[/green]" if check.ok else "[red]✗[/red]"
            console.print(f"{mark} {check.name}: {check.detail}", markup=True)
            if check.fix:
                console.print(f"    fix: {check.fix}", markup=False)
        failed = sum(1 for check in checks if not check.ok)
        console.print(f"{failed} problem(s) found" if failed else "all checks passed", markup=False)
    if any(not check.ok for check in checks):
        exit_with(ExitCode.PROBLEM)
