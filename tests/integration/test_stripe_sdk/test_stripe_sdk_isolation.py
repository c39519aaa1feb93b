"""No global state: each gateway sends its own key and pinned version; nothing SDK leaks out.

These tests talk to a real HTTP server on 127.0.0.1 (a tiny Stripe-compatible stand-in,
reached through ``base_url``) so the headers the SDK really sends can be inspected.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import stripe
import yaml
from stripe_cassettes import CASSETTES, KEY_PATTERN, SCRUBBED_KEY, make_vcr

from billingkit.adapters.stripe_sdk import StripeSdkGateway, sdk_api_version

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures/stripe/openapi/2026-07-29_f0758b15"
CUSTOMER = json.loads((FIXTURES / "customer.json").read_text(encoding="utf-8"))
PORTAL = json.loads((FIXTURES / "billing_portal.session.json").read_text(encoding="utf-8"))


class _Server(ThreadingHTTPServer):
    """Remembers the headers of every request it answered."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[dict[str, str | None]] = []


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.seen.append(
            {
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "stripe-version": self.headers.get("Stripe-Version"),
            }
        )
        # Echo the key in the body, as Stripe's 401 messages do (masked), to test scrubbing.
        echo = f"seen {self.headers.get('Authorization')}"
        customer = dict(CUSTOMER, id=self.path.split("?")[0].rsplit("/", 1)[-1], description=echo)
        self._reply(customer)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/v1/billing_portal/"):
            self._reply(dict(PORTAL, customer="cus_1"))
        else:
            self.path = "/v1/customers/cus_posted"
            self.do_GET()

    def _reply(self, obj: dict[str, Any]) -> None:
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr log
        pass


@pytest.fixture
def local_stripe() -> Iterator[tuple[str, list[dict[str, str | None]]]]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_two_gateways_with_different_keys_stay_independent(
    local_stripe: tuple[str, list[dict[str, str | None]]],
) -> None:
    base_url, seen = local_stripe
    global_key_before = stripe.api_key
    first = StripeSdkGateway.from_api_key("sk_test_firstAccountKey", base_url=base_url)
    second = StripeSdkGateway.from_api_key("sk_test_secondAccountKey", base_url=base_url)

    first.retrieve_customer("cus_first1")
    second.retrieve_customer("cus_second1")
    first.retrieve_customer("cus_first2")

    assert [(r["path"], r["authorization"]) for r in seen] == [
        ("/v1/customers/cus_first1", "Bearer sk_test_firstAccountKey"),
        ("/v1/customers/cus_second1", "Bearer sk_test_secondAccountKey"),
        ("/v1/customers/cus_first2", "Bearer sk_test_firstAccountKey"),
    ]
    assert stripe.api_key is global_key_before  # module-level configuration never touched
    assert "AccountKey" not in repr(first) + repr(second)


def test_api_version_is_pinned_to_the_sdk_default_and_overridable(
    local_stripe: tuple[str, list[dict[str, str | None]]],
) -> None:
    base_url, seen = local_stripe
    default = StripeSdkGateway.from_api_key("sk_test_versionKey", base_url=base_url)
    # A client configured elsewhere with another version: the gateway's pin still wins.
    client = stripe.StripeClient(
        "sk_test_versionKey", stripe_version="2024-06-20", base_addresses={"api": base_url}
    )
    pinned = StripeSdkGateway(client, api_version="2025-03-31.basil")

    default.retrieve_customer("cus_a")
    pinned.retrieve_customer("cus_b")

    assert default.api_version == sdk_api_version() == "2026-10-28.endive"
    assert [r["stripe-version"] for r in seen] == ["2026-10-28.endive", "2025-03-31.basil"]


def test_options_of_from_api_key_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        StripeSdkGateway.from_api_key("sk_test_x", "2026-10-28.endive")  # type: ignore[call-arg]  # the point


def test_no_sdk_object_leaks_checker_catches_a_leak(no_sdk_objects: Any) -> None:
    # The walk used by every cassette test must really fail on an SDK object inside a value.
    leaked = {"customer": stripe.StripeObject.construct_from({"id": "cus_1"}, "sk_test_x")}
    with pytest.raises(AssertionError, match="SDK object leaked"):
        no_sdk_objects(leaked)
    no_sdk_objects({"id": "cus_1", "amounts": [1, 2], "ok": True})


def test_recording_filters_authorization_and_scrubs_keys(
    local_stripe: tuple[str, list[dict[str, str | None]]], tmp_path: Path
) -> None:
    # Record for real (vcr record mode "all") against the local server with the same VCR the
    # tests use, then read the cassette file: no key anywhere, no SDK-random idempotency key.
    base_url, _ = local_stripe
    secret = "sk_test_recordingSecretKey1234"
    gateway = StripeSdkGateway.from_api_key(secret, base_url=base_url)
    recorder = make_vcr()
    with recorder.use_cassette(str(tmp_path / "recorded.yaml"), record_mode="all"):
        gateway.retrieve_customer(f"cus_1?note={secret}")
        gateway.create_customer(user_id=secret, email=None, idempotency_key="bk-recorded-1")
        gateway.create_billing_portal_session(customer_id="cus_1", return_url="https://e.test/")
    text = (tmp_path / "recorded.yaml").read_text(encoding="utf-8")
    assert secret not in text and "recordingSecretKey" not in text
    assert "sk_test_SCRUBBED" in text  # the echoed key and the one in the URI and body
    assert "authorization" not in text.lower()
    assert "X-Stripe-Client-User-Agent" not in text
    assert "bk-recorded-1" in text  # billingkit's own idempotency key is kept for matching
    assert len(re.findall(r"Idempotency-Key:", text)) == 1  # the SDK's random one is not
    interactions = yaml.safe_load(text)["interactions"]
    assert [i["request"]["method"] for i in interactions] == ["GET", "POST", "POST"]


def test_committed_cassettes_hold_no_key() -> None:
    for path in sorted(CASSETTES.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        keys = set(KEY_PATTERN.findall(text)) - {SCRUBBED_KEY}
        assert not {k for k in keys if "*" not in k}, f"{path.name} holds a key"
        assert "authorization:" not in text.lower(), path.name


def test_going_live_lists_exactly_the_handled_event_types() -> None:
    from billingkit.services.webhooks.registry import HANDLERS

    text = (Path(__file__).resolve().parents[3] / "docs" / "going-live.md").read_text("utf-8")
    block = text.split("```text\n", 1)[1].split("```", 1)[0]
    assert block.split() == list(HANDLERS)
