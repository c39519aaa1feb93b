"""``billingkit migrate`` on a SQLite file: --check, --sql, upgrade, and non-SQL repositories."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

from billingkit import Billing
from billingkit.adapters.sqlalchemy import SqlAlchemyRepository, metadata

from .cli_support import App, assert_clean_error, build_app, install

VERSION_TABLE = "billingkit_alembic_version"


@pytest.fixture
def sql_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    database = tmp_path / "billing.db"
    base = build_app()
    repository = SqlAlchemyRepository(f"sqlite:///{database}")
    billing = Billing.build(base.billing.config, base.stripe, repository, clock=base.stripe.now)
    install(monkeypatch, billing)
    yield database
    repository.close()


def _tables(database: Path) -> set[str]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    return {name for (name,) in rows}


def test_check_sql_then_migrate_then_check(sql_app: Path, run: Callable[..., Result]) -> None:
    pending = run("migrate", "--check")
    assert pending.exit_code == 1, pending.output
    assert "migration(s) pending" in pending.stdout
    assert "bk0001" in pending.stdout

    as_json = json.loads(run("migrate", "--check", "--json").stdout)
    assert as_json["at_head"] is False
    assert as_json["current"] == []
    pending_revisions = [p["revision"] for p in as_json["pending"]]
    # oldest first, from the first revision to every head
    assert pending_revisions[0] == "bk0001"
    assert set(as_json["heads"]) <= set(pending_revisions)
    if len(as_json["heads"]) == 1:  # one chain (branches are re-chained when merged)
        assert pending_revisions == sorted(pending_revisions)
        assert pending_revisions[-1:] == as_json["heads"]

    sql = run("migrate", "--sql")
    assert sql.exit_code == 0, sql.output
    for table in [*metadata.tables, VERSION_TABLE]:
        assert f"CREATE TABLE {table}" in sql.stdout, table
    assert _tables(sql_app) == set()  # neither --check nor --sql applied anything

    applied = run("migrate", "--json")
    assert applied.exit_code == 0, applied.output
    state = json.loads(applied.stdout)
    assert state["at_head"] is True
    assert state["current"] == state["heads"]
    assert state["applied"] == pending_revisions
    assert VERSION_TABLE in _tables(sql_app)

    at_head = run("migrate", "--check")
    assert at_head.exit_code == 0, at_head.output
    assert "at head" in at_head.stdout
    again = run("migrate")
    assert again.exit_code == 0
    assert "already at head" in again.stdout
    nothing = run("migrate", "--sql")
    assert nothing.exit_code == 0
    assert nothing.stdout.startswith("-- billingkit tables already at head")


def test_the_migrated_database_works_with_the_events_commands(
    sql_app: Path, run: Callable[..., Result]
) -> None:
    assert run("migrate").exit_code == 0
    listed = run("events", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == []


def test_an_unmigrated_database_gives_a_database_error_not_a_traceback(
    sql_app: Path, run: Callable[..., Result]
) -> None:
    assert_clean_error(run("events", "list"), 3, "database error")


def test_bad_flag_combinations_are_usage_errors(sql_app: Path, run: Callable[..., Result]) -> None:
    assert_clean_error(run("migrate", "--check", "--sql"), 2, "cannot be combined")
    assert_clean_error(run("migrate", "--sql", "--json"), 2, "cannot be combined")


def test_a_repository_without_sql_explains_there_is_nothing_to_migrate(
    app: App, run: Callable[..., Result]
) -> None:
    assert_clean_error(
        run("migrate", "--check"), 2, "needs a SqlAlchemyRepository", "InMemoryRepository"
    )


def test_an_unreachable_database_exits_3_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, run: Callable[..., Result]
) -> None:
    base = build_app()
    repository = SqlAlchemyRepository(f"sqlite:///{tmp_path / 'missing-dir' / 'billing.db'}")
    install(monkeypatch, Billing.build(base.billing.config, base.stripe, repository))
    assert_clean_error(
        run("migrate", "--check"), 3, "could not read the migration state", "OperationalError"
    )
