"""``customer.updated``/``customer.deleted`` handlers."""

from __future__ import annotations

import pytest

from billingkit.services.webhooks import WebhookOutcome

from .webhook_support import Harness, link, load


def test_customer_updated_and_deleted_change_a_linked_customer() -> None:
    h = Harness()
    customer = {**load("pay/customer.updated.json")["object"], "email": "new@example.com"}
    link(h, "user_4", customer["id"])
    h.deliver(h.event("customer.updated", customer, created=h.clock.seconds - 20))
    with h.repository.unit_of_work() as uow:
        stored = uow.customer_by_id(customer["id"])
        assert stored is not None and stored.email == "new@example.com"
    older = {**customer, "email": "old@example.com"}
    result = h.deliver(h.event("customer.updated", older, created=h.clock.seconds - 30))
    assert result.outcome is WebhookOutcome.STALE
    deleted = h.event("customer.deleted", customer, created=h.clock.seconds - 10)
    assert h.deliver(deleted).outcome is WebhookOutcome.PROCESSED
    with h.repository.unit_of_work() as uow:
        stored = uow.customer_by_id(customer["id"])
        assert stored is not None and stored.deleted and stored.email == "new@example.com"


@pytest.mark.parametrize(
    "source", ["pay/customer.deleted.json", "openapi/2026-07-29_f0758b15/deleted_customer.json"]
)
def test_unlinked_customer_events_are_ignored(source: str) -> None:
    h = Harness()
    body = load(source)
    obj = body.get("object") if isinstance(body.get("object"), dict) else body
    result = h.deliver(h.event("customer.deleted", obj))
    assert result.outcome is WebhookOutcome.IGNORED
