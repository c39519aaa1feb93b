"""``billingkit drain``: deferred events applied in batches, once or until a signal."""

from __future__ import annotations

import importlib
import io
import json
import signal
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from click.testing import Result
from rich.console import Console

from billingkit.services.webhooks import RetryPolicy
from billingkit.services.webhooks.deferred import DrainResult

from .cli_support import App

#: the module (``billingkit.cli.drain`` as an attribute is the command of that name)
drain_module = importlib.import_module("billingkit.cli.drain")


def _ledger(app: App) -> dict[str, str]:
    with app.repository.unit_of_work() as uow:
        return {record.id: record.status.value for record in uow.list_events(limit=1000)}


def _receive(app: App, users: int = 1) -> list[str]:
    """Purchases by ``users`` users, their events received (stored pending) but not applied."""
    for index in range(users):
        app.subscribe(f"user-{index + 1}")
    ids = []
    for delivery in app.stripe.drain_events():
        app.billing.webhooks.receive(delivery.payload, delivery.signature)
        ids.append(delivery.id)
    assert ids
    assert set(_ledger(app).values()) == {"pending"}
    return ids


def _count_calls(
    monkeypatch: pytest.MonkeyPatch, app: App, after: Callable[[int, DrainResult], None]
) -> list[DrainResult]:
    """Record every ``drain`` call's result; ``after(call_number, result)`` runs after each."""
    results: list[DrainResult] = []
    original = app.billing.webhooks.drain

    def counted(**kwargs: Any) -> DrainResult:
        result = original(**kwargs)
        results.append(result)
        after(len(results), result)
        return result

    monkeypatch.setattr(app.billing.webhooks, "drain", counted)
    return results


def test_once_applies_every_due_event_and_reports_counts(
    app: App, run: Callable[..., Result]
) -> None:
    ids = _receive(app, users=2)
    result = run("drain", "--once", "--batch-size", "3", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["total"] == len(ids)
    assert report["processed"] + report["ignored"] + report["stale"] == len(ids)
    assert report["failed"] == report["dead"] == 0
    assert report["batches"] == -(-len(ids) // 3)
    assert report["failed_ids"] == [] and report["dead_ids"] == []
    assert report["stopped_by"] == "idle"
    assert "pending" not in _ledger(app).values()
    assert app.activated == ["user-1", "user-2"]
    # nothing left: a second run does nothing and says so
    again = run("drain")
    assert again.exit_code == 0, again.output
    assert "drained 0 event(s) in 0 batch(es)" in again.stdout


def test_limit_stops_after_that_many_events(app: App, run: Callable[..., Result]) -> None:
    ids = _receive(app, users=2)
    assert len(ids) > 3
    result = run("drain", "--batch-size", "2", "--limit", "3", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["total"], report["batches"], report["stopped_by"]) == (3, 2, "limit")
    assert list(_ledger(app).values()).count("pending") == len(ids) - 3


def test_failures_exit_1_and_are_named_then_die_and_replay(
    app: App, run: Callable[..., Result]
) -> None:
    app.failing[0] = True
    _receive(app)
    first = run("drain", "--json")
    assert first.exit_code == 1, first.output
    report = json.loads(first.stdout)
    failed = {event_id for event_id, status in _ledger(app).items() if status == "failed"}
    assert failed and report["failed"] == len(failed)
    assert set(report["failed_ids"]) == failed
    assert report["dead_ids"] == []
    # not due yet: a run right after finds nothing to do
    assert run("drain").exit_code == 0

    # the next failure is the last allowed one: the events die, and are named
    app.billing.webhooks.retry_policy = RetryPolicy(max_attempts=2, jitter=0.0)
    app.stripe.advance(timedelta(hours=2))
    second = run("drain")
    assert second.exit_code == 1, second.output
    assert "dead (replay with 'billingkit events replay --status dead'):" in second.stdout
    for event_id in failed:
        assert event_id in second.stdout
    assert "failed (due again later)" not in second.stdout
    assert {s for i, s in _ledger(app).items() if i in failed} == {"dead"}

    listed = run("events", "list", "--status", "dead", "--json")
    assert listed.exit_code == 0, listed.output
    assert {row["id"] for row in json.loads(listed.stdout)} == failed

    app.failing[0] = False
    replayed = run("events", "replay", "--status", "dead")
    assert replayed.exit_code == 0, replayed.output
    assert "dead" not in _ledger(app).values()
    assert app.activated == ["user-1"]


def test_a_line_per_batch_on_a_terminal(
    app: App, run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _receive(app)
    screen = io.StringIO()
    monkeypatch.setattr(
        drain_module,
        "stderr_console",
        lambda: Console(file=screen, force_terminal=True, width=120),
    )
    result = run("drain", "--batch-size", "1")
    assert result.exit_code == 0, result.output
    lines = [line for line in screen.getvalue().splitlines() if line.startswith("batch ")]
    assert len(lines) == len(ids)
    assert lines[0].startswith("batch 1: 1 event(s): ")
    assert f"drained {len(ids)} event(s) in {len(ids)} batch(es)" in result.stdout


def test_no_batch_lines_when_not_a_terminal(app: App, run: Callable[..., Result]) -> None:
    _receive(app)
    result = run("drain", "--batch-size", "1")
    assert result.exit_code == 0, result.output
    assert "batch 1:" not in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_forever_stops_after_the_current_batch_on_a_signal(
    app: App, run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, sig: signal.Signals
) -> None:
    ids = _receive(app, users=2)

    def signal_after_first(call: int, result: DrainResult) -> None:
        if call == 1:
            signal.raise_signal(sig)

    results = _count_calls(monkeypatch, app, signal_after_first)
    previous = signal.getsignal(sig)
    result = run("drain", "--forever", "--batch-size", "2", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(results) == 1  # the batch under way finished; no new batch began
    assert (report["total"], report["batches"]) == (2, 1)
    assert report["stopped_by"] == sig.name.lower()
    ledger = _ledger(app)
    assert list(ledger.values()).count("pending") == len(ids) - 2
    assert "processing" not in ledger.values()
    assert signal.getsignal(sig) == previous  # the handler is put back


def test_forever_sleeps_when_idle_then_drains_new_events(
    app: App, run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []

    class Stop:
        """An event whose ``wait`` records the interval and lets new events arrive."""

        def __init__(self) -> None:
            self.stopped = False

        def is_set(self) -> bool:
            return self.stopped

        def set(self) -> None:
            self.stopped = True

        def wait(self, timeout: float) -> bool:
            waits.append(timeout)
            if len(waits) == 1:
                _receive(app)  # events arrive while the worker sleeps
            else:
                self.stopped = True
            return self.stopped

    original = drain_module._Stop.__init__

    def patched_init(self: Any) -> None:
        original(self)
        self.event = Stop()

    monkeypatch.setattr(drain_module._Stop, "__init__", patched_init)
    result = run("drain", "--forever", "--interval", "0.5", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert waits == [0.5, 0.5]
    assert report["total"] > 0 and report["processed"] > 0
    assert "pending" not in _ledger(app).values()
    assert app.activated == ["user-1"]


@pytest.mark.parametrize(
    "args",
    [
        ("--batch-size", "0"),
        ("--limit", "0"),
        ("--interval", "0"),
        ("--interval", "-1"),
    ],
)
def test_bad_options_are_usage_errors(
    app: App, run: Callable[..., Result], args: tuple[str, ...]
) -> None:
    result = run("drain", *args)
    assert result.exit_code == 2, result.output
    assert _ledger(app) == {}


def test_failed_events_are_named_in_the_text_report(app: App, run: Callable[..., Result]) -> None:
    app.failing[0] = True
    _receive(app)
    result = run("drain")
    assert result.exit_code == 1, result.output
    failed = sorted(i for i, status in _ledger(app).items() if status == "failed")
    assert failed
    assert f"failed (due again later): {' '.join(failed)}" in result.stdout
    assert f"{len(failed)} failed, 0 dead" in result.stdout
