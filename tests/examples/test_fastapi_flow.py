"""examples/fastapi_app end to end: FastAPI's TestClient, the fake Stripe, SQLite."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from examples.fastapi_app import create_app
from examples.fastapi_app.app import PLANS, build_billing
from fastapi.testclient import TestClient

from billingkit import Billing, BillingConfig, SqlAlchemyRepository
from billingkit.adapters.sqlalchemy import upgrade
from billingkit.domain import EventStatus
from billingkit.errors import ConfigurationError
from billingkit.testing import FakeStripeGateway, signed_delivery

SECRET = "whsec_fastapi_example"
ADA = {"X-User-Id": "ada"}


@pytest.fixture
def fake() -> FakeStripeGateway:
    fake = FakeStripeGateway(webhook_secret=SECRET)
    fake.add_price(amount=1500, interval="month", lookup_key="fastapi_demo_pro_monthly",
                   product_name="Pro")  # fmt: skip
    fake.add_price(amount=15000, interval="year", lookup_key="fastapi_demo_pro_yearly",
                   product_name="Pro")  # fmt: skip
    return fake


@pytest.fixture
def client(fake: FakeStripeGateway, tmp_path: Path) -> Iterator[TestClient]:
    repository = SqlAlchemyRepository(f"sqlite:///{tmp_path / 'billing.sqlite3'}")
    upgrade(repository.engine)
    config = BillingConfig(plans=PLANS, free_plan="free", webhook_secrets=[SECRET])
    billing = Billing.build(config, fake, repository, clock=fake.now)
    with TestClient(create_app(billing, base_url="https://api.example")) as client:
        yield client


def deliver(client: TestClient, fake: FakeStripeGateway) -> list[str]:
    """POST the fake's pending events to the app's webhook; their outcomes."""
    outcomes = []
    for delivery in fake.drain_events():
        answer = client.post(
            "/webhooks/stripe",
            content=delivery.payload,
            headers={"Stripe-Signature": delivery.signature, "Content-Type": "application/json"},
        )
        assert answer.status_code == 200, answer.text
        outcomes.append(answer.json()["outcome"])
    return outcomes


def test_pricing_checkout_webhooks_account_renewal_and_exports(
    client: TestClient, fake: FakeStripeGateway
) -> None:
    assert client.get("/pricing").json() == [
        {"key": "free", "name": "Free", "features": [], "prices": {}},
        {"key": "pro", "name": "Pro", "features": ["exports"],
         "prices": {"month": "15.00 USD", "year": "150.00 USD"}},
    ]  # fmt: skip
    assert client.get("/account").status_code == 401
    assert client.get("/account", headers=ADA).json()["plan"] == "free"
    assert client.get("/exports", headers=ADA).status_code == 403

    started = client.post("/billing/checkout", json={"plan": "pro"}, headers=ADA).json()
    assert started["url"].startswith("https://checkout.stripe.com/")
    request = fake.checkout_request(started["session_id"])
    assert request.success_url == (
        "https://api.example/billing/success?session_id={CHECKOUT_SESSION_ID}"
    )
    fake.complete_checkout(started["session_id"])
    assert "processed" in deliver(client, fake)
    success = client.get("/billing/success", params={"session_id": started["session_id"]},
                         headers=ADA).json()  # fmt: skip
    assert success == {"complete": True, "plan": "pro", "subscription_status": "active"}
    account = client.get("/account", headers=ADA).json()
    assert (account["plan"], account["status"], account["has_access"]) == ("pro", "active", True)
    assert account["features"] == ["exports"]
    assert client.get("/exports", headers=ADA).json() == {"export": "projects.csv"}

    # Another user cannot confirm Ada's checkout; Ada cannot start a second subscription.
    eve = client.get("/billing/success", params={"session_id": started["session_id"]},
                     headers={"X-User-Id": "eve"})  # fmt: skip
    assert eve.status_code == 403
    again = client.post("/billing/checkout", json={"plan": "pro"}, headers=ADA)
    assert again.status_code == 409
    assert client.post("/billing/checkout", json={"plan": "gold"}, headers=ADA).status_code == 404

    # A month on: the renewal arrives as webhooks; the period moves.
    before = account["renews_at"]
    fake.advance(timedelta(days=32))
    deliver(client, fake)
    assert client.get("/account", headers=ADA).json()["renews_at"] > before
    assert client.post("/billing/portal", headers=ADA).json()["url"].startswith("https://")


def test_webhook_duplicates_forgeries_and_a_failure(
    client: TestClient, fake: FakeStripeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    started = client.post("/billing/checkout", json={"plan": "pro"}, headers=ADA).json()
    fake.complete_checkout(started["session_id"])
    deliver(client, fake)
    billing: Billing = client.app.state.billing  # type: ignore[attr-defined]
    with billing.repository.unit_of_work() as uow:
        ledger = {event.id: event.status for event in uow.list_events(limit=100)}
    assert set(ledger) == {event["id"] for event in fake.emitted_events()}
    at = int(fake.now().timestamp())
    for emitted in fake.emitted_events():
        again = signed_delivery(emitted, SECRET, timestamp=at)
        answer = client.post("/webhooks/stripe", content=again.payload,
                             headers={"Stripe-Signature": again.signature})  # fmt: skip
        assert answer.json()["outcome"] == "duplicate"
        forged = signed_delivery(emitted, "whsec_wrong", timestamp=at)
        answer = client.post("/webhooks/stripe", content=forged.payload,
                             headers={"Stripe-Signature": forged.signature})  # fmt: skip
        assert answer.status_code == 400

    def broken(event: object) -> None:
        raise RuntimeError("mail server down")

    from billingkit import SubscriptionCanceled

    billing.webhooks.on(SubscriptionCanceled, broken)
    subscription_id = fake.subscription_ids(fake.stripe_object(started["session_id"])["customer"])[
        0
    ]
    fake.cancel_subscription(subscription_id)
    (event,) = fake.drain_events()
    with caplog.at_level(logging.ERROR):
        answer = client.post("/webhooks/stripe", content=event.payload,
                             headers={"Stripe-Signature": event.signature})  # fmt: skip
    assert answer.status_code == 500
    with billing.repository.unit_of_work() as uow:
        stored = uow.get_event(event.id)
    assert stored is not None and stored.status is EventStatus.FAILED
    assert client.get("/account", headers=ADA).json()["status"] == "active"  # rolled back


def test_build_billing_needs_every_setting() -> None:
    with pytest.raises(ConfigurationError, match="STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET"):
        build_billing({"BILLING_DATABASE_URL": "sqlite://"})
