"""Connections and transactions of ``SqlAlchemyRepository``, and its error translation.

* ``Connections`` — where a repository's units of work run: a pooled connection of its
  own, or the app's connection (``for_connection``: fixed; ``using``: bound per context),
  and which unit of work is open in the current context (``current_connection``).
* ``SqlTransaction`` — the unit of work's transaction, on
  ``UnitOfWorkBase``'s lifecycle: ``BEGIN`` (a SAVEPOINT inside the
  app's transaction), ``COMMIT`` or ``ROLLBACK``, the connection returned. Its
  ``execute`` replaces a pooled connection that died while idle.
* ``translate`` — SQLAlchemy and driver errors to billingkit's repository error tree.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar, Token
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import RootTransaction
from sqlalchemy.engine.base import NestedTransaction
from sqlalchemy.orm import Session
from typing_extensions import override

from billingkit.adapters.sqlalchemy._dialects import SqlDialect
from billingkit.adapters.sqlalchemy._engine import is_memory_sqlite
from billingkit.errors import (
    ConfigurationError,
    ConflictError,
    RepositoryError,
    RepositoryUnavailableError,
)
from billingkit.ports import UnitOfWorkBase

__all__ = ["Connections", "SqlTransaction", "operation", "translate"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T", bound="SqlTransaction")


# --------------------------------------------------------------------------- errors


def _describe(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()[0] if str(original).strip() else ""
    return f"{type(original).__name__}: {text}"[:300]


def translate(exc: Exception, doing: str) -> RepositoryError:
    """Map a SQLAlchemy/driver error to billingkit's repository error tree."""
    if isinstance(exc, RepositoryError):
        return exc
    message = f"{doing} failed: {_describe(exc)}"
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated or isinstance(
            exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError
        ):
            return RepositoryUnavailableError(message)
        if isinstance(exc, sqlalchemy.exc.IntegrityError):
            return ConflictError(message)
    if isinstance(exc, sqlalchemy.exc.TimeoutError | sqlalchemy.exc.DisconnectionError):
        return RepositoryUnavailableError(message)
    return RepositoryError(message)


def operation(
    method: Callable[Concatenate[_T, _P], _R],
) -> Callable[Concatenate[_T, _P], _R]:
    """Check the unit of work is usable, and map database errors."""

    @wraps(method)
    def wrapper(self: _T, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        self._check()
        try:
            return method(self, *args, **kwargs)
        except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
            raise translate(exc, method.__name__) from exc

    return wrapper


# --------------------------------------------------------------------------- connections


def as_connection(connection: Connection | Session) -> Connection:
    """The ``Connection`` of ``connection`` (a Session's current one)."""
    if isinstance(connection, Session):
        connection = connection.connection()
    if not isinstance(connection, Connection):
        raise ConfigurationError("for_connection() needs a Connection or a Session")
    return connection


class Connections:
    """Where the units of work of one repository run, and which one is open here.

    Args:
        engine: the pool of the repository's own connections.
        owns_engine: the repository built ``engine`` (from a URL) and disposes it.
        dialect: the database family's strategy.
        fixed: the app's connection every unit of work runs in (``for_connection``).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        owns_engine: bool,
        dialect: SqlDialect,
        fixed: Connection | None = None,
    ) -> None:
        self.engine = engine
        self.owns_engine = owns_engine
        self.dialect = dialect
        #: A private in-memory SQLite database is a single shared connection: serialize.
        self.serial = threading.Lock() if is_memory_sqlite(engine.url) else None
        self.fixed = fixed
        self._bound: ContextVar[Connection | None] = ContextVar(
            f"billingkit_repository_{id(self)}", default=None
        )
        self.current: ContextVar[SqlTransaction | None] = ContextVar(
            f"billingkit_unit_of_work_{id(self)}", default=None
        )

    def given(self) -> Connection | None:
        """The app's connection the next unit of work joins, if any."""
        return self.fixed or self._bound.get()

    @contextmanager
    def bound_to(self, connection: Connection | Session) -> Iterator[None]:
        """Within the block (this thread/task only), units of work join ``connection``."""
        token = self._bound.set(as_connection(connection))
        try:
            yield
        finally:
            self._bound.reset(token)

    def current_connection(self) -> Connection:
        """The connection of the unit of work open in the current context."""
        uow = self.current.get()
        if uow is None or uow._conn is None:
            raise RepositoryError("no unit of work of this repository is open here")
        uow._fresh = False  # the app may now have sent statements of its own
        return uow._conn


# --------------------------------------------------------------------------- transaction


class SqlTransaction(UnitOfWorkBase):
    """The transaction of one unit of work; the port methods are added by a subclass."""

    def __init__(self, connections: Connections) -> None:
        super().__init__(connections)
        self._connections = connections
        self._sql = connections.dialect
        self._given = connections.given()
        self._conn: Connection | None = None
        self._trans: RootTransaction | NestedTransaction | None = None
        self._locked = False
        #: Nothing was sent yet on a pooled server connection of our own: its first
        #: statement may be re-run on a fresh connection if this one turns out dead.
        self._fresh = False
        self._token: Token[SqlTransaction | None] | None = None

    # -------------------------------------------------------------------------- lifecycle

    @override
    def _begin(self) -> None:
        serial = self._connections.serial
        if serial is not None and self._given is None:
            serial.acquire()
            self._locked = True
        try:
            if self._given is None:
                self._begin_own()
            else:
                self._begin_given(self._given)
        except BaseException as exc:
            self._close()
            if isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
                raise translate(exc, "begin") from exc
            raise
        self._token = self._connections.current.set(self)

    def _begin_given(self, conn: Connection) -> None:
        """Join the app's connection: a SAVEPOINT in its transaction, or a transaction."""
        self._conn = conn
        if conn.in_transaction():
            self._sql.ensure_write_lock(conn)
            self._trans = conn.begin_nested()
        else:
            self._trans = conn.begin()
            self._sql.ensure_write_lock(conn)

    def _begin_own(self) -> None:
        """Begin a transaction on a connection of the repository's pool."""
        conn = self._connections.engine.connect()
        self._conn = conn
        conn = self._sql.own_connection(conn, owns_engine=self._connections.owns_engine)
        self._trans = conn.begin()
        self._sql.ensure_write_lock(conn)
        # PostgreSQL and MySQL send BEGIN with the first statement: until then the
        # transaction is empty and a dead connection can be swapped for a live one.
        self._fresh = self._sql.lazy_begin

    @override
    def _commit(self) -> None:
        trans = self._trans
        if trans is not None and trans.is_active:
            try:
                trans.commit()
            except sqlalchemy.exc.SQLAlchemyError as error:
                raise translate(error, "commit") from error

    @override
    def _rollback(self) -> None:
        trans = self._trans
        if trans is not None and trans.is_active:
            trans.rollback()

    @override
    def _release(self) -> None:
        if self._token is not None:
            self._connections.current.reset(self._token)
            self._token = None
        self._close()

    def _close(self) -> None:
        if self._given is None and self._conn is not None:
            self._conn.close()
        self._conn = None
        serial = self._connections.serial
        if self._locked and serial is not None:
            self._locked = False
            serial.release()

    @property
    def connection(self) -> Connection:
        """The connection this unit of work runs on (to write app tables atomically)."""
        self._check()
        assert self._conn is not None
        self._fresh = False  # the app may now have sent statements of its own
        return self._conn

    # ------------------------------------------------------------------------ statements

    def execute(self, statement: Any, parameters: Any = None) -> Any:
        """Execute ``statement`` in this transaction (used by the dialect strategies)."""
        conn = self._conn
        assert conn is not None
        if not self._fresh:
            return conn.execute(statement, parameters)
        self._fresh = False
        try:
            return conn.execute(statement, parameters)
        except sqlalchemy.exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        # The pooled connection was dead before this transaction did anything (SQLAlchemy
        # has invalidated it and the pool's older connections): run it on a fresh one.
        self._trans = None
        with suppress(sqlalchemy.exc.SQLAlchemyError):
            conn.close()
        self._conn = None
        self._begin_own()
        self._fresh = False
        assert self._conn is not None
        return self._conn.execute(statement, parameters)

    def count(self, statement: Any, parameters: Any = None) -> int:
        """Execute a DML statement and return how many rows it wrote.

        ``statement`` must carry the ``preserve_rowcount`` execution option if it is not an
        UPDATE or DELETE (the prebuilt statements do).
        """
        return int(self.execute(statement, parameters).rowcount)
