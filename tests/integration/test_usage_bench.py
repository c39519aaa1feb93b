"""bench/usage.py runs end to end on a tiny number of records (no timing asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from tests.integration.databases import require_server

BENCH = Path(__file__).resolve().parents[2] / "bench" / "usage.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_usage", BENCH)
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
    recorded, flushed = _load().main(["-n", "40", "-r", "2", "--databases", database])
    (record,) = recorded
    assert record.database == database and record.record > 0 and record.floor > 0
    assert record.ratio_low <= record.ratio <= record.ratio_high
    assert [f.repository for f in flushed] == ["memory", database]
    # one meter event request per record: the v1 endpoint takes one event per call
    assert all(f.calls_per_1000 == 1000 and f.rate > 0 for f in flushed)
    assert "record()" in capsys.readouterr().out
