"""examples/flask_app as a real HTTP server on 127.0.0.1, Stripe's deliveries over HTTP."""

from __future__ import annotations

import http.cookiejar
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from examples.flask_app.billing import FAKE_WEBHOOK_SECRET, fake_gateway
from flask import Flask
from werkzeug.serving import make_server

from billingkit import Billing
from billingkit.contrib.flask import BillingKit
from billingkit.domain import EventStatus, Subscription, SubscriptionStatus
from billingkit.testing import Delivery, FakeStripeGateway, signed_delivery


class Server:
    """The app served by werkzeug on a free port, in a thread."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.base = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        jar = http.cookiejar.CookieJar()
        self.browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)

    @property
    def billing(self) -> Billing:
        return BillingKit.billing_for(self.app)

    @property
    def fake(self) -> FakeStripeGateway:
        fake = fake_gateway(self.billing)
        assert fake is not None
        return fake

    def open(self, path: str, form: dict[str, str] | None = None) -> tuple[str, str]:
        """Browse to ``path`` (a form POST with the page's token when ``form``)."""
        data = None
        if form is not None:
            token = self.open("/login")[1]
            found = re.search(r'name="csrf_token" value="([^"]+)"', token)
            assert found is not None
            data = urllib.parse.urlencode({**form, "csrf_token": found.group(1)}).encode()
        with self.browser.open(self.base + path, data=data, timeout=30) as answer:
            return urllib.parse.urlsplit(answer.url).path, answer.read().decode()

    def post_webhook(self, payload: bytes, signature: str) -> tuple[int, dict[str, Any]]:
        """POST one delivery to /webhooks/stripe as Stripe does."""
        request = urllib.request.Request(
            self.base + "/webhooks/stripe",
            data=payload,
            headers={"Content-Type": "application/json", "Stripe-Signature": signature},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def subscription(self, user_id: str) -> Subscription:
        with self.billing.repository.unit_of_work() as uow:
            (subscription,) = uow.subscriptions_for_user(user_id)
        return subscription

    def ledger(self) -> dict[str, EventStatus]:
        with self.billing.repository.unit_of_work() as uow:
            return {event.id: event.status for event in uow.list_events(limit=1000)}


@pytest.fixture
def server(make_flask_app: Any) -> Iterator[Server]:
    running = Server(make_flask_app(FAKE_DELIVERY="http"))
    yield running
    running.stop()


def test_purchase_over_http_then_duplicates_and_a_bad_signature(server: Server) -> None:
    # A purchase in a "browser": paying makes the app POST the fake's signed events to its
    # own /webhooks/stripe over HTTP, while it is serving the pay request.
    server.open("/login", {"email": "ada@example.com"})
    path, _ = server.open("/checkout", {"plan": "pro", "interval": "month"})
    assert path.startswith("/fake-stripe/checkout/cs_")
    path, page = server.open(path + "/pay", {})
    assert path == "/checkout/success"
    report = re.search(r"Stripe delivered \d+ signed events to /webhooks/stripe: (.*?)</p>", page)
    assert report is not None
    answers = report.group(1).split(", ")
    assert "200 processed" in [answer.rsplit(" (", 1)[0] for answer in answers]
    assert all(answer.startswith("200 ") for answer in answers), answers
    ledger = server.ledger()
    emitted = server.fake.emitted_events()
    assert set(ledger) == {event["id"] for event in emitted}
    assert EventStatus.FAILED not in ledger.values()
    subscription = server.subscription("ada@example.com")
    assert subscription.status is SubscriptionStatus.ACTIVE
    _, account = server.open("/account")
    assert '<dd id="status" data-status="active">Active</dd>' in account

    # Stripe redelivers every event: 200 "duplicate", nothing changes.
    at = int(server.fake.now().timestamp())
    for event in emitted:
        again = signed_delivery(event, FAKE_WEBHOOK_SECRET, timestamp=at)
        status, body = server.post_webhook(again.payload, again.signature)
        assert (status, body["outcome"]) == (200, "duplicate")
    assert server.ledger() == ledger
    assert server.subscription("ada@example.com") == subscription

    # A change whose delivery is forged: 400, nothing stored; the genuine one applies.
    server.fake.update_subscription(subscription.id, cancel_at_period_end=True)
    (genuine,) = server.fake.drain_events()
    forgeries = [
        Delivery(genuine.id, genuine.type, genuine.created, genuine.payload,
                 signed_delivery(genuine.event(), "whsec_wrong", timestamp=at).signature),
        Delivery(genuine.id, genuine.type, genuine.created,
                 genuine.payload.replace(b'"cancel_at_period_end": true', b'"status": "x"'),
                 genuine.signature),
        Delivery(genuine.id, genuine.type, genuine.created, genuine.payload, ""),
    ]  # fmt: skip
    for forged in forgeries:
        status, _ = server.post_webhook(forged.payload, forged.signature)
        assert status == 400
    assert genuine.id not in server.ledger()
    assert server.subscription("ada@example.com") == subscription

    status, body = server.post_webhook(genuine.payload, genuine.signature)
    assert (status, body["outcome"]) == (200, "processed")
    assert server.subscription("ada@example.com").cancel_at_period_end
    assert server.ledger()[genuine.id] is EventStatus.PROCESSED
    _, account = server.open("/account")
    assert '<dd id="ends">' in account
