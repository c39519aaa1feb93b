"""billingkit.contrib.flask: the extension, the webhook blueprint, the size cap, the guards."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, session
from werkzeug.test import EnvironBuilder

from billingkit import Billing, BillingConfig, InMemoryRepository, PlanDefinition
from billingkit.contrib import CHUNK_BYTES
from billingkit.contrib.flask import (
    WEBHOOK_ENDPOINT,
    BillingKit,
    billing_from_config,
    current_billing,
    requires_feature,
)
from billingkit.errors import ConfigurationError
from billingkit.testing import FakeStripeGateway

SECRET = "whsec_flask_contrib"
CAP = 100_000


class CountingStream(io.RawIOBase):
    """An endless request body that counts how many bytes were read from it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = len(buffer)
        buffer[:size] = b"x" * size
        self.read_bytes += size
        return size


@pytest.fixture
def fake() -> FakeStripeGateway:
    fake = FakeStripeGateway(webhook_secret=SECRET)
    fake.add_price(amount=1200, interval="month", lookup_key="pro_monthly", product_name="Pro")
    return fake


@pytest.fixture
def billing(fake: FakeStripeGateway) -> Iterator[Billing]:
    config = BillingConfig(
        plans=[
            PlanDefinition(key="free", name="Free"),
            PlanDefinition(
                key="pro", name="Pro", prices={"month": "pro_monthly"}, features=("exports",)
            ),
        ],
        free_plan="free",
        webhook_secrets=[SECRET],
        webhook_max_body_bytes=CAP,
    )
    billing = Billing.build(config, fake, InMemoryRepository(), clock=fake.now)
    yield billing
    billing.close()


@pytest.fixture
def app(billing: Billing) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test", TESTING=True)
    BillingKit(app, billing=billing, user_id=lambda: session.get("user_id"))

    @app.post("/login/<user>")
    def login(user: str) -> str:
        session["user_id"] = user
        return "ok"

    @app.get("/export")
    @requires_feature("exports")
    def export() -> str:
        return f"export for {current_billing.customers.for_user(session['user_id']).plan_key}"

    return app


def subscribe(app: Flask, fake: FakeStripeGateway, user_id: str) -> None:
    """Checkout for ``user_id``, paid at the fake, every event through the blueprint."""
    with app.app_context():
        started = current_billing.checkout.start_checkout(
            user_id=user_id, email=None, plan_key="pro", interval="month",
            success_url="https://x.example/ok", cancel_url="https://x.example/no",
        )  # fmt: skip
    fake.complete_checkout(started.session_id)
    client = app.test_client()
    for delivery in fake.drain_events():
        answer = client.post(
            "/webhooks/stripe", data=delivery.payload,
            headers={"Stripe-Signature": delivery.signature, "Content-Type": "application/json"},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text


def test_webhook_route_applies_signed_events_and_answers_like_handle_http(
    app: Flask, fake: FakeStripeGateway, billing: Billing
) -> None:
    subscribe(app, fake, "ada")
    assert billing.customers.for_user("ada").plan_key == "pro"
    with billing.repository.unit_of_work() as uow:
        assert {event.id for event in uow.list_events()} == {
            event["id"] for event in fake.emitted_events()
        }
    client = app.test_client()
    # Duplicate: 200 "duplicate"; forged: 400 and nothing stored.
    first = fake.emitted_events()[0]
    from billingkit.testing import signed_delivery

    again = signed_delivery(first, SECRET, timestamp=int(fake.now().timestamp()))
    answer = client.post("/webhooks/stripe", data=again.payload,
                         headers={"Stripe-Signature": again.signature})  # fmt: skip
    assert (answer.status_code, answer.json) == (
        200, {"outcome": "duplicate", "event_id": first["id"], "event_type": first["type"]}
    )  # fmt: skip
    forged = client.post("/webhooks/stripe", data=again.payload,
                         headers={"Stripe-Signature": "t=1,v1=00"})  # fmt: skip
    assert forged.status_code == 400
    assert "signature" in (forged.json or {})["error"]


def test_webhook_body_is_the_raw_bytes(
    app: Flask, billing: Billing, fake: FakeStripeGateway
) -> None:
    # Re-serialising the JSON (other spacing) would break the signature: the bytes as sent pass.
    from billingkit.testing import sign_payload

    payload = (
        b'{"id": "evt_raw",  "object": "event", "type": "unknown.kind", "created": 1700000000,'
        b'\n"livemode": false, "data": {"object": {"id": "x"}}}'
    )
    header = sign_payload(payload, SECRET, timestamp=int(fake.now().timestamp()))
    answer = app.test_client().post(
        "/webhooks/stripe", data=payload, headers={"Stripe-Signature": header}
    )
    assert (answer.status_code, (answer.json or {})["outcome"]) == (200, "ignored")


def test_a_failing_hook_answers_500(app: Flask, fake: FakeStripeGateway, billing: Billing) -> None:
    from billingkit import SubscriptionActivated

    def broken(event: SubscriptionActivated) -> None:
        raise RuntimeError("hook down")

    billing.webhooks.on(SubscriptionActivated, broken)
    with pytest.raises(AssertionError, match="processing failed"):
        subscribe(app, fake, "bob")


def post_stream(
    app: Flask, body: CountingStream, content_length: int | None
) -> tuple[int, dict[str, str], Any]:
    """POST ``body`` to the webhook through the WSGI interface (no test-client buffering)."""
    environ = EnvironBuilder(
        "/webhooks/stripe", method="POST", headers=[("Stripe-Signature", "t=1,v1=00")]
    ).get_environ()
    environ["wsgi.input"] = body
    if content_length is None:  # chunked: the server says the stream ends by itself
        environ.pop("CONTENT_LENGTH", None)
        environ["wsgi.input_terminated"] = True
    else:
        environ["CONTENT_LENGTH"] = str(content_length)
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.update(status=int(status.split()[0]), headers=dict(headers))
        return lambda data: None

    chunks = app.wsgi_app(environ, start_response)
    data = b"".join(chunks)
    return started["status"], started["headers"], json.loads(data)


def test_declared_oversized_body_is_refused_without_reading_it(app: Flask) -> None:
    body = CountingStream()
    status, headers, answer = post_stream(app, body, 200 * 1024 * 1024)
    assert (status, answer) == (400, {"error": f"body larger than {CAP} bytes"})
    assert headers["Connection"] == "close"
    assert body.read_bytes == 0


def test_streamed_oversized_body_stops_reading_at_the_cap(app: Flask) -> None:
    # No Content-Length (chunked): an endless body is read only until it passes the cap.
    body = CountingStream()
    status, headers, answer = post_stream(app, body, None)
    assert (status, answer) == (400, {"error": f"body larger than {CAP} bytes"})
    assert headers["Connection"] == "close"
    assert CAP < body.read_bytes <= CAP + CHUNK_BYTES


def test_body_at_the_cap_reaches_the_processor(app: Flask) -> None:
    answer = app.test_client().post(
        "/webhooks/stripe", data=b"x" * CAP, headers={"Stripe-Signature": "t=1,v1=00"}
    )
    assert answer.status_code == 400
    assert "signature" in (answer.json or {})["error"]  # verified (and refused), not "too large"


def test_requires_feature(app: Flask, fake: FakeStripeGateway) -> None:
    client = app.test_client()
    assert client.get("/export").status_code == 401
    client.post("/login/ada")
    denied = client.get("/export")
    assert denied.status_code == 403
    assert "exports" in denied.text
    subscribe(app, fake, "ada")
    allowed = client.get("/export")
    assert (allowed.status_code, allowed.text) == (200, "export for pro")


def test_denied_handler_answers_instead(billing: Billing) -> None:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "test"
    seen: list[tuple[str, str | None]] = []

    def denied(feature: str, details: Any) -> tuple[str, int]:
        seen.append((feature, details.plan_key if details else None))
        return "upgrade", 402

    BillingKit(app, billing=billing, user_id=lambda: "carol", denied=denied)
    app.add_url_rule("/x", "x", requires_feature("exports")(lambda: "in"))
    answer = app.test_client().get("/x")
    assert (answer.status_code, answer.text) == (402, "upgrade")
    assert seen == [("exports", "free")]


def test_init_app_factory_pattern_and_errors(billing: Billing) -> None:
    extension = BillingKit(billing=billing, webhook_path="/hooks/stripe")
    app = Flask(__name__)
    extension.init_app(app)
    assert BillingKit.billing_for(app) is billing
    rules = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules()}
    assert rules["/hooks/stripe"] == WEBHOOK_ENDPOINT
    with pytest.raises(ConfigurationError, match="already initialised"):
        extension.init_app(app)
    with pytest.raises(ConfigurationError, match="not initialised"):
        BillingKit.billing_for(Flask(__name__))
    with Flask(__name__).app_context(), pytest.raises(ConfigurationError, match="BillingKit"):
        current_billing.customers  # noqa: B018


def test_requires_feature_without_user_loader_is_a_configuration_error(billing: Billing) -> None:
    app = Flask(__name__)
    BillingKit(app, billing=billing)
    app.add_url_rule("/x", "x", requires_feature("exports")(lambda: "in"))
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(ConfigurationError, match="user_id"):
        app.test_client().get("/x")


def test_billing_from_config_builds_stripe_and_sql(tmp_path: Any) -> None:
    with pytest.raises(ConfigurationError, match="BILLING_PLANS, STRIPE_API_KEY"):
        billing_from_config({})
    app = Flask(__name__)
    app.config.update(
        BILLING_PLANS=[{"key": "free", "name": "Free"}],
        BILLING_FREE_PLAN="free",
        STRIPE_API_KEY="sk_test_123",
        STRIPE_WEBHOOK_SECRET=["whsec_a", "whsec_b"],
        BILLING_DATABASE_URL=f"sqlite:///{tmp_path / 'b.sqlite3'}",
        BILLING_RUN_MIGRATIONS=True,
        BILLING_OPTIONS={"webhook_max_body_bytes": 1000, "access": {"past_due_grace_days": 2}},
    )
    BillingKit(app)
    billing = BillingKit.billing_for(app)
    try:
        assert type(billing.gateway).__name__ == "StripeSdkGateway"
        assert type(billing.repository).__name__ == "SqlAlchemyRepository"
        assert billing.config.webhook_max_body_bytes == 1000
        assert billing.config.access.past_due_grace_days == 2
        assert billing.config.secret_values() == ["whsec_a", "whsec_b"]
        assert "sk_test_123" not in repr(billing)
        # Migrated: the free user's details are read from the tables without an error.
        assert billing.customers.for_user("u1").plan_key == "free"
        answer = app.test_client().post("/webhooks/stripe", data=b"{}")
        assert answer.status_code == 400
        assert json.loads(answer.data)["error"] == "missing Stripe-Signature header"
    finally:
        billing.close()
