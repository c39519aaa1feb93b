"""The webhook benchmark runs end to end (tiny N; no timing is asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench" / "webhooks.py"


def test_bench_main_runs_with_a_tiny_n(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_webhooks", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["-n", "30", "-r", "1"])
    assert set(results) >= {"pipeline", "construct_event", "hmac+json"}
    # with the fast extra (a dev dependency) the stdlib parse is measured alongside
    assert "pipeline (json)" in results and "pipeline (json) / hmac+json" in results
    assert all(rate > 0 for rate in results.values())
    out = capsys.readouterr().out
    assert "30 events of" in out and "pipeline / construct_event" in out
