"""Scratch databases for the SQL tests: SQLite files, PostgreSQL and MariaDB servers.

Each server database is created as ``billingkit_test_<random>`` and dropped afterwards. A
server that cannot be reached skips its tests with the reason, unless the environment sets
``BILLINGKIT_REQUIRE_SERVICES=1`` (``.ci/run`` does): then it fails them.

Server addresses (admin URLs, the database part is replaced):

* ``BILLINGKIT_POSTGRES_URL``, default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``
* ``BILLINGKIT_MARIADB_URL``, default ``mysql+pymysql://root@127.0.0.1:3306/mysql``

Fixtures defined here are re-exported by ``tests/integration/conftest.py``; test modules
outside ``tests/integration/`` import them from this module.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import URL, make_url, text

from billingkit.adapters.sqlalchemy import SqlAlchemyRepository, metadata, upgrade

KINDS = ("sqlite", "postgres", "mariadb")
_DEFAULTS = {
    "postgres": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/mysql",
}
_CONNECT_TIMEOUT = {"postgres": {"connect_timeout": 5}, "mariadb": {"connect_timeout": 5}}


def services_required() -> bool:
    """Whether an unreachable database server is a failure (CI) rather than a skip."""
    return os.environ.get("BILLINGKIT_REQUIRE_SERVICES") == "1"


def admin_url(kind: str) -> URL:
    """The URL of the server's administrative database for ``kind``."""
    return make_url(os.environ.get(f"BILLINGKIT_{kind.upper()}_URL", _DEFAULTS[kind]))


@cache
def _unreachable(kind: str) -> str | None:
    """Why the server is unreachable, or ``None``; asked once per test session."""
    engine = sqlalchemy.create_engine(admin_url(kind), connect_args=_CONNECT_TIMEOUT[kind])
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except sqlalchemy.exc.SQLAlchemyError as exc:
        return f"{type(exc.orig if hasattr(exc, 'orig') else exc).__name__}: {exc}".splitlines()[0]
    finally:
        engine.dispose()
    return None


def require_server(kind: str) -> None:
    """Skip (or, with BILLINGKIT_REQUIRE_SERVICES=1, fail) unless ``kind`` is reachable."""
    reason = _unreachable(kind)
    if reason is None:
        return
    where = admin_url(kind).render_as_string(hide_password=True)
    message = f"{kind} server not reachable at {where} ({reason})"
    if services_required():
        pytest.fail(f"{message}; BILLINGKIT_REQUIRE_SERVICES=1 requires it", pytrace=False)
    pytest.skip(message)


@contextmanager
def scratch_database(kind: str, tmp_dir: Path | None = None) -> Iterator[URL]:
    """A new, empty database of ``kind`` for the duration of the block; dropped after."""
    name = f"billingkit_test_{uuid.uuid4().hex[:12]}"
    if kind == "sqlite":
        if tmp_dir is None:
            raise ValueError("a SQLite scratch database needs a directory")
        yield make_url(f"sqlite:///{tmp_dir / (name + '.db')}")
        return
    require_server(kind)
    admin = sqlalchemy.create_engine(
        admin_url(kind), isolation_level="AUTOCOMMIT", connect_args=_CONNECT_TIMEOUT[kind]
    )
    try:
        with admin.connect() as connection:
            if kind == "mariadb":
                connection.execute(
                    text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
                )
            else:
                connection.execute(text(f"CREATE DATABASE {name}"))
        yield admin_url(kind).set(database=name)
    finally:
        with admin.connect() as connection:
            force = " WITH (FORCE)" if kind == "postgres" else ""
            connection.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
        admin.dispose()


def clear_tables(repository: SqlAlchemyRepository) -> None:
    """Delete every row of the billingkit tables (cheaper than a new database per test)."""
    with repository.engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())


def _param(kind: str) -> object:
    marks = {"postgres": [pytest.mark.postgres], "mariadb": [pytest.mark.mariadb]}
    return pytest.param(kind, marks=marks.get(kind, []), id=kind)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[URL]:
    """A fresh PostgreSQL database for the test module (no tables)."""
    with scratch_database("postgres") as url:
        yield url


@pytest.fixture(scope="module")
def mariadb_url() -> Iterator[URL]:
    """A fresh MariaDB database for the test module (no tables)."""
    with scratch_database("mariadb") as url:
        yield url


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[URL]:
    """A fresh SQLite database file for the test module (no tables)."""
    with scratch_database("sqlite", tmp_path_factory.mktemp("sqlite")) as url:
        yield url


@pytest.fixture(scope="module", params=[_param(kind) for kind in KINDS])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[URL]:
    """A fresh database for the module, once per kind: sqlite, postgres, mariadb."""
    with scratch_database(request.param, tmp_path_factory.mktemp("sqlite")) as url:
        yield url


@pytest.fixture(scope="module", params=[_param(kind) for kind in KINDS if kind != "sqlite"])
def server_url(request: pytest.FixtureRequest) -> Iterator[URL]:
    """A fresh database for the module on each server: postgres, mariadb."""
    with scratch_database(request.param) as url:
        yield url


@pytest.fixture(scope="module")
def migrated_repository(database_url: URL) -> Iterator[SqlAlchemyRepository]:
    """A repository on ``database_url`` with the schema built by the shipped migrations."""
    upgrade(database_url)
    repository = SqlAlchemyRepository(database_url)
    yield repository
    repository.close()


@pytest.fixture
def sql_repository(migrated_repository: SqlAlchemyRepository) -> SqlAlchemyRepository:
    """The module's migrated repository, emptied before the test."""
    clear_tables(migrated_repository)
    return migrated_repository
