"""SQL persistence on SQLAlchemy 2: ``SqlAlchemyRepository`` and its schema and migrations.

The only part of billingkit that imports ``sqlalchemy`` (and ``alembic``). Install with the
``sqlalchemy`` extra (plus ``postgres`` or ``mysql`` for those servers). See
``docs/persistence.md``.
"""

from billingkit._optional import requires_extra

# Without SQLAlchemy or Alembic: a ConfigurationError naming billingkit[sqlalchemy].
with requires_extra("sqlalchemy", "sqlalchemy", "alembic"):
    from billingkit.adapters.sqlalchemy._engine import configure_sqlite_engine, create_engine
    from billingkit.adapters.sqlalchemy._migrate import (
        MIGRATIONS_DIR,
        VERSIONS_DIR,
        alembic_config,
        upgrade,
    )
    from billingkit.adapters.sqlalchemy._repository import SqlAlchemyRepository
    from billingkit.adapters.sqlalchemy._schema import metadata

__all__ = [
    "MIGRATIONS_DIR",
    "VERSIONS_DIR",
    "SqlAlchemyRepository",
    "alembic_config",
    "configure_sqlite_engine",
    "create_engine",
    "metadata",
    "upgrade",
]
