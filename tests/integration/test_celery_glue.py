"""billingkit.contrib.celery in-process: the task, its retries and the dispatcher (no broker)."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
from celery import Celery
from celery.exceptions import Retry
from tests.integration import queue_support
from tests.integration.queue_support import MemoryApp
from tests.stress import harness

from billingkit import Billing
from billingkit._discovery import AppNotFoundError
from billingkit.contrib import celery as celery_glue
from billingkit.contrib._worker import retry_countdown
from billingkit.contrib.celery import TASK_NAME, CeleryDispatcher, install
from billingkit.domain import EventStatus
from billingkit.errors import ConfigurationError, InvalidInputError

INVOICE_FAILED = "invoice.payment_failed"


@pytest.fixture
def app() -> MemoryApp:
    return queue_support.memory_app(harness.build_history())


@pytest.fixture
def eager() -> Iterator[Celery]:
    celery = Celery("billingkit_eager_tests")
    celery.conf.update(task_always_eager=True)
    yield celery
    celery.close()


def _event(history_type: str = INVOICE_FAILED) -> dict[str, object]:
    return dict(queue_support.first_event_of(harness.build_history(), history_type))


def test_install_registers_the_named_task_on_the_apps_own_celery_app(app: MemoryApp) -> None:
    celery = Celery("mine")
    task = install(celery, app.billing)
    assert task.name == TASK_NAME == "billingkit.process_event"
    assert celery.tasks[TASK_NAME].name == TASK_NAME  # registered on this app, not another
    assert task.acks_late and task.reject_on_worker_lost
    other = install(Celery("theirs"), app.billing, name="shop.billing_event", rate_limit="10/s")
    assert other.name == "shop.billing_event" and other.rate_limit == "10/s"
    assert repr(CeleryDispatcher(task)) == "CeleryDispatcher(task='billingkit.process_event')"


def test_two_celery_apps_keep_their_own_billing(app: MemoryApp) -> None:
    other = queue_support.memory_app(harness.build_history())
    first, second = Celery("first"), Celery("second")
    install(first, app.billing)
    install(second, other.billing)
    event_id = app.store(_event())  # in the first app's ledger only
    with pytest.raises(InvalidInputError):
        second.tasks[TASK_NAME](event_id)
    assert first.tasks[TASK_NAME](event_id) == "processed"
    assert other.calls == [] and app.calls == [(event_id, "payment_failed")]


def test_the_task_processes_a_stored_event_once(app: MemoryApp) -> None:
    task = install(Celery("t"), app.billing)
    event_id = app.store(_event())
    assert task(event_id) == "processed"
    assert task(event_id) == "duplicate"
    assert app.calls == [(event_id, "payment_failed")]
    with pytest.raises(InvalidInputError):
        task("evt_not_in_the_ledger")


def test_receive_with_the_celery_dispatcher_runs_the_task(app: MemoryApp, eager: Celery) -> None:
    app.billing.webhooks.dispatcher = CeleryDispatcher(install(eager, app.billing))
    event = _event()
    result = app.billing.webhooks.receive(*app.sign(event))
    assert result.outcome.value == "queued"
    assert app.calls == [(event["id"], "payment_failed")]
    assert queue_support.ledger(app.billing)[str(event["id"])].status is EventStatus.PROCESSED
    assert app.billing.webhooks.pending_count() == 0


def test_a_failing_hook_is_retried_at_the_ledgers_next_attempt_until_it_succeeds(
    app: MemoryApp, eager: Celery
) -> None:
    task = install(eager, app.billing, clock=app.clock)
    event_id = app.store(_event())
    app.clock.tick = timedelta(hours=1)  # each retry comes after the back-off: due at once
    app.failing[event_id] = 2
    outcome = task.apply(args=(event_id,))
    assert outcome.get() == "processed"
    record = queue_support.ledger(app.billing)[event_id]
    assert record.status is EventStatus.PROCESSED and record.attempts == 3
    assert app.calls == [(event_id, "payment_failed")]


def test_an_always_failing_hook_ends_dead_and_the_task_stops_retrying(
    app: MemoryApp, eager: Celery
) -> None:
    task = install(eager, app.billing, clock=app.clock)
    event_id = app.store(_event())
    app.clock.tick = timedelta(hours=1)
    app.failing[event_id] = -1
    outcome = task.apply(args=(event_id,))
    assert outcome.failed()
    assert isinstance(outcome.result, RuntimeError)
    record = queue_support.ledger(app.billing)[event_id]
    assert record.status is EventStatus.DEAD and record.attempts == 3
    assert app.calls == []


def test_a_retry_that_comes_too_early_waits_for_the_back_off(app: MemoryApp) -> None:
    # Called directly (not by a worker), Celery's retry re-raises instead of re-sending.
    task = install(Celery("t"), app.billing, clock=app.clock)
    event_id = app.store(_event())
    app.failing[event_id] = 1
    with pytest.raises(RuntimeError, match="fails"):
        task(event_id)
    record = queue_support.ledger(app.billing)[event_id]
    assert record.status is EventStatus.FAILED and record.next_attempt_at is not None
    with pytest.raises(Retry):
        task(event_id)  # not due yet: the task asks to be retried, nothing is applied
    assert app.calls == []
    app.clock.now = record.next_attempt_at
    assert task(event_id) == "processed"


def test_the_billing_can_be_a_factory_or_a_target(app: MemoryApp) -> None:
    built: list[Billing] = []

    def factory() -> Billing:
        built.append(app.billing)
        return app.billing

    task = install(Celery("t"), factory)
    event_id = app.store(_event())
    assert task(event_id) == "processed"
    assert task(event_id) == "duplicate"
    assert built == [app.billing]  # built once, on the first task

    with pytest.raises(AppNotFoundError, match="has no attribute 'nope'"):
        install(Celery("t"), "tests.integration.queue_app:nope")(event_id)
    with pytest.raises(ConfigurationError, match="returned a str"):
        install(Celery("t"), lambda: "no")(event_id)  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigurationError, match="not int"):
        install(Celery("t"), 42)  # type: ignore[arg-type]


def test_without_a_billing_the_worker_finds_it_through_billingkit_app(
    app: MemoryApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = install(Celery("t"))
    event_id = app.store(_event())
    monkeypatch.delenv("BILLINGKIT_APP", raising=False)
    with pytest.raises(AppNotFoundError, match="BILLINGKIT_APP"):
        task(event_id)
    holder = type(sys)("bk_celery_glue_app")
    holder.billing = app.billing  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bk_celery_glue_app", holder)
    monkeypatch.setenv("BILLINGKIT_APP", "bk_celery_glue_app")
    assert task(event_id) == "processed"


def test_an_unreachable_broker_leaves_the_event_pending_for_drain(
    app: MemoryApp, caplog: pytest.LogCaptureFixture
) -> None:
    celery = Celery("t", broker="redis://127.0.0.1:1/0")
    celery.conf.update(task_publish_retry=False, broker_connection_timeout=1)
    app.billing.webhooks.dispatcher = CeleryDispatcher(install(celery, app.billing))
    event = _event()
    with caplog.at_level(logging.ERROR, logger="billingkit.contrib.celery"):
        result = app.billing.webhooks.receive(*app.sign(event))
    assert result.outcome.value == "queued"
    assert f"could not send event {event['id']} to Celery" in caplog.text
    assert app.billing.webhooks.pending_count() == 1
    assert app.billing.webhooks.drain().processed == 1
    assert app.calls == [(event["id"], "payment_failed")]


def test_without_celery_the_module_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name == "billingkit.contrib.celery" or name.split(".")[0] == "celery":
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "celery", None)
    with pytest.raises(ConfigurationError, match=r'pip install "billingkit\[celery\]"'):
        importlib.import_module("billingkit.contrib.celery")


def test_the_retry_countdown_follows_the_ledger(app: MemoryApp) -> None:
    now = app.clock.now
    assert retry_countdown(app.billing, "evt_unknown", now) is None
    pending = app.store(_event())
    assert retry_countdown(app.billing, pending, now) == 0.0  # not recorded: caller backs off
    app.failing[pending] = 1
    with pytest.raises(RuntimeError):
        app.billing.webhooks.process(pending)
    assert retry_countdown(app.billing, pending, now) == 60.0  # webhook_retry_base_seconds
    assert retry_countdown(app.billing, pending, now + timedelta(hours=1)) == 0.0
    app.clock.advance(timedelta(hours=1))
    app.billing.webhooks.process(pending)
    assert retry_countdown(app.billing, pending, now) is None  # processed: nothing to retry


def test_when_the_ledger_cannot_be_read_celery_backs_off_on_its_own(
    app: MemoryApp, eager: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreadable(*_args: object) -> float | None:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(celery_glue, "retry_countdown", unreadable)
    task = install(eager, app.billing, max_retries=3)
    event_id = app.store(_event())
    app.failing[event_id] = 1
    app.clock.tick = timedelta(hours=1)
    assert task.apply(args=(event_id,)).get() == "processed"
    assert queue_support.ledger(app.billing)[event_id].attempts == 2
