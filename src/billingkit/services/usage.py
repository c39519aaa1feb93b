"""Usage-based billing: record metered usage durably, flush it to Stripe Billing Meters.

``record`` writes one ``UsageRecord`` to the
usage outbox in a unit of work of the repository: one INSERT. When the repository runs
inside the app's transaction (``SqlAlchemyRepository.using(session)`` or
``for_connection``; Django's ``atomic``), the usage commits or rolls back with the app's own
business write, so usage is never recorded for work that did not happen and never lost for
work that did. Stripe is not called.

``flush`` (from cron, a queue worker, any scheduler) claims due records in
batches (``FOR UPDATE SKIP LOCKED``: any number of flushers share one outbox and never send
a record concurrently), sends each as a meter event under its ``identifier`` (Stripe counts
an identifier once), marks the accepted ones ``sent`` and retries failures with exponential
back-off until ``dead``. A flush that dies mid-batch leaves its records ``sending`` until
their lease ends; the next flush then sends them again, and Stripe's identifier dedupe keeps
each one counted once. Guide: ``docs/usage.md``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from billingkit.config import BillingConfig
from billingkit.domain import SubscriptionStatus
from billingkit.domain.usage import UsageRecord, UsageStatus, UsageTotal
from billingkit.errors import GatewayError, InvalidInputError
from billingkit.ports import (
    Clock,
    Repository,
    StripeGateway,
    UnitOfWork,
    require_aware_clock,
    system_clock,
)
from billingkit.services.webhooks.deferred import RetryPolicy

__all__ = ["FlushResult", "UsageService"]

logger = logging.getLogger("billingkit.usage")

#: Stripe's longest meter event name and identifier.
_MAX_NAME = 100
_MAX_IDENTIFIER = 100
#: Statuses whose current period counts as "this period" for ``usage``.
_PERIOD_STATUSES = frozenset(
    {
        SubscriptionStatus.ACTIVE,
        SubscriptionStatus.TRIALING,
        SubscriptionStatus.PAST_DUE,
        SubscriptionStatus.UNPAID,
        SubscriptionStatus.PAUSED,
    }
)


def _new_identifier() -> str:
    return f"bku_{uuid.uuid4().hex}"


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What one ``flush`` did; every claimed record is in one count.

    ``calls`` is the number of meter event requests made to Stripe (failed ones included).
    ``released`` records were claimed but not tried (the flush stopped at a retryable
    failure: Stripe is probably down); they are due again at once.
    """

    sent: int = 0
    failed: int = 0  # failed and due again later
    dead: int = 0  # failed for the last allowed time (or refused for good)
    released: int = 0
    calls: int = 0
    errors: tuple[str, ...] = field(default=())

    @property
    def claimed(self) -> int:
        """How many records the flush claimed (the sum of the outcome counts)."""
        return self.sent + self.failed + self.dead + self.released


@dataclass
class _Batch:
    """The outcome of sending one claimed batch, written back in one unit of work."""

    sent: list[str] = field(default_factory=list)
    retry: list[tuple[UsageRecord, str]] = field(default_factory=list)
    dead: list[tuple[UsageRecord, str]] = field(default_factory=list)
    untried: list[str] = field(default_factory=list)
    calls: int = 0


class UsageService:
    """Records metered usage in a transactional outbox and flushes it to Stripe.

    Args:
        config: the app's configuration (only its validation matters here).
        gateway: sends the meter events.
        repository: holds the outbox.
        clock: the time (``fake.now`` in tests).
        retry: back-off and the attempt limit of failed records; by default 8 attempts,
            30 s doubling up to an hour, with 20 % jitter.
        lease: how long a claimed record stays ``sending`` before another flush may take it
            up (a flush that died); longer than one batch takes to send.
        new_identifier: makes the identifier of a record recorded without one.

    Thread-safe: it holds no mutable state of its own.
    """

    def __init__(
        self,
        config: BillingConfig,
        *,
        gateway: StripeGateway,
        repository: Repository,
        clock: Clock = system_clock,
        retry: RetryPolicy | None = None,
        lease: timedelta = timedelta(minutes=5),
        new_identifier: Callable[[], str] = _new_identifier,
    ) -> None:
        if lease <= timedelta(0):
            raise InvalidInputError("lease must be positive")
        self._config = config
        self._gateway = gateway
        self._repository = repository
        self._clock = require_aware_clock(clock)
        self._retry = retry if retry is not None else RetryPolicy()
        self._lease = lease
        self._new_identifier = new_identifier

    # ----------------------------------------------------------------------------- record

    def record(
        self,
        user_id: str,
        meter_event_name: str,
        value: int,
        *,
        identifier: str | None = None,
        timestamp: datetime | None = None,
    ) -> UsageRecord:
        """Store ``value`` units of ``meter_event_name`` used by ``user_id``; no Stripe call.

        One INSERT in a unit of work of the repository: inside the app's transaction when
        the repository is bound to it, so the usage commits with the app's own write.
        ``identifier`` (at most 100 characters) makes recording idempotent: recording the
        same identifier again stores nothing and returns the stored record. Without one, a
        fresh identifier is generated and stored, so every retry of the flush sends the
        same one. ``timestamp`` (aware; default now) is when the usage happened.

        Raises ``InvalidInputError`` for an empty user id or event
        name, a value that is not a non-negative ``int``, a naive timestamp or a bad
        identifier.
        """
        if not isinstance(user_id, str) or not user_id or len(user_id) > 255:
            raise InvalidInputError("user_id must be a non-empty string of at most 255 chars")
        if (
            not isinstance(meter_event_name, str)
            or not meter_event_name
            or len(meter_event_name) > _MAX_NAME
        ):
            raise InvalidInputError(
                f"meter_event_name must be a non-empty string of at most {_MAX_NAME} chars"
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInputError(f"value must be a non-negative int, not {value!r}")
        if identifier is None:
            identifier = self._new_identifier()
        elif not isinstance(identifier, str) or not identifier or len(identifier) > _MAX_IDENTIFIER:
            raise InvalidInputError(
                f"identifier must be a non-empty string of at most {_MAX_IDENTIFIER} chars"
            )
        now = self._clock()
        if timestamp is None:
            timestamp = now
        elif timestamp.tzinfo is None or timestamp.utcoffset() is None:
            raise InvalidInputError("timestamp must be a timezone-aware datetime")
        record = UsageRecord(
            identifier=identifier,
            user_id=user_id,
            event_name=meter_event_name,
            value=value,
            timestamp=timestamp,
            recorded_at=now,
        )
        with self._repository.unit_of_work() as uow:
            if uow.add_usage(record):
                return record
            stored = uow.get_usage(identifier)
        assert stored is not None  # an identifier is never deleted
        return stored

    # ------------------------------------------------------------------------------ flush

    def flush(self, *, batch_size: int = 100, limit: int | None = None) -> FlushResult:
        """Send due usage records to Stripe, ``batch_size`` per claim, up to ``limit``.

        Each batch is claimed in one unit of work (the records become ``sending`` for the
        lease), sent one meter event per record with the record's identifier, and written
        back in one unit of work: accepted -> ``sent``; a retryable failure (Stripe down,
        rate limited) -> retried after the back-off, and the flush stops, releasing the
        batch's untried records; a refusal (a 4xx: unknown meter or customer) -> ``dead``
        at once; a user with no Stripe customer yet -> retried. Returns the counts.

        Raises ``InvalidInputError`` for a ``batch_size`` below 1
        or a negative ``limit``; repository errors propagate (nothing is lost: unsent
        records stay in the outbox).
        """
        if batch_size < 1:
            raise InvalidInputError("batch_size must be at least 1")
        if limit is not None and limit < 0:
            raise InvalidInputError("limit must not be negative")
        totals = {"sent": 0, "failed": 0, "dead": 0, "released": 0, "calls": 0}
        errors: list[str] = []
        remaining = limit
        while remaining is None or remaining > 0:
            size = batch_size if remaining is None else min(batch_size, remaining)
            now = self._clock()
            with self._repository.unit_of_work() as uow:
                claimed = uow.claim_due_usage(now=now, limit=size, lease_until=now + self._lease)
                customers = self._customers(uow, claimed)
            if not claimed:
                break
            batch = _Batch()
            try:
                stopped = self._send(claimed, customers, batch)
            except Exception:
                # an unexpected failure: keep what was sent, give the rest back
                done = {*batch.sent, *(r.identifier for r, _ in (*batch.retry, *batch.dead))}
                batch.untried = [r.identifier for r in claimed if r.identifier not in done]
                self._write_back(batch, errors)
                raise
            failed, dead = self._write_back(batch, errors)
            totals["sent"] += len(batch.sent)
            totals["failed"] += failed
            totals["dead"] += dead
            totals["released"] += len(batch.untried)
            totals["calls"] += batch.calls
            if remaining is not None:
                remaining -= len(claimed)
            if stopped or len(claimed) < size:
                break
        return FlushResult(**totals, errors=tuple(errors))

    @staticmethod
    def _customers(uow: UnitOfWork, claimed: Sequence[UsageRecord]) -> dict[str, str]:
        """The Stripe customer of each user in ``claimed`` that has a live one."""
        found: dict[str, str] = {}
        for user_id in dict.fromkeys(record.user_id for record in claimed):
            link = uow.customer_for_user(user_id)
            if link is not None and not link.deleted:
                found[user_id] = link.customer_id
        return found

    def _send(
        self, claimed: Sequence[UsageRecord], customers: dict[str, str], batch: _Batch
    ) -> bool:
        """Send ``claimed`` in order into ``batch``; ``True`` when it stopped early."""
        for index, record in enumerate(claimed):
            customer_id = customers.get(record.user_id)
            if customer_id is None:
                batch.retry.append(
                    (record, f"user {record.user_id!r} has no Stripe customer (yet)")
                )
                continue
            batch.calls += 1
            try:
                self._gateway.create_meter_event(
                    event_name=record.event_name,
                    customer_id=customer_id,
                    value=record.value,
                    identifier=record.identifier,
                    timestamp=record.timestamp,
                )
            except GatewayError as exc:
                message = f"{type(exc).__name__}: {exc}"
                if exc.retryable:
                    batch.retry.append((record, message))
                    batch.untried = [r.identifier for r in claimed[index + 1 :]]
                    return True
                batch.dead.append((record, message))
                continue
            batch.sent.append(record.identifier)
        return False

    def _write_back(self, batch: _Batch, errors: list[str]) -> tuple[int, int]:
        """Record ``batch``'s outcomes in one unit of work; returns (failed, dead) counts."""
        now = self._clock()
        failed = dead = 0
        with self._repository.unit_of_work() as uow:
            if batch.sent:
                uow.mark_usage_sent(batch.sent, sent_at=now)
            for record, error in batch.dead:
                uow.mark_usage_dead(record.identifier, error=error)
                dead += 1
            for record, error in batch.retry:
                attempts = record.attempts + 1
                if self._retry.gives_up(attempts):
                    uow.mark_usage_dead(record.identifier, error=error)
                    dead += 1
                else:
                    retry_at = now + self._retry.delay(attempts)
                    uow.schedule_usage_retry(
                        record.identifier, error=error, next_attempt_at=retry_at
                    )
                    failed += 1
            if batch.untried:
                uow.release_usage(batch.untried)
        for record, error in (*batch.dead, *batch.retry):
            logger.warning("usage record %s not sent: %s", record.identifier, error)
            errors.append(f"{record.identifier}: {error}")
        return failed, dead

    # ------------------------------------------------------------------------------ reads

    def usage(
        self,
        user_id: str,
        meter_event_name: str,
        period: tuple[datetime, datetime] | None = None,
    ) -> UsageTotal:
        """What ``user_id`` recorded of ``meter_event_name`` in ``period``; no Stripe call.

        ``period`` is ``(start, end)``, aware, end excluded; by default the current period
        of the user's live subscription (an empty total when there is none). Counts every
        record of the period whether or not Stripe has it yet (``unsent`` says how many
        are still in the outbox), dead ones excluded.
        """
        with self._repository.unit_of_work() as uow:
            if period is None:
                period = self._current_period(uow, user_id)
                if period is None:
                    return UsageTotal()
            start, end = period
            for moment in (start, end):
                if moment.tzinfo is None or moment.utcoffset() is None:
                    raise InvalidInputError("period bounds must be timezone-aware datetimes")
            return uow.usage_total(user_id, meter_event_name, start=start, end=end)

    @staticmethod
    def _current_period(uow: UnitOfWork, user_id: str) -> tuple[datetime, datetime] | None:
        for sub in uow.subscriptions_for_user(user_id):
            if (
                sub.status in _PERIOD_STATUSES
                and sub.current_period_start is not None
                and sub.current_period_end is not None
            ):
                return sub.current_period_start, sub.current_period_end
        return None

    def failures(self, *, limit: int = 100) -> list[UsageRecord]:
        """Records that failed at least once and are not sent: ``failed`` then ``dead``."""
        with self._repository.unit_of_work() as uow:
            failed = uow.list_usage(status=UsageStatus.FAILED, limit=limit)
            return failed + uow.list_usage(status=UsageStatus.DEAD, limit=limit - len(failed))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lease={self._lease})"
