"""The Repository contract: the behaviour every ``billingkit.ports.Repository`` adapter must have.

How to run it against an adapter
--------------------------------
Subclass ``RepositoryContract`` in a module pytest collects (the class name must start
with ``Test``) and provide a ``repository`` fixture that yields a fresh, **empty** repository
for each test and cleans up after it::

    import pytest

    from tests.contract.repository_contract import RepositoryContract


    class TestSqliteRepository(RepositoryContract):
        @pytest.fixture
        def repository(self):
            repo = make_my_repository()  # empty tables
            yield repo
            repo.close()

Importing: ``tests/`` is not a package, ``tests/contract/`` is. The import above needs the
repository root on ``sys.path``; ``python -m pytest`` run from the repository root (what the
Makefile and CI do) puts it there (a bare ``pytest`` does not, unless the pytest config sets
``pythonpath = ["."]``). Test modules elsewhere (``tests/integration/``,
``examples/django_project/``) use the same line; a test tree run from another directory
inserts the repository root into ``sys.path`` in its ``conftest.py`` first.

The suite uses only the port API (``unit_of_work()`` and the ``UnitOfWork`` methods),
never adapter internals, and assumes nothing but an empty repository at the start of each
test. Every test opens its own units of work. The concurrency tests start 8 threads, each
with its own unit of work, behind a barrier; an adapter that serializes units of work (one
at a time) passes them too. A ``RepositoryError`` with ``retryable=True`` (for example a
serialization failure) is retried by those tests, as a caller retrying later would.

Rules this suite pins beyond the port docstrings (so all adapters agree):

* after a ``with`` block exits, using its unit of work raises ``RepositoryError``;
* a ``ConflictError`` caught *inside* a unit of work leaves it usable, and the block's other
  writes still commit (SQL adapters: wrap the insert in a savepoint);
* ``finish_event`` stores any status it is given (the suite parks an event as ``PENDING``
  with it);
* ``finish_event`` of an unknown id, a naive ``processed_at`` or ``created_after``, and a
  negative ``list_events`` limit raise ``RepositoryError`` and change nothing;
* ``subscriptions_for_user`` orders by ``created`` then id, both descending;
  ``list_events`` by ``received_at`` then id, ascending; ``find_open_checkout`` wants
  ``created_at`` strictly after ``created_after`` and breaks ties by the larger session id;
* ``invoices_for_user`` orders by ``created`` then id, both descending, and never lists a
  ``deleted`` invoice; a ``before`` key of ``(created, "")`` keeps invoices created strictly
  before that moment;
* datetimes come back aware and equal to what was stored, to the microsecond; watermarks
  beyond 2**31 fit; payload bytes come back byte for byte; text is full Unicode.
* the rules of use of ``UnitOfWorkBase``: a unit of work is entered
  once, is usable only inside its block and by the thread that entered it, and units of work
  of one repository do not nest on one thread (all ``RepositoryError``);
* a failure can always be recorded (the ledger storage rule of ``UnitOfWorkBase``):
  ``last_error`` and the event type are stored with NUL and lone surrogates replaced by
  U+FFFD and cut to 16,000 and 255 characters; an id longer than 255 characters or holding
  such characters is stored under a key of at most 255 storable characters, distinct per
  id, by which claiming, finishing, failing and reading the event all find it. Ids within
  the limits are stored as given.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billingkit.domain import (
    TERMINAL_STATUSES,
    CheckoutRecord,
    CustomerLink,
    EventRecord,
    EventStatus,
    Interval,
    Purchase,
    PurchaseStatus,
    Subscription,
    SubscriptionStatus,
)
from billingkit.domain.invoices import ChargeRecord, InvoiceStatus, InvoiceSummary
from billingkit.domain.money import Money
from billingkit.domain.payment_methods import (
    DefaultPaymentMethod,
    EntitlementSummary,
    PaymentMethodSummary,
)
from billingkit.domain.reconcile import ReconcileCheckpoint
from billingkit.domain.usage import UsageRecord, UsageStatus, UsageTotal
from billingkit.errors import ConflictError, RepositoryError
from billingkit.ports import ClaimOutcome, Repository, SaveOutcome, UnitOfWork

__all__ = [
    "T0",
    "RepositoryContract",
    "make_checkout",
    "make_event",
    "make_invoice",
    "make_link",
    "make_subscription",
    "run_in_threads",
]

T = TypeVar("T")

#: A fixed, aware instant every test builds its times from.
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
THREADS = 8
_BARRIER_TIMEOUT = 30.0
_JOIN_TIMEOUT = 120.0
_RETRIES = 5


# --------------------------------------------------------------------------- value factories


def make_link(user_id: str = "user_1", customer_id: str = "cus_1", **fields: Any) -> CustomerLink:
    """A customer link with sensible defaults."""
    return CustomerLink(user_id=user_id, customer_id=customer_id, **fields)


def make_subscription(
    subscription_id: str = "sub_1",
    *,
    watermark: int = 100,
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
    customer_id: str = "cus_1",
    created: datetime = T0,
    **fields: Any,
) -> Subscription:
    """A subscription with sensible defaults."""
    return Subscription(
        id=subscription_id,
        customer_id=customer_id,
        status=status,
        created=created,
        watermark=watermark,
        **fields,
    )


def make_checkout(
    session_id: str = "cs_1",
    *,
    user_id: str = "user_1",
    request_key: str = "rk_1",
    created_at: datetime = T0,
    **fields: Any,
) -> CheckoutRecord:
    """A checkout record (monthly ``pro`` subscription, open) with sensible defaults."""
    values: dict[str, Any] = {
        "plan_key": "pro",
        "interval": Interval.MONTH,
        "mode": "subscription",
    }
    values.update(fields)
    return CheckoutRecord(
        session_id=session_id,
        user_id=user_id,
        request_key=request_key,
        created_at=created_at,
        **values,
    )


def make_event(
    event_id: str = "evt_1", *, received_at: datetime = T0, **fields: Any
) -> EventRecord:
    """A ledger record with a small JSON payload."""
    values: dict[str, Any] = {
        "type": "customer.subscription.updated",
        "created": T0 - timedelta(seconds=5),
        "payload": f'{{"id": "{event_id}", "object": "event"}}'.encode(),
    }
    values.update(fields)
    return EventRecord(id=event_id, received_at=received_at, **values)


# --------------------------------------------------------------------------- helpers


def _read(repository: Repository, query: Callable[[UnitOfWork], T]) -> T:
    """Run ``query`` in its own unit of work and return its result."""
    with repository.unit_of_work() as uow:
        return query(uow)


def _write(repository: Repository, command: Callable[[UnitOfWork], T]) -> T:
    """Run ``command`` in its own (committed) unit of work and return its result."""
    with repository.unit_of_work() as uow:
        return command(uow)


class _Boom(Exception):
    """Raised inside a unit of work to make it roll back."""


def run_in_threads(
    repository: Repository,
    work: Callable[[UnitOfWork, int], T],
    threads: int = THREADS,
) -> list[T | Exception]:
    """Run ``work(uow, i)`` on ``threads`` threads started together, each in its own unit of work.

    Returns, per thread index, the committed result or the exception that ended the unit of
    work. Retryable ``RepositoryError`` s are retried (a fresh unit of work each time).
    """
    barrier = threading.Barrier(threads)
    results: list[Any] = [None] * threads

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=_BARRIER_TIMEOUT)
            for attempt in range(_RETRIES):
                try:
                    with repository.unit_of_work() as uow:
                        value = work(uow, index)
                except RepositoryError as error:
                    if not error.retryable or attempt == _RETRIES - 1:
                        raise
                else:
                    results[index] = value
                    return
        except Exception as error:
            results[index] = error

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=_JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in pool), "a worker thread hung"
    return results


def _ids(records: Sequence[EventRecord | Subscription]) -> list[str]:
    return [record.id for record in records]


def _fold_saves(saves: Sequence[tuple[Subscription, bool]]) -> list[SaveOutcome]:
    """The outcomes the port docstring prescribes for a sequence of saves of one id."""
    outcomes: list[SaveOutcome] = []
    stored: Subscription | None = None
    for candidate, allow_tie in saves:
        if stored is None:
            outcome = SaveOutcome.WRITTEN
        elif (
            stored.status in TERMINAL_STATUSES and candidate.status not in TERMINAL_STATUSES
        ) or candidate.watermark < stored.watermark:
            outcome = SaveOutcome.STALE
        elif candidate.watermark == stored.watermark or stored.watermark == 0:
            # watermark 0: a state fetched outside any event, order unknown -> a tie
            outcome = SaveOutcome.WRITTEN if allow_tie else SaveOutcome.TIE
        else:
            outcome = SaveOutcome.WRITTEN
        if outcome is SaveOutcome.WRITTEN:
            stored = candidate
        outcomes.append(outcome)
    return outcomes


#: (stored status, new status, new watermark, allow_tie, expected) over a stored watermark of 100.
_WATERMARK_AND_TERMINAL_RULES: list[tuple[str, str, int, bool, str]] = [
    # live over live: the watermark rule
    *[
        ("active", "past_due", watermark, allow_tie, expected)
        for watermark, allow_tie, expected in [
            (101, False, "written"),
            (101, True, "written"),
            (100, False, "tie"),
            (100, True, "written"),
            (99, False, "stale"),
            (99, True, "stale"),
        ]
    ],
    # a terminal state is never replaced by a live one, whatever the watermark
    *[
        (terminal, "active", watermark, allow_tie, "stale")
        for terminal in ("canceled", "incomplete_expired")
        for watermark, allow_tie in [(200, False), (200, True), (100, True), (50, False)]
    ],
    # terminal over terminal: the watermark rule again
    ("canceled", "incomplete_expired", 200, False, "written"),
    ("canceled", "incomplete_expired", 100, False, "tie"),
    ("canceled", "incomplete_expired", 100, True, "written"),
    ("canceled", "incomplete_expired", 50, True, "stale"),
    # a newer terminal state replaces a live one, an older one does not
    ("active", "canceled", 110, False, "written"),
    ("active", "canceled", 90, False, "stale"),
]


_save_sequences = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=5),  # watermark: small range so ties happen
        st.sampled_from(list(SubscriptionStatus)),
        st.booleans(),  # allow_tie
    ),
    min_size=1,
    max_size=8,
)


# --------------------------------------------------------------------------- the contract


class RepositoryContract:
    """Behaviour every Repository adapter must show; subclasses provide ``repository``."""

    @pytest.fixture
    def repository(self) -> Iterator[Repository]:
        raise NotImplementedError("subclasses provide a fresh, empty repository")

    # ------------------------------------------------------------------ unit of work

    def test_committed_writes_are_visible_to_later_units_of_work(
        self, repository: Repository
    ) -> None:
        with repository.unit_of_work() as uow:
            uow.link_customer(make_link())
            uow.save_subscription(make_subscription())
            uow.save_checkout(make_checkout())
            uow.claim_event(make_event())
        with repository.unit_of_work() as uow:
            assert uow.customer_for_user("user_1") == make_link()
            assert uow.get_subscription("sub_1") == make_subscription()
            assert uow.get_checkout("cs_1") == make_checkout()
            event = uow.get_event("evt_1")
            assert event is not None
            assert event.status is EventStatus.PROCESSING

    def test_a_unit_of_work_reads_its_own_writes(self, repository: Repository) -> None:
        with repository.unit_of_work() as uow:
            uow.save_subscription(make_subscription(user_id="user_1"))
            uow.link_customer(make_link())
            assert uow.get_subscription("sub_1") == make_subscription(user_id="user_1")
            assert uow.customer_by_id("cus_1") == make_link()
            assert [s.id for s in uow.subscriptions_for_user("user_1")] == ["sub_1"]

    def test_an_exception_rolls_back_inserts_across_all_tables(
        self, repository: Repository
    ) -> None:
        with pytest.raises(_Boom), repository.unit_of_work() as uow:
            uow.link_customer(make_link())
            uow.save_subscription(make_subscription(user_id="user_1"))
            uow.save_checkout(make_checkout())
            uow.claim_event(make_event())
            uow.mark_event_failed(make_event("evt_2"), "boom")
            raise _Boom
        with repository.unit_of_work() as uow:
            assert uow.customer_for_user("user_1") is None
            assert uow.customer_by_id("cus_1") is None
            assert uow.get_subscription("sub_1") is None
            assert uow.subscriptions_for_user("user_1") == []
            assert uow.get_checkout("cs_1") is None
            assert (
                uow.find_open_checkout(
                    user_id="user_1", request_key="rk_1", created_after=T0 - timedelta(days=1)
                )
                is None
            )
            assert uow.get_event("evt_1") is None
            assert uow.get_event("evt_2") is None
            assert uow.list_events() == []
        # the ids are free again: nothing half-written blocks a retry
        with repository.unit_of_work() as uow:
            assert uow.claim_event(make_event()) is ClaimOutcome.CLAIMED
            assert uow.link_customer(make_link("user_1", "cus_1")) == make_link()

    def test_an_exception_restores_updated_rows_exactly(self, repository: Repository) -> None:
        with repository.unit_of_work() as uow:
            uow.link_customer(make_link(email="old@example.com", watermark=10))
            uow.save_subscription(make_subscription(watermark=10, user_id="user_1"))
            uow.save_checkout(make_checkout())
            uow.mark_event_failed(make_event(), "first failure")
            uow.claim_event(make_event("evt_done"))
            uow.finish_event("evt_done", EventStatus.PROCESSED, processed_at=T0)

        def snapshot(uow: UnitOfWork) -> tuple[object, ...]:
            return (
                uow.customer_for_user("user_1"),
                uow.customer_by_id("cus_1"),
                uow.get_subscription("sub_1"),
                uow.get_checkout("cs_1"),
                uow.list_events(),
            )

        before = _read(repository, snapshot)
        with pytest.raises(_Boom), repository.unit_of_work() as uow:
            assert uow.update_customer(make_link(email="new@example.com", watermark=20)) is (
                SaveOutcome.WRITTEN
            )
            assert (
                uow.save_subscription(
                    make_subscription(watermark=20, status=SubscriptionStatus.PAST_DUE)
                )
                is SaveOutcome.WRITTEN
            )
            uow.save_checkout(make_checkout(status="complete", subscription_id="sub_1"))
            assert uow.claim_event(make_event()) is ClaimOutcome.CLAIMED
            uow.finish_event("evt_1", EventStatus.PROCESSED, processed_at=T0)
            uow.save_subscription(make_subscription("sub_2", customer_id="cus_1"))
            raise _Boom
        with repository.unit_of_work() as uow:
            assert snapshot(uow) == before
            assert uow.get_subscription("sub_2") is None
            assert [s.id for s in uow.subscriptions_for_user("user_1")] == ["sub_1"]
            assert (
                uow.find_open_checkout(
                    user_id="user_1", request_key="rk_1", created_after=T0 - timedelta(days=1)
                )
                == make_checkout()
            )

    def test_a_failed_unit_of_work_leaves_earlier_commits_alone(
        self, repository: Repository
    ) -> None:
        _write(repository, lambda uow: uow.save_subscription(make_subscription("sub_a")))
        with pytest.raises(_Boom), repository.unit_of_work() as uow:
            uow.save_subscription(make_subscription("sub_b"))
            raise _Boom
        _write(repository, lambda uow: uow.save_subscription(make_subscription("sub_c")))
        with repository.unit_of_work() as uow:
            assert uow.get_subscription("sub_a") is not None
            assert uow.get_subscription("sub_b") is None
            assert uow.get_subscription("sub_c") is not None

    def test_a_conflict_caught_inside_the_block_keeps_the_unit_of_work_usable(
        self, repository: Repository
    ) -> None:
        _write(repository, lambda uow: uow.link_customer(make_link("user_1", "cus_1")))
        with repository.unit_of_work() as uow:
            uow.save_subscription(make_subscription("sub_1"))
            with pytest.raises(ConflictError):
                uow.link_customer(make_link("user_1", "cus_other"))
            uow.link_customer(make_link("user_2", "cus_2"))
        with repository.unit_of_work() as uow:
            assert uow.get_subscription("sub_1") is not None
            assert uow.customer_for_user("user_2") == make_link("user_2", "cus_2")
            assert uow.customer_by_id("cus_other") is None

    def test_a_unit_of_work_cannot_be_used_after_its_block(self, repository: Repository) -> None:
        with repository.unit_of_work() as uow:
            uow.save_subscription(make_subscription())
        with pytest.raises(RepositoryError):
            uow.get_subscription("sub_1")
        with pytest.raises(RepositoryError):
            uow.save_subscription(make_subscription("sub_2"))
        with pytest.raises(RepositoryError):
            uow.claim_event(make_event())
        with repository.unit_of_work() as fresh:
            assert fresh.get_subscription("sub_2") is None
            assert fresh.get_event("evt_1") is None

    def test_sequential_units_of_work_on_one_repository(self, repository: Repository) -> None:
        for index in range(20):
            with repository.unit_of_work() as uow:
                assert uow.claim_event(make_event(f"evt_{index:02d}")) is ClaimOutcome.CLAIMED
        assert len(_read(repository, lambda uow: uow.list_events(limit=50))) == 20

    # ------------------------------------------------------------------ event ledger

    def test_claiming_a_new_event_stores_it_as_processing(self, repository: Repository) -> None:
        record = make_event(livemode=True)
        assert _write(repository, lambda uow: uow.claim_event(record)) is ClaimOutcome.CLAIMED
        stored = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert stored == record  # every field kept; status PROCESSING, attempts 1
        assert stored.status is EventStatus.PROCESSING
        assert stored.attempts == 1
        assert stored.last_error is None
        assert stored.processed_at is None

    def test_claim_inserts_as_processing_whatever_status_the_record_carries(
        self, repository: Repository
    ) -> None:
        record = make_event(status=EventStatus.FAILED)
        assert _write(repository, lambda uow: uow.claim_event(record)) is ClaimOutcome.CLAIMED
        stored = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert stored is not None
        assert stored.status is EventStatus.PROCESSING

    @pytest.mark.parametrize(
        "final", [EventStatus.PROCESSED, EventStatus.IGNORED, EventStatus.STALE]
    )
    def test_a_claim_carrying_a_final_status_stores_it_at_once(
        self, repository: Repository, final: EventStatus
    ) -> None:
        done = T0 + timedelta(seconds=3)
        record = make_event(status=final, processed_at=done)
        assert _write(repository, lambda uow: uow.claim_event(record)) is ClaimOutcome.CLAIMED
        stored = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert stored == record  # status final, processed_at kept: no finish needed
        assert _write(repository, lambda uow: uow.claim_event(make_event())) is (
            ClaimOutcome.DUPLICATE
        )
        # without a processed_at, the time of receipt is the time it was finished
        other = make_event("evt_2", status=final)
        _write(repository, lambda uow: uow.claim_event(other))
        stored = _read(repository, lambda uow: uow.get_event("evt_2"))
        assert stored is not None
        assert (stored.status, stored.processed_at) == (final, T0)

    def test_a_final_status_claim_rolls_back_with_its_unit_of_work(
        self, repository: Repository
    ) -> None:
        record = make_event(status=EventStatus.PROCESSED, processed_at=T0)
        with pytest.raises(RuntimeError), repository.unit_of_work() as uow:
            assert uow.claim_event(record) is ClaimOutcome.CLAIMED
            raise RuntimeError("the handler failed")
        assert _read(repository, lambda uow: uow.get_event("evt_1")) is None
        _write(repository, lambda uow: uow.mark_event_failed(make_event(), "handler failed"))
        stored = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert stored is not None
        assert (stored.status, stored.attempts, stored.processed_at) == (
            EventStatus.FAILED,
            1,
            None,
        )

    def test_a_failed_event_reclaimed_with_a_final_status_is_finished_at_once(
        self, repository: Repository
    ) -> None:
        _write(repository, lambda uow: uow.mark_event_failed(make_event(), "db down"))
        done = T0 + timedelta(seconds=9)
        record = make_event(status=EventStatus.STALE, processed_at=done)
        assert _write(repository, lambda uow: uow.claim_event(record)) is ClaimOutcome.CLAIMED
        stored = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert stored is not None
        assert (stored.status, stored.attempts, stored.processed_at) == (
            EventStatus.STALE,
            2,
            done,
        )
        # and a plain reclaim of a failed one leaves processed_at unset
        _write(repository, lambda uow: uow.mark_event_failed(make_event("evt_2"), "db down"))
        _write(repository, lambda uow: uow.claim_event(make_event("evt_2")))
        again = _read(repository, lambda uow: uow.get_event("evt_2"))
        assert again is not None
        assert (again.status, again.processed_at) == (EventStatus.PROCESSING, None)

    def test_claiming_a_claimed_event_is_a_duplicate(self, repository: Repository) -> None:
        with repository.unit_of_work() as uow:
            assert uow.claim_event(make_event()) is ClaimOutcome.CLAIMED
            assert uow.claim_event(make_event()) is ClaimOutcome.DUPLICATE
        other = make_event(type="invoice.paid", payload=b"{}")
        assert _write(repository, lambda uow: uow.claim_event(other)) is ClaimOutcome.DUPLICATE
        stored = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert stored == make_event()

    @pytest.mark.parametrize(
        "final", [EventStatus.PROCESSED, EventStatus.IGNORED, EventStatus.STALE]
    )
    def test_a_finished_event_is_a_duplicate_and_cannot_fail(
        self, repository: Repository, final: EventStatus
    ) -> None:
        with repository.unit_of_work() as uow:
            uow.claim_event(make_event())
            uow.finish_event("evt_1", final, processed_at=T0 + timedelta(seconds=1))
        before = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert before is not None
        assert before.status is final
        assert _write(repository, lambda uow: uow.claim_event(make_event())) is (
            ClaimOutcome.DUPLICATE
        )
        assert _read(repository, lambda uow: uow.get_event("evt_1")) == before
        # a late failure report leaves it alone and returns the stored record
        returned = _write(repository, lambda uow: uow.mark_event_failed(make_event(), "late"))
        assert returned == before
        assert _read(repository, lambda uow: uow.get_event("evt_1")) == before

    def test_a_failed_event_is_claimed_again_with_one_more_attempt(
        self, repository: Repository
    ) -> None:
        _write(repository, lambda uow: uow.mark_event_failed(make_event(), "db down"))
        assert _write(repository, lambda uow: uow.claim_event(make_event())) is (
            ClaimOutcome.CLAIMED
        )
        stored = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert stored is not None
        assert stored.status is EventStatus.PROCESSING
        assert stored.attempts == 2
        # claimed and not finished: a concurrent redelivery is a duplicate
        assert _write(repository, lambda uow: uow.claim_event(make_event())) is (
            ClaimOutcome.DUPLICATE
        )

    def test_a_pending_event_is_claimed_with_one_more_attempt(self, repository: Repository) -> None:
        with repository.unit_of_work() as uow:
            uow.claim_event(make_event())
            uow.finish_event("evt_1", EventStatus.PENDING, processed_at=T0)
        assert _write(repository, lambda uow: uow.claim_event(make_event())) is (
            ClaimOutcome.CLAIMED
        )
        stored = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert stored is not None
        assert (stored.status, stored.attempts) == (EventStatus.PROCESSING, 2)

    def test_the_failure_and_redelivery_cycle(self, repository: Repository) -> None:
        record = make_event()
        # 1st delivery: the handler fails, the unit of work rolls back, the claim with it
        with pytest.raises(_Boom), repository.unit_of_work() as uow:
            assert uow.claim_event(record) is ClaimOutcome.CLAIMED
            raise _Boom
        assert _read(repository, lambda uow: uow.get_event("evt_1")) is None
        failed = _write(repository, lambda uow: uow.mark_event_failed(record, "handler: boom"))
        assert (failed.status, failed.attempts, failed.last_error) == (
            EventStatus.FAILED,
            1,
            "handler: boom",
        )
        # 2nd delivery fails again
        with pytest.raises(_Boom), repository.unit_of_work() as uow:
            assert uow.claim_event(record) is ClaimOutcome.CLAIMED
            raise _Boom
        failed = _write(repository, lambda uow: uow.mark_event_failed(record, "again"))
        assert (failed.status, failed.attempts, failed.last_error) == (
            EventStatus.FAILED,
            2,
            "again",
        )
        # 3rd delivery succeeds
        done_at = T0 + timedelta(minutes=3)
        with repository.unit_of_work() as uow:
            assert uow.claim_event(record) is ClaimOutcome.CLAIMED
            uow.finish_event("evt_1", EventStatus.PROCESSED, processed_at=done_at)
        stored = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert stored is not None
        assert (stored.status, stored.attempts, stored.processed_at) == (
            EventStatus.PROCESSED,
            3,
            done_at,
        )
        assert stored.payload == record.payload

    def test_mark_failed_inserts_an_absent_event(self, repository: Repository) -> None:
        record = make_event(attempts=7, status=EventStatus.PROCESSING)
        returned = _write(repository, lambda uow: uow.mark_event_failed(record, "bad thing"))
        stored = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert returned == stored
        assert stored == record.model_copy(
            update={"status": EventStatus.FAILED, "attempts": 1, "last_error": "bad thing"}
        )

    @pytest.mark.parametrize("start", ["processing", "failed"])
    def test_mark_failed_counts_an_attempt_on_a_live_event(
        self, repository: Repository, start: str
    ) -> None:
        with repository.unit_of_work() as uow:
            if start == "failed":
                uow.mark_event_failed(make_event(), "first")
            else:
                uow.claim_event(make_event())
        returned = _write(repository, lambda uow: uow.mark_event_failed(make_event(), "second"))
        stored = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert returned == stored
        assert stored is not None
        assert (stored.status, stored.attempts, stored.last_error) == (
            EventStatus.FAILED,
            2,
            "second",
        )

    def test_finish_event_sets_status_and_processed_at(self, repository: Repository) -> None:
        _write(repository, lambda uow: uow.claim_event(make_event()))
        when = datetime(2026, 3, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
        _write(
            repository,
            lambda uow: uow.finish_event("evt_1", EventStatus.IGNORED, processed_at=when),
        )
        stored = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert stored is not None
        assert stored.status is EventStatus.IGNORED
        assert stored.processed_at == when
        assert stored.processed_at is not None and stored.processed_at.utcoffset() is not None
        assert stored.attempts == 1

    def test_finish_event_rejects_bad_input_and_changes_nothing(
        self, repository: Repository
    ) -> None:
        _write(repository, lambda uow: uow.claim_event(make_event()))
        with pytest.raises(RepositoryError), repository.unit_of_work() as uow:
            uow.finish_event("evt_unknown", EventStatus.PROCESSED, processed_at=T0)
        with pytest.raises(RepositoryError), repository.unit_of_work() as uow:
            uow.finish_event(
                "evt_1", EventStatus.PROCESSED, processed_at=datetime(2026, 3, 1, 12, 0)
            )
        with repository.unit_of_work() as uow:
            assert uow.get_event("evt_unknown") is None
            assert uow.get_event("evt_1") == make_event()

    def test_get_event_of_unknown_id_is_none(self, repository: Repository) -> None:
        assert _read(repository, lambda uow: uow.get_event("evt_nope")) is None

    def test_payload_bytes_round_trip_exactly(self, repository: Repository) -> None:
        payloads = {
            "evt_bin": bytes(range(256)) * 3,
            "evt_json": '{"name": "Zoë ☕ 名前 🎉", "n": 1e3}\r\n'.encode(),
            "evt_empty": b"",
            "evt_big": b'{"data": "' + b"x" * 200_000 + b'"}',
        }
        with repository.unit_of_work() as uow:
            for event_id, payload in payloads.items():
                uow.claim_event(make_event(event_id, payload=payload))
        with repository.unit_of_work() as uow:
            for event_id, payload in payloads.items():
                stored = uow.get_event(event_id)
                assert stored is not None
                assert stored.payload == payload
                assert type(stored.payload) is bytes

    def test_list_events_oldest_received_first(self, repository: Repository) -> None:
        offsets = {"evt_c": 30, "evt_a": 10, "evt_d": 40, "evt_b": 20}
        with repository.unit_of_work() as uow:
            for event_id, seconds in offsets.items():
                uow.claim_event(make_event(event_id, received_at=T0 + timedelta(seconds=seconds)))
        listed = _read(repository, lambda uow: uow.list_events())
        assert [e.id for e in listed] == ["evt_a", "evt_b", "evt_c", "evt_d"]
        assert listed[0] == make_event("evt_a", received_at=T0 + timedelta(seconds=10))

    def test_list_events_orders_within_a_second_and_by_id_on_ties(
        self, repository: Repository
    ) -> None:
        with repository.unit_of_work() as uow:
            uow.claim_event(make_event("evt_late", received_at=T0 + timedelta(microseconds=2)))
            uow.claim_event(make_event("evt_z", received_at=T0 + timedelta(microseconds=1)))
            uow.claim_event(make_event("evt_y", received_at=T0 + timedelta(microseconds=1)))
            uow.claim_event(make_event("evt_first", received_at=T0))
        listed = _read(repository, lambda uow: uow.list_events())
        assert [e.id for e in listed] == ["evt_first", "evt_y", "evt_z", "evt_late"]

    def test_list_events_filters_by_status_and_limits(self, repository: Repository) -> None:
        with repository.unit_of_work() as uow:
            for index in range(6):
                uow.claim_event(
                    make_event(f"evt_{index}", received_at=T0 + timedelta(seconds=index))
                )
            for index in (1, 3, 4):
                uow.finish_event(f"evt_{index}", EventStatus.PROCESSED, processed_at=T0)
        with repository.unit_of_work() as uow:
            assert _ids(uow.list_events(status=EventStatus.PROCESSED)) == [
                "evt_1",
                "evt_3",
                "evt_4",
            ]
            assert _ids(uow.list_events(status=EventStatus.PROCESSING)) == [
                "evt_0",
                "evt_2",
                "evt_5",
            ]
            assert uow.list_events(status=EventStatus.FAILED) == []
            assert _ids(uow.list_events(limit=2)) == ["evt_0", "evt_1"]
            assert _ids(uow.list_events(status=EventStatus.PROCESSED, limit=2)) == [
                "evt_1",
                "evt_3",
            ]
            assert uow.list_events(limit=0) == []
            assert len(uow.list_events()) == 6

    def test_list_events_defaults_to_one_hundred(self, repository: Repository) -> None:
        with repository.unit_of_work() as uow:
            for index in range(105):
                uow.claim_event(
                    make_event(f"evt_{index:03d}", received_at=T0 + timedelta(seconds=index))
                )
        listed = _read(repository, lambda uow: uow.list_events())
        assert [e.id for e in listed] == [f"evt_{index:03d}" for index in range(100)]

    def test_list_events_rejects_a_negative_limit(self, repository: Repository) -> None:
        with pytest.raises(RepositoryError), repository.unit_of_work() as uow:
            uow.list_events(limit=-1)

    # ------------------------------------------------------------------ subscriptions

    def test_save_inserts_a_new_subscription(self, repository: Repository) -> None:
        subscription = make_subscription(user_id="user_1", plan_key="pro")
        assert _write(repository, lambda uow: uow.save_subscription(subscription)) is (
            SaveOutcome.WRITTEN
        )
        assert _read(repository, lambda uow: uow.get_subscription("sub_1")) == subscription

    def test_get_subscription_of_unknown_id_is_none(self, repository: Repository) -> None:
        assert _read(repository, lambda uow: uow.get_subscription("sub_nope")) is None

    @pytest.mark.parametrize(
        ("stored_status", "new_status", "watermark", "allow_tie", "expected", "stored_watermark"),
        [
            *[(*case, 100) for case in _WATERMARK_AND_TERMINAL_RULES],
            # stored watermark 0: fetched outside any event, its order is unknown: a tie
            ("active", "past_due", 100, False, "tie", 0),
            ("active", "past_due", 100, True, "written", 0),
            ("active", "past_due", 0, False, "tie", 0),
            ("active", "past_due", 0, True, "written", 0),
            ("active", "canceled", 100, False, "tie", 0),
            ("canceled", "active", 100, True, "stale", 0),  # the terminal rule comes first
        ],
    )
    def test_save_applies_the_watermark_and_terminal_rules(
        self,
        repository: Repository,
        stored_status: str,
        new_status: str,
        watermark: int,
        allow_tie: bool,
        expected: str,
        stored_watermark: int,
    ) -> None:
        first = make_subscription(
            watermark=stored_watermark, quantity=1, status=SubscriptionStatus(stored_status)
        )
        second = make_subscription(
            watermark=watermark, quantity=2, status=SubscriptionStatus(new_status)
        )
        _write(repository, lambda uow: uow.save_subscription(first))
        outcome = _write(repository, lambda uow: uow.save_subscription(second, allow_tie=allow_tie))
        assert outcome is SaveOutcome(expected)
        stored = _read(repository, lambda uow: uow.get_subscription("sub_1"))
        assert stored == (second if outcome is SaveOutcome.WRITTEN else first)

    def test_a_write_never_erases_user_id_or_plan_key(self, repository: Repository) -> None:
        first = make_subscription(watermark=100, user_id="user_1", plan_key="pro")
        _write(repository, lambda uow: uow.save_subscription(first))
        anonymous = make_subscription(
            watermark=110, status=SubscriptionStatus.PAST_DUE, user_id=None, plan_key=None
        )
        assert _write(repository, lambda uow: uow.save_subscription(anonymous)) is (
            SaveOutcome.WRITTEN
        )
        stored = _read(repository, lambda uow: uow.get_subscription("sub_1"))
        assert stored == anonymous.model_copy(update={"user_id": "user_1", "plan_key": "pro"})
        # a known new value does replace them
        moved = make_subscription(watermark=120, user_id="user_2", plan_key="team")
        _write(repository, lambda uow: uow.save_subscription(moved))
        assert _read(repository, lambda uow: uow.get_subscription("sub_1")) == moved
        # a tie written with allow_tie keeps them too
        tie = make_subscription(watermark=120, quantity=3)
        assert _write(repository, lambda uow: uow.save_subscription(tie, allow_tie=True)) is (
            SaveOutcome.WRITTEN
        )
        stored = _read(repository, lambda uow: uow.get_subscription("sub_1"))
        assert stored is not None
        assert (stored.user_id, stored.plan_key, stored.quantity) == ("user_2", "team", 3)

    def test_a_rejected_write_does_not_fill_in_user_id(self, repository: Repository) -> None:
        first = make_subscription(watermark=100)
        _write(repository, lambda uow: uow.save_subscription(first))
        older = make_subscription(watermark=90, user_id="user_1", plan_key="pro")
        assert _write(repository, lambda uow: uow.save_subscription(older)) is SaveOutcome.STALE
        assert _read(repository, lambda uow: uow.get_subscription("sub_1")) == first
        assert _read(repository, lambda uow: uow.subscriptions_for_user("user_1")) == []

    @pytest.mark.parametrize("status", list(SubscriptionStatus))
    def test_every_status_and_field_round_trips(
        self, repository: Repository, status: SubscriptionStatus
    ) -> None:
        plus_two = timezone(timedelta(hours=2))
        subscription = Subscription(
            id="sub_full",
            customer_id="cus_full",
            user_id="utilisateur-é",
            status=status,
            price_id="price_pro_monthly",
            plan_key="pro",
            quantity=5,
            current_period_start=datetime(2026, 3, 1, 14, 0, tzinfo=plus_two),
            current_period_end=datetime(2026, 4, 1, 12, 0, 0, 500, tzinfo=timezone.utc),
            cancel_at_period_end=True,
            cancel_at=datetime(2026, 4, 1, 12, 0, tzinfo=timezone.utc),
            canceled_at=datetime(2026, 3, 2, 8, 30, tzinfo=timezone(timedelta(hours=-5))),
            ended_at=datetime(2026, 4, 1, 12, 0, 1, tzinfo=timezone.utc),
            trial_start=datetime(2026, 2, 15, tzinfo=timezone.utc),
            trial_end=datetime(2026, 3, 1, tzinfo=timezone.utc),
            created=datetime(2026, 2, 15, 0, 0, 0, 999999, tzinfo=timezone.utc),
            livemode=True,
            metadata={"名前": "Zoë ☕", "emoji": "🎉", "empty": "", "quote": "a'b\"c"},
            watermark=4_102_444_800,  # 2100-01-01: beyond 32-bit
        )
        _write(repository, lambda uow: uow.save_subscription(subscription))
        stored = _read(repository, lambda uow: uow.get_subscription("sub_full"))
        assert stored == subscription
        assert stored is not None
        assert stored.status is status
        assert dict(stored.metadata) == dict(subscription.metadata)
        for name in ("current_period_start", "canceled_at", "created", "trial_end"):
            value = getattr(stored, name)
            assert value.utcoffset() is not None, name
            assert value == getattr(subscription, name), name

    def test_defaults_round_trip(self, repository: Repository) -> None:
        bare = make_subscription()  # every optional field at its default
        _write(repository, lambda uow: uow.save_subscription(bare))
        stored = _read(repository, lambda uow: uow.get_subscription("sub_1"))
        assert stored == bare
        assert stored is not None
        assert stored.metadata == {}

    def test_subscriptions_for_user_via_user_id_and_via_link(self, repository: Repository) -> None:
        with repository.unit_of_work() as uow:
            uow.link_customer(make_link("user_1", "cus_1"))
            uow.link_customer(make_link("user_2", "cus_2"))
            # tied by its user_id only (customer not linked)
            uow.save_subscription(
                make_subscription("sub_own", customer_id="cus_x", user_id="user_1")
            )
            # tied by the linked customer only
            uow.save_subscription(make_subscription("sub_link", customer_id="cus_1"))
            # tied both ways: listed once
            uow.save_subscription(
                make_subscription("sub_both", customer_id="cus_1", user_id="user_1")
            )
            # somebody else's
            uow.save_subscription(make_subscription("sub_other", customer_id="cus_2"))
            uow.save_subscription(
                make_subscription("sub_other2", customer_id="cus_y", user_id="user_2")
            )
        with repository.unit_of_work() as uow:
            mine = uow.subscriptions_for_user("user_1")
            assert sorted(s.id for s in mine) == ["sub_both", "sub_link", "sub_own"]
            theirs = uow.subscriptions_for_user("user_2")
            assert sorted(s.id for s in theirs) == ["sub_other", "sub_other2"]
            assert uow.subscriptions_for_user("user_nobody") == []
            assert mine[[s.id for s in mine].index("sub_link")] == make_subscription(
                "sub_link", customer_id="cus_1"
            )

    def test_a_link_made_later_finds_earlier_subscriptions(self, repository: Repository) -> None:
        _write(repository, lambda uow: uow.save_subscription(make_subscription("sub_1")))
        assert _read(repository, lambda uow: uow.subscriptions_for_user("user_1")) == []
        _write(repository, lambda uow: uow.link_customer(make_link("user_1", "cus_1")))
        found = _read(repository, lambda uow: uow.subscriptions_for_user("user_1"))
        assert [s.id for s in found] == ["sub_1"]

    def test_subscriptions_for_user_newest_first(self, repository: Repository) -> None:
        created = {
            "sub_b": T0 + timedelta(days=2),
            "sub_a": T0 + timedelta(days=5),
            "sub_c": T0 + timedelta(days=2),  # same instant as sub_b: larger id first
            "sub_d": T0 - timedelta(days=30),
            "sub_e": T0 + timedelta(days=2, microseconds=1),
        }
        with repository.unit_of_work() as uow:
            uow.link_customer(make_link("user_1", "cus_1"))
            for index, (sub_id, when) in enumerate(created.items()):
                user_id = "user_1" if index % 2 else None
                uow.save_subscription(make_subscription(sub_id, created=when, user_id=user_id))
        found = _read(repository, lambda uow: uow.subscriptions_for_user("user_1"))
        assert [s.id for s in found] == ["sub_a", "sub_e", "sub_c", "sub_b", "sub_d"]

    def test_subscriptions_follow_a_change_of_user_id(self, repository: Repository) -> None:
        _write(
            repository,
            lambda uow: uow.save_subscription(
                make_subscription(watermark=1, customer_id="cus_x", user_id="user_1")
            ),
        )
        _write(
            repository,
            lambda uow: uow.save_subscription(
                make_subscription(watermark=2, customer_id="cus_x", user_id="user_2")
            ),
        )
        with repository.unit_of_work() as uow:
            assert uow.subscriptions_for_user("user_1") == []
            assert [s.id for s in uow.subscriptions_for_user("user_2")] == ["sub_1"]

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(steps=_save_sequences)
    def test_random_save_sequences_end_in_the_newest_allowed_state(
        self, repository: Repository, steps: list[tuple[int, SubscriptionStatus, bool]]
    ) -> None:
        # the fixture is shared by all examples: each example uses its own subscription id
        sub_id = f"sub_{uuid.uuid4().hex}"
        saves = [
            (
                make_subscription(sub_id, watermark=watermark, status=status, quantity=index + 1),
                allow_tie,
            )
            for index, (watermark, status, allow_tie) in enumerate(steps)
        ]
        outcomes = []
        for subscription, allow_tie in saves:
            with repository.unit_of_work() as uow:
                outcomes.append(uow.save_subscription(subscription, allow_tie=allow_tie))
        expected = _fold_saves(saves)
        assert outcomes == expected
        written = [i for i, outcome in enumerate(expected) if outcome is SaveOutcome.WRITTEN]
        stored = _read(repository, lambda uow: uow.get_subscription(sub_id))
        assert stored == saves[written[-1]][0]
        # (a first state with watermark 0 keeps its place until a save allows the tie)
        if steps[0][0] != 0 and not any(status in TERMINAL_STATUSES for _, status, _ in steps):
            assert stored is not None
            assert stored.watermark == max(watermark for watermark, _, _ in steps)

    # ------------------------------------------------------------------ customers

    def test_link_customer_stores_both_directions(self, repository: Repository) -> None:
        link = make_link("user_1", "cus_1", email="zoë@example.com", watermark=5)
        assert _write(repository, lambda uow: uow.link_customer(link)) == link
        with repository.unit_of_work() as uow:
            assert uow.customer_for_user("user_1") == link
            assert uow.customer_by_id("cus_1") == link
            assert uow.customer_for_user("cus_1") is None
            assert uow.customer_by_id("user_1") is None
            assert uow.customer_for_user("user_2") is None

    def test_linking_the_same_pair_again_returns_the_stored_link(
        self, repository: Repository
    ) -> None:
        first = make_link(email="first@example.com", watermark=3)
        _write(repository, lambda uow: uow.link_customer(first))
        again = make_link(email="second@example.com", watermark=9)
        assert _write(repository, lambda uow: uow.link_customer(again)) == first
        with repository.unit_of_work() as uow:
            assert uow.customer_for_user("user_1") == first
            assert uow.customer_by_id("cus_1") == first

    @pytest.mark.parametrize(
        ("user_id", "customer_id"),
        [("user_1", "cus_2"), ("user_2", "cus_1")],
        ids=["user-taken", "customer-taken"],
    )
    def test_linking_either_side_to_another_party_conflicts(
        self, repository: Repository, user_id: str, customer_id: str
    ) -> None:
        _write(repository, lambda uow: uow.link_customer(make_link("user_1", "cus_1")))
        with pytest.raises(ConflictError), repository.unit_of_work() as uow:
            uow.link_customer(make_link(user_id, customer_id))
        with repository.unit_of_work() as uow:
            assert uow.customer_for_user("user_1") == make_link("user_1", "cus_1")
            assert uow.customer_by_id("cus_1") == make_link("user_1", "cus_1")
            assert uow.customer_for_user("user_2") is None
            assert uow.customer_by_id("cus_2") is None

    @pytest.mark.parametrize(
        ("watermark", "expected"),
        [(20, SaveOutcome.WRITTEN), (10, SaveOutcome.WRITTEN), (9, SaveOutcome.STALE)],
    )
    def test_update_customer_applies_the_watermark_rule(
        self, repository: Repository, watermark: int, expected: SaveOutcome
    ) -> None:
        stored = make_link(email="old@example.com", watermark=10)
        _write(repository, lambda uow: uow.link_customer(stored))
        update = make_link(email="new@example.com", deleted=True, watermark=watermark)
        assert _write(repository, lambda uow: uow.update_customer(update)) is expected
        with repository.unit_of_work() as uow:
            want = update if expected is SaveOutcome.WRITTEN else stored
            assert uow.customer_by_id("cus_1") == want
            assert uow.customer_for_user("user_1") == want

    def test_update_customer_never_changes_the_user(self, repository: Repository) -> None:
        _write(repository, lambda uow: uow.link_customer(make_link("user_1", "cus_1")))
        update = make_link("user_intruder", "cus_1", email=None, watermark=30)
        assert _write(repository, lambda uow: uow.update_customer(update)) is SaveOutcome.WRITTEN
        with repository.unit_of_work() as uow:
            assert uow.customer_by_id("cus_1") == make_link("user_1", "cus_1", watermark=30)
            assert uow.customer_for_user("user_intruder") is None

    def test_update_customer_of_an_unlinked_customer_is_stale(self, repository: Repository) -> None:
        update = make_link("user_1", "cus_unknown", email="a@example.com", watermark=50)
        assert _write(repository, lambda uow: uow.update_customer(update)) is SaveOutcome.STALE
        with repository.unit_of_work() as uow:
            assert uow.customer_by_id("cus_unknown") is None
            assert uow.customer_for_user("user_1") is None

    # ------------------------------------------------------------------ customer history

    def _deleted_link(self, repository: Repository) -> CustomerLink:
        _write(repository, lambda uow: uow.link_customer(make_link("user_1", "cus_old")))
        dead = make_link("user_1", "cus_old", deleted=True, watermark=40)
        assert _write(repository, lambda uow: uow.update_customer(dead)) is SaveOutcome.WRITTEN
        return dead

    def test_relink_replaces_a_deleted_link_and_keeps_it_as_history(
        self, repository: Repository
    ) -> None:
        dead = self._deleted_link(repository)
        _write(
            repository,
            lambda uow: uow.save_subscription(
                make_subscription("sub_old", customer_id="cus_old", user_id=None)
            ),
        )
        fresh = make_link("user_1", "cus_new", email="new@example.com")
        stored = _write(repository, lambda uow: uow.relink_customer(fresh, replacing="cus_old"))
        assert stored == fresh
        _write(
            repository,
            lambda uow: uow.save_subscription(
                make_subscription("sub_new", customer_id="cus_new", user_id=None)
            ),
        )
        with repository.unit_of_work() as uow:
            assert uow.customer_for_user("user_1") == fresh
            assert uow.customer_by_id("cus_new") == fresh
            assert uow.customer_by_id("cus_old") == dead  # history: same user, deleted
            found = {sub.id for sub in uow.subscriptions_for_user("user_1")}
        assert found == {"sub_old", "sub_new"}

    def test_relink_twice_keeps_every_old_link(self, repository: Repository) -> None:
        self._deleted_link(repository)
        _write(
            repository,
            lambda uow: uow.relink_customer(make_link("user_1", "cus_mid"), replacing="cus_old"),
        )
        dead_mid = make_link("user_1", "cus_mid", deleted=True, watermark=50)
        _write(repository, lambda uow: uow.update_customer(dead_mid))
        last = make_link("user_1", "cus_last")
        assert (
            _write(repository, lambda uow: uow.relink_customer(last, replacing="cus_mid")) == last
        )
        with repository.unit_of_work() as uow:
            assert uow.customer_for_user("user_1") == last
            assert uow.customer_by_id("cus_mid") == dead_mid
            old = uow.customer_by_id("cus_old")
            assert old is not None and (old.user_id, old.deleted) == ("user_1", True)

    def test_relink_of_a_live_link_is_refused(self, repository: Repository) -> None:
        live = make_link("user_1", "cus_old")
        _write(repository, lambda uow: uow.link_customer(live))
        with pytest.raises(ConflictError), repository.unit_of_work() as uow:
            uow.relink_customer(make_link("user_1", "cus_new"), replacing="cus_old")
        with repository.unit_of_work() as uow:
            assert uow.customer_for_user("user_1") == live
            assert uow.customer_by_id("cus_new") is None

    def test_relink_after_another_writer_returns_the_current_link(
        self, repository: Repository
    ) -> None:
        self._deleted_link(repository)
        winner = make_link("user_1", "cus_winner")
        _write(repository, lambda uow: uow.relink_customer(winner, replacing="cus_old"))
        late = make_link("user_1", "cus_late")
        assert _write(repository, lambda uow: uow.relink_customer(late, replacing="cus_old")) == (
            winner
        )
        with repository.unit_of_work() as uow:
            assert uow.customer_for_user("user_1") == winner
            assert uow.customer_by_id("cus_late") is None

    def test_relink_to_a_customer_of_another_user_conflicts(self, repository: Repository) -> None:
        self._deleted_link(repository)
        _write(repository, lambda uow: uow.link_customer(make_link("user_2", "cus_2")))
        with pytest.raises(ConflictError), repository.unit_of_work() as uow:
            uow.relink_customer(make_link("user_1", "cus_2"), replacing="cus_old")
        with repository.unit_of_work() as uow:
            current = uow.customer_for_user("user_1")
            assert current is not None and current.customer_id == "cus_old"

    def test_relink_of_a_user_without_that_link_conflicts(self, repository: Repository) -> None:
        with pytest.raises(ConflictError), repository.unit_of_work() as uow:
            uow.relink_customer(make_link("user_1", "cus_new"), replacing="cus_none")
        with repository.unit_of_work() as uow:
            assert uow.customer_for_user("user_1") is None

    def test_an_old_link_still_takes_updates_without_touching_the_current_one(
        self, repository: Repository
    ) -> None:
        self._deleted_link(repository)
        fresh = make_link("user_1", "cus_new")
        _write(repository, lambda uow: uow.relink_customer(fresh, replacing="cus_old"))
        late = make_link("user_1", "cus_old", email="late@example.com", deleted=True, watermark=60)
        assert _write(repository, lambda uow: uow.update_customer(late)) is SaveOutcome.WRITTEN
        with repository.unit_of_work() as uow:
            assert uow.customer_by_id("cus_old") == late
            assert uow.customer_for_user("user_1") == fresh

    # ------------------------------------------------------------------ checkout sessions

    def test_checkout_save_get_and_replace(self, repository: Repository) -> None:
        record = make_checkout(
            url="https://checkout.stripe.com/c/pay/cs_1#fragment",
            expires_at=T0 + timedelta(hours=24),
            customer_id="cus_1",
            created_at=datetime(2026, 3, 1, 12, 0, 0, 654321, tzinfo=timezone.utc),
        )
        _write(repository, lambda uow: uow.save_checkout(record))
        assert _read(repository, lambda uow: uow.get_checkout("cs_1")) == record
        done = record.model_copy(
            update={"status": "complete", "payment_status": "paid", "subscription_id": "sub_1"}
        )
        _write(repository, lambda uow: uow.save_checkout(done))
        assert _read(repository, lambda uow: uow.get_checkout("cs_1")) == done
        assert _read(repository, lambda uow: uow.get_checkout("cs_nope")) is None

    def test_one_time_checkout_round_trips(self, repository: Repository) -> None:
        record = make_checkout(
            "cs_pay",
            mode="payment",
            interval=Interval.ONE_TIME,
            plan_key="lifetime",
            payment_status="no_payment_required",
            user_id="ユーザー",
            request_key="",
        )
        _write(repository, lambda uow: uow.save_checkout(record))
        assert _read(repository, lambda uow: uow.get_checkout("cs_pay")) == record

    def test_find_open_checkout_picks_the_newest_matching_open_session(
        self, repository: Repository
    ) -> None:
        cutoff = T0
        with repository.unit_of_work() as uow:
            uow.save_checkout(make_checkout("cs_old", created_at=cutoff + timedelta(minutes=1)))
            uow.save_checkout(make_checkout("cs_new", created_at=cutoff + timedelta(minutes=9)))
            uow.save_checkout(make_checkout("cs_mid", created_at=cutoff + timedelta(minutes=5)))
            # newer but not eligible
            uow.save_checkout(
                make_checkout("cs_done", status="complete", created_at=cutoff + timedelta(hours=1))
            )
            uow.save_checkout(
                make_checkout("cs_exp", status="expired", created_at=cutoff + timedelta(hours=1))
            )
            uow.save_checkout(
                make_checkout("cs_user2", user_id="user_2", created_at=cutoff + timedelta(hours=1))
            )
            uow.save_checkout(
                make_checkout("cs_rk2", request_key="rk_2", created_at=cutoff + timedelta(hours=1))
            )
        found = _read(
            repository,
            lambda uow: uow.find_open_checkout(
                user_id="user_1", request_key="rk_1", created_after=cutoff
            ),
        )
        assert found == make_checkout("cs_new", created_at=cutoff + timedelta(minutes=9))

    def test_find_open_checkout_respects_created_after_strictly(
        self, repository: Repository
    ) -> None:
        _write(repository, lambda uow: uow.save_checkout(make_checkout(created_at=T0)))

        def find(after: datetime) -> CheckoutRecord | None:
            return _read(
                repository,
                lambda uow: uow.find_open_checkout(
                    user_id="user_1", request_key="rk_1", created_after=after
                ),
            )

        assert find(T0 - timedelta(microseconds=1)) == make_checkout(created_at=T0)
        assert find(T0) is None
        assert find(T0 + timedelta(seconds=1)) is None
        # the same instant in another zone
        assert find((T0 - timedelta(seconds=1)).astimezone(timezone(timedelta(hours=9)))) == (
            make_checkout(created_at=T0)
        )

    def test_find_open_checkout_breaks_ties_by_session_id(self, repository: Repository) -> None:
        with repository.unit_of_work() as uow:
            uow.save_checkout(make_checkout("cs_b"))
            uow.save_checkout(make_checkout("cs_c"))
            uow.save_checkout(make_checkout("cs_a"))
        found = _read(
            repository,
            lambda uow: uow.find_open_checkout(
                user_id="user_1", request_key="rk_1", created_after=T0 - timedelta(hours=1)
            ),
        )
        assert found is not None
        assert found.session_id == "cs_c"

    def test_find_open_checkout_follows_replaced_records(self, repository: Repository) -> None:
        after = T0 - timedelta(hours=1)

        def find(request_key: str) -> CheckoutRecord | None:
            return _read(
                repository,
                lambda uow: uow.find_open_checkout(
                    user_id="user_1", request_key=request_key, created_after=after
                ),
            )

        _write(repository, lambda uow: uow.save_checkout(make_checkout()))
        assert find("rk_1") == make_checkout()
        _write(repository, lambda uow: uow.save_checkout(make_checkout(status="complete")))
        assert find("rk_1") is None
        _write(repository, lambda uow: uow.save_checkout(make_checkout(request_key="rk_9")))
        assert find("rk_1") is None
        assert find("rk_9") == make_checkout(request_key="rk_9")

    def test_find_open_checkout_rejects_a_naive_datetime(self, repository: Repository) -> None:
        _write(repository, lambda uow: uow.save_checkout(make_checkout()))
        with pytest.raises(RepositoryError), repository.unit_of_work() as uow:
            uow.find_open_checkout(
                user_id="user_1", request_key="rk_1", created_after=datetime(2026, 1, 1)
            )
        assert _read(repository, lambda uow: uow.get_checkout("cs_1")) == make_checkout()

    def test_open_checkouts_for_user_lists_every_open_one_newest_first(
        self, repository: Repository
    ) -> None:
        with repository.unit_of_work() as uow:
            uow.save_checkout(make_checkout("cs_a", created_at=T0 + timedelta(minutes=1)))
            uow.save_checkout(
                make_checkout("cs_b", request_key="rk_2", created_at=T0 + timedelta(minutes=5))
            )
            uow.save_checkout(
                make_checkout("cs_c", request_key="rk_3", created_at=T0 + timedelta(minutes=5))
            )
            uow.save_checkout(
                make_checkout(
                    "cs_pay",
                    request_key="rk_4",
                    mode="payment",
                    interval=Interval.ONE_TIME,
                    plan_key="lifetime",
                    created_at=T0 + timedelta(minutes=2),
                )
            )
            # not eligible: finished, another user's, or not after the cutoff
            uow.save_checkout(make_checkout("cs_done", status="complete", created_at=T0))
            uow.save_checkout(make_checkout("cs_exp", status="expired", created_at=T0))
            uow.save_checkout(make_checkout("cs_other", user_id="user_2"))
            uow.save_checkout(make_checkout("cs_old", created_at=T0 - timedelta(minutes=1)))
        found = _read(
            repository,
            lambda uow: uow.open_checkouts_for_user(
                user_id="user_1", created_after=T0 - timedelta(microseconds=1)
            ),
        )
        assert [record.session_id for record in found] == ["cs_c", "cs_b", "cs_pay", "cs_a"]
        assert found[0] == make_checkout(
            "cs_c", request_key="rk_3", created_at=T0 + timedelta(minutes=5)
        )

    def test_open_checkouts_for_user_follows_replaced_records(self, repository: Repository) -> None:
        def find(user_id: str) -> list[str]:
            return [
                record.session_id
                for record in _read(
                    repository,
                    lambda uow: uow.open_checkouts_for_user(
                        user_id=user_id, created_after=T0 - timedelta(hours=1)
                    ),
                )
            ]

        assert find("user_1") == []
        _write(repository, lambda uow: uow.save_checkout(make_checkout()))
        assert find("user_1") == ["cs_1"]
        _write(repository, lambda uow: uow.save_checkout(make_checkout(status="expired")))
        assert find("user_1") == []
        _write(repository, lambda uow: uow.save_checkout(make_checkout(user_id="user_2")))
        assert (find("user_1"), find("user_2")) == ([], ["cs_1"])

    def test_open_checkouts_for_user_rejects_a_naive_datetime(self, repository: Repository) -> None:
        with pytest.raises(RepositoryError), repository.unit_of_work() as uow:
            uow.open_checkouts_for_user(user_id="user_1", created_after=datetime(2026, 1, 1))

    # ------------------------------------------------------------------ concurrency

    @pytest.mark.parametrize(("failed_before", "attempts"), [(False, 1), (True, 2)])
    def test_concurrent_claims_of_one_event_claim_it_once(
        self, repository: Repository, failed_before: bool, attempts: int
    ) -> None:
        if failed_before:  # a redelivery racing with itself
            _write(repository, lambda uow: uow.mark_event_failed(make_event(), "first"))
        results = run_in_threads(repository, lambda uow, _: uow.claim_event(make_event()))
        assert results.count(ClaimOutcome.CLAIMED) == 1, results
        assert results.count(ClaimOutcome.DUPLICATE) == THREADS - 1, results
        stored = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert stored is not None
        assert (stored.status, stored.attempts) == (EventStatus.PROCESSING, attempts)

    @pytest.mark.parametrize("shared", ["user", "customer"])
    def test_concurrent_links_store_exactly_one(self, repository: Repository, shared: str) -> None:
        # every thread links the same user (or customer) to a different customer (or user)
        def link(index: int) -> CustomerLink:
            if shared == "user":
                return make_link("user_1", f"cus_{index}")
            return make_link(f"user_{index}", "cus_1")

        results = run_in_threads(repository, lambda uow, i: uow.link_customer(link(i)))
        winners = [r for r in results if isinstance(r, CustomerLink)]
        assert len(winners) == 1, results
        assert all(isinstance(r, (CustomerLink, ConflictError)) for r in results), results
        winner = winners[0]
        with repository.unit_of_work() as uow:
            if shared == "user":
                assert uow.customer_for_user("user_1") == winner
                others = [uow.customer_by_id(f"cus_{i}") for i in range(THREADS)]
            else:
                assert uow.customer_by_id("cus_1") == winner
                others = [uow.customer_for_user(f"user_{i}") for i in range(THREADS)]
        assert [found for found in others if found is not None] == [winner]

    def test_concurrent_saves_of_one_subscription_keep_the_highest_watermark(
        self, repository: Repository
    ) -> None:
        # a permutation of 100..107, so the highest watermark is not simply the last thread
        watermarks = [100 + (i * 5) % THREADS for i in range(THREADS)]

        def save(uow: UnitOfWork, index: int) -> SaveOutcome:
            return uow.save_subscription(
                make_subscription(watermark=watermarks[index], quantity=watermarks[index])
            )

        results = run_in_threads(repository, save)
        assert all(r in (SaveOutcome.WRITTEN, SaveOutcome.STALE) for r in results), results
        assert results[watermarks.index(max(watermarks))] is SaveOutcome.WRITTEN
        stored = _read(repository, lambda uow: uow.get_subscription("sub_1"))
        top = max(watermarks)
        assert stored == make_subscription(watermark=top, quantity=top)

    # ------------------------------------------------------------------ rules of use

    def test_units_of_work_of_one_repository_do_not_nest_on_one_thread(
        self, repository: Repository
    ) -> None:
        with repository.unit_of_work() as outer:
            outer.save_subscription(make_subscription("sub_outer"))
            with pytest.raises(RepositoryError, match="nested"), repository.unit_of_work():
                pass
            # the outer unit of work is still usable and commits
            outer.save_subscription(make_subscription("sub_after"))
        with repository.unit_of_work() as uow:
            assert uow.get_subscription("sub_outer") is not None
            assert uow.get_subscription("sub_after") is not None

    def test_a_unit_of_work_is_entered_once(self, repository: Repository) -> None:
        unit = repository.unit_of_work()
        with unit as uow:
            uow.save_subscription(make_subscription())
        with pytest.raises(RepositoryError, match="once"), unit:
            pass
        # nothing was left open or locked by the refused second entry
        assert _read(repository, lambda uow: uow.get_subscription("sub_1")) is not None

    def test_a_unit_of_work_is_not_usable_before_it_is_entered(
        self, repository: Repository
    ) -> None:
        unit = repository.unit_of_work()
        assert isinstance(unit, UnitOfWork)  # every adapter's unit of work is its own manager
        with pytest.raises(RepositoryError, match="before"):
            unit.get_subscription("sub_1")

    def test_a_unit_of_work_belongs_to_the_thread_that_entered_it(
        self, repository: Repository
    ) -> None:
        errors: list[BaseException] = []

        def use(foreign: UnitOfWork) -> None:
            try:
                foreign.save_subscription(make_subscription("sub_foreign"))
            except BaseException as error:
                errors.append(error)

        with repository.unit_of_work() as uow:
            thread = threading.Thread(target=use, args=(uow,))
            thread.start()
            thread.join(timeout=_JOIN_TIMEOUT)
        assert len(errors) == 1
        assert isinstance(errors[0], RepositoryError)
        assert "another thread" in str(errors[0])
        assert _read(repository, lambda uow: uow.get_subscription("sub_foreign")) is None

    def test_base_exceptions_roll_back_too(self, repository: Repository) -> None:
        with pytest.raises(KeyboardInterrupt), repository.unit_of_work() as uow:
            uow.save_subscription(make_subscription())
            raise KeyboardInterrupt
        assert _read(repository, lambda uow: uow.get_subscription("sub_1")) is None

    # ----------------------------------------------------------- ledger storage rule

    def test_a_failure_is_recorded_whatever_its_text(self, repository: Repository) -> None:
        # NUL (PostgreSQL refuses it), a lone surrogate (no driver encodes it), and more
        # 4-byte characters than MySQL's TEXT holds
        error = "boom\x00 \ud800 " + "\U0001f600" * 20_000
        expected = ("boom\ufffd \ufffd " + "\U0001f600" * 20_000)[:16_000]
        record = make_event(type="customer.\x00" + "x" * 300)
        failed = _write(repository, lambda uow: uow.mark_event_failed(record, error))
        assert (failed.status, failed.attempts, failed.last_error) == (
            EventStatus.FAILED,
            1,
            expected,
        )
        assert failed.type == ("customer.\ufffd" + "x" * 300)[:255]
        again = _write(repository, lambda uow: uow.mark_event_failed(record, error[::-1]))
        assert again.attempts == 2
        assert again.last_error == error[::-1][:16_000].replace("\x00", "\ufffd").replace(
            "\ud800", "\ufffd"
        )
        assert _read(repository, lambda uow: uow.get_event("evt_1")) == again

    @pytest.mark.parametrize(
        "event_id",
        [
            pytest.param("evt_" + "a" * 300, id="long"),
            pytest.param("evt_\x00nul", id="nul"),
            pytest.param("evt_\ud800surrogate", id="surrogate"),
        ],
    )
    def test_an_unstorable_event_id_still_goes_through_the_ledger(
        self, repository: Repository, event_id: str
    ) -> None:
        # EventRecord refuses a lone surrogate; the webhook processor builds its records
        # without validation, so any id of a signed payload can reach the repository.
        record = make_event(payload=b"{}").model_copy(update={"id": event_id})
        failed = _write(repository, lambda uow: uow.mark_event_failed(record, "boom"))
        key = failed.id
        assert 0 < len(key) <= 255
        assert "\x00" not in key and not any("\ud800" <= char <= "\udfff" for char in key)
        stored = _read(repository, lambda uow: uow.get_event(event_id))
        assert stored == failed
        assert (stored.status, stored.attempts, stored.last_error) == (
            EventStatus.FAILED,
            1,
            "boom",
        )
        assert _write(repository, lambda uow: uow.claim_event(record)) is ClaimOutcome.CLAIMED
        _write(
            repository,
            lambda uow: uow.finish_event(event_id, EventStatus.PROCESSED, processed_at=T0),
        )
        assert _write(repository, lambda uow: uow.claim_event(record)) is ClaimOutcome.DUPLICATE
        done = _read(repository, lambda uow: uow.get_event(event_id))
        assert done is not None
        assert (done.id, done.status, done.attempts) == (key, EventStatus.PROCESSED, 2)
        assert _ids(_read(repository, lambda uow: uow.list_events())) == [key]

    def test_unstorable_ids_sharing_a_prefix_stay_distinct(self, repository: Repository) -> None:
        ids = ["evt_" + "a" * 300, "evt_" + "a" * 300 + "b", "evt_\x00", "evt_\ufffd"]
        with repository.unit_of_work() as uow:
            for event_id in ids:
                outcome = uow.claim_event(
                    make_event(payload=b"{}").model_copy(update={"id": event_id})
                )
                assert outcome is ClaimOutcome.CLAIMED
        stored = _read(repository, lambda uow: [uow.get_event(event_id) for event_id in ids])
        assert all(record is not None for record in stored)
        assert len({record.id for record in stored if record is not None}) == len(ids)

    def test_ids_and_types_within_the_limits_are_stored_as_given(
        self, repository: Repository
    ) -> None:
        event_id = "evt_" + "\u00e9\t\U0001f600" * 83 + "xx"  # 255 characters, 4 bytes max
        event_type = "t" * 255
        assert len(event_id) == 255
        record = make_event(event_id, type=event_type, payload=b"{}")
        with repository.unit_of_work() as uow:
            assert uow.claim_event(record) is ClaimOutcome.CLAIMED
            uow.mark_event_failed(record, "\t\u00e9")
        stored = _read(repository, lambda uow: uow.get_event(event_id))
        assert stored is not None
        assert (stored.id, stored.type, stored.last_error) == (event_id, event_type, "\t\u00e9")

    # ------------------------------------------------------------------ deferred processing

    def _pending(
        self, repository: Repository, event_id: str, *, created: datetime | None = None
    ) -> None:
        fields: dict[str, Any] = {} if created is None else {"created": created}
        outcome = _write(
            repository, lambda uow: uow.store_pending_event(make_event(event_id, **fields))
        )
        assert outcome is ClaimOutcome.CLAIMED

    def _failed(self, repository: Repository, event_id: str, retry_at: datetime) -> None:
        self._pending(repository, event_id)

        def fail(uow: UnitOfWork) -> None:
            assert uow.claim_stored_event(event_id, now=T0) is not None
            uow.schedule_event_retry(event_id, error="boom", next_attempt_at=retry_at)

        _write(repository, fail)

    def test_store_pending_event_inserts_once(self, repository: Repository) -> None:
        record = make_event(status=EventStatus.PROCESSED, attempts=3, last_error="old")
        assert _write(repository, lambda uow: uow.store_pending_event(record)) is (
            ClaimOutcome.CLAIMED
        )
        stored = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert stored is not None
        assert (stored.status, stored.attempts, stored.last_error) == (
            EventStatus.PENDING,
            0,
            None,
        )
        assert (stored.payload, stored.received_at, stored.next_attempt_at) == (
            record.payload,
            T0,
            None,
        )
        again = make_event(payload=b"{}", received_at=T0 + timedelta(seconds=9))
        assert _write(repository, lambda uow: uow.store_pending_event(again)) is (
            ClaimOutcome.DUPLICATE
        )
        assert _read(repository, lambda uow: uow.get_event("evt_1")) == stored

    def test_store_pending_event_of_a_processed_id_is_a_duplicate(
        self, repository: Repository
    ) -> None:
        def processed(uow: UnitOfWork) -> None:
            uow.claim_event(make_event())
            uow.finish_event("evt_1", EventStatus.PROCESSED, processed_at=T0)

        _write(repository, processed)
        assert _write(repository, lambda uow: uow.store_pending_event(make_event())) is (
            ClaimOutcome.DUPLICATE
        )
        stored = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert stored is not None and stored.status is EventStatus.PROCESSED

    def test_claim_stored_event_takes_a_pending_event_once(self, repository: Repository) -> None:
        self._pending(repository, "evt_1")
        claimed = _write(repository, lambda uow: uow.claim_stored_event("evt_1", now=T0))
        assert claimed is not None
        assert (claimed.id, claimed.status, claimed.attempts) == (
            "evt_1",
            EventStatus.PROCESSING,
            1,
        )
        assert claimed.payload == make_event().payload
        assert _read(repository, lambda uow: uow.get_event("evt_1")) == claimed
        assert _write(repository, lambda uow: uow.claim_stored_event("evt_1", now=T0)) is None
        assert _write(repository, lambda uow: uow.claim_stored_event("evt_no", now=T0)) is None

    def test_claim_stored_event_waits_for_the_retry_time(self, repository: Repository) -> None:
        retry_at = T0 + timedelta(seconds=30, microseconds=5)
        self._failed(repository, "evt_1", retry_at)
        stored = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert stored is not None
        assert (stored.status, stored.attempts, stored.last_error, stored.next_attempt_at) == (
            EventStatus.FAILED,
            1,
            "boom",
            retry_at,
        )
        early = retry_at - timedelta(microseconds=1)
        assert _write(repository, lambda uow: uow.claim_stored_event("evt_1", now=early)) is None
        claimed = _write(repository, lambda uow: uow.claim_stored_event("evt_1", now=retry_at))
        assert claimed is not None
        assert (claimed.status, claimed.attempts, claimed.next_attempt_at) == (
            EventStatus.PROCESSING,
            2,
            None,
        )

    def test_claim_stored_event_rejects_a_naive_time(self, repository: Repository) -> None:
        self._pending(repository, "evt_1")
        with pytest.raises(RepositoryError), repository.unit_of_work() as uow:
            uow.claim_stored_event("evt_1", now=datetime(2026, 3, 1))

    def test_claim_due_events_oldest_created_first_up_to_the_limit(
        self, repository: Repository
    ) -> None:
        for index, event_id in enumerate(["evt_c", "evt_a", "evt_b", "evt_d"]):
            self._pending(repository, event_id, created=T0 - timedelta(seconds=10 - index))
        self._pending(repository, "evt_tie", created=T0 - timedelta(seconds=9))  # ties evt_a
        self._failed(repository, "evt_later", T0 + timedelta(hours=1))
        self._failed(repository, "evt_due", T0 - timedelta(seconds=1))
        _write(repository, lambda uow: uow.mark_event_dead("evt_d", error="gone"))
        first = _write(repository, lambda uow: uow.claim_due_events(now=T0, limit=3))
        assert [r.id for r in first] == ["evt_c", "evt_a", "evt_tie"]
        assert all(
            (r.status, r.attempts, r.next_attempt_at) == (EventStatus.PROCESSING, 1, None)
            for r in first
        )
        rest = _write(repository, lambda uow: uow.claim_due_events(now=T0, limit=10))
        # evt_due was created at make_event's default (T0 - 5 s); evt_d is dead
        assert [(r.id, r.attempts) for r in rest] == [("evt_b", 1), ("evt_due", 2)]
        assert _write(repository, lambda uow: uow.claim_due_events(now=T0, limit=10)) == []
        later = T0 + timedelta(hours=1)
        assert [
            r.id for r in _write(repository, lambda uow: uow.claim_due_events(now=later, limit=0))
        ] == []
        assert [
            r.id for r in _write(repository, lambda uow: uow.claim_due_events(now=later, limit=5))
        ] == ["evt_later"]

    def test_claim_due_events_rejects_a_negative_limit_or_naive_time(
        self, repository: Repository
    ) -> None:
        self._pending(repository, "evt_1")
        with pytest.raises(RepositoryError), repository.unit_of_work() as uow:
            uow.claim_due_events(now=T0, limit=-1)
        with pytest.raises(RepositoryError), repository.unit_of_work() as uow:
            uow.claim_due_events(now=datetime(2026, 3, 1), limit=1)
        with pytest.raises(RepositoryError), repository.unit_of_work() as uow:
            uow.schedule_event_retry("evt_1", error="x", next_attempt_at=datetime(2026, 3, 1))
        stored = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert stored is not None and stored.status is EventStatus.PENDING

    def test_a_rolled_back_claim_leaves_the_event_due(self, repository: Repository) -> None:
        self._pending(repository, "evt_1")
        with pytest.raises(_Boom), repository.unit_of_work() as uow:
            assert len(uow.claim_due_events(now=T0, limit=5)) == 1
            raise _Boom
        stored = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert stored is not None and (stored.status, stored.attempts) == (EventStatus.PENDING, 0)

    def test_retry_and_dead_apply_only_to_unfinished_events(self, repository: Repository) -> None:
        def processed(uow: UnitOfWork) -> None:
            uow.claim_event(make_event("evt_done"))
            uow.finish_event("evt_done", EventStatus.PROCESSED, processed_at=T0)

        _write(repository, processed)
        before = _read(repository, lambda uow: uow.get_event("evt_done"))

        def both(uow: UnitOfWork) -> None:
            uow.schedule_event_retry("evt_done", error="x", next_attempt_at=T0)
            uow.mark_event_dead("evt_done", error="x")
            uow.schedule_event_retry("evt_absent", error="x", next_attempt_at=T0)
            uow.mark_event_dead("evt_absent", error="x")

        _write(repository, both)
        assert _read(repository, lambda uow: uow.get_event("evt_done")) == before
        assert _read(repository, lambda uow: uow.get_event("evt_absent")) is None

    def test_dead_events_are_never_claimed_until_revived(self, repository: Repository) -> None:
        self._failed(repository, "evt_1", T0)
        _write(repository, lambda uow: uow.mark_event_dead("evt_1", error="for good \u2603"))
        dead = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert dead is not None
        assert (dead.status, dead.attempts, dead.last_error, dead.next_attempt_at) == (
            EventStatus.DEAD,
            1,
            "for good \u2603",
            None,
        )
        later = T0 + timedelta(days=30)
        assert _write(repository, lambda uow: uow.claim_due_events(now=later, limit=5)) == []
        assert _write(repository, lambda uow: uow.claim_stored_event("evt_1", now=later)) is None
        assert _write(repository, lambda uow: uow.claim_event(make_event())) is (
            ClaimOutcome.DUPLICATE
        )
        revived = _write(repository, lambda uow: uow.revive_event("evt_1"))
        assert revived is not None
        assert (revived.status, revived.attempts, revived.next_attempt_at) == (
            EventStatus.FAILED,
            1,
            None,
        )
        assert _read(repository, lambda uow: uow.get_event("evt_1")) == revived
        claimed = _write(repository, lambda uow: uow.claim_stored_event("evt_1", now=T0))
        assert claimed is not None and claimed.attempts == 2

    def test_revive_event_leaves_other_statuses_alone(self, repository: Repository) -> None:
        self._pending(repository, "evt_1")
        pending = _read(repository, lambda uow: uow.get_event("evt_1"))
        assert _write(repository, lambda uow: uow.revive_event("evt_1")) == pending
        assert _write(repository, lambda uow: uow.revive_event("evt_no")) is None
        self._failed(repository, "evt_2", T0 + timedelta(hours=2))
        revived = _write(repository, lambda uow: uow.revive_event("evt_2"))
        assert revived is not None
        assert (revived.status, revived.next_attempt_at) == (EventStatus.FAILED, None)

    def test_a_failing_savepoint_rolls_back_alone(self, repository: Repository) -> None:
        with repository.unit_of_work() as uow:
            uow.save_subscription(make_subscription("sub_before"))
            with pytest.raises(_Boom), uow.savepoint():
                uow.save_subscription(make_subscription("sub_inside"))
                uow.save_subscription(make_subscription("sub_before", watermark=200))
                raise _Boom
            with uow.savepoint():
                uow.save_subscription(make_subscription("sub_kept"))
            uow.save_subscription(make_subscription("sub_after"))
        with repository.unit_of_work() as uow:
            before = uow.get_subscription("sub_before")
            assert before is not None and before.watermark == 100
            assert uow.get_subscription("sub_inside") is None
            assert uow.get_subscription("sub_kept") is not None
            assert uow.get_subscription("sub_after") is not None

    def test_savepoints_roll_back_with_their_unit_of_work(self, repository: Repository) -> None:
        with pytest.raises(_Boom), repository.unit_of_work() as uow:
            with uow.savepoint():
                uow.save_subscription(make_subscription("sub_inside"))
            raise _Boom
        assert _read(repository, lambda uow: uow.get_subscription("sub_inside")) is None

    def test_count_events_and_oldest_received_at(self, repository: Repository) -> None:
        assert _read(repository, lambda uow: uow.count_events(EventStatus.PENDING)) == 0
        assert _read(repository, lambda uow: uow.oldest_received_at(EventStatus.PENDING)) is None
        with repository.unit_of_work() as uow:
            for index in (3, 1, 2):
                received = T0 + timedelta(seconds=index, microseconds=7)
                uow.store_pending_event(make_event(f"evt_{index}", received_at=received))
        _write(repository, lambda uow: uow.claim_event(make_event("evt_x")))
        assert _read(repository, lambda uow: uow.count_events(EventStatus.PENDING)) == 3
        assert _read(repository, lambda uow: uow.count_events(EventStatus.PROCESSING)) == 1
        assert _read(repository, lambda uow: uow.count_events(EventStatus.DEAD)) == 0
        oldest = _read(repository, lambda uow: uow.oldest_received_at(EventStatus.PENDING))
        assert oldest == T0 + timedelta(seconds=1, microseconds=7)

    def test_concurrent_claim_due_never_hands_out_one_event_twice(
        self, repository: Repository
    ) -> None:
        for index in range(20):
            self._pending(repository, f"evt_{index:02d}", created=T0 - timedelta(seconds=index))
        results = run_in_threads(
            repository, lambda uow, _: [r.id for r in uow.claim_due_events(now=T0, limit=3)]
        )
        batches = [r for r in results if isinstance(r, list)]
        assert len(batches) == THREADS, results
        claimed = [event_id for batch in batches for event_id in batch]
        assert len(claimed) == len(set(claimed)), batches
        assert claimed, batches
        with repository.unit_of_work() as uow:
            for event_id in claimed:
                stored = uow.get_event(event_id)
                assert stored is not None
                assert (stored.status, stored.attempts) == (EventStatus.PROCESSING, 1)
        left = _read(repository, lambda uow: uow.count_events(EventStatus.PENDING))
        assert left == 20 - len(claimed)

    def test_concurrent_claims_of_one_stored_event_claim_it_once(
        self, repository: Repository
    ) -> None:
        self._pending(repository, "evt_1")
        results = run_in_threads(repository, lambda uow, _: uow.claim_stored_event("evt_1", now=T0))
        assert sum(isinstance(r, EventRecord) for r in results) == 1, results
        assert results.count(None) == THREADS - 1, results

    # ------------------------------------------------------------------ invoices and charges

    def test_an_invoice_round_trips_with_every_field(self, repository: Repository) -> None:
        invoice = make_invoice(
            number="INV-0001",
            billing_reason="subscription_cycle",
            subscription_id="sub_1",
            period_start=T0,
            period_end=T0 + timedelta(days=30),
            total=Money(amount=-1500, currency="usd"),
            amount_due=Money(amount=0, currency="usd"),
            amount_paid=Money(amount=0, currency="usd"),
            amount_remaining=Money(amount=0, currency="usd"),
            hosted_invoice_url="https://invoice.stripe.com/i/ü",
            invoice_pdf="https://pay.stripe.com/pdf",
            lines=("1 × Pro (at $20.00 / month)", "Remaining time on Pro ✓"),  # noqa: RUF001
            attempt_count=3,
            next_payment_attempt=T0 + timedelta(days=3, microseconds=7),
            payment_intent_id="pi_1",
            livemode=True,
            watermark=2**33,
        )
        assert _write(repository, lambda uow: uow.save_invoice(invoice)) is SaveOutcome.WRITTEN
        stored = _read(repository, lambda uow: uow.get_invoice("in_1"))
        assert stored == invoice.model_copy(
            update={"amount_refunded": Money(amount=0, currency="usd")}
        )
        assert _read(repository, lambda uow: uow.get_invoice("in_none")) is None

    def test_save_invoice_applies_the_ordering_rule(self, repository: Repository) -> None:
        def save(invoice: InvoiceSummary) -> SaveOutcome:
            return _write(repository, lambda uow: uow.save_invoice(invoice))

        def status() -> InvoiceStatus:
            stored = _read(repository, lambda uow: uow.get_invoice("in_1"))
            assert stored is not None
            return stored.status

        assert save(make_invoice(InvoiceStatus.OPEN, watermark=10)) is SaveOutcome.WRITTEN
        assert save(make_invoice(InvoiceStatus.DRAFT, watermark=9)) is SaveOutcome.STALE
        assert save(make_invoice(InvoiceStatus.DRAFT, watermark=10)) is SaveOutcome.STALE
        assert save(make_invoice(InvoiceStatus.OPEN, watermark=10, attempt_count=1)) is (
            SaveOutcome.WRITTEN
        )
        assert save(make_invoice(InvoiceStatus.PAID, watermark=11)) is SaveOutcome.WRITTEN
        assert save(make_invoice(InvoiceStatus.OPEN, watermark=99)) is SaveOutcome.STALE
        assert status() is InvoiceStatus.PAID
        assert save(make_invoice(InvoiceStatus.DELETED, watermark=12)) is SaveOutcome.WRITTEN
        assert save(make_invoice(InvoiceStatus.PAID, watermark=13)) is SaveOutcome.STALE
        assert status() is InvoiceStatus.DELETED

    def test_save_invoice_keeps_known_facts(self, repository: Repository) -> None:
        first = make_invoice(
            InvoiceStatus.OPEN,
            watermark=10,
            user_id="user_1",
            number="N-1",
            hosted_invoice_url="https://h",
            charge_id="ch_1",
        )
        _write(repository, lambda uow: uow.save_invoice(first))
        later = make_invoice(InvoiceStatus.PAID, watermark=11, customer_id="cus_1")
        _write(repository, lambda uow: uow.save_invoice(later))
        stored = _read(repository, lambda uow: uow.get_invoice("in_1"))
        assert stored is not None
        assert (stored.user_id, stored.number, stored.hosted_invoice_url, stored.charge_id) == (
            "user_1",
            "N-1",
            "https://h",
            "ch_1",
        )
        assert stored.status is InvoiceStatus.PAID and stored.watermark == 11

    def test_invoices_for_user_newest_first_paged_by_user_or_link(
        self, repository: Repository
    ) -> None:
        _write(repository, lambda uow: uow.link_customer(make_link("user_1", "cus_1")))
        invoices = [
            make_invoice(invoice_id="in_a", created=T0, customer_id="cus_1"),
            make_invoice(invoice_id="in_c", created=T0, customer_id="cus_x", user_id="user_1"),
            make_invoice(invoice_id="in_b", created=T0 + timedelta(seconds=1), customer_id="cus_1"),
            make_invoice(invoice_id="in_d", created=T0 - timedelta(days=1), customer_id="cus_1"),
            make_invoice(invoice_id="in_other", created=T0, customer_id="cus_2"),
            make_invoice(
                InvoiceStatus.DELETED, invoice_id="in_gone", created=T0, customer_id="cus_1"
            ),
        ]

        def save_all(uow: UnitOfWork) -> None:
            for invoice in invoices:
                uow.save_invoice(invoice)

        _write(repository, save_all)

        def ids(limit: int, before: tuple[datetime, str] | None = None) -> list[str]:
            found = _read(
                repository, lambda uow: uow.invoices_for_user("user_1", limit=limit, before=before)
            )
            return [invoice.id for invoice in found]

        assert ids(10) == ["in_b", "in_c", "in_a", "in_d"]
        assert ids(2) == ["in_b", "in_c"]
        assert ids(10, (T0, "in_c")) == ["in_a", "in_d"]
        assert ids(10, (T0, "")) == ["in_d"]
        assert ids(0) == []
        assert _read(repository, lambda uow: uow.invoices_for_user("user_9", limit=5)) == []

    def test_charges_merge_in_any_order_and_sum_into_the_invoice(
        self, repository: Repository
    ) -> None:
        _write(
            repository,
            lambda uow: uow.save_invoice(
                make_invoice(user_id="user_1", total=Money(amount=2000, currency="eur"))
            ),
        )
        records = [
            ChargeRecord(
                key="pi_1", charge_id="ch_1", payment_intent_id="pi_1", amount_refunded=700
            ),
            ChargeRecord(key="pi_1", invoice_id="in_1", payment_intent_id="pi_1"),
            ChargeRecord(key="pi_1", charge_id="ch_1", amount_refunded=300, customer_id="cus_1"),
            ChargeRecord(key="pi_2", invoice_id="in_1", amount_refunded=50, refunded=True),
            ChargeRecord(key="pi_3", invoice_id="in_other", amount_refunded=999),
        ]

        def save_each(uow: UnitOfWork) -> None:
            for record in records:
                uow.save_charge(record)

        _write(repository, save_each)
        stored = _read(repository, lambda uow: uow.get_charge("pi_1"))
        assert stored == ChargeRecord(
            key="pi_1",
            charge_id="ch_1",
            payment_intent_id="pi_1",
            invoice_id="in_1",
            customer_id="cus_1",
            amount_refunded=700,
        )
        assert _read(repository, lambda uow: uow.get_charge("pi_none")) is None
        invoice = _read(repository, lambda uow: uow.get_invoice("in_1"))
        assert invoice is not None
        assert invoice.amount_refunded == Money(amount=750, currency="eur")
        [listed] = _read(repository, lambda uow: uow.invoices_for_user("user_1", limit=5))
        assert listed.amount_refunded == Money(amount=750, currency="eur")

    def test_invoice_and_charge_writes_roll_back(self, repository: Repository) -> None:
        with pytest.raises(_Boom), repository.unit_of_work() as uow:
            uow.save_invoice(make_invoice(user_id="user_1"))
            uow.save_charge(ChargeRecord(key="pi_1", invoice_id="in_1", amount_refunded=5))
            raise _Boom
        assert _read(repository, lambda uow: uow.get_invoice("in_1")) is None
        assert _read(repository, lambda uow: uow.get_charge("pi_1")) is None

    def test_concurrent_invoice_saves_keep_the_newest(self, repository: Repository) -> None:
        watermarks = [100 + (i * 5) % THREADS for i in range(THREADS)]

        def save(uow: UnitOfWork, index: int) -> SaveOutcome:
            return uow.save_invoice(
                make_invoice(watermark=watermarks[index], attempt_count=watermarks[index])
            )

        results = run_in_threads(repository, save)
        assert all(r in (SaveOutcome.WRITTEN, SaveOutcome.STALE) for r in results), results
        stored = _read(repository, lambda uow: uow.get_invoice("in_1"))
        assert stored is not None and stored.watermark == max(watermarks)
        assert stored.attempt_count == max(watermarks)

    def test_concurrent_refunds_keep_the_largest(self, repository: Repository) -> None:
        amounts = [(i * 3) % THREADS * 100 for i in range(THREADS)]
        run_in_threads(
            repository,
            lambda uow, i: uow.save_charge(ChargeRecord(key="pi_1", amount_refunded=amounts[i])),
        )
        stored = _read(repository, lambda uow: uow.get_charge("pi_1"))
        assert stored is not None and stored.amount_refunded == max(amounts)

    # ------------------------------------------------------------ subscription management

    def test_item_and_schedule_ids_round_trip_and_are_replaced(
        self, repository: Repository
    ) -> None:
        first = make_subscription(item_id="si_1", schedule_id="sub_sched_1", quantity=3)
        with repository.unit_of_work() as uow:
            assert uow.save_subscription(first) is SaveOutcome.WRITTEN
        assert _read(repository, lambda uow: uow.get_subscription("sub_1")) == first
        released = first.model_copy(update={"schedule_id": None, "watermark": 101})
        with repository.unit_of_work() as uow:
            assert uow.save_subscription(released) is SaveOutcome.WRITTEN
        stored = _read(repository, lambda uow: uow.get_subscription("sub_1"))
        assert stored is not None
        assert (stored.item_id, stored.schedule_id) == ("si_1", None)

    def test_an_answer_stored_at_the_stored_watermark_is_a_tie_write(
        self, repository: Repository
    ) -> None:
        """What ``apply_answer`` relies on: allow_tie writes the same watermark's state."""
        with repository.unit_of_work() as uow:
            uow.save_subscription(make_subscription(item_id="si_1"))
        answered = make_subscription(
            item_id="si_2", price_id="price_pro", cancel_at_period_end=True
        )
        with repository.unit_of_work() as uow:
            assert uow.save_subscription(answered) is SaveOutcome.TIE
            assert uow.save_subscription(answered, allow_tie=True) is SaveOutcome.WRITTEN
        assert _read(repository, lambda uow: uow.get_subscription("sub_1")) == answered

    # ---------------------------------------------------------------------------- reconcile

    def test_a_reconcile_checkpoint_is_saved_replaced_and_deleted(
        self, repository: Repository
    ) -> None:
        first = ReconcileCheckpoint(
            name="default",
            scope='["cus_1","2026-01-01T00:00:00+00:00"]',
            starting_after="sub_" + "x" * 251,
            counts={"listed": 100, "fixed": 3},
            updated_at=T0 + timedelta(microseconds=250),
        )
        other = first.model_copy(update={"name": "backfill", "counts": {}})
        assert _read(repository, lambda uow: uow.get_reconcile_checkpoint("default")) is None
        _write(repository, lambda uow: uow.save_reconcile_checkpoint(first))
        _write(repository, lambda uow: uow.save_reconcile_checkpoint(other))
        assert _read(repository, lambda uow: uow.get_reconcile_checkpoint("default")) == first

        later = first.model_copy(
            update={
                "starting_after": "sub_2",
                "counts": {"listed": 200, "fixed": 3, "kept": 1},
                "updated_at": T0 + timedelta(minutes=1),
            }
        )
        _write(repository, lambda uow: uow.save_reconcile_checkpoint(later))
        assert _read(repository, lambda uow: uow.get_reconcile_checkpoint("default")) == later
        _write(repository, lambda uow: uow.delete_reconcile_checkpoint("default"))
        _write(repository, lambda uow: uow.delete_reconcile_checkpoint("default"))  # idempotent
        assert _read(repository, lambda uow: uow.get_reconcile_checkpoint("default")) is None
        assert _read(repository, lambda uow: uow.get_reconcile_checkpoint("backfill")) == other

    def test_a_reconcile_checkpoint_rolls_back_with_its_unit_of_work(
        self, repository: Repository
    ) -> None:
        kept = ReconcileCheckpoint(
            name="default", scope="[]", starting_after="sub_1", updated_at=T0
        )
        _write(repository, lambda uow: uow.save_reconcile_checkpoint(kept))
        with pytest.raises(_Boom), repository.unit_of_work() as uow:
            uow.save_reconcile_checkpoint(kept.model_copy(update={"starting_after": "sub_9"}))
            uow.delete_reconcile_checkpoint("default")
            raise _Boom
        assert _read(repository, lambda uow: uow.get_reconcile_checkpoint("default")) == kept

    def test_subscription_ids_created_between_is_a_half_open_span(
        self, repository: Repository
    ) -> None:
        second = timedelta(seconds=1)
        with repository.unit_of_work() as uow:
            for sub_id, customer, offset in [
                ("sub_a", "cus_1", 0),
                ("sub_b", "cus_1", 1),
                ("sub_c", "cus_2", 1),
                ("sub_d", "cus_2", 2),
                ("sub_e", "cus_1", 3),
            ]:
                uow.save_subscription(
                    make_subscription(sub_id, customer_id=customer, created=T0 + offset * second)
                )

        def between(
            newer_than: datetime | None, at_most: datetime | None, customer: str | None = None
        ) -> list[str]:
            return _read(
                repository,
                lambda uow: uow.subscription_ids_created_between(
                    newer_than=newer_than, at_most=at_most, customer_id=customer
                ),
            )

        assert between(None, None) == ["sub_e", "sub_d", "sub_c", "sub_b", "sub_a"]
        assert between(T0, T0 + 2 * second) == ["sub_d", "sub_c", "sub_b"]  # (T0, T0+2s]
        assert between(T0 + second, None) == ["sub_e", "sub_d"]
        assert between(None, T0 + second, "cus_1") == ["sub_b", "sub_a"]
        assert between(T0 + 3 * second, None) == []
        local = timezone(timedelta(hours=2))
        assert between(T0.astimezone(local), (T0 + second).astimezone(local)) == [
            "sub_c",
            "sub_b",
        ]

    # ------------------------------------------------------------- plan key keep rule

    @pytest.mark.parametrize("allow_tie", [False, True])
    def test_a_none_plan_key_keeps_the_stored_one_only_for_the_same_price(
        self, repository: Repository, allow_tie: bool
    ) -> None:
        pro = make_subscription(watermark=100, price_id="price_pro", plan_key="pro")
        _write(repository, lambda uow: uow.save_subscription(pro))
        same_price = make_subscription(
            watermark=110, price_id="price_pro", plan_key=None, quantity=2
        )
        _write(repository, lambda uow: uow.save_subscription(same_price, allow_tie=allow_tie))
        stored = _read(repository, lambda uow: uow.get_subscription("sub_1"))
        assert stored == same_price.model_copy(update={"plan_key": "pro"})
        # a move to a price no plan uses must not keep Pro's key (and its features)
        unknown = make_subscription(watermark=120, price_id="price_unknown", plan_key=None)
        written = _write(
            repository, lambda uow: uow.save_subscription(unknown, allow_tie=allow_tie)
        )
        assert written is SaveOutcome.WRITTEN
        assert _read(repository, lambda uow: uow.get_subscription("sub_1")) == unknown
        # and a state without a price after a priced one keeps nothing either
        priceless = make_subscription(watermark=130, price_id=None, plan_key=None)
        _write(repository, lambda uow: uow.save_subscription(priceless, allow_tie=allow_tie))
        assert _read(repository, lambda uow: uow.get_subscription("sub_1")) == priceless

    def test_a_none_plan_key_after_a_priceless_state_keeps_the_stored_key(
        self, repository: Repository
    ) -> None:
        keyed = make_subscription(watermark=100, price_id=None, plan_key="legacy")
        _write(repository, lambda uow: uow.save_subscription(keyed))
        again = make_subscription(watermark=110, price_id=None, plan_key=None)
        _write(repository, lambda uow: uow.save_subscription(again))
        stored = _read(repository, lambda uow: uow.get_subscription("sub_1"))
        assert stored is not None and stored.plan_key == "legacy"

    # ------------------------------------------------------------------ one-time purchases

    @staticmethod
    def _purchase(session_id: str = "cs_p1", **fields: Any) -> Purchase:
        values: dict[str, Any] = {
            "user_id": "user_1",
            "customer_id": "cus_1",
            "plan_key": "lifetime",
            "payment_intent_id": f"pi_{session_id}",
            "amount": 9900,
            "currency": "eur",
            "status": PurchaseStatus.PAID,
            "created_at": T0,
        }
        values.update(fields)
        return Purchase(session_id=session_id, **values)

    def test_a_purchase_round_trips_and_is_replaced_by_session(
        self, repository: Repository
    ) -> None:
        pending = self._purchase(
            status=PurchaseStatus.PENDING,
            payment_intent_id=None,
            plan_key=None,
            customer_id=None,
            created_at=T0 + timedelta(microseconds=123),
        )
        _write(repository, lambda uow: uow.save_purchase(pending))
        assert _read(repository, lambda uow: uow.get_purchase("cs_p1")) == pending
        assert _read(repository, lambda uow: uow.get_purchase("cs_other")) is None
        refunded = self._purchase(
            status=PurchaseStatus.PARTIALLY_REFUNDED,
            amount_refunded=1000,
            created_at=pending.created_at,
        )
        _write(repository, lambda uow: uow.save_purchase(refunded))
        assert _read(repository, lambda uow: uow.get_purchase("cs_p1")) == refunded
        found = _read(repository, lambda uow: uow.purchase_by_payment_intent("pi_cs_p1"))
        assert found == refunded
        assert _read(repository, lambda uow: uow.purchase_by_payment_intent("pi_none")) is None

    def test_purchases_for_user_lists_newest_first(self, repository: Repository) -> None:
        with repository.unit_of_work() as uow:
            uow.save_purchase(self._purchase("cs_a", created_at=T0))
            uow.save_purchase(self._purchase("cs_b", created_at=T0 + timedelta(seconds=5)))
            uow.save_purchase(self._purchase("cs_c", created_at=T0))
            uow.save_purchase(self._purchase("cs_d", user_id="user_2"))
        listed = _read(repository, lambda uow: uow.purchases_for_user("user_1"))
        assert [p.session_id for p in listed] == ["cs_b", "cs_c", "cs_a"]
        assert _read(repository, lambda uow: uow.purchases_for_user("user_3")) == []

    def test_a_purchase_write_rolls_back_with_its_unit_of_work(
        self, repository: Repository
    ) -> None:
        first = self._purchase(status=PurchaseStatus.PENDING)
        _write(repository, lambda uow: uow.save_purchase(first))
        with pytest.raises(_Boom), repository.unit_of_work() as uow:
            uow.save_purchase(self._purchase("cs_p1", status=PurchaseStatus.PAID))
            uow.save_purchase(self._purchase("cs_p2"))
            raise _Boom
        assert _read(repository, lambda uow: uow.get_purchase("cs_p1")) == first
        assert _read(repository, lambda uow: uow.get_purchase("cs_p2")) is None
        assert _read(repository, lambda uow: uow.purchase_by_payment_intent("pi_cs_p2")) is None
        assert [
            p.session_id for p in _read(repository, lambda uow: uow.purchases_for_user("user_1"))
        ] == ["cs_p1"]

    # ------------------------------------------------- payment methods and entitlements

    @staticmethod
    def _method(
        method_id: str = "pm_1", watermark: int = 100, **fields: Any
    ) -> PaymentMethodSummary:
        values: dict[str, Any] = {
            "customer_id": "cus_1",
            "type": "card",
            "card_brand": "visa",
            "last4": "4242",
            "exp_month": 12,
            "exp_year": 2030,
            "created": T0,
        }
        values.update(fields)
        return PaymentMethodSummary(id=method_id, watermark=watermark, **values)

    def test_payment_method_round_trip_and_newer_wins(self, repository: Repository) -> None:
        first = self._method(wallet="apple_pay", watermark=2**40)
        with repository.unit_of_work() as uow:
            assert uow.save_payment_method(first) is SaveOutcome.WRITTEN
        assert _read(repository, lambda uow: uow.get_payment_method("pm_1")) == first
        older = self._method(exp_year=2029, watermark=2**40 - 1)
        renewed = self._method(exp_year=2031, watermark=2**40 + 1)
        with repository.unit_of_work() as uow:
            assert uow.save_payment_method(older) is SaveOutcome.STALE
            assert uow.save_payment_method(renewed) is SaveOutcome.WRITTEN
            assert uow.save_payment_method(renewed) is SaveOutcome.WRITTEN  # a duplicate
        assert _read(repository, lambda uow: uow.get_payment_method("pm_1")) == renewed
        assert _read(repository, lambda uow: uow.get_payment_method("pm_2")) is None

    def test_a_detached_payment_method_never_comes_back(self, repository: Repository) -> None:
        with repository.unit_of_work() as uow:
            uow.save_payment_method(self._method(watermark=100))
            detached = self._method(watermark=200, customer_id=None, detached=True)
            assert uow.save_payment_method(detached) is SaveOutcome.WRITTEN
            for watermark in (150, 200, 300):  # older, a tie, even a newer one
                assert uow.save_payment_method(self._method(watermark=watermark)) is (
                    SaveOutcome.STALE
                )
        stored = _read(repository, lambda uow: uow.get_payment_method("pm_1"))
        assert stored is not None
        assert stored.detached and stored.customer_id == "cus_1"  # the customer is kept
        assert _read(repository, lambda uow: uow.payment_methods_for_customer("cus_1")) == []

    def test_a_detach_arriving_first_is_stored(self, repository: Repository) -> None:
        with repository.unit_of_work() as uow:
            detached = self._method(watermark=200, customer_id=None, detached=True)
            assert uow.save_payment_method(detached) is SaveOutcome.WRITTEN
            assert uow.save_payment_method(self._method(watermark=100)) is SaveOutcome.STALE
        stored = _read(repository, lambda uow: uow.get_payment_method("pm_1"))
        assert stored is not None and stored.detached and stored.customer_id is None

    def test_payment_methods_for_customer_newest_first(self, repository: Repository) -> None:
        with repository.unit_of_work() as uow:
            uow.save_payment_method(self._method("pm_a", created=T0))
            uow.save_payment_method(self._method("pm_c", created=T0 + timedelta(seconds=1)))
            uow.save_payment_method(self._method("pm_b", created=T0 + timedelta(seconds=1)))
            uow.save_payment_method(self._method("pm_x", customer_id="cus_2"))
            uow.save_payment_method(self._method("pm_d", detached=True))
        found = _read(repository, lambda uow: uow.payment_methods_for_customer("cus_1"))
        assert [method.id for method in found] == ["pm_c", "pm_b", "pm_a"]

    def test_default_payment_method_newer_wins_ties_written(self, repository: Repository) -> None:
        def default(method_id: str | None, watermark: int) -> DefaultPaymentMethod:
            return DefaultPaymentMethod(
                customer_id="cus_1", payment_method_id=method_id, watermark=watermark
            )

        assert _read(repository, lambda uow: uow.default_payment_method("cus_1")) is None
        with repository.unit_of_work() as uow:
            assert uow.save_default_payment_method(default("pm_1", 100)) is SaveOutcome.WRITTEN
            assert uow.save_default_payment_method(default("pm_0", 99)) is SaveOutcome.STALE
            assert uow.save_default_payment_method(default("pm_2", 100)) is SaveOutcome.WRITTEN
        assert _read(repository, lambda uow: uow.default_payment_method("cus_1")) == default(
            "pm_2", 100
        )
        with repository.unit_of_work() as uow:
            assert uow.save_default_payment_method(default(None, 101)) is SaveOutcome.WRITTEN
        assert _read(repository, lambda uow: uow.default_payment_method("cus_1")) == default(
            None, 101
        )

    def test_entitlements_newer_wins(self, repository: Repository) -> None:
        first = EntitlementSummary(customer_id="cus_1", lookup_keys=("api", "sso"), watermark=100)
        with repository.unit_of_work() as uow:
            assert uow.entitlements_for_customer("cus_1") is None
            assert uow.save_entitlements(first) is SaveOutcome.WRITTEN
            older = first.model_copy(update={"lookup_keys": (), "watermark": 99})
            assert uow.save_entitlements(older) is SaveOutcome.STALE
        assert _read(repository, lambda uow: uow.entitlements_for_customer("cus_1")) == first
        emptied = first.model_copy(update={"lookup_keys": (), "watermark": 101})
        with repository.unit_of_work() as uow:
            assert uow.save_entitlements(emptied) is SaveOutcome.WRITTEN
        assert _read(repository, lambda uow: uow.entitlements_for_customer("cus_1")) == emptied

    def test_payment_method_writes_roll_back(self, repository: Repository) -> None:
        with pytest.raises(RuntimeError), repository.unit_of_work() as uow:
            uow.save_payment_method(self._method())
            uow.save_default_payment_method(DefaultPaymentMethod(customer_id="cus_1"))
            uow.save_entitlements(EntitlementSummary(customer_id="cus_1"))
            raise RuntimeError("boom")
        assert _read(repository, lambda uow: uow.get_payment_method("pm_1")) is None
        assert _read(repository, lambda uow: uow.default_payment_method("cus_1")) is None
        assert _read(repository, lambda uow: uow.entitlements_for_customer("cus_1")) is None

    def test_concurrent_payment_method_saves_keep_the_newest(self, repository: Repository) -> None:
        results = run_in_threads(
            repository,
            lambda uow, i: uow.save_payment_method(
                self._method(watermark=100 + i, exp_year=2030 + i)
            ),
        )
        assert all(isinstance(r, SaveOutcome) for r in results), results
        stored = _read(repository, lambda uow: uow.get_payment_method("pm_1"))
        assert stored is not None
        assert (stored.watermark, stored.exp_year) == (100 + THREADS - 1, 2030 + THREADS - 1)

    # ------------------------------------------------------------------------ usage outbox

    @staticmethod
    def _usage(
        identifier: str = "use_1",
        *,
        user_id: str = "user_1",
        event_name: str = "api_calls",
        value: int = 3,
        recorded_at: datetime = T0,
        timestamp: datetime | None = None,
    ) -> UsageRecord:
        return UsageRecord(
            identifier=identifier,
            user_id=user_id,
            event_name=event_name,
            value=value,
            timestamp=recorded_at if timestamp is None else timestamp,
            recorded_at=recorded_at,
        )

    def _claim_usage(
        self, repository: Repository, *, now: datetime = T0, limit: int = 10
    ) -> list[UsageRecord]:
        lease = now + timedelta(minutes=5)
        return _write(
            repository, lambda uow: uow.claim_due_usage(now=now, limit=limit, lease_until=lease)
        )

    def test_add_usage_inserts_an_identifier_once(self, repository: Repository) -> None:
        record = self._usage(value=2**40, timestamp=T0 - timedelta(microseconds=7))
        assert _write(repository, lambda uow: uow.add_usage(record)) is True
        assert _read(repository, lambda uow: uow.get_usage("use_1")) == record
        again = self._usage(value=1)
        assert _write(repository, lambda uow: uow.add_usage(again)) is False
        assert _read(repository, lambda uow: uow.get_usage("use_1")) == record
        assert _read(repository, lambda uow: uow.get_usage("use_no")) is None

    def test_add_usage_stores_any_state_and_a_storable_error(self, repository: Repository) -> None:
        failed = self._usage().model_copy(
            update={
                "status": UsageStatus.FAILED,
                "attempts": 2,
                "last_error": "bad\x00byte" + "x" * 20_000,
                "next_attempt_at": T0 + timedelta(seconds=1),
            }
        )
        assert _write(repository, lambda uow: uow.add_usage(failed)) is True
        stored = _read(repository, lambda uow: uow.get_usage("use_1"))
        assert stored is not None
        assert stored.last_error == ("bad\ufffdbyte" + "x" * 20_000)[:16_000]
        assert (stored.status, stored.attempts, stored.next_attempt_at) == (
            UsageStatus.FAILED,
            2,
            T0 + timedelta(seconds=1),
        )
        plain = self._usage("use_2").model_copy(update={"last_error": "plain \u2603"})
        _write(repository, lambda uow: uow.add_usage(plain))
        assert _read(repository, lambda uow: uow.get_usage("use_2")) == plain

    def test_add_usage_rolls_back_with_its_unit_of_work(self, repository: Repository) -> None:
        with pytest.raises(_Boom), repository.unit_of_work() as uow:
            uow.add_usage(self._usage())
            raise _Boom
        assert _read(repository, lambda uow: uow.get_usage("use_1")) is None

    def test_claim_due_usage_oldest_first_with_a_lease(self, repository: Repository) -> None:
        with repository.unit_of_work() as uow:
            for index, identifier in enumerate(["use_c", "use_a", "use_b"]):
                uow.add_usage(
                    self._usage(identifier, recorded_at=T0 - timedelta(seconds=9 - index))
                )
            uow.add_usage(self._usage("use_tie", recorded_at=T0 - timedelta(seconds=8)))
        first = self._claim_usage(repository, limit=2)
        assert [r.identifier for r in first] == ["use_c", "use_a"]
        lease = T0 + timedelta(minutes=5)
        assert all(
            (r.status, r.next_attempt_at, r.attempts) == (UsageStatus.SENDING, lease, 0)
            for r in first
        )
        assert [r.identifier for r in self._claim_usage(repository)] == ["use_tie", "use_b"]
        assert self._claim_usage(repository) == []
        assert self._claim_usage(repository, limit=0) == []
        # the lease ended (the flush died): claimable again
        later = self._claim_usage(repository, now=lease)
        assert [r.identifier for r in later] == ["use_c", "use_a", "use_tie", "use_b"]

    def test_claim_due_usage_rejects_bad_arguments(self, repository: Repository) -> None:
        _write(repository, lambda uow: uow.add_usage(self._usage()))
        with pytest.raises(RepositoryError), repository.unit_of_work() as uow:
            uow.claim_due_usage(now=T0, limit=-1, lease_until=T0)
        with pytest.raises(RepositoryError), repository.unit_of_work() as uow:
            uow.claim_due_usage(now=datetime(2026, 3, 1), limit=1, lease_until=T0)
        with pytest.raises(RepositoryError), repository.unit_of_work() as uow:
            uow.list_usage(limit=-1)
        stored = _read(repository, lambda uow: uow.get_usage("use_1"))
        assert stored is not None and stored.status is UsageStatus.PENDING

    def test_sent_usage_is_never_claimed_again(self, repository: Repository) -> None:
        _write(repository, lambda uow: uow.add_usage(self._usage()))
        self._claim_usage(repository)
        sent_at = T0 + timedelta(seconds=1, microseconds=3)
        done = _write(
            repository,
            lambda uow: uow.mark_usage_sent(["use_1", "use_1", "use_no"], sent_at=sent_at),
        )
        assert done == 1
        stored = _read(repository, lambda uow: uow.get_usage("use_1"))
        assert stored is not None
        assert (stored.status, stored.sent_at, stored.next_attempt_at) == (
            UsageStatus.SENT,
            sent_at,
            None,
        )
        assert _write(repository, lambda uow: uow.mark_usage_sent(["use_1"], sent_at=T0)) == 0
        assert _write(repository, lambda uow: uow.mark_usage_sent([], sent_at=T0)) == 0
        assert self._claim_usage(repository, now=T0 + timedelta(days=1)) == []

    def test_usage_retry_back_off_and_dead(self, repository: Repository) -> None:
        _write(repository, lambda uow: uow.add_usage(self._usage()))
        self._claim_usage(repository)
        retry_at = T0 + timedelta(seconds=30)
        _write(
            repository,
            lambda uow: uow.schedule_usage_retry(
                "use_1", error="down \u2603", next_attempt_at=retry_at
            ),
        )
        failed = _read(repository, lambda uow: uow.get_usage("use_1"))
        assert failed is not None
        assert (failed.status, failed.attempts, failed.last_error, failed.next_attempt_at) == (
            UsageStatus.FAILED,
            1,
            "down \u2603",
            retry_at,
        )
        assert self._claim_usage(repository, now=retry_at - timedelta(microseconds=1)) == []
        assert [r.attempts for r in self._claim_usage(repository, now=retry_at)] == [1]
        _write(repository, lambda uow: uow.mark_usage_dead("use_1", error="gone"))
        dead = _read(repository, lambda uow: uow.get_usage("use_1"))
        assert dead is not None
        assert (dead.status, dead.attempts, dead.last_error, dead.next_attempt_at) == (
            UsageStatus.DEAD,
            2,
            "gone",
            None,
        )
        assert self._claim_usage(repository, now=T0 + timedelta(days=30)) == []
        # a dead or sent record is not changed by more failures
        _write(
            repository, lambda uow: uow.schedule_usage_retry("use_1", error="x", next_attempt_at=T0)
        )
        _write(repository, lambda uow: uow.mark_usage_dead("use_no", error="x"))
        assert _read(repository, lambda uow: uow.get_usage("use_1")) == dead
        assert [
            r.identifier
            for r in _read(repository, lambda uow: uow.list_usage(status=UsageStatus.DEAD))
        ] == ["use_1"]

    def test_release_usage_makes_untried_records_due_now(self, repository: Repository) -> None:
        with repository.unit_of_work() as uow:
            uow.add_usage(self._usage("use_a", recorded_at=T0 - timedelta(seconds=2)))
            uow.add_usage(self._usage("use_b", recorded_at=T0 - timedelta(seconds=1)))
            uow.add_usage(self._usage("use_c"))
        self._claim_usage(repository, limit=1)
        _write(
            repository, lambda uow: uow.schedule_usage_retry("use_a", error="x", next_attempt_at=T0)
        )
        claimed = self._claim_usage(repository)
        assert [r.identifier for r in claimed] == ["use_a", "use_b", "use_c"]
        _write(repository, lambda uow: uow.release_usage(["use_a", "use_b", "use_no"]))
        _write(repository, lambda uow: uow.release_usage([]))
        statuses = _read(
            repository,
            lambda uow: [(r.identifier, r.status, r.next_attempt_at) for r in uow.list_usage()],
        )
        assert statuses == [
            ("use_a", UsageStatus.FAILED, None),
            ("use_b", UsageStatus.PENDING, None),
            ("use_c", UsageStatus.SENDING, T0 + timedelta(minutes=5)),
        ]
        assert [r.identifier for r in self._claim_usage(repository)] == ["use_a", "use_b"]

    def test_list_usage_in_recorded_order(self, repository: Repository) -> None:
        with repository.unit_of_work() as uow:
            for index in (3, 1, 2):
                uow.add_usage(
                    self._usage(f"use_{index}", recorded_at=T0 + timedelta(seconds=index))
                )
        assert [r.identifier for r in _read(repository, lambda uow: uow.list_usage())] == [
            "use_1",
            "use_2",
            "use_3",
        ]
        assert [r.identifier for r in _read(repository, lambda uow: uow.list_usage(limit=1))] == [
            "use_1"
        ]
        pending = _read(repository, lambda uow: uow.list_usage(status=UsageStatus.PENDING))
        assert len(pending) == 3
        assert _read(repository, lambda uow: uow.list_usage(status=UsageStatus.SENT)) == []

    def test_usage_total_sums_a_period_of_one_user_and_meter(self, repository: Repository) -> None:
        start, end = T0, T0 + timedelta(days=30)
        with repository.unit_of_work() as uow:
            uow.add_usage(self._usage("in_1", value=5, timestamp=start))
            uow.add_usage(self._usage("in_2", value=7, timestamp=end - timedelta(microseconds=1)))
            uow.add_usage(self._usage("in_sent", value=11, timestamp=start + timedelta(days=1)))
            uow.add_usage(self._usage("in_dead", value=100, timestamp=start + timedelta(days=1)))
            uow.add_usage(
                self._usage("before", value=1000, timestamp=start - timedelta(microseconds=1))
            )
            uow.add_usage(self._usage("at_end", value=1000, timestamp=end))
            uow.add_usage(self._usage("other_user", user_id="user_2", value=1000))
            uow.add_usage(self._usage("other_meter", event_name="tokens", value=1000))
            uow.mark_usage_sent(["in_sent"], sent_at=T0)
            uow.mark_usage_dead("in_dead", error="refused")
        total = _read(
            repository, lambda uow: uow.usage_total("user_1", "api_calls", start=start, end=end)
        )
        assert total == UsageTotal(value=23, records=3, unsent=2)
        empty = _read(
            repository, lambda uow: uow.usage_total("user_9", "api_calls", start=start, end=end)
        )
        assert empty == UsageTotal()
        with pytest.raises(RepositoryError), repository.unit_of_work() as uow:
            uow.usage_total("user_1", "api_calls", start=datetime(2026, 3, 1), end=end)

    def test_concurrent_usage_claims_never_hand_out_one_record_twice(
        self, repository: Repository
    ) -> None:
        with repository.unit_of_work() as uow:
            for index in range(20):
                uow.add_usage(
                    self._usage(f"use_{index:02d}", recorded_at=T0 - timedelta(seconds=index))
                )
        lease = T0 + timedelta(minutes=5)
        results = run_in_threads(
            repository,
            lambda uow, _: [
                r.identifier for r in uow.claim_due_usage(now=T0, limit=3, lease_until=lease)
            ],
        )
        batches = [r for r in results if isinstance(r, list)]
        assert len(batches) == THREADS, results
        claimed = [identifier for batch in batches for identifier in batch]
        assert claimed and len(claimed) == len(set(claimed)), batches
        left = _read(repository, lambda uow: uow.list_usage(status=UsageStatus.PENDING))
        assert len(left) == 20 - len(claimed)


def make_invoice(
    status: InvoiceStatus = InvoiceStatus.OPEN,
    *,
    invoice_id: str = "in_1",
    watermark: int = 10,
    **fields: Any,
) -> InvoiceSummary:
    """An invoice summary of ``cus_1`` created at ``T0`` (override any field)."""
    fields.setdefault("customer_id", "cus_1")
    fields.setdefault("created", T0)
    fields.setdefault("total", Money(amount=2000, currency="usd"))
    return InvoiceSummary(id=invoice_id, status=status, watermark=watermark, **fields)
