"""examples/flask_app through Flask's test client: the whole flow, errors, the two modes."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from examples.flask_app import create_app
from examples.flask_app.billing import DEFAULT_PLANS_FILE, fake_gateway, load_plans, price_env_var
from examples.flask_app.walkthrough import Browser, run
from flask import Flask

from billingkit import Billing
from billingkit.adapters.stripe_sdk import StripeSdkGateway
from billingkit.contrib.flask import BillingKit
from billingkit.domain import EventStatus, Interval, PriceRef, Subscription, SubscriptionStatus
from billingkit.errors import ConfigurationError
from billingkit.testing import sign_payload

ROOT = Path(__file__).resolve().parents[2]


def billing_of(app: Flask) -> Billing:
    return BillingKit.billing_for(app)


def stored_subscription(app: Flask, user_id: str) -> Subscription:
    with billing_of(app).repository.unit_of_work() as uow:
        subscriptions = uow.subscriptions_for_user(user_id)
    assert len(subscriptions) == 1
    return subscriptions[0]


def delivery_report(browser: Browser) -> list[str]:
    """The flashed delivery report's answers, e.g. ['200 ignored (3)', '200 processed (4)']."""
    (report,) = [m for m in browser.flashes() if m.startswith("Stripe delivered")]
    return report.partition(": ")[2].split(", ")


def test_full_flow_pricing_to_cancel_at_period_end(make_flask_app: Any) -> None:
    app = make_flask_app()
    billing = billing_of(app)
    fake = fake_gateway(billing)
    assert fake is not None
    browser = Browser(app)

    page = browser.get("/pricing").text
    assert re.findall(r"<h2>(\w+)</h2>", page) == ["Free", "Pro", "Team", "API"]
    assert "12.00 USD" in page and "120.00 USD" in page and "49.00 USD" in page
    assert "0.05 USD</span> per API call, billed every month" in page

    browser.submit("/login", email="Ada@Example.com")
    assert browser.path == "/account"
    assert browser.facts()["plan"] == "Free"

    browser.submit("/checkout", plan="pro", interval="month")
    session_id = browser.path.rsplit("/", 1)[1]
    assert browser.path == f"/fake-stripe/checkout/{session_id}"
    request = fake.checkout_request(session_id)
    assert request.client_reference_id == "ada@example.com"
    assert request.success_url.endswith("/checkout/success?session_id={CHECKOUT_SESSION_ID}")

    browser.submit(f"/fake-stripe/checkout/{session_id}/pay")
    assert browser.path == "/checkout/success"
    assert all(answer.startswith("200 ") for answer in delivery_report(browser))
    assert browser.facts()["subscription-status"] == "Active"
    emitted = fake.emitted_events()
    with billing.repository.unit_of_work() as uow:
        ledger = {event.id: event.status for event in uow.list_events()}
    # Every event the fake emitted reached the endpoint and is in the ledger.
    assert set(ledger) == {event["id"] for event in emitted}
    assert EventStatus.FAILED not in ledger.values()
    assert stored_subscription(app, "ada@example.com").status is SubscriptionStatus.ACTIVE

    account = browser.account()
    assert (account["plan"], account["status"], account["access"]) == ("Pro", "Active", "granted")
    assert account["features"] == "projects, exports"
    assert account["limit-projects"] == "unlimited" and account["limit-seats"] == "3"
    first_end = stored_subscription(app, "ada@example.com").current_period_end
    assert first_end is not None
    assert account["renews"] == first_end.strftime("%Y-%m-%d %H:%M UTC")

    # Renewal: a new period, paid.
    browser.submit("/fake-stripe/clock", action="renewal")
    renewed = stored_subscription(app, "ada@example.com")
    assert renewed.status is SubscriptionStatus.ACTIVE
    assert renewed.current_period_start == first_end
    assert browser.account()["renews"] != account["renews"]

    # The next renewal fails: past_due, inside the 3-day grace period of plans.json.
    browser.submit("/fake-stripe/clock", action="card_declines")
    browser.submit("/fake-stripe/clock", action="renewal")
    assert stored_subscription(app, "ada@example.com").status is SubscriptionStatus.PAST_DUE
    account = browser.account()
    assert (account["status"], account["access"]) == ("Past due", "granted")
    assert "The last payment failed" in account["payment"]

    # Past the grace period (the retry fails too): past_due without access.
    browser.submit("/fake-stripe/clock", action="4d")
    account = browser.account()
    assert (account["status"], account["access"]) == ("Past due", "not granted")
    assert account["features"] == "none" and "limit-projects" not in account

    # The customer fixes the card in the portal: paid, active again.
    browser.submit("/billing/portal")
    assert browser.path == "/fake-stripe/portal"
    assert fake.calls["create_billing_portal_session"] == 1
    browser.submit("/fake-stripe/portal", action="update_card")
    assert browser.account()["status"] == "Active"

    # Cancel at period end: still active until then, then back on the free plan.
    browser.submit("/billing/portal")
    browser.submit("/fake-stripe/portal", action="cancel_at_period_end")
    account = browser.account()
    stored = stored_subscription(app, "ada@example.com")
    assert stored.cancel_at_period_end and stored.status is SubscriptionStatus.ACTIVE
    assert (account["status"], account["access"]) == ("Active", "granted")
    assert stored.current_period_end is not None
    assert account["ends"] == stored.current_period_end.strftime("%Y-%m-%d %H:%M UTC")
    assert "renews" not in account
    fake.advance(timedelta(hours=1))
    browser.submit("/fake-stripe/clock", action="renewal")
    assert stored_subscription(app, "ada@example.com").status is SubscriptionStatus.CANCELED
    account = browser.account()
    assert (account["plan"], account["status"]) == ("Free", "No subscription")


def test_webhook_duplicates_and_forgeries_through_the_test_client(make_flask_app: Any) -> None:
    app = make_flask_app()
    browser = Browser(app)
    browser.submit("/login", email="bo@example.com")
    browser.submit("/checkout", plan="team", interval="month")
    browser.submit(browser.path + "/pay")
    fake = fake_gateway(billing_of(app))
    assert fake is not None
    before = stored_subscription(app, "bo@example.com")
    event = fake.emitted_events()[-1]
    payload = json.dumps(event).encode()
    signature = sign_payload(payload, "whsec_flask_demo_fake_stripe", int(fake.now().timestamp()))
    headers = {"Stripe-Signature": signature, "Content-Type": "application/json"}
    again = browser.client.post("/webhooks/stripe", data=payload, headers=headers)
    assert again.status_code == 200 and again.get_json()["outcome"] == "duplicate"
    forged = browser.client.post(
        "/webhooks/stripe", data=payload.replace(b"team", b"pro!"), headers=headers
    )
    assert forged.status_code == 400
    unsigned = browser.client.post("/webhooks/stripe", data=payload)
    assert unsigned.status_code == 400
    assert stored_subscription(app, "bo@example.com") == before


def test_pages_refuse_what_they_should(make_flask_app: Any) -> None:
    app = make_flask_app()
    ada, eve = Browser(app), Browser(app)
    assert ada.client.get("/account").location.startswith("/login?next=")
    ada.submit("/login", email="ada@example.com")
    eve.submit("/login", email="eve@example.com")

    ada.submit("/checkout", plan="pro", interval="year")
    session_id = ada.path.rsplit("/", 1)[1]
    # Eve cannot confirm Ada's checkout, paid or not.
    eve.get(f"/checkout/success?session_id={session_id}", status=403)
    ada.submit(f"/fake-stripe/checkout/{session_id}/pay")
    eve.get(f"/checkout/success?session_id={session_id}", status=403)
    assert eve.account()["plan"] == "Free"

    ada.get("/checkout/success?session_id=cs_test_nope", status=404)
    ada.submit("/checkout", plan="enterprise", interval="month", status=404)
    ada.submit("/checkout", plan="free", interval="month", status=404)
    # Already subscribed: sent to the account page instead of a second checkout.
    ada.submit("/checkout", plan="team", interval="month")
    assert ada.path == "/account"
    assert any("already have a subscription" in m for m in ada.flashes())
    # Eve never paid: no billing portal for her.
    eve.submit("/billing/portal")
    assert eve.path == "/pricing"
    # A form without the session's token is refused.
    answer = ada.client.post("/checkout", data={"plan": "pro", "interval": "month"})
    assert answer.status_code == 400


def test_walkthrough_passes_and_fails_when_the_policy_differs() -> None:
    out = io.StringIO()
    assert run(out) == 0
    assert out.getvalue().rstrip().endswith("All 21 steps passed.")
    assert "past due; access not granted" in out.getvalue()
    # Without a grace period, the "access during the grace period" check fails: exit 1.
    out = io.StringIO()
    assert run(out, {"BILLING_PAST_DUE_GRACE_DAYS": 0}) == 1
    assert "7. The card declines at the next renewal: FAILED" in out.getvalue()


def test_walkthrough_command_exits_0() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.flask_app", "--walkthrough"],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All 21 steps passed." in done.stdout


def test_stripe_mode_from_the_two_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_not_a_real_key")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_from_the_stripe_cli")
    monkeypatch.setenv("BILLING_DATABASE_URL", f"sqlite:///{tmp_path / 'live.sqlite3'}")
    app = create_app()
    try:
        billing = billing_of(app)
        assert isinstance(billing.gateway, StripeSdkGateway) and fake_gateway(billing) is None
        assert "sk_test_not_a_real_key" not in repr(billing.gateway)
        client = app.test_client()
        assert client.get("/fake-stripe/clock").status_code == 404
        # The endpoint verifies with the configured secret on the real clock.
        payload = json.dumps(
            {"id": "evt_ping", "object": "event", "type": "test.ping", "created": 1,
             "livemode": False, "data": {"object": {"id": "x", "object": "thing"}}}
        ).encode()  # fmt: skip
        good = sign_payload(payload, "whsec_from_the_stripe_cli")
        answer = client.post("/webhooks/stripe", data=payload, headers={"Stripe-Signature": good})
        assert answer.status_code == 200 and answer.get_json()["outcome"] == "ignored"
        bad = sign_payload(payload, "whsec_flask_demo_fake_stripe")
        answer = client.post("/webhooks/stripe", data=payload, headers={"Stripe-Signature": bad})
        assert answer.status_code == 400
    finally:
        billing_of(app).close()


def test_half_a_stripe_setup_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="both"):
        create_app(
            {
                "STRIPE_API_KEY": "sk_test_x",
                "STRIPE_WEBHOOK_SECRET": "",
                "BILLING_DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}",
            }
        )


def test_prices_from_the_plans_file_or_the_environment(tmp_path: Path) -> None:
    plans = load_plans(DEFAULT_PLANS_FILE, {price_env_var("pro", Interval.MONTH): "price_1Abc"})
    pro = next(plan for plan in plans.plans if plan.key == "pro")
    assert price_env_var("pro", Interval.MONTH) == "BILLING_PRICE_PRO_MONTH"
    assert pro.prices[Interval.MONTH] == PriceRef(price_id="price_1Abc")
    assert pro.prices[Interval.YEAR] == PriceRef(lookup_key="flask_demo_pro_yearly")
    assert plans.free_plan == "free" and plans.past_due_grace_days == 3
    broken = tmp_path / "plans.json"
    broken.write_text('{"plans": [{"key": "pro"}]}')
    with pytest.raises(ConfigurationError, match="invalid plan"):
        load_plans(broken, {})
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_plans(tmp_path / "missing.json", {})


def test_subscribe_while_logged_out_keeps_the_plan_through_the_login(make_flask_app: Any) -> None:
    app = make_flask_app()
    browser = Browser(app)
    browser.get("/pricing")
    browser.submit("/checkout", plan="team", interval="month")
    assert browser.path == "/login"
    assert any("your plan is kept, Team (monthly)" in message for message in browser.flashes())
    browser.submit("/login", email="cy@example.com")
    session_id = browser.path.rsplit("/", 1)[1]
    assert browser.path == f"/fake-stripe/checkout/{session_id}"
    fake = fake_gateway(billing_of(app))
    assert fake is not None
    request = fake.checkout_request(session_id)
    assert (
        request.client_reference_id,
        fake.stripe_object(session_id)["metadata"]["plan_key"],
    ) == (
        "cy@example.com",
        "team",
    )
    # The choice is used once: the next login goes to the account page.
    browser.submit("/logout")
    browser.submit("/login", email="cy@example.com")
    assert browser.path == "/account"


def test_error_pages_are_friendly_with_a_way_back(
    make_flask_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_flask_app()
    browser = Browser(app)
    for path, status, title in [
        ("/nowhere", 404, "Page not found"),
        ("/webhooks/stripe", 405, "Page not found"),  # a GET on a POST-only route
        ("/checkout/success?session_id=cs_test_nope", 200, None),  # logged out: to the login
    ]:
        page = browser.get(path, status=status).text
        if title is not None:
            assert f"<h1>{title}</h1>" in page
            assert 'href="/pricing">Back to the plans</a>' in page
    browser.submit("/login", email="di@example.com")
    page = browser.get("/checkout/success?session_id=cs_test_nope", status=404).text
    assert "<h1>Not found</h1>" in page and "start again from the plans" in page
    assert "No such" not in page and "cs_test_nope" not in page  # Stripe's own text is logged
    assert any("cs_test_nope" in record.getMessage() for record in caplog.records)
    page = browser.submit("/checkout", plan="enterprise", interval="month", status=404).text
    assert "That plan is not for sale." in page
    stale = browser.client.post("/checkout", data={"plan": "pro", "interval": "month"})
    assert stale.status_code == 400 and "Your form expired" in stale.text


def test_exports_page_needs_the_feature(make_flask_app: Any) -> None:
    browser = Browser(make_flask_app())
    browser.get("/exports")
    assert browser.path == "/login"
    browser.submit("/login", email="ed@example.com")
    browser.get("/exports")
    assert browser.path == "/pricing"
    assert any("does not include exports" in message for message in browser.flashes())
