"""The stress tests use the integration database fixtures."""

from tests.integration.databases import mariadb_url, postgres_url, sqlite_url

__all__ = ["mariadb_url", "postgres_url", "sqlite_url"]
