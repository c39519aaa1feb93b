"""The reconcile benchmark runs end to end (tiny n; no timing is asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench" / "reconcile.py"


def test_bench_main_runs_with_a_tiny_n(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_reconcile", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    [row] = module.main(["-n", "150"])
    assert (row["n"], row["calls"], row["rows"], row["in_sync"]) == (150, 2, 0, 150)
    assert row["checkpoints"] == 1
    assert "peak (streamed)" in capsys.readouterr().out
