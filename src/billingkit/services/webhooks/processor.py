"""The webhook processor: verify, record and apply Stripe events, exactly once, in order.

Size check, signature (:mod:`billingkit.signature`), :func:`~.event.parse_event`, claim in the
ledger, the handler from :data:`~.registry.HANDLERS` with the app's hooks, commit. Steps up to
the parse raise only :class:`~billingkit.errors.WebhookError` (400) and store nothing; any
later exception rolls back, is recorded as ``failed`` and re-raised (500, Stripe retries).
The whole pipeline and the HTTP answers: ``docs/webhooks.md``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any, TypeVar, overload

from billingkit.config import BillingConfig
from billingkit.domain import EventRecord, EventStatus
from billingkit.errors import (
    ConfigurationError,
    InvalidInputError,
    WebhookError,
    WebhookPayloadError,
)
from billingkit.ports import (
    ClaimOutcome,
    Clock,
    Repository,
    StripeGateway,
    require_aware_clock,
    system_clock,
)
from billingkit.services.hooks import HookEvent, HookRegistry
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

__all__ = [
    "WebhookOutcome",
    "WebhookProcessor",
    "WebhookResponse",
    "WebhookResult",
]

logger = logging.getLogger("billingkit.webhooks")

#: Longest error text kept on a failed ledger entry.
_MAX_ERROR_CHARS = 1000


class WebhookOutcome(str, Enum):
    """What handling a (valid) webhook did; every outcome is answered 200."""

    PROCESSED = "processed"  # applied: state stored and hooks run
    DUPLICATE = "duplicate"  # the event id was already processed (or is being processed)
    IGNORED = "ignored"  # no handler for the type, or nothing of ours (unknown customer)
    STALE = "stale"  # older than the stored state: nothing changed


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

    Raises :class:`~billingkit.errors.ConfigurationError` without a webhook secret: there is
    no way to switch verification off. Safe to share across threads once hooks are
    registered (:meth:`on`).
    """

    def __init__(
        self,
        config: BillingConfig,
        *,
        gateway: StripeGateway,
        repository: Repository,
        catalog: WebhookCatalog,
        clock: Clock = system_clock,
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

    @property
    def hooks(self) -> HookRegistry:
        """The :class:`~billingkit.services.hooks.HookRegistry` handlers tell things to."""
        return self._hooks

    @overload
    def on(self, kind: type[_E], callback: Callable[[_E], object]) -> Callable[[_E], object]: ...
    @overload
    def on(self, kind: str, callback: Callable[[Any], object]) -> Callable[[Any], object]: ...

    def on(self, kind: Any, callback: Any) -> Any:
        """Register a hook: ``kind`` is an event class or its kind string (``HookKind``).

        Same as :meth:`HookRegistry.on <billingkit.services.hooks.HookRegistry.on>` on
        :attr:`hooks`; returns ``callback``.
        """
        return self._hooks.on(kind, callback)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(secrets=<{len(self._secrets)} hidden>)"

    # --------------------------------------------------------------------------- entry points

    def verify(self, payload: bytes, signature: str | None) -> WebhookEvent:
        """Check size and signature, then parse; store nothing.

        Raises :class:`~billingkit.errors.WebhookPayloadError` (empty, too large, not an
        event, wrong livemode) or :class:`~billingkit.errors.WebhookVerificationError`.
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

    def handle(self, payload: bytes, signature: str | None) -> WebhookResult:
        """Verify, record and apply one webhook request.

        Returns the :class:`WebhookResult` (processed, duplicate, ignored or stale). Raises
        :class:`~billingkit.errors.WebhookError` for a bad request (nothing stored); any
        other exception means the event failed: it was rolled back and recorded as failed,
        and a redelivery will be processed again.
        """
        payload = self._verified(payload, signature)
        try:
            event = parse_event(payload, livemode=self._livemode)
        except WebhookPayloadError as exc:
            self._record_unparsable(payload, exc)
            raise
        return self._process(event, payload)

    def handle_http(self, payload: bytes, signature: str | None) -> WebhookResponse:
        """:meth:`handle`, mapped to an HTTP answer for framework glue.

        400 for a bad signature or payload, 200 for every outcome, 500 for a failure (logged
        with its traceback; Stripe retries). Never 200 for a failure.
        """
        try:
            result = self.handle(payload, signature)
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
        and the ledger is trusted storage. Meant for events recorded as ``failed`` (or
        ``pending``) after the cause was fixed; an event already processed, ignored or stale
        gives ``duplicate``. Failures behave as in :meth:`handle`. Raises
        :class:`~billingkit.errors.InvalidInputError` for an id not in the ledger.
        """
        with self._repository.unit_of_work() as uow:
            record = uow.get_event(event_id)
        if record is None:
            raise InvalidInputError(f"no event {event_id!r} in the ledger")
        event = parse_event(record.payload, livemode=self._livemode)
        return self._process(event, record.payload)

    # --------------------------------------------------------------------------- internals

    def _process(self, event: WebhookEvent, payload: bytes) -> WebhookResult:
        now = self._clock()
        record = EventRecord.model_construct(
            id=event.id,
            type=event.type,
            created=event.created_at,
            livemode=event.livemode,
            status=EventStatus.PROCESSING,
            attempts=1,
            last_error=None,
            payload=payload,
            received_at=now,
            processed_at=None,
        )
        try:
            with self._repository.unit_of_work() as uow:
                if uow.claim_event(record) is ClaimOutcome.DUPLICATE:
                    return WebhookResult(WebhookOutcome.DUPLICATE, event.id, event.type)
                handler = HANDLERS.get(event.type)
                if handler is None:
                    status = EventStatus.IGNORED
                else:
                    context = HandlerContext(
                        uow, event, self._gateway, self._catalog, self._hooks, self._access
                    )
                    status = handler(context)
                uow.finish_event(event.id, status, processed_at=now)
        except Exception as exc:
            self._record_failure(record, exc)
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
        )
        self._record_failure(record, exc)

    def _record_failure(self, record: EventRecord, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
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
