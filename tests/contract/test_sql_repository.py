"""The Repository contract, unchanged, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import pytest
from tests.contract.repository_contract import RepositoryContract
from tests.integration.databases import database_url, migrated_repository, sql_repository

from billingkit.adapters.sqlalchemy import SqlAlchemyRepository
from billingkit.ports import Repository

__all__ = ["database_url", "migrated_repository", "sql_repository"]


class TestSqlAlchemyRepositoryContract(RepositoryContract):
    @pytest.fixture
    def repository(self, sql_repository: SqlAlchemyRepository) -> Repository:
        return sql_repository
