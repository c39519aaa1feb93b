"""The usage outbox on SQLite, PostgreSQL and MariaDB, inside the app's own transaction.

``UsageService.record`` joins the app's transaction when the repository is bound to the
app's connection (``using``): the usage commits or rolls back with the app's business
write. Concurrent flushers never send one record twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select
from tests.integration.databases import database_url, migrated_repository, sql_repository

from billingkit.adapters.sqlalchemy import SqlAlchemyRepository
from billingkit.config import BillingConfig
from billingkit.domain import CustomerLink, PlanDefinition
from billingkit.domain.usage import UsageStatus
from billingkit.services.usage import UsageService
from billingkit.testing import FakeStripeGateway

__all__ = ["database_url", "migrated_repository", "sql_repository"]

SECRET = "whsec_usage_sql"
START = datetime(2031, 3, 1, 12, 0, tzinfo=timezone.utc)
METER = "api_calls"

APP = MetaData()
ORDERS = Table(
    "app_usage_orders",
    APP,
    Column("id", Integer, primary_key=True),
    Column("item", String(50), nullable=False),
)


@pytest.fixture
def repository(sql_repository: SqlAlchemyRepository) -> Iterator[SqlAlchemyRepository]:
    APP.create_all(sql_repository.engine)
    with sql_repository.engine.begin() as connection:
        connection.execute(ORDERS.delete())
    yield sql_repository


def _service(repository: SqlAlchemyRepository) -> tuple[UsageService, FakeStripeGateway]:
    fake = FakeStripeGateway(webhook_secret=SECRET, start=START)
    fake.add_meter(METER)
    config = BillingConfig(
        plans=[PlanDefinition(key="free", name="Free")], free_plan="free", webhook_secrets=[SECRET]
    )
    service = UsageService(config, gateway=fake, repository=repository, clock=fake.now)
    customer = fake.create_customer(user_id="user_1", email=None, idempotency_key="k")
    with repository.unit_of_work() as uow:
        uow.link_customer(CustomerLink(user_id="user_1", customer_id=customer.id))
    return service, fake


def test_usage_commits_and_rolls_back_with_the_app_write(
    repository: SqlAlchemyRepository,
) -> None:
    service, _ = _service(repository)
    engine = repository.engine
    with pytest.raises(RuntimeError), engine.begin() as connection:
        connection.execute(ORDERS.insert().values(id=1, item="report"))
        with repository.using(connection):
            service.record("user_1", METER, 1, identifier="with_failed_order")
        raise RuntimeError("the app's transaction fails after recording")
    with engine.begin() as connection:
        connection.execute(ORDERS.insert().values(id=2, item="report"))
        with repository.using(connection):
            service.record("user_1", METER, 1, identifier="with_order")
    with engine.connect() as connection:
        assert connection.execute(select(ORDERS.c.id)).scalars().all() == [2]
    with repository.unit_of_work() as uow:
        assert uow.get_usage("with_failed_order") is None
        stored = uow.get_usage("with_order")
    assert stored is not None and stored.status is UsageStatus.PENDING
    # for_connection: the same, for a repository made per request
    with engine.begin() as connection:
        connection.execute(ORDERS.insert().values(id=3, item="report"))
        bound = SqlAlchemyRepository.for_connection(connection)
        UsageService(
            BillingConfig(
                plans=[PlanDefinition(key="free", name="Free")],
                free_plan="free",
                webhook_secrets=[SECRET],
            ),
            gateway=FakeStripeGateway(webhook_secret=SECRET, start=START),
            repository=bound,
            clock=lambda: START,
        ).record("user_1", METER, 2, identifier="per_request")
    with repository.unit_of_work() as uow:
        assert uow.get_usage("per_request") is not None


def test_concurrent_flushers_send_each_record_once(repository: SqlAlchemyRepository) -> None:
    service, fake = _service(repository)
    n = 60
    for index in range(n):
        service.record("user_1", METER, 1, identifier=f"u{index:03d}")
    threads = 4
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def flush() -> None:
        try:
            barrier.wait(timeout=30)
            service.flush(batch_size=5)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    pool = [threading.Thread(target=flush) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    assert errors == []
    service.flush()  # whatever a flusher left (one that stopped early) goes now
    assert fake.calls["create_meter_event"] == n  # never sent twice
    assert len(fake.meter_events()) == n
    with repository.unit_of_work() as uow:
        assert {r.status for r in uow.list_usage(limit=1000)} == {UsageStatus.SENT}
