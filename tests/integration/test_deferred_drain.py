"""Deferred mode on real databases: receive, then ``drain`` from several worker processes.

Every event of the stress history (``tests/stress/harness.py``) is received twice, in a
shuffled order; then two worker processes drain the ledger at once. The harness's counter
tables, written inside each event's savepoint, show every event applied exactly once, every
hook called once, and every subscription in the state of its newest event. A second test has
processes claim due events directly: no event is handed to two of them.
"""

from __future__ import annotations

import multiprocessing
import random
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import URL
from tests.stress import harness

from billingkit.adapters.sqlalchemy import SqlAlchemyRepository, upgrade
from billingkit.domain import EventRecord, EventStatus
from billingkit.services.webhooks import WebhookOutcome
from billingkit.services.webhooks import processor as webhooks

pytestmark = pytest.mark.slow

_T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
_TIMEOUT = 240


def _receive_all(url: URL, history: harness.History, seed: int) -> Counter[str]:
    deliveries = history.signed() * 2
    random.Random(seed).shuffle(deliveries)
    repository = SqlAlchemyRepository(url)
    processor = harness.build_processor(repository, history.final)
    outcomes: Counter[str] = Counter()
    try:
        for body, signature in deliveries:
            outcomes[processor.receive(body, signature).outcome.value] += 1
        assert processor.pending_count() == len(history.events)
    finally:
        repository.close()
    return outcomes


def _drain_worker(url: str, final: dict[str, dict[str, Any]], queue: Any) -> None:
    try:
        repository = SqlAlchemyRepository(url)
        processor = harness.build_processor(repository, final)
        # count every application inside the event's savepoint (a process of its own)
        webhooks.HANDLERS = harness.counted_handlers(repository)  # type: ignore[attr-defined]
        tally: Counter[str] = Counter()
        try:
            for _ in range(1000):
                result = processor.drain(batch_size=20)
                tally.update(
                    processed=result.processed,
                    stale=result.stale,
                    ignored=result.ignored,
                    failed=result.failed,
                    dead=result.dead,
                )
                if result.total == 0:
                    break
        finally:
            repository.close()
        queue.put(("ok", dict(tally)))
    except BaseException as exc:
        queue.put(("error", f"{type(exc).__name__}: {exc}"))
        raise


def _claim_worker(url: str, queue: Any) -> None:
    try:
        repository = SqlAlchemyRepository(url)
        claimed: list[str] = []
        try:
            while True:
                with repository.unit_of_work() as uow:
                    batch = uow.claim_due_events(now=_T0, limit=5)
                if not batch:
                    break
                claimed.extend(record.id for record in batch)
        finally:
            repository.close()
        queue.put(("ok", claimed))
    except BaseException as exc:
        queue.put(("error", f"{type(exc).__name__}: {exc}"))
        raise


def _run(target: Any, args: tuple[Any, ...], processes: int) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=target, args=(*args, queue)) for _ in range(processes)]
    for process in workers:
        process.start()
    results: list[Any] = []
    errors: list[str] = []
    for _ in workers:
        kind, value = queue.get(timeout=_TIMEOUT)
        (results if kind == "ok" else errors).append(value)
    for process in workers:
        process.join(timeout=60)
    assert errors == [], errors
    assert all(process.exitcode == 0 for process in workers)
    return results


def _receive_then_drain(url: URL, *, workers: int, seed: int) -> None:
    history = harness.build_history()
    harness.prepare(url)
    received = _receive_all(url, history, seed)
    assert received == {
        WebhookOutcome.QUEUED.value: len(history.events),
        WebhookOutcome.DUPLICATE.value: len(history.events),
    }
    rendered = url.render_as_string(hide_password=False)
    outcomes: Counter[str] = Counter()
    for tally in _run(_drain_worker, (rendered, history.final), workers):
        outcomes.update(tally)
    assert outcomes["failed"] == outcomes["dead"] == 0, outcomes
    harness.check(url, history, outcomes)
    repository = SqlAlchemyRepository(url)
    try:
        with repository.unit_of_work() as uow:
            assert uow.count_events(EventStatus.PENDING) == 0
            records = uow.list_events(limit=1000)
        assert {record.attempts for record in records} == {1}
    finally:
        repository.close()


@pytest.mark.postgres
def test_two_drain_workers_on_postgresql(postgres_url: URL) -> None:
    _receive_then_drain(postgres_url, workers=2, seed=11)


@pytest.mark.mariadb
def test_two_drain_workers_on_mariadb(mariadb_url: URL) -> None:
    _receive_then_drain(mariadb_url, workers=2, seed=12)


def test_two_drain_workers_on_a_sqlite_file(sqlite_url: URL) -> None:
    _receive_then_drain(sqlite_url, workers=2, seed=13)


def _claim_from_processes(url: URL) -> None:
    upgrade(url)
    repository = SqlAlchemyRepository(url)
    events = 60
    try:
        with repository.unit_of_work() as uow:
            for index in range(events):
                uow.store_pending_event(
                    EventRecord(
                        id=f"evt_{index:03d}",
                        type="customer.subscription.updated",
                        created=_T0 - timedelta(seconds=index % 7),
                        payload=b"{}",
                        received_at=_T0,
                    )
                )
    finally:
        repository.close()
    batches = _run(_claim_worker, (url.render_as_string(hide_password=False),), 4)
    claimed = [event_id for batch in batches for event_id in batch]
    assert len(claimed) == len(set(claimed)) == events


@pytest.mark.postgres
def test_processes_claiming_due_events_on_postgresql_never_share_one(postgres_url: URL) -> None:
    _claim_from_processes(postgres_url)


@pytest.mark.mariadb
def test_processes_claiming_due_events_on_mariadb_never_share_one(mariadb_url: URL) -> None:
    _claim_from_processes(mariadb_url)
