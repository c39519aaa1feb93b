"""The Repository contract, unchanged, on the Django ORM adapter of the Django example.

``billingstore.repository.DjangoRepository`` lives in examples/django_project/: billingkit
does not ship it. Passing this suite shows the port works for an ORM billingkit knows
nothing about. It runs on SQLite (a file database: the contract's concurrency tests use
threads, and Django opens one connection per thread) and on PostgreSQL (skipped when the
server is unreachable, unless BILLINGKIT_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.contract.repository_contract import RepositoryContract

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
        from billingstore.repository import DjangoRepository

        clear_billing_tables(django_alias)
        return DjangoRepository(django_alias)
