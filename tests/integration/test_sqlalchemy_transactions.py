"""``SqlAlchemyRepository``'s units of work over the app's connection, and error mapping.

SQLite files stand in for a server: the paths tested here are the same for every dialect.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import text
from tests.contract.repository_contract import make_subscription

from billingkit.adapters.sqlalchemy import SqlAlchemyRepository, create_engine, upgrade
from billingkit.adapters.sqlalchemy._transaction import translate
from billingkit.errors import (
    ConfigurationError,
    ConflictError,
    RepositoryError,
    RepositoryUnavailableError,
)


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    upgrade(url)
    return url


def _count(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(text("SELECT COUNT(*) FROM billingkit_subscriptions")).scalar_one()
            )
    finally:
        engine.dispose()


def test_a_connection_without_a_transaction_gets_one_that_commits(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert not conn.in_transaction()
            repository = SqlAlchemyRepository.for_connection(conn)
            with repository.unit_of_work() as uow:
                uow.save_subscription(make_subscription())
            assert not conn.in_transaction()  # the unit of work's own, committed
            assert _count(url) == 1
    finally:
        engine.dispose()


def test_a_failing_block_on_the_apps_connection_rolls_back(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            repository = SqlAlchemyRepository.for_connection(conn)
            with pytest.raises(LookupError), repository.unit_of_work() as uow:
                uow.save_subscription(make_subscription())
                raise LookupError("the app's own failure")
            assert not conn.in_transaction()
        assert _count(url) == 0
    finally:
        engine.dispose()


def test_only_a_connection_or_a_session_is_accepted() -> None:
    with pytest.raises(ConfigurationError, match="Connection or a Session"):
        SqlAlchemyRepository.for_connection("sqlite://")  # type: ignore[arg-type]


def test_an_unreachable_database_is_unavailable(tmp_path: Path) -> None:
    repository = SqlAlchemyRepository(f"sqlite:///{tmp_path / 'missing' / 'billing.db'}")
    try:
        with pytest.raises(RepositoryUnavailableError, match="begin"), repository.unit_of_work():
            pass
    finally:
        repository.close()


# --------------------------------------------------------------------------- translate


def _dbapi(kind: type[sqlalchemy.exc.DBAPIError]) -> sqlalchemy.exc.DBAPIError:
    return kind("INSERT ...", {}, Exception("UNIQUE constraint failed: x.id\nmore detail"))


def test_an_integrity_error_is_a_conflict() -> None:
    error = translate(_dbapi(sqlalchemy.exc.IntegrityError), "save_customer")
    assert type(error) is ConflictError
    assert str(error) == "save_customer failed: Exception: UNIQUE constraint failed: x.id"


@pytest.mark.parametrize(
    "exc",
    [
        _dbapi(sqlalchemy.exc.OperationalError),
        _dbapi(sqlalchemy.exc.InterfaceError),
        sqlalchemy.exc.TimeoutError("QueuePool limit reached"),
        sqlalchemy.exc.DisconnectionError("gone"),
    ],
)
def test_lost_or_exhausted_connections_are_unavailable(exc: Exception) -> None:
    assert type(translate(exc, "claim_event")) is RepositoryUnavailableError


def test_other_errors_are_repository_errors_and_ours_pass_through() -> None:
    other = translate(_dbapi(sqlalchemy.exc.ProgrammingError), "get_event")
    assert type(other) is RepositoryError and str(other).startswith("get_event failed:")
    assert type(translate(ValueError(""), "get_event")) is RepositoryError
    ours = ConflictError("already there")
    assert translate(ours, "save_customer") is ours
