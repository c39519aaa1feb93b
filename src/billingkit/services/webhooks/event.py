"""A verified Stripe event, parsed once: :class:`WebhookEvent` and :func:`parse_event`.

See ``docs/webhooks.md`` (what happens to one request).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from billingkit.errors import WebhookPayloadError

__all__ = ["WebhookEvent", "parse_event"]


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified Stripe event, parsed once.

    Attributes:
        id: ``evt_...``.
        type: e.g. ``customer.subscription.updated``.
        created: Unix second the event was created at Stripe (the ordering watermark).
        livemode: live or test mode.
        api_version: the endpoint's API version the payload is shaped in (may be ``None``).
        object: ``data.object``: the Stripe object as plain JSON values.
        previous_attributes: ``data.previous_attributes`` (``*.updated`` events), or ``None``.
    """

    id: str
    type: str
    created: int
    livemode: bool
    api_version: str | None
    object: Mapping[str, Any]
    previous_attributes: Mapping[str, Any] | None = None

    @property
    def created_at(self) -> datetime:
        """``created`` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.created, tz=timezone.utc)


def parse_event(payload: bytes, *, livemode: bool | None = None) -> WebhookEvent:
    """Parse a (verified) event body into a :class:`WebhookEvent`.

    Raises :class:`~billingkit.errors.WebhookPayloadError` for a body that is not JSON, not
    an object, lacks a string ``id``/``type``, a positive integer ``created`` or a
    ``data.object`` object, or whose ``livemode`` differs from ``livemode`` (when given).
    """
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError
        raise WebhookPayloadError("body is not valid JSON") from None
    if type(body) is not dict:
        raise WebhookPayloadError("body is not a JSON object")
    event_id = body.get("id")
    event_type = body.get("type")
    if type(event_id) is not str or not event_id:
        raise WebhookPayloadError("event has no id")
    if type(event_type) is not str or not event_type:
        raise WebhookPayloadError("event has no type")
    if body.get("object", "event") != "event":
        raise WebhookPayloadError("body is not an event object")
    created = body.get("created")
    if type(created) is not int or created <= 0:
        raise WebhookPayloadError("event has no valid created timestamp")
    mode = body.get("livemode", False)
    if type(mode) is not bool:
        raise WebhookPayloadError("event livemode is not a boolean")
    if livemode is not None and mode is not livemode:
        expected = "live" if livemode else "test"
        raise WebhookPayloadError(f"event is not a {expected}-mode event")
    api_version = body.get("api_version")
    if api_version is not None and type(api_version) is not str:
        raise WebhookPayloadError("event api_version is not a string")
    data = body.get("data")
    if type(data) is not dict:
        raise WebhookPayloadError("event has no data object")
    obj = data.get("object")
    if type(obj) is not dict:
        raise WebhookPayloadError("event has no data.object")
    previous = data.get("previous_attributes")
    if previous is not None and type(previous) is not dict:
        raise WebhookPayloadError("event data.previous_attributes is not an object")
    return WebhookEvent(event_id, event_type, created, mode, api_version, obj, previous)
