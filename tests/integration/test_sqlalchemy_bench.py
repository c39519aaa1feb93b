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
    figures = _load().main(["-n", "60", "--databases", database])
    assert [name for name, _, _ in figures] == [database]
    assert all(pipeline > 0 and floor > 0 for _, pipeline, floor in figures)
    assert f"{database}" in capsys.readouterr().out
