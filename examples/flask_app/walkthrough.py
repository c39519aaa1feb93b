"""The whole subscription flow, headless: ``python -m examples.flask_app --walkthrough``.

A :class:`Browser` drives the app through Flask's test client the way a person would (forms,
redirects, the fake Stripe's pages) and reads only what the pages show. Every step prints
what it saw and checks it; a failed check stops the run with exit status 1.
"""

from __future__ import annotations

import html
import re
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from examples.flask_app.app import create_app
from flask import Flask
from werkzeug.test import TestResponse

from billingkit import Billing
from billingkit.contrib.flask import BillingKit

__all__ = ["STEPS", "Browser", "WalkthroughFailed", "fake_mode_settings", "run"]

#: The fake Stripe's start time in the walkthrough, so its output is the same on every run.
WALKTHROUGH_START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
_FACT = re.compile(r'<dd id="([^"]+)"[^>]*>(.*?)</dd>', re.DOTALL)
_FLASH = re.compile(r'<p class="flash">(.*?)</p>', re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


class WalkthroughFailed(AssertionError):
    """A page did not show what the walkthrough expected."""


def expect(condition: bool, message: str) -> None:
    """Raise :class:`WalkthroughFailed` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise WalkthroughFailed(message)


def _text(fragment: str) -> str:
    return " ".join(html.unescape(_TAG.sub("", fragment)).split())


def fake_mode_settings(database_dir: str | Path, **overrides: Any) -> dict[str, Any]:
    """Settings for a headless run: the fake Stripe, SQLite in ``database_dir``."""
    return {
        "TESTING": True,
        "STRIPE_API_KEY": "",
        "STRIPE_WEBHOOK_SECRET": "",
        "BILLING_DATABASE_URL": f"sqlite:///{Path(database_dir) / 'billing.sqlite3'}",
        "FAKE_DELIVERY": "test_client",
        "FAKE_START": WALKTHROUGH_START,
        **overrides,
    }


class Browser:
    """A person using the app, through Flask's test client (cookies kept, redirects followed)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.client = app.test_client()
        self.page: TestResponse | None = None

    def get(self, path: str, *, status: int = 200) -> TestResponse:
        """Open ``path`` (following redirects) and expect ``status``."""
        return self._check(self.client.get(path, follow_redirects=True), status, f"GET {path}")

    def submit(self, path: str, *, status: int = 200, **form: str) -> TestResponse:
        """Submit a form to ``path`` with the session's form token, following redirects."""
        with self.client.session_transaction() as session:
            token = session.get("csrf_token")
        if token is None:
            self.client.get("/login")  # renders a form: the session gets its token
            with self.client.session_transaction() as session:
                token = session["csrf_token"]
        answer = self.client.post(path, data={**form, "csrf_token": token}, follow_redirects=True)
        return self._check(answer, status, f"POST {path}")

    def _check(self, answer: TestResponse, status: int, what: str) -> TestResponse:
        expect(answer.status_code == status, f"{what} answered {answer.status_code}, not {status}")
        self.page = answer
        return answer

    @property
    def path(self) -> str:
        """The path of the page the browser is on."""
        assert self.page is not None
        return self.page.request.path

    def facts(self) -> dict[str, str]:
        """The page's ``<dd id=...>`` facts as text, by id."""
        assert self.page is not None
        return {key: _text(value) for key, value in _FACT.findall(self.page.text)}

    def flashes(self) -> list[str]:
        """The page's flash messages."""
        assert self.page is not None
        return [_text(message) for message in _FLASH.findall(self.page.text)]

    def account(self) -> dict[str, str]:
        """Open the account page and return its facts."""
        self.get("/account")
        return self.facts()


@dataclass(frozen=True)
class Step:
    """One titled step: it acts, checks, and returns a line saying what it saw."""

    title: str
    run: Callable[[Browser], str]


def _date(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M UTC").replace(tzinfo=timezone.utc)


def _delivered(browser: Browser) -> str:
    """The page's delivery report; every delivered event must have been answered 200."""
    reports = [m for m in browser.flashes() if m.startswith("Stripe delivered")]
    expect(len(reports) == 1, f"expected one delivery report, got {reports}")
    answers = reports[0].partition(": ")[2].split(", ")
    failed = [answer for answer in answers if not re.fullmatch(r"200 \w+ \(\d+\)", answer)]
    expect(not failed, f"deliveries not answered 200: {failed}")
    return reports[0]


def pricing(browser: Browser) -> str:
    page = browser.get("/pricing").text
    plans = re.findall(r'id="plan-([^"]+)"', page)
    expect(plans == ["free", "pro", "team", "api"], f"plans on the pricing page: {plans}")
    amounts = [_text(a) for a in re.findall(r'<span class="price">(.*?)</span>', page)]
    expected = ["12.00 USD", "120.00 USD", "49.00 USD", "0.05 USD"]
    expect(amounts == expected, f"prices shown: {amounts}")
    return f"plans free, pro, team, api (metered); prices {', '.join(amounts)}"


def subscribe_logged_out(browser: Browser) -> str:
    browser.submit("/checkout", plan="pro", interval="month")
    expect(browser.path == "/login", f"subscribing logged out led to {browser.path}")
    flashes = browser.flashes()
    expect(any("your plan is kept" in m for m in flashes), f"no word about the plan: {flashes}")
    return "Subscribe (Pro, monthly) while logged out: the login page, the plan kept"


def log_in(browser: Browser) -> str:
    browser.submit("/login", email="ada@example.com")
    expect(browser.path.startswith("/fake-stripe/checkout/cs_"), f"after login: {browser.path}")
    expect(browser.facts().get("checkout-status") == "open", "the session is not open")
    return f"logged in as ada@example.com, straight on to the fake Checkout page {browser.path}"


def pay(browser: Browser) -> str:
    browser.submit(browser.path + "/pay")
    facts = browser.facts()
    expect(browser.path == "/checkout/success", f"after paying the browser is on {browser.path}")
    expect(facts.get("checkout-status") == "Complete, paid", f"checkout: {facts}")
    expect(facts.get("subscription-status") == "Active", f"subscription: {facts}")
    status = facts["checkout-status"]
    return f"{_delivered(browser)}\nconfirm_checkout: {status}, subscription active"


def active_account(browser: Browser) -> str:
    facts = browser.account()
    expected = {"plan": "Pro", "status": "Active", "access": "granted"}
    expect(all(facts.get(k) == v for k, v in expected.items()), f"account: {facts}")
    expect(facts.get("features") == "projects, exports", f"features: {facts.get('features')}")
    expect("renews" in facts, "no renewal date shown")
    exports = browser.get("/exports")
    expect(browser.path == "/exports" and 'id="exports"' in exports.text, "exports refused")
    return (
        f"plan Pro, status active, access granted, renews {facts['renews']}\n"
        f"features: {facts['features']}; the Exports page opens"
    )


def _clock(browser: Browser, action: str) -> str:
    browser.submit("/fake-stripe/clock", action=action)
    return _delivered(browser) if action in ("renewal", "4d", "1d", "7d") else ""


def renewal(browser: Browser) -> str:
    before = _date(browser.account()["renews"])
    delivered = _clock(browser, "renewal")
    facts = browser.account()
    expect(facts.get("status") == "Active", f"after the renewal: {facts}")
    after = _date(facts["renews"])
    expect(after > before, f"renewal date did not move ({before} -> {after})")
    return f"{delivered}\nstill active; renews {facts['renews']}"


def failed_payment(browser: Browser) -> str:
    _clock(browser, "card_declines")
    delivered = _clock(browser, "renewal")
    facts = browser.account()
    expect(facts.get("status") == "Past due", f"after a declined renewal: {facts}")
    expect(facts.get("access") == "granted", f"past_due within the grace period: {facts}")
    return f"{delivered}\npast due; access still granted (grace period)"


def grace_over(browser: Browser) -> str:
    delivered = _clock(browser, "4d")
    facts = browser.account()
    expect(facts.get("status") == "Past due", f"after the retry failed: {facts}")
    expect(facts.get("access") == "not granted", f"past_due after the grace period: {facts}")
    expect(facts.get("features") == "none", f"features without access: {facts}")
    browser.get("/exports")
    expect(browser.path == "/pricing", f"exports without access led to {browser.path}")
    return f"{delivered}\npast due; access not granted; features none; Exports sends to the plans"


def fix_card(browser: Browser) -> str:
    browser.submit("/billing/portal")
    expect(browser.path == "/fake-stripe/portal", f"the portal button led to {browser.path}")
    browser.submit("/fake-stripe/portal", action="update_card")
    delivered = _delivered(browser)
    facts = browser.account()
    expect(facts.get("status") == "Active" and facts.get("access") == "granted", f"{facts}")
    return f"{delivered}\nactive again; access granted"


def cancel_at_period_end(browser: Browser) -> str:
    browser.submit("/billing/portal")
    browser.submit("/fake-stripe/portal", action="cancel_at_period_end")
    delivered = _delivered(browser)
    facts = browser.account()
    expect(facts.get("status") == "Active", f"until the period ends: {facts}")
    expect("ends" in facts and "renews" not in facts, f"no end date shown: {facts}")
    return f"{delivered}\nstill active; ends {facts['ends']}"


def period_end(browser: Browser) -> str:
    delivered = _clock(browser, "renewal")
    facts = browser.account()
    expected = {"plan": "Free", "status": "No subscription", "access": "granted"}
    expect(all(facts.get(k) == v for k, v in expected.items()), f"after the period: {facts}")
    return f"{delivered}\nsubscription canceled: back on the Free plan"


def bad_signature(browser: Browser) -> str:
    answer = browser.client.post(
        "/webhooks/stripe",
        data=b'{"id": "evt_forged", "object": "event"}',
        headers={"Stripe-Signature": "t=1,v1=00", "Content-Type": "application/json"},
    )
    expect(answer.status_code == 400, f"a forged webhook got {answer.status_code}")
    with current_billing_of(browser.app).repository.unit_of_work() as uow:
        expect(uow.get_event("evt_forged") is None, "the forged event was stored")
    return "a forged webhook is answered 400 and nothing is stored"


def _flash(browser: Browser, text: str) -> str:
    found = [m for m in browser.flashes() if text in m]
    expect(bool(found), f"no message with {text!r}: {browser.flashes()}")
    return found[0]


def subscribe_again(browser: Browser) -> str:
    browser.submit("/checkout", plan="pro", interval="month")
    expect(browser.path.startswith("/fake-stripe/checkout/cs_"), f"checkout: {browser.path}")
    browser.submit(browser.path + "/pay")
    facts = browser.account()
    expect(facts.get("plan") == "Pro" and facts.get("status") == "Active", f"{facts}")
    return "Pro, monthly, paid on the fake Checkout page: active again"


def declined_upgrade(browser: Browser) -> str:
    _clock(browser, "card_declines")
    browser.get("/account")
    browser.submit("/account/plan/preview", plan="pro", interval="year")
    due = browser.facts().get("due-now", "")
    expect(due not in ("", "0.00 USD"), f"a switch to yearly is charged now: {browser.facts()}")
    browser.submit("/account/plan", plan="pro", interval="year", when="now")
    message = _flash(browser, "declined")
    facts = browser.facts()
    expect(facts.get("plan") == "Pro" and facts.get("status") == "Active", f"{facts}")
    stored = current_billing_of(browser.app).customers.for_user("ada@example.com")
    expect(stored.price_id is not None, "no stored price")
    _clock(browser, "card_works")
    dropped = _clock(browser, "1d")  # Stripe drops an unpaid pending change after 23 hours
    expect(browser.account().get("plan") == "Pro", "the dropped change moved the plan")
    return f"preview: {due} due now; card declined\n{message}\na day later: {dropped}"


def preview_and_upgrade(browser: Browser) -> str:
    browser.get("/account")
    page = browser.submit("/account/plan/preview", plan="team", interval="").text
    facts = browser.facts()
    expect("next-invoice" in facts and "due-now" in facts, f"the preview: {facts}")
    token = re.search(r'name="proration_date" value="(\d+)"', page)
    expect(token is not None, "the confirm form carries no proration date")
    assert token is not None
    browser.submit("/account/plan", plan="team", interval="", proration_date=token[1], when="now")
    message = _flash(browser, "You are now on the Team plan")
    expect(browser.facts().get("plan") == "Team", f"after the upgrade: {browser.facts()}")
    return (
        f"preview: {facts['due-now']} now, next invoice {facts['next-invoice']}\n"
        f"confirmed: {message}"
    )


def seats(browser: Browser) -> str:
    browser.submit("/account/seats", seats="3")
    message = _flash(browser, "seat")
    expect(browser.facts().get("seats") == "3", f"seats: {browser.facts()}")
    return message


def promotion_code(browser: Browser) -> str:
    browser.submit("/account/promotion", code="NOT-A-CODE")
    refused = _flash(browser, "is not valid")
    browser.submit("/account/promotion", code="WELCOME20")
    applied = _flash(browser, "is applied")
    return f"{refused}\n{applied}"


def cancel_and_resume(browser: Browser) -> str:
    browser.submit("/account/cancel")
    ends = browser.facts().get("ends")
    expect(ends is not None and "renews" not in browser.facts(), f"{browser.facts()}")
    browser.submit("/account/resume")
    facts = browser.facts()
    expect("renews" in facts and "ends" not in facts, f"after resume: {facts}")
    return f"canceled: ends {ends}; resumed: renews {facts['renews']}"


def _save_card(browser: Browser, last4: str, month: str, year: str) -> str:
    browser.submit("/account/card")
    expect(browser.path.startswith("/fake-stripe/setup/cs_"), f"update card led to {browser.path}")
    browser.submit(browser.path + "/save", last4=last4, exp_month=month, exp_year=year)
    _delivered(browser)
    card = browser.facts().get("card", "")
    expect(browser.path == "/account", f"after saving the card: {browser.path}")
    expect(card.endswith(f"ending {last4}, expires {int(month):02d}/{year}"), f"card: {card}")
    return card


def _banner(browser: Browser) -> str | None:
    assert browser.page is not None
    found = re.findall(r'<p class="flash bad" id="card-expiring">(.*?)</p>', browser.page.text)
    return _text(found[0]) if found else None


def update_card(browser: Browser) -> str:
    first = _save_card(browser, "4444", "8", "2031")
    _clock(browser, "card_expiring")
    browser.get("/account")
    banner = _banner(browser)
    expect(banner is not None, "no expiring-card banner")
    # A day later (the same request within a minute is deduplicated: the same session).
    browser.submit("/fake-stripe/clock", action="1d")
    second = _save_card(browser, "5555", "9", "2032")
    expect(_banner(browser) is None, "the banner stays after the update")
    return f"setup-mode Checkout saved {first}\nbanner: {banner}\nsaved {second}: no banner"


def invoice_history(browser: Browser) -> str:
    page = browser.get("/account").text
    links = re.findall(r'<a href="(https://invoice\.stripe\.com/[^"]+)">', page)
    expect(len(links) >= 3, f"invoice links: {links}")
    return f"{len(links)} invoices, each linked to its hosted invoice page"


def usage_on_next_invoice(browser: Browser) -> str:
    browser.submit("/logout")
    browser.submit("/login", email="bob@example.com")
    browser.submit("/checkout", plan="api", interval="month")
    browser.submit(browser.path + "/pay")
    for _ in range(3):
        browser.submit("/account/usage")
    usage = browser.facts().get("usage", "")
    expect(usage.startswith("30"), f"usage this period: {usage}")
    browser.submit("/fake-stripe/clock", action="flush_usage")
    metered = browser.facts().get("next-invoice-metered", "")
    expect(metered.startswith("30 api_calls"), f"the clock's next invoice: {browser.facts()}")
    _clock(browser, "renewal")
    page = browser.get("/account").text
    total = re.findall(r"<td>([^<]+)</td>\s*<td>30 \u00d7 API</td>", page)
    expect(total == ["1.50 USD"], f"the renewal invoice's metered line: {total}")
    expect(browser.facts().get("usage", "").startswith("0"), "usage of the new period")
    return (
        f"Use the API x3: {usage}\nclock, next invoice: {metered}\n"
        f"renewal invoice: 30 API calls, {total[0]}"
    )


def current_billing_of(app: Flask) -> Billing:
    """The app's :class:`~billingkit.Billing` (outside a request)."""
    return BillingKit.billing_for(app)


STEPS: tuple[Step, ...] = (
    Step("Open the pricing page", pricing),
    Step("Subscribe to Pro, monthly, while logged out", subscribe_logged_out),
    Step("Log in: on to Checkout with the chosen plan", log_in),
    Step("Pay on the fake Checkout page", pay),
    Step("The account page shows the plan", active_account),
    Step("A month later: the renewal is paid", renewal),
    Step("The card declines at the next renewal", failed_payment),
    Step("Four days later the retry fails too", grace_over),
    Step("Update the card in the billing portal", fix_card),
    Step("Cancel at the end of the period", cancel_at_period_end),
    Step("The period ends", period_end),
    Step("Subscribe to Pro again", subscribe_again),
    Step("A declined upgrade stays on the old plan", declined_upgrade),
    Step("Preview and confirm an upgrade to Team", preview_and_upgrade),
    Step("Three seats", seats),
    Step("A promotion code", promotion_code),
    Step("Cancel, then resume", cancel_and_resume),
    Step("The card expires: update it on setup-mode Checkout", update_card),
    Step("The billing history", invoice_history),
    Step("A metered plan: API usage on the next invoice", usage_on_next_invoice),
    Step("A forged webhook", bad_signature),
)


def run(out: TextIO = sys.stdout, overrides: Mapping[str, Any] | None = None) -> int:
    """Run every step against a fresh app; 0 if all passed, 1 at the first failed check."""
    with tempfile.TemporaryDirectory(prefix="billingkit-flask-walkthrough-") as folder:
        app = create_app(fake_mode_settings(folder, **(overrides or {})))
        billing = current_billing_of(app)
        try:
            print("billingkit Flask example, headless (Flask test client, fake Stripe)", file=out)
            print(f"database: {app.config['BILLING_DATABASE_URL']}", file=out)
            browser = Browser(app)
            for number, step in enumerate(STEPS, 1):
                try:
                    seen = step.run(browser)
                except WalkthroughFailed as failure:
                    print(f"{number:2}. {step.title}: FAILED: {failure}", file=out)
                    return 1
                print(f"{number:2}. {step.title}", file=out)
                for line in seen.splitlines():
                    print(f"    {line}", file=out)
            print(f"All {len(STEPS)} steps passed.", file=out)
            return 0
        finally:
            billing.close()
