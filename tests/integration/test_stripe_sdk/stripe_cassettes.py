"""vcrpy set-up for the StripeSdkGateway tests: strict playback, scrubbed recordings.

* Playback only unless ``--record-cassettes`` is given (then record mode ``all``: every
  interaction of a re-recordable cassette is recorded afresh against Stripe test mode).
* Requests match on method, scheme, host, port, path, query, form body, the
  ``Idempotency-Key`` billingkit chose and the ``Stripe-Version`` header, so a changed
  parameter, key or API version fails the test.
* ``allow_playback_repeats=False`` plus an ``all_played`` check on exit: every recorded
  interaction must be used exactly once.
* Recordings never keep a key: ``Authorization`` is dropped, and any ``sk_``/``rk_`` key (also
  the masked form Stripe echoes in 401 messages) is scrubbed from URIs and bodies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import vcr
from vcr.cassette import Cassette
from vcr.record_mode import RecordMode
from vcr.request import Request

CASSETTES = Path(__file__).resolve().parents[2] / "cassettes" / "stripe_sdk"
WORLD_FILE = CASSETTES / "world.json"

KEY_PATTERN = re.compile(r"(?:sk|rk)_(?:test|live)_[A-Za-z0-9*]+")
SCRUBBED_KEY = "sk_test_SCRUBBED"
# The SDK gives every POST a random uuid4-shaped Idempotency-Key when the caller gives none.
_SDK_IDEMPOTENCY_KEY = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DROPPED_REQUEST_HEADERS = (
    "authorization",
    "x-stripe-client-user-agent",
    "x-stripe-client-telemetry",
)


def scrub(text: str) -> str:
    """Replace every API key in ``text``."""
    return KEY_PATTERN.sub(SCRUBBED_KEY, text)


def _scrub_request(request: Request) -> Request:
    request.uri = scrub(request.uri)
    if isinstance(request.body, bytes):
        request.body = scrub(request.body.decode("utf-8")).encode("utf-8")
    elif isinstance(request.body, str):
        request.body = scrub(request.body)
    key = request.headers.get("Idempotency-Key")
    if key is not None and _SDK_IDEMPOTENCY_KEY.match(str(key)):
        del request.headers["Idempotency-Key"]
    return request


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    body = response.get("body", {})
    raw = body.get("string")
    if isinstance(raw, bytes):
        body["string"] = scrub(raw.decode("utf-8")).encode("utf-8")
    elif isinstance(raw, str):
        body["string"] = scrub(raw)
    return response


def _stripe_headers(r1: Request, r2: Request) -> None:
    """The recorded Idempotency-Key (if any) and Stripe-Version must be sent again."""
    for name in ("Idempotency-Key", "Stripe-Version"):
        recorded = r2.headers.get(name)
        if recorded is not None and r1.headers.get(name) != recorded:
            raise AssertionError(f"{name}: {r1.headers.get(name)!r} != {recorded!r}")


def make_vcr() -> vcr.VCR:
    """The strict VCR used by every gateway test."""
    recorder = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        serializer="yaml",
        record_mode="none",
        match_on=["method", "scheme", "host", "port", "path", "query", "body", "stripe_headers"],
        filter_headers=list(_DROPPED_REQUEST_HEADERS),
        before_record_request=_scrub_request,
        before_record_response=_scrub_response,
        decode_compressed_response=True,
    )
    recorder.register_matcher("stripe_headers", _stripe_headers)
    return recorder


class CassetteKit:
    """Opens cassettes in playback or record mode and enforces that all were played."""

    def __init__(self, *, recording: bool) -> None:
        self.recording = recording
        self._vcr = make_vcr()

    @contextmanager
    def use(self, name: str, *, synthetic: bool = False) -> Iterator[Cassette]:
        """Open ``tests/cassettes/stripe_sdk/<name>.yaml``.

        ``synthetic`` cassettes describe answers real test mode cannot be made to give
        (402, 429, 500, a completed Checkout): they are always played back, even when
        recording.
        """
        record = self.recording and not synthetic
        path = CASSETTES / f"{name}.yaml"
        if not record and not path.exists():
            raise AssertionError(f"missing cassette {path}; run tests/cassettes/build_cassettes.py")
        with self._vcr.use_cassette(
            path.name, record_mode="all" if record else "none", allow_playback_repeats=False
        ) as cassette:
            yield cassette
        if not record:
            unused = [
                f"{request.method} {request.uri}"
                for index, request in enumerate(cassette.requests)
                if cassette.play_counts[index] == 0
            ]
            assert cassette.all_played, f"{name}: recorded interactions never used: {unused}"

    def requests_made(self, cassette: Cassette) -> int:
        """How many HTTP requests the block made (recorded afresh, or played back)."""
        if cassette.record_mode == RecordMode.NONE:
            return int(cassette.play_count)
        return len(cassette)


def load_world() -> dict[str, Any]:
    """The ids and catalog the cassettes were built or recorded with."""
    world: dict[str, Any] = json.loads(WORLD_FILE.read_text(encoding="utf-8"))
    return world


def save_world(world: dict[str, Any]) -> None:
    """Write back the world after a re-recording seeded fresh test-mode objects."""
    WORLD_FILE.write_text(json.dumps(world, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def response_header(cassette: Cassette, index: int, name: str) -> str | None:
    """A header of the ``index``-th recorded response (vcr stores header values as lists)."""
    headers = {k.lower(): v for k, v in cassette.responses[index]["headers"].items()}
    values = headers.get(name.lower())
    return values[0] if values else None


def idempotency_key(world: dict[str, Any], what: str) -> str:
    """Deterministic per recording run, so playback sends exactly the recorded keys."""
    return f"bk-{world['recorded']['run_id']}-{what}"
