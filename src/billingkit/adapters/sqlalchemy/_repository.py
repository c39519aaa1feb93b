"""``SqlAlchemyRepository``: the Repository port on SQLite, PostgreSQL and MySQL/MariaDB."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from contextvars import ContextVar, Token
from datetime import datetime
from functools import wraps
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy
from sqlalchemy import URL, Connection, Engine, Row, Table, func, or_, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import RootTransaction
from sqlalchemy.engine.base import NestedTransaction
from sqlalchemy.orm import Session
from typing_extensions import override

from billingkit.adapters._shared import (
    CLOSED,
    NEW,
    OPEN,
    aware_utc,
    misuse_error,
    nested_error,
)
from billingkit.adapters.sqlalchemy._engine import (
    IMMEDIATE_OPTION,
    create_engine,
    is_memory_sqlite,
)
from billingkit.adapters.sqlalchemy._schema import (
    CHECKOUTS,
    CUSTOMERS,
    EVENTS,
    SUBSCRIPTIONS,
    metadata,
)
from billingkit.adapters.sqlalchemy._statements import (
    EVENT_COLUMNS,
    RECLAIMABLE,
    SUBSCRIPTION_COLUMNS,
    HotStatements,
    hot_statements,
)
from billingkit.domain import (
    TERMINAL_STATUSES,
    CheckoutRecord,
    CustomerLink,
    EventRecord,
    EventStatus,
    Subscription,
    SubscriptionStatus,
)
from billingkit.domain.ordering import decide_save
from billingkit.errors import (
    ConfigurationError,
    ConflictError,
    RepositoryError,
    RepositoryUnavailableError,
)
from billingkit.ports import ClaimOutcome, Repository, SaveOutcome, UnitOfWork

__all__ = ["SqlAlchemyRepository"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

_FAILABLE = [*RECLAIMABLE, EventStatus.PROCESSING.value]
_MYSQL_DUPLICATE_KEY = 1062
_SUPPORTED = ("sqlite", "postgresql", "mysql", "mariadb")


# --------------------------------------------------------------------------- errors


def _describe(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()[0] if str(original).strip() else ""
    return f"{type(original).__name__}: {text}"[:300]


def _translate(exc: Exception, doing: str) -> RepositoryError:
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


def _is_duplicate_key(exc: sqlalchemy.exc.IntegrityError) -> bool:
    args: tuple[object, ...] = getattr(exc.orig, "args", ())
    return bool(args) and args[0] == _MYSQL_DUPLICATE_KEY


def _operation(
    method: Callable[Concatenate[_SqlUnitOfWork, _P], _R],
) -> Callable[Concatenate[_SqlUnitOfWork, _P], _R]:
    """Check the unit of work is usable, and map database errors."""

    @wraps(method)
    def wrapper(self: _SqlUnitOfWork, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        self._check()
        try:
            return method(self, *args, **kwargs)
        except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
            raise _translate(exc, method.__name__) from exc

    return wrapper


# --------------------------------------------------------------------------- rows <-> values


def _subscription_row(sub: Subscription) -> dict[str, Any]:
    # The value's own attributes, one per column (a model_dump() would copy and walk them).
    row = {name: getattr(sub, name) for name in SUBSCRIPTION_COLUMNS}
    row["status"] = SubscriptionStatus(sub.status).value
    row["metadata"] = dict(sub.metadata)
    return row


def _subscription(row: Row[Any]) -> Subscription:
    return Subscription.model_validate(row._asdict())


def _link(row: Row[Any]) -> CustomerLink:
    return CustomerLink.model_validate(row._asdict())


def _checkout(row: Row[Any]) -> CheckoutRecord:
    return CheckoutRecord.model_validate(row._asdict())


def _event(row: Row[Any]) -> EventRecord:
    values = row._asdict()
    values["payload"] = bytes(values["payload"])
    return EventRecord.model_validate(values)


def _event_row(record: EventRecord, **changes: Any) -> dict[str, Any]:
    row = {name: getattr(record, name) for name in EVENT_COLUMNS}
    row["status"] = EventStatus(record.status).value
    row.update(changes)
    return row


# --------------------------------------------------------------------------- repository


class SqlAlchemyRepository(Repository):
    """A :class:`~billingkit.ports.Repository` on SQLAlchemy 2 Core.

    Args:
        engine_or_url: an :class:`~sqlalchemy.Engine` the app already has, or a database URL
            (``sqlite:///billing.db``, ``sqlite://`` for memory,
            ``postgresql+psycopg://...``, ``mysql+pymysql://...``); a URL gets an engine from
            :func:`billingkit.adapters.sqlalchemy.create_engine`, which :meth:`close` disposes.
        busy_timeout: SQLite only, for a URL: seconds a writer waits for the write lock.

    Every :meth:`unit_of_work` runs in its own transaction on a pooled connection (on SQLite
    ``BEGIN IMMEDIATE``; on MySQL/MariaDB ``READ COMMITTED``), unless the repository is bound
    to a connection of the app (:meth:`for_connection`, :meth:`using`): then it runs inside
    the app's transaction, in a SAVEPOINT, and never commits the app's transaction.

    A pooled server connection that died while idle (server restart, idle timeout) is
    replaced without a ``pool_pre_ping`` round trip per unit of work: if the unit of work's
    first statement finds the connection gone, nothing has been done in that transaction
    yet, so it is re-run once on a fresh connection.

    The tables must exist: run the shipped migrations
    (:func:`~billingkit.adapters.sqlalchemy.upgrade`) or, for tests and quick starts,
    :meth:`create_tables`.

    Rules of use, as for every repository: a unit of work is entered once, used by the thread
    that entered it, and does not nest on one thread (that raises
    :class:`~billingkit.errors.RepositoryError`).
    """

    def __init__(
        self,
        engine_or_url: Engine | str | URL,
        *,
        busy_timeout: float = 30.0,
        _connection: Connection | None = None,
    ) -> None:
        if isinstance(engine_or_url, Engine):
            self._engine = engine_or_url
            self._owns_engine = False
        elif isinstance(engine_or_url, str | URL):
            self._engine = create_engine(engine_or_url, busy_timeout=busy_timeout)
            self._owns_engine = True
        else:
            raise ConfigurationError(
                "SqlAlchemyRepository needs an Engine or a database URL, "
                f"not {type(engine_or_url).__name__}"
            )
        name = self._engine.dialect.name
        if name not in _SUPPORTED:
            raise ConfigurationError(
                f"unsupported database {name!r}: billingkit supports SQLite, PostgreSQL, "
                "MySQL and MariaDB"
            )
        self._dialect = "mysql" if name == "mariadb" else name
        # A private in-memory SQLite database is a single shared connection: serialize.
        self._serial = threading.Lock() if is_memory_sqlite(self._engine.url) else None
        self._fixed: Connection | None = _connection
        self._bound: ContextVar[Connection | None] = ContextVar(
            f"billingkit_repository_{id(self)}", default=None
        )
        self._local = threading.local()
        self._current: ContextVar[_SqlUnitOfWork | None] = ContextVar(
            f"billingkit_unit_of_work_{id(self)}", default=None
        )
        self._sql: HotStatements = hot_statements(self._dialect)

    # ------------------------------------------------------------------------ construction

    @classmethod
    def for_connection(cls, connection: Connection | Session) -> SqlAlchemyRepository:
        """A repository whose units of work run inside ``connection``'s transaction.

        Pass a :class:`~sqlalchemy.Connection` or an ORM :class:`~sqlalchemy.orm.Session`
        (its current connection is used). Each unit of work becomes a SAVEPOINT: its changes
        are undone if its block raises, and become durable when *the app* commits. If the
        connection has no transaction open, the unit of work begins and commits its own.
        """
        if isinstance(connection, Session):
            connection = connection.connection()
        if not isinstance(connection, Connection):
            raise ConfigurationError("for_connection() needs a Connection or a Session")
        return cls(connection.engine, _connection=connection)

    @contextmanager
    def using(self, connection: Connection | Session) -> Iterator[SqlAlchemyRepository]:
        """Within the ``with`` block (this thread/task only), run inside the app's transaction.

        For services built once at start-up: wrap a request in ``with repo.using(conn):`` and
        every unit of work the services open in the block joins ``conn``'s transaction, as
        with :meth:`for_connection`.
        """
        if isinstance(connection, Session):
            connection = connection.connection()
        token = self._bound.set(connection)
        try:
            yield self
        finally:
            self._bound.reset(token)

    def current_connection(self) -> Connection:
        """The connection of this repository's unit of work open in the current context.

        For webhook hooks (they run inside the event's unit of work) that write the app's own
        tables: what they write through this connection commits or rolls back together with
        the event. Raises :class:`~billingkit.errors.RepositoryError` outside a unit of work.
        """
        uow = self._current.get()
        if uow is None or uow._conn is None:
            raise RepositoryError("no unit of work of this repository is open here")
        uow._fresh = False  # the app may now have sent statements of its own
        return uow._conn

    @property
    def engine(self) -> Engine:
        """The engine units of work draw their connections from."""
        return self._engine

    def create_tables(self) -> None:
        """Create the billingkit tables if missing — for tests and quick starts only.

        Production databases get their schema from the migrations (see ``upgrade``), so
        that later versions of billingkit can change it.
        """
        try:
            with self._engine.begin() as connection:
                metadata.create_all(connection)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise _translate(exc, "create_tables") from exc

    @override
    def unit_of_work(self) -> _SqlUnitOfWork:
        """Open a transaction: commit on normal exit, roll back if the block raises."""
        return _SqlUnitOfWork(self, self._fixed or self._bound.get())

    @override
    def close(self) -> None:
        """Dispose the engine's pool if the repository created the engine."""
        if self._owns_engine:
            self._engine.dispose()

    def __repr__(self) -> str:
        return f"SqlAlchemyRepository({self._engine.url.render_as_string(hide_password=True)!r})"


# --------------------------------------------------------------------------- unit of work


class _SqlUnitOfWork(UnitOfWork):
    """One transaction of :class:`SqlAlchemyRepository`; also its own context manager."""

    def __init__(self, repository: SqlAlchemyRepository, connection: Connection | None) -> None:
        self._repo = repository
        self._dialect = repository._dialect
        self._sql = repository._sql
        self._given = connection
        self._conn: Connection | None = None
        self._trans: RootTransaction | NestedTransaction | None = None
        self._state = NEW
        self._owner: int | None = None
        self._locked = False
        #: Nothing was sent yet on a pooled server connection of our own: its first
        #: statement may be re-run on a fresh connection if this one turns out dead.
        self._fresh = False
        self._token: Token[_SqlUnitOfWork | None]

    # -------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> _SqlUnitOfWork:
        if self._state != NEW:
            raise RepositoryError("a unit of work can be entered only once")
        local = self._repo._local
        if getattr(local, "open", False):
            raise nested_error()
        if self._repo._serial is not None and self._given is None:
            self._repo._serial.acquire()
            self._locked = True
        try:
            self._begin()
        except BaseException as exc:
            self._release()
            if isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
                raise _translate(exc, "begin") from exc
            raise
        local.open = True
        self._token = self._repo._current.set(self)
        self._state = OPEN
        self._owner = threading.get_ident()
        return self

    def _begin(self) -> None:
        if self._given is None:
            self._begin_own()
            return
        conn = self._given
        self._conn = conn
        if conn.in_transaction():
            self._sqlite_write_lock(conn)
            self._trans = conn.begin_nested()
        else:
            self._trans = conn.begin()
            self._sqlite_write_lock(conn)

    def _begin_own(self) -> None:
        """Begin a transaction on a connection of the repository's pool."""
        conn = self._repo._engine.connect()
        self._conn = conn
        if self._dialect == "mysql" and not self._repo._owns_engine:
            # Our own MySQL engines are READ COMMITTED already (see create_engine).
            conn = conn.execution_options(isolation_level="READ COMMITTED")
        elif self._dialect == "sqlite":
            conn = conn.execution_options(**{IMMEDIATE_OPTION: True})
        self._trans = conn.begin()
        self._sqlite_write_lock(conn)
        # PostgreSQL and MySQL send BEGIN with the first statement: until then the
        # transaction is empty and a dead connection can be swapped for a live one.
        self._fresh = self._dialect != "sqlite"

    def _sqlite_write_lock(self, conn: Connection) -> None:
        """On an engine left in pysqlite's default mode, take the write lock ourselves."""
        if self._dialect != "sqlite":
            return
        dbapi_connection: Any = conn.connection.dbapi_connection
        if not dbapi_connection.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._state != OPEN:
            return
        trans = self._trans
        try:
            if trans is not None and trans.is_active:
                if exc_type is None:
                    try:
                        trans.commit()
                    except sqlalchemy.exc.SQLAlchemyError as error:
                        raise _translate(error, "commit") from error
                else:
                    # the block's own exception is the one that matters
                    with suppress(sqlalchemy.exc.SQLAlchemyError):
                        trans.rollback()
        finally:
            self._repo._current.reset(self._token)
            self._state = CLOSED
            self._owner = None
            self._repo._local.open = False
            self._release()

    def _release(self) -> None:
        if self._given is None and self._conn is not None:
            self._conn.close()
        self._conn = None
        if self._locked and self._repo._serial is not None:
            self._locked = False
            self._repo._serial.release()

    def _check(self) -> None:
        if self._owner != threading.get_ident():
            raise misuse_error(self._state)

    @property
    def connection(self) -> Connection:
        """The connection this unit of work runs on (to write app tables atomically)."""
        self._check()
        assert self._conn is not None
        self._fresh = False  # the app may now have sent statements of its own
        return self._conn

    # ------------------------------------------------------------------------ SQL helpers

    def _execute(self, statement: Any, parameters: Any = None) -> Any:
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

    def _count(self, statement: Any, parameters: Any = None) -> int:
        """Execute a DML statement and return how many rows it wrote.

        ``statement`` must carry the ``preserve_rowcount`` execution option if it is not an
        UPDATE or DELETE (the prebuilt statements do).
        """
        return int(self._execute(statement, parameters).rowcount)

    def _insert_unless_conflict(self, table: Table, row: Mapping[str, Any]) -> bool:
        """INSERT ``row``; ``False`` (nothing written) if a unique key already holds it."""
        if self._dialect == "mysql":
            try:
                self._execute(table.insert().values(row))
            except sqlalchemy.exc.IntegrityError as exc:
                # InnoDB rolls back the failed statement only, not the transaction.
                if _is_duplicate_key(exc):
                    return False
                raise
            return True
        insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        statement = insert(table).values(row).on_conflict_do_nothing()
        return self._count(statement.execution_options(preserve_rowcount=True)) == 1

    def _upsert_where(
        self,
        table: Table,
        row: Mapping[str, Any],
        set_: Mapping[str, Any],
        where: Any,
    ) -> bool:
        """INSERT ``row`` or, on a primary-key conflict, UPDATE ``set_`` if ``where`` holds.

        PostgreSQL and SQLite only (one statement). Returns whether a row was written.
        """
        insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        key = [column.name for column in table.primary_key.columns]
        statement = insert(table).values(row)
        statement = statement.on_conflict_do_update(index_elements=key, set_=set_, where=where)
        return self._count(statement.execution_options(preserve_rowcount=True)) == 1

    # -------------------------------------------------------------------------- customers

    @override
    @_operation
    def customer_for_user(self, user_id: str) -> CustomerLink | None:
        row = self._execute(select(CUSTOMERS).where(CUSTOMERS.c.user_id == user_id)).first()
        return None if row is None else _link(row)

    @override
    @_operation
    def customer_by_id(self, customer_id: str) -> CustomerLink | None:
        row = self._execute(self._sql.customer_by_id, {"b_id": customer_id}).first()
        return None if row is None else _link(row)

    @override
    @_operation
    def link_customer(self, link: CustomerLink) -> CustomerLink:
        if self._insert_unless_conflict(CUSTOMERS, link.model_dump()):
            return link
        rows = self._execute(
            select(CUSTOMERS).where(
                or_(
                    CUSTOMERS.c.user_id == link.user_id,
                    CUSTOMERS.c.customer_id == link.customer_id,
                )
            )
        ).all()
        for row in rows:
            if row.user_id == link.user_id:
                if row.customer_id == link.customer_id:
                    return _link(row)
                raise ConflictError(
                    f"user {link.user_id!r} is already linked to another Stripe customer"
                )
        raise ConflictError(
            f"Stripe customer {link.customer_id!r} is already linked to another user"
        )

    @override
    @_operation
    def update_customer(self, link: CustomerLink) -> SaveOutcome:
        result = self._execute(
            update(CUSTOMERS)
            .where(
                CUSTOMERS.c.customer_id == link.customer_id,
                CUSTOMERS.c.watermark <= link.watermark,
            )
            .values(email=link.email, deleted=link.deleted, watermark=link.watermark)
        )
        return SaveOutcome.WRITTEN if result.rowcount == 1 else SaveOutcome.STALE

    # ---------------------------------------------------------------------- subscriptions

    @override
    @_operation
    def get_subscription(self, subscription_id: str) -> Subscription | None:
        row = self._execute(self._sql.get_subscription, {"b_id": subscription_id}).first()
        return None if row is None else _subscription(row)

    @override
    @_operation
    def subscriptions_for_user(self, user_id: str) -> list[Subscription]:
        linked = select(CUSTOMERS.c.customer_id).where(CUSTOMERS.c.user_id == user_id)
        rows = self._execute(
            select(SUBSCRIPTIONS)
            .where(
                or_(
                    SUBSCRIPTIONS.c.user_id == user_id,
                    SUBSCRIPTIONS.c.customer_id.in_(linked.scalar_subquery()),
                )
            )
            .order_by(SUBSCRIPTIONS.c.created.desc(), SUBSCRIPTIONS.c.id.desc())
        ).all()
        return [_subscription(row) for row in rows]

    @override
    @_operation
    def save_subscription(
        self, subscription: Subscription, *, allow_tie: bool = False
    ) -> SaveOutcome:
        row = _subscription_row(subscription)
        if self._dialect == "mysql":
            return self._save_subscription_locked(subscription, row, allow_tie)
        # One statement: INSERT, or UPDATE only if the stored row is older (see _statements).
        terminal = subscription.status in TERMINAL_STATUSES
        upsert = self._sql.save_subscription[allow_tie, terminal]
        if self._count(upsert, row) == 1:
            return SaveOutcome.WRITTEN
        current = self._execute(self._sql.subscription_state, {"b_id": subscription.id}).one()
        outcome = decide_save(
                SubscriptionStatus(current.status), current.watermark, subscription, allow_tie
            )
        # The conditional write declined, so the row it saw was not older; what it holds now
        # can only be newer still.
        return SaveOutcome.STALE if outcome is SaveOutcome.WRITTEN else outcome

    def _save_subscription_locked(
        self, subscription: Subscription, row: dict[str, Any], allow_tie: bool
    ) -> SaveOutcome:
        """MySQL/MariaDB: row lock (SELECT ... FOR UPDATE), decide, then write."""
        stored = SUBSCRIPTIONS.c
        locate = (
            select(stored.status, stored.watermark)
            .where(stored.id == subscription.id)
            .with_for_update()
        )
        for _ in range(3):
            current = self._execute(locate).first()
            if current is None:
                if self._insert_unless_conflict(SUBSCRIPTIONS, row):
                    return SaveOutcome.WRITTEN
                continue  # a concurrent insert won: lock its row and decide against it
            outcome = decide_save(
                SubscriptionStatus(current.status), current.watermark, subscription, allow_tie
            )
            if outcome is SaveOutcome.WRITTEN:
                values = {name: value for name, value in row.items() if name != "id"}
                values["user_id"] = func.coalesce(row["user_id"], stored.user_id)
                values["plan_key"] = func.coalesce(row["plan_key"], stored.plan_key)
                self._execute(
                    update(SUBSCRIPTIONS).where(stored.id == subscription.id).values(values)
                )
            return outcome
        raise RepositoryUnavailableError(
            f"could not save subscription {subscription.id!r}: it kept changing; retry"
        )

    # ------------------------------------------------------------------ checkout sessions

    @override
    @_operation
    def save_checkout(self, record: CheckoutRecord) -> None:
        row = record.model_dump()
        values = {name: value for name, value in row.items() if name != "session_id"}
        if self._dialect == "mysql":
            statement = mysql.insert(CHECKOUTS).values(row)
            self._execute(statement.on_duplicate_key_update(values))
        else:
            self._upsert_where(CHECKOUTS, row, values, None)

    @override
    @_operation
    def get_checkout(self, session_id: str) -> CheckoutRecord | None:
        row = self._execute(
            select(CHECKOUTS).where(CHECKOUTS.c.session_id == session_id)
        ).first()
        return None if row is None else _checkout(row)

    @override
    @_operation
    def find_open_checkout(
        self, *, user_id: str, request_key: str, created_after: datetime
    ) -> CheckoutRecord | None:
        after = aware_utc(created_after, "created_after")
        c = CHECKOUTS.c
        row = self._execute(
            select(CHECKOUTS)
            .where(
                c.user_id == user_id,
                c.request_key == request_key,
                c.status == "open",
                c.created_at > after,
            )
            .order_by(c.created_at.desc(), c.session_id.desc())
            .limit(1)
        ).first()
        return None if row is None else _checkout(row)

    @override
    @_operation
    def open_checkouts_for_user(
        self, *, user_id: str, created_after: datetime
    ) -> list[CheckoutRecord]:
        after = aware_utc(created_after, "created_after")
        c = CHECKOUTS.c
        rows = self._execute(
            select(CHECKOUTS)
            .where(c.user_id == user_id, c.status == "open", c.created_at > after)
            .order_by(c.created_at.desc(), c.session_id.desc())
        ).all()
        return [_checkout(row) for row in rows]

    # ----------------------------------------------------------------------- event ledger

    @override
    @_operation
    def claim_event(self, record: EventRecord) -> ClaimOutcome:
        row = _event_row(record, status=EventStatus.PROCESSING.value)
        if self._claim(row):
            return ClaimOutcome.CLAIMED
        if self._dialect == "mysql":
            # The failed INSERT left a shared lock on the row; asking for an exclusive one
            # while other duplicates hold theirs would deadlock. Most duplicates are finished
            # events: a plain read settles those without any further lock.
            status = self._execute(select(EVENTS.c.status).where(EVENTS.c.id == record.id))
            if status.scalar_one_or_none() not in RECLAIMABLE:
                return ClaimOutcome.DUPLICATE
        reclaimed = self._count(self._sql.reclaim, {"b_id": record.id})
        return ClaimOutcome.CLAIMED if reclaimed == 1 else ClaimOutcome.DUPLICATE

    def _claim(self, row: Mapping[str, Any]) -> bool:
        """INSERT the event row; ``False`` if its id is already in the ledger."""
        if self._dialect != "mysql":
            return self._count(self._sql.claim, row) == 1
        try:
            self._execute(self._sql.claim, row)
        except sqlalchemy.exc.IntegrityError as exc:
            # InnoDB rolls back the failed statement only, not the transaction.
            if _is_duplicate_key(exc):
                return False
            raise
        return True

    @override
    @_operation
    def finish_event(
        self, event_id: str, status: EventStatus, *, processed_at: datetime
    ) -> None:
        when = aware_utc(processed_at, "processed_at")
        try:
            status = EventStatus(status)
        except ValueError:
            raise RepositoryError(f"unknown event status {status!r}") from None
        finished = self._count(
            self._sql.finish, {"b_id": event_id, "status": status.value, "processed_at": when}
        )
        if finished != 1:
            raise RepositoryError(f"event {event_id!r} is not in the ledger")

    @override
    @_operation
    def mark_event_failed(self, record: EventRecord, error: str) -> EventRecord:
        failed = EventStatus.FAILED.value
        row = _event_row(record, status=failed, attempts=1, last_error=error)
        events = EVENTS.c
        if self._dialect == "mysql":
            if not self._insert_unless_conflict(EVENTS, row):
                self._execute(
                    update(EVENTS)
                    .where(events.id == record.id, events.status.in_(_FAILABLE))
                    .values(status=failed, attempts=events.attempts + 1, last_error=error)
                )
        else:
            self._upsert_where(
                EVENTS,
                row,
                {"status": failed, "attempts": events.attempts + 1, "last_error": error},
                events.status.in_(_FAILABLE),
            )
        stored = self._execute(select(EVENTS).where(events.id == record.id)).one()
        return _event(stored)

    @override
    @_operation
    def get_event(self, event_id: str) -> EventRecord | None:
        row = self._execute(select(EVENTS).where(EVENTS.c.id == event_id)).first()
        return None if row is None else _event(row)

    @override
    @_operation
    def list_events(
        self, *, status: EventStatus | None = None, limit: int = 100
    ) -> list[EventRecord]:
        if limit < 0:
            raise RepositoryError("limit must not be negative")
        query = select(EVENTS).order_by(EVENTS.c.received_at, EVENTS.c.id).limit(limit)
        if status is not None:
            query = query.where(EVENTS.c.status == EventStatus(status).value)
        return [_event(row) for row in self._execute(query).all()]
