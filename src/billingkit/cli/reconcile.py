"""``billingkit reconcile`` and ``billingkit backfill``: bring the stored state to Stripe's.

Thin commands over ``billingkit.services.reconcile``: options, a progress bar on a
terminal, a summary table (or ``--json``), exit codes.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from billingkit.cli._app import AppLocator
from billingkit.cli._common import (
    EXIT_CODES_HELP,
    CliError,
    ExitCode,
    _RateColumn,
    echo_json,
    exit_with,
    stderr_console,
    stdout_console,
)
from billingkit.composition import Billing
from billingkit.services.reconcile import (
    CheckpointStore,
    Drift,
    FileCheckpointStore,
    Reconciler,
    ReconcileReport,
    RepositoryCheckpointStore,
    backfill,
    pairs_from_metadata,
)

__all__ = ["backfill_command", "reconcile"]

_ACTIONS = ("fixed", "would_fix", "kept", "reported")


@contextmanager
def _progress(console: Console | None = None) -> Iterator[Callable[[], None]]:
    """A progress line with count, rate and elapsed time on a terminal; silent otherwise.

    No total and no ETA: Stripe does not say how many subscriptions there are.
    """
    console = console or stderr_console()
    if not console.is_terminal:
        yield lambda: None
        return
    bar = Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed} subscriptions"),
        _RateColumn("subs"),
        TimeElapsedColumn(),
        console=console,
    )
    with bar:
        task = bar.add_task("reconciling", total=None)
        yield lambda: bar.advance(task)


def _reconciler(billing: Billing, checkpoint: Path | None) -> Reconciler:
    clock = billing.clock
    store: CheckpointStore = (
        RepositoryCheckpointStore(billing.repository, clock=clock)
        if checkpoint is None
        else FileCheckpointStore(checkpoint)
    )
    return Reconciler(
        billing.gateway,
        billing.repository,
        catalog=billing.catalog,
        clock=clock,
        checkpoints=store,
    )


def _print_report(report: ReconcileReport, title: str) -> None:
    console = stdout_console()
    table = Table(title=title)
    table.add_column("drift")
    table.add_column("subscriptions", justify="right")
    for drift in Drift:
        table.add_row(str(drift), str(report.counts[str(drift)]))
    console.print(table)
    counts = report.counts
    actions = ", ".join(f"{counts[a]} {a.replace('_', ' ')}" for a in _ACTIONS)
    console.print(
        f"{counts['listed']} listed at Stripe, {counts['in_sync']} in sync; {actions}; "
        f"{report.stripe_calls} Stripe call(s), {report.rows_written} row(s) written"
        + (" (dry run: nothing written)" if report.dry_run else ""),
        markup=False,
    )
    if report.findings:
        details = Table(title="drifted subscriptions")
        for column in ("subscription", "user", "drift", "stored", "stripe", "action"):
            details.add_column(column)
        for finding in report.findings:
            details.add_row(
                finding.subscription_id,
                finding.user_id or "-",
                ", ".join(str(d) for d in finding.drifts),
                finding.stored_status or "-",
                finding.stripe_status or "-",
                finding.action,
            )
        console.print(details)


def _since(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


@click.command(
    epilog=f"""\b
Examples:
  billingkit reconcile --dry-run
  billingkit reconcile --since 2026-01-01
  billingkit reconcile --user 42 --json
  billingkit reconcile --resume          # after an interrupted run

{EXIT_CODES_HELP} Exit 1 when drift was found on a --dry-run, or some drift was kept or
only reported (unknown customer, gone at Stripe)."""
)
@click.option("--dry-run", is_flag=True, help="Classify the drift; write nothing.")
@click.option("--user", "user_id", metavar="ID", help="Only this user's subscriptions.")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="Only subscriptions created at or after this date (UTC).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its checkpoint.")
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Keep the position of a run in this file instead of the database "
    "(billingkit_reconcile_checkpoints); deleted when the run finishes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def reconcile(
    app: AppLocator,
    dry_run: bool,
    user_id: str | None,
    since: datetime | None,
    resume: bool,
    checkpoint: Path | None,
    as_json: bool,
) -> None:
    """Compare every subscription at Stripe with what is stored, and fix the drift.

    Lists all subscriptions (every status, 100 per Stripe call), classifies the drift
    (missing here; status, plan, period or cancel flag differ; unknown customer; gone at
    Stripe) and stores Stripe's state through the ordering guard: a state from
    a newer event is never overwritten. The position is saved after every page (in the
    database unless --checkpoint FILE): an interrupted run resumes with --resume.
    """
    billing = app.load()
    reconciler = _reconciler(billing, checkpoint)
    with _progress() as tick:
        report = reconciler.run(
            dry_run=dry_run,
            user_id=user_id,
            since=_since(since),
            resume=resume,
            on_subscription=tick,
        )
    if as_json:
        echo_json(report.as_json())
    else:
        _print_report(report, "reconcile" + (" (dry run)" if dry_run else ""))
    unresolved = report.counts["kept"] + report.counts["reported"]
    if unresolved or (dry_run and report.counts["would_fix"]):
        exit_with(ExitCode.PROBLEM)


def _read_map(path: Path) -> list[tuple[str, str]]:
    """``user_id,customer_id`` rows (a header row naming them is skipped)."""
    pairs: list[tuple[str, str]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if number == 1 and cells[:2] == ["user_id", "customer_id"]:
                continue
            if len(cells) != 2 or not all(cells) or not cells[1].startswith("cus_"):
                raise CliError(
                    f"{path}:{number}: expected 'user_id,customer_id' (cus_...), got {row!r}",
                    ExitCode.USAGE,
                )
            pairs.append((cells[0], cells[1]))
    return pairs


@click.command(
    name="backfill",
    epilog=f"""\b
Examples:
  billingkit backfill --link-by metadata:app_user_id          # dry run
  billingkit backfill --map users.csv --apply                 # user_id,customer_id rows

{EXIT_CODES_HELP} Exit 1 when a link was refused (conflict) or, on a dry run, when
there is something to link.""",
)
@click.option(
    "--link-by",
    metavar="metadata:KEY",
    help="Link each Stripe customer to the user id in its metadata KEY.",
)
@click.option(
    "--map",
    "map_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A CSV of user_id,customer_id rows.",
)
@click.option("--apply", is_flag=True, help="Write the links and the subscriptions.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def backfill_command(
    app: AppLocator, link_by: str | None, map_file: Path | None, apply: bool, as_json: bool
) -> None:
    """Link existing Stripe customers to the app's users, then reconcile their subscriptions.

    For apps moving from their own Stripe code. Conflicting links (a user or customer
    already linked to someone else, or mapped twice) are refused and listed. Dry run by
    default: --apply writes.
    """
    if (link_by is None) == (map_file is None):
        raise click.UsageError("give exactly one of --link-by metadata:KEY or --map FILE.csv")
    billing = app.load()
    if link_by is not None:
        source, _, key = link_by.partition(":")
        if source != "metadata" or not key:
            raise click.UsageError(f"--link-by {link_by!r}: expected metadata:KEY")
        pairs = pairs_from_metadata(billing.gateway, key)
        check = False
    else:
        assert map_file is not None
        pairs = iter(_read_map(map_file))
        check = True
    with _progress():
        report = backfill(
            pairs,
            gateway=billing.gateway,
            repository=billing.repository,
            reconciler=_reconciler(billing, None),
            apply=apply,
            check_customers=check,
        )
    if as_json:
        echo_json(report.as_json())
    else:
        console = stdout_console()
        table = Table(title="backfill" + ("" if apply else " (dry run)"))
        for column in ("user", "customer", "outcome", "reason"):
            table.add_column(column)
        for link in report.links:
            table.add_row(link.user_id, link.customer_id, link.outcome, link.reason or "")
        console.print(table)
        counts = ", ".join(
            f"{report.count(o)} {o.replace('_', ' ')}"
            for o in ("linked", "would_link", "already_linked", "conflict")
        )
        console.print(counts, markup=False)
        if report.reconcile is not None:
            _print_report(report.reconcile, "subscriptions" + ("" if apply else " (dry run)"))
    if report.conflicts or (not apply and report.count("would_link")):
        exit_with(ExitCode.PROBLEM)
