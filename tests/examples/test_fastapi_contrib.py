"""billingkit.contrib.fastapi: the webhook router, the size cap, get_billing, requires_feature."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, MutableMapping
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Header
from fastapi.testclient import TestClient

from billingkit import Billing, BillingConfig, BillingDetails, InMemoryRepository, PlanDefinition
from billingkit.contrib.fastapi import BillingDep, init_app, requires_feature
from billingkit.errors import ConfigurationError
from billingkit.testing import FakeStripeGateway, sign_payload, signed_delivery

SECRET = "whsec_fastapi_contrib"
CAP = 100_000


def user_header(x_user: str | None = Header(default=None)) -> str | None:
    return x_user


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
def app(billing: Billing) -> FastAPI:
    app = FastAPI()
    init_app(app, billing)

    @app.get("/plan")
    def plan(billing: BillingDep, user: str = Depends(user_header)) -> dict[str, Any]:
        return {"plan": billing.customers.for_user(user).plan_key}

    @app.get("/export", dependencies=[requires_feature("exports", user_id=user_header)])
    def export() -> str:
        return "exported"

    @app.get("/details")
    def details(
        me: Annotated[BillingDetails, requires_feature("exports", user_id=user_header)],
    ) -> dict[str, Any]:
        return {"user": me.user_id, "plan": me.plan_key}

    return app


def subscribe(client: TestClient, billing: Billing, fake: FakeStripeGateway, user: str) -> None:
    started = billing.checkout.start_checkout(
        user_id=user, email=None, plan_key="pro", interval="month",
        success_url="https://x.example/ok", cancel_url="https://x.example/no",
    )  # fmt: skip
    fake.complete_checkout(started.session_id)
    for delivery in fake.drain_events():
        answer = client.post(
            "/webhooks/stripe",
            content=delivery.payload,
            headers={"Stripe-Signature": delivery.signature},
        )
        assert answer.status_code == 200, answer.text


def test_webhook_router_applies_events_like_handle_http(
    app: FastAPI, billing: Billing, fake: FakeStripeGateway
) -> None:
    client = TestClient(app)
    subscribe(client, billing, fake, "ada")
    assert client.get("/plan", headers={"X-User": "ada"}).json() == {"plan": "pro"}
    first = fake.emitted_events()[0]
    again = signed_delivery(first, SECRET, timestamp=int(fake.now().timestamp()))
    answer = client.post(
        "/webhooks/stripe", content=again.payload, headers={"Stripe-Signature": again.signature}
    )
    assert answer.status_code == 200
    assert answer.json() == {
        "outcome": "duplicate", "event_id": first["id"], "event_type": first["type"]
    }  # fmt: skip
    assert answer.headers["content-type"] == "application/json"
    forged = client.post(
        "/webhooks/stripe", content=again.payload, headers={"Stripe-Signature": "t=1,v1=00"}
    )
    assert forged.status_code == 400
    assert client.post("/webhooks/stripe", content=b"{}").json() == {
        "error": "missing Stripe-Signature header"
    }
    assert "/webhooks/stripe" not in json.dumps(client.get("/openapi.json").json())


def test_raw_bytes_reach_the_processor(app: FastAPI, fake: FakeStripeGateway) -> None:
    payload = (
        b'{"id": "evt_raw",  "object": "event", "type": "unknown.kind", "created": 1700000000,'
        b'\n"livemode": false, "data": {"object": {"id": "x"}}}'
    )
    header = sign_payload(payload, SECRET, timestamp=int(fake.now().timestamp()))
    answer = TestClient(app).post(
        "/webhooks/stripe", content=payload, headers={"Stripe-Signature": header}
    )
    assert (answer.status_code, answer.json()["outcome"]) == (200, "ignored")


def test_processing_runs_in_the_thread_pool_and_a_failure_is_500(
    app: FastAPI, billing: Billing, fake: FakeStripeGateway
) -> None:
    from billingkit import SubscriptionActivated

    threads: list[str] = []

    def hook(event: SubscriptionActivated) -> None:
        threads.append(threading.current_thread().name)
        raise RuntimeError("hook down")

    billing.webhooks.on(SubscriptionActivated, hook)
    with TestClient(app) as client:
        loop_thread = client.portal.call(lambda: threading.current_thread().name)
        with pytest.raises(AssertionError, match="processing failed"):
            subscribe(client, billing, fake, "bob")
    assert threads and all(name != loop_thread for name in threads)


class Receiver:
    """An ASGI ``receive`` feeding an endless body in 64 KiB messages, counting them."""

    def __init__(self) -> None:
        self.sent = 0

    async def __call__(self) -> dict[str, Any]:
        self.sent += 1
        return {"type": "http.request", "body": b"x" * 65536, "more_body": True}


def call_asgi(
    app: FastAPI, headers: dict[str, str], receive: Receiver
) -> tuple[int, dict[str, str], Any]:
    messages: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/webhooks/stripe", "raw_path": b"/webhooks/stripe",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1), "server": ("t", 80),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "state": {},
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], response_headers, json.loads(body)


def test_declared_oversized_body_is_refused_without_reading_it(app: FastAPI) -> None:
    receive = Receiver()
    status, headers, body = call_asgi(
        app, {"content-length": str(200 * 1024 * 1024), "stripe-signature": "t=1,v1=00"}, receive
    )
    assert (status, body) == (400, {"error": f"body larger than {CAP} bytes"})
    assert headers["connection"] == "close"
    assert receive.sent == 0


def test_streamed_oversized_body_stops_at_the_cap(app: FastAPI) -> None:
    receive = Receiver()  # never ends: reading it all would never return
    status, _, body = call_asgi(app, {"stripe-signature": "t=1,v1=00"}, receive)
    assert (status, body) == (400, {"error": f"body larger than {CAP} bytes"})
    assert receive.sent == CAP // 65536 + 1


def test_requires_feature(app: FastAPI, billing: Billing, fake: FakeStripeGateway) -> None:
    client = TestClient(app)
    assert client.get("/export").status_code == 401
    denied = client.get("/export", headers={"X-User": "ada"})
    assert denied.status_code == 403
    assert "exports" in denied.json()["detail"]
    subscribe(client, billing, fake, "ada")
    assert client.get("/export", headers={"X-User": "ada"}).json() == "exported"
    assert client.get("/details", headers={"X-User": "ada"}).json() == {
        "user": "ada", "plan": "pro"
    }  # fmt: skip


def test_get_billing_without_init_app_is_a_configuration_error(billing: Billing) -> None:
    app = FastAPI()

    @app.get("/x")
    def x(billing: BillingDep) -> str:
        return "never"

    with pytest.raises(ConfigurationError, match="init_app"):
        TestClient(app).get("/x")
    bare = FastAPI()
    init_app(bare, billing, webhook_path=None)
    assert TestClient(bare).post("/webhooks/stripe", content=b"{}").status_code == 404
