"""``price.*``/``plan.*``/``product.*`` handlers: invalidate the catalog."""

from __future__ import annotations

import pytest

from billingkit.services.webhooks import WebhookOutcome

from .webhook_support import Harness, load


class SpyCatalog:
    def __init__(self) -> None:
        self.invalidated = 0

    def invalidate(self) -> None:
        self.invalidated += 1

    def plan_key_for_price(self, price_id: str) -> str | None:
        return None


@pytest.mark.parametrize(
    ("kind", "source"),
    [
        ("price.updated", "openapi/2026-07-29_f0758b15/price.json"),
        ("price.deleted", "openapi/2026-07-29_f0758b15/deleted_price.json"),
        ("price.created", "dj-stripe/price_gold21323.json"),
        ("plan.updated", "openapi/2017-09-20_bb581d37/plan.json"),
        ("product.updated", "openapi/2020-09-02_dd1cdfcd/product.json"),
        ("product.deleted", "openapi/2025-03-25_1ef159c3/deleted_product.json"),
        ("product.created", "dj-stripe/product_prod_fake1.json"),
    ],
)
def test_catalog_events_invalidate_the_catalog(kind: str, source: str) -> None:
    h = Harness()
    spy = SpyCatalog()
    h.processor._catalog = spy
    assert h.deliver(h.event(kind, load(source))).outcome is WebhookOutcome.PROCESSED
    assert spy.invalidated == 1
