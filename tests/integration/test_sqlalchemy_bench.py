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
    # claim, subscription read, customer lookup, conditional write, finish (+ BEGIN on SQLite)
    assert result.statements == (6 if database == "sqlite" else 5)
    assert database in capsys.readouterr().out
