"""Stripe webhooks: the processor, the parsed event, the handlers by event family.

* ``.event`` — ``WebhookEvent``, ``parse_event``;
* ``.processor`` — ``WebhookProcessor`` and its results;
* ``.deferred`` — ``InlineDispatcher``, ``RetryPolicy``, ``DrainResult``;
* ``.registry`` — ``HANDLERS``, event type -> handler;
* ``.handlers`` — one module per family: ``subscriptions``, ``checkout``, ``invoices``,
  ``customers``, ``catalog``.

Guide: ``docs/webhooks.md``.
"""

from billingkit.services.webhooks.deferred import DrainResult, InlineDispatcher, RetryPolicy
from billingkit.services.webhooks.event import WebhookEvent, parse_event
from billingkit.services.webhooks.processor import (
    WebhookOutcome,
    WebhookProcessor,
    WebhookResponse,
    WebhookResult,
)

__all__ = [
    "DrainResult",
    "InlineDispatcher",
    "RetryPolicy",
    "WebhookEvent",
    "WebhookOutcome",
    "WebhookProcessor",
    "WebhookResponse",
    "WebhookResult",
    "parse_event",
]
