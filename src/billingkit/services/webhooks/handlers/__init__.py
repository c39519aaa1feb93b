"""Webhook handlers, one module per event family; what every handler receives.

A handler applies one event inside the open unit of work (through
``billingkit.services.apply``), fires hooks, and returns the ledger status:
``PROCESSED``, ``STALE`` (older than the stored state) or ``IGNORED`` (nothing of ours).
The dispatch table is ``billingkit.services.webhooks.registry.HANDLERS``; what each
event type does: ``docs/webhooks.md#what-each-event-type-does``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from billingkit.domain import EventStatus
from billingkit.domain.access import AccessPolicy
from billingkit.ports import StripeGateway, UnitOfWork
from billingkit.services.apply import PlanResolver
from billingkit.services.hooks import HookRegistry
from billingkit.services.webhooks.event import WebhookEvent

__all__ = ["Handler", "HandlerContext", "WebhookCatalog"]


class WebhookCatalog(PlanResolver, Protocol):
    """What the webhook processor needs from the catalog (``PlanCatalog`` satisfies it)."""

    def invalidate(self) -> None:
        """Forget cached prices."""
        ...


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """Everything a handler may use; built by the processor for one event.

    ``access`` is the configured policy: it decides which status changes are activations.
    """

    uow: UnitOfWork
    event: WebhookEvent
    gateway: StripeGateway
    catalog: WebhookCatalog
    hooks: HookRegistry
    access: AccessPolicy


#: A handler: applies one event inside its unit of work and returns the ledger status.
Handler = Callable[[HandlerContext], EventStatus]
