"""The optional orjson parse (``billingkit[fast]``) accepts exactly what ``json`` accepts."""

from __future__ import annotations

import json

import pytest

from billingkit.errors import WebhookPayloadError
from billingkit.services.webhooks import event as event_module
from billingkit.services.webhooks.event import parse_event

orjson = pytest.importorskip("orjson")

BODIES = [
    b'{"a": 1, "b": [1.5, "x", null, true], "c": {"d": "\\u00e9"}}',
    b'{"n": NaN, "i": -Infinity}',  # not RFC 8259: orjson refuses, json not
    b'{"s": "\\ud800"}',  # a lone surrogate
    b'{"k": 1, "k": 2}',  # duplicate keys: the last wins in both
]


@pytest.mark.parametrize("body", BODIES)
def test_the_fast_parse_gives_the_standard_librarys_values(body: bytes) -> None:
    expected = json.loads(body)
    parsed = event_module._fast_loads(body)
    assert json.dumps(parsed, sort_keys=True) == json.dumps(expected, sort_keys=True)


@pytest.mark.parametrize("body", [b"{", b"\xff\xfe", b"[1,]", b'{"a": 1} x'])
def test_the_fast_parse_refuses_what_the_standard_library_refuses(body: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(body)
    with pytest.raises(ValueError):
        event_module._fast_loads(body)


def test_the_parse_uses_orjson_when_installed() -> None:
    assert event_module._loads is event_module._fast_loads
    assert event_module._stdlib_loads(b'{"a": [1]}') == {"a": [1]}


def test_an_integer_beyond_64_bits_is_refused_with_or_without_orjson() -> None:
    # orjson reads it as a float, json as an int: every reader type-checks and range-checks
    # integers, so both end in the same 400.
    body = b'{"id": "evt_1", "type": "a.b", "created": 123456789012345678901234567890}'
    assert isinstance(event_module._fast_loads(body)["created"], float)
    for loads in (event_module._fast_loads, event_module._stdlib_loads):
        original = event_module._loads
        event_module._loads = loads
        try:
            with pytest.raises(WebhookPayloadError, match="created"):
                parse_event(body)
        finally:
            event_module._loads = original


def test_a_body_orjson_refuses_and_json_refuses_is_a_payload_error() -> None:
    with pytest.raises(WebhookPayloadError, match="not valid JSON"):
        parse_event(b'{"id": "evt_1", ')
