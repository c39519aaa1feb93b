"""Alembic environment for billingkit's own migration history.

Used by ``billingkit.adapters.sqlalchemy.upgrade`` (which hands over a connection in
``config.attributes["connection"]``) and by ``alembic -c`` with a config whose
``sqlalchemy.url`` names the database. The history is recorded in its own version table,
``billingkit_alembic_version``, so it never touches the app's ``alembic_version``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from billingkit.adapters.sqlalchemy._schema import metadata

VERSION_TABLE = "billingkit_alembic_version"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=metadata,
            version_table=VERSION_TABLE,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url (or pass a connection) to run these migrations")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


_main()
