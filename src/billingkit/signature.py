"""Stripe webhook signatures, with the standard library only.

Header: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...][,v0=<hex>]``. The signed payload is
``"{t}.{raw body}"``, HMAC-SHA256 keyed with the whole ``whsec_...`` secret, lower-case hex.
Only ``v1`` counts; the header is valid when any ``v1`` matches any configured secret
(constant-time compare). The signature is checked before the timestamp, as Stripe's SDKs do.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from billingkit.errors import ConfigurationError, WebhookVerificationError

__all__ = ["compute_signature", "signature_header", "verify_signature"]

_SCHEME = "v1"


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    """HMAC-SHA256 hex digest of ``"{timestamp}.{payload}"`` keyed with ``secret``."""
    signed = b"%d.%s" % (timestamp, payload)
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def signature_header(payload: bytes, secrets: Sequence[str], timestamp: int) -> str:
    """A ``Stripe-Signature`` header value with one ``v1`` per secret."""
    parts = [f"t={timestamp}"]
    parts.extend(f"{_SCHEME}={compute_signature(payload, s, timestamp)}" for s in secrets)
    return ",".join(parts)


def _parse_header(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookVerificationError("signature header has a bad timestamp") from None
        elif key == _SCHEME:
            signatures.append(value)
    if timestamp is None:
        raise WebhookVerificationError("signature header has no timestamp")
    if not signatures:
        raise WebhookVerificationError("signature header has no v1 signature")
    return timestamp, signatures


def verify_signature(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    now: int,
    tolerance: int = 300,
) -> int:
    """Check ``header`` against ``payload``; return the signed timestamp.

    Raises ``WebhookVerificationError`` for a missing or malformed header, no matching
    signature, or a timestamp more than ``tolerance`` seconds away from ``now`` (older, or
    that far in the future). Raises ``ConfigurationError`` if ``secrets`` is empty.
    """
    if not secrets:
        raise ConfigurationError("no webhook signing secret configured")
    if not header:
        raise WebhookVerificationError("missing Stripe-Signature header")
    timestamp, candidates = _parse_header(header)
    expected = [compute_signature(payload, secret, timestamp) for secret in secrets]
    matched = False
    for candidate in candidates:
        for digest in expected:
            # Evaluate every pair: the time taken does not depend on which one matches.
            matched |= hmac.compare_digest(candidate.encode(), digest.encode())
    if not matched:
        raise WebhookVerificationError("no signature matches the payload")
    if abs(now - timestamp) > tolerance:
        raise WebhookVerificationError(_tolerance_message(now - timestamp, tolerance))
    return timestamp


def _tolerance_message(age: int, tolerance: int) -> str:
    """Say how far off the timestamp is, and the usual cause: two clocks that disagree."""
    when = f"{_duration(age)} old" if age > 0 else f"{_duration(-age)} in the future"
    return (
        f"signature timestamp outside the tolerance: signed {when}, tolerance {tolerance} s. "
        "Check the server clock; with FakeStripeGateway, build the services on the fake's "
        "clock (Billing.build(..., clock=fake.now)) so its signatures are current"
    )


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min ({seconds} s)"
    if seconds < 172800:
        return f"{seconds // 3600} h ({seconds} s)"
    return f"{seconds // 86400} days ({seconds} s)"
