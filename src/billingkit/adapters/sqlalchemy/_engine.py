"""Engine construction, with the SQLite settings a multi-process webhook ledger needs."""

from __future__ import annotations

from typing import Any

import sqlalchemy
from sqlalchemy import URL, Engine, event, make_url
from sqlalchemy.pool import StaticPool

from billingkit.errors import ConfigurationError

__all__ = ["configure_sqlite_engine", "create_engine", "is_memory_sqlite", "parse_url"]

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_CONFIGURED = "_billingkit_sqlite_configured"
#: Execution option our units of work set so SQLite's BEGIN takes the write lock at once.
IMMEDIATE_OPTION = "billingkit_begin_immediate"
#: Per server backend: the billingkit extra that installs its driver, and the URL scheme
#: of that driver.
_EXTRAS = {
    "postgresql": ("postgres", "postgresql+psycopg"),
    "mysql": ("mysql", "mysql+pymysql"),
    "mariadb": ("mysql", "mariadb+pymysql"),
}
_SCHEMES = "sqlite://, postgresql+psycopg://, mysql+pymysql:// or mariadb+pymysql://"


def parse_url(url: str | URL) -> URL:
    """``url`` as a ``URL``; a malformed one is a ``ConfigurationError``."""
    try:
        return make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:
        raise ConfigurationError(f"invalid database URL: {exc}") from None


def is_memory_sqlite(url: URL) -> bool:
    """Whether ``url`` names a private in-memory SQLite database."""
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and (
        database in ("", ":memory:") or database.startswith("file::memory:")
    )


def create_engine(
    url: str | URL,
    *,
    busy_timeout: float = 30.0,
    sqlite_synchronous: str = "FULL",
    **engine_kwargs: Any,
) -> Engine:
    """Build an engine with the settings billingkit expects.

    * SQLite (``sqlite:///path/to/file.db``, or ``sqlite://`` in memory): WAL journal, a busy
      timeout of ``busy_timeout`` seconds, foreign keys on, ``synchronous`` as given (``FULL``
      by default: a ledger entry acknowledged to Stripe must survive a power cut), and
      ``configure_sqlite_engine``'s transaction handling. An in-memory database is one
      connection shared by every thread of the process (units of work take turns).
    * PostgreSQL / MySQL / MariaDB: MySQL/MariaDB run at ``READ COMMITTED`` (billingkit's
      row locks then take no gap locks). No ``pool_pre_ping``: it costs a round trip on
      every checkout, and ``SqlAlchemyRepository`` does not need it (a pooled connection
      that died while idle is replaced when the unit of work's first statement finds it
      dead, before anything was done in it). Pass ``pool_pre_ping=True`` if the app also
      uses this engine for its own work and wants that check there.

    Extra keyword arguments go to ``sqlalchemy.create_engine``. A malformed URL, an
    unknown URL scheme and a database driver that is not installed raise
    ``ConfigurationError`` (naming the extra that installs the driver:
    ``billingkit[postgres]``, ``billingkit[mysql]``).
    """
    parsed = parse_url(url)
    if busy_timeout <= 0:
        raise ConfigurationError("busy_timeout must be positive")
    if parsed.get_backend_name() != "sqlite":
        if parsed.get_backend_name() in ("mysql", "mariadb"):
            # No gap locks: concurrent first inserts of one subscription cannot deadlock.
            engine_kwargs.setdefault("isolation_level", "READ COMMITTED")
        return _sqlalchemy_engine(parsed, engine_kwargs)
    if sqlite_synchronous.upper() not in _SYNCHRONOUS:
        raise ConfigurationError(f"sqlite_synchronous must be one of {', '.join(_SYNCHRONOUS)}")
    connect_args = dict(engine_kwargs.pop("connect_args", {}))
    connect_args.setdefault("timeout", busy_timeout)
    if is_memory_sqlite(parsed):
        connect_args.setdefault("check_same_thread", False)
        engine_kwargs.setdefault("poolclass", StaticPool)
    engine = _sqlalchemy_engine(parsed, {"connect_args": connect_args, **engine_kwargs})
    configure_sqlite_engine(
        engine, busy_timeout=busy_timeout, synchronous=sqlite_synchronous.upper()
    )
    return engine


def _sqlalchemy_engine(url: URL, engine_kwargs: dict[str, Any]) -> Engine:
    """``sqlalchemy.create_engine``, whose setup errors become ``ConfigurationError``.

    An unknown URL scheme, and a driver that is not installed (naming the billingkit extra
    that installs one), are configuration mistakes: they are reported here, at start-up.
    """
    try:
        return sqlalchemy.create_engine(url, **engine_kwargs)
    except sqlalchemy.exc.NoSuchModuleError:
        raise ConfigurationError(
            f"unknown database URL scheme {url.drivername!r}: billingkit's databases are "
            f"reached with {_SCHEMES} URLs"
        ) from None
    except ImportError as exc:
        raise ConfigurationError(_missing_driver(url, exc)) from None


def _missing_driver(url: URL, exc: ImportError) -> str:
    module = f" (no module {exc.name!r})" if exc.name else ""
    message = f"the database driver for {url.drivername!r} is not installed{module}"
    extra = _EXTRAS.get(url.get_backend_name())
    if extra is None:
        return message
    name, scheme = extra
    if url.drivername == scheme:
        return f'{message}: pip install "billingkit[{name}]"'
    return (
        f'{message}: pip install "billingkit[{name}]" and use a {scheme}:// URL, '
        "or install that driver yourself"
    )


def configure_sqlite_engine(
    engine: Engine, *, busy_timeout: float = 30.0, synchronous: str = "FULL"
) -> Engine:
    """Give a SQLite engine real transactions (once; later calls do nothing).

    Python's ``sqlite3`` module begins transactions lazily, just before the first write, and
    cannot run savepoints reliably. This hands transaction control to SQLAlchemy, as
    SQLAlchemy's SQLite documentation recommends: the driver's own ``BEGIN`` is switched off
    and every SQLAlchemy transaction emits ``BEGIN`` itself — ``BEGIN IMMEDIATE`` for
    billingkit's units of work, so a writer waits (up to the busy timeout) for the write lock
    up front instead of failing half-way. It also sets WAL mode, the busy timeout,
    ``synchronous`` and foreign keys on every new connection.
    """
    if engine.dialect.name != "sqlite":
        raise ConfigurationError("configure_sqlite_engine() needs a SQLite engine")
    if getattr(engine, _CONFIGURED, False):
        return engine
    memory = is_memory_sqlite(engine.url)
    timeout_ms = int(busy_timeout * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={timeout_ms}")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sqlalchemy.Connection) -> None:
        immediate = connection.get_execution_options().get(IMMEDIATE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    setattr(engine, _CONFIGURED, True)
    return engine
