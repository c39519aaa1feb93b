"""billingkit.contrib.rq in-process: the job function, its retries and the dispatcher.

Jobs run synchronously here (``Queue(is_async=False)``, still on the real Redis); the
worker-process tests are in ``test_rq_worker.py``.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from redis import Redis
from rq import Queue
from rq.registry import ScheduledJobRegistry
from tests.integration import queue_support
from tests.integration.queue_support import MemoryApp
from tests.stress import harness

from billingkit import Billing
from billingkit._discovery import AppNotFoundError
from billingkit.contrib import rq as bk_rq
from billingkit.contrib.rq import JOB_FUNCTION, RqDispatcher, configure, process_event
from billingkit.domain import EventStatus
from billingkit.errors import ConfigurationError, InvalidInputError


@pytest.fixture
def app() -> Iterator[MemoryApp]:
    app = queue_support.memory_app(harness.build_history())
    configure(app.billing)
    yield app
    configure(None)


@pytest.fixture
def sync_queue() -> Iterator[Queue]:
    queue_support.require_broker("redis")
    connection = Redis.from_url(queue_support.broker_url("redis"))
    queue = Queue(queue_support.unique_name("bk-rq-sync"), connection=connection, is_async=False)
    yield queue
    _scheduled(queue).cleanup()
    queue.delete(delete_jobs=True)
    connection.close()


def _scheduled(queue: Queue) -> ScheduledJobRegistry:
    return ScheduledJobRegistry(queue=queue)  # type: ignore[no-untyped-call]


def _event() -> dict[str, object]:
    return dict(queue_support.first_event_of(harness.build_history(), "invoice.payment_failed"))


def test_process_event_applies_a_stored_event_once(app: MemoryApp) -> None:
    event_id = app.store(_event())
    assert process_event(event_id) == "processed"
    assert process_event(event_id) == "duplicate"
    assert app.calls == [(event_id, "payment_failed")]
    with pytest.raises(InvalidInputError):
        process_event("evt_not_in_the_ledger")


@pytest.mark.redis
def test_receive_with_the_rq_dispatcher_runs_the_job(app: MemoryApp, sync_queue: Queue) -> None:
    dispatcher = RqDispatcher(sync_queue, result_ttl=60)
    assert repr(dispatcher) == f"RqDispatcher(queue={sync_queue.name!r})"
    app.billing.webhooks.dispatcher = dispatcher
    event = _event()
    assert app.billing.webhooks.receive(*app.sign(event)).outcome.value == "queued"
    assert app.calls == [(event["id"], "payment_failed")]
    assert queue_support.ledger(app.billing)[str(event["id"])].status is EventStatus.PROCESSED
    job = sync_queue.fetch_job(sync_queue.job_ids[0]) if sync_queue.job_ids else None
    assert job is None  # ran at once: nothing left on the queue


@pytest.mark.redis
def test_a_failed_job_schedules_its_retry_at_the_ledgers_next_attempt(
    app: MemoryApp, sync_queue: Queue
) -> None:
    app.billing.webhooks.dispatcher = RqDispatcher(sync_queue)
    event = _event()
    event_id = str(event["id"])
    app.failing[event_id] = 1
    before = datetime.now(timezone.utc)
    app.billing.webhooks.receive(*app.sign(event))
    record = queue_support.ledger(app.billing)[event_id]
    assert record.status is EventStatus.FAILED and record.next_attempt_at is not None
    registry = _scheduled(sync_queue)
    [job_id] = registry.get_job_ids()
    retry = sync_queue.fetch_job(job_id)
    assert retry is not None
    assert retry.func_name == JOB_FUNCTION and tuple(retry.args) == (event_id,)
    assert retry.meta["billingkit_retries"] == 1
    delay = record.next_attempt_at - app.clock.now  # 60 s (no jitter)
    scheduled = registry.get_scheduled_time(job_id)
    assert before + delay - timedelta(seconds=2) <= scheduled
    assert scheduled <= datetime.now(timezone.utc) + delay + timedelta(seconds=2)
    # the retry job, run once the back-off has passed, applies the event
    app.clock.now = record.next_attempt_at
    assert retry.perform() == "processed"
    assert app.calls == [(event_id, "payment_failed")]


@pytest.mark.redis
def test_a_dead_event_schedules_no_retry(app: MemoryApp, sync_queue: Queue) -> None:
    app.billing.webhooks.dispatcher = RqDispatcher(sync_queue)
    event = _event()
    event_id = str(event["id"])
    app.failing[event_id] = -1
    app.billing.webhooks.receive(*app.sign(event))  # attempt 1: fails, retry scheduled
    registry = _scheduled(sync_queue)
    for attempt in (2, 3):
        [job_id] = registry.get_job_ids()
        retry = sync_queue.fetch_job(job_id)
        assert retry is not None
        registry.remove(retry)
        app.clock.advance(timedelta(hours=1))
        ran = sync_queue.enqueue_job(retry)  # runs now, as the worker would
        assert ran.is_failed
        assert queue_support.ledger(app.billing)[event_id].attempts == attempt
    assert queue_support.ledger(app.billing)[event_id].status is EventStatus.DEAD
    assert registry.get_job_ids() == []  # the third failure made it dead: no retry
    assert app.calls == []


@pytest.mark.redis
def test_when_the_ledger_cannot_be_read_or_redis_refuses_the_retry(
    app: MemoryApp,
    sync_queue: Queue,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def unreadable(*_args: object) -> float | None:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(bk_rq, "retry_countdown", unreadable)
    event_id = app.store(_event())
    app.failing[event_id] = 2
    before = datetime.now(timezone.utc)
    first = sync_queue.enqueue_call(JOB_FUNCTION, args=(event_id,))
    after = datetime.now(timezone.utc)
    assert first.is_failed
    registry = _scheduled(sync_queue)
    [job_id] = registry.get_job_ids()
    retry = sync_queue.fetch_job(job_id)
    assert retry is not None and retry.meta["billingkit_retries"] == 1
    # RQ's own back-off: 2 s after the failure (stored to the second)
    scheduled = registry.get_scheduled_time(job_id)
    assert before + timedelta(seconds=1) <= scheduled <= after + timedelta(seconds=3)

    def refused(*_args: object, **_kwargs: object) -> None:
        raise ConnectionError("redis went away")

    registry.remove(retry)
    app.clock.advance(timedelta(hours=1))
    monkeypatch.setattr(Queue, "enqueue_in", refused)
    with caplog.at_level(logging.ERROR, logger="billingkit.contrib.rq"):
        assert sync_queue.enqueue_job(retry).is_failed
    assert f"could not schedule the retry of event {event_id}; drain will" in caplog.text
    assert registry.get_job_ids() == []


@pytest.mark.redis
def test_a_job_for_an_event_not_due_yet_is_scheduled_again(
    app: MemoryApp, sync_queue: Queue
) -> None:
    event_id = app.store(_event())
    app.failing[event_id] = 1
    with pytest.raises(RuntimeError):
        process_event(event_id)  # no job: nothing scheduled
    registry = _scheduled(sync_queue)
    assert registry.get_job_ids() == []
    early = sync_queue.enqueue_call(JOB_FUNCTION, args=(event_id,))
    assert early.return_value() == "queued"
    [job_id] = registry.get_job_ids()
    assert job_id != early.id
    assert app.calls == []


def test_configure_takes_a_billing_a_factory_or_none(
    app: MemoryApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[Billing] = []
    closed: list[Billing] = []

    class Closing(Billing):
        def close(self) -> None:
            closed.append(self)

    def factory() -> Billing:
        billing = Closing(**{f: getattr(app.billing, f) for f in app.billing.__dataclass_fields__})
        built.append(billing)
        return billing

    configure(factory)
    event_id = app.store(_event())
    assert process_event(event_id) == "processed"
    assert process_event(event_id) == "duplicate"
    assert len(built) == 1  # once, on the first job
    configure(None)  # back to BILLINGKIT_APP: the factory's Billing is closed
    assert closed == built
    monkeypatch.delenv("BILLINGKIT_APP", raising=False)
    with pytest.raises(AppNotFoundError, match="BILLINGKIT_APP"):
        process_event(event_id)
    holder = type(sys)("bk_rq_glue_app")
    holder.create_billing = lambda: app.billing  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bk_rq_glue_app", holder)
    monkeypatch.setenv("BILLINGKIT_APP", "bk_rq_glue_app")
    assert process_event(event_id) == "duplicate"
    with pytest.raises(ConfigurationError, match="not str"):
        configure("bk_rq_glue_app")  # type: ignore[arg-type]


def test_an_unreachable_redis_leaves_the_event_pending_for_drain(
    app: MemoryApp, caplog: pytest.LogCaptureFixture
) -> None:
    connection = Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    app.billing.webhooks.dispatcher = RqDispatcher(Queue("unreachable", connection=connection))
    event = _event()
    with caplog.at_level(logging.ERROR, logger="billingkit.contrib.rq"):
        assert app.billing.webhooks.receive(*app.sign(event)).outcome.value == "queued"
    assert f"could not send event {event['id']} to RQ" in caplog.text
    assert app.billing.webhooks.pending_count() == 1
    assert app.billing.webhooks.drain().processed == 1


def test_without_rq_the_module_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name == "billingkit.contrib.rq" or name.split(".")[0] == "rq":
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rq", None)
    with pytest.raises(ConfigurationError, match=r'pip install "billingkit\[rq\]"'):
        importlib.import_module("billingkit.contrib.rq")
    assert bk_rq.JOB_FUNCTION == "billingkit.contrib.rq.process_event"
