"""Webhook signatures: billingkit.signature and billingkit.testing.sign_payload, with the
``stripe`` package on the other side in both directions."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
import stripe

from billingkit.errors import ConfigurationError, WebhookVerificationError
from billingkit.signature import compute_signature, signature_header, verify_signature
from billingkit.testing import build_event, sign_payload, signed_delivery

SECRET = "whsec_test_current"
OLD_SECRET = "whsec_test_previous"
NOW = 1_767_603_600
PAYLOAD = json.dumps(
    build_event("customer.created", {"id": "cus_1", "object": "customer"}, created=NOW),
    indent=2,
).encode()


def stripe_style_header(payload: bytes, secret: str, timestamp: int) -> str:
    """Built the way stripe-python's own tests do."""
    signed = f"{timestamp}.{payload.decode('utf-8')}"
    signature = stripe.WebhookSignature._compute_signature(signed, secret)
    return f"t={timestamp},v1={signature}"


# --------------------------------------------------------------------------- interop


def test_payload_signed_by_the_kit_passes_stripe_construct_event() -> None:
    header = sign_payload(PAYLOAD, SECRET)  # now: stripe checks against the real time
    event = stripe.Webhook.construct_event(PAYLOAD, header, SECRET)
    assert event.id == json.loads(PAYLOAD)["id"]
    assert event.type == "customer.created"


def test_signed_delivery_passes_stripe_construct_event() -> None:
    delivery = signed_delivery(json.loads(PAYLOAD), SECRET, timestamp=int(time.time()))
    event = stripe.Webhook.construct_event(delivery.payload, delivery.signature, SECRET)
    assert event.id == delivery.id


def test_stripe_rejects_the_kit_signature_under_another_secret() -> None:
    header = sign_payload(PAYLOAD, SECRET)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(PAYLOAD, header, OLD_SECRET)


def test_header_built_like_stripe_tests_is_accepted() -> None:
    header = stripe_style_header(PAYLOAD, SECRET, NOW)
    assert verify_signature(PAYLOAD, header, [SECRET], now=NOW) == NOW


def test_header_from_stripe_generate_signature_header_is_accepted() -> None:
    header = stripe.WebhookSignature.generate_signature_header(
        PAYLOAD.decode(), SECRET, timestamp=NOW
    )
    assert verify_signature(PAYLOAD, header, [SECRET], now=NOW + 10) == NOW


def test_hand_made_hmac_matches_compute_signature() -> None:
    digest = hmac.new(SECRET.encode(), b"%d.%s" % (NOW, PAYLOAD), hashlib.sha256).hexdigest()
    assert compute_signature(PAYLOAD, SECRET, NOW) == digest
    assert sign_payload(PAYLOAD, SECRET, NOW) == f"t={NOW},v1={digest}"


def test_sign_payload_defaults_to_the_current_time() -> None:
    before = int(time.time())
    header = sign_payload(PAYLOAD, SECRET)
    stamp = int(header.split(",")[0].removeprefix("t="))
    assert before <= stamp <= int(time.time())


# --------------------------------------------------------------------------- rotation


def test_rotation_header_with_one_v1_per_secret() -> None:
    header = signature_header(PAYLOAD, [OLD_SECRET, SECRET], NOW)
    assert header.count("v1=") == 2
    assert verify_signature(PAYLOAD, header, [SECRET], now=NOW) == NOW
    assert verify_signature(PAYLOAD, header, [OLD_SECRET], now=NOW) == NOW
    # stripe-python accepts it too (any v1 may match)
    assert stripe.WebhookSignature.verify_header(PAYLOAD, header, SECRET, tolerance=None)


def test_endpoint_with_two_secrets_accepts_either() -> None:
    for secret in (SECRET, OLD_SECRET):
        header = sign_payload(PAYLOAD, secret, NOW)
        assert verify_signature(PAYLOAD, header, [SECRET, OLD_SECRET], now=NOW) == NOW


def test_old_secret_only_is_refused_once_rotated_out() -> None:
    header = sign_payload(PAYLOAD, OLD_SECRET, NOW)
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify_signature(PAYLOAD, header, [SECRET], now=NOW)


# --------------------------------------------------------------------------- refusals


def test_tolerance_old_and_future_timestamps() -> None:
    header = sign_payload(PAYLOAD, SECRET, NOW)
    assert verify_signature(PAYLOAD, header, [SECRET], now=NOW + 300) == NOW
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_signature(PAYLOAD, header, [SECRET], now=NOW + 301)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_signature(PAYLOAD, header, [SECRET], now=NOW - 301)
    assert verify_signature(PAYLOAD, header, [SECRET], now=NOW + 3600, tolerance=3600) == NOW


def test_signature_is_checked_before_the_timestamp() -> None:
    header = sign_payload(PAYLOAD, OLD_SECRET, NOW)
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify_signature(PAYLOAD, header, [SECRET], now=NOW + 10_000)


@pytest.mark.parametrize(
    "tampered",
    [
        PAYLOAD.replace(b"cus_1", b"cus_2"),
        PAYLOAD + b"\n",
        json.dumps(json.loads(PAYLOAD)).encode(),  # re-serialized: different bytes
    ],
)
def test_tampered_body_is_refused(tampered: bytes) -> None:
    header = sign_payload(PAYLOAD, SECRET, NOW)
    with pytest.raises(WebhookVerificationError):
        verify_signature(tampered, header, [SECRET], now=NOW)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("v1=abc", "no timestamp"),
        (f"t={NOW}", "no v1"),
        (f"t={NOW},v0=abc", "no v1"),
        (f"t=yesterday,v1={'0' * 64}", "bad timestamp"),
        ("garbage", "no timestamp"),
        (f"t={NOW},v1=not-hex", "no signature matches"),
    ],
)
def test_missing_or_malformed_header(header: str | None, reason: str) -> None:
    with pytest.raises(WebhookVerificationError, match=reason):
        verify_signature(PAYLOAD, header, [SECRET], now=NOW)


def test_no_secret_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        verify_signature(PAYLOAD, sign_payload(PAYLOAD, SECRET, NOW), [], now=NOW)


def test_errors_never_echo_the_secret() -> None:
    header = sign_payload(PAYLOAD, OLD_SECRET, NOW)
    with pytest.raises(WebhookVerificationError) as caught:
        verify_signature(PAYLOAD, header, [SECRET], now=NOW)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
