"""Deferred processing: the inline dispatcher, the retry policy and what ``drain`` returns.

``WebhookProcessor.receive`` stores a verified event as ``pending`` and hands its id to a
``Dispatcher``; ``process`` or ``drain`` applies it later. A failed
attempt is retried after an exponential back-off with jitter (``RetryPolicy``) and,
after ``webhook_max_attempts`` failures, the event is ``dead`` until replayed. Guide:
``docs/deferred.md``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from billingkit.config import BillingConfig

if TYPE_CHECKING:
    from billingkit.services.webhooks.processor import WebhookProcessor

__all__ = ["DrainResult", "InlineDispatcher", "RetryPolicy"]

logger = logging.getLogger("billingkit.webhooks")


class InlineDispatcher:
    """A ``Dispatcher`` that processes the event at once, in the caller.

    ``receive`` then behaves like ``handle`` in two transactions (store, then apply), and
    answers ``queued`` even when the apply failed: the failure is recorded with its retry
    time, and ``drain`` retries it. Never raises.
    """

    __slots__ = ("_processor",)

    def __init__(self, processor: WebhookProcessor) -> None:
        self._processor = processor

    def dispatch(self, event_id: str) -> None:
        """Process ``event_id`` now; a failure is logged (and already recorded), not raised."""
        try:
            self._processor.process(event_id)
        except Exception:
            logger.exception("inline processing of event %s failed; drain will retry it", event_id)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed deferred event is tried again, and when it gives up.

    The ``n``-th failure (``n`` from 1) waits ``min(max_seconds, base_seconds * 2 ** (n - 1))``
    less a random fraction of up to ``jitter`` of it; the failure that reaches
    ``max_attempts`` makes the event ``dead`` instead.
    """

    max_attempts: int = 8
    base_seconds: float = 30.0
    max_seconds: float = 3600.0
    jitter: float = 0.2
    random: Callable[[], float] = random.random

    @classmethod
    def from_config(cls, config: BillingConfig) -> RetryPolicy:
        """The policy set by ``config``'s ``webhook_max_attempts`` and ``webhook_retry_*``."""
        return cls(
            max_attempts=config.webhook_max_attempts,
            base_seconds=config.webhook_retry_base_seconds,
            max_seconds=config.webhook_retry_max_seconds,
            jitter=config.webhook_retry_jitter,
        )

    def gives_up(self, attempts: int) -> bool:
        """Whether an event that failed its ``attempts``-th attempt is now dead."""
        return attempts >= self.max_attempts

    def delay(self, attempts: int) -> timedelta:
        """How long after its ``attempts``-th failed attempt an event is due again."""
        exponent = min(max(attempts, 1) - 1, 64)
        seconds = min(self.max_seconds, self.base_seconds * 2.0**exponent)
        seconds *= 1.0 - self.jitter * self.random()
        return timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class DrainResult:
    """What one ``drain`` call did, by outcome; every claimed event is in one count."""

    processed: int = 0
    ignored: int = 0
    stale: int = 0
    failed: int = 0  # failed and due again later
    dead: int = 0  # failed for the last allowed time

    @property
    def total(self) -> int:
        """How many events were claimed (the sum of the counts)."""
        return self.processed + self.ignored + self.stale + self.failed + self.dead
