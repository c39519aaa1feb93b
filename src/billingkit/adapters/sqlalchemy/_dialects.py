"""The SQL that differs between databases: one small strategy per family.

* ``PostgresSqliteDialect`` — PostgreSQL and SQLite share ``INSERT … ON CONFLICT``:
  claiming an event, linking a customer and saving a subscription are each one statement.
  ``SqliteDialect`` adds SQLite's transaction handling (``BEGIN IMMEDIATE``).
* ``MySqlDialect`` — MySQL/MariaDB: a plain ``INSERT`` whose duplicate-key error is the
  answer, and ``SELECT … FOR UPDATE`` then write for the conditional subscription save.

Each hot statement is one method of the dialect (``claim``, ``link``, ``save_subscription``,
``save_checkout``, ``mark_failed``), so the unit of work's port methods hold no dialect
branch. Statements used on every webhook are built once per dialect (``dialect_for`` is
cached), with their parameters left as bind parameters: each execution is then a hit in
SQLAlchemy's compiled-statement cache, with no cache-key walk of a fresh expression.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy
from sqlalchemy import (
    ColumnElement,
    Connection,
    Insert,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    case,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite

from billingkit.adapters.sqlalchemy._engine import IMMEDIATE_OPTION
from billingkit.adapters.sqlalchemy._schema import (
    CHECKOUTS,
    CUSTOMERS,
    EVENTS,
    SUBSCRIPTIONS,
    USAGE,
)
from billingkit.domain import TERMINAL_STATUSES, EventStatus, Subscription, SubscriptionStatus
from billingkit.domain.ordering import FETCHED_WATERMARK, decide_save
from billingkit.errors import ConfigurationError, RepositoryUnavailableError
from billingkit.ports import ClaimOutcome, SaveOutcome

if TYPE_CHECKING:
    from billingkit.adapters.sqlalchemy._transaction import SqlTransaction

__all__ = [
    "EVENT_COLUMNS",
    "SUBSCRIPTION_COLUMNS",
    "MySqlDialect",
    "PostgresSqliteDialect",
    "SqlDialect",
    "SqliteDialect",
    "dialect_for",
]

#: Column names, in table order (rows for the INSERTs below are built with exactly these).
SUBSCRIPTION_COLUMNS: tuple[str, ...] = tuple(column.name for column in SUBSCRIPTIONS.c)
EVENT_COLUMNS: tuple[str, ...] = tuple(column.name for column in EVENTS.c)
#: Stored status values of the terminal subscription states.
TERMINAL: tuple[str, ...] = tuple(sorted(status.value for status in TERMINAL_STATUSES))
#: Ledger statuses a delivery may claim again.
RECLAIMABLE: tuple[str, ...] = (EventStatus.FAILED.value, EventStatus.PENDING.value)
#: Ledger statuses a claim may store at once (the caller knows the outcome: no finish).
FINAL: frozenset[str] = frozenset(
    status.value for status in (EventStatus.PROCESSED, EventStatus.IGNORED, EventStatus.STALE)
)
#: Ledger statuses a failure may be recorded over.
FAILABLE: list[str] = [*RECLAIMABLE, EventStatus.PROCESSING.value]

_ROWCOUNT = {"preserve_rowcount": True}
_MYSQL_DUPLICATE_KEY = 1062
_SAVE_RETRIES = 3


def _reclaim_params(row: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of :attr:`SqlDialect.reclaim` for the claimed event ``row``."""
    return {"b_id": row["id"], "b_status": row["status"], "b_processed_at": row["processed_at"]}


def _fixed(values: tuple[str, ...]) -> list[ColumnElement[str]]:
    """Constants for ``IN``: one plain bind each, so the SQL never needs re-rendering.

    (``in_()`` of plain values makes an "expanding" parameter, whose SQL SQLAlchemy
    re-renders on every execution.)
    """
    return [literal(value) for value in values]


class SqlDialect(abc.ABC):
    """What one database family does its own way; shared statements live here.

    Attributes:
        name: the dialect family, ``sqlite``, ``postgresql`` or ``mysql``.
        lazy_begin: the driver sends ``BEGIN`` with the first statement, so a pooled
            connection found dead by that statement can be swapped before anything was done.
        reclaim: move event ``b_id`` from a reclaimable status to ``b_status`` (``processing``
            or the final status the claim stores) with ``b_processed_at``.
        finish: set ``status`` and ``processed_at`` of event ``b_id``.
        get_subscription: the subscription row ``b_id``.
        subscription_state: status and watermark of subscription ``b_id``.
        customer_by_id: the customer row ``b_id``.
    """

    name: ClassVar[str]
    lazy_begin: ClassVar[bool] = True

    def __init__(self) -> None:
        events, subs = EVENTS.c, SUBSCRIPTIONS.c
        self.reclaim: Update = (
            update(EVENTS)
            .where(events.id == bindparam("b_id"), events.status.in_(_fixed(RECLAIMABLE)))
            .values(
                status=bindparam("b_status"),
                attempts=events.attempts + 1,
                processed_at=bindparam("b_processed_at"),
            )
        )
        self.finish: Update = update(EVENTS).where(events.id == bindparam("b_id"))
        self.get_subscription: Select[Any] = select(SUBSCRIPTIONS).where(
            subs.id == bindparam("b_id")
        )
        self.subscription_state: Select[Any] = select(subs.status, subs.watermark).where(
            subs.id == bindparam("b_id")
        )
        self.customer_by_id: Select[Any] = select(CUSTOMERS).where(
            CUSTOMERS.c.customer_id == bindparam("b_id")
        )

    # ------------------------------------------------------------------- transactions

    def own_connection(self, conn: Connection, *, owns_engine: bool) -> Connection:
        """Prepare a pooled connection of the repository before its ``BEGIN``."""
        return conn

    def ensure_write_lock(self, conn: Connection) -> None:  # noqa: B027 - optional hook
        """Make the transaction begun on ``conn`` hold what a writer needs (SQLite: the lock)."""

    # ---------------------------------------------------------------- hot statements

    @abc.abstractmethod
    def claim(self, tx: SqlTransaction, row: Mapping[str, Any]) -> ClaimOutcome:
        """Claim event ``row["id"]``: INSERT it, or take a failed/pending one up again."""

    @abc.abstractmethod
    def link(self, tx: SqlTransaction, row: Mapping[str, Any]) -> bool:
        """INSERT a customer link; ``False`` (nothing written) if a unique key holds it."""

    @abc.abstractmethod
    def save_subscription(
        self,
        tx: SqlTransaction,
        subscription: Subscription,
        row: dict[str, Any],
        allow_tie: bool,
    ) -> SaveOutcome:
        """Write the subscription ``row`` only if it is newer than the stored one."""

    @abc.abstractmethod
    def save_checkout(self, tx: SqlTransaction, row: Mapping[str, Any]) -> None:
        """INSERT the checkout ``row`` or replace the stored one with the same session id."""

    @abc.abstractmethod
    def insert_new(self, tx: SqlTransaction, table: Table, row: Mapping[str, Any]) -> bool:
        """INSERT ``row`` into ``table``; ``False`` (nothing written) if its key is taken.

        Never aborts the transaction: the caller then locks the existing row and decides.
        """

    @abc.abstractmethod
    def mark_failed(self, tx: SqlTransaction, row: Mapping[str, Any]) -> None:
        """INSERT the failed event ``row``, or record one more failed attempt on it.

        The stored event is changed only if it is failed, pending or processing.
        """

    @abc.abstractmethod
    def insert_event(self, tx: SqlTransaction, row: Mapping[str, Any]) -> bool:
        """INSERT the event ``row``; ``False`` (nothing written) if its id is stored."""

    @abc.abstractmethod
    def insert_usage(self, tx: SqlTransaction, row: Mapping[str, Any]) -> bool:
        """INSERT the usage ``row``; ``False`` (nothing written) if its identifier is stored."""


class PostgresSqliteDialect(SqlDialect):
    """PostgreSQL (and, through ``SqliteDialect``, SQLite): ``INSERT … ON CONFLICT``.

    Attributes:
        claim_statement: INSERT an event row (every column of ``EVENT_COLUMNS``),
            nothing on a duplicate id.
        save_statements: keyed ``(allow_tie, incoming_is_terminal)``: INSERT a subscription
            row or, on its id, UPDATE it from the incoming values only if the stored
            watermark is older and not ``FETCHED_WATERMARK`` (with ``allow_tie``: not
            newer) and, for a live incoming state, the stored state is not terminal;
            ``user_id`` keeps the stored value when the incoming one is NULL; ``plan_key``
            too, but only when ``price_id`` is unchanged.
    """

    name: ClassVar[str] = "postgresql"

    def __init__(self, insert: Callable[[Table], Any] = postgresql.insert) -> None:
        super().__init__()
        self._insert = insert
        self.claim_statement: Insert = (
            insert(EVENTS).on_conflict_do_nothing().execution_options(**_ROWCOUNT)
        )
        self.usage_statement: Insert = (
            insert(USAGE).on_conflict_do_nothing().execution_options(**_ROWCOUNT)
        )
        self.save_statements: dict[tuple[bool, bool], Insert] = {
            (allow_tie, terminal): _upsert_subscription(insert, allow_tie, terminal)
            for allow_tie in (False, True)
            for terminal in (False, True)
        }

    def claim(self, tx: SqlTransaction, row: Mapping[str, Any]) -> ClaimOutcome:
        """One ``INSERT … ON CONFLICT DO NOTHING``; on a conflict, the conditional reclaim."""
        if tx.count(self.claim_statement, row) == 1:
            return ClaimOutcome.CLAIMED
        reclaimed = tx.count(self.reclaim, _reclaim_params(row))
        return ClaimOutcome.CLAIMED if reclaimed == 1 else ClaimOutcome.DUPLICATE

    def insert_event(self, tx: SqlTransaction, row: Mapping[str, Any]) -> bool:
        """One ``INSERT … ON CONFLICT DO NOTHING``."""
        return tx.count(self.claim_statement, row) == 1

    def insert_new(self, tx: SqlTransaction, table: Table, row: Mapping[str, Any]) -> bool:
        """One ``INSERT … ON CONFLICT DO NOTHING``."""
        statement = self._insert(table).values(row).on_conflict_do_nothing()
        return tx.count(statement.execution_options(preserve_rowcount=True)) == 1

    def insert_usage(self, tx: SqlTransaction, row: Mapping[str, Any]) -> bool:
        """One ``INSERT … ON CONFLICT DO NOTHING``."""
        return tx.count(self.usage_statement, row) == 1

    def link(self, tx: SqlTransaction, row: Mapping[str, Any]) -> bool:
        """One ``INSERT … ON CONFLICT DO NOTHING``."""
        statement = self._insert(CUSTOMERS).values(row).on_conflict_do_nothing()
        return tx.count(statement.execution_options(preserve_rowcount=True)) == 1

    def save_subscription(
        self,
        tx: SqlTransaction,
        subscription: Subscription,
        row: dict[str, Any],
        allow_tie: bool,
    ) -> SaveOutcome:
        """One statement: INSERT, or UPDATE only if the stored row is older."""
        terminal = subscription.status in TERMINAL_STATUSES
        if tx.count(self.save_statements[allow_tie, terminal], row) == 1:
            return SaveOutcome.WRITTEN
        current = tx.execute(self.subscription_state, {"b_id": subscription.id}).one()
        outcome = decide_save(
            SubscriptionStatus(current.status), current.watermark, subscription, allow_tie
        )
        # The conditional write declined, so the row it saw was not older; what it holds now
        # can only be newer still.
        return SaveOutcome.STALE if outcome is SaveOutcome.WRITTEN else outcome

    def save_checkout(self, tx: SqlTransaction, row: Mapping[str, Any]) -> None:
        """``INSERT … ON CONFLICT (session_id) DO UPDATE``."""
        values = {name: value for name, value in row.items() if name != "session_id"}
        self._upsert_where(tx, CHECKOUTS, row, values, None)

    def mark_failed(self, tx: SqlTransaction, row: Mapping[str, Any]) -> None:
        """``INSERT … ON CONFLICT (id) DO UPDATE … WHERE status IN (failable)``."""
        events = EVENTS.c
        self._upsert_where(
            tx,
            EVENTS,
            row,
            {
                "status": row["status"],
                "attempts": events.attempts + 1,
                "last_error": row["last_error"],
            },
            events.status.in_(FAILABLE),
        )

    def _upsert_where(
        self,
        tx: SqlTransaction,
        table: Table,
        row: Mapping[str, Any],
        set_: Mapping[str, Any],
        where: Any,
    ) -> bool:
        """INSERT ``row`` or, on a primary-key conflict, UPDATE ``set_`` if ``where`` holds."""
        key = [column.name for column in table.primary_key.columns]
        statement = self._insert(table).values(row)
        statement = statement.on_conflict_do_update(index_elements=key, set_=set_, where=where)
        return tx.count(statement.execution_options(preserve_rowcount=True)) == 1


class SqliteDialect(PostgresSqliteDialect):
    """SQLite: PostgreSQL's statements, and a write lock taken when the transaction begins."""

    name: ClassVar[str] = "sqlite"
    lazy_begin: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__(sqlite.insert)

    def own_connection(self, conn: Connection, *, owns_engine: bool) -> Connection:
        """Ask for ``BEGIN IMMEDIATE`` (see ``configure_sqlite_engine``)."""
        return conn.execution_options(**{IMMEDIATE_OPTION: True})

    def ensure_write_lock(self, conn: Connection) -> None:
        """On an engine left in pysqlite's default mode, take the write lock ourselves."""
        dbapi_connection: Any = conn.connection.dbapi_connection
        if not dbapi_connection.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


class MySqlDialect(SqlDialect):
    """MySQL and MariaDB: plain INSERTs, duplicate-key errors, ``SELECT … FOR UPDATE``."""

    name: ClassVar[str] = "mysql"

    def __init__(self) -> None:
        super().__init__()
        self.claim_statement: Insert = EVENTS.insert().execution_options(**_ROWCOUNT)

    def own_connection(self, conn: Connection, *, owns_engine: bool) -> Connection:
        """``READ COMMITTED`` (our own engines are at that level already; see create_engine)."""
        if owns_engine:
            return conn
        return conn.execution_options(isolation_level="READ COMMITTED")

    def claim(self, tx: SqlTransaction, row: Mapping[str, Any]) -> ClaimOutcome:
        """A plain INSERT; on a duplicate key, a plain read, then the conditional reclaim."""
        if self._inserted(tx, self.claim_statement, row):
            return ClaimOutcome.CLAIMED
        # The failed INSERT left a shared lock on the row; asking for an exclusive one
        # while other duplicates hold theirs would deadlock. Most duplicates are finished
        # events: a plain read settles those without any further lock.
        status = tx.execute(select(EVENTS.c.status).where(EVENTS.c.id == row["id"]))
        if status.scalar_one_or_none() not in RECLAIMABLE:
            return ClaimOutcome.DUPLICATE
        reclaimed = tx.count(self.reclaim, _reclaim_params(row))
        return ClaimOutcome.CLAIMED if reclaimed == 1 else ClaimOutcome.DUPLICATE

    def insert_event(self, tx: SqlTransaction, row: Mapping[str, Any]) -> bool:
        """A plain INSERT; a duplicate key means nothing was written."""
        return self._inserted(tx, self.claim_statement, row)

    def insert_new(self, tx: SqlTransaction, table: Table, row: Mapping[str, Any]) -> bool:
        """A plain INSERT; a duplicate key means nothing was written."""
        return self._inserted(tx, table.insert().values(row))

    def insert_usage(self, tx: SqlTransaction, row: Mapping[str, Any]) -> bool:
        """A plain INSERT; a duplicate key means nothing was written."""
        return self._inserted(tx, USAGE.insert(), row)

    def link(self, tx: SqlTransaction, row: Mapping[str, Any]) -> bool:
        """A plain INSERT; a duplicate key means nothing was written."""
        return self._inserted(tx, CUSTOMERS.insert().values(row))

    def save_subscription(
        self,
        tx: SqlTransaction,
        subscription: Subscription,
        row: dict[str, Any],
        allow_tie: bool,
    ) -> SaveOutcome:
        """Row lock (``SELECT … FOR UPDATE``), decide, then write."""
        stored = SUBSCRIPTIONS.c
        locate = (
            select(stored.status, stored.watermark, stored.price_id)
            .where(stored.id == subscription.id)
            .with_for_update()
        )
        for _ in range(_SAVE_RETRIES):
            current = tx.execute(locate).first()
            if current is None:
                if self._inserted(tx, SUBSCRIPTIONS.insert().values(row)):
                    return SaveOutcome.WRITTEN
                continue  # a concurrent insert won: lock its row and decide against it
            outcome = decide_save(
                SubscriptionStatus(current.status), current.watermark, subscription, allow_tie
            )
            if outcome is SaveOutcome.WRITTEN:
                values = {name: value for name, value in row.items() if name != "id"}
                values["user_id"] = func.coalesce(row["user_id"], stored.user_id)
                if row["plan_key"] is None and current.price_id == row["price_id"]:
                    del values["plan_key"]  # kept: resolved for this same price
                tx.execute(update(SUBSCRIPTIONS).where(stored.id == subscription.id).values(values))
            return outcome
        raise RepositoryUnavailableError(
            f"could not save subscription {subscription.id!r}: it kept changing; retry"
        )

    def save_checkout(self, tx: SqlTransaction, row: Mapping[str, Any]) -> None:
        """``INSERT … ON DUPLICATE KEY UPDATE``."""
        values = {name: value for name, value in row.items() if name != "session_id"}
        statement = mysql.insert(CHECKOUTS).values(row)
        tx.execute(statement.on_duplicate_key_update(values))

    def mark_failed(self, tx: SqlTransaction, row: Mapping[str, Any]) -> None:
        """A plain INSERT; on a duplicate key, a conditional UPDATE."""
        if not self._inserted(tx, EVENTS.insert().values(row)):
            events = EVENTS.c
            tx.execute(
                update(EVENTS)
                .where(events.id == row["id"], events.status.in_(FAILABLE))
                .values(
                    status=row["status"],
                    attempts=events.attempts + 1,
                    last_error=row["last_error"],
                )
            )

    @staticmethod
    def _inserted(tx: SqlTransaction, statement: Any, parameters: Any = None) -> bool:
        """Run an INSERT; ``False`` (nothing written) on a duplicate key."""
        try:
            tx.execute(statement, parameters)
        except sqlalchemy.exc.IntegrityError as exc:
            # InnoDB rolls back the failed statement only, not the transaction.
            args: tuple[object, ...] = getattr(exc.orig, "args", ())
            if args and args[0] == _MYSQL_DUPLICATE_KEY:
                return False
            raise
        return True


def _upsert_subscription(insert: Any, allow_tie: bool, terminal: bool) -> Insert:
    statement = insert(SUBSCRIPTIONS)
    incoming = statement.excluded
    stored = SUBSCRIPTIONS.c
    set_: dict[str, Any] = {name: incoming[name] for name in SUBSCRIPTION_COLUMNS if name != "id"}
    set_["user_id"] = func.coalesce(incoming.user_id, stored.user_id)
    # The stored key is kept only for the price it was resolved for (the SET reads the
    # stored row's values, before the update, on PostgreSQL and SQLite alike).
    set_["plan_key"] = case(
        (
            stored.price_id.is_not_distinct_from(incoming.price_id),
            func.coalesce(incoming.plan_key, stored.plan_key),
        ),
        else_=incoming.plan_key,
    )
    newer: ColumnElement[bool] = (
        stored.watermark <= incoming.watermark
        if allow_tie
        else and_(stored.watermark < incoming.watermark, stored.watermark != FETCHED_WATERMARK)
    )
    if not terminal:
        newer = and_(newer, stored.status.not_in(_fixed(TERMINAL)))
    upsert: Insert = statement.on_conflict_do_update(
        index_elements=[stored.id], set_=set_, where=newer
    )
    return upsert.execution_options(**_ROWCOUNT)


_FAMILIES: dict[str, type[SqlDialect]] = {
    "sqlite": SqliteDialect,
    "postgresql": PostgresSqliteDialect,
    "mysql": MySqlDialect,
    "mariadb": MySqlDialect,
}


@cache
def dialect_for(name: str) -> SqlDialect:
    """The strategy for SQLAlchemy dialect ``name``, built once per process and family."""
    family = _FAMILIES.get(name)
    if family is None:
        raise ConfigurationError(
            f"unsupported database {name!r}: billingkit supports SQLite, PostgreSQL, "
            "MySQL and MariaDB"
        )
    return _built(family)


@cache
def _built(family: type[SqlDialect]) -> SqlDialect:
    return family()
