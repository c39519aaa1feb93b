"""RQ workers (real ``rq worker`` processes) applying deferred webhooks, on Redis.

The test process plays the web app: it ``receive``-s 200 signed events (each twice, in a
shuffled order) with an :class:`~billingkit.contrib.rq.RqDispatcher`; two ``rq worker``
processes (with their scheduler, ``BILLINGKIT_APP=tests.integration.queue_app:create_billing``)
apply them through ``billingkit.contrib.rq.process_event``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from tests.integration import queue_app, queue_support
from tests.integration.queue_support import WorkerProcess
from tests.stress import harness

from billingkit import Billing
from billingkit.contrib.rq import RqDispatcher
from billingkit.domain import EventStatus

pytestmark = [pytest.mark.slow, pytest.mark.redis]


@dataclass
class RqRun:
    """A database, an RQ queue on Redis, and the web side's ``Billing``."""

    url: str
    queue: Queue
    tmp: Path
    web: Billing

    def worker(self, index: int = 0, **env: str) -> WorkerProcess:
        """Start ``rq worker`` on this run's queue and database."""
        name = f"{self.queue.name}-{index}"
        return WorkerProcess(
            queue_support.rq_command(self.queue.name, queue_support.broker_url("redis"), name),
            queue_support.worker_env(
                BILLINGKIT_APP="tests.integration.queue_app:create_billing",
                BK_QUEUE_DB=self.url,
                BK_QUEUE_COUNTERS=str(self.tmp),
                **env,
            ),
            self.tmp / f"rq-{name}.log",
        )


@pytest.fixture
def rq_run(tmp_path: Path) -> Iterator[RqRun]:
    queue_support.require_broker("redis")
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    harness.prepare(url)  # type: ignore[arg-type]
    connection = Redis.from_url(queue_support.broker_url("redis"))
    queue = Queue(queue_support.unique_name("bk-rq"), connection=connection)
    web = queue_app.build_billing(url, count=False)
    web.webhooks.dispatcher = RqDispatcher(queue, result_ttl=60)
    try:
        yield RqRun(url, queue, tmp_path, web)
    finally:
        web.close()
        queue.delete(delete_jobs=True)
        connection.close()


def _receive_all(web: Billing, history: harness.History, *, copies: int, seed: int) -> Counter[str]:
    deliveries = queue_support.signed(history.events) * copies
    random.Random(seed).shuffle(deliveries)
    return Counter(web.webhooks.receive(body, header).outcome.value for body, header in deliveries)


def test_rq_workers_apply_every_received_event_exactly_once(rq_run: RqRun) -> None:
    history = harness.build_history()
    with rq_run.worker(0) as first, rq_run.worker(1) as second:
        assert _receive_all(rq_run.web, history, copies=2, seed=21) == {
            "queued": 200,
            "duplicate": 200,
        }
        queue_support.wait_until(
            queue_support.settled(rq_run.web, [str(e["id"]) for e in history.events]),
            queue_support.status_summary(rq_run.web),
            workers=[first, second],
        )
        assert first.alive() and second.alive()
    assert rq_run.web.webhooks.pending_count() == 0
    queue_support.check_applied_once(rq_run.url, history)


def test_rq_retries_a_failing_hook_with_the_ledgers_back_off_then_gives_up(
    rq_run: RqRun,
) -> None:
    history = harness.build_history()
    invoices = [str(e["id"]) for e in history.events if e["type"] == "invoice.payment_failed"]
    flaky, doomed = invoices[0], invoices[1]
    with rq_run.worker(
        BK_QUEUE_FLAKY=f"{flaky}=2,{doomed}=always",
        BK_QUEUE_MAX_ATTEMPTS="3",
        BK_QUEUE_RETRY_BASE="0.2",
    ) as worker:
        _receive_all(rq_run.web, history, copies=1, seed=22)
        queue_support.wait_until(
            queue_support.settled(rq_run.web, [str(e["id"]) for e in history.events]),
            queue_support.status_summary(rq_run.web),
            workers=[worker],
        )
    entries = queue_support.ledger(rq_run.web)
    assert entries[flaky].status is EventStatus.PROCESSED and entries[flaky].attempts == 3
    assert (rq_run.tmp / flaky).read_text() == "3"
    assert entries[doomed].status is EventStatus.DEAD and entries[doomed].attempts == 3
    assert (rq_run.tmp / doomed).read_text() == "3"
    others = {r.status for eid, r in entries.items() if eid not in (flaky, doomed)}
    assert others <= {EventStatus.PROCESSED, EventStatus.STALE, EventStatus.IGNORED}
