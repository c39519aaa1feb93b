"""Deferred mode through ``WebhookProcessor`` on SQLite, PostgreSQL and MariaDB.

Receive, process and drain on a real database: a failing event rolls back to its savepoint
while the rest of its batch commits, back-off under a hook that fails twice then succeeds,
dead after the last attempt, replay. What the hooks write through the unit of work's
connection commits or rolls back with the event.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    NestedTransaction,
    String,
    Table,
    select,
)
from sqlalchemy.exc import OperationalError
from tests.integration.databases import database_url, migrated_repository, sql_repository

from billingkit.adapters.sqlalchemy import SqlAlchemyRepository
from billingkit.config import BillingConfig
from billingkit.domain import EventStatus, SubscriptionStatus
from billingkit.errors import RepositoryUnavailableError
from billingkit.services.hooks import HookKind, SubscriptionActivated
from billingkit.services.webhooks import DrainResult, WebhookOutcome, WebhookProcessor
from billingkit.testing import build_event, sign_payload

__all__ = ["database_url", "migrated_repository", "sql_repository"]

SECRET = "whsec_deferred_sql"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)

_marks = MetaData()
MARKS = Table(
    "deferred_marks",
    _marks,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
)


class _Catalog:
    def plan_key_for_price(self, price_id: str) -> str | None:
        return None

    def invalidate(self) -> None:
        return None


class Deferred:
    """A processor on the SQL repository, a hand-moved clock and a hook that can fail."""

    def __init__(self, repository: SqlAlchemyRepository, **config: Any) -> None:
        self.now = NOW
        self.repository = repository
        self.failures: dict[str, int | None] = {}  # subscription id -> failures left
        self.calls: list[str] = []
        with repository.engine.begin() as connection:
            _marks.drop_all(connection)
            _marks.create_all(connection)
        self.processor = WebhookProcessor(
            BillingConfig(webhook_secrets=SECRET, webhook_retry_jitter=0.0, **config),
            gateway=None,  # type: ignore[arg-type]  # no same-second ties in these tests
            repository=repository,
            catalog=_Catalog(),
            clock=lambda: self.now,
        )
        self.processor.on(HookKind.SUBSCRIPTION_ACTIVATED, self._hook)

    def _hook(self, event: SubscriptionActivated) -> None:
        self.calls.append(event.event_id)
        # written through the event's transaction: kept only if the event commits
        self.repository.current_connection().execute(MARKS.insert().values(event_id=event.event_id))
        left = self.failures.get(event.subscription.id, 0)
        if left is None or left > 0:
            if left is not None:
                self.failures[event.subscription.id] = left - 1
            raise RuntimeError(f"hook failed for {event.subscription.id}")

    def receive(self, sub_id: str, created_offset: int = 0) -> str:
        obj = {
            "id": sub_id,
            "object": "subscription",
            "customer": f"cus_{sub_id}",
            "status": "active",
            "created": int(NOW.timestamp()) - 100,
            "metadata": {"user_id": f"user_{sub_id}"},
            "items": {"object": "list", "data": [{"price": {"id": "price_x"}, "quantity": 1}]},
        }
        created = int(self.now.timestamp()) - 50 + created_offset
        event = build_event("customer.subscription.created", obj, created=created)
        payload = json.dumps(event).encode()
        signature = sign_payload(payload, SECRET, int(self.now.timestamp()))
        result = self.processor.receive(payload, signature)
        assert result.outcome is WebhookOutcome.QUEUED
        return result.event_id

    def marks(self) -> list[str]:
        with self.repository.engine.connect() as connection:
            return sorted(connection.execute(select(MARKS.c.event_id)).scalars())

    def status(self, event_id: str) -> tuple[EventStatus, int]:
        with self.repository.unit_of_work() as uow:
            record = uow.get_event(event_id)
        assert record is not None
        return record.status, record.attempts


def test_a_failing_event_rolls_back_alone_and_backs_off(
    sql_repository: SqlAlchemyRepository,
) -> None:
    d = Deferred(sql_repository, webhook_retry_base_seconds=10)
    d.failures["sub_b"] = 2
    first, second, third = d.receive("sub_a", 0), d.receive("sub_b", 1), d.receive("sub_c", 2)
    assert d.processor.pending_count() == 3
    assert d.processor.oldest_pending_age() == timedelta(0)
    assert d.processor.drain(batch_size=2) == DrainResult(processed=2, failed=1)
    assert d.marks() == sorted([first, third])  # the failed event's write rolled back
    assert d.status(second) == (EventStatus.FAILED, 1)
    with sql_repository.unit_of_work() as uow:
        assert uow.get_subscription("sub_b") is None
        stored = uow.get_subscription("sub_a")
        assert stored is not None and stored.status is SubscriptionStatus.ACTIVE
        retry = uow.get_event(second)
        assert retry is not None and retry.next_attempt_at == NOW + timedelta(seconds=10)
    assert d.processor.process(second).outcome is WebhookOutcome.QUEUED  # not due yet
    d.now += timedelta(seconds=10)
    with pytest.raises(RuntimeError):
        d.processor.process(second)
    assert d.status(second) == (EventStatus.FAILED, 2)
    d.now += timedelta(seconds=20)
    assert d.processor.drain() == DrainResult(processed=1)
    assert d.status(second) == (EventStatus.PROCESSED, 3)
    assert d.marks() == sorted([first, second, third])
    assert d.calls.count(second) == 3
    assert d.processor.process(second).outcome is WebhookOutcome.DUPLICATE


def test_an_always_failing_event_ends_dead_and_replay_applies_it(
    sql_repository: SqlAlchemyRepository,
) -> None:
    d = Deferred(sql_repository, webhook_max_attempts=2, webhook_retry_base_seconds=5)
    d.failures["sub_x"] = None
    event_id = d.receive("sub_x")
    assert d.processor.drain() == DrainResult(failed=1)
    d.now += timedelta(seconds=5)
    assert d.processor.drain() == DrainResult(dead=1)
    assert d.status(event_id) == (EventStatus.DEAD, 2)
    d.now += timedelta(days=1)
    assert d.processor.drain() == DrainResult()
    assert d.processor.event_count(EventStatus.DEAD) == 1
    d.failures["sub_x"] = 0  # the cause is fixed
    assert d.processor.replay(event_id).outcome is WebhookOutcome.PROCESSED
    assert d.status(event_id) == (EventStatus.PROCESSED, 3)
    assert d.marks() == [event_id]
    assert d.processor.event_count(EventStatus.DEAD) == 0


def _broken(*args: Any, **kwargs: Any) -> None:
    raise OperationalError("SAVEPOINT", {}, Exception("the transaction is gone"))


def test_a_savepoint_that_cannot_roll_back_is_a_retryable_error(
    sql_repository: SqlAlchemyRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RepositoryUnavailableError) as caught, sql_repository.unit_of_work() as uow:
        monkeypatch.setattr(NestedTransaction, "rollback", _broken)
        with uow.savepoint():
            raise RuntimeError("the event failed")
    monkeypatch.undo()
    assert isinstance(caught.value.__cause__, RuntimeError)


@pytest.mark.parametrize("method", ["commit", "begin_nested"])
def test_a_savepoint_that_cannot_begin_or_release_is_a_retryable_error(
    sql_repository: SqlAlchemyRepository, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    owner = NestedTransaction if method == "commit" else Connection
    with pytest.raises(RepositoryUnavailableError), sql_repository.unit_of_work() as uow:
        monkeypatch.setattr(owner, method, _broken)
        with uow.savepoint():
            pass
    monkeypatch.undo()
