"""``price.*``, ``plan.*``, ``product.*``: the catalog's cached prices are out of date."""

from __future__ import annotations

from billingkit.domain import EventStatus
from billingkit.services.webhooks.handlers import HandlerContext

__all__ = ["catalog_changed"]


def catalog_changed(ctx: HandlerContext) -> EventStatus:
    """Invalidate the catalog's cached prices."""
    ctx.catalog.invalidate()
    return EventStatus.PROCESSED
