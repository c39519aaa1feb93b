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
    after, empty = h.snapshot(), Harness().snapshot()
    # A verified body with a usable event id is recorded as failed; nothing else is stored.
    assert {k: v for k, v in after.items() if k != "events"} == {
        k: v for k, v in empty.items() if k != "events"
    }
    recorded = h.stored_event("evt_1")
    if b'"id": "evt_1"' in body:
        assert recorded is not None and recorded.status.value == "failed"
        assert recorded.payload == body and message in (recorded.last_error or "")
    else:
        assert after == empty


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


# --------------------------------------------------------------------------- issue 11 items 3-4


def _envelope(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "id": "evt_1Pgc76B7WZ01zgkWwyRHS12y",
        "object": "event",
        "type": "customer.subscription.updated",
        "created": 1_772_000_000,
        "livemode": False,
        "api_version": "2025-03-31.basil",
        "data": {"object": dict(SUB)},
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"created": 253402300800}, "created"),
        ({"created": 10**20}, "created"),
        ({"created": -1}, "created"),
        ({"created": 1.5}, "created"),
        ({"created": True}, "created"),
        ({"livemode": {"x": 1}}, "livemode"),
        ({"api_version": {"v": 1}}, "api_version"),
        ({"api_version": "2025\x00"}, "api_version"),
        ({"api_version": "x" * 65}, "api_version"),
        ({"type": "a" * 256}, "type"),
        ({"type": "customer.subscription.updated\x00"}, "type"),
        ({"type": ["customer.updated"]}, "type"),
        ({"data": {"object": {**SUB, "id": "sub_" + "x" * 300}}}, "data.object.id"),
        ({"data": {"object": {**SUB, "id": "sub_1\x00"}}}, "data.object.id"),
        ({"data": {"object": {**SUB, "id": 12}}}, "data.object.id"),
    ],
)
def test_an_out_of_range_envelope_is_a_400_naming_the_field_and_is_recorded(
    changes: dict[str, object], field: str
) -> None:
    h = Harness()
    body = json.dumps(_envelope(**changes)).encode()
    response = h.processor.handle_http(body, h.sign(body))
    assert response.status == 400
    assert field in json.loads(response.body)["error"]
    record = h.stored_event("evt_1Pgc76B7WZ01zgkWwyRHS12y")
    assert record is not None
    assert record.status.value == "failed"
    assert field in (record.last_error or "")
    assert record.payload == body
    # Only the ledger changed.
    assert {k: v for k, v in h.snapshot().items() if k != "events"} == {
        k: v for k, v in Harness().snapshot().items() if k != "events"
    }


@pytest.mark.parametrize(
    "event_id",
    ["evt_" + "x" * 252, "evt_1\x00", "evt 1", "evt_ü", "", "evt_1\n"],
)
def test_an_unusable_event_id_is_a_400_and_records_nothing(event_id: str) -> None:
    h = Harness()
    body = json.dumps(_envelope(id=event_id)).encode()
    response = h.processor.handle_http(body, h.sign(body))
    assert response.status == 400
    assert "id" in json.loads(response.body)["error"]
    assert h.snapshot() == Harness().snapshot()


def test_the_longest_stripe_shaped_ids_are_accepted() -> None:
    h = Harness()
    event_id = "evt_" + "A1_" * 83 + "x"  # 254 characters
    body = json.dumps(
        _envelope(id=event_id, type="account.updated", created=h.clock.seconds - 5)
    ).encode()
    assert parse_event(body).id == event_id
    assert h.processor.handle(body, h.sign(body)).outcome is WebhookOutcome.IGNORED


def test_a_bad_envelope_does_not_touch_an_event_already_processed() -> None:
    h = Harness()
    good = h.event("customer.updated", {"id": "cus_1", "object": "customer"}, event_id="evt_same")
    assert h.deliver(good).outcome is WebhookOutcome.IGNORED
    before = h.stored_event("evt_same")
    bad = json.dumps({**good, "created": 10**20}).encode()
    assert h.processor.handle_http(bad, h.sign(bad)).status == 400
    assert h.stored_event("evt_same") == before
