"""``billingkit drain``: the worker of deferred processing (``WebhookProcessor.drain``).

``--once`` applies what is due and exits; ``--forever`` loops, sleeping ``--interval``
seconds whenever nothing is due, and stops after the current batch on SIGTERM or SIGINT.
Each batch is one ``drain`` call of at most ``--batch-size`` events: one transaction, so a
stop never leaves a batch half-applied.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import FrameType
from typing import Any

import click

from billingkit.cli._app import AppLocator
from billingkit.cli._common import (
    EXIT_CODES_HELP,
    ExitCode,
    echo_json,
    exit_with,
    stderr_console,
    stdout_console,
)
from billingkit.composition import Billing
from billingkit.domain import EventStatus
from billingkit.services.webhooks.deferred import DrainResult

__all__ = ["drain"]

#: The outcome counts of a drain, in report order.
_OUTCOMES = ("processed", "ignored", "stale", "failed", "dead")
#: Most failed or dead ledger entries read to name those of this run.
_NAMED_LIMIT = 1000


@dataclass
class _Run:
    """What a drain run did so far: counts, batches, and the events that failed or died."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_OUTCOMES, 0))
    batches: int = 0
    failed_ids: list[str] = field(default_factory=list)
    dead_ids: list[str] = field(default_factory=list)
    stopped_by: str = "idle"

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_json(self) -> dict[str, Any]:
        return {
            **self.counts,
            "total": self.total,
            "batches": self.batches,
            "failed_ids": self.failed_ids,
            "dead_ids": self.dead_ids,
            "stopped_by": self.stopped_by,
        }


class _Stop:
    """Set by SIGTERM/SIGINT while the run lasts; the loop checks it between batches."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: str | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signal.Signals(signum).name
        self.event.set()


@contextmanager
def _stop_on_signals() -> Iterator[_Stop]:
    """Turn SIGTERM and SIGINT into a stop request until the block ends (main thread only)."""
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():  # pragma: no cover
        yield stop
        return
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ids(billing: Billing, status: EventStatus) -> dict[str, datetime | None]:
    """Ledger entries in ``status``: id -> next attempt time."""
    with billing.repository.unit_of_work() as uow:
        records = uow.list_events(status=status, limit=_NAMED_LIMIT)
    return {record.id: record.next_attempt_at for record in records}


@dataclass
class _Ledger:
    """The failed and dead entries last seen, to tell which ones a batch added or changed.

    Read at the start and again after a batch that had failures (an event failing again
    gets a new ``next_attempt_at``). A failure recorded meanwhile by another worker on the
    same ledger may be named too.
    """

    billing: Billing
    failed: dict[str, datetime | None] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.failed = _ids(self.billing, EventStatus.FAILED)
        self.dead = set(_ids(self.billing, EventStatus.DEAD))

    def name_failures(self, run: _Run, result: DrainResult) -> None:
        """Add the ids of the batch's failed and dead events to ``run``."""
        if result.dead:
            dead_now = set(_ids(self.billing, EventStatus.DEAD))
            run.dead_ids.extend(sorted(dead_now - self.dead))
            self.dead = dead_now
        if result.failed:
            failed_now = _ids(self.billing, EventStatus.FAILED)
            run.failed_ids.extend(
                sorted(
                    event_id
                    for event_id, due in failed_now.items()
                    if (event_id not in self.failed or self.failed[event_id] != due)
                    and event_id not in run.failed_ids
                )
            )
            self.failed = failed_now


def _batch_line(number: int, result: DrainResult) -> str:
    counts = ", ".join(f"{getattr(result, name)} {name}" for name in _OUTCOMES)
    return f"batch {number}: {result.total} event(s): {counts}"


@click.command(
    epilog=f"""\b
Examples:
  billingkit drain --once                      # cron: apply what is due, then exit
  billingkit drain --forever --interval 2      # a worker of its own (systemd)
  billingkit drain --once --batch-size 500 --limit 10000 --json

{EXIT_CODES_HELP} Exit 1 when an event failed (due again later) or died in this run;
the failed and dead ids are listed."""
)
@click.option(
    "--once",
    "mode",
    flag_value="once",
    default=True,
    help="Apply the events due now, then exit (the default).",
)
@click.option(
    "--forever",
    "mode",
    flag_value="forever",
    help="Keep draining; sleep --interval when nothing is due; stop on SIGTERM/SIGINT.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Events claimed and applied per transaction.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many events (default: no limit).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="With --forever: seconds to sleep when nothing is due.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_obj
def drain(
    app: AppLocator,
    mode: str,
    batch_size: int,
    limit: int | None,
    interval: float,
    as_json: bool,
) -> None:
    """Apply the deferred webhook events that are due: pending, or failed and due again.

    Each batch (--batch-size events, oldest first) is claimed and applied in one
    transaction; a failing event rolls back alone and is retried later with back-off, or
    ends dead after webhook_max_attempts. Any number of drain workers can share one
    ledger. SIGTERM or SIGINT stops the run after the current batch: nothing is left
    half-applied. A line per batch is written to standard error on a terminal.
    """
    billing = app.load()
    forever = mode == "forever"
    console = stderr_console()
    run = _Run()
    ledger = _Ledger(billing)
    with _stop_on_signals() as stop:
        while not stop.event.is_set():
            size = batch_size if limit is None else min(batch_size, limit - run.total)
            result = billing.webhooks.drain(limit=size, batch_size=size)
            if result.total:
                run.batches += 1
                for name in _OUTCOMES:
                    run.counts[name] += getattr(result, name)
                ledger.name_failures(run, result)
                if console.is_terminal:
                    console.print(_batch_line(run.batches, result), markup=False, highlight=False)
            if limit is not None and run.total >= limit:
                run.stopped_by = "limit"
                break
            if result.total < size:  # nothing more is due now
                if not forever:
                    break
                stop.event.wait(interval)
        else:
            run.stopped_by = (stop.signal or "signal").lower()
    if as_json:
        echo_json(run.as_json())
    else:
        out = stdout_console()
        summary = ", ".join(f"{run.counts[name]} {name}" for name in _OUTCOMES)
        out.print(
            f"drained {run.total} event(s) in {run.batches} batch(es): {summary}", markup=False
        )
        if run.failed_ids:
            out.print("failed (due again later): " + " ".join(run.failed_ids), markup=False)
        if run.dead_ids:
            out.print(
                "dead (replay with 'billingkit events replay --status dead'): "
                + " ".join(run.dead_ids),
                markup=False,
            )
    if run.counts["failed"] or run.counts["dead"]:
        exit_with(ExitCode.PROBLEM)
