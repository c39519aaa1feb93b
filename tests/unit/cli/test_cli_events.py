"""``billingkit events list/show/replay``: the ledger, read and replayed exactly once."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from click.testing import Result
from rich.console import Console

import billingkit.cli._common as common

from .cli_support import App, assert_clean_error


def _ledger(app: App) -> dict[str, str]:
    with app.repository.unit_of_work() as uow:
        return {record.id: record.status.value for record in uow.list_events(limit=1000)}


@pytest.fixture
def history(app: App) -> App:
    """A purchase (received at START+1s) and its renewal a month later, all processed."""
    app.subscribe("user-1")
    assert app.deliver_all() == []
    app.stripe.advance(timedelta(days=31))
    assert app.deliver_all() == []
    return app


@pytest.fixture
def failed(app: App) -> list[str]:
    """A purchase whose activation hook fails: the subscription events are ``failed``."""
    app.failing[0] = True
    app.subscribe("user-1")
    ids = app.deliver_all()
    assert ids
    return ids


# --------------------------------------------------------------------------- list


def test_list_json_has_every_event_with_stable_keys(
    history: App, run: Callable[..., Result]
) -> None:
    result = run("events", "list", "--json", "--limit", "500")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {row["id"]: row["status"] for row in rows} == _ledger(history)
    assert list(rows[0]) == [
        "id",
        "type",
        "status",
        "attempts",
        "created",
        "received_at",
        "processed_at",
        "livemode",
        "last_error",
    ]
    received = [row["received_at"] for row in rows]
    assert received == sorted(received)  # oldest first


def test_list_filters_by_type_pattern_since_and_limit(
    history: App, run: Callable[..., Result]
) -> None:
    ledger = _ledger(history)
    invoices = json.loads(run("events", "list", "--type", "invoice.*", "--json").stdout)
    assert invoices
    assert all(row["type"].startswith("invoice.") for row in invoices)
    assert len(invoices) == sum(1 for row in _rows(run) if row["type"].startswith("invoice."))

    late = json.loads(run("events", "list", "--since", "2031-03-15T00:00:00Z", "--json").stdout)
    early = json.loads(run("events", "list", "--json", "--limit", "500").stdout)
    assert 0 < len(late) < len(early) == len(ledger)
    assert all(row["received_at"] >= "2031-03-15" for row in late)

    two = json.loads(run("events", "list", "--limit", "2", "--json").stdout)
    assert [row["id"] for row in two] == [row["id"] for row in early[:2]]


def _rows(run: Callable[..., Result]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        run("events", "list", "--json", "--limit", "500").stdout
    )
    return rows


def test_list_by_status_and_the_table(
    app: App, failed: list[str], run: Callable[..., Result]
) -> None:
    rows = json.loads(run("events", "list", "--status", "failed", "--json").stdout)
    assert sorted(row["id"] for row in rows) == sorted(failed)
    assert all("welcome mail service down" in row["last_error"] for row in rows)
    both = json.loads(
        run("events", "list", "--status", "failed", "--status", "processed", "--json").stdout
    )
    wanted = {i for i, status in _ledger(app).items() if status in ("failed", "processed")}
    assert {row["id"] for row in both} == wanted
    assert len(wanted) < len(_ledger(app))  # the ignored ones are left out

    table = run("events", "list", "--status", "failed")
    assert table.exit_code == 0
    for event_id in failed:
        assert event_id in table.stdout
    assert "welcome mail service down" in table.stdout


def test_list_with_nothing_matching_says_so(app: App, run: Callable[..., Result]) -> None:
    result = run("events", "list")
    assert result.exit_code == 0
    assert result.stdout.strip() == "no events match"


def test_list_bad_options_are_usage_errors(app: App, run: Callable[..., Result]) -> None:
    assert_clean_error(run("events", "list", "--since", "yesterday"), 2, "neither a duration")
    assert_clean_error(run("events", "list", "--status", "lost"), 2, "'lost' is not one of")
    assert_clean_error(run("events", "list", "--limit", "0"), 2, "--limit")


# --------------------------------------------------------------------------- show


def test_show_prints_the_entry_and_its_payload(
    app: App, failed: list[str], run: Callable[..., Result]
) -> None:
    event_id = failed[0]
    result = run("events", "show", event_id, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["id"] == event_id
    assert shown["status"] == "failed"
    assert shown["attempts"] == 1
    assert "welcome mail service down" in shown["last_error"]
    assert shown["payload"]["id"] == event_id
    assert shown["payload"]["data"]["object"]["object"] == "subscription"

    text = run("events", "show", event_id)
    assert text.exit_code == 0
    assert "last_error" in text.stdout
    assert f'  "id": "{event_id}",' in text.stdout  # payload pretty-printed


def test_show_an_unknown_event_exits_4(app: App, run: Callable[..., Result]) -> None:
    assert_clean_error(run("events", "show", "evt_nope"), 4, "no event 'evt_nope'")


# --------------------------------------------------------------------------- replay


def test_replay_failed_events_runs_them_once_then_they_are_duplicates(
    app: App, failed: list[str], run: Callable[..., Result]
) -> None:
    still = run("events", "replay", "--status", "failed", "--json")
    assert still.exit_code == 1, still.output
    assert {row["outcome"] for row in json.loads(still.stdout)} == {"failed"}
    assert app.activated == []
    shown = json.loads(run("events", "show", failed[0], "--json").stdout)
    assert shown["attempts"] == 2

    app.failing[0] = False
    fixed = run("events", "replay", "--status", "failed")
    assert fixed.exit_code == 0, fixed.output
    assert f"{len(failed)} event(s): {len(failed)} processed" in fixed.stdout
    assert app.activated == ["user-1"]
    assert set(_ledger(app).values()) <= {"processed", "ignored", "stale"}

    again = run("events", "replay", *failed, "--json")
    assert again.exit_code == 0, again.output
    assert {row["outcome"] for row in json.loads(again.stdout)} == {"duplicate"}
    assert app.activated == ["user-1"]  # exactly once
    nothing = run("events", "replay", "--status", "failed")
    assert nothing.exit_code == 0
    assert "nothing to replay" in nothing.stdout


def test_replay_an_unknown_id_exits_4_and_still_replays_the_others(
    app: App, failed: list[str], run: Callable[..., Result]
) -> None:
    app.failing[0] = False
    result = run("events", "replay", "evt_missing", failed[0], "--json")
    assert result.exit_code == 4, result.output
    outcomes = {row["id"]: row["outcome"] for row in json.loads(result.stdout)}
    assert outcomes == {"evt_missing": "not_found", failed[0]: "processed"}


def test_replay_needs_ids_or_status_but_not_both(
    app: App, failed: list[str], run: Callable[..., Result]
) -> None:
    assert_clean_error(run("events", "replay"), 2, "give event IDs or --status")
    assert_clean_error(run("events", "replay", failed[0], "--status", "failed"), 2, "not both")
    assert_clean_error(run("events", "replay", "--status", "processed"), 2, "--status")


def test_replay_progress_shows_on_a_terminal_only(
    app: App, failed: list[str], run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    app.failing[0] = False
    quiet = run("events", "replay", *failed)
    assert quiet.exit_code == 0
    assert "replaying" not in quiet.stderr  # not a terminal: no bar

    app.failing[0] = True
    app.subscribe("user-2")
    more = app.deliver_all()
    app.failing[0] = False
    screen = io.StringIO()
    monkeypatch.setattr(
        common,
        "stderr_console",
        lambda: Console(file=screen, force_terminal=True, width=120),
    )
    result = run("events", "replay", *more)
    assert result.exit_code == 0, result.output
    drawn = screen.getvalue()
    assert "replaying" in drawn
    assert f"{len(more)}/{len(more)}" in drawn
    assert "events/s" in drawn
    assert "ETA" in drawn
