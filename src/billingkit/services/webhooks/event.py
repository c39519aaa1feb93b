"""A verified Stripe event, parsed once: ``WebhookEvent`` and ``parse_event``.

See ``docs/webhooks.md`` (what happens to one request).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from billingkit.errors import WebhookPayloadError

__all__ = ["CREATED_MAX", "ID_MAX", "WebhookEvent", "parse_event", "usable_event_id"]


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


#: Longest id (event or object) accepted, the column width every adapter stores.
ID_MAX = 255
#: Latest ``created`` accepted: 9999-12-31T23:59:59Z, the last second a ``datetime`` holds.
CREATED_MAX = 253_402_300_799
_EVENT_ID = re.compile(rf"[A-Za-z0-9_]{{1,{ID_MAX}}}")
_EVENT_TYPE = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)*")
_API_VERSION = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TYPE_MAX = 255


def _field(field: str, problem: str) -> WebhookPayloadError:
    return WebhookPayloadError(f"event {field} {problem}")


def usable_event_id(value: object) -> str | None:
    """``value`` if it is an event id as Stripe issues them, else ``None``.

    ASCII letters, digits and ``_``, 1 to ``ID_MAX`` characters: what every adapter
    stores and compares alike.
    """
    if type(value) is str and _EVENT_ID.fullmatch(value):
        return value
    return None


def _object_id(obj: Mapping[str, Any]) -> None:
    if "id" not in obj:
        return
    value = obj["id"]
    if type(value) is not str or not value:
        raise _field("data.object.id", "is not a non-empty string")
    if len(value) > ID_MAX:
        raise _field("data.object.id", f"is longer than {ID_MAX} characters")
    if not value.isprintable() or not value.isascii():
        raise _field("data.object.id", "has characters Stripe ids never have")


def _stdlib_loads(payload: bytes) -> Any:
    """The standard library's parse (without the ``fast`` extra)."""
    return json.loads(payload)


def _fast_loads(payload: bytes) -> Any:
    """Parse with orjson; a body it refuses is parsed by `json.loads`.

    orjson is stricter than the standard library (``NaN``, lone surrogates): the fallback
    keeps every body `json.loads` accepts accepted, with the same values. One
    difference remains: orjson reads an integer beyond 64 bits as a float; every reader
    type-checks and range-checks integers, so such an event is refused either way.
    """
    try:
        return _orjson_loads(payload)
    except ValueError:
        return json.loads(payload)


try:  # the ``fast`` extra
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - depends on the environment
    _loads: Callable[[bytes], Any] = _stdlib_loads
else:  # pragma: no cover - depends on the environment
    _loads = _fast_loads


def parse_event(payload: bytes, *, livemode: bool | None = None) -> WebhookEvent:
    """Parse a (verified) event body into a ``WebhookEvent``.

    Raises ``WebhookPayloadError`` naming the field for a body that
    is not JSON, not an object, or whose envelope is out of range: ``id`` not as Stripe
    issues it (``usable_event_id``), ``type`` not a dotted lower-case name of at most
    255 characters, ``created`` not an integer second in 1970-9999, ``livemode`` not a
    boolean or different from ``livemode`` (when given), ``api_version`` not a short
    version string, ``data.object`` not an object or its ``id`` not a printable ASCII
    string of at most 255 characters, ``data.previous_attributes`` not an object.
    """
    try:
        body = _loads(payload)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError
        raise WebhookPayloadError("body is not valid JSON") from None
    if type(body) is not dict:
        raise WebhookPayloadError("body is not a JSON object")
    event_id = body.get("id")
    if event_id is None or event_id == "":
        raise WebhookPayloadError("event has no id")
    if usable_event_id(event_id) is None:
        raise _field("id", f"is not a Stripe id (ASCII letters, digits, _; 1-{ID_MAX})")
    event_type = body.get("type")
    if type(event_type) is not str or not event_type:
        raise WebhookPayloadError("event has no type")
    if len(event_type) > _TYPE_MAX or not _EVENT_TYPE.fullmatch(event_type):
        raise _field("type", "is not a Stripe event type")
    if body.get("object", "event") != "event":
        raise WebhookPayloadError("body is not an event object")
    created = body.get("created")
    if type(created) is not int:
        raise WebhookPayloadError("event has no valid created timestamp (an integer)")
    if not 0 < created <= CREATED_MAX:
        raise _field("created", "is out of range (1970-9999)")
    mode = body.get("livemode", False)
    if type(mode) is not bool:
        raise _field("livemode", "is not a boolean")
    if livemode is not None and mode is not livemode:
        expected = "live" if livemode else "test"
        raise WebhookPayloadError(f"event is not a {expected}-mode event")
    api_version = body.get("api_version")
    if api_version is not None and (
        type(api_version) is not str or not _API_VERSION.fullmatch(api_version)
    ):
        raise _field("api_version", "is not an API version string")
    data = body.get("data")
    if type(data) is not dict:
        raise WebhookPayloadError("event has no data object")
    obj = data.get("object")
    if type(obj) is not dict:
        raise WebhookPayloadError("event has no data.object")
    _object_id(obj)
    previous = data.get("previous_attributes")
    if previous is not None and type(previous) is not dict:
        raise WebhookPayloadError("event data.previous_attributes is not an object")
    return WebhookEvent(event_id, event_type, created, mode, api_version, obj, previous)
