"""The Repository contract, unchanged, on billingkit.contrib.django's Django ORM adapter.

``billingkit.contrib.django.repository.DjangoRepository``, with the example project's
settings (``tests/examples/conftest.py``). It runs on SQLite (a file database: the
contract's concurrency tests use threads, and Django opens one connection per thread) and on
PostgreSQL (skipped when the server is unreachable, unless BILLINGKIT_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.contract.repository_contract import RepositoryContract, make_subscription

from billingkit.errors import RepositoryError
from billingkit.ports import Repository


@pytest.fixture(
    params=[
        pytest.param("default", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def django_alias(request: pytest.FixtureRequest) -> str:
    """The database alias of the run: the SQLite file, or the scratch PostgreSQL database."""
    if request.param == "postgres":
        return str(request.getfixturevalue("django_postgres"))
    request.getfixturevalue("django_project")
    return "default"


class TestDjangoRepositoryContract(RepositoryContract):
    @pytest.fixture
    def repository(
        self, django_alias: str, clear_billing_tables: Callable[[str], None]
    ) -> Repository:
        from billingkit.contrib.django.repository import DjangoRepository

        clear_billing_tables(django_alias)
        repository = DjangoRepository(django_alias)
        assert isinstance(repository, Repository)
        return repository


class _AppError(Exception):
    """The app's own failure, after billing writes in the same transaction."""


def test_a_unit_of_work_inside_an_app_transaction_commits_and_rolls_back_with_it(
    django_project: object, clear_billing_tables: Callable[[str], None]
) -> None:
    from django.db import transaction

    from billingkit.contrib.django.repository import DjangoRepository

    clear_billing_tables("default")
    repository = DjangoRepository()
    with pytest.raises(_AppError), transaction.atomic():
        with repository.unit_of_work() as uow:  # a savepoint of the app's transaction
            uow.save_subscription(make_subscription())
        raise _AppError
    with repository.unit_of_work() as uow:
        assert uow.get_subscription("sub_1") is None
    with transaction.atomic(), repository.unit_of_work() as uow:
        uow.save_subscription(make_subscription())
    with repository.unit_of_work() as uow:
        assert uow.get_subscription("sub_1") == make_subscription()


def test_units_of_work_do_not_nest_on_one_thread(
    django_project: object, clear_billing_tables: Callable[[str], None]
) -> None:
    from billingkit.contrib.django.repository import DjangoRepository

    clear_billing_tables("default")
    repository = DjangoRepository()
    with repository.unit_of_work() as outer:
        outer.save_subscription(make_subscription("sub_outer"))
        with pytest.raises(RepositoryError, match="nested"), repository.unit_of_work():
            pass
        outer.save_subscription(make_subscription("sub_after"))
    with repository.unit_of_work() as uow:
        assert uow.get_subscription("sub_outer") is not None
        assert uow.get_subscription("sub_after") is not None


def test_the_committed_migrations_match_the_models(django_project: object) -> None:
    from django.core.management import call_command

    # exits with status 1 when a model change has no migration
    call_command("makemigrations", "billingkit", check=True, dry_run=True, verbosity=0)


def test_database_errors_map_to_the_repository_error_tree(
    django_project: object, clear_billing_tables: Callable[[str], None]
) -> None:
    from unittest import mock

    from django.db import DatabaseError, IntegrityError, OperationalError
    from django.db.models import QuerySet
    from django.db.transaction import Atomic

    from billingkit.contrib.django.repository import DjangoRepository
    from billingkit.errors import ConflictError, RepositoryUnavailableError

    clear_billing_tables("default")
    repository = DjangoRepository()
    assert repr(repository) == "DjangoRepository(using='default')"
    cases: list[tuple[Exception, type[RepositoryError], str]] = [
        (OperationalError("database is locked\ndetail"), RepositoryUnavailableError,
         "get_event failed: OperationalError: database is locked"),
        (IntegrityError("UNIQUE constraint failed"), ConflictError,
         "get_event failed: IntegrityError: UNIQUE constraint failed"),
        (DatabaseError(""), RepositoryError, "get_event failed: DatabaseError: "),
    ]  # fmt: skip
    for error, expected, message in cases:
        with (
            repository.unit_of_work() as uow,
            mock.patch.object(QuerySet, "first", side_effect=error),
            pytest.raises(expected) as raised,
        ):
            uow.get_event("evt_1")
        assert type(raised.value) is expected and str(raised.value) == message
    with (
        mock.patch.object(Atomic, "__enter__", side_effect=OperationalError("locked")),
        pytest.raises(RepositoryUnavailableError, match="begin failed"),
        repository.unit_of_work(),
    ):
        pass
    real_exit = Atomic.__exit__

    def failing_exit(self: Atomic, *args: Any) -> None:
        real_exit(self, *args)  # the transaction ends, then the driver reports a failure
        raise OperationalError("connection lost")

    patcher = mock.patch.object(Atomic, "__exit__", failing_exit)
    try:
        with (
            pytest.raises(RepositoryUnavailableError, match="commit failed"),
            repository.unit_of_work() as uow,
        ):
            uow.save_subscription(make_subscription("sub_commit"))
            patcher.start()
    finally:
        patcher.stop()


def test_finish_event_refuses_an_unknown_status(
    django_project: object, clear_billing_tables: Callable[[str], None]
) -> None:
    from billingkit.contrib.django.repository import DjangoRepository

    clear_billing_tables("default")
    with DjangoRepository().unit_of_work() as uow, pytest.raises(RepositoryError, match="bogus"):
        uow.finish_event("evt_1", "bogus", processed_at=make_subscription().created)  # type: ignore[arg-type]
