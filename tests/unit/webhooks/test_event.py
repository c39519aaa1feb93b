"""Parsing a verified body into a WebhookEvent: the envelope, malformed bodies, livemode."""

from __future__ import annotations

import json

import pytest

from billingkit.errors import WebhookPayloadError
from billingkit.services.webhooks import WebhookOutcome, parse_event

from .webhook_support import Harness, load

SUB = load("openapi/2026-07-29_f0758b15/subscription.json")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "JSON"),
        (b"\xff\xfe\x00", "JSON"),
        (b"[1, 2]", "object"),
        (b'"evt"', "object"),
        (b'{"type": "x", "created": 1, "data": {"object": {}}}', "id"),
        (b'{"id": "evt_1", "created": 1, "data": {"object": {}}}', "type"),
        (b'{"id": "evt_1", "type": "x", "data": {"object": {}}}', "created"),
        (b'{"id": "evt_1", "type": "x", "created": 1}', "data"),
        (b'{"id": "evt_1", "type": "x", "created": 1, "data": {"object": []}}', "data.object"),
        (b'{"id": 5, "type": "x", "created": 1, "data": {"object": {}}}', "id"),
        (b'{"id": "evt_1", "object": "charge", "type": "x", "created": 1, "data": {}}', "event"),
    ],
)
def test_signed_but_malformed_bodies_are_payload_errors(body: bytes, message: str) -> None:
    h = Harness()
    with pytest.raises(WebhookPayloadError, match=message):
        h.processor.handle(body, h.sign(body))
    assert h.snapshot() == Harness().snapshot()


def test_livemode_mismatch_is_rejected_both_ways() -> None:
    test_mode = Harness()
    live_event = test_mode.event("customer.subscription.updated", SUB, livemode=True)
    with pytest.raises(WebhookPayloadError, match="test-mode"):
        test_mode.deliver(live_event)
    live = Harness(livemode=True)
    with pytest.raises(WebhookPayloadError, match="live-mode"):
        live.deliver(live.event("customer.subscription.updated", SUB))
    assert live.deliver(live_event).outcome is WebhookOutcome.PROCESSED


def test_parse_event_reads_the_envelope() -> None:
    event = load("pay/account.updated.json")
    parsed = parse_event(json.dumps(event).encode())
    assert parsed.id == event["id"]
    assert parsed.type == "account.updated"
    assert parsed.created == event["created"]
    assert parsed.api_version == event["api_version"]
    assert parsed.object == event["data"]["object"]
    assert parsed.previous_attributes == event["data"].get("previous_attributes")
    assert parsed.created_at.timestamp() == event["created"]
