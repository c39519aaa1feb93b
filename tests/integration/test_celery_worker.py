"""Celery workers (real processes) applying deferred webhooks, on Redis and on RabbitMQ.

The test process plays the web app: it ``receive``-s 200 signed events (each twice, in a
shuffled order) with a :class:`~billingkit.contrib.celery.CeleryDispatcher`; a
``celery worker`` (prefork, 2 processes) loads ``tests.integration.queue_app`` and applies
them through the task ``billingkit.process_event``. The ledger and the counter rows then
show every event applied exactly once.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from celery import Celery
from tests.integration import queue_app, queue_support
from tests.integration.queue_support import WorkerProcess
from tests.stress import harness

from billingkit import Billing
from billingkit.contrib.celery import TASK_NAME, CeleryDispatcher, install
from billingkit.domain import EventStatus

pytestmark = pytest.mark.slow


@dataclass
class CeleryRun:
    """A database, a Celery queue on a broker, and the web side's ``Billing``."""

    kind: str
    url: str
    queue: str
    tmp: Path
    web: Billing

    def worker(self, **env: str) -> WorkerProcess:
        """Start ``celery worker`` on this run's queue and database."""
        return WorkerProcess(
            queue_support.celery_command(self.queue),
            queue_support.worker_env(
                BK_QUEUE_DB=self.url,
                BK_CELERY_BROKER=queue_support.broker_url(self.kind),
                BK_CELERY_QUEUE=self.queue,
                BK_QUEUE_COUNTERS=str(self.tmp),
                **env,
            ),
            self.tmp / f"celery-{self.queue}.log",
        )


def _celery_run(kind: str, tmp_path: Path) -> Iterator[CeleryRun]:
    queue_support.require_broker(kind)
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    harness.prepare(url)  # type: ignore[arg-type]
    queue = queue_support.unique_name("bk-celery")
    client = Celery("billingkit_test_client", broker=queue_support.broker_url(kind))
    client.conf.update(task_default_queue=queue, broker_connection_retry_on_startup=True)
    task = install(client)
    web = queue_app.build_billing(url, count=False)
    web.webhooks.dispatcher = CeleryDispatcher(task)
    try:
        yield CeleryRun(kind, url, queue, tmp_path, web)
    finally:
        web.close()
        client.close()
        queue_support.delete_celery_queue(kind, queue)


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
    ]
)
def celery_run(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CeleryRun]:
    yield from _celery_run(request.param, tmp_path)


@pytest.fixture
def celery_redis_run(tmp_path: Path) -> Iterator[CeleryRun]:
    yield from _celery_run("redis", tmp_path)


def _receive_all(web: Billing, history: harness.History, *, copies: int, seed: int) -> Counter[str]:
    deliveries = queue_support.signed(history.events) * copies
    random.Random(seed).shuffle(deliveries)
    outcomes: Counter[str] = Counter()
    for body, header in deliveries:
        outcomes[web.webhooks.receive(body, header).outcome.value] += 1
    return outcomes


def test_a_celery_worker_applies_every_received_event_exactly_once(celery_run: CeleryRun) -> None:
    history = harness.build_history()
    with celery_run.worker() as worker:
        outcomes = _receive_all(celery_run.web, history, copies=2, seed=11)
        assert outcomes == {"queued": 200, "duplicate": 200}
        ids = [str(event["id"]) for event in history.events]
        queue_support.wait_until(
            queue_support.settled(celery_run.web, ids),
            queue_support.status_summary(celery_run.web),
            workers=[worker],
        )
        assert worker.alive(), worker.output()[-4000:]
    assert celery_run.web.webhooks.pending_count() == 0
    queue_support.check_applied_once(celery_run.url, history)


def test_celery_retries_a_failing_hook_with_the_ledgers_back_off_then_gives_up(
    celery_redis_run: CeleryRun,
) -> None:
    run = celery_redis_run
    history = harness.build_history()
    flaky, doomed = _invoice_events(history)
    with run.worker(
        BK_QUEUE_FLAKY=f"{flaky}=2,{doomed}=always",
        BK_QUEUE_MAX_ATTEMPTS="3",
        BK_QUEUE_RETRY_BASE="0.2",
    ) as worker:
        _receive_all(run.web, history, copies=1, seed=12)
        ids = [str(event["id"]) for event in history.events]
        queue_support.wait_until(
            queue_support.settled(run.web, ids),
            queue_support.status_summary(run.web),
            workers=[worker],
        )
    _check_flaky_and_doomed(run.web, run.tmp, flaky, doomed, TASK_NAME)


def _invoice_events(history: harness.History) -> tuple[str, str]:
    """Two ``invoice.payment_failed`` events (their hook is the one made to fail)."""
    invoices = [str(e["id"]) for e in history.events if e["type"] == "invoice.payment_failed"]
    return invoices[0], invoices[1]


def _check_flaky_and_doomed(web: Billing, tmp: Path, flaky: str, doomed: str, name: str) -> None:
    entries = queue_support.ledger(web)
    # failed twice, then the third attempt (a retry the queue made, not drain) succeeded
    assert entries[flaky].status is EventStatus.PROCESSED, (name, entries[flaky])
    assert entries[flaky].attempts == 3
    assert (tmp / flaky).read_text() == "3"
    # failed on each of the 3 allowed attempts, then dead: not retried any more
    assert entries[doomed].status is EventStatus.DEAD, (name, entries[doomed])
    assert entries[doomed].attempts == 3
    assert "FlakyHookError" in (entries[doomed].last_error or "")
    assert (tmp / doomed).read_text() == "3"
    others = {r.status for eid, r in entries.items() if eid not in (flaky, doomed)}
    assert others <= {EventStatus.PROCESSED, EventStatus.STALE, EventStatus.IGNORED}
    assert web.webhooks.pending_count() == 0
