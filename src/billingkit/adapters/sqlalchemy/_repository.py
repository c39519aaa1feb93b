"""``SqlAlchemyRepository``: the Repository port on SQLite, PostgreSQL and MySQL/MariaDB.

The repository and the unit of work's port methods. The transaction lifecycle is in
``_transaction`` (on ``UnitOfWorkBase``); the statements that differ
between databases are one method each of the dialect strategies in ``_dialects``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy
from sqlalchemy import (
    URL,
    ColumnElement,
    Connection,
    Engine,
    Row,
    and_,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session
from typing_extensions import override

from billingkit.adapters._shared import aware_utc
from billingkit.adapters.sqlalchemy._dialects import (
    EVENT_COLUMNS,
    FAILABLE,
    FINAL,
    SUBSCRIPTION_COLUMNS,
    dialect_for,
)
from billingkit.adapters.sqlalchemy._engine import create_engine, parse_url
from billingkit.adapters.sqlalchemy._schema import (
    CHARGES,
    CHECKOUTS,
    CUSTOMER_HISTORY,
    CUSTOMERS,
    DEFAULT_PAYMENT_METHODS,
    ENTITLEMENTS,
    EVENTS,
    INVOICES,
    PAYMENT_METHODS,
    PURCHASES,
    RECONCILE_CHECKPOINTS,
    SUBSCRIPTIONS,
    USAGE,
    metadata,
)
from billingkit.adapters.sqlalchemy._transaction import (
    Connections,
    SqlTransaction,
    as_connection,
    operation,
    translate,
)
from billingkit.domain import (
    CheckoutRecord,
    CustomerLink,
    EventRecord,
    EventStatus,
    Purchase,
    PurchaseStatus,
    Subscription,
    SubscriptionStatus,
)
from billingkit.domain.invoices import (
    ChargeRecord,
    InvoiceStatus,
    InvoiceSummary,
    charge_from_columns,
    charge_to_columns,
    decide_invoice_save,
    invoice_from_columns,
    invoice_to_columns,
    merge_charge,
    merge_invoice,
)
from billingkit.domain.payment_methods import (
    DefaultPaymentMethod,
    EntitlementSummary,
    PaymentMethodSummary,
)
from billingkit.domain.reconcile import ReconcileCheckpoint
from billingkit.domain.usage import UsageRecord, UsageStatus, UsageTotal
from billingkit.errors import (
    ConfigurationError,
    ConflictError,
    RepositoryError,
    RepositoryUnavailableError,
)
from billingkit.ports import ClaimOutcome, Repository, SaveOutcome

__all__ = ["SqlAlchemyRepository"]

#: What taking up an event sets (with ``attempts`` + 1).
_TAKEN: dict[str, Any] = {"status": EventStatus.PROCESSING.value, "next_attempt_at": None}
_REVIVABLE = [EventStatus.FAILED.value, EventStatus.DEAD.value]
#: Attempts of a lock-decide-write save that keeps meeting a concurrent insert.
_SAVE_RETRIES = 3
_USAGE_FAILABLE = [UsageStatus.PENDING.value, UsageStatus.SENDING.value, UsageStatus.FAILED.value]
_USAGE_COLUMNS = tuple(column.name for column in USAGE.columns)


# --------------------------------------------------------------------------- rows <-> values


def _subscription_row(sub: Subscription) -> dict[str, Any]:
    # The value's own attributes, one per column (a model_dump() would copy and walk them).
    row = {name: getattr(sub, name) for name in SUBSCRIPTION_COLUMNS}
    row["status"] = SubscriptionStatus(sub.status).value
    row["metadata"] = dict(sub.metadata)
    return row


def _subscription(row: Row[Any]) -> Subscription:
    return Subscription.model_validate(row._asdict())


#: The columns of a former link that make a CustomerLink.
_HISTORY_LINK = (
    CUSTOMER_HISTORY.c.user_id,
    CUSTOMER_HISTORY.c.customer_id,
    CUSTOMER_HISTORY.c.email,
    CUSTOMER_HISTORY.c.deleted,
    CUSTOMER_HISTORY.c.watermark,
)


def _link(row: Row[Any]) -> CustomerLink:
    return CustomerLink.model_validate(row._asdict())


def _checkout(row: Row[Any]) -> CheckoutRecord:
    return CheckoutRecord.model_validate(row._asdict())


def _usage(row: Row[Any]) -> UsageRecord:
    return UsageRecord.model_validate(row._asdict())


def _event(row: Row[Any]) -> EventRecord:
    values = row._asdict()
    values["payload"] = bytes(values["payload"])
    return EventRecord.model_validate(values)


# --------------------------------------------------------------------------- repository


class SqlAlchemyRepository(Repository):
    """A ``Repository`` on SQLAlchemy 2 Core.

    Args:
        engine_or_url: an ``Engine`` the app already has, or a database URL
            (``sqlite:///billing.db``, ``sqlite://`` for memory,
            ``postgresql+psycopg://...``, ``mysql+pymysql://...``); a URL gets an engine from
            ``billingkit.adapters.sqlalchemy.create_engine``, which ``close`` disposes.
        busy_timeout: SQLite only, for a URL: seconds a writer waits for the write lock.

    Every ``unit_of_work`` runs in its own transaction on a pooled connection (on SQLite
    ``BEGIN IMMEDIATE``; on MySQL/MariaDB ``READ COMMITTED``), unless the repository is bound
    to a connection of the app (``for_connection``, ``using``): then it runs inside
    the app's transaction, in a SAVEPOINT, and never commits the app's transaction.

    A pooled server connection that died while idle (server restart, idle timeout) is
    replaced without a ``pool_pre_ping`` round trip per unit of work: if the unit of work's
    first statement finds the connection gone, nothing has been done in that transaction
    yet, so it is re-run once on a fresh connection.

    The tables must exist: run the shipped migrations
    (``upgrade``) or, for tests and quick starts,
    ``create_tables``.

    Rules of use, as for every repository: a unit of work is entered once, used by the thread
    that entered it, and does not nest on one thread (that raises
    ``RepositoryError``).
    """

    def __init__(
        self,
        engine_or_url: Engine | str | URL,
        *,
        busy_timeout: float = 30.0,
        _connection: Connection | None = None,
    ) -> None:
        if isinstance(engine_or_url, Engine):
            engine, owns_engine = engine_or_url, False
            dialect = dialect_for(engine.dialect.name)
        elif isinstance(engine_or_url, str | URL):
            url = parse_url(engine_or_url)
            dialect = dialect_for(url.get_backend_name())  # before loading any driver
            engine, owns_engine = create_engine(url, busy_timeout=busy_timeout), True
        else:
            raise ConfigurationError(
                "SqlAlchemyRepository needs an Engine or a database URL, "
                f"not {type(engine_or_url).__name__}"
            )
        self._engine = engine
        self._owns_engine = owns_engine
        self._connections = Connections(
            engine, owns_engine=owns_engine, dialect=dialect, fixed=_connection
        )

    # ------------------------------------------------------------------------ construction

    @classmethod
    def for_connection(cls, connection: Connection | Session) -> SqlAlchemyRepository:
        """A repository whose units of work run inside ``connection``'s transaction.

        Pass a ``Connection`` or an ORM ``Session``
        (its current connection is used). Each unit of work becomes a SAVEPOINT: its changes
        are undone if its block raises, and become durable when *the app* commits. If the
        connection has no transaction open, the unit of work begins and commits its own.
        """
        connection = as_connection(connection)
        return cls(connection.engine, _connection=connection)

    @contextmanager
    def using(self, connection: Connection | Session) -> Iterator[SqlAlchemyRepository]:
        """Within the ``with`` block (this thread/task only), run inside the app's transaction.

        For services built once at start-up: wrap a request in ``with repo.using(conn):`` and
        every unit of work the services open in the block joins ``conn``'s transaction, as
        with ``for_connection``.
        """
        with self._connections.bound_to(connection):
            yield self

    def current_connection(self) -> Connection:
        """The connection of this repository's unit of work open in the current context.

        For webhook hooks (they run inside the event's unit of work) that write the app's own
        tables: what they write through this connection commits or rolls back together with
        the event. Raises ``RepositoryError`` outside a unit of work.
        """
        return self._connections.current_connection()

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
            raise translate(exc, "create_tables") from exc

    @override
    def unit_of_work(self) -> _SqlUnitOfWork:
        """Open a transaction: commit on normal exit, roll back if the block raises."""
        return _SqlUnitOfWork(self._connections)

    @override
    def close(self) -> None:
        """Dispose the engine's pool if the repository created the engine."""
        if self._owns_engine:
            self._engine.dispose()

    def __repr__(self) -> str:
        return f"SqlAlchemyRepository({self._engine.url.render_as_string(hide_password=True)!r})"


# --------------------------------------------------------------------------- unit of work


class _SqlUnitOfWork(SqlTransaction):
    """One transaction of ``SqlAlchemyRepository``: the port methods."""

    # -------------------------------------------------------------------------- customers

    @override
    @operation
    def customer_for_user(self, user_id: str) -> CustomerLink | None:
        row = self.execute(select(CUSTOMERS).where(CUSTOMERS.c.user_id == user_id)).first()
        return None if row is None else _link(row)

    @override
    @operation
    def customer_by_id(self, customer_id: str) -> CustomerLink | None:
        row = self.execute(self._sql.customer_by_id, {"b_id": customer_id}).first()
        if row is None:
            row = self.execute(
                select(*_HISTORY_LINK).where(CUSTOMER_HISTORY.c.customer_id == customer_id)
            ).first()
        return None if row is None else _link(row)

    @override
    @operation
    def relink_customer(self, link: CustomerLink, *, replacing: str) -> CustomerLink:
        taken = self.execute(
            select(CUSTOMERS.c.customer_id)
            .where(CUSTOMERS.c.customer_id == link.customer_id)
            .union_all(
                select(CUSTOMER_HISTORY.c.customer_id).where(
                    CUSTOMER_HISTORY.c.customer_id == link.customer_id
                )
            )
        ).first()
        if taken is not None:
            raise ConflictError(f"Stripe customer {link.customer_id!r} is already linked")
        old = self.execute(
            select(CUSTOMERS).where(
                CUSTOMERS.c.user_id == link.user_id, CUSTOMERS.c.customer_id == replacing
            )
        ).first()
        if old is not None:
            if not old.deleted:
                raise ConflictError(
                    f"Stripe customer {replacing!r} is not deleted: it cannot be replaced"
                )
            swapped = self.execute(
                update(CUSTOMERS)
                .where(
                    CUSTOMERS.c.user_id == link.user_id,
                    CUSTOMERS.c.customer_id == replacing,
                    CUSTOMERS.c.deleted.is_(True),
                )
                .values(
                    customer_id=link.customer_id,
                    email=link.email,
                    deleted=link.deleted,
                    watermark=link.watermark,
                )
            )
            if swapped.rowcount == 1:
                self.execute(
                    CUSTOMER_HISTORY.insert().values(
                        customer_id=replacing,
                        user_id=link.user_id,
                        email=old.email,
                        deleted=True,
                        watermark=old.watermark,
                        replaced_by=link.customer_id,
                    )
                )
                return link
        replaced = self.execute(
            select(CUSTOMER_HISTORY.c.customer_id).where(
                CUSTOMER_HISTORY.c.customer_id == replacing,
                CUSTOMER_HISTORY.c.user_id == link.user_id,
            )
        ).first()
        current = self.execute(select(CUSTOMERS).where(CUSTOMERS.c.user_id == link.user_id)).first()
        if replaced is not None and current is not None:
            return _link(current)  # another writer replaced it first
        raise ConflictError(f"user {link.user_id!r} is not linked to {replacing!r}")

    @override
    @operation
    def link_customer(self, link: CustomerLink) -> CustomerLink:
        if self._sql.link(self, link.model_dump()):
            return link
        rows = self.execute(
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
    @operation
    def update_customer(self, link: CustomerLink) -> SaveOutcome:
        result = self.execute(
            update(CUSTOMERS)
            .where(
                CUSTOMERS.c.customer_id == link.customer_id,
                CUSTOMERS.c.watermark <= link.watermark,
            )
            .values(email=link.email, deleted=link.deleted, watermark=link.watermark)
        )
        if result.rowcount == 1:
            return SaveOutcome.WRITTEN
        result = self.execute(
            update(CUSTOMER_HISTORY)
            .where(
                CUSTOMER_HISTORY.c.customer_id == link.customer_id,
                CUSTOMER_HISTORY.c.watermark <= link.watermark,
            )
            .values(email=link.email, deleted=link.deleted, watermark=link.watermark)
        )
        return SaveOutcome.WRITTEN if result.rowcount == 1 else SaveOutcome.STALE

    # ---------------------------------------------------------------------- subscriptions

    @override
    @operation
    def get_subscription(self, subscription_id: str) -> Subscription | None:
        row = self.execute(self._sql.get_subscription, {"b_id": subscription_id}).first()
        return None if row is None else _subscription(row)

    @override
    @operation
    def subscriptions_for_user(self, user_id: str) -> list[Subscription]:
        linked = select(CUSTOMERS.c.customer_id).where(CUSTOMERS.c.user_id == user_id)
        former = select(CUSTOMER_HISTORY.c.customer_id).where(CUSTOMER_HISTORY.c.user_id == user_id)
        rows = self.execute(
            select(SUBSCRIPTIONS)
            .where(
                or_(
                    SUBSCRIPTIONS.c.user_id == user_id,
                    SUBSCRIPTIONS.c.customer_id.in_(linked.scalar_subquery()),
                    SUBSCRIPTIONS.c.customer_id.in_(former.scalar_subquery()),
                )
            )
            .order_by(SUBSCRIPTIONS.c.created.desc(), SUBSCRIPTIONS.c.id.desc())
        ).all()
        return [_subscription(row) for row in rows]

    @override
    @operation
    def save_subscription(
        self, subscription: Subscription, *, allow_tie: bool = False
    ) -> SaveOutcome:
        row = _subscription_row(subscription)
        return self._sql.save_subscription(self, subscription, row, allow_tie)

    # ------------------------------------------------------------------ checkout sessions

    @override
    @operation
    def save_checkout(self, record: CheckoutRecord) -> None:
        self._sql.save_checkout(self, record.model_dump())

    @override
    @operation
    def get_checkout(self, session_id: str) -> CheckoutRecord | None:
        row = self.execute(select(CHECKOUTS).where(CHECKOUTS.c.session_id == session_id)).first()
        return None if row is None else _checkout(row)

    @override
    @operation
    def find_open_checkout(
        self, *, user_id: str, request_key: str, created_after: datetime
    ) -> CheckoutRecord | None:
        after = aware_utc(created_after, "created_after")
        c = CHECKOUTS.c
        row = self.execute(
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
    @operation
    def open_checkouts_for_user(
        self, *, user_id: str, created_after: datetime
    ) -> list[CheckoutRecord]:
        after = aware_utc(created_after, "created_after")
        c = CHECKOUTS.c
        rows = self.execute(
            select(CHECKOUTS)
            .where(c.user_id == user_id, c.status == "open", c.created_at > after)
            .order_by(c.created_at.desc(), c.session_id.desc())
        ).all()
        return [_checkout(row) for row in rows]

    # ----------------------------------------------------------------------- event ledger

    def _event_row(self, record: EventRecord, **changes: Any) -> dict[str, Any]:
        """The ledger row of ``record`` with ``changes``, storable (see UnitOfWorkBase)."""
        row = {name: getattr(record, name) for name in EVENT_COLUMNS}
        row["id"] = self._storable_id(record.id)
        row["type"] = self._storable_text(record.type, self.MAX_TYPE_CHARS)
        row["status"] = EventStatus(record.status).value
        row.update(changes)
        if row["last_error"] is not None:
            row["last_error"] = self._storable_text(row["last_error"], self.MAX_ERROR_CHARS)
        return row

    @override
    @operation
    def claim_event(self, record: EventRecord) -> ClaimOutcome:
        status = EventStatus(record.status).value
        if status in FINAL:
            when = aware_utc(record.processed_at or record.received_at, "processed_at")
            return self._sql.claim(self, self._event_row(record, processed_at=when))
        return self._sql.claim(
            self, self._event_row(record, status=EventStatus.PROCESSING.value, processed_at=None)
        )

    @override
    @operation
    def finish_event(self, event_id: str, status: EventStatus, *, processed_at: datetime) -> None:
        when = aware_utc(processed_at, "processed_at")
        try:
            status = EventStatus(status)
        except ValueError:
            raise RepositoryError(f"unknown event status {status!r}") from None
        finished = self.count(
            self._sql.finish,
            {"b_id": self._storable_id(event_id), "status": status.value, "processed_at": when},
        )
        if finished != 1:
            raise RepositoryError(f"event {event_id!r} is not in the ledger")

    @override
    @operation
    def mark_event_failed(self, record: EventRecord, error: str) -> EventRecord:
        row = self._event_row(record, status=EventStatus.FAILED.value, attempts=1, last_error=error)
        self._sql.mark_failed(self, row)
        stored = self.execute(select(EVENTS).where(EVENTS.c.id == row["id"])).one()
        return _event(stored)

    @override
    @operation
    def get_event(self, event_id: str) -> EventRecord | None:
        row = self.execute(select(EVENTS).where(EVENTS.c.id == self._storable_id(event_id))).first()
        return None if row is None else _event(row)

    @override
    @operation
    def list_events(
        self, *, status: EventStatus | None = None, limit: int = 100
    ) -> list[EventRecord]:
        if limit < 0:
            raise RepositoryError("limit must not be negative")
        query = select(EVENTS).order_by(EVENTS.c.received_at, EVENTS.c.id).limit(limit)
        if status is not None:
            query = query.where(EVENTS.c.status == EventStatus(status).value)
        return [_event(row) for row in self.execute(query).all()]

    # ---------------------------------------------------------- deferred webhook processing

    @staticmethod
    def _due(now: datetime) -> ColumnElement[bool]:
        """Claimable at ``now``: pending, or failed with no retry time or one that passed."""
        events = EVENTS.c
        return or_(
            events.status == EventStatus.PENDING.value,
            and_(
                events.status == EventStatus.FAILED.value,
                or_(events.next_attempt_at.is_(None), events.next_attempt_at <= now),
            ),
        )

    @override
    @operation
    def store_pending_event(self, record: EventRecord) -> ClaimOutcome:
        row = self._event_row(
            record,
            status=EventStatus.PENDING.value,
            attempts=0,
            last_error=None,
            processed_at=None,
            next_attempt_at=None,
        )
        return ClaimOutcome.CLAIMED if self._sql.insert_event(self, row) else ClaimOutcome.DUPLICATE

    @override
    @operation
    def claim_stored_event(self, event_id: str, *, now: datetime) -> EventRecord | None:
        when = aware_utc(now, "now")
        events = EVENTS.c
        key = self._storable_id(event_id)
        taken = self.count(
            update(EVENTS)
            .where(events.id == key, self._due(when))
            .values(**_TAKEN, attempts=events.attempts + 1)
        )
        if taken != 1:
            return None
        return _event(self.execute(select(EVENTS).where(events.id == key)).one())

    @override
    @operation
    def claim_due_events(self, *, now: datetime, limit: int) -> list[EventRecord]:
        if limit < 0:
            raise RepositoryError("limit must not be negative")
        when = aware_utc(now, "now")
        if limit == 0:
            return []
        events = EVENTS.c
        order = (events.created, events.id)
        ids = self._skip_locked(events.id, self._due(when), order, limit)
        if not ids:
            return []
        self.execute(
            update(EVENTS).where(events.id.in_(ids)).values(**_TAKEN, attempts=events.attempts + 1)
        )
        rows = self.execute(select(EVENTS).where(events.id.in_(ids)).order_by(*order)).all()
        return [_event(row) for row in rows]

    def _skip_locked(
        self, key: Any, due: ColumnElement[bool], order: tuple[Any, ...], limit: int
    ) -> list[str]:
        """Lock and return up to ``limit`` due keys, in ``order``.

        Rows another transaction holds are skipped, never waited for (SQLite has a single
        writer: its dialect renders no locking clause, and none is needed).
        """
        statement = select(key).where(due).order_by(*order).limit(limit)
        return list(self.execute(statement.with_for_update(skip_locked=True)).scalars())

    def _fail(self, event_id: str, error: str, status: EventStatus, retry_at: Any) -> None:
        events = EVENTS.c
        self.execute(
            update(EVENTS)
            .where(events.id == self._storable_id(event_id), events.status.in_(FAILABLE))
            .values(
                status=status.value,
                last_error=self._storable_text(error, self.MAX_ERROR_CHARS),
                next_attempt_at=retry_at,
            )
        )

    @override
    @operation
    def schedule_event_retry(self, event_id: str, *, error: str, next_attempt_at: datetime) -> None:
        when = aware_utc(next_attempt_at, "next_attempt_at")
        self._fail(event_id, error, EventStatus.FAILED, when)

    @override
    @operation
    def mark_event_dead(self, event_id: str, *, error: str) -> None:
        self._fail(event_id, error, EventStatus.DEAD, None)

    @override
    @operation
    def revive_event(self, event_id: str) -> EventRecord | None:
        events = EVENTS.c
        key = self._storable_id(event_id)
        self.execute(
            update(EVENTS)
            .where(events.id == key, events.status.in_(_REVIVABLE))
            .values(status=EventStatus.FAILED.value, next_attempt_at=None)
        )
        row = self.execute(select(EVENTS).where(events.id == key)).first()
        return None if row is None else _event(row)

    @override
    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self._check()
        try:
            nested = self.connection.begin_nested()
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise translate(exc, "savepoint") from exc
        try:
            yield
        except BaseException as failure:
            try:
                nested.rollback()
            except sqlalchemy.exc.SQLAlchemyError as exc:
                # the transaction itself is gone (MySQL rolls it back on a deadlock)
                raise translate(exc, "savepoint rollback") from failure
            raise
        try:
            nested.commit()
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise translate(exc, "savepoint release") from exc

    @override
    @operation
    def count_events(self, status: EventStatus) -> int:
        statement = select(func.count()).select_from(EVENTS)
        statement = statement.where(EVENTS.c.status == EventStatus(status).value)
        return int(self.execute(statement).scalar_one())

    @override
    @operation
    def oldest_received_at(self, status: EventStatus) -> datetime | None:
        events = EVENTS.c
        oldest: datetime | None = self.execute(
            select(events.received_at)
            .where(events.status == EventStatus(status).value)
            .order_by(events.received_at)
            .limit(1)
        ).scalar_one_or_none()
        return oldest

    # --------------------------------------------------------------- invoices and charges

    def _refunded(self, invoice_id: str) -> int:
        total = self.execute(
            select(func.coalesce(func.sum(CHARGES.c.amount_refunded), 0)).where(
                CHARGES.c.invoice_id == invoice_id
            )
        ).scalar_one()
        return int(total)

    @override
    @operation
    def get_invoice(self, invoice_id: str) -> InvoiceSummary | None:
        row = self.execute(select(INVOICES).where(INVOICES.c.id == invoice_id)).first()
        if row is None:
            return None
        return invoice_from_columns(row._asdict(), refunded=self._refunded(invoice_id))

    @override
    @operation
    def save_invoice(self, invoice: InvoiceSummary) -> SaveOutcome:
        stored_c = INVOICES.c
        locate = select(INVOICES).where(stored_c.id == invoice.id).with_for_update()
        for _ in range(_SAVE_RETRIES):
            current = self.execute(locate).first()
            if current is None:
                if self._sql.insert_new(
                    self, INVOICES, invoice_to_columns(merge_invoice(None, invoice))
                ):
                    return SaveOutcome.WRITTEN
                continue  # a concurrent insert won: lock its row and decide against it
            stored = invoice_from_columns(current._asdict())
            if decide_invoice_save(stored, invoice) is SaveOutcome.STALE:
                return SaveOutcome.STALE
            values = invoice_to_columns(merge_invoice(stored, invoice))
            del values["id"]
            self.execute(update(INVOICES).where(stored_c.id == invoice.id).values(values))
            return SaveOutcome.WRITTEN
        raise RepositoryUnavailableError(
            f"could not save invoice {invoice.id!r}: it kept changing; retry"
        )

    @override
    @operation
    def invoices_for_user(
        self, user_id: str, *, limit: int, before: tuple[datetime, str] | None = None
    ) -> list[InvoiceSummary]:
        if limit < 0:
            raise RepositoryError("limit must not be negative")
        c = INVOICES.c
        linked = select(CUSTOMERS.c.customer_id).where(CUSTOMERS.c.user_id == user_id)
        refunded = (
            select(func.coalesce(func.sum(CHARGES.c.amount_refunded), 0))
            .where(CHARGES.c.invoice_id == c.id)
            .scalar_subquery()
            .label("_refunded")
        )
        query = (
            select(INVOICES, refunded)
            .where(
                or_(c.user_id == user_id, c.customer_id.in_(linked.scalar_subquery())),
                c.status != InvoiceStatus.DELETED.value,
            )
            # Unknown creation times last (as the oldest), on every database.
            .order_by(c.created.is_(None), c.created.desc(), c.id.desc())
            .limit(limit)
        )
        if before is not None:
            moment = aware_utc(before[0], "before")
            query = query.where(
                or_(
                    c.created.is_(None),
                    c.created < moment,
                    and_(c.created == moment, c.id < before[1]),
                )
            )
        found = []
        for row in self.execute(query).all():
            values = row._asdict()
            total = values.pop("_refunded")
            found.append(invoice_from_columns(values, refunded=int(total)))
        return found

    @override
    @operation
    def save_charge(self, charge: ChargeRecord) -> ChargeRecord:
        c = CHARGES.c
        locate = select(CHARGES).where(c.key == charge.key).with_for_update()
        for _ in range(_SAVE_RETRIES):
            current = self.execute(locate).first()
            if current is None:
                if self._sql.insert_new(self, CHARGES, charge_to_columns(charge)):
                    return charge
                continue
            stored = charge_from_columns(current._asdict())
            merged = merge_charge(stored, charge)
            if merged != stored:
                values = charge_to_columns(merged)
                del values["key"]
                self.execute(update(CHARGES).where(c.key == charge.key).values(values))
            return merged
        raise RepositoryUnavailableError(
            f"could not save charge {charge.key!r}: it kept changing; retry"
        )

    @override
    @operation
    def get_charge(self, key: str) -> ChargeRecord | None:
        row = self.execute(select(CHARGES).where(CHARGES.c.key == key)).first()
        return None if row is None else charge_from_columns(row._asdict())

    # ---------------------------------------------------------------------------- reconcile

    @override
    @operation
    def get_reconcile_checkpoint(self, name: str) -> ReconcileCheckpoint | None:
        table = RECONCILE_CHECKPOINTS
        row = self.execute(select(table).where(table.c.name == name)).first()
        return None if row is None else ReconcileCheckpoint.model_validate(row._asdict())

    @override
    @operation
    def save_reconcile_checkpoint(self, checkpoint: ReconcileCheckpoint) -> None:
        # One writer per name (a reconcile run): DELETE then INSERT, the same on every
        # dialect, in this unit of work's transaction.
        table = RECONCILE_CHECKPOINTS
        self.execute(delete(table).where(table.c.name == checkpoint.name))
        row = checkpoint.model_dump()
        row["counts"] = dict(checkpoint.counts)
        self.execute(table.insert().values(row))

    @override
    @operation
    def delete_reconcile_checkpoint(self, name: str) -> None:
        table = RECONCILE_CHECKPOINTS
        self.execute(delete(table).where(table.c.name == name))

    @override
    @operation
    def subscription_ids_created_between(
        self,
        *,
        newer_than: datetime | None,
        at_most: datetime | None,
        customer_id: str | None = None,
    ) -> list[str]:
        c = SUBSCRIPTIONS.c
        query = select(c.id).order_by(c.created.desc(), c.id.desc())
        if newer_than is not None:
            query = query.where(c.created > aware_utc(newer_than, "newer_than"))
        if at_most is not None:
            query = query.where(c.created <= aware_utc(at_most, "at_most"))
        if customer_id is not None:
            query = query.where(c.customer_id == customer_id)
        return [row.id for row in self.execute(query).all()]

    # ------------------------------------------------------------------ one-time purchases

    @override
    @operation
    def save_purchase(self, purchase: Purchase) -> None:
        row = purchase.model_dump()
        row["status"] = PurchaseStatus(purchase.status).value
        key = PURCHASES.c.session_id == purchase.session_id
        values = {name: value for name, value in row.items() if name != "session_id"}
        if self.execute(select(PURCHASES.c.session_id).where(key).with_for_update()).first():
            self.execute(update(PURCHASES).where(key).values(values))
        else:
            self.execute(PURCHASES.insert().values(row))

    @override
    @operation
    def get_purchase(self, session_id: str) -> Purchase | None:
        row = self.execute(select(PURCHASES).where(PURCHASES.c.session_id == session_id)).first()
        return None if row is None else Purchase.model_validate(row._asdict())

    @override
    @operation
    def purchase_by_payment_intent(self, payment_intent_id: str) -> Purchase | None:
        row = self.execute(
            select(PURCHASES).where(PURCHASES.c.payment_intent_id == payment_intent_id).limit(1)
        ).first()
        return None if row is None else Purchase.model_validate(row._asdict())

    @override
    @operation
    def purchases_for_user(self, user_id: str) -> list[Purchase]:
        p = PURCHASES.c
        rows = self.execute(
            select(PURCHASES)
            .where(p.user_id == user_id)
            .order_by(p.created_at.desc(), p.session_id.desc())
        ).all()
        return [Purchase.model_validate(row._asdict()) for row in rows]

    # ----------------------------------------------------- payment methods, entitlements
    #
    # Each save is a guarded UPDATE (the rule in its WHERE clause, so a concurrent writer
    # is re-checked by the database) or, when no row exists, an INSERT in a savepoint: a
    # concurrent INSERT that won makes ours fail, and the guarded UPDATE runs again.

    def _guarded_save(
        self,
        table: sqlalchemy.Table,
        key: str,
        row: dict[str, Any],
        guard: ColumnElement[bool],
        values: dict[str, Any],
    ) -> SaveOutcome:
        column = table.c[key]
        for _ in range(5):
            done = self.execute(update(table).where(column == row[key], guard).values(values))
            if done.rowcount == 1:
                return SaveOutcome.WRITTEN
            if self.execute(select(column).where(column == row[key])).first() is not None:
                if self.execute(select(column).where(column == row[key], guard)).first() is None:
                    return SaveOutcome.STALE
                continue  # changed by a concurrent writer in between: try the UPDATE again
            try:
                with self.savepoint():
                    self.execute(table.insert().values(row))
            except sqlalchemy.exc.IntegrityError:
                continue  # a concurrent insert won: decide against its row
            return SaveOutcome.WRITTEN
        raise RepositoryUnavailableError(  # pragma: no cover - needs three lost races
            f"could not save {table.name} {row[key]!r}: it kept changing; retry"
        )

    @override
    @operation
    def save_payment_method(self, method: PaymentMethodSummary) -> SaveOutcome:
        stored = PAYMENT_METHODS.c
        row = method.model_dump()
        guard: ColumnElement[bool] = stored.watermark <= method.watermark
        if not method.detached:
            guard = and_(guard, stored.detached.is_(False))
        values = {name: value for name, value in row.items() if name != "id"}
        values["customer_id"] = func.coalesce(method.customer_id, stored.customer_id)
        return self._guarded_save(PAYMENT_METHODS, "id", row, guard, values)

    @override
    @operation
    def get_payment_method(self, payment_method_id: str) -> PaymentMethodSummary | None:
        row = self.execute(
            select(PAYMENT_METHODS).where(PAYMENT_METHODS.c.id == payment_method_id)
        ).first()
        return None if row is None else PaymentMethodSummary.model_validate(row._asdict())

    @override
    @operation
    def payment_methods_for_customer(self, customer_id: str) -> list[PaymentMethodSummary]:
        stored = PAYMENT_METHODS.c
        rows = self.execute(
            select(PAYMENT_METHODS)
            .where(stored.customer_id == customer_id, stored.detached.is_(False))
            .order_by(stored.created.desc(), stored.id.desc())
        ).all()
        methods = [PaymentMethodSummary.model_validate(row._asdict()) for row in rows]
        # NULL ``created`` sorts differently per database: unknown creation times last.
        return sorted(methods, key=lambda method: method.created is None)

    @override
    @operation
    def save_default_payment_method(self, default: DefaultPaymentMethod) -> SaveOutcome:
        row = default.model_dump()
        guard = DEFAULT_PAYMENT_METHODS.c.watermark <= default.watermark
        values = {name: value for name, value in row.items() if name != "customer_id"}
        return self._guarded_save(DEFAULT_PAYMENT_METHODS, "customer_id", row, guard, values)

    @override
    @operation
    def default_payment_method(self, customer_id: str) -> DefaultPaymentMethod | None:
        row = self.execute(
            select(DEFAULT_PAYMENT_METHODS).where(
                DEFAULT_PAYMENT_METHODS.c.customer_id == customer_id
            )
        ).first()
        return None if row is None else DefaultPaymentMethod.model_validate(row._asdict())

    @override
    @operation
    def save_entitlements(self, summary: EntitlementSummary) -> SaveOutcome:
        row = {**summary.model_dump(), "lookup_keys": list(summary.lookup_keys)}
        guard = ENTITLEMENTS.c.watermark <= summary.watermark
        values = {name: value for name, value in row.items() if name != "customer_id"}
        return self._guarded_save(ENTITLEMENTS, "customer_id", row, guard, values)

    @override
    @operation
    def entitlements_for_customer(self, customer_id: str) -> EntitlementSummary | None:
        row = self.execute(
            select(ENTITLEMENTS).where(ENTITLEMENTS.c.customer_id == customer_id)
        ).first()
        if row is None:
            return None
        values = row._asdict()
        values["lookup_keys"] = tuple(values["lookup_keys"])
        return EntitlementSummary.model_validate(values)

    # ------------------------------------------------------------------------ usage outbox

    @override
    @operation
    def add_usage(self, record: UsageRecord) -> bool:
        row = {name: getattr(record, name) for name in _USAGE_COLUMNS}
        row["status"] = UsageStatus(record.status).value
        if row["last_error"] is not None:
            row["last_error"] = self._storable_text(row["last_error"], self.MAX_ERROR_CHARS)
        return self._sql.insert_usage(self, row)

    @staticmethod
    def _usage_due(now: datetime) -> ColumnElement[bool]:
        usage = USAGE.c
        return or_(
            usage.status == UsageStatus.PENDING.value,
            and_(
                usage.status.in_([UsageStatus.FAILED.value, UsageStatus.SENDING.value]),
                or_(usage.next_attempt_at.is_(None), usage.next_attempt_at <= now),
            ),
        )

    @override
    @operation
    def claim_due_usage(
        self, *, now: datetime, limit: int, lease_until: datetime
    ) -> list[UsageRecord]:
        if limit < 0:
            raise RepositoryError("limit must not be negative")
        when = aware_utc(now, "now")
        lease = aware_utc(lease_until, "lease_until")
        if limit == 0:
            return []
        usage = USAGE.c
        order = (usage.recorded_at, usage.identifier)
        ids = self._skip_locked(usage.identifier, self._usage_due(when), order, limit)
        if not ids:
            return []
        self.execute(
            update(USAGE)
            .where(usage.identifier.in_(ids))
            .values(status=UsageStatus.SENDING.value, next_attempt_at=lease)
        )
        rows = self.execute(select(USAGE).where(usage.identifier.in_(ids)).order_by(*order)).all()
        return [_usage(row) for row in rows]

    @override
    @operation
    def mark_usage_sent(self, identifiers: Sequence[str], *, sent_at: datetime) -> int:
        when = aware_utc(sent_at, "sent_at")
        if not identifiers:
            return 0
        usage = USAGE.c
        return self.count(
            update(USAGE)
            .where(
                usage.identifier.in_(list(dict.fromkeys(identifiers))),
                usage.status != UsageStatus.SENT.value,
            )
            .values(
                status=UsageStatus.SENT.value, sent_at=when, next_attempt_at=None, last_error=None
            )
        )

    @override
    @operation
    def release_usage(self, identifiers: Sequence[str]) -> None:
        if not identifiers:
            return
        usage = USAGE.c
        self.execute(
            update(USAGE)
            .where(
                usage.identifier.in_(list(identifiers)),
                usage.status == UsageStatus.SENDING.value,
            )
            .values(
                status=case(
                    (usage.attempts > 0, UsageStatus.FAILED.value),
                    else_=UsageStatus.PENDING.value,
                ),
                next_attempt_at=None,
            )
        )

    def _fail_usage(self, identifier: str, error: str, status: UsageStatus, at: Any) -> None:
        usage = USAGE.c
        self.execute(
            update(USAGE)
            .where(usage.identifier == identifier, usage.status.in_(_USAGE_FAILABLE))
            .values(
                status=status.value,
                attempts=usage.attempts + 1,
                last_error=self._storable_text(error, self.MAX_ERROR_CHARS),
                next_attempt_at=at,
            )
        )

    @override
    @operation
    def schedule_usage_retry(
        self, identifier: str, *, error: str, next_attempt_at: datetime
    ) -> None:
        when = aware_utc(next_attempt_at, "next_attempt_at")
        self._fail_usage(identifier, error, UsageStatus.FAILED, when)

    @override
    @operation
    def mark_usage_dead(self, identifier: str, *, error: str) -> None:
        self._fail_usage(identifier, error, UsageStatus.DEAD, None)

    @override
    @operation
    def get_usage(self, identifier: str) -> UsageRecord | None:
        row = self.execute(select(USAGE).where(USAGE.c.identifier == identifier)).first()
        return None if row is None else _usage(row)

    @override
    @operation
    def list_usage(
        self, *, status: UsageStatus | None = None, limit: int = 100
    ) -> list[UsageRecord]:
        if limit < 0:
            raise RepositoryError("limit must not be negative")
        usage = USAGE.c
        query = select(USAGE).order_by(usage.recorded_at, usage.identifier).limit(limit)
        if status is not None:
            query = query.where(usage.status == UsageStatus(status).value)
        return [_usage(row) for row in self.execute(query).all()]

    @override
    @operation
    def usage_total(
        self, user_id: str, event_name: str, *, start: datetime, end: datetime
    ) -> UsageTotal:
        since = aware_utc(start, "start")
        until = aware_utc(end, "end")
        usage = USAGE.c
        unsent = case((usage.status != UsageStatus.SENT.value, 1), else_=0)
        row = self.execute(
            select(
                func.coalesce(func.sum(usage.value), 0),
                func.count(),
                func.coalesce(func.sum(unsent), 0),
            ).where(
                usage.user_id == user_id,
                usage.event_name == event_name,
                usage.timestamp >= since,
                usage.timestamp < until,
                usage.status != UsageStatus.DEAD.value,
            )
        ).one()
        return UsageTotal(value=int(row[0]), records=int(row[1]), unsent=int(row[2]))
