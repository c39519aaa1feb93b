"""``billingkit events send``: signed test events posted to a real endpoint on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import Result

from billingkit import Billing, SubscriptionStatus
from billingkit.ports import system_clock
from billingkit.services.webhooks import parse_event

from .cli_support import App, assert_clean_error, build_app, install


class _Endpoint:
    """A webhook endpoint on a free loopback port, answering with ``handle_http``."""

    def __init__(self, billing: Billing) -> None:
        received: list[tuple[bytes, str | None]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                signature = self.headers.get("Stripe-Signature")
                received.append((body, signature))
                answer = billing.webhooks.handle_http(body, signature)
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.end_headers()
                self.wfile.write(answer.body.encode())

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhooks/stripe"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> App:
    """The app on the real clock (the command signs at the current time)."""
    app = build_app(clock=lambda _: system_clock)
    install(monkeypatch, app.billing)
    return app


@pytest.fixture
def endpoint(live: App) -> Iterator[_Endpoint]:
    server = _Endpoint(live.billing)
    yield server
    server.close()


def _send(run: Callable[..., Result], url: str, *args: str) -> Result:
    return run("events", "send", *args, "--to", url, "--json")


def test_a_subscription_story_is_applied_by_the_app(
    live: App, endpoint: _Endpoint, run: Callable[..., Result]
) -> None:
    for event_type in ("checkout.session.completed", "customer.subscription.created"):
        result = _send(run, endpoint.url, event_type, "--user", "alice")
        assert result.exit_code == 0, result.output
        sent = json.loads(result.stdout)
        assert sent["status"] == 200
        assert sent["ok"] is True
        assert json.loads(sent["body"])["outcome"] == "processed"
        assert sent["type"] == event_type

    with live.repository.unit_of_work() as uow:
        subscriptions = uow.subscriptions_for_user("alice")
        link = uow.customer_for_user("alice")
    assert [s.status for s in subscriptions] == [SubscriptionStatus.ACTIVE]
    assert live.activated == ["alice"]
    assert link is not None
    assert link.customer_id == subscriptions[0].customer_id

    deleted = _send(run, endpoint.url, "customer.subscription.deleted", "--user", "alice")
    assert deleted.exit_code == 0, deleted.output
    with live.repository.unit_of_work() as uow:
        statuses = [s.status for s in uow.subscriptions_for_user("alice")]
    assert statuses == [SubscriptionStatus.CANCELED]


@pytest.mark.parametrize(
    "event_type",
    [
        "checkout.session.completed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.paid",
        "invoice.payment_failed",
    ],
)
def test_every_type_is_a_signed_well_formed_event_the_app_accepts(
    live: App, endpoint: _Endpoint, run: Callable[..., Result], event_type: str
) -> None:
    result = _send(run, endpoint.url, event_type, "--plan", "pro", "--interval", "year")
    assert result.exit_code == 0, result.output
    body, signature = endpoint.received[-1]
    event = parse_event(body)
    assert event.type == event_type
    assert event.id == json.loads(result.stdout)["event_id"]
    assert signature is not None and signature.startswith("t=")
    assert live.billing.webhooks.verify(body, signature).id == event.id
    outcome = json.loads(json.loads(result.stdout)["body"])["outcome"]
    assert outcome in ("processed", "ignored")
    if event_type.startswith("customer.subscription"):
        item = event.object["items"]["data"][0]
        assert item["price"]["recurring"]["interval"] == "year"
        assert item["price"]["lookup_key"] == "pro_yearly"


def test_updated_carries_the_previous_status_and_the_table_output(
    live: App, endpoint: _Endpoint, run: Callable[..., Result]
) -> None:
    result = run(
        "events",
        "send",
        "customer.subscription.updated",
        "--status",
        "past_due",
        "--to",
        endpoint.url,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("sent customer.subscription.updated evt_")
    assert "answer: 200" in result.stdout
    event = parse_event(endpoint.received[-1][0])
    assert event.object["status"] == "past_due"
    assert event.previous_attributes == {"status": "active"}


def test_a_refused_event_exits_1_with_the_answer(
    monkeypatch: pytest.MonkeyPatch, run: Callable[..., Result]
) -> None:
    server_app = build_app(clock=lambda _: system_clock, secret="whsec_server_side")
    server = _Endpoint(server_app.billing)
    try:
        install(monkeypatch, build_app(clock=lambda _: system_clock).billing)
        result = _send(run, server.url, "invoice.paid")
    finally:
        server.close()
    assert result.exit_code == 1, result.output
    sent = json.loads(result.stdout)
    assert sent["status"] == 400
    assert sent["ok"] is False
    assert "signature" in sent["body"]


def test_an_unreachable_endpoint_exits_3(live: App, run: Callable[..., Result]) -> None:
    probe = _Endpoint(live.billing)
    url = probe.url
    probe.close()  # the port is free again: nothing listens
    assert_clean_error(run("events", "send", "invoice.paid", "--to", url), 3, "could not reach")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["invoice.paid", "--to", "ftp://example.com/x"], "expected an http:// or https:// URL"),
        (["charge.refunded", "--to", "http://127.0.0.1:9/x"], "'charge.refunded' is not one of"),
        (["invoice.paid", "--to", "http://127.0.0.1:9/x", "--plan", "gold"], "no paid plan 'gold'"),
        (["invoice.paid", "--to", "http://127.0.0.1:9/x", "--plan", "free"], "no paid plan 'free'"),
        (
            ["invoice.paid", "--to", "http://127.0.0.1:9/x", "--interval", "week"],
            "has no 'week' price",
        ),
        (["invoice.paid", "--to", "http://127.0.0.1:9/x", "--currency", "dollars"], "three-letter"),
        (["invoice.paid"], "Missing option '--to'"),
    ],
)
def test_send_mistakes_are_usage_errors(
    live: App, run: Callable[..., Result], args: list[str], message: str
) -> None:
    assert_clean_error(run("events", "send", *args), 2, message)
