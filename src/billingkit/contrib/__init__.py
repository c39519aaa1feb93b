"""Thin framework glue: ``billingkit.contrib.flask`` and ``billingkit.contrib.fastapi``.

Each module imports its framework and nothing else does; importing one without its extra
raises ``ConfigurationError`` naming the extra
(``pip install "billingkit[flask]"``). This package itself imports no framework: it holds
the framework-free part of the webhook endpoints they share, the body size cap.

The webhook endpoints refuse a body larger than ``BillingConfig.webhook_max_body_bytes``
without buffering it: on its ``Content-Length`` first, then by reading the stream in chunks
and stopping as soon as the cap is passed. Everything else (signature, parsing, ledger,
the HTTP status) is ``billingkit.WebhookProcessor.handle_http``'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from billingkit.services.webhooks import WebhookResponse

__all__ = [
    "CHUNK_BYTES",
    "BodyTooLarge",
    "declared_too_large",
    "join_capped",
    "read_capped",
    "too_large",
]

#: How much of a webhook body is read at a time.
CHUNK_BYTES = 64 * 1024


class BodyTooLarge(Exception):
    """Raised by ``read_capped`` once more than the cap has arrived."""


def too_large(max_bytes: int) -> WebhookResponse:
    """The 400 answer to a body over the cap (the same text the processor gives)."""
    return WebhookResponse(400, json.dumps({"error": f"body larger than {max_bytes} bytes"}))


def declared_too_large(content_length: str | int | None, max_bytes: int) -> bool:
    """Whether a ``Content-Length`` value already exceeds the cap (unparsable: not decided)."""
    if content_length is None:
        return False
    try:
        return int(content_length) > max_bytes
    except ValueError:
        return False


def read_capped(read: Callable[[int], bytes], max_bytes: int) -> bytes:
    """Read a stream through ``read(n)`` until it ends, never more than ``max_bytes + 1``.

    Raises ``BodyTooLarge`` as soon as more than ``max_bytes`` have been read: the rest
    of the body is never read.
    """
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = read(min(CHUNK_BYTES, max_bytes + 1 - size))
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(f"body larger than {max_bytes} bytes")
        parts.append(chunk)


def join_capped(chunks: Iterable[bytes], max_bytes: int) -> bytes:
    """Join ``chunks``, raising ``BodyTooLarge`` once they pass ``max_bytes``."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(f"body larger than {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)
