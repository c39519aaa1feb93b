"""Running the Alembic migrations that ship inside the package."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy
from sqlalchemy import URL, Connection, Engine

from billingkit.adapters.sqlalchemy._engine import create_engine
from billingkit.errors import RepositoryError

__all__ = ["MIGRATIONS_DIR", "VERSIONS_DIR", "alembic_config", "upgrade"]

#: The Alembic script directory (``env.py``, ``versions/``) of the billingkit tables.
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: Add this to your own Alembic ``version_locations`` to merge billingkit's revisions
#: (branch label ``billingkit``) into your app's history.
VERSIONS_DIR = MIGRATIONS_DIR / "versions"


def alembic_config(url: str | URL | None = None) -> object:
    """An ``alembic.config.Config`` for billingkit's own history, for ``alembic.command``.

    ``url`` becomes ``sqlalchemy.url``; alternatively put a connection in
    ``config.attributes["connection"]``. The history lives in ``billingkit_alembic_version``.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        rendered = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def upgrade(bind: Engine | Connection | str | URL, revision: str = "heads") -> None:
    """Bring the billingkit tables up to ``revision`` (the newest by default).

    ``bind`` is a database URL, an Engine, or a Connection (the migration then runs inside
    that connection's transaction and the caller commits). Safe to run on every start-up:
    applied revisions are recorded in ``billingkit_alembic_version``.
    """
    from alembic import command
    from alembic.config import Config

    config = alembic_config()
    assert isinstance(config, Config)
    try:
        if isinstance(bind, Connection):
            config.attributes["connection"] = bind
            command.upgrade(config, revision)
            return
        engine = bind if isinstance(bind, Engine) else create_engine(bind)
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
        finally:
            if engine is not bind:
                engine.dispose()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise RepositoryError(f"billingkit migrations failed: {type(exc).__name__}") from exc
