"""The Django example through Django's test client, over the whole subscription life.

Stripe is billingkit's FakeStripeGateway (the demo's fake mode) with its events queued: the
tests deliver them to ``POST /webhooks/stripe`` through the test client, signed as Stripe
signs them, so every state change the account page shows came through the webhook view.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from billingkit.domain import EventStatus, SubscriptionStatus

WEBHOOK = "/webhooks/stripe"


@pytest.fixture
def client(django_project: object, clear_billing_tables: Callable[[str], None]) -> Iterator[Any]:
    """A test client on an empty database and a fresh fake Stripe."""
    from django.test import Client

    from billingkit.contrib.django import reset_billing

    clear_billing_tables("default")
    reset_billing()
    yield Client()
    reset_billing()


def _services() -> Any:
    from billingkit.contrib.django import get_billing

    return get_billing()


def _fake() -> Any:
    from billing_demo.billing import fake_gateway

    fake = fake_gateway()
    assert fake is not None, "the tests run the demo in fake mode"
    return fake


def _post(client: Any, delivery: Any) -> Any:
    """POST one signed delivery to the webhook view, as Stripe does."""
    return client.post(
        WEBHOOK,
        data=delivery.payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=delivery.signature,
    )


def _deliver(client: Any) -> list[tuple[str, str]]:
    """POST every pending fake event to the webhook view; return (type, outcome) pairs."""
    outcomes = []
    for delivery in _fake().drain_events():
        response = _post(client, delivery)
        assert response.status_code == 200, (delivery.type, response.content)
        outcomes.append((delivery.type, json.loads(response.content)["outcome"]))
    return outcomes


def _field(response: Any, element_id: str) -> str | None:
    """The text of the element with ``element_id`` on the page, or ``None``."""
    found = re.search(rf'id="{element_id}">(.*?)<', response.content.decode())
    return None if found is None else html.unescape(found.group(1)).strip()


def _account(client: Any) -> dict[str, str | None]:
    response = client.get("/account/")
    assert response.status_code == 200
    names = ("plan", "status", "access", "period-end", "cancellation", "features")
    return {name: _field(response, name) for name in names}


def _day(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def _sign_in(client: Any, user_id: str = "alice") -> None:
    response = client.post("/login/", {"user_id": user_id, "email": f"{user_id}@example.com"})
    assert response.status_code == 302


def _buy(client: Any, plan: str = "pro", interval: str = "month") -> str:
    """Subscribe and pay on the fake checkout page; returns the session id (events queued)."""
    response = client.post("/checkout/", {"plan": plan, "interval": interval})
    assert response.status_code == 302, response.content
    match = re.fullmatch(r"/fake-stripe/checkout/([^/]+)/", response["Location"])
    assert match is not None, response["Location"]
    session_id = match.group(1)
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert b"Pay" in page.content
    paid = client.post(response["Location"])
    assert paid.status_code == 302
    assert paid["Location"] == f"http://testserver/checkout/success/?session_id={session_id}"
    return session_id


def _only_subscription(user_id: str = "alice") -> Any:
    with _services().repository.unit_of_work() as uow:
        subscriptions = uow.subscriptions_for_user(user_id)
    assert len(subscriptions) == 1
    return subscriptions[0]


def test_the_whole_subscription_life_through_the_pages(client: Any) -> None:
    fake = _fake()
    # pricing, from the catalog
    pricing = client.get("/")
    assert pricing.status_code == 200
    text = pricing.content.decode()
    assert "12.00 USD" in text and "120.00 USD" in text and "49.00 USD" in text
    # before subscribing: the free plan
    _sign_in(client)
    assert _account(client) | {"period-end": None} == {
        "plan": "Free",
        "status": "not subscribed",
        "access": "granted",
        "period-end": None,
        "cancellation": None,
        "features": "projects",
    }
    # checkout, pay on the fake, webhooks
    session_id = _buy(client)
    assert _account(client)["status"] == "not subscribed"  # nothing applied before webhooks
    outcomes = _deliver(client)
    assert ("customer.subscription.created", "processed") in outcomes
    assert ("checkout.session.completed", "processed") in outcomes
    subscription = _only_subscription()
    account = _account(client)
    assert account == {
        "plan": "Pro",
        "status": "active",
        "access": "granted",
        "period-end": f"{_day(subscription.current_period_end)} UTC",
        "cancellation": None,
        "features": "projects, exports, priority_support",
    }
    # the success page confirms the same session (already applied by the webhooks)
    success = client.get(f"/checkout/success/?session_id={session_id}")
    assert success.status_code == 200
    assert b"Thank you!" in success.content
    assert _only_subscription() == subscription
    first_end = subscription.current_period_end

    # renewal: a month passes on the fake, its events arrive
    assert (
        client.post("/fake-stripe/clock/", {"action": "advance", "days": "31"}).status_code == 302
    )
    assert ("invoice.paid", "processed") in _deliver(client)
    renewed = _only_subscription()
    assert renewed.current_period_end > first_end
    account = _account(client)
    assert (account["status"], account["access"]) == ("active", "granted")
    assert account["period-end"] == f"{_day(renewed.current_period_end)} UTC"

    # failed renewal: past_due, still granted within the 3-day grace period
    client.post("/fake-stripe/clock/", {"action": "fail_next_payment"})
    client.post("/fake-stripe/clock/", {"action": "advance", "days": "31"})
    assert ("invoice.payment_failed", "processed") in _deliver(client)
    account = _account(client)
    assert (account["status"], account["access"]) == ("past_due", "granted")
    # the automatic retry 3 days later fails too: the grace period is over
    fake.set_card_declining(renewed.customer_id)
    client.post("/fake-stripe/clock/", {"action": "advance", "days": "3"})
    _deliver(client)
    account = _account(client)
    assert (account["status"], account["access"], account["features"]) == (
        "past_due",
        "not granted",
        "none",
    )
    # the customer fixes the card and the invoice is paid
    fake.set_card_declining(renewed.customer_id, False)
    fake.retry_payment(renewed.id)
    _deliver(client)
    assert _account(client)["status"] == "active"

    # cancel at period end in the (fake) billing portal
    portal = client.post("/account/portal/")
    assert (portal.status_code, portal["Location"]) == (302, "/fake-stripe/portal/")
    assert b"Cancel at period end" in client.get("/fake-stripe/portal/").content
    canceled = client.post("/fake-stripe/portal/", {"subscription": renewed.id, "action": "cancel"})
    assert canceled.status_code == 302
    assert ("customer.subscription.updated", "processed") in _deliver(client)
    ending = _only_subscription()
    account = _account(client)
    assert account["status"] == "active"
    assert account["access"] == "granted"
    assert account["cancellation"] == "cancels at period end"
    assert account["period-end"] == f"{_day(ending.current_period_end)} UTC"
    assert b"Ends on" in client.get("/account/").content

    # the period ends: back on the free plan
    client.post("/fake-stripe/clock/", {"action": "advance", "days": "40"})
    assert ("customer.subscription.deleted", "processed") in _deliver(client)
    assert _only_subscription().status is SubscriptionStatus.CANCELED
    account = _account(client)
    assert (account["plan"], account["status"], account["access"]) == (
        "Free",
        "not subscribed",
        "granted",
    )


def test_the_success_page_confirms_only_the_users_own_checkout(client: Any) -> None:
    _sign_in(client, "alice")
    session_id = _buy(client)
    _sign_in(client, "mallory")
    refused = client.get(f"/checkout/success/?session_id={session_id}")
    assert refused.status_code == 403
    assert _account(client)["status"] == "not subscribed"
    with _services().repository.unit_of_work() as uow:
        assert uow.subscriptions_for_user("mallory") == []
        assert uow.subscriptions_for_user("alice") == []  # nothing stored by the refusal
    # alice's own success page applies the session, before any webhook arrived
    _sign_in(client, "alice")
    confirmed = client.get(f"/checkout/success/?session_id={session_id}")
    assert confirmed.status_code == 200
    assert b"Thank you!" in confirmed.content
    assert _account(client)["status"] == "active"
    # the webhooks arriving afterwards change nothing and are all answered 200
    assert _deliver(client)
    assert _account(client)["status"] == "active"


def test_a_second_checkout_is_refused_while_subscribed(client: Any) -> None:
    _sign_in(client)
    _buy(client)
    _deliver(client)
    again = client.post("/checkout/", {"plan": "team", "interval": "month"})
    assert (again.status_code, again["Location"]) == (302, "/account/")
    assert b"already have a subscription" in client.get("/account/").content
    assert _fake().calls["create_checkout_session"] == 1


def test_an_unknown_plan_is_a_400_and_starts_nothing(client: Any) -> None:
    _sign_in(client)
    response = client.post("/checkout/", {"plan": "gold", "interval": "month"})
    assert response.status_code == 400
    assert _fake().calls["create_checkout_session"] == 0


def _ledger_and_state(user_id: str = "alice") -> tuple[Any, ...]:
    with _services().repository.unit_of_work() as uow:
        return (
            uow.list_events(limit=1000),
            uow.subscriptions_for_user(user_id),
            uow.customer_for_user(user_id),
        )


def test_a_bad_signature_is_a_400_and_stores_nothing(client: Any) -> None:
    _sign_in(client)
    _buy(client)
    deliveries = _fake().drain_events()
    assert deliveries
    before = _ledger_and_state()
    target = deliveries[0]
    tampered = target.signature.replace("v1=", "v1=0", 1)[: len(target.signature)]
    for signature in (tampered, None, "t=1,v1=deadbeef"):
        headers = {} if signature is None else {"HTTP_STRIPE_SIGNATURE": signature}
        response = client.post(
            WEBHOOK, data=target.payload, content_type="application/json", **headers
        )
        assert response.status_code == 400
        assert "error" in json.loads(response.content)
    # a correctly signed header over another body is refused too
    response = client.post(
        WEBHOOK,
        data=target.payload.replace(b'"livemode": false', b'"livemode": true'),
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=target.signature,
    )
    assert response.status_code == 400
    assert _ledger_and_state() == before
    with _services().repository.unit_of_work() as uow:
        assert uow.get_event(target.id) is None
    assert client.get(WEBHOOK).status_code == 405


def test_a_duplicate_delivery_is_a_200_and_changes_nothing(client: Any) -> None:
    _sign_in(client)
    _buy(client)
    deliveries = _fake().drain_events()
    for delivery in deliveries:
        assert _post(client, delivery).status_code == 200
    before = _ledger_and_state()
    assert {event.status for event in before[0]} <= {
        EventStatus.PROCESSED,
        EventStatus.IGNORED,
        EventStatus.STALE,
    }
    for delivery in deliveries:
        again = _post(client, delivery)
        assert again.status_code == 200
        assert json.loads(again.content) == {
            "outcome": "duplicate",
            "event_id": delivery.id,
            "event_type": delivery.type,
        }
    assert _ledger_and_state() == before


def test_pages_need_a_signed_in_user_and_portal_needs_a_customer(client: Any) -> None:
    response = client.get("/account/")
    assert (response.status_code, response["Location"]) == (302, "/login/?next=/account/")
    assert client.post("/checkout/", {"plan": "pro", "interval": "month"}).status_code == 302
    assert _fake().calls["create_checkout_session"] == 0
    _sign_in(client)
    portal = client.post("/account/portal/")
    assert (portal.status_code, portal["Location"]) == (302, "/")
    assert b"Subscribe to a plan first" in client.get("/").content


def test_stripe_keys_switch_to_the_sdk_gateway_and_hide_the_fake_pages(client: Any) -> None:
    from billing_demo.billing import fake_gateway
    from django.conf import settings
    from django.test import override_settings

    from billingkit.adapters.stripe_sdk import StripeSdkGateway
    from billingkit.errors import ConfigurationError

    live = {**settings.BILLINGKIT, "FAKE_STRIPE": False}
    with (
        override_settings(BILLINGKIT={**live, "STRIPE_API_KEY": "sk_test_only_one_of_two"}),
        pytest.raises(ConfigurationError, match="WEBHOOK_SECRETS"),
    ):
        _services()
    keys = {"STRIPE_API_KEY": "sk_test_123", "WEBHOOK_SECRETS": ["whsec_live_x"]}
    with override_settings(BILLINGKIT={**live, **keys}):
        services = _services()
        assert isinstance(services.gateway, StripeSdkGateway)
        assert fake_gateway() is None
        _sign_in(client)
        assert client.get("/fake-stripe/portal/").status_code == 404
        assert client.get("/fake-stripe/checkout/cs_test_1/").status_code == 404
        # the webhook endpoint now verifies with the configured secret
        assert client.post(WEBHOOK, data=b"{}", content_type="application/json",
                           HTTP_STRIPE_SIGNATURE="t=1,v1=00").status_code == 400  # fmt: skip


def test_a_running_server_delivers_the_fakes_events_to_itself_over_http(client: Any) -> None:
    """runserver's threaded WSGI server: "pay" POSTs the signed events to /webhooks/stripe."""
    import http.cookiejar
    import threading
    import urllib.parse
    import urllib.request

    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application
    from django.test import override_settings

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler)
    server.set_app(get_wsgi_application())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    cookies = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))

    def post(path: str, fields: dict[str, str]) -> Any:
        token = next(c.value for c in cookies if c.name == "csrftoken")
        body = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": token}).encode()
        request = urllib.request.Request(base + path, data=body, headers={"Referer": base})
        return browser.open(request, timeout=30)

    with override_settings(BILLING_DEMO_FAKE_DELIVERY="http", ALLOWED_HOSTS=["127.0.0.1"]):
        thread.start()
        try:
            browser.open(base + "/login/", timeout=30).read()  # sets the CSRF cookie
            post("/login/", {"user_id": "carol"}).read()
            fake_page = post("/checkout/", {"plan": "team", "interval": "month"})
            assert "/fake-stripe/checkout/" in fake_page.url
            success = post(urllib.parse.urlsplit(fake_page.url).path, {})
            page = success.read().decode()
            assert success.url.startswith(base + "/checkout/success/?session_id=cs_test_")
            assert "Thank you!" in page
            account = browser.open(base + "/account/", timeout=30).read().decode()
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
    # every event went over HTTP (none left at the fake) and was answered 200
    assert _fake().pending_events() == []
    with _services().repository.unit_of_work() as uow:
        events = uow.list_events(limit=1000)
    assert {event.type for event in events} >= {
        "customer.subscription.created",
        "invoice.paid",
        "checkout.session.completed",
    }
    assert all(event.status is not EventStatus.FAILED for event in events)
    assert 'id="status">active<' in account
    assert 'id="plan">Team<' in account


def test_exports_follow_the_plan_through_requires_feature_and_the_template_filter(
    client: Any,
) -> None:
    from django.test import Client

    logged_out = Client().get("/account/exports/")
    assert (logged_out.status_code, logged_out["Location"]) == (
        302,
        "/login/?next=/account/exports/",
    )
    _sign_in(client)
    refused = client.get("/account/exports/")
    assert refused.status_code == 403
    assert b"Exports come with the Pro and Team plans." in refused.content
    assert b'id="exports"' not in client.get("/account/").content
    _buy(client, "pro")
    _deliver(client)
    allowed = client.get("/account/exports/")
    assert (allowed.status_code, allowed["Content-Type"]) == (200, "text/csv")
    assert b'id="exports"' in client.get("/account/").content


# --------------------------------------------------------------------------- self-service
# Issues 12 and 13: the account page's plan change (preview, confirm), seats, cancel/resume,
# promotion code, billing history, card update (setup-mode Checkout), expiring-card banner
# and the usage of a metered plan.


def _subscribed(client: Any, plan: str = "pro") -> Any:
    _sign_in(client)
    _buy(client, plan)
    _deliver(client)
    return _only_subscription()


def _notice(client: Any) -> str | None:
    found = re.search(r'role="status">(.*?)</p>', client.get("/account/").content.decode())
    return None if found is None else html.unescape(found.group(1))


def test_change_plan_previews_then_confirms(client: Any) -> None:
    subscription = _subscribed(client, "pro")
    page = client.get("/account/").content.decode()
    assert 'value="team:month"' in page and 'value="pro:year"' in page
    preview = client.post("/account/plan/preview/", {"choice": "team:month"})
    assert preview.status_code == 200
    assert _field(preview, "due-now") is not None
    assert "Change to Team (month)" in preview.content.decode()
    assert _fake().calls["modify_subscription"] == 0  # a preview changes nothing
    assert _account(client)["plan"] == "Pro"
    confirmed = client.post("/account/plan/", {"choice": "team:month", "when": "now"})
    assert (confirmed.status_code, confirmed["Location"]) == (302, "/account/")
    _deliver(client)
    assert _notice(client) == "Plan changed."
    assert _account(client)["plan"] == "Team"
    changed = _only_subscription()
    assert changed.id == subscription.id and changed.price_id != subscription.price_id


def test_a_declined_upgrade_stays_on_the_old_plan(client: Any) -> None:
    subscription = _subscribed(client, "pro")
    _fake().set_card_declining(subscription.customer_id)
    # monthly -> yearly is invoiced at once (a plan change with proration charges later)
    response = client.post("/account/plan/", {"choice": "pro:year", "when": "now"})
    assert response.status_code == 302
    _deliver(client)
    notice = _notice(client)
    assert notice is not None and notice.startswith(
        "Your card was declined: you stay on your current plan."
    )
    assert _account(client)["plan"] == "Pro"
    assert _only_subscription().price_id == subscription.price_id
    prices = {
        price.id: price for plan in _services().catalog.plans() for price in plan.prices.values()
    }
    assert prices[subscription.price_id].interval.value == "month"


def test_a_plan_change_at_period_end_can_be_undone(client: Any) -> None:
    _subscribed(client, "pro")
    scheduled = client.post("/account/plan/", {"choice": "team:month", "when": "period_end"})
    assert scheduled.status_code == 302
    _deliver(client)
    notice = _notice(client)
    assert notice is not None and notice.startswith("Your plan changes on ")
    page = client.get("/account/")
    assert _field(page, "scheduled") == "A plan change is scheduled for the end of the period."
    assert _account(client)["plan"] == "Pro"
    assert client.post("/account/plan/undo/").status_code == 302
    _deliver(client)
    assert _field(client.get("/account/"), "scheduled") is None
    assert (
        client.post("/account/plan/", {"choice": "pro:month", "when": "later"}).status_code == 400
    )


def test_seats_cancel_and_resume(client: Any) -> None:
    _subscribed(client, "team")
    assert _field(client.get("/account/"), "seats") == "1"
    assert client.post("/account/seats/", {"seats": "3"}).status_code == 302
    _deliver(client)
    assert _field(client.get("/account/"), "seats") == "3"
    assert _only_subscription().quantity == 3
    for bad in ("0", "-1", "many", "501"):
        refused = client.post("/account/seats/", {"seats": bad})
        assert refused.status_code == 400
    assert _only_subscription().quantity == 3
    assert client.post("/account/cancel/").status_code == 302
    _deliver(client)
    assert _account(client)["cancellation"] == "cancels at period end"
    assert b"Resume my subscription" in client.get("/account/").content
    assert client.post("/account/resume/").status_code == 302
    _deliver(client)
    assert _account(client)["cancellation"] is None
    assert _notice(client) is None  # shown once, then gone
    # resuming what is not canceled: a friendly 409, nothing sent
    calls = _fake().calls["modify_subscription"]
    again = client.post("/account/resume/")
    assert again.status_code == 409
    assert _field(again, "problem") == "Your subscription cannot be changed that way right now."
    assert _fake().calls["modify_subscription"] == calls


def test_a_promotion_code_applies_and_a_bad_one_is_a_friendly_400(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _subscribed(client)
    applied = client.post("/account/promotion-code/", {"code": "WELCOME20"})
    assert applied.status_code == 302
    assert _notice(client) == "Promotion code WELCOME20 applied."
    with caplog.at_level("WARNING", logger="billing_demo"):
        refused = client.post("/account/promotion-code/", {"code": "NOPE"})
    assert refused.status_code == 400
    assert _field(refused, "problem") == "That promotion code is not valid."
    assert "NOPE" not in refused.content.decode()
    assert "InvalidPromotionCodeError" in caplog.text and "NOPE" in caplog.text
    assert client.post("/account/promotion-code/", {"code": " "}).status_code == 400


def test_stripe_failures_are_friendly_and_raw_text_only_in_the_log(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from billingkit.errors import GatewayServerError

    _subscribed(client)
    _fake().fail_next("modify_subscription", GatewayServerError("boom req_secret_detail"))
    with caplog.at_level("WARNING", logger="billing_demo"):
        response = client.post("/account/seats/", {"seats": "2"})
    assert response.status_code == 503
    assert _field(response, "problem") == "Stripe could not be reached; try again shortly."
    assert b"req_secret_detail" not in response.content
    assert "req_secret_detail" in caplog.text
    assert _only_subscription().quantity == 1


def test_actions_without_a_subscription_are_friendly(client: Any) -> None:
    _sign_in(client)
    page = client.get("/account/").content.decode()
    assert "Change plan" not in page and "Update card" not in page
    assert _field(client.get("/account/"), "invoices") == "No invoices yet."
    for path, data in (
        ("/account/cancel/", {}),
        ("/account/plan/preview/", {"choice": "team:month"}),
        ("/account/card/", {}),
    ):
        response = client.post(path, data)
        assert response.status_code == 409, path
        assert _field(response, "problem") == (
            "You have no subscription to change: choose a plan first."
        )
    assert client.get("/account/cancel/").status_code == 405  # POST only
    assert client.post("/account/usage/", {"units": "1"}).status_code == 409


def test_billing_history_links_the_hosted_invoices(client: Any) -> None:
    _subscribed(client)
    client.post("/fake-stripe/clock/", {"action": "advance", "days": "31"})
    _deliver(client)
    invoices = _services().customers.invoices("alice")
    assert len(invoices) == 2
    page = client.get("/account/").content.decode()
    assert page.count('class="invoice"') == 2
    for invoice in invoices:
        assert invoice.hosted_invoice_url
        assert f'href="{html.escape(invoice.hosted_invoice_url)}">View invoice<' in page


def test_update_card_through_setup_mode_checkout_and_the_expiring_banner(client: Any) -> None:
    _subscribed(client)
    assert _field(client.get("/account/"), "card-expiring") is None
    response = client.post("/account/card/")
    assert response.status_code == 302
    match = re.fullmatch(r"/fake-stripe/setup/([^/]+)/", response["Location"])
    assert match is not None, response["Location"]
    page = client.get(response["Location"])
    assert page.status_code == 200 and b"Save card 4242" in page.content
    saved = client.post(response["Location"], {"card": "expiring"})
    assert (saved.status_code, saved["Location"]) == (302, "http://testserver/account/")
    outcomes = _deliver(client)
    assert ("setup_intent.succeeded", "processed") in outcomes
    account = client.get("/account/")
    card = _field(account, "card")
    assert card is not None and "ending 0341" in card
    banner = _field(account, "card-expiring")
    assert banner is not None and banner.startswith("Your card ending 0341 expires")
    # the same session cannot be used twice
    assert client.post(response["Location"], {"card": "valid"}).status_code == 409
    # a later update (after the Checkout dedupe window) with a valid card clears the banner
    client.post("/fake-stripe/clock/", {"action": "advance", "days": "1"})
    _deliver(client)
    again = client.post("/account/card/")
    assert again["Location"] != response["Location"]
    client.post(again["Location"], {"card": "valid"})
    _deliver(client)
    account = client.get("/account/")
    assert "ending 4242" in (_field(account, "card") or "")
    assert _field(account, "card-expiring") is None
    # another user cannot open this setup session
    _sign_in(client, "mallory")
    assert client.get(again["Location"]).status_code == 404


def test_a_metered_plan_shows_the_usage_this_period(client: Any) -> None:
    _subscribed(client, "scale")
    assert _field(client.get("/account/"), "usage") == "0"
    assert client.post("/account/usage/", {"units": "10"}).status_code == 302
    assert client.post("/account/usage/", {"units": "5"}).status_code == 302
    assert client.post("/account/usage/", {"units": "0"}).status_code == 400
    assert _field(client.get("/account/"), "usage") == "15"
    assert _services().usage.usage("alice", "api_calls").value == 15
    result = _services().usage.flush()
    assert result.sent == 2
    customer = _only_subscription().customer_id
    assert _fake().meter_usage(customer, "api_calls") == 15


def test_a_licensed_plan_shows_no_usage(client: Any) -> None:
    _subscribed(client, "pro")
    assert _field(client.get("/account/"), "usage") is None
    assert client.post("/account/usage/", {"units": "1"}).status_code == 409
