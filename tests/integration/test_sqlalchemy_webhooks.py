"""A database error in the middle of a webhook rolls everything back; redelivery succeeds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import URL, Column, MetaData, String, Table, func, select, text
from tests.stress import harness

from billingkit.adapters.sqlalchemy import SqlAlchemyRepository, create_engine
from billingkit.domain import EventStatus, SubscriptionStatus
from billingkit.errors import RepositoryUnavailableError
from billingkit.services.hooks import HookKind, SubscriptionActivated
from billingkit.services.webhooks import processor as webhooks

guard_metadata = MetaData()
#: An app table a hook writes to, unique per subscription.
WELCOMED = Table(
    "app_welcomed", guard_metadata, Column("subscription_id", String(64), primary_key=True)
)


def _activation(history: harness.History) -> tuple[bytes, str]:
    """The signed ``updated`` event that activates sub_000 (incomplete -> active)."""
    for (body, signature), event in zip(history.signed(), history.events, strict=True):
        if (
            event["type"] == "customer.subscription.updated"
            and event["data"]["object"]["id"] == "sub_000"
        ):
            return body, signature
    raise AssertionError("no activation event")


def _counts(engine: sqlalchemy.Engine) -> tuple[int, int, int]:
    with engine.connect() as connection:
        return (
            connection.execute(select(func.count()).select_from(harness.APPLICATIONS)).scalar_one(),
            connection.execute(select(func.count()).select_from(harness.HOOKS)).scalar_one(),
            connection.execute(select(func.count()).select_from(WELCOMED)).scalar_one(),
        )


def _setup(
    url: URL, monkeypatch: pytest.MonkeyPatch, hook: Callable[[SqlAlchemyRepository, Any], None]
) -> tuple[SqlAlchemyRepository, webhooks.WebhookProcessor, harness.History]:
    harness.prepare(url)
    repository = SqlAlchemyRepository(url)
    guard_metadata.create_all(repository.engine)
    history = harness.build_history()
    processor = harness.build_processor(repository, history.final)
    processor.on(HookKind.SUBSCRIPTION_ACTIVATED, lambda event: hook(repository, event))
    monkeypatch.setattr(webhooks, "HANDLERS", harness.counted_handlers(repository))
    return repository, processor, history


def _assert_nothing_applied(repository: SqlAlchemyRepository, event_id: str) -> None:
    with repository.unit_of_work() as uow:
        record = uow.get_event(event_id)
        assert record is not None and record.status is EventStatus.FAILED
        assert record.attempts == 1
        assert uow.get_subscription("sub_000") is None
    assert _counts(repository.engine) == (0, 0, 0)


def _assert_applied_once(repository: SqlAlchemyRepository, event_id: str) -> None:
    with repository.unit_of_work() as uow:
        record = uow.get_event(event_id)
        assert record is not None and record.status is EventStatus.PROCESSED
        assert record.attempts == 2
        stored = uow.get_subscription("sub_000")
        assert stored is not None and stored.status is SubscriptionStatus.ACTIVE
    # one application, one counted hook call (activated), one welcome row
    assert _counts(repository.engine) == (1, 1, 1)


def test_a_hook_violating_a_constraint_fails_the_whole_event(
    database_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    def welcome(repository: SqlAlchemyRepository, event: SubscriptionActivated) -> None:
        repository.current_connection().execute(
            WELCOMED.insert().values(subscription_id=event.subscription.id)
        )

    repository, processor, history = _setup(database_url, monkeypatch, welcome)
    try:
        with repository.engine.begin() as connection:  # a stale row from an older system
            connection.execute(WELCOMED.insert().values(subscription_id="sub_000"))
        body, signature = _activation(history)
        event_id = history.events[1]["id"]
        with pytest.raises(sqlalchemy.exc.IntegrityError):
            processor.handle(body, signature)
        with repository.engine.begin() as connection:
            connection.execute(WELCOMED.delete())
        _assert_nothing_applied(repository, event_id)
        with repository.unit_of_work() as uow:
            record = uow.get_event(event_id)
            assert record is not None and "IntegrityError" in (record.last_error or "")

        result = processor.handle(body, signature)  # Stripe redelivers
        assert result.outcome is webhooks.WebhookOutcome.PROCESSED
        _assert_applied_once(repository, event_id)
        assert processor.handle(body, signature).outcome is webhooks.WebhookOutcome.DUPLICATE
        assert _counts(repository.engine) == (1, 1, 1)
    finally:
        repository.close()


def test_a_connection_killed_mid_event_fails_it_and_redelivery_succeeds(
    server_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = server_url.get_backend_name()
    pid_sql = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
    kill_sql = {"postgresql": "SELECT pg_terminate_backend({})", "mysql": "KILL {}"}
    killer = create_engine(server_url)
    kills = [1]

    def welcome_then_die(repository: SqlAlchemyRepository, event: SubscriptionActivated) -> None:
        connection = repository.current_connection()
        connection.execute(WELCOMED.insert().values(subscription_id=event.subscription.id))
        if kills:
            kills.pop()
            pid = connection.execute(text(pid_sql[backend])).scalar_one()
            with killer.begin() as other:
                other.execute(text(kill_sql[backend].format(int(pid))))

    repository, processor, history = _setup(server_url, monkeypatch, welcome_then_die)
    try:
        body, signature = _activation(history)
        event_id = history.events[1]["id"]
        with pytest.raises((RepositoryUnavailableError, sqlalchemy.exc.OperationalError)):
            processor.handle(body, signature)
        _assert_nothing_applied(repository, event_id)
        result = processor.handle(body, signature)
        assert result.outcome is webhooks.WebhookOutcome.PROCESSED
        _assert_applied_once(repository, event_id)
    finally:
        killer.dispose()
        repository.close()
