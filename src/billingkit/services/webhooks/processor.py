"""The webhook processor: verify, record and apply Stripe events, exactly once, in order.

Size check, signature (``billingkit.signature``), ``parse_event``, claim in the
ledger, the handler from ``HANDLERS`` with the app's hooks, commit. Steps up to
the parse raise only ``WebhookError`` (400) and store nothing; any
later exception rolls back, is recorded as ``failed`` and re-raised (500, Stripe retries).
The whole pipeline and the HTTP answers: ``docs/webhooks.md``.

Deferred mode (``docs/deferred.md``): ``receive`` stores the verified
event as ``pending`` in one write and hands its id to a ``Dispatcher``;
``process`` applies one stored event, ``drain``
applies due events in batches; failures back off (``.deferred``) and end ``dead``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, TypeVar, overload

from billingkit.config import BillingConfig
from billingkit.domain import EventRecord, EventStatus
from billingkit.errors import (
    ConfigurationError,
    InvalidInputError,
    RepositoryError,
    WebhookError,
    WebhookPayloadError,
)
from billingkit.ports import (
    ClaimOutcome,
    Clock,
    Dispatcher,
    Repository,
    StripeGateway,
    UnitOfWork,
    require_aware_clock,
    system_clock,
)
from billingkit.services.hooks import HookEvent, HookRegistry
from billingkit.services.webhooks.deferred import DrainResult, RetryPolicy
from billingkit.services.webhooks.event import (
    CREATED_MAX,
    ID_MAX,
    WebhookEvent,
    parse_event,
    usable_event_id,
)
from billingkit.services.webhooks.handlers import HandlerContext, WebhookCatalog
from billingkit.services.webhooks.registry import HANDLERS
from billingkit.signature import verify_signature
from billingkit.stripe_objects import _build as build_value

__all__ = [
    "WebhookOutcome",
    "WebhookProcessor",
    "WebhookResponse",
    "WebhookResult",
]

logger = logging.getLogger("billingkit.webhooks")

#: How many times in a row ``drain`` retries a batch rolled back by a retryable error.
_BATCH_RETRIES = 3
#: Longest error text kept on a failed ledger entry.
_MAX_ERROR_CHARS = 1000


class WebhookOutcome(str, Enum):
    """What handling a (valid) webhook did; every outcome is answered 200."""

    PROCESSED = "processed"  # applied: state stored and hooks run
    DUPLICATE = "duplicate"  # the event id was already processed (or is being processed)
    IGNORED = "ignored"  # no handler for the type, or nothing of ours (unknown customer)
    STALE = "stale"  # older than the stored state: nothing changed
    QUEUED = "queued"  # stored as pending (deferred mode), or a failed event not due yet


_OUTCOME_OF_STATUS = {
    EventStatus.PROCESSED: WebhookOutcome.PROCESSED,
    EventStatus.IGNORED: WebhookOutcome.IGNORED,
    EventStatus.STALE: WebhookOutcome.STALE,
}


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """The outcome of one webhook, with the event's id and type."""

    outcome: WebhookOutcome
    event_id: str
    event_type: str


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    """What to answer Stripe: ``status`` (200, 400 or 500) and a small JSON ``body``."""

    status: int
    body: str
    content_type: str = "application/json"


_E = TypeVar("_E", bound=HookEvent)


class WebhookProcessor:
    """Verifies, records and applies Stripe webhooks; tells the app through hooks.

    Args:
        config: secrets (``webhook_secrets``; at least one), tolerance, maximum body size,
            livemode and the access policy (which statuses count as activated) come from here.
        gateway: used only to re-fetch a subscription on a same-second tie.
        repository: where the ledger and state live.
        catalog: resolves plan keys and is invalidated by ``price.*``/``product.*`` events
            (``PlanCatalog``).
        clock: current time (signature tolerance, ledger times).
        dispatcher: deferred mode (``docs/deferred.md``): ``handle`` and
            ``handle_http`` then ``receive`` and hand the id to it. ``None`` (the
            default): they apply the event inline, and ``receive`` only stores it for a
            ``drain`` worker.

    Raises ``ConfigurationError`` without a webhook secret: there is
    no way to switch verification off. Safe to share across threads once hooks are
    registered (``on``).
    """

    def __init__(
        self,
        config: BillingConfig,
        *,
        gateway: StripeGateway,
        repository: Repository,
        catalog: WebhookCatalog,
        clock: Clock = system_clock,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        secrets = tuple(config.secret_values())
        if not secrets:
            raise ConfigurationError(
                "BillingConfig.webhook_secrets is empty: webhooks cannot be verified"
            )
        self._secrets = secrets
        self._tolerance = config.webhook_tolerance_seconds
        self._max_bytes = config.webhook_max_body_bytes
        self._livemode = config.livemode
        self._access = config.access
        self._repository = repository
        self._gateway = gateway
        self._catalog = catalog
        self._clock = require_aware_clock(clock)
        self._hooks = HookRegistry()
        self._dispatcher = dispatcher
        self._retry = RetryPolicy.from_config(config)

    @property
    def hooks(self) -> HookRegistry:
        """The ``HookRegistry`` handlers tell things to."""
        return self._hooks

    @property
    def dispatcher(self) -> Dispatcher | None:
        """The dispatcher of deferred mode, or ``None`` (inline); may be set after building.

        Setting it later is how an ``InlineDispatcher``, which needs the
        processor, is attached.
        """
        return self._dispatcher

    @dispatcher.setter
    def dispatcher(self, dispatcher: Dispatcher | None) -> None:
        self._dispatcher = dispatcher

    @property
    def retry_policy(self) -> RetryPolicy:
        """The back-off of failed deferred events (from the configuration)."""
        return self._retry

    @retry_policy.setter
    def retry_policy(self, policy: RetryPolicy) -> None:
        self._retry = policy

    @overload
    def on(self, kind: type[_E], callback: Callable[[_E], object]) -> Callable[[_E], object]: ...
    @overload
    def on(self, kind: str, callback: Callable[[Any], object]) -> Callable[[Any], object]: ...

    def on(self, kind: Any, callback: Any) -> Any:
        """Register a hook: ``kind`` is an event class or its kind string (``HookKind``).

        Same as ``HookRegistry.on <billingkit.services.hooks.HookRegistry.on>`` on
        ``hooks``; returns ``callback``.
        """
        return self._hooks.on(kind, callback)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(secrets=<{len(self._secrets)} hidden>)"

    # --------------------------------------------------------------------------- entry points

    def verify(self, payload: bytes, signature: str | None) -> WebhookEvent:
        """Check size and signature, then parse; store nothing.

        Raises ``WebhookPayloadError`` (empty, too large, not an
        event, wrong livemode) or ``WebhookVerificationError``.
        """
        return parse_event(self._verified(payload, signature), livemode=self._livemode)

    def _verified(self, payload: bytes, signature: str | None) -> bytes:
        """The body as ``bytes`` once its size and signature are checked."""
        if not isinstance(payload, bytes):
            if not isinstance(payload, (bytearray, memoryview)):
                raise WebhookPayloadError("the body must be the raw request bytes")
            payload = bytes(payload)
        size = len(payload)
        if size == 0:
            raise WebhookPayloadError("empty body")
        if size > self._max_bytes:
            raise WebhookPayloadError(f"body larger than {self._max_bytes} bytes")
        now = int(self._clock().timestamp())
        verify_signature(payload, signature, self._secrets, now=now, tolerance=self._tolerance)
        return payload

    def _verified_event(self, payload: bytes, signature: str | None) -> tuple[WebhookEvent, bytes]:
        """Size, verify and parse the payload.

        A verified payload whose envelope is malformed is recorded as failed (when its id is
        usable) before the ``WebhookPayloadError`` propagates.
        """
        verified = self._verified(payload, signature)
        try:
            return parse_event(verified, livemode=self._livemode), verified
        except WebhookPayloadError as exc:
            self._record_unparsable(verified, exc)
            raise

    def handle(self, payload: bytes, signature: str | None) -> WebhookResult:
        """Verify, record and apply one webhook request.

        Returns the ``WebhookResult`` (processed, duplicate, ignored or stale). Raises
        ``WebhookError`` for a bad request (nothing stored); any
        other exception means the event failed: it was rolled back and recorded as failed,
        and a redelivery will be processed again. With a ``dispatcher`` this is
        ``receive`` (``queued`` or ``duplicate``).
        """
        if self._dispatcher is not None:
            return self.receive(payload, signature)
        event, payload = self._verified_event(payload, signature)
        return self._process(event, payload)

    def handle_http(self, payload: bytes, signature: str | None) -> WebhookResponse:
        """``handle``, mapped to an HTTP answer for framework glue.

        400 for a bad signature or payload, 200 for every outcome, 500 for a failure (logged
        with its traceback; Stripe retries). Never 200 for a failure.
        """
        return self._http(self.handle, payload, signature)

    def receive(self, payload: bytes, signature: str | None) -> WebhookResult:
        """Verify and store one webhook as ``pending``, then dispatch it; apply nothing.

        One durable write: the ledger row with the raw payload, inserted unless the id is
        already there, committed before the ``dispatcher`` (if any) gets the id. Returns
        ``queued``, or ``duplicate`` for an id already in the ledger (not dispatched again).
        Raises ``WebhookError`` for a bad request (nothing stored),
        a repository error if the write failed. A dispatcher that raises is logged and
        ignored: the event is stored, and ``drain`` applies it.
        """
        event, payload = self._verified_event(payload, signature)
        record = build_value(
            EventRecord,
            id=event.id,
            type=event.type,
            created=event.created_at,
            livemode=event.livemode,
            status=EventStatus.PENDING,
            attempts=0,
            last_error=None,
            payload=bytes(payload),
            received_at=self._clock(),
            processed_at=None,
            next_attempt_at=None,
        )
        with self._repository.unit_of_work() as uow:
            stored = uow.store_pending_event(record)
        if stored is ClaimOutcome.DUPLICATE:
            return WebhookResult(WebhookOutcome.DUPLICATE, event.id, event.type)
        dispatcher = self._dispatcher
        if dispatcher is not None:
            try:
                dispatcher.dispatch(event.id)
            except Exception:
                logger.exception("dispatching event %s failed; drain will apply it", event.id)
        return WebhookResult(WebhookOutcome.QUEUED, event.id, event.type)

    def receive_http(self, payload: bytes, signature: str | None) -> WebhookResponse:
        """``receive``, mapped to an HTTP answer for framework glue.

        200 for ``queued`` and ``duplicate``, 400 for a bad signature or payload, 500 only
        when the event could not be stored (Stripe retries).
        """
        return self._http(self.receive, payload, signature)

    def process(self, event_id: str) -> WebhookResult:
        """Apply one stored event (the job a dispatcher's worker runs), exactly once.

        Claims it if it is pending, or failed and due; applies it from the stored payload
        as ``handle`` does after its claim. Returns its outcome; ``duplicate`` when it
        was already processed (or ignored, stale, dead) or another worker holds it;
        ``queued`` when it failed before and its next attempt is not due yet. A failure
        is rolled back, recorded (due again after the back-off, or ``dead`` after the
        last allowed attempt) and re-raised. Raises
        ``InvalidInputError`` for an id not in the ledger.
        """
        now = self._clock()
        claimed: EventRecord | None = None
        try:
            with self._repository.unit_of_work() as uow:
                claimed = uow.claim_stored_event(event_id, now=now)
                if claimed is None:
                    stored = uow.get_event(event_id)
                else:
                    event = parse_event(claimed.payload, livemode=self._livemode)
                    status = self._apply(uow, event)
                    uow.finish_event(claimed.id, status, processed_at=now)
        except Exception as exc:
            if claimed is not None:
                self._record_deferred_failure(claimed, exc)
            raise
        if claimed is not None:
            return WebhookResult(_OUTCOME_OF_STATUS[status], claimed.id, claimed.type)
        if stored is None:
            raise InvalidInputError(f"no event {event_id!r} in the ledger")
        outcome = (
            WebhookOutcome.QUEUED
            if stored.status in (EventStatus.PENDING, EventStatus.FAILED)
            else WebhookOutcome.DUPLICATE
        )
        return WebhookResult(outcome, stored.id, stored.type)

    def drain(self, *, limit: int | None = None, batch_size: int = 100) -> DrainResult:
        """Apply due events (pending, or failed and due) in batches, oldest first.

        Each batch is claimed and applied in one transaction, with a savepoint per event: a
        failing event rolls back alone and is recorded (due again later, or ``dead``), the
        others commit. Workers on any number of machines can drain one ledger at once: a
        batch's events are locked (``FOR UPDATE SKIP LOCKED``; SQLite has one writer), so no
        event is applied twice. Stops when no due event is left or after ``limit`` events
        (``None``: no limit). Raises ``InvalidInputError`` for a
        ``batch_size`` below 1 or a negative ``limit``; a repository failure rolls back the
        batch and propagates.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError("batch_size must be a positive integer")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise InvalidInputError("limit must be an integer or None")
        if limit is not None and limit < 0:
            raise InvalidInputError("limit must not be negative")
        counts = dict.fromkeys(("processed", "ignored", "stale", "failed", "dead"), 0)
        done = 0
        retries = 0
        while limit is None or done < limit:
            size = batch_size if limit is None else min(batch_size, limit - done)
            batch = dict.fromkeys(counts, 0)
            try:
                claimed = self._drain_batch(size, batch)
            except RepositoryError as exc:
                # a deadlock or a lost connection: the batch rolled back as a whole
                if not exc.retryable or retries >= _BATCH_RETRIES:
                    raise
                retries += 1
                logger.warning("drain batch rolled back (%s); trying again", exc)
                time.sleep(0.05 * retries)
                continue
            retries = 0
            for key, value in batch.items():
                counts[key] += value
            done += claimed
            if claimed < size:
                break
        return DrainResult(**counts)

    def pending_count(self) -> int:
        """How many received events wait for their first attempt (status ``pending``)."""
        return self.event_count(EventStatus.PENDING)

    def event_count(self, status: EventStatus) -> int:
        """How many ledger entries have ``status`` (e.g. ``failed`` or ``dead``), for monitoring."""
        with self._repository.unit_of_work() as uow:
            return uow.count_events(EventStatus(status))

    def oldest_pending_age(self) -> timedelta | None:
        """How long ago the oldest pending event was received (``None``: nothing pending)."""
        with self._repository.unit_of_work() as uow:
            oldest = uow.oldest_received_at(EventStatus.PENDING)
        if oldest is None:
            return None
        return max(self._clock() - oldest, timedelta(0))

    def _http(
        self,
        call: Callable[[bytes, str | None], WebhookResult],
        payload: bytes,
        signature: str | None,
    ) -> WebhookResponse:
        try:
            result = call(payload, signature)
        except WebhookError as exc:
            return WebhookResponse(400, json.dumps({"error": str(exc)}))
        except Exception:
            logger.exception("webhook processing failed; answering 500 so Stripe retries")
            return WebhookResponse(500, '{"error": "processing failed; retry later"}')
        body = {
            "outcome": result.outcome.value,
            "event_id": result.event_id,
            "event_type": result.event_type,
        }
        return WebhookResponse(200, json.dumps(body))

    def replay(self, event_id: str) -> WebhookResult:
        """Apply a stored event again from the ledger's raw payload, without Stripe.

        No signature check is made: the payload was verified when it was first received,
        and the ledger is trusted storage. Meant for events recorded as ``failed``,
        ``dead`` (revived: due now) or ``pending``, after the cause was fixed; an event
        already processed, ignored or stale gives ``duplicate``. Failures behave as in
        ``process`` (a dead event that fails again is dead again). Raises
        ``InvalidInputError`` for an id not in the ledger.
        """
        with self._repository.unit_of_work() as uow:
            record = uow.revive_event(event_id)
        if record is None:
            raise InvalidInputError(f"no event {event_id!r} in the ledger")
        return self.process(event_id)

    # --------------------------------------------------------------------------- internals

    def _process(self, event: WebhookEvent, payload: bytes) -> WebhookResult:
        now = self._clock()
        handler = HANDLERS.get(event.type)
        # The ledger row is written once, by the claim, with the outcome expected (it stays
        # invisible until the commit): a different outcome costs a finish, a failure rolls
        # the row back and is recorded in its own unit of work.
        expected = EventStatus.IGNORED if handler is None else EventStatus.PROCESSED
        record = build_value(
            EventRecord,
            id=event.id,
            type=event.type,
            created=event.created_at,
            livemode=event.livemode,
            status=expected,
            attempts=1,
            last_error=None,
            payload=payload,
            received_at=now,
            processed_at=now,
            next_attempt_at=None,
        )
        try:
            with self._repository.unit_of_work() as uow:
                if uow.claim_event(record) is ClaimOutcome.DUPLICATE:
                    return WebhookResult(WebhookOutcome.DUPLICATE, event.id, event.type)
                if handler is None:
                    status = expected
                else:
                    status = handler(
                        HandlerContext(
                            uow, event, self._gateway, self._catalog, self._hooks, self._access
                        )
                    )
                    if status is not expected:
                        uow.finish_event(event.id, status, processed_at=now)
        except Exception as exc:
            failed = record.model_copy(
                update={"status": EventStatus.PROCESSING, "processed_at": None}
            )
            self._record_failure(failed, exc)
            raise
        return WebhookResult(_OUTCOME_OF_STATUS[status], event.id, event.type)

    def _record_unparsable(self, payload: bytes, exc: WebhookPayloadError) -> None:
        """Record a verified event whose envelope is malformed, when its id is usable.

        The id keys the ledger entry: without a usable one nothing can be recorded (the
        400 and a log line are all there is). The other envelope fields are kept when
        valid, else ``type`` is empty and ``created`` is the time of receipt.
        """
        try:
            body = json.loads(payload)
        except (ValueError, RecursionError):
            body = None
        fields: dict[str, Any] = body if type(body) is dict else {}
        event_id = usable_event_id(fields.get("id"))
        if event_id is None:
            logger.warning("verified webhook without a usable event id refused: %s", exc)
            return
        now = self._clock()
        event_type = fields.get("type")
        created = fields.get("created")
        livemode = fields.get("livemode")
        record = EventRecord.model_construct(
            id=event_id,
            type=event_type
            if type(event_type) is str and len(event_type) <= ID_MAX and event_type.isprintable()
            else "",
            created=datetime.fromtimestamp(created, tz=timezone.utc)
            if type(created) is int and 0 < created <= CREATED_MAX
            else now,
            livemode=livemode if type(livemode) is bool else False,
            status=EventStatus.PROCESSING,
            attempts=1,
            last_error=None,
            payload=payload,
            received_at=now,
            processed_at=None,
            next_attempt_at=None,
        )
        self._record_failure(record, exc)

    def _apply(self, uow: UnitOfWork, event: WebhookEvent) -> EventStatus:
        handler = HANDLERS.get(event.type)
        if handler is None:
            return EventStatus.IGNORED
        context = HandlerContext(
            uow, event, self._gateway, self._catalog, self._hooks, self._access
        )
        return handler(context)

    def _drain_batch(self, size: int, counts: dict[str, int]) -> int:
        now = self._clock()
        with self._repository.unit_of_work() as uow:
            records = uow.claim_due_events(now=now, limit=size)
            for record in records:
                try:
                    with uow.savepoint():
                        event = parse_event(record.payload, livemode=self._livemode)
                        status = self._apply(uow, event)
                        uow.finish_event(record.id, status, processed_at=now)
                except Exception as exc:
                    if isinstance(exc, RepositoryError) and exc.retryable:
                        raise  # the transaction itself is in doubt: roll the batch back
                    dead = self._schedule_retry(uow, record, _error_text(exc), now)
                    counts["dead" if dead else "failed"] += 1
                else:
                    counts[status.value] += 1
        return len(records)

    def _schedule_retry(
        self, uow: UnitOfWork, record: EventRecord, error: str, now: datetime
    ) -> bool:
        """Record a failed attempt of a claimed event; True when it is now dead."""
        if self._retry.gives_up(record.attempts):
            uow.mark_event_dead(record.id, error=error)
            logger.error(
                "event %s (%s) failed on attempt %d and is dead (replay it once fixed): %s",
                record.id,
                record.type,
                record.attempts,
                error,
            )
            return True
        retry_at = now + self._retry.delay(record.attempts)
        uow.schedule_event_retry(record.id, error=error, next_attempt_at=retry_at)
        logger.warning(
            "event %s (%s) failed on attempt %d, retried from %s: %s",
            record.id,
            record.type,
            record.attempts,
            retry_at.isoformat(),
            error,
        )
        return False

    def _record_deferred_failure(self, claimed: EventRecord, exc: Exception) -> None:
        """After a rolled-back ``process``: count the attempt and schedule the next one."""
        error = _error_text(exc)
        try:
            with self._repository.unit_of_work() as uow:
                stored = uow.mark_event_failed(claimed, error)
                self._schedule_retry(uow, stored, error, self._clock())
        except Exception:
            logger.exception("could not record the failure of event %s", claimed.id)

    def _record_failure(self, record: EventRecord, exc: Exception) -> None:
        error = _error_text(exc)
        try:
            with self._repository.unit_of_work() as uow:
                stored = uow.mark_event_failed(record, error)
        except Exception:
            logger.exception("could not record the failure of event %s", record.id)
            return
        logger.warning(
            "event %s (%s) failed on attempt %d: %s",
            record.id,
            record.type,
            stored.attempts,
            error,
        )


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
