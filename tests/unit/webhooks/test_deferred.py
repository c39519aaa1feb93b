"""Deferred mode over the in-memory repository: receive, process, drain, back-off, dead, replay."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest

from billingkit.config import BillingConfig
from billingkit.domain import EventStatus, SubscriptionStatus
from billingkit.errors import (
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    RepositoryUnavailableError,
    WebhookVerificationError,
)
from billingkit.ports import Dispatcher, UnitOfWork
from billingkit.services.hooks import HookKind, SubscriptionActivated
from billingkit.services.webhooks import WebhookOutcome
from billingkit.services.webhooks.deferred import DrainResult, InlineDispatcher, RetryPolicy

from .webhook_support import OTHER_SECRET, SECRET, Harness, load

SUB = load("openapi/2026-07-29_f0758b15/subscription.json")


class Recorder:
    """A dispatcher that remembers the ids and checks the row is committed when called."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.ids: list[str] = []

    def dispatch(self, event_id: str) -> None:
        # a fresh unit of work: the memory repository refuses nesting, so this proves the
        # receiving one has exited (committed) before the dispatch
        stored = self.h.stored_event(event_id)
        assert stored is not None and stored.status is EventStatus.PENDING
        self.ids.append(event_id)


def deferred(**config: Any) -> Harness:
    config.setdefault("webhook_retry_jitter", 0.0)
    return Harness(**config)


def sub_event(h: Harness, sub_id: str = SUB["id"], **changes: Any) -> dict[str, Any]:
    return h.event("customer.subscription.created", {**SUB, "id": sub_id, **changes})


def receive(h: Harness, event: dict[str, Any]) -> Any:
    payload = json.dumps(event).encode()
    return h.processor.receive(payload, h.sign(payload))


def failing_hook(h: Harness, failures: int | None) -> list[str]:
    """A hook that fails ``failures`` times (``None``: always), then succeeds; returns calls."""
    calls: list[str] = []

    def hook(event: SubscriptionActivated) -> None:
        calls.append(event.event_id)
        if failures is None or len(calls) <= failures:
            raise RuntimeError(f"mailer down ({len(calls)})")

    h.processor.on(HookKind.SUBSCRIPTION_ACTIVATED, hook)
    return calls


# --------------------------------------------------------------------------- receive


def test_receive_stores_pending_applies_nothing_then_dispatches() -> None:
    h = deferred()
    dispatcher = Recorder(h)
    h.processor.dispatcher = dispatcher
    hooks = failing_hook(h, 0)
    event = sub_event(h)
    payload = json.dumps(event).encode()
    result = h.processor.receive(payload, h.sign(payload))
    assert (result.outcome, result.event_id, result.event_type) == (
        WebhookOutcome.QUEUED,
        event["id"],
        event["type"],
    )
    stored = h.stored_event(event["id"])
    assert stored.status is EventStatus.PENDING
    assert stored.attempts == 0 and stored.payload == payload
    assert stored.received_at == h.clock.now and stored.next_attempt_at is None
    assert h.stored_subscription(SUB["id"]) is None
    assert hooks == []
    assert dispatcher.ids == [event["id"]]
    assert h.processor.pending_count() == 1


def test_receive_duplicate_is_not_stored_or_dispatched_again() -> None:
    h = deferred()
    dispatcher = Recorder(h)
    h.processor.dispatcher = dispatcher
    event = sub_event(h)
    receive(h, event)
    before = h.snapshot()
    assert receive(h, event).outcome is WebhookOutcome.DUPLICATE
    assert h.snapshot() == before
    assert dispatcher.ids == [event["id"]]


def test_receive_without_a_dispatcher_only_stores() -> None:
    h = deferred()
    event = sub_event(h)
    assert receive(h, event).outcome is WebhookOutcome.QUEUED
    assert h.stored_event(event["id"]).status is EventStatus.PENDING
    assert h.processor.drain() == DrainResult(processed=1)
    assert h.stored_subscription(SUB["id"]) is not None


def test_receive_bad_signature_stores_nothing() -> None:
    h = deferred()
    payload = json.dumps(sub_event(h)).encode()
    before = h.snapshot()
    with pytest.raises(WebhookVerificationError):
        h.processor.receive(payload, h.sign(payload, OTHER_SECRET))
    assert h.snapshot() == before


def test_a_failing_dispatcher_still_answers_queued_and_drain_applies(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def dispatch(self, event_id: str) -> None:
            raise ConnectionError("broker down")

    h = deferred()
    h.processor.dispatcher = Broken()
    event = sub_event(h)
    with caplog.at_level(logging.ERROR, logger="billingkit.webhooks"):
        assert receive(h, event).outcome is WebhookOutcome.QUEUED
    assert "drain will apply it" in caplog.text
    assert h.processor.drain().processed == 1
    assert h.stored_event(event["id"]).status is EventStatus.PROCESSED


def test_receive_http_mapping() -> None:
    h = deferred()
    event = sub_event(h)
    payload = json.dumps(event).encode()
    ok = h.processor.receive_http(payload, h.sign(payload))
    assert ok.status == 200
    assert json.loads(ok.body) == {
        "outcome": "queued",
        "event_id": event["id"],
        "event_type": event["type"],
    }
    again = h.processor.receive_http(payload, h.sign(payload))
    assert (again.status, json.loads(again.body)["outcome"]) == (200, "duplicate")
    assert h.processor.receive_http(payload, h.sign(payload, OTHER_SECRET)).status == 400
    assert h.processor.receive_http(b"", None).status == 400


def test_receive_http_is_500_only_when_the_write_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    h = deferred()

    def down(self: UnitOfWork, record: Any) -> Any:
        raise RepositoryUnavailableError("database down")

    monkeypatch.setattr(type(h.repository.unit_of_work()), "store_pending_event", down)
    payload = json.dumps(sub_event(h)).encode()
    answer = h.processor.receive_http(payload, h.sign(payload))
    assert answer.status == 500
    assert "database down" not in answer.body


def test_handle_with_a_dispatcher_receives() -> None:
    h = deferred()
    dispatcher = Recorder(h)
    h.processor.dispatcher = dispatcher
    event = sub_event(h)
    assert h.deliver(event).outcome is WebhookOutcome.QUEUED
    assert dispatcher.ids == [event["id"]]
    payload = json.dumps(sub_event(h, "sub_other")).encode()
    assert json.loads(h.processor.handle_http(payload, h.sign(payload)).body)["outcome"] == (
        "queued"
    )
    assert h.stored_subscription(SUB["id"]) is None


def test_inline_dispatcher_processes_at_once_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = deferred()
    inline = InlineDispatcher(h.processor)
    assert isinstance(inline, Dispatcher)
    assert "InlineDispatcher" in repr(inline)
    h.processor.dispatcher = inline
    assert h.processor.dispatcher is inline
    calls = failing_hook(h, 1)
    event = sub_event(h)
    with caplog.at_level(logging.ERROR, logger="billingkit.webhooks"):
        assert receive(h, event).outcome is WebhookOutcome.QUEUED
    failed = h.stored_event(event["id"])
    assert failed.status is EventStatus.FAILED and failed.attempts == 1
    assert failed.next_attempt_at == h.clock.now + timedelta(seconds=30)
    assert "drain will retry it" in caplog.text
    h.clock.advance(30)
    other = sub_event(h, "sub_second")
    assert receive(h, other).outcome is WebhookOutcome.QUEUED
    assert h.stored_event(other["id"]).status is EventStatus.PROCESSED
    assert h.processor.drain() == DrainResult(processed=1)
    assert h.stored_event(event["id"]).status is EventStatus.PROCESSED
    assert calls == [event["id"], other["id"], event["id"]]


# --------------------------------------------------------------------------- process


def test_process_applies_once_then_duplicate() -> None:
    h = deferred()
    calls = failing_hook(h, 0)
    event = sub_event(h)
    receive(h, event)
    h.clock.advance(2)
    result = h.processor.process(event["id"])
    assert result.outcome is WebhookOutcome.PROCESSED
    assert (result.event_id, result.event_type) == (event["id"], event["type"])
    stored = h.stored_event(event["id"])
    assert stored.status is EventStatus.PROCESSED and stored.attempts == 1
    assert stored.processed_at == h.clock.now
    sub = h.stored_subscription(SUB["id"])
    assert sub is not None and sub.status is SubscriptionStatus.ACTIVE
    assert h.processor.process(event["id"]).outcome is WebhookOutcome.DUPLICATE
    assert calls == [event["id"]]
    assert h.processor.drain() == DrainResult()


def test_process_of_an_unknown_id_is_a_typed_error() -> None:
    h = deferred()
    with pytest.raises(InvalidInputError, match="evt_nope"):
        h.processor.process("evt_nope")


def test_process_ignored_type_and_stale_event() -> None:
    h = deferred()
    charge = h.event("payout.paid", {"id": "po_unknown", "object": "payout"})  # no handler
    receive(h, charge)
    assert h.processor.process(charge["id"]).outcome is WebhookOutcome.IGNORED
    created = h.clock.seconds - 10
    newer = h.event("customer.subscription.updated", SUB, created=created)
    older = h.event(
        "customer.subscription.updated", {**SUB, "status": "past_due"}, created=created - 1
    )
    receive(h, newer)
    receive(h, older)
    assert h.processor.process(newer["id"]).outcome is WebhookOutcome.PROCESSED
    assert h.processor.process(older["id"]).outcome is WebhookOutcome.STALE
    assert h.stored_event(older["id"]).status is EventStatus.STALE


def test_process_failure_backs_off_and_answers_queued_until_due() -> None:
    h = deferred()
    calls = failing_hook(h, 1)
    event = sub_event(h)
    receive(h, event)
    with pytest.raises(RuntimeError, match="mailer down"):
        h.processor.process(event["id"])
    failed = h.stored_event(event["id"])
    assert failed.status is EventStatus.FAILED and failed.attempts == 1
    assert "mailer down (1)" in (failed.last_error or "")
    assert failed.next_attempt_at == h.clock.now + timedelta(seconds=30)
    assert h.stored_subscription(SUB["id"]) is None  # rolled back
    h.clock.advance(29)
    assert h.processor.process(event["id"]).outcome is WebhookOutcome.QUEUED
    assert h.processor.drain() == DrainResult()
    h.clock.advance(1)
    assert h.processor.process(event["id"]).outcome is WebhookOutcome.PROCESSED
    assert h.stored_event(event["id"]).attempts == 2
    assert calls == [event["id"], event["id"]]


# --------------------------------------------------------------------------- drain


def test_drain_applies_in_created_order_in_batches_with_counts() -> None:
    h = deferred()
    order: list[str] = []
    h.processor.on(HookKind.SUBSCRIPTION_ACTIVATED, lambda e: order.append(e.event_id))
    base = h.clock.seconds - 100
    events = [
        h.event("customer.subscription.created", {**SUB, "id": f"sub_{i}"}, created=base + i)
        for i in range(7)
    ]
    for event in reversed(events):  # received newest first
        receive(h, event)
    charge = h.event("payout.paid", {"id": "po_unknown", "object": "payout"})  # no handler
    receive(h, charge)
    assert h.processor.pending_count() == 8
    assert h.processor.drain(limit=3, batch_size=2) == DrainResult(processed=3)
    assert order == [e["id"] for e in events[:3]]
    assert h.processor.pending_count() == 5
    result = h.processor.drain(batch_size=2)
    assert result == DrainResult(processed=4, ignored=1)
    assert result.total == 5
    assert order == [e["id"] for e in events]
    assert h.processor.pending_count() == 0
    assert h.processor.drain(limit=0) == DrainResult()


def test_drain_rolls_back_a_failing_event_alone() -> None:
    h = deferred()
    calls = failing_hook(h, 1)  # the first event's hook fails once
    first, second = sub_event(h, "sub_a"), sub_event(h, "sub_b")
    first["created"] -= 1
    receive(h, first)
    receive(h, second)
    assert h.processor.drain() == DrainResult(processed=1, failed=1)
    assert h.stored_subscription("sub_a") is None
    assert h.stored_subscription("sub_b") is not None
    assert h.stored_event(first["id"]).status is EventStatus.FAILED
    assert h.stored_event(second["id"]).status is EventStatus.PROCESSED
    assert calls == [first["id"], second["id"]]


def test_drain_rejects_bad_arguments() -> None:
    h = deferred()
    for kwargs in ({"batch_size": 0}, {"batch_size": True}, {"limit": -1}, {"limit": 1.5}):
        with pytest.raises(InvalidInputError):
            h.processor.drain(**kwargs)


def test_a_repository_failure_in_drain_rolls_the_batch_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = deferred()
    failing_hook(h, None)
    event = sub_event(h)
    receive(h, event)

    def down(self: UnitOfWork, event_id: str, **kwargs: Any) -> None:
        raise RepositoryUnavailableError("lost the connection")

    monkeypatch.setattr(type(h.repository.unit_of_work()), "schedule_event_retry", down)
    with pytest.raises(RepositoryUnavailableError):
        h.processor.drain()
    stored = h.stored_event(event["id"])
    assert stored.status is EventStatus.PENDING and stored.attempts == 0


# ---------------------------------------------------------------- back-off, dead, replay


def test_hook_failing_n_times_then_succeeding_backs_off_exponentially() -> None:
    h = deferred(webhook_retry_base_seconds=10, webhook_retry_max_seconds=35)
    calls = failing_hook(h, 4)
    event = sub_event(h)
    receive(h, event)
    delays = []
    for attempt in range(1, 5):
        assert h.processor.drain() == DrainResult(failed=1)
        stored = h.stored_event(event["id"])
        assert stored.attempts == attempt and stored.status is EventStatus.FAILED
        assert stored.next_attempt_at is not None
        delay = stored.next_attempt_at - h.clock.now
        delays.append(delay.total_seconds())
        h.clock.now = stored.next_attempt_at - timedelta(seconds=1)
        assert h.processor.drain() == DrainResult()  # not due yet
        h.clock.advance(1)
    assert delays == [10, 20, 35, 35]
    assert h.processor.drain() == DrainResult(processed=1)
    done = h.stored_event(event["id"])
    assert done.status is EventStatus.PROCESSED and done.attempts == 5
    assert calls == [event["id"]] * 5
    sub = h.stored_subscription(SUB["id"])
    assert sub is not None and sub.status is SubscriptionStatus.ACTIVE


def test_hook_always_failing_ends_dead_and_replay_revives_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = deferred(webhook_max_attempts=3)
    calls = failing_hook(h, None)
    event = sub_event(h)
    receive(h, event)
    outcomes = []
    with caplog.at_level(logging.WARNING, logger="billingkit.webhooks"):
        for _ in range(5):
            outcomes.append(h.processor.drain())
            h.clock.advance(3600)
    assert (
        outcomes
        == [DrainResult(failed=1), DrainResult(failed=1), DrainResult(dead=1)] + [DrainResult()] * 2
    )
    dead = h.stored_event(event["id"])
    assert dead.status is EventStatus.DEAD and dead.attempts == 3
    assert dead.next_attempt_at is None and "mailer down (3)" in (dead.last_error or "")
    assert "is dead" in caplog.text
    assert h.processor.event_count(EventStatus.DEAD) == 1
    assert h.processor.process(event["id"]).outcome is WebhookOutcome.DUPLICATE
    assert len(calls) == 3
    # replayed while the cause persists: one more attempt, dead again
    with pytest.raises(RuntimeError):
        h.processor.replay(event["id"])
    assert h.stored_event(event["id"]).status is EventStatus.DEAD
    assert h.stored_event(event["id"]).attempts == 4
    # a longer policy set at run time gives the revived event room for more attempts
    h.processor.retry_policy = RetryPolicy(max_attempts=10, base_seconds=1, jitter=0.0)
    assert h.processor.retry_policy.max_attempts == 10
    with pytest.raises(RuntimeError):
        h.processor.replay(event["id"])
    again = h.stored_event(event["id"])
    assert again.status is EventStatus.FAILED and again.attempts == 5
    assert len(calls) == 5


def test_replay_of_a_fixed_dead_event_processes_it() -> None:
    h = deferred(webhook_max_attempts=1)
    broken = [True]

    def hook(event: SubscriptionActivated) -> None:
        if broken[0]:
            raise RuntimeError("bug")

    h.processor.on(HookKind.SUBSCRIPTION_ACTIVATED, hook)
    event = sub_event(h)
    receive(h, event)
    assert h.processor.drain() == DrainResult(dead=1)
    broken[0] = False
    assert h.processor.drain() == DrainResult()  # dead is never retried automatically
    assert h.processor.replay(event["id"]).outcome is WebhookOutcome.PROCESSED
    assert h.stored_event(event["id"]).status is EventStatus.PROCESSED
    assert h.processor.replay(event["id"]).outcome is WebhookOutcome.DUPLICATE
    with pytest.raises(InvalidInputError):
        h.processor.replay("evt_missing")


def test_monitoring_counts_and_oldest_pending_age() -> None:
    h = deferred()
    assert h.processor.oldest_pending_age() is None
    assert h.processor.pending_count() == 0
    receive(h, sub_event(h, "sub_1"))
    h.clock.advance(40)
    receive(h, sub_event(h, "sub_2"))
    h.clock.advance(5)
    assert h.processor.oldest_pending_age() == timedelta(seconds=45)
    assert h.processor.pending_count() == 2
    assert h.processor.event_count(EventStatus.PROCESSED) == 0
    h.processor.drain(limit=1)
    assert h.processor.oldest_pending_age() == timedelta(seconds=5)
    assert h.processor.event_count(EventStatus.PROCESSED) == 1


# --------------------------------------------------------------------------- policy, config


def test_retry_policy_doubles_caps_and_jitters_down() -> None:
    policy = RetryPolicy(max_attempts=4, base_seconds=30, max_seconds=100, jitter=0.5)
    fixed = RetryPolicy(max_attempts=4, base_seconds=30, max_seconds=100, jitter=0.0)
    assert [fixed.delay(n).total_seconds() for n in (0, 1, 2, 3, 4, 500)] == [
        30,
        30,
        60,
        100,
        100,
        100,
    ]
    low = RetryPolicy(base_seconds=30, max_seconds=100, jitter=0.5, random=lambda: 1.0)
    high = RetryPolicy(base_seconds=30, max_seconds=100, jitter=0.5, random=lambda: 0.0)
    assert low.delay(2).total_seconds() == 30 and high.delay(2).total_seconds() == 60
    for _ in range(50):
        assert 15 <= policy.delay(1).total_seconds() <= 30
    assert [policy.gives_up(n) for n in (1, 3, 4, 5)] == [False, False, True, True]


def test_retry_settings_come_from_the_config() -> None:
    config = BillingConfig(
        webhook_secrets=SECRET,
        webhook_max_attempts=5,
        webhook_retry_base_seconds=2,
        webhook_retry_max_seconds=60,
        webhook_retry_jitter=0.1,
    )
    policy = RetryPolicy.from_config(config)
    assert (policy.max_attempts, policy.base_seconds, policy.max_seconds, policy.jitter) == (
        5,
        2,
        60,
        0.1,
    )
    defaults = BillingConfig()
    assert (defaults.webhook_max_attempts, defaults.webhook_retry_jitter) == (8, 0.2)


@pytest.mark.parametrize(
    "settings",
    [
        {"webhook_max_attempts": 0},
        {"webhook_retry_base_seconds": 0},
        {"webhook_retry_jitter": 1.5},
        {"webhook_retry_jitter": -0.1},
        {"webhook_retry_base_seconds": 100, "webhook_retry_max_seconds": 50},
    ],
)
def test_bad_retry_settings_are_configuration_errors(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        BillingConfig(**settings)


def test_a_retryable_repository_error_reruns_the_whole_batch() -> None:
    h = deferred()
    calls: list[str] = []

    def hook(event: SubscriptionActivated) -> None:
        calls.append(event.event_id)
        if len(calls) == 2:  # the second event of the first run: a deadlock, say
            raise RepositoryUnavailableError("deadlock detected")

    h.processor.on(HookKind.SUBSCRIPTION_ACTIVATED, hook)
    first, second = sub_event(h, "sub_a"), sub_event(h, "sub_b")
    first["created"] -= 1
    receive(h, first)
    receive(h, second)
    assert h.processor.drain() == DrainResult(processed=2)
    # the first event's work was rolled back with the batch and applied again
    assert calls == [first["id"], second["id"], first["id"], second["id"]]
    assert h.stored_event(first["id"]).attempts == 1


def test_a_non_retryable_repository_error_fails_the_event_alone() -> None:
    h = deferred()

    def hook(event: SubscriptionActivated) -> None:
        raise ConflictError("the app's own unique rule")

    h.processor.on(HookKind.SUBSCRIPTION_ACTIVATED, hook)
    event = sub_event(h)
    receive(h, event)
    assert h.processor.drain() == DrainResult(failed=1)
    assert "ConflictError" in (h.stored_event(event["id"]).last_error or "")


def test_a_failure_that_cannot_be_recorded_is_logged_and_the_error_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    h = deferred()
    failing_hook(h, None)
    event = sub_event(h)
    receive(h, event)

    def down(self: UnitOfWork, record: Any, error: str) -> Any:
        raise RepositoryUnavailableError("database down")

    monkeypatch.setattr(type(h.repository.unit_of_work()), "mark_event_failed", down)
    with (
        caplog.at_level(logging.ERROR, logger="billingkit.webhooks"),
        pytest.raises(RuntimeError, match="mailer down"),
    ):
        h.processor.process(event["id"])
    assert "could not record the failure" in caplog.text
    stored = h.stored_event(event["id"])
    assert stored.status is EventStatus.PENDING and stored.attempts == 0


def test_a_claim_that_fails_records_nothing_and_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    h = deferred()
    event = sub_event(h)
    receive(h, event)

    def down(self: UnitOfWork, event_id: str, *, now: Any) -> Any:
        raise RepositoryUnavailableError("database down")

    monkeypatch.setattr(type(h.repository.unit_of_work()), "claim_stored_event", down)
    with pytest.raises(RepositoryUnavailableError):
        h.processor.process(event["id"])
    stored = h.stored_event(event["id"])
    assert stored.status is EventStatus.PENDING and stored.attempts == 0
