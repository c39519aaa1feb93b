"""Database fixtures for the integration tests (see ``databases.py`` for the details).

``postgres_url``, ``mariadb_url``, ``sqlite_url``: a fresh, empty database per test module.
``database_url``: the same, parametrized over sqlite/postgres/mariadb (marked ``postgres`` /
``mariadb``); ``server_url`` over postgres/mariadb only. ``migrated_repository`` /
``sql_repository``: a ``SqlAlchemyRepository`` on ``database_url`` with the migrated schema
(``sql_repository`` empties the tables before each test).
Unreachable servers skip, or fail when ``BILLINGKIT_REQUIRE_SERVICES=1``.
"""

from tests.integration.databases import (
    database_url,
    mariadb_url,
    migrated_repository,
    postgres_url,
    server_url,
    sql_repository,
    sqlite_url,
)

__all__ = [
    "database_url",
    "mariadb_url",
    "migrated_repository",
    "postgres_url",
    "server_url",
    "sql_repository",
    "sqlite_url",
]
