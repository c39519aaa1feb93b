"""Stripe event envelopes, payload signing and signed deliveries for tests."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from billingkit.signature import signature_header

__all__ = ["FAKE_API_VERSION", "Delivery", "build_event", "sign_payload", "signed_delivery"]

#: API version stamped on the events the test kit builds; their objects follow its shapes
#: (item-level ``current_period_*``, ``invoice.parent.subscription_details``).
FAKE_API_VERSION = "2026-07-29.dahlia"


def sign_payload(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header value Stripe would send for ``payload``.

    ``timestamp`` defaults to the current Unix time. The result is accepted by
    ``billingkit.signature.verify_signature`` and by ``stripe.Webhook.construct_event``.
    """
    moment = int(time.time()) if timestamp is None else timestamp
    return signature_header(payload, [secret], moment)


def build_event(
    type: str,
    data_object: Mapping[str, Any],
    *,
    created: int | datetime,
    event_id: str | None = None,
    previous_attributes: Mapping[str, Any] | None = None,
    livemode: bool = False,
    api_version: str = FAKE_API_VERSION,
) -> dict[str, Any]:
    """A Stripe event envelope (``"object": "event"``) around ``data_object``.

    ``created`` is Unix seconds or an aware datetime. Without ``event_id`` a deterministic id
    is derived from the type, the object and ``created``. ``previous_attributes`` (the old
    values of changed fields, as on ``*.updated`` events) goes to ``data.previous_attributes``.
    """
    seconds = int(created.timestamp()) if isinstance(created, datetime) else int(created)
    data: dict[str, Any] = {"object": dict(data_object)}
    if previous_attributes is not None:
        data["previous_attributes"] = dict(previous_attributes)
    if event_id is None:
        digest = hashlib.sha256(
            json.dumps([type, seconds, data], sort_keys=True, default=str).encode()
        ).hexdigest()
        event_id = f"evt_{digest[:24]}"
    return {
        "id": event_id,
        "object": "event",
        "api_version": api_version,
        "created": seconds,
        "data": data,
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type,
    }


@dataclass(frozen=True)
class Delivery:
    """One webhook request as Stripe would send it: raw body plus ``Stripe-Signature``.

    Feed it unchanged to ``WebhookProcessor.handle(delivery.payload, delivery.signature)``.
    """

    #: The event id (``evt_...``).
    id: str
    #: The event type, e.g. ``"customer.subscription.updated"``.
    type: str
    #: The event's ``created`` (Unix seconds).
    created: int
    #: The raw JSON body, bytes exactly as signed.
    payload: bytes
    #: The ``Stripe-Signature`` header value.
    signature: str

    def event(self) -> dict[str, Any]:
        """The payload parsed back into a dict."""
        parsed: dict[str, Any] = json.loads(self.payload)
        return parsed

    def data_object(self) -> dict[str, Any]:
        """The event's ``data.object``."""
        obj: dict[str, Any] = self.event()["data"]["object"]
        return obj

    def __repr__(self) -> str:
        return f"Delivery(id={self.id!r}, type={self.type!r}, created={self.created})"


def signed_delivery(
    event: Mapping[str, Any], secret: str, *, timestamp: int | None = None
) -> Delivery:
    """Serialize ``event`` as Stripe does (indented JSON) and sign it with ``secret``.

    ``timestamp`` is the signing time (defaults to now); keep it within the webhook
    processor's tolerance of *its* clock.
    """
    payload = json.dumps(event, indent=2).encode("utf-8")
    return Delivery(
        id=str(event["id"]),
        type=str(event["type"]),
        created=int(event["created"]),
        payload=payload,
        signature=sign_payload(payload, secret, timestamp),
    )
