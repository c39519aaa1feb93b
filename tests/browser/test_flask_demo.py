"""The Flask demo in a real browser, clicked through as a person would.

pricing -> Subscribe while logged out -> log in -> pay -> the account shows the plan ->
the Stripe clock: a renewal, then a declined card -> the billing portal fixes the card ->
a new card on setup-mode Checkout -> preview and confirm an upgrade ->
cancel at period end -> the period ends. Every step asserts what the page shows and saves a
screenshot to ``build/browser/``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from examples.flask_app import create_app
from examples.flask_app.walkthrough import fake_mode_settings
from werkzeug.serving import make_server

from billingkit.contrib.flask import BillingKit

pytestmark = pytest.mark.browser


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    """The demo served on 127.0.0.1 (an ephemeral port); the fake POSTs webhooks over HTTP."""
    app = create_app(fake_mode_settings(tmp_path, FAKE_DELIVERY="http"))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        BillingKit.billing_for(app).close()


class Person:
    """One browser tab, with a numbered screenshot after every step."""

    def __init__(self, page: Any, screenshots: Path) -> None:
        self.page = page
        self.screenshots = screenshots
        self.shots = 0

    def shot(self, name: str) -> None:
        self.shots += 1
        path = self.screenshots / f"{self.shots:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)

    def click(self, name: str, *, within: str = "body") -> None:
        self.page.locator(within).get_by_role("button", name=name).first.click()
        self.page.wait_for_load_state()

    def link(self, name: str) -> None:
        self.page.get_by_role("link", name=name, exact=True).first.click()
        self.page.wait_for_load_state()

    def text(self, selector: str) -> str:
        return " ".join(self.page.locator(selector).inner_text().split())

    def path(self) -> str:
        """The path of the page shown (no query)."""
        return re.sub(r"^https?://[^/]+", "", self.page.url).partition("?")[0]

    def flashes(self) -> list[str]:
        return [" ".join(t.split()) for t in self.page.locator(".flash").all_inner_texts()]

    def clock(self, action: str) -> None:
        self.link("Stripe clock (dev)")
        self.click(action)
        assert any(m.startswith("Stripe delivered") for m in self.flashes()), self.flashes()
        assert not [m for m in self.flashes() if re.search(r": .*\b(400|500|0) ", m)]

    def account(self) -> None:
        self.link("Account")
        assert self.path() == "/account"


def test_a_person_subscribes_renews_fails_fixes_and_cancels(
    chromium: Any, demo: str, screenshots: Path
) -> None:
    context = chromium.new_context(viewport={"width": 1100, "height": 800})
    context.set_default_timeout(15_000)
    person = Person(context.new_page(), screenshots)
    page = person.page
    try:
        page.goto(demo + "/pricing")
        assert page.locator("h2").all_inner_texts() == ["Free", "Pro", "Team", "API"]
        assert page.locator("#plan-pro .price").all_inner_texts() == ["12.00 USD", "120.00 USD"]
        person.shot("pricing")

        person.click("Subscribe", within="#plan-pro")  # logged out
        assert person.path() == "/login"
        assert (
            "Log in to continue to checkout: your plan is kept, Pro (monthly)." in person.flashes()
        )
        person.shot("login-keeps-the-plan")

        page.get_by_label("E-mail").fill("ada@example.com")
        person.click("Log in")
        assert person.path().startswith("/fake-stripe/checkout/cs_")
        assert "pro (month)" in person.text("body")
        person.shot("checkout")

        person.click("Pay")
        assert person.path() == "/checkout/success"
        assert page.locator("h1").inner_text() == "Thank you!"
        assert person.text("#subscription-status") == "Active"
        person.shot("paid")

        person.link("Go to your account")
        assert person.text("#plan") == "Pro"
        assert person.text("#status") == "Active"
        assert person.text("#access") == "granted"
        renews = person.text("#renews")
        person.shot("account-pro")

        person.clock("To the next renewal")
        person.shot("clock-renewal")
        person.account()
        assert person.text("#status") == "Active" and person.text("#renews") > renews

        person.link("Stripe clock (dev)")
        person.click("Card declines from now on")
        person.clock("To the next renewal")
        person.account()
        assert person.text("#status") == "Past due"
        assert "The last payment failed" in person.text("#payment")
        person.shot("account-past-due")

        person.click("Manage billing")
        assert person.path() == "/fake-stripe/portal"
        person.shot("portal")
        person.click("Update card and pay the open invoice")
        person.account()
        assert person.text("#status") == "Active"
        person.shot("account-card-fixed")

        person.click("Update card")  # setup-mode Checkout, played by the fake
        assert person.path().startswith("/fake-stripe/setup/")
        person.click("Save card")
        assert person.path() == "/account"
        assert person.text("#card") == "visa ending 4444, expires 12/2030"
        person.shot("account-card-saved")

        page.select_option("#change-plan select[name=plan]", "team")
        person.click("Preview the change")
        assert person.text("#due-now") == "0.00 USD"
        person.shot("change-plan-preview")
        person.click("Change now")
        assert person.text("#plan") == "Team"
        person.shot("account-upgraded")

        person.click("Manage billing")
        person.click("Cancel at period end")
        person.account()
        assert person.text("#status") == "Active"
        assert page.locator("#ends").count() == 1 and page.locator("#renews").count() == 0
        person.shot("account-cancel-at-period-end")

        person.clock("To the next renewal")
        person.account()
        assert person.text("#plan") == "Free"
        assert person.text("#status") == "No subscription"
        person.shot("account-ended")

        page.goto(demo + "/no-such-page")
        assert page.locator("h1").inner_text() == "Page not found"
        person.link("Back to the plans")
        assert person.path() == "/pricing"
    except Exception:
        person.shot("failure")
        raise
    finally:
        context.close()
