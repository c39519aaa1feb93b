"""``InMemoryRepository``: the reference semantics of the ``Repository`` port.

Everything lives in plain dicts guarded by one lock. A unit of work holds that lock from
``__enter__`` to ``__exit__``, so units of work are serializable (they run one after another,
never interleaved). Every write goes through a tiny undo journal of
``(table, key, previous value)`` entries; when the ``with`` block raises, the journal is
replayed backwards and the tables are exactly as they were before the block. Committing just
drops the journal. Nothing is copied per transaction, so a unit of work costs a lock
acquisition plus a few dict operations per call.

Stored values are billingkit's frozen value types, kept by reference (they are immutable).

Rules of use (enforced by ``UnitOfWorkBase``, as for every adapter):

* A unit of work is entered once; using it after its ``with`` block exited, or from a thread
  other than the one that entered it, raises ``RepositoryError``.
* Units of work do not nest: opening a second one on a thread that already holds one of the
  same repository raises ``RepositoryError`` immediately (waiting
  would deadlock, and silently joining the outer transaction would hide a design error).
  Record a failure *after* the failed unit of work has exited, in a fresh one.
* Other threads opening a unit of work wait until the current one exits.

Ledger entries follow the storage rule of every adapter (``UnitOfWorkBase._storable_id``
and ``_storable_text``), so the reference agrees with the SQL databases on what is stored.
The ledger's keys are storable ids only, so a lookup tries the id as given first (every
real Stripe id) and its storable key only when that misses.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from threading import Lock
from typing import Any

from typing_extensions import override

from billingkit.adapters._shared import aware_utc
from billingkit.domain import (
    CheckoutRecord,
    CustomerLink,
    EventRecord,
    EventStatus,
    Purchase,
    Subscription,
)
from billingkit.domain.invoices import (
    ChargeRecord,
    InvoiceStatus,
    InvoiceSummary,
    decide_invoice_save,
    merge_charge,
    merge_invoice,
)
from billingkit.domain.money import Money
from billingkit.domain.ordering import decide_save
from billingkit.domain.payment_methods import (
    DefaultPaymentMethod,
    EntitlementSummary,
    PaymentMethodSummary,
    decide_payment_method,
    decide_watermark,
)
from billingkit.domain.reconcile import ReconcileCheckpoint
from billingkit.domain.usage import UsageRecord, UsageStatus, UsageTotal
from billingkit.errors import ConflictError, RepositoryError
from billingkit.ports import ClaimOutcome, Repository, SaveOutcome, UnitOfWorkBase

__all__ = ["InMemoryRepository"]

_MISSING: Any = object()
_RECLAIMABLE = frozenset({EventStatus.FAILED, EventStatus.PENDING})
#: Statuses a claim may store at once (the caller knows the outcome: no finish follows).
_FINAL = frozenset({EventStatus.PROCESSED, EventStatus.IGNORED, EventStatus.STALE})
_FAILABLE = frozenset({EventStatus.FAILED, EventStatus.PENDING, EventStatus.PROCESSING})
_REVIVABLE = frozenset({EventStatus.FAILED, EventStatus.DEAD})
_USAGE_FAILABLE = frozenset({UsageStatus.PENDING, UsageStatus.SENDING, UsageStatus.FAILED})

#: One undo step: put ``previous`` back under ``key`` in ``table`` (remove it if _MISSING).
_UndoEntry = tuple[dict[Any, Any], Any, Any]


class _Tables:
    """The stored state: primary tables plus the secondary indexes the queries need."""

    __slots__ = (
        "charges",
        "charges_by_invoice",
        "checkouts",
        "checkouts_by_key",
        "checkouts_by_user",
        "default_payment_methods",
        "entitlements",
        "events",
        "invoices",
        "invoices_by_customer",
        "invoices_by_user",
        "links_by_customer",
        "links_by_user",
        "old_links_by_user",
        "payment_methods",
        "payment_methods_by_customer",
        "purchases",
        "purchases_by_intent",
        "purchases_by_user",
        "reconcile_checkpoints",
        "subscriptions",
        "subscriptions_by_customer",
        "subscriptions_by_user",
        "usage",
    )

    def __init__(self) -> None:
        self.links_by_user: dict[str, CustomerLink] = {}
        self.links_by_customer: dict[str, CustomerLink] = {}
        # the customer ids a user was linked to before (relink_customer), oldest first
        self.old_links_by_user: dict[str, tuple[str, ...]] = {}
        self.subscriptions: dict[str, Subscription] = {}
        # index value: an insertion-ordered set of subscription ids
        self.subscriptions_by_customer: dict[str, dict[str, None]] = {}
        self.subscriptions_by_user: dict[str, dict[str, None]] = {}
        self.checkouts: dict[str, CheckoutRecord] = {}
        self.checkouts_by_key: dict[tuple[str, str], dict[str, None]] = {}
        self.checkouts_by_user: dict[str, dict[str, None]] = {}
        self.events: dict[str, EventRecord] = {}
        self.invoices: dict[str, InvoiceSummary] = {}
        self.invoices_by_customer: dict[str, dict[str, None]] = {}
        self.invoices_by_user: dict[str, dict[str, None]] = {}
        self.charges: dict[str, ChargeRecord] = {}
        self.charges_by_invoice: dict[str, dict[str, None]] = {}
        self.reconcile_checkpoints: dict[str, ReconcileCheckpoint] = {}
        self.purchases: dict[str, Purchase] = {}
        self.purchases_by_intent: dict[str, str] = {}
        self.purchases_by_user: dict[str, dict[str, None]] = {}
        self.payment_methods: dict[str, PaymentMethodSummary] = {}
        self.payment_methods_by_customer: dict[str, dict[str, None]] = {}
        self.default_payment_methods: dict[str, DefaultPaymentMethod] = {}
        self.entitlements: dict[str, EntitlementSummary] = {}
        # the usage outbox, by identifier
        self.usage: dict[str, UsageRecord] = {}


class InMemoryRepository(Repository):
    """A thread-safe repository keeping everything in process memory.

    It is the reference implementation every other adapter is checked against (see
    ``tests/contract/``), and the repository of choice for tests and demos. Its state lives
    as long as the object and is not shared between processes.
    """

    def __init__(self) -> None:
        self._tables = _Tables()
        self._lock = Lock()

    @override
    def unit_of_work(self) -> _InMemoryUnitOfWork:
        """Open a serializable transaction; see the module docstring for the rules of use."""
        return _InMemoryUnitOfWork(self)


class _InMemoryUnitOfWork(UnitOfWorkBase):
    """One transaction of ``InMemoryRepository``: the lock, held from begin to release."""

    __slots__ = ("_journal", "_lock", "_t")

    def __init__(self, repository: InMemoryRepository) -> None:
        super().__init__(repository)
        self._lock = repository._lock
        self._t = repository._tables
        self._journal: list[_UndoEntry] = []

    # ------------------------------------------------------------------------- lifecycle

    @override
    def _begin(self) -> None:
        self._lock.acquire()

    @override
    def _commit(self) -> None:
        pass  # every write is already in the tables

    @override
    def _rollback(self) -> None:
        for table, key, previous in reversed(self._journal):
            if previous is _MISSING:
                table.pop(key, None)
            else:
                table[key] = previous

    @override
    def _release(self) -> None:
        self._journal = []
        self._lock.release()

    # ------------------------------------------------------------------- journaled writes

    def _put(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        self._journal.append((table, key, table.get(key, _MISSING)))
        table[key] = value

    def _pop(self, table: dict[Any, Any], key: Any) -> None:
        previous = table.pop(key, _MISSING)
        if previous is not _MISSING:
            self._journal.append((table, key, previous))

    def _index_add(self, index: dict[Any, dict[str, None]], key: Any, member: str) -> None:
        members = index.get(key)
        if members is None:
            members = {}
            self._put(index, key, members)
        if member not in members:
            self._put(members, member, None)

    def _index_remove(self, index: dict[Any, dict[str, None]], key: Any, member: str) -> None:
        members = index.get(key)
        if members is not None:
            self._pop(members, member)

    # ------------------------------------------------------------------------- customers

    @override
    def customer_for_user(self, user_id: str) -> CustomerLink | None:
        self._check()
        return self._t.links_by_user.get(user_id)

    @override
    def customer_by_id(self, customer_id: str) -> CustomerLink | None:
        self._check()
        return self._t.links_by_customer.get(customer_id)

    @override
    def link_customer(self, link: CustomerLink) -> CustomerLink:
        self._check()
        t = self._t
        existing = t.links_by_user.get(link.user_id)
        if existing is not None:
            if existing.customer_id == link.customer_id:
                return existing
            raise ConflictError(
                f"user {link.user_id!r} is already linked to another Stripe customer"
            )
        if link.customer_id in t.links_by_customer:
            raise ConflictError(
                f"Stripe customer {link.customer_id!r} is already linked to another user"
            )
        self._put(t.links_by_user, link.user_id, link)
        self._put(t.links_by_customer, link.customer_id, link)
        return link

    @override
    def relink_customer(self, link: CustomerLink, *, replacing: str) -> CustomerLink:
        self._check()
        t = self._t
        current = t.links_by_user.get(link.user_id)
        if current is None:
            raise ConflictError(f"user {link.user_id!r} is not linked to {replacing!r}")
        if current.customer_id != replacing:
            if replacing in t.old_links_by_user.get(link.user_id, ()):
                return current  # another writer replaced it first
            raise ConflictError(f"user {link.user_id!r} is not linked to {replacing!r}")
        if not current.deleted:
            raise ConflictError(
                f"Stripe customer {replacing!r} is not deleted: it cannot be replaced"
            )
        if link.customer_id in t.links_by_customer:
            raise ConflictError(f"Stripe customer {link.customer_id!r} is already linked to a user")
        history = t.old_links_by_user.get(link.user_id, ())
        self._put(t.old_links_by_user, link.user_id, (*history, replacing))
        self._put(t.links_by_user, link.user_id, link)
        self._put(t.links_by_customer, link.customer_id, link)
        return link

    @override
    def update_customer(self, link: CustomerLink) -> SaveOutcome:
        self._check()
        t = self._t
        stored = t.links_by_customer.get(link.customer_id)
        if stored is None or link.watermark < stored.watermark:
            return SaveOutcome.STALE
        updated = stored.model_copy(
            update={"email": link.email, "deleted": link.deleted, "watermark": link.watermark}
        )
        self._put(t.links_by_customer, stored.customer_id, updated)
        current = t.links_by_user.get(stored.user_id)
        if current is not None and current.customer_id == stored.customer_id:
            self._put(t.links_by_user, stored.user_id, updated)
        return SaveOutcome.WRITTEN

    # --------------------------------------------------------------------- subscriptions

    @override
    def get_subscription(self, subscription_id: str) -> Subscription | None:
        self._check()
        return self._t.subscriptions.get(subscription_id)

    @override
    def subscriptions_for_user(self, user_id: str) -> list[Subscription]:
        self._check()
        t = self._t
        ids: dict[str, None] = dict(t.subscriptions_by_user.get(user_id, {}))
        link = t.links_by_user.get(user_id)
        if link is not None:
            for customer_id in (*t.old_links_by_user.get(user_id, ()), link.customer_id):
                ids.update(t.subscriptions_by_customer.get(customer_id, {}))
        found = [t.subscriptions[sub_id] for sub_id in ids]
        found.sort(key=lambda sub: (sub.created, sub.id), reverse=True)
        return found

    @override
    def save_subscription(
        self, subscription: Subscription, *, allow_tie: bool = False
    ) -> SaveOutcome:
        self._check()
        t = self._t
        stored = t.subscriptions.get(subscription.id)
        if stored is not None:
            outcome = decide_save(stored.status, stored.watermark, subscription, allow_tie)
            if outcome is not SaveOutcome.WRITTEN:
                return outcome
            kept: dict[str, str] = {}
            if subscription.user_id is None and stored.user_id is not None:
                kept["user_id"] = stored.user_id
            if (
                subscription.plan_key is None
                and stored.plan_key is not None
                and subscription.price_id == stored.price_id
            ):
                kept["plan_key"] = stored.plan_key  # only for the price it was resolved for
            if kept:
                subscription = subscription.model_copy(update=kept)
            if stored.customer_id != subscription.customer_id:
                self._index_remove(t.subscriptions_by_customer, stored.customer_id, stored.id)
            if stored.user_id is not None and stored.user_id != subscription.user_id:
                self._index_remove(t.subscriptions_by_user, stored.user_id, stored.id)
        self._put(t.subscriptions, subscription.id, subscription)
        self._index_add(t.subscriptions_by_customer, subscription.customer_id, subscription.id)
        if subscription.user_id is not None:
            self._index_add(t.subscriptions_by_user, subscription.user_id, subscription.id)
        return SaveOutcome.WRITTEN

    # ----------------------------------------------------------------- checkout sessions

    @override
    def save_checkout(self, record: CheckoutRecord) -> None:
        self._check()
        t = self._t
        key = (record.user_id, record.request_key)
        stored = t.checkouts.get(record.session_id)
        if stored is not None and (stored.user_id, stored.request_key) != key:
            self._index_remove(
                t.checkouts_by_key, (stored.user_id, stored.request_key), stored.session_id
            )
        if stored is not None and stored.user_id != record.user_id:
            self._index_remove(t.checkouts_by_user, stored.user_id, stored.session_id)
        self._put(t.checkouts, record.session_id, record)
        self._index_add(t.checkouts_by_key, key, record.session_id)
        self._index_add(t.checkouts_by_user, record.user_id, record.session_id)

    @override
    def get_checkout(self, session_id: str) -> CheckoutRecord | None:
        self._check()
        return self._t.checkouts.get(session_id)

    @override
    def find_open_checkout(
        self, *, user_id: str, request_key: str, created_after: datetime
    ) -> CheckoutRecord | None:
        self._check()
        after = aware_utc(created_after, "created_after")
        t = self._t
        best: CheckoutRecord | None = None
        for session_id in t.checkouts_by_key.get((user_id, request_key), ()):
            record = t.checkouts[session_id]
            if record.status != "open" or record.created_at <= after:
                continue
            if best is None or (record.created_at, record.session_id) > (
                best.created_at,
                best.session_id,
            ):
                best = record
        return best

    @override
    def open_checkouts_for_user(
        self, *, user_id: str, created_after: datetime
    ) -> list[CheckoutRecord]:
        self._check()
        after = aware_utc(created_after, "created_after")
        t = self._t
        found = [
            record
            for record in (t.checkouts[i] for i in t.checkouts_by_user.get(user_id, ()))
            if record.status == "open" and record.created_at > after
        ]
        found.sort(key=lambda record: (record.created_at, record.session_id), reverse=True)
        return found

    # ---------------------------------------------------------------------- event ledger

    @override
    def claim_event(self, record: EventRecord) -> ClaimOutcome:
        self._check()
        events = self._t.events
        event_id = self._storable_id(record.id)
        stored = events.get(event_id)
        status = record.status
        if status in _FINAL:
            when: datetime | None = aware_utc(
                record.processed_at or record.received_at, "processed_at"
            )
        else:
            status, when = EventStatus.PROCESSING, None
        if stored is None:
            if (
                event_id is not record.id
                or record.status is not status
                or record.processed_at is not when
                or record.last_error is not None
                or self._storable_text(record.type, self.MAX_TYPE_CHARS) is not record.type
            ):
                record = self._ledger_record(record, event_id, status=status, processed_at=when)
            self._put(events, event_id, record)
            return ClaimOutcome.CLAIMED
        if stored.status in _RECLAIMABLE:
            self._put(
                events,
                stored.id,
                stored.model_copy(
                    update={
                        "status": status,
                        "attempts": stored.attempts + 1,
                        "processed_at": when,
                    }
                ),
            )
            return ClaimOutcome.CLAIMED
        return ClaimOutcome.DUPLICATE

    @override
    def finish_event(self, event_id: str, status: EventStatus, *, processed_at: datetime) -> None:
        self._check()
        events = self._t.events
        stored = events.get(event_id) or events.get(self._storable_id(event_id))
        if stored is None:
            raise RepositoryError(f"event {event_id!r} is not in the ledger")
        when = aware_utc(processed_at, "processed_at")
        try:
            status = EventStatus(status)
        except ValueError:
            raise RepositoryError(f"unknown event status {status!r}") from None
        self._put(
            events,
            stored.id,
            stored.model_copy(update={"status": status, "processed_at": when}),
        )

    @override
    def mark_event_failed(self, record: EventRecord, error: str) -> EventRecord:
        self._check()
        events = self._t.events
        event_id = self._storable_id(record.id)
        error = self._storable_text(error, self.MAX_ERROR_CHARS)
        stored = events.get(event_id)
        if stored is None:
            failed = self._ledger_record(
                record, event_id, status=EventStatus.FAILED, attempts=1, last_error=error
            )
        elif stored.status in _FAILABLE:
            failed = stored.model_copy(
                update={
                    "status": EventStatus.FAILED,
                    "attempts": stored.attempts + 1,
                    "last_error": error,
                }
            )
        else:
            return stored
        self._put(events, failed.id, failed)
        return failed

    @override
    def get_event(self, event_id: str) -> EventRecord | None:
        self._check()
        events = self._t.events
        return events.get(event_id) or events.get(self._storable_id(event_id))

    def _ledger_record(self, record: EventRecord, event_id: str, **changes: Any) -> EventRecord:
        """``record`` with ``changes``, as the SQL ledgers store it (see UnitOfWorkBase)."""
        update = {name: value for name, value in changes.items() if getattr(record, name) != value}
        if event_id is not record.id:
            update["id"] = event_id
        event_type = self._storable_text(record.type, self.MAX_TYPE_CHARS)
        if event_type is not record.type:
            update["type"] = event_type
        if "last_error" not in changes and record.last_error is not None:
            last_error = self._storable_text(record.last_error, self.MAX_ERROR_CHARS)
            if last_error is not record.last_error:
                update["last_error"] = last_error
        return record.model_copy(update=update) if update else record

    @override
    def list_events(
        self, *, status: EventStatus | None = None, limit: int = 100
    ) -> list[EventRecord]:
        self._check()
        if limit < 0:
            raise RepositoryError("limit must not be negative")
        records: Iterable[EventRecord] = self._t.events.values()
        if status is not None:
            records = (record for record in records if record.status == status)
        return heapq.nsmallest(limit, records, key=lambda record: (record.received_at, record.id))

    # ----------------------------------------------------------- deferred webhook processing

    @override
    def store_pending_event(self, record: EventRecord) -> ClaimOutcome:
        self._check()
        events = self._t.events
        event_id = self._storable_id(record.id)
        if event_id in events:
            return ClaimOutcome.DUPLICATE
        pending = self._ledger_record(
            record,
            event_id,
            status=EventStatus.PENDING,
            attempts=0,
            last_error=None,
            processed_at=None,
            next_attempt_at=None,
        )
        self._put(events, pending.id, pending)
        return ClaimOutcome.CLAIMED

    def _claimable(self, record: EventRecord, now: datetime) -> bool:
        if record.status is EventStatus.PENDING:
            return True
        return record.status is EventStatus.FAILED and (
            record.next_attempt_at is None or record.next_attempt_at <= now
        )

    def _take(self, record: EventRecord) -> EventRecord:
        claimed = record.model_copy(
            update={
                "status": EventStatus.PROCESSING,
                "attempts": record.attempts + 1,
                "next_attempt_at": None,
            }
        )
        self._put(self._t.events, claimed.id, claimed)
        return claimed

    @override
    def claim_stored_event(self, event_id: str, *, now: datetime) -> EventRecord | None:
        self._check()
        when = aware_utc(now, "now")
        stored = self._t.events.get(self._storable_id(event_id))
        if stored is None or not self._claimable(stored, when):
            return None
        return self._take(stored)

    @override
    def claim_due_events(self, *, now: datetime, limit: int) -> list[EventRecord]:
        self._check()
        if limit < 0:
            raise RepositoryError("limit must not be negative")
        when = aware_utc(now, "now")
        due = heapq.nsmallest(
            limit,
            (record for record in self._t.events.values() if self._claimable(record, when)),
            key=lambda record: (record.created, record.id),
        )
        return [self._take(record) for record in due]

    def _set_failure(self, event_id: str, error: str, **update: Any) -> None:
        stored = self._t.events.get(self._storable_id(event_id))
        if stored is not None and stored.status in _FAILABLE:
            update["last_error"] = self._storable_text(error, self.MAX_ERROR_CHARS)
            self._put(self._t.events, stored.id, stored.model_copy(update=update))

    @override
    def schedule_event_retry(self, event_id: str, *, error: str, next_attempt_at: datetime) -> None:
        self._check()
        when = aware_utc(next_attempt_at, "next_attempt_at")
        self._set_failure(event_id, error, status=EventStatus.FAILED, next_attempt_at=when)

    @override
    def mark_event_dead(self, event_id: str, *, error: str) -> None:
        self._check()
        self._set_failure(event_id, error, status=EventStatus.DEAD, next_attempt_at=None)

    @override
    def revive_event(self, event_id: str) -> EventRecord | None:
        self._check()
        stored = self._t.events.get(self._storable_id(event_id))
        if stored is None or stored.status not in _REVIVABLE:
            return stored
        revived = stored.model_copy(update={"status": EventStatus.FAILED, "next_attempt_at": None})
        self._put(self._t.events, stored.id, revived)
        return revived

    @override
    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self._check()
        mark = len(self._journal)
        try:
            yield
        except BaseException:
            undo = self._journal[mark:]
            del self._journal[mark:]
            for table, key, previous in reversed(undo):
                if previous is _MISSING:
                    table.pop(key, None)
                else:
                    table[key] = previous
            raise

    @override
    def count_events(self, status: EventStatus) -> int:
        self._check()
        return sum(1 for record in self._t.events.values() if record.status == status)

    @override
    def oldest_received_at(self, status: EventStatus) -> datetime | None:
        self._check()
        return min(
            (record.received_at for record in self._t.events.values() if record.status == status),
            default=None,
        )

    # ------------------------------------------------------------------ invoices and charges

    def _with_refunds(self, invoice: InvoiceSummary) -> InvoiceSummary:
        currency = invoice.currency
        if currency is None:
            return invoice
        t = self._t
        refunded = sum(
            t.charges[key].amount_refunded for key in t.charges_by_invoice.get(invoice.id, ())
        )
        return invoice.model_copy(
            update={"amount_refunded": Money(amount=refunded, currency=currency)}
        )

    @override
    def get_invoice(self, invoice_id: str) -> InvoiceSummary | None:
        self._check()
        stored = self._t.invoices.get(invoice_id)
        return self._with_refunds(stored) if stored is not None else None

    @override
    def save_invoice(self, invoice: InvoiceSummary) -> SaveOutcome:
        self._check()
        t = self._t
        stored = t.invoices.get(invoice.id)
        if stored is not None and decide_invoice_save(stored, invoice) is SaveOutcome.STALE:
            return SaveOutcome.STALE
        merged = merge_invoice(stored, invoice)
        if stored is not None:
            if stored.customer_id is not None and stored.customer_id != merged.customer_id:
                self._index_remove(t.invoices_by_customer, stored.customer_id, stored.id)
            if stored.user_id is not None and stored.user_id != merged.user_id:
                self._index_remove(t.invoices_by_user, stored.user_id, stored.id)
        self._put(t.invoices, merged.id, merged)
        if merged.customer_id is not None:
            self._index_add(t.invoices_by_customer, merged.customer_id, merged.id)
        if merged.user_id is not None:
            self._index_add(t.invoices_by_user, merged.user_id, merged.id)
        return SaveOutcome.WRITTEN

    @override
    def invoices_for_user(
        self, user_id: str, *, limit: int, before: tuple[datetime, str] | None = None
    ) -> list[InvoiceSummary]:
        self._check()
        if limit < 0:
            raise RepositoryError("limit must not be negative")
        t = self._t
        ids: dict[str, None] = dict(t.invoices_by_user.get(user_id, {}))
        link = t.links_by_user.get(user_id)
        if link is not None:
            ids.update(t.invoices_by_customer.get(link.customer_id, {}))
        found = [t.invoices[i] for i in ids]
        found = [inv for inv in found if inv.status is not InvoiceStatus.DELETED]
        if before is not None:
            cursor = (aware_utc(before[0], "before"), before[1])
            found = [inv for inv in found if _invoice_key(inv) < cursor]
        chosen = heapq.nlargest(limit, found, key=_invoice_key)
        return [self._with_refunds(inv) for inv in chosen]

    @override
    def save_charge(self, charge: ChargeRecord) -> ChargeRecord:
        self._check()
        t = self._t
        stored = t.charges.get(charge.key)
        merged = merge_charge(stored, charge)
        if merged == stored:
            return merged
        self._put(t.charges, merged.key, merged)
        if merged.invoice_id is not None:
            self._index_add(t.charges_by_invoice, merged.invoice_id, merged.key)
        return merged

    @override
    def get_charge(self, key: str) -> ChargeRecord | None:
        self._check()
        return self._t.charges.get(key)

    # ---------------------------------------------------------------------------- reconcile

    @override
    def get_reconcile_checkpoint(self, name: str) -> ReconcileCheckpoint | None:
        self._check()
        return self._t.reconcile_checkpoints.get(name)

    @override
    def save_reconcile_checkpoint(self, checkpoint: ReconcileCheckpoint) -> None:
        self._check()
        self._put(self._t.reconcile_checkpoints, checkpoint.name, checkpoint)

    @override
    def delete_reconcile_checkpoint(self, name: str) -> None:
        self._check()
        self._pop(self._t.reconcile_checkpoints, name)

    @override
    def subscription_ids_created_between(
        self,
        *,
        newer_than: datetime | None,
        at_most: datetime | None,
        customer_id: str | None = None,
    ) -> list[str]:
        self._check()
        low = None if newer_than is None else aware_utc(newer_than, "newer_than")
        high = None if at_most is None else aware_utc(at_most, "at_most")
        t = self._t
        if customer_id is None:
            candidates: Iterable[Subscription] = t.subscriptions.values()
        else:
            ids = t.subscriptions_by_customer.get(customer_id, {})
            candidates = (t.subscriptions[sub_id] for sub_id in ids)
        found = [
            sub
            for sub in candidates
            if (low is None or sub.created > low) and (high is None or sub.created <= high)
        ]
        found.sort(key=lambda sub: (sub.created, sub.id), reverse=True)
        return [sub.id for sub in found]

    # ------------------------------------------------------------------ one-time purchases

    @override
    def save_purchase(self, purchase: Purchase) -> None:
        self._check()
        t = self._t
        stored = t.purchases.get(purchase.session_id)
        if stored is not None:
            if stored.user_id != purchase.user_id:
                self._index_remove(t.purchases_by_user, stored.user_id, stored.session_id)
            if stored.payment_intent_id not in (None, purchase.payment_intent_id):
                self._pop(t.purchases_by_intent, stored.payment_intent_id)
        self._put(t.purchases, purchase.session_id, purchase)
        self._index_add(t.purchases_by_user, purchase.user_id, purchase.session_id)
        if purchase.payment_intent_id is not None:
            self._put(t.purchases_by_intent, purchase.payment_intent_id, purchase.session_id)

    @override
    def get_purchase(self, session_id: str) -> Purchase | None:
        self._check()
        return self._t.purchases.get(session_id)

    @override
    def purchase_by_payment_intent(self, payment_intent_id: str) -> Purchase | None:
        self._check()
        session_id = self._t.purchases_by_intent.get(payment_intent_id)
        return None if session_id is None else self._t.purchases.get(session_id)

    @override
    def purchases_for_user(self, user_id: str) -> list[Purchase]:
        self._check()
        t = self._t
        found = [t.purchases[sid] for sid in t.purchases_by_user.get(user_id, {})]
        found.sort(key=lambda p: (p.created_at, p.session_id), reverse=True)
        return found

    # ------------------------------------------------------- payment methods, entitlements

    @override
    def save_payment_method(self, method: PaymentMethodSummary) -> SaveOutcome:
        self._check()
        t = self._t
        stored = t.payment_methods.get(method.id)
        if stored is not None:
            outcome = decide_payment_method(stored, method)
            if outcome is not SaveOutcome.WRITTEN:
                return outcome
            if method.customer_id is None and stored.customer_id is not None:
                method = method.model_copy(update={"customer_id": stored.customer_id})
            if stored.customer_id is not None and stored.customer_id != method.customer_id:
                self._index_remove(t.payment_methods_by_customer, stored.customer_id, stored.id)
        self._put(t.payment_methods, method.id, method)
        if method.customer_id is not None:
            self._index_add(t.payment_methods_by_customer, method.customer_id, method.id)
        return SaveOutcome.WRITTEN

    @override
    def get_payment_method(self, payment_method_id: str) -> PaymentMethodSummary | None:
        self._check()
        return self._t.payment_methods.get(payment_method_id)

    @override
    def payment_methods_for_customer(self, customer_id: str) -> list[PaymentMethodSummary]:
        self._check()
        t = self._t
        found = [
            t.payment_methods[ident]
            for ident in t.payment_methods_by_customer.get(customer_id, {})
            if not t.payment_methods[ident].detached
        ]
        found.sort(key=_newest_method, reverse=True)
        return found

    @override
    def save_default_payment_method(self, default: DefaultPaymentMethod) -> SaveOutcome:
        self._check()
        stored = self._t.default_payment_methods.get(default.customer_id)
        if stored is not None and decide_watermark(stored.watermark, default.watermark) is (
            SaveOutcome.STALE
        ):
            return SaveOutcome.STALE
        self._put(self._t.default_payment_methods, default.customer_id, default)
        return SaveOutcome.WRITTEN

    @override
    def default_payment_method(self, customer_id: str) -> DefaultPaymentMethod | None:
        self._check()
        return self._t.default_payment_methods.get(customer_id)

    @override
    def save_entitlements(self, summary: EntitlementSummary) -> SaveOutcome:
        self._check()
        stored = self._t.entitlements.get(summary.customer_id)
        if stored is not None and decide_watermark(stored.watermark, summary.watermark) is (
            SaveOutcome.STALE
        ):
            return SaveOutcome.STALE
        self._put(self._t.entitlements, summary.customer_id, summary)
        return SaveOutcome.WRITTEN

    @override
    def entitlements_for_customer(self, customer_id: str) -> EntitlementSummary | None:
        self._check()
        return self._t.entitlements.get(customer_id)

    # ------------------------------------------------------------------------ usage outbox

    @override
    def add_usage(self, record: UsageRecord) -> bool:
        self._check()
        if record.identifier in self._t.usage:
            return False
        if record.last_error is not None:
            error = self._storable_text(record.last_error, self.MAX_ERROR_CHARS)
            if error is not record.last_error:
                record = record.model_copy(update={"last_error": error})
        self._put(self._t.usage, record.identifier, record)
        return True

    @staticmethod
    def _usage_due(record: UsageRecord, now: datetime) -> bool:
        if record.status is UsageStatus.PENDING:
            return True
        if record.status in (UsageStatus.FAILED, UsageStatus.SENDING):
            return record.next_attempt_at is None or record.next_attempt_at <= now
        return False

    @override
    def claim_due_usage(
        self, *, now: datetime, limit: int, lease_until: datetime
    ) -> list[UsageRecord]:
        self._check()
        if limit < 0:
            raise RepositoryError("limit must not be negative")
        when = aware_utc(now, "now")
        lease = aware_utc(lease_until, "lease_until")
        due = heapq.nsmallest(
            limit,
            (record for record in self._t.usage.values() if self._usage_due(record, when)),
            key=lambda record: (record.recorded_at, record.identifier),
        )
        claimed = []
        for record in due:
            taken = record.model_copy(
                update={"status": UsageStatus.SENDING, "next_attempt_at": lease}
            )
            self._put(self._t.usage, taken.identifier, taken)
            claimed.append(taken)
        return claimed

    @override
    def mark_usage_sent(self, identifiers: Sequence[str], *, sent_at: datetime) -> int:
        self._check()
        when = aware_utc(sent_at, "sent_at")
        changed = 0
        for identifier in dict.fromkeys(identifiers):
            stored = self._t.usage.get(identifier)
            if stored is None or stored.status is UsageStatus.SENT:
                continue
            update = {
                "status": UsageStatus.SENT,
                "sent_at": when,
                "next_attempt_at": None,
                "last_error": None,
            }
            self._put(self._t.usage, identifier, stored.model_copy(update=update))
            changed += 1
        return changed

    @override
    def release_usage(self, identifiers: Sequence[str]) -> None:
        self._check()
        for identifier in identifiers:
            stored = self._t.usage.get(identifier)
            if stored is None or stored.status is not UsageStatus.SENDING:
                continue
            status = UsageStatus.FAILED if stored.attempts else UsageStatus.PENDING
            released = stored.model_copy(update={"status": status, "next_attempt_at": None})
            self._put(self._t.usage, identifier, released)

    def _fail_usage(self, identifier: str, error: str, **update: Any) -> None:
        stored = self._t.usage.get(identifier)
        if stored is None or stored.status not in _USAGE_FAILABLE:
            return
        update["attempts"] = stored.attempts + 1
        update["last_error"] = self._storable_text(error, self.MAX_ERROR_CHARS)
        self._put(self._t.usage, identifier, stored.model_copy(update=update))

    @override
    def schedule_usage_retry(
        self, identifier: str, *, error: str, next_attempt_at: datetime
    ) -> None:
        self._check()
        when = aware_utc(next_attempt_at, "next_attempt_at")
        self._fail_usage(identifier, error, status=UsageStatus.FAILED, next_attempt_at=when)

    @override
    def mark_usage_dead(self, identifier: str, *, error: str) -> None:
        self._check()
        self._fail_usage(identifier, error, status=UsageStatus.DEAD, next_attempt_at=None)

    @override
    def get_usage(self, identifier: str) -> UsageRecord | None:
        self._check()
        return self._t.usage.get(identifier)

    @override
    def list_usage(
        self, *, status: UsageStatus | None = None, limit: int = 100
    ) -> list[UsageRecord]:
        self._check()
        if limit < 0:
            raise RepositoryError("limit must not be negative")
        records: Iterable[UsageRecord] = self._t.usage.values()
        if status is not None:
            wanted = UsageStatus(status)
            records = (record for record in records if record.status is wanted)
        return heapq.nsmallest(
            limit, records, key=lambda record: (record.recorded_at, record.identifier)
        )

    @override
    def usage_total(
        self, user_id: str, event_name: str, *, start: datetime, end: datetime
    ) -> UsageTotal:
        self._check()
        since = aware_utc(start, "start")
        until = aware_utc(end, "end")
        value = records = unsent = 0
        for record in self._t.usage.values():
            if (
                record.user_id == user_id
                and record.event_name == event_name
                and since <= record.timestamp < until
                and record.status is not UsageStatus.DEAD
            ):
                value += record.value
                records += 1
                unsent += record.status is not UsageStatus.SENT
        return UsageTotal(value=value, records=records, unsent=unsent)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _invoice_key(invoice: InvoiceSummary) -> tuple[datetime, str]:
    """Newest-first order of the history: ``created`` (unknown: oldest), then id."""
    return (invoice.created or _EPOCH, invoice.id)


def _newest_method(method: PaymentMethodSummary) -> tuple[float, str]:
    """Sort key: ``created`` (unknown first), then id."""
    created = method.created.timestamp() if method.created is not None else float("-inf")
    return created, method.id
