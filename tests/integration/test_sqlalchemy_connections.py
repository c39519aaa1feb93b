"""Pooled server connections: a dead idle one is replaced without a ping per unit of work."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import URL, event, text
from tests.contract.repository_contract import make_event, make_subscription

from billingkit.adapters.sqlalchemy import SqlAlchemyRepository, create_engine, upgrade
from billingkit.domain import EventStatus
from billingkit.errors import RepositoryUnavailableError

_PID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
_KILL = {"postgresql": "SELECT pg_terminate_backend({})", "mysql": "KILL {}"}


@pytest.fixture
def repository(server_url: URL) -> Iterator[SqlAlchemyRepository]:
    upgrade(server_url)
    repository = SqlAlchemyRepository(server_url)
    with repository.engine.begin() as connection:
        for table in ("billingkit_events", "billingkit_subscriptions"):
            connection.execute(text(f"DELETE FROM {table}"))
    yield repository
    repository.close()


def _kill_pooled_connection(repository: SqlAlchemyRepository) -> None:
    """Terminate the server session behind the connection the pool will hand out next."""
    backend = repository.engine.dialect.name
    backend = "mysql" if backend == "mariadb" else backend
    with repository.unit_of_work():
        pid = repository.current_connection().execute(text(_PID[backend])).scalar_one()
    killer = create_engine(repository.engine.url)
    try:
        with killer.begin() as other:
            other.execute(text(_KILL[backend].format(int(pid))))
    finally:
        killer.dispose()


def test_a_connection_that_died_while_idle_is_replaced_on_the_first_statement(
    repository: SqlAlchemyRepository,
) -> None:
    _kill_pooled_connection(repository)
    with repository.unit_of_work() as uow:
        assert uow.claim_event(make_event()).value == "claimed"
        uow.save_subscription(make_subscription())
        uow.finish_event("evt_1", EventStatus.PROCESSED, processed_at=make_event().received_at)
    with repository.unit_of_work() as uow:
        stored = uow.get_event("evt_1")
        assert stored is not None and stored.status is EventStatus.PROCESSED
        assert uow.get_subscription("sub_1") is not None


def test_no_ping_round_trip_per_unit_of_work(
    repository: SqlAlchemyRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings: list[Any] = []
    dialect = repository.engine.dialect

    def do_ping(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return True

    monkeypatch.setattr(dialect, "do_ping", do_ping)
    for number in range(3):
        with repository.unit_of_work() as uow:
            uow.claim_event(make_event(f"evt_{number}"))
    assert pings == []


def test_a_dead_connection_the_app_already_holds_is_not_swapped_behind_its_back(
    repository: SqlAlchemyRepository,
) -> None:
    _kill_pooled_connection(repository)
    with (
        pytest.raises(RepositoryUnavailableError),
        repository.unit_of_work() as uow,
    ):
        repository.current_connection()  # handed to the app, which may have used it
        uow.claim_event(make_event())
    with repository.unit_of_work() as uow:  # the next unit of work gets a live one
        assert uow.get_event("evt_1") is None


def test_the_hot_path_sends_one_statement_per_step(repository: SqlAlchemyRepository) -> None:
    """claim, read, conditional write, finish: no extra round trip (no ping, no re-read)."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement.split()[0].upper())

    event.listen(repository.engine, "before_cursor_execute", record)
    try:
        with repository.unit_of_work() as uow:
            uow.claim_event(make_event())
            uow.get_subscription("sub_1")
            uow.save_subscription(make_subscription())
            uow.finish_event("evt_1", EventStatus.PROCESSED, processed_at=make_event().received_at)
    finally:
        event.remove(repository.engine, "before_cursor_execute", record)
    expected = {
        "postgresql": ["INSERT", "SELECT", "INSERT", "UPDATE"],
        # MySQL/MariaDB: the conditional write is a row lock (SELECT ... FOR UPDATE) + write
        "mysql": ["INSERT", "SELECT", "SELECT", "INSERT", "UPDATE"],
        "mariadb": ["INSERT", "SELECT", "SELECT", "INSERT", "UPDATE"],
    }
    assert statements == expected[repository.engine.dialect.name]
