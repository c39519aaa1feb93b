"""``billingkit events``: list, show, replay and send webhook events of the ledger."""

from __future__ import annotations

import fnmatch
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import click
from rich.syntax import Syntax
from rich.table import Table

from billingkit.cli._app import AppLocator
from billingkit.cli._common import (
    EXIT_CODES_HELP,
    CliError,
    ExitCode,
    echo_json,
    exit_with,
    iso,
    progress,
    stdout_console,
)
from billingkit.cli._samples import SAMPLE_TYPES, SampleSpec, build_sample_event
from billingkit.composition import Billing
from billingkit.domain import EventRecord, EventStatus
from billingkit.errors import BillingError, InvalidInputError

__all__ = ["events"]

#: Most ledger rows read to filter by ``--type``/``--since`` (the repository port filters
#: only by status today; see ``docs/operations.md``).
SCAN_LIMIT = 10_000
#: Statuses an event can be replayed from (``dead`` once the ledger has it).
_REPLAYABLE = tuple(
    status.value for status in EventStatus if status.value in ("failed", "pending", "dead")
)
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


# --------------------------------------------------------------------------- helpers


def _parse_since(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """``--since``: an ISO 8601 time (UTC when naive) or a duration ago (``30m``, ``2h``)."""
    if value is None:
        return None
    text = value.strip()
    match = _DURATION.match(text)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return datetime.now(timezone.utc) - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a duration (30m, 2h, 7d) nor an ISO time (2026-11-30T12:00:00Z)",
            ctx,
            param,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _record_json(record: EventRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "type": record.type,
        "status": record.status.value,
        "attempts": record.attempts,
        "created": iso(record.created),
        "received_at": iso(record.received_at),
        "processed_at": iso(record.processed_at),
        "livemode": record.livemode,
        "last_error": record.last_error,
    }


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _status_style(status: str) -> str:
    return {"failed": "red", "dead": "bold red", "pending": "yellow", "processing": "cyan"}.get(
        status, ""
    )


def _list_records(
    billing: Billing,
    statuses: tuple[str, ...],
    types: tuple[str, ...],
    since: datetime | None,
    limit: int,
) -> tuple[list[EventRecord], bool]:
    """Matching ledger entries, oldest first, and whether the scan hit ``SCAN_LIMIT``."""
    filtered = bool(types) or since is not None
    fetch = SCAN_LIMIT if filtered else limit
    records: list[EventRecord] = []
    truncated = False
    with billing.repository.unit_of_work() as uow:
        for status in statuses or (None,):
            chunk = uow.list_events(
                status=EventStatus(status) if status is not None else None, limit=fetch
            )
            truncated = truncated or (filtered and len(chunk) >= fetch)
            records.extend(chunk)
    if len(statuses) > 1:
        records.sort(key=lambda record: (record.received_at, record.id))
    if types:
        records = [r for r in records if any(fnmatch.fnmatchcase(r.type, t) for t in types)]
    if since is not None:
        records = [r for r in records if r.received_at >= since]
    return records[:limit], truncated


# --------------------------------------------------------------------------- the group


@click.group(
    epilog=f"""\b
Examples:
  billingkit events list --status failed
  billingkit events show evt_1Q2w3E4r5T6y
  billingkit events replay --status failed
  billingkit events send customer.subscription.created --to http://127.0.0.1:5000/webhooks/stripe

{EXIT_CODES_HELP}"""
)
def events() -> None:
    """Inspect and replay the webhook event ledger; send signed test events."""


@events.command("list", epilog=EXIT_CODES_HELP)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([status.value for status in EventStatus]),
    help="Only events in this status (repeatable).",
)
@click.option(
    "--type",
    "types",
    multiple=True,
    metavar="TYPE",
    help="Only this event type; '*' wildcards allowed, e.g. 'invoice.*' (repeatable).",
)
@click.option(
    "--since",
    metavar="WHEN",
    callback=_parse_since,
    help="Received at or after: 2h, 7d, or an ISO time.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Most rows."
)
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON.")
@click.pass_obj
def list_events(
    app: AppLocator,
    statuses: tuple[str, ...],
    types: tuple[str, ...],
    since: datetime | None,
    limit: int,
    as_json: bool,
) -> None:
    r"""List ledger entries, oldest received first.

    \b
    Examples:
      billingkit events list --status failed --status pending
      billingkit events list --type 'customer.subscription.*' --since 2h --json
    """
    records, truncated = _list_records(app.load(), statuses, types, since, limit)
    if truncated:
        click.echo(
            f"note: only the oldest {SCAN_LIMIT} ledger entries were searched for --type/--since",
            err=True,
        )
    if as_json:
        echo_json([_record_json(record) for record in records])
        return
    if not records:
        click.echo("no events match")
        return
    table = Table(title=f"{len(records)} event(s)", title_justify="left")
    for column in ("id", "type", "status", "attempts", "received (UTC)", "last error"):
        table.add_column(column, overflow="fold")
    for record in records:
        status = record.status.value
        style = _status_style(status)
        table.add_row(
            record.id,
            record.type,
            f"[{style}]{status}[/{style}]" if style else status,
            str(record.attempts),
            _when(record.received_at),
            (record.last_error or "")[:80],
        )
    stdout_console().print(table)


@events.command("show", epilog=EXIT_CODES_HELP)
@click.argument("event_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the entry and payload as JSON.")
@click.pass_obj
def show_event(app: AppLocator, event_id: str, as_json: bool) -> None:
    r"""Show one ledger entry: status, attempts, last error and the payload.

    \b
    Example:
      billingkit events show evt_1Q2w3E4r5T6y
    """
    billing = app.load()
    with billing.repository.unit_of_work() as uow:
        record = uow.get_event(event_id)
    if record is None:
        raise CliError(f"no event {event_id!r} in the ledger", ExitCode.NOT_FOUND)
    try:
        payload: Any = json.loads(record.payload)
    except ValueError:
        payload = record.payload.decode("utf-8", errors="replace")
    if as_json:
        echo_json({**_record_json(record), "payload": payload})
        return
    console = stdout_console()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for label, value in _record_json(record).items():
        grid.add_row(label, "" if value is None else str(value))
    console.print(grid)
    console.print()
    text = json.dumps(payload, indent=2, ensure_ascii=False)
    if console.is_terminal:
        console.print(Syntax(text, "json", word_wrap=True))
    else:
        click.echo(text)


@dataclass(frozen=True)
class _Replayed:
    event_id: str
    event_type: str | None
    outcome: str  # a WebhookOutcome value, "failed" or "not_found"
    error: str | None = None


def _replay_one(billing: Billing, event_id: str) -> _Replayed:
    try:
        result = billing.webhooks.replay(event_id)
    except InvalidInputError as exc:
        return _Replayed(event_id, None, "not_found", str(exc))
    except Exception as exc:
        # The processor rolled the event back and recorded the failure on its ledger entry.
        return _Replayed(event_id, None, "failed", f"{type(exc).__name__}: {exc}")
    return _Replayed(result.event_id, result.event_type, result.outcome.value)


@events.command("replay", epilog=EXIT_CODES_HELP)
@click.argument("event_ids", metavar="[ID]...", nargs=-1)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(_REPLAYABLE),
    help="Replay every event in this status instead of listed IDs (repeatable).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="With --status: most events replayed in this run.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one result per event as JSON.")
@click.pass_obj
def replay_events(
    app: AppLocator,
    event_ids: tuple[str, ...],
    statuses: tuple[str, ...],
    limit: int,
    as_json: bool,
) -> None:
    r"""Apply stored events again from the ledger's raw payload (no call to Stripe).

    Exactly-once holds: an event already processed, ignored or stale is answered
    'duplicate' and changes nothing; hooks run only for events that apply now.

    \b
    Examples:
      billingkit events replay evt_1Q2w3E4r5T6y evt_9Z8x7C6v5B4n
      billingkit events replay --status failed

    Exit 1 if an event failed again (its error is recorded on the entry), 4 if an ID is
    not in the ledger.
    """
    if bool(event_ids) == bool(statuses):
        raise click.UsageError("give event IDs or --status, not both and not neither")
    billing = app.load()
    ids = list(dict.fromkeys(event_ids))
    if statuses:
        records, _ = _list_records(billing, statuses, (), None, limit)
        ids = [record.id for record in records]
    results: list[_Replayed] = []
    with progress(len(ids), "replaying") as advance:
        for event_id in ids:
            results.append(_replay_one(billing, event_id))
            advance()
    _print_replays(results, as_json)
    if any(result.outcome == "failed" for result in results):
        exit_with(ExitCode.PROBLEM)
    if any(result.outcome == "not_found" for result in results):
        exit_with(ExitCode.NOT_FOUND)


def _print_replays(results: list[_Replayed], as_json: bool) -> None:
    if as_json:
        echo_json(
            [
                {"id": r.event_id, "type": r.event_type, "outcome": r.outcome, "error": r.error}
                for r in results
            ]
        )
        return
    if not results:
        click.echo("nothing to replay")
        return
    table = Table(title="replayed", title_justify="left")
    for column in ("id", "type", "outcome", "error"):
        table.add_column(column, overflow="fold")
    for r in results:
        style = "red" if r.outcome in ("failed", "not_found") else ""
        outcome = f"[{style}]{r.outcome}[/{style}]" if style else r.outcome
        table.add_row(r.event_id, r.event_type or "", outcome, r.error or "")
    stdout_console().print(table)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
    click.echo(f"{len(results)} event(s): {summary}")


# --------------------------------------------------------------------------- send


def _post(url: str, payload: bytes, signature: str, timeout: float) -> tuple[int, str]:
    request = urllib.request.Request(
        url,
        data=payload,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature,
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks) billingkit-cli",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", errors="replace") if exc.fp is not None else ""
        return int(exc.code), body
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(f"could not reach {url}: {reason}", ExitCode.ERROR) from None


def _check_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise click.BadParameter("expected an http:// or https:// URL", ctx, param)
    return value


def _check_currency(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{3}", value):
        raise click.BadParameter("expected a three-letter ISO code such as usd", ctx, param)
    return value.lower()


@events.command("send", epilog=EXIT_CODES_HELP)
@click.argument("event_type", metavar="TYPE", type=click.Choice(list(SAMPLE_TYPES)))
@click.option(
    "--to", "url", required=True, callback=_check_url, help="The app's webhook endpoint URL."
)
@click.option("--user", "user_id", default="user_cli", show_default=True, help="The app's user id.")
@click.option("--plan", "plan_key", help="Plan key (default: the first paid plan).")
@click.option(
    "--interval",
    type=click.Choice(["day", "week", "month", "year"]),
    help="Billing interval of the plan's price (default: its first).",
)
@click.option(
    "--status",
    type=click.Choice(
        ["incomplete", "trialing", "active", "past_due", "unpaid", "paused", "canceled"]
    ),
    help="Subscription status for customer.subscription.created/updated (default active).",
)
@click.option(
    "--amount",
    type=click.IntRange(min=0),
    default=2000,
    show_default=True,
    help="Amount in minor units (2000 = 20.00).",
)
@click.option(
    "--currency",
    default="usd",
    show_default=True,
    callback=_check_currency,
    help="ISO currency code.",
)
@click.option("--email", help="Customer email carried by checkout and invoice events.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the answer.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def send_event(
    app: AppLocator,
    event_type: str,
    url: str,
    user_id: str,
    plan_key: str | None,
    interval: str | None,
    status: str | None,
    amount: int,
    currency: str,
    email: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    r"""Post a realistic, signed test event to the app's webhook endpoint.

    An offline 'stripe trigger' for local development: the event is built with
    billingkit.testing in the current Stripe API shapes, about USER (customer,
    subscription and session ids derive from it, so successive sends tell one story), and
    signed with the app's first webhook secret at the current time.

    \b
    Examples:
      billingkit events send checkout.session.completed --to http://127.0.0.1:5000/webhooks/stripe
      billingkit events send customer.subscription.updated --status past_due \
          --user alice --to http://127.0.0.1:5000/webhooks/stripe

    Exit 1 if the endpoint answers other than 2xx, 3 if it cannot be reached.
    """
    from billingkit.testing import signed_delivery

    billing = app.load()
    secrets = billing.config.secret_values()
    if not secrets:
        raise CliError("the app's BillingConfig has no webhook secret to sign with")
    now = int(datetime.now(timezone.utc).timestamp())
    spec = SampleSpec(
        user_id=user_id,
        plan_key=plan_key,
        interval=interval,
        amount=amount,
        currency=currency.lower(),
        status=status,
        now=now,
        livemode=billing.config.livemode,
        email=email,
    )
    try:
        event = build_sample_event(event_type, billing.config, spec)
    except BillingError as exc:
        raise click.UsageError(str(exc)) from None
    delivery = signed_delivery(event, secrets[0], timestamp=now)
    code, body = _post(url, delivery.payload, delivery.signature, timeout)
    ok = 200 <= code < 300
    if as_json:
        echo_json(
            {
                "event_id": delivery.id,
                "type": delivery.type,
                "url": url,
                "status": code,
                "ok": ok,
                "body": body,
            }
        )
    else:
        click.echo(f"sent {delivery.type} {delivery.id} to {url}")
        click.echo(f"answer: {code} {body.strip()[:500]}")
    if not ok:
        exit_with(ExitCode.PROBLEM)
