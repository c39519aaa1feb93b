"""What SqlAlchemyRepository adds to the contract: the app's transaction, errors, databases."""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy
from sqlalchemy import URL, Column, Integer, MetaData, String, Table, select, text
from sqlalchemy.orm import Session
from tests.contract.repository_contract import T0, make_event, make_link, make_subscription

from billingkit.adapters.sqlalchemy import SqlAlchemyRepository, create_engine, upgrade
from billingkit.domain import EventStatus
from billingkit.errors import (
    ConfigurationError,
    ConflictError,
    RepositoryError,
    RepositoryUnavailableError,
)

# An app table living next to the billingkit tables.
app_metadata = MetaData()
ORDERS = Table(
    "app_orders",
    app_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("note", String(50), nullable=False),
)


@pytest.fixture
def app_engine(
    sql_repository: SqlAlchemyRepository,
) -> Iterator[sqlalchemy.Engine]:
    engine = sql_repository.engine
    app_metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(ORDERS.delete())
    yield engine


def _orders(engine: sqlalchemy.Engine) -> list[int]:
    with engine.connect() as connection:
        return list(connection.execute(select(ORDERS.c.id).order_by(ORDERS.c.id)).scalars())


def _stored_subscription_ids(repository: SqlAlchemyRepository) -> list[str]:
    with repository.unit_of_work() as uow:
        return [s.id for s in uow.subscriptions_for_user("user_1")]


# --------------------------------------------------------------------------- app transactions


def test_for_connection_joins_the_apps_transaction_and_never_commits_it(
    sql_repository: SqlAlchemyRepository, app_engine: sqlalchemy.Engine
) -> None:
    with app_engine.connect() as connection:
        connection.execute(ORDERS.insert().values(id=1, note="order"))
        bound = SqlAlchemyRepository.for_connection(connection)
        with bound.unit_of_work() as uow:
            uow.save_subscription(make_subscription(user_id="user_1"))
        connection.rollback()  # the app changes its mind: both writes go
    assert _orders(app_engine) == []
    assert _stored_subscription_ids(sql_repository) == []

    with app_engine.connect() as connection:
        connection.execute(ORDERS.insert().values(id=2, note="order"))
        with SqlAlchemyRepository.for_connection(connection).unit_of_work() as uow:
            uow.save_subscription(make_subscription(user_id="user_1"))
        connection.commit()
    assert _orders(app_engine) == [2]
    assert _stored_subscription_ids(sql_repository) == ["sub_1"]


def test_a_failing_unit_of_work_rolls_back_only_its_own_savepoint(
    sql_repository: SqlAlchemyRepository, app_engine: sqlalchemy.Engine
) -> None:
    with app_engine.connect() as connection:
        connection.execute(ORDERS.insert().values(id=3, note="kept"))
        bound = SqlAlchemyRepository.for_connection(connection)
        with pytest.raises(ZeroDivisionError), bound.unit_of_work() as uow:
            uow.save_subscription(make_subscription(user_id="user_1"))
            raise ZeroDivisionError
        with bound.unit_of_work() as uow:
            assert uow.get_subscription("sub_1") is None
            uow.claim_event(make_event())
        connection.commit()
    assert _orders(app_engine) == [3]
    with sql_repository.unit_of_work() as uow:
        assert uow.get_subscription("sub_1") is None
        event = uow.get_event("evt_1")
        assert event is not None and event.status is EventStatus.PROCESSING


def test_using_binds_a_long_lived_repository_to_an_orm_session(
    sql_repository: SqlAlchemyRepository, app_engine: sqlalchemy.Engine
) -> None:
    with Session(app_engine) as session:
        session.execute(ORDERS.insert().values(id=4, note="orm"))
        with sql_repository.using(session), sql_repository.unit_of_work() as uow:
            uow.link_customer(make_link())
            # hooks reach the same transaction through current_connection()
            sql_repository.current_connection().execute(ORDERS.insert().values(id=5, note="hook"))
        # outside the block the repository runs its own transactions again: it cannot see
        # the session's uncommitted link on PostgreSQL/MariaDB, and on SQLite it waits for
        # the write lock, so only check after the commit
        session.commit()
    assert _orders(app_engine) == [4, 5]
    with sql_repository.unit_of_work() as uow:
        assert uow.customer_for_user("user_1") == make_link()


def test_current_connection_outside_a_unit_of_work_is_an_error(
    sql_repository: SqlAlchemyRepository,
) -> None:
    with pytest.raises(RepositoryError):
        sql_repository.current_connection()
    with sql_repository.unit_of_work():
        assert isinstance(sql_repository.current_connection(), sqlalchemy.Connection)
    with pytest.raises(RepositoryError):
        sql_repository.current_connection()


def test_hook_writes_through_current_connection_roll_back_with_the_unit_of_work(
    sql_repository: SqlAlchemyRepository, app_engine: sqlalchemy.Engine
) -> None:
    with pytest.raises(RuntimeError), sql_repository.unit_of_work() as uow:
        uow.claim_event(make_event())
        sql_repository.current_connection().execute(ORDERS.insert().values(id=6, note="x"))
        raise RuntimeError("hook failed")
    assert _orders(app_engine) == []
    with sql_repository.unit_of_work() as uow:
        assert uow.get_event("evt_1") is None


# --------------------------------------------------------------------------- errors


def test_a_constraint_violated_by_app_code_rolls_back_the_unit_of_work(
    sql_repository: SqlAlchemyRepository, app_engine: sqlalchemy.Engine
) -> None:
    with app_engine.begin() as connection:
        connection.execute(ORDERS.insert().values(id=7, note="existing"))
    with pytest.raises(sqlalchemy.exc.IntegrityError), sql_repository.unit_of_work() as uow:
        uow.claim_event(make_event())
        sql_repository.current_connection().execute(ORDERS.insert().values(id=7, note="dup"))
    with sql_repository.unit_of_work() as uow:
        assert uow.claim_event(make_event()).value == "claimed"


def test_a_killed_connection_is_retryable_and_loses_nothing(server_url: URL) -> None:
    backend = server_url.get_backend_name()
    kill = {"postgresql": "SELECT pg_terminate_backend({pid})", "mysql": "KILL {pid}"}[backend]
    pid_query = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}[
        backend
    ]
    upgrade(server_url)
    repository = SqlAlchemyRepository(server_url)
    killer = create_engine(server_url)
    try:
        with (
            pytest.raises(RepositoryUnavailableError) as caught,
            repository.unit_of_work() as uow,
        ):
            uow.claim_event(make_event())
            pid = repository.current_connection().execute(text(pid_query)).scalar_one()
            with killer.begin() as other:
                other.execute(text(kill.format(pid=int(pid))))
            uow.save_subscription(make_subscription())
        assert caught.value.retryable
        # redelivery works on a fresh connection; nothing of the killed one was committed
        with repository.unit_of_work() as uow:
            assert uow.get_subscription("sub_1") is None
            assert uow.claim_event(make_event()).value == "claimed"
    finally:
        killer.dispose()
        repository.close()


def test_an_unreachable_database_is_retryable(tmp_path: object) -> None:
    repository = SqlAlchemyRepository(
        "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    )
    with pytest.raises(RepositoryUnavailableError), repository.unit_of_work():
        pass
    repository.close()


def test_missing_tables_are_a_repository_error(tmp_path: object) -> None:
    repository = SqlAlchemyRepository("sqlite://")
    with pytest.raises(RepositoryError) as caught, repository.unit_of_work() as uow:
        uow.get_subscription("sub_1")
    assert not isinstance(caught.value, ConflictError)
    repository.close()


def test_construction_refuses_what_it_cannot_use() -> None:
    with pytest.raises(ConfigurationError):
        SqlAlchemyRepository(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        SqlAlchemyRepository("mssql+pyodbc://u@dsn")


@pytest.mark.parametrize("url", ["foo://u@host/db", "postgresql+nosuchdriver://u@host/db"])
def test_an_unknown_url_scheme_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown database URL scheme") as caught:
        create_engine(url)
    assert "postgresql+psycopg://" in str(caught.value)
    with pytest.raises(ConfigurationError):
        SqlAlchemyRepository(url)


@pytest.mark.parametrize(
    ("url", "module", "extra", "advice"),
    [
        ("postgresql+psycopg://u@127.0.0.1/db", "psycopg", "billingkit[postgres]", None),
        ("mysql+pymysql://u@127.0.0.1/db", "pymysql", "billingkit[mysql]", None),
        ("mariadb+pymysql://u@127.0.0.1/db", "pymysql", "billingkit[mysql]", None),
        # drivers the extras do not install: the extra, and the URL that uses its driver
        (
            "postgresql+psycopg2://u@127.0.0.1/db",
            "psycopg2",
            "billingkit[postgres]",
            "postgresql+psycopg",
        ),
        ("mysql+mysqldb://u@127.0.0.1/db", "MySQLdb", "billingkit[mysql]", "mysql+pymysql"),
        ("mariadb+mysqldb://u@127.0.0.1/db", "MySQLdb", "billingkit[mysql]", "mariadb+pymysql"),
    ],
)
def test_a_missing_driver_names_the_extra_to_install(
    url: str, module: str, extra: str, advice: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what an uninstalled module looks like
    for attempt in (create_engine, SqlAlchemyRepository):
        with pytest.raises(ConfigurationError, match=re.escape(f'pip install "{extra}"')) as caught:
            attempt(url)
        assert repr(module) in str(caught.value)
        if advice is not None:
            assert f"use a {advice}:// URL" in str(caught.value)


def test_the_url_password_stays_out_of_repr() -> None:
    repository = SqlAlchemyRepository("postgresql+psycopg://app:s3cr3t@127.0.0.1:1/db")
    assert "s3cr3t" not in repr(repository)
    repository.close()


def test_units_of_work_do_not_nest_on_one_thread(sql_repository: SqlAlchemyRepository) -> None:
    with sql_repository.unit_of_work() as outer:
        outer.save_subscription(make_subscription())
        with pytest.raises(RepositoryError, match="nested"), sql_repository.unit_of_work():
            pass
        outer.save_subscription(make_subscription("sub_2"))
    with sql_repository.unit_of_work() as uow:
        assert uow.get_subscription("sub_2") is not None


# --------------------------------------------------------------------------- storage details


def test_a_one_mebibyte_payload_round_trips(sql_repository: SqlAlchemyRepository) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
    with sql_repository.unit_of_work() as uow:
        uow.claim_event(make_event(payload=payload))
    with sql_repository.unit_of_work() as uow:
        stored = uow.get_event("evt_1")
    assert stored is not None and stored.payload == payload


def test_ids_are_case_sensitive(sql_repository: SqlAlchemyRepository) -> None:
    with sql_repository.unit_of_work() as uow:
        assert uow.claim_event(make_event("evt_AbC")).value == "claimed"
        assert uow.claim_event(make_event("evt_abc")).value == "claimed"
        uow.link_customer(make_link("user_a", "cus_X"))
        uow.link_customer(make_link("USER_A", "cus_x"))
    with sql_repository.unit_of_work() as uow:
        assert len(uow.list_events()) == 2
        link = uow.customer_for_user("USER_A")
        assert link is not None and link.customer_id == "cus_x"


def test_times_come_back_aware_utc_whatever_offset_went_in(
    sql_repository: SqlAlchemyRepository,
) -> None:
    from datetime import timezone

    offset = timezone(timedelta(hours=-5))
    with sql_repository.unit_of_work() as uow:
        uow.save_subscription(make_subscription(created=T0.astimezone(offset)))
    with sql_repository.unit_of_work() as uow:
        stored = uow.get_subscription("sub_1")
    assert stored is not None
    assert stored.created == T0 and stored.created.utcoffset() == timedelta(0)


def test_in_memory_sqlite_is_shared_by_threads_one_unit_of_work_at_a_time() -> None:
    repository = SqlAlchemyRepository("sqlite://")
    repository.create_tables()
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for n in range(10):
                with repository.unit_of_work() as uow:
                    uow.claim_event(make_event(f"evt_{index}_{n}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with repository.unit_of_work() as uow:
        assert len(uow.list_events(limit=1000)) == 40
    repository.close()


def test_an_app_sqlite_engine_in_default_driver_mode_still_takes_the_write_lock(
    sqlite_url: URL,
) -> None:
    upgrade(sqlite_url)
    plain = sqlalchemy.create_engine(sqlite_url)  # no billingkit configuration
    first, second = SqlAlchemyRepository(plain), SqlAlchemyRepository(plain)
    try:
        with first.unit_of_work() as uow:
            uow.claim_event(make_event("evt_lock"))
            # another writer must wait: with a short timeout it fails, retryably
            hurried = SqlAlchemyRepository(
                sqlalchemy.create_engine(sqlite_url, connect_args={"timeout": 0.1})
            )
            with pytest.raises(RepositoryUnavailableError), hurried.unit_of_work() as other:
                other.claim_event(make_event("evt_other"))
            hurried.engine.dispose()
        with second.unit_of_work() as uow:
            assert uow.get_event("evt_lock") is not None
            assert uow.get_event("evt_other") is None
    finally:
        plain.dispose()
