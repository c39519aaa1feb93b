"""examples/flask_app's account page through Flask's test client: every form and its page.

Change plan (preview, confirm, at renewal, undo, declined), seats, cancel/resume, promotion
codes, the card and the setup-mode Checkout, the expiring-card banner, billing history,
the metered plan's usage and the fake Stripe clock's next invoice.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from examples.flask_app.billing import fake_gateway
from examples.flask_app.walkthrough import Browser
from flask import Flask

from billingkit import Billing
from billingkit.contrib.flask import BillingKit
from billingkit.testing import FakeStripeGateway


def billing_of(app: Flask) -> Billing:
    return BillingKit.billing_for(app)


def fake_of(app: Flask) -> FakeStripeGateway:
    fake = fake_gateway(billing_of(app))
    assert fake is not None
    return fake


def subscribed(app: Flask, email: str = "ada@example.com", plan: str = "pro") -> Browser:
    """A browser logged in as ``email`` who paid for ``plan`` (monthly)."""
    browser = Browser(app)
    browser.submit("/login", email=email)
    browser.submit("/checkout", plan=plan, interval="month")
    assert browser.path.startswith("/fake-stripe/checkout/cs_")
    browser.submit(browser.path + "/pay")
    assert browser.path == "/checkout/success"
    return browser


def customer_id(app: Flask, user_id: str) -> str:
    with billing_of(app).repository.unit_of_work() as uow:
        link = uow.customer_for_user(user_id)
    assert link is not None
    return link.customer_id


def proration_date(page: str) -> str:
    found = re.search(r'name="proration_date" value="(\d+)"', page)
    assert found is not None
    return found[1]


def test_account_page_shows_forms_card_seats_and_empty_history(make_flask_app: Any) -> None:
    app = make_flask_app()
    browser = Browser(app)
    browser.submit("/login", email="new@example.com")
    page = browser.get("/account").text
    assert browser.facts()["card"] == "none"
    assert "seats" not in browser.facts()
    assert "No invoices yet." in page
    assert 'id="change-plan"' not in page and 'id="card-form"' not in page

    browser = subscribed(app)
    page = browser.get("/account").text
    facts = browser.facts()
    assert facts["seats"] == "1"
    for form in ("change-plan", "seats-form", "promotion-form", "cancel-form", "card-form"):
        assert f'id="{form}"' in page
    assert 'id="usage-form"' not in page and "usage" not in facts  # Pro is not metered
    rows = re.findall(r'<tr class="invoice">(.*?)</tr>', page, re.DOTALL)
    assert len(rows) == 1
    assert "https://invoice.stripe.com/" in rows[0] and "12.00 USD" in rows[0]
    assert "1 \u00d7 Pro" in rows[0]


def test_preview_then_confirm_changes_the_plan(make_flask_app: Any) -> None:
    app = make_flask_app()
    browser = subscribed(app)
    page = browser.submit("/account/plan/preview", plan="team", interval="").text
    facts = browser.facts()
    assert facts["due-now"] == "0.00 USD"
    assert facts["next-invoice"].endswith("USD on 2026-02-05")
    assert 'name="plan" value="team"' in page
    browser.submit(
        "/account/plan", plan="team", interval="", proration_date=proration_date(page), when="now"
    )
    assert browser.path == "/account"
    assert "You are now on the Team plan." in browser.flashes()
    assert browser.facts()["plan"] == "Team"
    browser.submit("/account/plan", plan="team", interval="", when="now")
    assert "You are already on Team." in browser.flashes()


def test_change_at_renewal_is_scheduled_then_undone(make_flask_app: Any) -> None:
    app = make_flask_app()
    browser = subscribed(app)
    browser.submit("/account/plan", plan="team", interval="", when="period_end")
    assert "You move to Team on 2026-02-05." in browser.flashes()
    assert browser.facts()["plan"] == "Pro"
    # A change now while one is scheduled: a friendly 409, not Stripe's text.
    answer = browser.submit("/account/plan", plan="pro", interval="year", status=409)
    assert "Not possible right now" in answer.text
    browser.submit("/account/plan/undo")
    assert "The scheduled plan change is withdrawn." in browser.flashes()
    with billing_of(app).repository.unit_of_work() as uow:
        (stored,) = uow.subscriptions_for_user("ada@example.com")
    assert stored.schedule_id is None


def test_declined_upgrade_stays_on_the_old_plan(
    make_flask_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_flask_app()
    browser = subscribed(app)
    before = billing_of(app).customers.for_user("ada@example.com").price_id
    fake_of(app).set_card_declining(customer_id(app, "ada@example.com"), True)
    page = browser.submit("/account/plan/preview", plan="pro", interval="year").text
    assert browser.facts()["due-now"] != "0.00 USD"
    with caplog.at_level(logging.INFO, logger="flask_app"):
        browser.submit(
            "/account/plan",
            plan="pro",
            interval="year",
            proration_date=proration_date(page),
            when="now",
        )
    assert browser.flashes() == [
        "Your card was declined: you stay on the Pro plan. Update your card, then try again."
    ]
    assert browser.facts()["plan"] == "Pro"
    assert any("pending payment" in record.getMessage() for record in caplog.records)
    assert billing_of(app).customers.for_user("ada@example.com").price_id == before


def test_seats_validate_and_change_the_quantity(make_flask_app: Any) -> None:
    app = make_flask_app()
    browser = subscribed(app)
    for bad in ("", "0", "abc", "1001"):
        browser.submit("/account/seats", seats=bad)
        assert browser.flashes() == ["Enter a number of seats from 1 to 1000."]
        assert browser.facts()["seats"] == "1"
    browser.submit("/account/seats", seats="4")
    assert browser.flashes() == ["You now have 4 seat(s)."]
    assert browser.facts()["seats"] == "4"
    fake_of(app).set_card_declining(customer_id(app, "ada@example.com"), True)
    browser.submit("/account/seats", seats="5")
    # Prorated on the next invoice (no charge now): the decline does not matter yet.
    assert browser.facts()["seats"] == "5"


def test_cancel_then_resume(make_flask_app: Any) -> None:
    app = make_flask_app()
    browser = subscribed(app)
    browser.submit("/account/cancel")
    assert browser.flashes() == ["Your subscription ends on 2026-02-05."]
    facts = browser.facts()
    assert "ends" in facts and "renews" not in facts
    assert "Resume subscription" in browser.get("/account").text
    browser.submit("/account/resume")
    assert browser.flashes() == ["Your subscription continues: it renews as before."]
    assert "renews" in browser.facts()


def test_promotion_codes(make_flask_app: Any, caplog: pytest.LogCaptureFixture) -> None:
    app = make_flask_app()
    browser = subscribed(app)
    browser.submit("/account/promotion", code="  ")
    assert browser.flashes() == ["Enter a promotion code."]
    with caplog.at_level(logging.INFO, logger="flask_app"):
        browser.submit("/account/promotion", code="NOPE")
    assert browser.flashes() == ["The code NOPE is not valid."]
    assert any("NOPE" in record.getMessage() for record in caplog.records)
    browser.submit("/account/promotion", code="WELCOME20")
    assert browser.flashes() == ["The code WELCOME20 is applied to your subscription."]
    sub_id = fake_of(app).subscription_ids(customer_id(app, "ada@example.com"))[0]
    assert fake_of(app).stripe_object(sub_id)["discounts"]


def test_without_a_subscription_the_forms_answer_friendly_errors(make_flask_app: Any) -> None:
    app = make_flask_app()
    browser = Browser(app)
    browser.submit("/login", email="free@example.com")
    answer = browser.submit("/account/plan/preview", plan="team", interval="", status=404)
    assert "No subscription" in answer.text or "No billing account" in answer.text
    browser.submit("/account/card")
    assert browser.path == "/pricing"
    assert "Subscribe to a plan first: there is no card to update yet." in browser.flashes()
    browser.submit("/account/usage")
    assert browser.flashes() == ["Your plan is not billed by usage."]
    answer = browser.client.post("/account/cancel", data={"csrf_token": "wrong"})
    assert answer.status_code == 400


def test_update_card_on_setup_mode_checkout(make_flask_app: Any) -> None:
    app = make_flask_app()
    browser = subscribed(app)
    browser.submit("/account/card")
    assert browser.path.startswith("/fake-stripe/setup/cs_")
    setup_path = browser.path
    assert browser.facts()["checkout-status"] == "open"
    for bad in ({"last4": "12"}, {"exp_month": "13"}, {"exp_year": "x"}):
        browser.submit(setup_path + "/save", status=400, **bad)
    browser.submit(setup_path + "/save", last4="4444", exp_month="8", exp_year="2031")
    assert browser.path == "/account"
    assert browser.facts()["card"] == "visa ending 4444, expires 08/2031"
    assert "Card ending 4444 saved." in browser.flashes()
    # The completed session cannot be used again.
    answer = browser.submit(setup_path + "/save", status=400, last4="1111")
    assert "can no longer save a card" in answer.text
    browser.submit(setup_path.replace("/setup/", "/checkout/") + "/cancel")  # the Back button
    assert browser.path == "/account"


def test_expiring_card_banner(make_flask_app: Any) -> None:
    app = make_flask_app()
    browser = subscribed(app)
    answer = browser.submit("/fake-stripe/clock", action="card_expiring", status=404)
    assert "no card" in answer.text
    browser.submit("/account/card")
    browser.submit(browser.path + "/save", last4="4444", exp_month="8", exp_year="2031")
    assert browser.page is not None and 'id="card-expiring"' not in browser.page.text
    browser.submit("/fake-stripe/clock", action="card_expiring")
    page = browser.get("/account").text
    banner = re.search(r'id="card-expiring">(.*?)</p>', page)
    assert banner is not None
    assert "visa ending 4444 expires 01/2026" in banner[1]


def test_metered_plan_records_usage_and_bills_it_on_the_renewal(make_flask_app: Any) -> None:
    app = make_flask_app()
    browser = subscribed(app, "bob@example.com", plan="api")
    page = browser.get("/account").text
    assert 'id="usage-form"' in page and browser.facts()["usage"] == "0"
    for bad in ("0", "x", "10001"):
        browser.submit("/account/usage", calls=bad)
        assert browser.flashes() == ["Enter a number of API calls from 1 to 10000."]
    browser.submit("/account/usage", calls="7")
    browser.submit("/account/usage")  # the button: 10 calls
    assert browser.flashes() == ["10 API calls recorded: 17 this period."]
    assert browser.facts()["usage"] == "17 (2 not yet sent to Stripe)"

    browser.get("/fake-stripe/clock")
    assert browser.facts()["next-invoice-metered"].startswith("0 api_calls")
    browser.submit("/fake-stripe/clock", action="flush_usage")
    assert browser.flashes() == ["Usage flushed to Stripe: 2 record(s) sent."]
    assert browser.facts()["next-invoice-metered"].startswith("17 api_calls")
    assert browser.account()["usage"] == "17"
    browser.submit("/account/usage", calls="3")
    browser.submit("/fake-stripe/clock", action="renewal")  # flushes first, as a cron would
    assert any(m.startswith("Usage flushed to Stripe: 1 record") for m in browser.flashes())
    page = browser.get("/account").text
    row = re.search(r"<td>([^<]+)</td>\s*<td>20 \u00d7 API</td>", page)
    assert row is not None and row[1] == "1.00 USD"
    assert browser.facts()["usage"] == "0"


def test_pricing_page_labels_the_metered_price(make_flask_app: Any) -> None:
    page = Browser(make_flask_app()).get("/pricing").text
    assert re.search(r"0\.05 USD</span> per API call, billed every month", page)
    assert re.search(r"12\.00 USD</span> / month", page)
