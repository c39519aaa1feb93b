"""Exactly-once webhook processing with several processes sharing one database."""

from __future__ import annotations

import pytest
from sqlalchemy import URL
from tests.stress import harness

pytestmark = pytest.mark.slow


def _deliver_and_check(url: URL, *, processes: int, copies: int, seed: int) -> None:
    history = harness.build_history()
    harness.prepare(url)
    outcomes = harness.run(url, history, processes=processes, copies=copies, seed=seed)
    assert outcomes["duplicate"] >= len(history.events) * (copies - 1)
    harness.check(url, history, outcomes)


@pytest.mark.postgres
def test_eight_processes_on_postgresql(postgres_url: URL) -> None:
    _deliver_and_check(postgres_url, processes=8, copies=3, seed=1)


def test_four_processes_on_a_sqlite_file(sqlite_url: URL) -> None:
    _deliver_and_check(sqlite_url, processes=4, copies=2, seed=2)


@pytest.mark.mariadb
def test_eight_processes_on_mariadb(mariadb_url: URL) -> None:
    _deliver_and_check(mariadb_url, processes=8, copies=3, seed=3)
