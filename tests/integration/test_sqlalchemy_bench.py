"""bench/sql_webhooks.py runs end to end on a tiny number of events (no timing asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from tests.integration.databases import require_server

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sql_webhooks.py"
DEFERRED_BENCH = BENCH.with_name("deferred.py")


def _load(path: Path = BENCH) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
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
    # it): the claim inserts the ledger row with its final status, then the conditional
    # write (no read first, no finish); + BEGIN IMMEDIATE on SQLite.
    assert result.statements == (3 if database == "sqlite" else 2)
    # SQLite: WAL pages written per event, by each contender
    if database == "sqlite":
        assert result.wal_pages is not None and min(result.wal_pages) > 0
    else:
        assert result.wal_pages is None
    assert database in capsys.readouterr().out


@pytest.mark.parametrize(
    "database",
    [
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
)
def test_the_deferred_benchmark_runs(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    if database != "sqlite":
        require_server(database)
    results, workers = _load(DEFERRED_BENCH).main(
        ["-n", "100", "-r", "1", "--databases", database, "--workers", ""]
    )
    assert workers == []
    assert [(result.database, result.contender) for result in results] == [
        (database, "handle"),
        (database, "receive"),
        (database, "drain"),
    ]
    for result in results:
        assert result.rate > 0 and result.floor > 0
        assert result.ratio_low <= result.ratio <= result.ratio_high
    out = capsys.readouterr().out
    assert f"{database}: floor" in out and "drain" in out


@pytest.mark.postgres
def test_the_deferred_benchmark_drains_with_worker_processes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_server("postgres")
    chart = tmp_path / "workers.png"
    results, workers = _load(DEFERRED_BENCH).main(
        [
            "-n", "100", "-r", "1", "--databases", "", "--workers", "1,2",
            "--worker-events", "200", "--worker-rounds", "1", "--chart", str(chart),
        ]
    )  # fmt: skip
    assert results == []
    # every run checks inside that each event was applied once and nothing is left pending
    assert [result.workers for result in workers] == [1, 2]
    assert all(result.rate_low <= result.rate <= result.rate_high for result in workers)
    assert chart.read_bytes().startswith(b"\x89PNG")
    assert "2 worker(s)" in capsys.readouterr().out
