"""``DjangoRepository``: billingkit's Repository port on the Django ORM.

How the port's guarantees map onto Django:

* **unit of work** = ``transaction.atomic(using=alias)``: everything done through it commits
  together or rolls back together. Inside an app transaction (``ATOMIC_REQUESTS`` or the
  app's own ``atomic()`` block) it becomes a savepoint of that transaction, so billing
  writes commit with the app's writes;
* **claim an event** = an ``INSERT`` of the event id (the primary key) in a savepoint. A
  duplicate key is an ``IntegrityError``: the savepoint is rolled back, the unit of work
  stays usable, and a conditional ``UPDATE ... WHERE status IN (failed, pending)`` decides
  whether the event is taken up again. No read-then-write;
* **apply only if newer** = one conditional ``UPDATE`` (``filter(watermark__lt=...)``, and
  ``status`` not terminal unless the new state is terminal) through ``QuerySet.update``;
  the database re-checks the condition on the locked row, so two workers racing on one
  subscription cannot let the older state win. A missing row is inserted in a savepoint; a
  concurrent insert that won makes us retry the conditional update;
* **one customer per user** = the primary key on ``customer_id`` plus ``unique=True`` on
  ``user_id``;
* **invoices and charges** = ``select_for_update`` of the row, the domain's rule
  (``decide_invoice_save``; ``merge_charge``), then an ``UPDATE``; a missing row is inserted
  in a savepoint, and a concurrent insert that won is locked and decided against.

The unit-of-work lifecycle (entered once, used by the thread that entered it, no nesting,
commit or roll back, the misuse errors) is billingkit's ``UnitOfWorkBase``:
this module only says how to begin, commit and roll back, and holds the queries. Ledger
writes follow the base's storage rule (``_storable_id``, ``_storable_text``).

Errors are mapped to billingkit's tree: ``OperationalError`` (locked database, lost
connection) -> ``RepositoryUnavailableError`` (retryable), an
unexpected ``IntegrityError`` -> ``ConflictError``, other database
errors -> ``RepositoryError``.

SQLite: give the database ``"transaction_mode": "IMMEDIATE"`` and a ``"timeout"`` in its
``OPTIONS`` (as ``examples/django_project/demo_site/settings.py`` does). Each unit of work
then takes SQLite's write lock when it begins and other threads or processes wait for it (up
to the timeout) instead of failing on a lock upgrade; WAL lets readers outside units of work
proceed meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

from django.db import DatabaseError, IntegrityError, OperationalError, connections, transaction
from django.db.models import (
    Case,
    Count,
    F,
    Model,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.transaction import Atomic

from billingkit.contrib.django.models import (
    StoredCharge,
    StoredCheckout,
    StoredCustomer,
    StoredCustomerHistory,
    StoredDefaultPaymentMethod,
    StoredEntitlements,
    StoredEvent,
    StoredInvoice,
    StoredPaymentMethod,
    StoredPurchase,
    StoredReconcileCheckpoint,
    StoredSubscription,
    StoredUsage,
)
from billingkit.domain import (
    TERMINAL_STATUSES,
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
from billingkit.domain.ordering import decide_save
from billingkit.domain.payment_methods import (
    DefaultPaymentMethod,
    EntitlementSummary,
    PaymentMethodSummary,
)
from billingkit.domain.reconcile import ReconcileCheckpoint
from billingkit.domain.usage import UsageRecord, UsageStatus, UsageTotal
from billingkit.errors import ConflictError, RepositoryError, RepositoryUnavailableError
from billingkit.ports import (
    FETCHED_WATERMARK,
    ClaimOutcome,
    Repository,
    SaveOutcome,
    UnitOfWorkBase,
)

__all__ = ["DjangoRepository"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

_TERMINAL = [status.value for status in TERMINAL_STATUSES]
_RECLAIMABLE = [EventStatus.FAILED.value, EventStatus.PENDING.value]
#: Statuses a claim may store at once (the caller knows the outcome: no finish follows).
_FINAL = frozenset(
    status.value for status in (EventStatus.PROCESSED, EventStatus.IGNORED, EventStatus.STALE)
)
_FAILABLE = [*_RECLAIMABLE, EventStatus.PROCESSING.value]
_REVIVABLE = [EventStatus.FAILED.value, EventStatus.DEAD.value]
_RACE_RETRIES = 5

_SUBSCRIPTION_FIELDS = [f.name for f in StoredSubscription._meta.concrete_fields]
_CHECKOUT_FIELDS = [f.name for f in StoredCheckout._meta.concrete_fields]
_CUSTOMER_FIELDS = [f.name for f in StoredCustomer._meta.concrete_fields]
_EVENT_FIELDS = [f.name for f in StoredEvent._meta.concrete_fields]
_INVOICE_FIELDS = [f.name for f in StoredInvoice._meta.concrete_fields]
_CHARGE_FIELDS = [f.name for f in StoredCharge._meta.concrete_fields]
_PURCHASE_FIELDS = [f.name for f in StoredPurchase._meta.concrete_fields]
_PAYMENT_METHOD_FIELDS = [f.name for f in StoredPaymentMethod._meta.concrete_fields]
_USAGE_FIELDS = [f.name for f in StoredUsage._meta.concrete_fields]
_USAGE_FAILABLE = [UsageStatus.PENDING.value, UsageStatus.SENDING.value, UsageStatus.FAILED.value]


# --------------------------------------------------------------------------- errors


def _translate(exc: DatabaseError, doing: str) -> RepositoryError:
    """Map a Django database error to billingkit's repository error tree."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    message = f"{doing} failed: {type(exc).__name__}: {text}"[:300]
    if isinstance(exc, OperationalError):
        return RepositoryUnavailableError(message)
    if isinstance(exc, IntegrityError):
        return ConflictError(message)
    return RepositoryError(message)


def _operation(
    method: Callable[Concatenate[_DjangoUnitOfWork, _P], _R],
) -> Callable[Concatenate[_DjangoUnitOfWork, _P], _R]:
    """Check the unit of work is usable, and map database errors."""

    @wraps(method)
    def wrapper(self: _DjangoUnitOfWork, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        self._check()
        try:
            return method(self, *args, **kwargs)
        except DatabaseError as exc:
            raise _translate(exc, method.__name__) from exc

    return wrapper


def _aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise RepositoryError(f"{name} must be a timezone-aware datetime")
    return moment.astimezone(timezone.utc)


# --------------------------------------------------------------------------- rows <-> values


def _subscription_row(subscription: Subscription) -> dict[str, Any]:
    row = subscription.model_dump()
    row["status"] = SubscriptionStatus(subscription.status).value
    row["metadata"] = dict(subscription.metadata)
    return row


def _event(values: dict[str, Any]) -> EventRecord:
    values["payload"] = bytes(values["payload"])  # memoryview on PostgreSQL
    return EventRecord.model_validate(values)


# --------------------------------------------------------------------------- repository


class DjangoRepository(Repository):
    """A ``Repository`` on the Django ORM (app ``billingkit``).

    Args:
        using: the ``DATABASES`` alias holding billingkit's tables (migrate them with
            ``manage.py migrate billingkit``).

    Rules of use, as for every billingkit repository: a unit of work is entered once, used
    by the thread that entered it (Django connections are per thread), and does not nest on
    one thread (that raises ``RepositoryError``).
    """

    def __init__(self, using: str = "default") -> None:
        self._alias = using

    @property
    def alias(self) -> str:
        """The database alias this repository works on."""
        return self._alias

    def unit_of_work(self) -> _DjangoUnitOfWork:
        """Open a transaction (a savepoint inside an app transaction) on ``alias``."""
        return _DjangoUnitOfWork(self)

    def __repr__(self) -> str:
        return f"DjangoRepository(using={self._alias!r})"


class _DjangoUnitOfWork(UnitOfWorkBase):
    """One ``transaction.atomic`` block of ``DjangoRepository``."""

    def __init__(self, repository: DjangoRepository) -> None:
        super().__init__(repository)
        self._alias = repository.alias
        self._atomic: Atomic | None = None

    # -------------------------------------------------------------------------- lifecycle

    def _begin(self) -> None:
        atomic = transaction.atomic(using=self._alias)
        try:
            atomic.__enter__()
        except DatabaseError as exc:
            raise _translate(exc, "begin") from exc
        self._atomic = atomic

    def _commit(self) -> None:
        assert self._atomic is not None
        try:
            self._atomic.__exit__(None, None, None)
        except DatabaseError as exc:
            raise _translate(exc, "commit") from exc

    def _rollback(self) -> None:
        assert self._atomic is not None
        transaction.set_rollback(True, using=self._alias)
        self._atomic.__exit__(None, None, None)

    def _release(self) -> None:
        self._atomic = None

    # ------------------------------------------------------------------------ ORM helpers

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        """A nested ``atomic``: a failed statement inside rolls back to here only."""
        with transaction.atomic(using=self._alias):
            yield

    def _inserted(self, model: type[Model], row: dict[str, Any]) -> bool:
        """INSERT ``row``; ``False`` (nothing written) when a unique key already holds it."""
        try:
            with self._savepoint():
                model._default_manager.using(self._alias).create(**row)
        except IntegrityError:
            return False
        return True

    def _customers(self) -> QuerySet[StoredCustomer]:
        return StoredCustomer.objects.using(self._alias)

    def _history(self) -> QuerySet[StoredCustomerHistory]:
        return StoredCustomerHistory.objects.using(self._alias)

    def _subscriptions(self) -> QuerySet[StoredSubscription]:
        return StoredSubscription.objects.using(self._alias)

    def _checkouts(self) -> QuerySet[StoredCheckout]:
        return StoredCheckout.objects.using(self._alias)

    def _events(self) -> QuerySet[StoredEvent]:
        return StoredEvent.objects.using(self._alias)

    def _purchases(self) -> QuerySet[StoredPurchase]:
        return StoredPurchase.objects.using(self._alias)

    def _usage(self) -> QuerySet[StoredUsage]:
        return StoredUsage.objects.using(self._alias)

    # -------------------------------------------------------------------------- customers

    @_operation
    def customer_for_user(self, user_id: str) -> CustomerLink | None:
        row = self._customers().filter(user_id=user_id).values(*_CUSTOMER_FIELDS).first()
        return None if row is None else CustomerLink.model_validate(row)

    @_operation
    def customer_by_id(self, customer_id: str) -> CustomerLink | None:
        row = self._customers().filter(customer_id=customer_id).values(*_CUSTOMER_FIELDS).first()
        if row is None:
            row = self._history().filter(customer_id=customer_id).values(*_CUSTOMER_FIELDS).first()
        return None if row is None else CustomerLink.model_validate(row)

    @_operation
    def relink_customer(self, link: CustomerLink, *, replacing: str) -> CustomerLink:
        if (
            self._customers().filter(customer_id=link.customer_id).exists()
            or self._history().filter(customer_id=link.customer_id).exists()
        ):
            raise ConflictError(f"Stripe customer {link.customer_id!r} is already linked")
        old = (
            self._customers()
            .filter(user_id=link.user_id, customer_id=replacing)
            .values(*_CUSTOMER_FIELDS)
            .first()
        )
        if old is not None:
            if not old["deleted"]:
                raise ConflictError(
                    f"Stripe customer {replacing!r} is not deleted: it cannot be replaced"
                )
            swapped = (
                self._customers()
                .filter(user_id=link.user_id, customer_id=replacing, deleted=True)
                .update(
                    customer_id=link.customer_id,
                    email=link.email,
                    deleted=link.deleted,
                    watermark=link.watermark,
                )
            )
            if swapped == 1:
                self._history().create(
                    customer_id=replacing,
                    user_id=link.user_id,
                    email=old["email"],
                    deleted=True,
                    watermark=old["watermark"],
                    replaced_by=link.customer_id,
                )
                return link
        replaced = self._history().filter(customer_id=replacing, user_id=link.user_id).exists()
        current = self._customers().filter(user_id=link.user_id).values(*_CUSTOMER_FIELDS).first()
        if replaced and current is not None:
            return CustomerLink.model_validate(current)  # another writer replaced it first
        raise ConflictError(f"user {link.user_id!r} is not linked to {replacing!r}")

    @_operation
    def link_customer(self, link: CustomerLink) -> CustomerLink:
        if self._inserted(StoredCustomer, link.model_dump()):
            return link
        rows = (
            self._customers()
            .filter(Q(user_id=link.user_id) | Q(customer_id=link.customer_id))
            .values(*_CUSTOMER_FIELDS)
        )
        for row in rows:
            if row["user_id"] == link.user_id:
                if row["customer_id"] == link.customer_id:
                    return CustomerLink.model_validate(row)
                raise ConflictError(
                    f"user {link.user_id!r} is already linked to another Stripe customer"
                )
        raise ConflictError(
            f"Stripe customer {link.customer_id!r} is already linked to another user"
        )

    @_operation
    def update_customer(self, link: CustomerLink) -> SaveOutcome:
        written = (
            self._customers()
            .filter(customer_id=link.customer_id, watermark__lte=link.watermark)
            .update(email=link.email, deleted=link.deleted, watermark=link.watermark)
        )
        if written == 0:
            written = (
                self._history()
                .filter(customer_id=link.customer_id, watermark__lte=link.watermark)
                .update(email=link.email, deleted=link.deleted, watermark=link.watermark)
            )
        return SaveOutcome.WRITTEN if written == 1 else SaveOutcome.STALE

    # ---------------------------------------------------------------------- subscriptions

    @_operation
    def get_subscription(self, subscription_id: str) -> Subscription | None:
        row = self._subscriptions().filter(id=subscription_id).values(*_SUBSCRIPTION_FIELDS)
        found = row.first()
        return None if found is None else Subscription.model_validate(found)

    @_operation
    def subscriptions_for_user(self, user_id: str) -> list[Subscription]:
        linked = self._customers().filter(user_id=user_id).values("customer_id")
        former = self._history().filter(user_id=user_id).values("customer_id")
        rows = (
            self._subscriptions()
            .filter(Q(user_id=user_id) | Q(customer_id__in=linked) | Q(customer_id__in=former))
            .order_by("-created", "-id")
            .values(*_SUBSCRIPTION_FIELDS)
        )
        return [Subscription.model_validate(row) for row in rows]

    @_operation
    def save_subscription(
        self, subscription: Subscription, *, allow_tie: bool = False
    ) -> SaveOutcome:
        row = _subscription_row(subscription)
        values = {name: value for name, value in row.items() if name != "id"}
        if values["user_id"] is None:  # a None never erases a known user
            del values["user_id"]
        if values["plan_key"] is None:
            # The stored key is kept only for the price it was resolved for. Set first: MySQL
            # evaluates SET left to right, so the CASE must read the stored price.
            same_price = (
                Q(price_id__isnull=True)
                if subscription.price_id is None
                else Q(price_id=subscription.price_id)
            )
            values = {
                "plan_key": Case(When(same_price, then=F("plan_key")), default=Value(None)),
                **{name: value for name, value in values.items() if name != "plan_key"},
            }
        newer = (
            Q(watermark__lte=subscription.watermark)
            if allow_tie
            else Q(watermark__lt=subscription.watermark) & ~Q(watermark=FETCHED_WATERMARK)
        )
        if subscription.status not in TERMINAL_STATUSES:
            newer &= ~Q(status__in=_TERMINAL)
        for _ in range(_RACE_RETRIES):
            if self._subscriptions().filter(newer, id=subscription.id).update(**values) == 1:
                return SaveOutcome.WRITTEN
            current = (
                self._subscriptions()
                .filter(id=subscription.id)
                .values_list("status", "watermark")
                .first()
            )
            if current is None:
                if self._inserted(StoredSubscription, row):
                    return SaveOutcome.WRITTEN
                continue  # a concurrent insert won: try the conditional update on its row
            outcome = decide_save(
                SubscriptionStatus(current[0]), current[1], subscription, allow_tie
            )
            if outcome is not SaveOutcome.WRITTEN:
                return outcome
            # The row was inserted (or replaced) by another transaction after the update
            # looked and it is older than ours: run the conditional update again.
        raise RepositoryUnavailableError(
            f"could not save subscription {subscription.id!r}: it kept changing; retry"
        )

    # ------------------------------------------------------------------ checkout sessions

    @_operation
    def save_checkout(self, record: CheckoutRecord) -> None:
        row = record.model_dump()
        # INSERT ... ON CONFLICT (session_id) DO UPDATE: one statement, no read first.
        self._checkouts().bulk_create(
            [StoredCheckout(**row)],
            update_conflicts=True,
            unique_fields=["session_id"],
            update_fields=[name for name in _CHECKOUT_FIELDS if name != "session_id"],
        )

    @_operation
    def get_checkout(self, session_id: str) -> CheckoutRecord | None:
        row = self._checkouts().filter(session_id=session_id).values(*_CHECKOUT_FIELDS).first()
        return None if row is None else CheckoutRecord.model_validate(row)

    @_operation
    def find_open_checkout(
        self, *, user_id: str, request_key: str, created_after: datetime
    ) -> CheckoutRecord | None:
        after = _aware(created_after, "created_after")
        row = (
            self._checkouts()
            .filter(user_id=user_id, request_key=request_key, status="open", created_at__gt=after)
            .order_by("-created_at", "-session_id")
            .values(*_CHECKOUT_FIELDS)
            .first()
        )
        return None if row is None else CheckoutRecord.model_validate(row)

    @_operation
    def open_checkouts_for_user(
        self, *, user_id: str, created_after: datetime
    ) -> list[CheckoutRecord]:
        after = _aware(created_after, "created_after")
        rows = (
            self._checkouts()
            .filter(user_id=user_id, status="open", created_at__gt=after)
            .order_by("-created_at", "-session_id")
            .values(*_CHECKOUT_FIELDS)
        )
        return [CheckoutRecord.model_validate(row) for row in rows]

    # ----------------------------------------------------------------------- event ledger

    def _event_row(self, record: EventRecord, **changes: Any) -> dict[str, Any]:
        """The ledger row of ``record`` with ``changes``, storable (see UnitOfWorkBase)."""
        row = record.model_dump()
        row["id"] = self._storable_id(record.id)
        row["type"] = self._storable_text(record.type, self.MAX_TYPE_CHARS)
        row["status"] = EventStatus(record.status).value
        row.update(changes)
        if row["last_error"] is not None:
            row["last_error"] = self._storable_text(row["last_error"], self.MAX_ERROR_CHARS)
        return row

    @_operation
    def claim_event(self, record: EventRecord) -> ClaimOutcome:
        if EventStatus(record.status).value in _FINAL:
            when = _aware(record.processed_at or record.received_at, "processed_at")
            row = self._event_row(record, processed_at=when)
        else:
            row = self._event_row(record, status=EventStatus.PROCESSING.value, processed_at=None)
        if self._inserted(StoredEvent, row):
            return ClaimOutcome.CLAIMED
        taken = (
            self._events()
            .filter(id=row["id"], status__in=_RECLAIMABLE)
            .update(
                status=row["status"],
                attempts=F("attempts") + 1,
                processed_at=row["processed_at"],
            )
        )
        return ClaimOutcome.CLAIMED if taken == 1 else ClaimOutcome.DUPLICATE

    @_operation
    def finish_event(self, event_id: str, status: EventStatus, *, processed_at: datetime) -> None:
        when = _aware(processed_at, "processed_at")
        try:
            status = EventStatus(status)
        except ValueError:
            raise RepositoryError(f"unknown event status {status!r}") from None
        written = (
            self._events()
            .filter(id=self._storable_id(event_id))
            .update(status=status.value, processed_at=when)
        )
        if written != 1:
            raise RepositoryError(f"event {event_id!r} is not in the ledger")

    @_operation
    def mark_event_failed(self, record: EventRecord, error: str) -> EventRecord:
        row = self._event_row(record, status=EventStatus.FAILED.value, attempts=1, last_error=error)
        if not self._inserted(StoredEvent, row):
            self._events().filter(id=row["id"], status__in=_FAILABLE).update(
                status=row["status"], attempts=F("attempts") + 1, last_error=row["last_error"]
            )
        return _event(self._events().filter(id=row["id"]).values(*_EVENT_FIELDS).get())

    @_operation
    def get_event(self, event_id: str) -> EventRecord | None:
        row = self._events().filter(id=self._storable_id(event_id)).values(*_EVENT_FIELDS).first()
        return None if row is None else _event(row)

    @_operation
    def list_events(
        self, *, status: EventStatus | None = None, limit: int = 100
    ) -> list[EventRecord]:
        if limit < 0:
            raise RepositoryError("limit must not be negative")
        query = self._events().order_by("received_at", "id")
        if status is not None:
            query = query.filter(status=EventStatus(status).value)
        return [_event(row) for row in query.values(*_EVENT_FIELDS)[:limit]]

    # ---------------------------------------------------------- deferred webhook processing

    @staticmethod
    def _due(now: datetime) -> Q:
        """Claimable at ``now``: pending, or failed with no retry time or one that passed."""
        return Q(status=EventStatus.PENDING.value) | (
            Q(status=EventStatus.FAILED.value)
            & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        )

    def _take(self, query: QuerySet[StoredEvent]) -> int:
        return query.update(
            status=EventStatus.PROCESSING.value,
            attempts=F("attempts") + 1,
            next_attempt_at=None,
        )

    @_operation
    def store_pending_event(self, record: EventRecord) -> ClaimOutcome:
        row = self._event_row(
            record,
            status=EventStatus.PENDING.value,
            attempts=0,
            last_error=None,
            processed_at=None,
            next_attempt_at=None,
        )
        return ClaimOutcome.CLAIMED if self._inserted(StoredEvent, row) else ClaimOutcome.DUPLICATE

    @_operation
    def claim_stored_event(self, event_id: str, *, now: datetime) -> EventRecord | None:
        when = _aware(now, "now")
        key = self._storable_id(event_id)
        if self._take(self._events().filter(Q(id=key) & self._due(when))) != 1:
            return None
        return _event(self._events().filter(id=key).values(*_EVENT_FIELDS).get())

    @_operation
    def claim_due_events(self, *, now: datetime, limit: int) -> list[EventRecord]:
        if limit < 0:
            raise RepositoryError("limit must not be negative")
        when = _aware(now, "now")
        if limit == 0:
            return []
        features = connections[self._alias].features
        # rows another transaction holds are skipped, never waited for (SQLite: one writer)
        due = self._events().filter(self._due(when)).order_by("created", "id")
        if features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        ids = list(due.values_list("id", flat=True)[:limit])
        if not ids:
            return []
        self._take(self._events().filter(id__in=ids))
        rows = self._events().filter(id__in=ids).order_by("created", "id")
        return [_event(row) for row in rows.values(*_EVENT_FIELDS)]

    def _fail(self, event_id: str, error: str, **changes: Any) -> None:
        self._events().filter(id=self._storable_id(event_id), status__in=_FAILABLE).update(
            last_error=self._storable_text(error, self.MAX_ERROR_CHARS), **changes
        )

    @_operation
    def schedule_event_retry(self, event_id: str, *, error: str, next_attempt_at: datetime) -> None:
        when = _aware(next_attempt_at, "next_attempt_at")
        self._fail(event_id, error, status=EventStatus.FAILED.value, next_attempt_at=when)

    @_operation
    def mark_event_dead(self, event_id: str, *, error: str) -> None:
        self._fail(event_id, error, status=EventStatus.DEAD.value, next_attempt_at=None)

    @_operation
    def revive_event(self, event_id: str) -> EventRecord | None:
        key = self._storable_id(event_id)
        self._events().filter(id=key, status__in=_REVIVABLE).update(
            status=EventStatus.FAILED.value, next_attempt_at=None
        )
        row = self._events().filter(id=key).values(*_EVENT_FIELDS).first()
        return None if row is None else _event(row)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested ``atomic``: if the block raises, only its writes are rolled back."""
        self._check()
        with self._savepoint():
            yield

    @_operation
    def count_events(self, status: EventStatus) -> int:
        return int(self._events().filter(status=EventStatus(status).value).count())

    @_operation
    def oldest_received_at(self, status: EventStatus) -> datetime | None:
        rows = self._events().filter(status=EventStatus(status).value).order_by("received_at")
        oldest: datetime | None = rows.values_list("received_at", flat=True).first()
        return oldest

    # --------------------------------------------------------------- invoices and charges

    def _invoices(self) -> QuerySet[StoredInvoice]:
        return StoredInvoice.objects.using(self._alias)

    def _charges(self) -> QuerySet[StoredCharge]:
        return StoredCharge.objects.using(self._alias)

    def _refunded(self, invoice_id: str) -> int:
        total = self._charges().filter(invoice_id=invoice_id).aggregate(s=Sum("amount_refunded"))
        return int(total["s"] or 0)

    @_operation
    def get_invoice(self, invoice_id: str) -> InvoiceSummary | None:
        row = self._invoices().filter(id=invoice_id).values(*_INVOICE_FIELDS).first()
        if row is None:
            return None
        return invoice_from_columns(row, refunded=self._refunded(invoice_id))

    @_operation
    def save_invoice(self, invoice: InvoiceSummary) -> SaveOutcome:
        for _ in range(_RACE_RETRIES):
            current = (
                self._invoices()
                .select_for_update()
                .filter(id=invoice.id)
                .values(*_INVOICE_FIELDS)
                .first()
            )
            if current is None:
                if self._inserted(StoredInvoice, invoice_to_columns(merge_invoice(None, invoice))):
                    return SaveOutcome.WRITTEN
                continue  # a concurrent insert won: lock its row and decide against it
            stored = invoice_from_columns(current)
            if decide_invoice_save(stored, invoice) is SaveOutcome.STALE:
                return SaveOutcome.STALE
            values = invoice_to_columns(merge_invoice(stored, invoice))
            del values["id"]
            self._invoices().filter(id=invoice.id).update(**values)
            return SaveOutcome.WRITTEN
        raise RepositoryUnavailableError(
            f"could not save invoice {invoice.id!r}: it kept changing; retry"
        )

    @_operation
    def invoices_for_user(
        self, user_id: str, *, limit: int, before: tuple[datetime, str] | None = None
    ) -> list[InvoiceSummary]:
        if limit < 0:
            raise RepositoryError("limit must not be negative")
        linked = self._customers().filter(user_id=user_id).values("customer_id")
        refunded = (
            self._charges()
            .filter(invoice_id=OuterRef("id"))
            .values("invoice_id")
            .annotate(s=Sum("amount_refunded"))
            .values("s")
        )
        rows = (
            self._invoices()
            .filter(Q(user_id=user_id) | Q(customer_id__in=linked))
            .exclude(status=InvoiceStatus.DELETED.value)
            .annotate(_refunded=Subquery(refunded))
        )
        if before is not None:
            moment = _aware(before[0], "before")
            rows = rows.filter(
                Q(created__isnull=True)
                | Q(created__lt=moment)
                | Q(created=moment, id__lt=before[1])
            )
        ordered = rows.order_by(F("created").desc(nulls_last=True), "-id")
        found = []
        for row in ordered.values(*_INVOICE_FIELDS, "_refunded")[:limit]:
            total = row.pop("_refunded")
            found.append(invoice_from_columns(row, refunded=int(total or 0)))
        return found

    @_operation
    def save_charge(self, charge: ChargeRecord) -> ChargeRecord:
        for _ in range(_RACE_RETRIES):
            current = (
                self._charges()
                .select_for_update()
                .filter(key=charge.key)
                .values(*_CHARGE_FIELDS)
                .first()
            )
            if current is None:
                if self._inserted(StoredCharge, charge_to_columns(charge)):
                    return charge
                continue
            stored = charge_from_columns(current)
            merged = merge_charge(stored, charge)
            if merged != stored:
                values = charge_to_columns(merged)
                del values["key"]
                self._charges().filter(key=charge.key).update(**values)
            return merged
        raise RepositoryUnavailableError(
            f"could not save charge {charge.key!r}: it kept changing; retry"
        )

    @_operation
    def get_charge(self, key: str) -> ChargeRecord | None:
        row = self._charges().filter(key=key).values(*_CHARGE_FIELDS).first()
        return None if row is None else charge_from_columns(row)

    # ------------------------------------------------------------------------ reconcile

    def _checkpoints(self) -> QuerySet[StoredReconcileCheckpoint]:
        return StoredReconcileCheckpoint.objects.using(self._alias)

    @_operation
    def get_reconcile_checkpoint(self, name: str) -> ReconcileCheckpoint | None:
        row = (
            self._checkpoints()
            .filter(name=name)
            .values("name", "scope", "starting_after", "counts", "updated_at")
            .first()
        )
        return None if row is None else ReconcileCheckpoint.model_validate(row)

    @_operation
    def save_reconcile_checkpoint(self, checkpoint: ReconcileCheckpoint) -> None:
        row = checkpoint.model_dump()
        row["counts"] = dict(checkpoint.counts)
        self._checkpoints().bulk_create(
            [StoredReconcileCheckpoint(**row)],
            update_conflicts=True,
            unique_fields=["name"],
            update_fields=["scope", "starting_after", "counts", "updated_at"],
        )

    @_operation
    def delete_reconcile_checkpoint(self, name: str) -> None:
        self._checkpoints().filter(name=name).delete()

    @_operation
    def subscription_ids_created_between(
        self,
        *,
        newer_than: datetime | None,
        at_most: datetime | None,
        customer_id: str | None = None,
    ) -> list[str]:
        query = self._subscriptions().order_by("-created", "-id")
        if newer_than is not None:
            query = query.filter(created__gt=_aware(newer_than, "newer_than"))
        if at_most is not None:
            query = query.filter(created__lte=_aware(at_most, "at_most"))
        if customer_id is not None:
            query = query.filter(customer_id=customer_id)
        return list(query.values_list("id", flat=True))

    # ------------------------------------------------------------------ one-time purchases

    @_operation
    def save_purchase(self, purchase: Purchase) -> None:
        row = purchase.model_dump()
        row["status"] = PurchaseStatus(purchase.status).value
        # INSERT ... ON CONFLICT (session_id) DO UPDATE: one statement, no read first.
        self._purchases().bulk_create(
            [StoredPurchase(**row)],
            update_conflicts=True,
            unique_fields=["session_id"],
            update_fields=[name for name in _PURCHASE_FIELDS if name != "session_id"],
        )

    @_operation
    def get_purchase(self, session_id: str) -> Purchase | None:
        row = self._purchases().filter(session_id=session_id).values(*_PURCHASE_FIELDS).first()
        return None if row is None else Purchase.model_validate(row)

    @_operation
    def purchase_by_payment_intent(self, payment_intent_id: str) -> Purchase | None:
        row = (
            self._purchases()
            .filter(payment_intent_id=payment_intent_id)
            .values(*_PURCHASE_FIELDS)
            .first()
        )
        return None if row is None else Purchase.model_validate(row)

    @_operation
    def purchases_for_user(self, user_id: str) -> list[Purchase]:
        rows = (
            self._purchases()
            .filter(user_id=user_id)
            .order_by("-created_at", "-session_id")
            .values(*_PURCHASE_FIELDS)
        )
        return [Purchase.model_validate(row) for row in rows]

    # ----------------------------------------------------- payment methods, entitlements

    def _guarded_save(
        self, model: type[Model], key: str, row: dict[str, Any], guard: Q, values: dict[str, Any]
    ) -> SaveOutcome:
        """The guarded UPDATE, or an INSERT when no row exists (a lost race tries again).

        When the UPDATE declined, the stored row is read: if it still holds the guard (a
        concurrent writer changed it in between), the UPDATE runs again.
        """
        manager = model._default_manager.using(self._alias)
        for _ in range(_RACE_RETRIES):
            if manager.filter(guard, **{key: row[key]}).update(**values) == 1:
                return SaveOutcome.WRITTEN
            current = manager.filter(**{key: row[key]})
            if current.exists():
                if not current.filter(guard).exists():
                    return SaveOutcome.STALE
                continue
            if self._inserted(model, row):
                return SaveOutcome.WRITTEN
        raise RepositoryUnavailableError(  # pragma: no cover - needs repeated lost races
            f"could not save {model.__name__} {row[key]!r}: it kept changing; retry"
        )

    @_operation
    def save_payment_method(self, method: PaymentMethodSummary) -> SaveOutcome:
        row = method.model_dump()
        values = {name: value for name, value in row.items() if name != "id"}
        if values["customer_id"] is None:  # a detach keeps the stored customer
            del values["customer_id"]
        guard = Q(watermark__lte=method.watermark)
        if not method.detached:
            guard &= Q(detached=False)
        return self._guarded_save(StoredPaymentMethod, "id", row, guard, values)

    @_operation
    def get_payment_method(self, payment_method_id: str) -> PaymentMethodSummary | None:
        found = (
            StoredPaymentMethod.objects.using(self._alias)
            .filter(id=payment_method_id)
            .values(*_PAYMENT_METHOD_FIELDS)
            .first()
        )
        return None if found is None else PaymentMethodSummary.model_validate(found)

    @_operation
    def payment_methods_for_customer(self, customer_id: str) -> list[PaymentMethodSummary]:
        rows = (
            StoredPaymentMethod.objects.using(self._alias)
            .filter(customer_id=customer_id, detached=False)
            .order_by(F("created").desc(nulls_last=True), "-id")
            .values(*_PAYMENT_METHOD_FIELDS)
        )
        return [PaymentMethodSummary.model_validate(row) for row in rows]

    @_operation
    def save_default_payment_method(self, default: DefaultPaymentMethod) -> SaveOutcome:
        row = default.model_dump()
        values = {name: value for name, value in row.items() if name != "customer_id"}
        guard = Q(watermark__lte=default.watermark)
        return self._guarded_save(StoredDefaultPaymentMethod, "customer_id", row, guard, values)

    @_operation
    def default_payment_method(self, customer_id: str) -> DefaultPaymentMethod | None:
        found = (
            StoredDefaultPaymentMethod.objects.using(self._alias)
            .filter(customer_id=customer_id)
            .values("customer_id", "payment_method_id", "watermark")
            .first()
        )
        return None if found is None else DefaultPaymentMethod.model_validate(found)

    @_operation
    def save_entitlements(self, summary: EntitlementSummary) -> SaveOutcome:
        row = {**summary.model_dump(), "lookup_keys": list(summary.lookup_keys)}
        values = {name: value for name, value in row.items() if name != "customer_id"}
        guard = Q(watermark__lte=summary.watermark)
        return self._guarded_save(StoredEntitlements, "customer_id", row, guard, values)

    @_operation
    def entitlements_for_customer(self, customer_id: str) -> EntitlementSummary | None:
        found = (
            StoredEntitlements.objects.using(self._alias)
            .filter(customer_id=customer_id)
            .values("customer_id", "lookup_keys", "watermark")
            .first()
        )
        if found is None:
            return None
        return EntitlementSummary.model_validate(
            {**found, "lookup_keys": tuple(found["lookup_keys"])}
        )

    # ------------------------------------------------------------------------ usage outbox

    @_operation
    def add_usage(self, record: UsageRecord) -> bool:
        row = record.model_dump()
        row["status"] = UsageStatus(record.status).value
        if row["last_error"] is not None:
            row["last_error"] = self._storable_text(row["last_error"], self.MAX_ERROR_CHARS)
        return self._inserted(StoredUsage, row)

    @staticmethod
    def _usage_due(now: datetime) -> Q:
        return Q(status=UsageStatus.PENDING.value) | (
            Q(status__in=[UsageStatus.FAILED.value, UsageStatus.SENDING.value])
            & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        )

    @_operation
    def claim_due_usage(
        self, *, now: datetime, limit: int, lease_until: datetime
    ) -> list[UsageRecord]:
        if limit < 0:
            raise RepositoryError("limit must not be negative")
        when = _aware(now, "now")
        lease = _aware(lease_until, "lease_until")
        if limit == 0:
            return []
        features = connections[self._alias].features
        due = self._usage().filter(self._usage_due(when)).order_by("recorded_at", "identifier")
        if features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        ids = list(due.values_list("identifier", flat=True)[:limit])
        if not ids:
            return []
        self._usage().filter(identifier__in=ids).update(
            status=UsageStatus.SENDING.value, next_attempt_at=lease
        )
        rows = self._usage().filter(identifier__in=ids).order_by("recorded_at", "identifier")
        return [UsageRecord.model_validate(row) for row in rows.values(*_USAGE_FIELDS)]

    @_operation
    def mark_usage_sent(self, identifiers: Sequence[str], *, sent_at: datetime) -> int:
        when = _aware(sent_at, "sent_at")
        if not identifiers:
            return 0
        query = self._usage().filter(identifier__in=list(identifiers))
        return int(
            query.exclude(status=UsageStatus.SENT.value).update(
                status=UsageStatus.SENT.value, sent_at=when, next_attempt_at=None, last_error=None
            )
        )

    @_operation
    def release_usage(self, identifiers: Sequence[str]) -> None:
        if not identifiers:
            return
        self._usage().filter(
            identifier__in=list(identifiers), status=UsageStatus.SENDING.value
        ).update(
            status=Case(
                When(attempts__gt=0, then=Value(UsageStatus.FAILED.value)),
                default=Value(UsageStatus.PENDING.value),
            ),
            next_attempt_at=None,
        )

    def _fail_usage(self, identifier: str, error: str, **changes: Any) -> None:
        self._usage().filter(identifier=identifier, status__in=_USAGE_FAILABLE).update(
            attempts=F("attempts") + 1,
            last_error=self._storable_text(error, self.MAX_ERROR_CHARS),
            **changes,
        )

    @_operation
    def schedule_usage_retry(
        self, identifier: str, *, error: str, next_attempt_at: datetime
    ) -> None:
        when = _aware(next_attempt_at, "next_attempt_at")
        self._fail_usage(identifier, error, status=UsageStatus.FAILED.value, next_attempt_at=when)

    @_operation
    def mark_usage_dead(self, identifier: str, *, error: str) -> None:
        self._fail_usage(identifier, error, status=UsageStatus.DEAD.value, next_attempt_at=None)

    @_operation
    def get_usage(self, identifier: str) -> UsageRecord | None:
        row = self._usage().filter(identifier=identifier).values(*_USAGE_FIELDS).first()
        return None if row is None else UsageRecord.model_validate(row)

    @_operation
    def list_usage(
        self, *, status: UsageStatus | None = None, limit: int = 100
    ) -> list[UsageRecord]:
        if limit < 0:
            raise RepositoryError("limit must not be negative")
        query = self._usage().order_by("recorded_at", "identifier")
        if status is not None:
            query = query.filter(status=UsageStatus(status).value)
        return [UsageRecord.model_validate(row) for row in query.values(*_USAGE_FIELDS)[:limit]]

    @_operation
    def usage_total(
        self, user_id: str, event_name: str, *, start: datetime, end: datetime
    ) -> UsageTotal:
        since = _aware(start, "start")
        until = _aware(end, "end")
        totals = (
            self._usage()
            .filter(
                user_id=user_id,
                event_name=event_name,
                timestamp__gte=since,
                timestamp__lt=until,
            )
            .exclude(status=UsageStatus.DEAD.value)
            .aggregate(
                value=Sum("value"),
                records=Count("identifier"),
                unsent=Count("identifier", filter=~Q(status=UsageStatus.SENT.value)),
            )
        )
        return UsageTotal(
            value=int(totals["value"] or 0),
            records=int(totals["records"]),
            unsent=int(totals["unsent"]),
        )
