"""The shipped Alembic migrations build exactly the schema the metadata describes."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import URL, inspect

from billingkit.adapters.sqlalchemy import (
    SqlAlchemyRepository,
    alembic_config,
    create_engine,
    metadata,
    upgrade,
)

VERSION_TABLE = "billingkit_alembic_version"


def _differences(url: URL) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "version_table": VERSION_TABLE}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def _tables(url: URL) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrated_schema_equals_the_metadata(database_url: URL) -> None:
    upgrade(database_url)
    assert _tables(database_url) == {*metadata.tables, VERSION_TABLE}
    assert _differences(database_url) == []


def test_upgrade_is_idempotent_and_downgrade_removes_everything(database_url: URL) -> None:
    upgrade(database_url)
    upgrade(database_url)  # already at head: nothing to do
    config: Any = alembic_config(database_url)
    command.downgrade(config, "base")
    assert _tables(database_url) <= {VERSION_TABLE}
    upgrade(database_url)
    assert _differences(database_url) == []


def test_an_empty_database_differs_from_the_metadata(database_url: URL) -> None:
    """The comparison can fail: on a database without the tables it reports them."""
    config: Any = alembic_config(database_url)
    command.downgrade(config, "base")
    missing = {diff[1].name for diff in _differences(database_url) if diff[0] == "add_table"}
    assert missing == set(metadata.tables)
    upgrade(database_url)


def test_upgrade_inside_the_callers_transaction(database_url: URL) -> None:
    config: Any = alembic_config(database_url)
    command.downgrade(config, "base")
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            upgrade(connection)
        repository = SqlAlchemyRepository(engine)
        with repository.unit_of_work() as uow:
            assert uow.list_events() == []
    finally:
        engine.dispose()


def test_create_tables_matches_the_migrations_too(sqlite_url: URL) -> None:
    repository = SqlAlchemyRepository(sqlite_url)
    repository.create_tables()
    repository.create_tables()  # idempotent
    engine = create_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()
        repository.close()


def test_the_migrations_ship_as_package_files() -> None:
    from billingkit.adapters.sqlalchemy import MIGRATIONS_DIR, VERSIONS_DIR

    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert sorted(p.name for p in VERSIONS_DIR.glob("bk*.py")) == [
        "bk0001_initial_schema.py",
        "bk0002_customer_history.py",
        "bk0003_deferred_events.py",
        "bk0004_invoices.py",
        "bk0005_subscription_management.py",
        "bk0006_reconcile_checkpoint.py",
        "bk0007_purchases.py",
        "bk0008_payment_methods.py",
        "bk0009_usage_outbox.py",
    ]


def test_a_bad_url_is_a_configuration_error() -> None:
    from billingkit.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        create_engine("not a url")


@pytest.mark.mariadb
def test_the_comparison_sees_a_too_small_payload_column(mariadb_url: URL) -> None:
    """MariaDB's plain BLOB holds 64 KiB: the schema must say LONGBLOB, and the check sees it."""
    upgrade(mariadb_url)
    engine = create_engine(mariadb_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE billingkit_events MODIFY payload BLOB NOT NULL")
    finally:
        engine.dispose()
    diffs = _differences(mariadb_url)
    changed = [(diff[0][0], diff[0][3]) for diff in diffs if isinstance(diff, list)]
    assert changed == [("modify_type", "payload")]
