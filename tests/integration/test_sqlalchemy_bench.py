"""bench/sql_webhooks.py runs end to end on a tiny number of events (no timing asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from tests.integration.databases import require_server

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sql_webhooks.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_sql_webhooks", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_benchmark_runs(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    if database == "postgres":
        require_server("postgres")
    figures = _load().main(["-n", "60", "-r", "2", "--databases", database])
    assert [result.database for result in figures] == [database]
    (result,) = figures
    assert result.pipeline > 0 and result.floor > 0
    assert result.ratio_low <= result.ratio <= result.ratio_high
    # The bench's subscriptions carry their user in metadata (as billingkit's checkout sets
    # it): claim, conditional write (no read first), finish; + BEGIN IMMEDIATE on SQLite.
    assert result.statements == (4 if database == "sqlite" else 3)
    # SQLite: WAL pages written per event, by each contender
    if database == "sqlite":
        assert result.wal_pages is not None and min(result.wal_pages) > 0
    else:
        assert result.wal_pages is None
    assert database in capsys.readouterr().out
