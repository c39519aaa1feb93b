"""Build the StripeSdkGateway cassettes from the Stripe fixtures (no network needed).

Run from the repository root::

    /work/venv/bin/python tests/cassettes/build_cassettes.py

It writes ``tests/cassettes/stripe_sdk/*.yaml`` and ``world.json`` (the ids and catalog the
cassettes describe). Each request is spelled out here as the Stripe API call billingkit is
expected to make (path, query, form body, idempotency key, API version); each response body
is a copy of an object from ``tests/fixtures/stripe/openapi/2026-07-29_f0758b15`` (the newest
shapes we hold) with the ids and fields the scenario needs, and realistic headers
(``request-id``, ``stripe-version``, ``idempotency-key``). ``README.md`` lists which fixture each
cassette was built from. A re-recording against Stripe test mode replaces the non-synthetic
ones (see README.md).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import yaml

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "stripe" / "openapi" / "2026-07-29_f0758b15"
OUT = Path(__file__).resolve().parent / "stripe_sdk"
API = "https://api.stripe.com"
API_VERSION = "2026-10-28.endive"  # stripe 16.1.0's pinned version
NOW = 1785312000  # 2026-07-29T08:00:00Z, when these scenarios "happened"

CATALOG: list[dict[str, Any]] = [
    {
        "lookup_key": "billingkit_test_pro_month",
        "product_name": "billingkit test Pro",
        "currency": "usd",
        "unit_amount": 2000,
        "interval": "month",
    },
    {
        "lookup_key": "billingkit_test_pro_year",
        "product_name": "billingkit test Pro",
        "currency": "usd",
        "unit_amount": 20000,
        "interval": "year",
    },
    {
        "lookup_key": "billingkit_test_lifetime",
        "product_name": "billingkit test Lifetime",
        "currency": "usd",
        "unit_amount": 9900,
        "interval": "one_time",
    },
]
RECORDED: dict[str, Any] = {
    "run_id": "built",
    "prices": {
        "billingkit_test_pro_month": "price_1PgafmB7WZ01zgkW6dKueIc5",
        "billingkit_test_pro_year": "price_1PgafmB7WZ01zgkWYearly01",
        "billingkit_test_lifetime": "price_1PgafmB7WZ01zgkWLifetime",
    },
    "products": {
        "billingkit test Pro": "prod_QXg1hqf4jFNsqG",
        "billingkit test Lifetime": "prod_QXg1LifetimeBk01",
    },
    "customer_id": "cus_QXg1o8vcGmoR32",
    "customer_email": "world@example.com",
    "deleted_customer_id": "cus_QXg1DeletedBk0001",
    "subscription_id": "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw",
}
SYNTHETIC: dict[str, str] = {
    "customer_id": "cus_QXg1SyntheticBk01",
    "subscription_id": "sub_1Pgc6rB7WZ01zgkWSynth001",
    "session_id": "cs_test_a1SyntheticCompletedBk0000000000000000000000000000000001",
    "price_id": "price_1PgafmB7WZ01zgkW6dKueIc5",
    "page2_price_id": "price_1PgafmB7WZ01zgkWPage2000",
    "user_id": "user-synthetic",
}
STATUS_TEXT = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
}

# --------------------------------------------------------------------------- helpers


def fixture(name: str) -> dict[str, Any]:
    """A fresh copy of an openapi fixture object."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def flatten(params: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Stripe's form encoding: ``a[b]=c``, ``a[0][b]=c``, booleans as ``true``/``false``."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, dict):
            pairs.extend(flatten(value, name))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                item_name = f"{name}[{index}]"
                if isinstance(item, dict):
                    pairs.extend(flatten(item, item_name))
                else:
                    pairs.append((item_name, _scalar(item)))
        else:
            pairs.append((name, _scalar(value)))
    return pairs


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _request_id(seed: str) -> str:
    return "req_" + hashlib.sha256(seed.encode()).hexdigest()[:14]


def interaction(
    name: str,
    method: str,
    path: str,
    *,
    query: dict[str, Any] | None = None,
    form: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    status: int = 200,
    body: dict[str, Any],
    compact: bool = False,
) -> dict[str, Any]:
    """One vcrpy interaction, request and response, in the cassette YAML layout."""
    uri = API + path
    if query:
        uri += "?" + urlencode(flatten(query), safe="[]", quote_via=quote)
    headers: dict[str, list[str]] = {
        "Stripe-Version": [API_VERSION],
        "User-Agent": ["Stripe/v1 PythonBindings/16.1.0"],
    }
    encoded = None
    if method == "POST":
        headers["Content-Type"] = ["application/x-www-form-urlencoded"]
        encoded = urlencode(flatten(form or {}), safe="[]", quote_via=quote)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = [idempotency_key]
    request_id = _request_id(f"{name}:{method}:{uri}:{encoded}:{status}")
    response_headers: dict[str, list[str]] = {
        "Content-Type": ["application/json"],
        "Server": ["nginx"],
        "Cache-Control": ["no-cache, no-store"],
        "Request-Id": [request_id],
        "Stripe-Version": [API_VERSION],
        "Strict-Transport-Security": ["max-age=63072000; includeSubDomains; preload"],
    }
    if method == "POST":
        response_headers["Idempotency-Key"] = [idempotency_key or "SDK-generated"]
        response_headers["Original-Request"] = [request_id]
    if status >= 400 and isinstance(body.get("error"), dict):
        body["error"].setdefault(
            "request_log_url", f"https://dashboard.stripe.com/test/logs/{request_id}"
        )
    return {
        "request": {"body": encoded, "headers": headers, "method": method, "uri": uri},
        "response": {
            "body": {"string": json.dumps(body, indent=None if compact else 2)},
            "headers": response_headers,
            "status": {"code": status, "message": STATUS_TEXT[status]},
        },
    }


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the JSON bodies) as readable literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def write(name: str, source: str, *interactions: dict[str, Any]) -> None:
    """Write one cassette with a leading comment naming its fixture source."""
    text = yaml.dump(
        {"interactions": list(interactions), "version": 1},
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    header = (
        f"# Built by tests/cassettes/build_cassettes.py from {source}.\n"
        "# Edit the script, not this file.\n"
    )
    (OUT / f"{name}.yaml").write_text(header + text, encoding="utf-8")


def single(name: str, source: str, method: str, path: str, **request: Any) -> None:
    """Write a cassette of one interaction (see :func:`interaction` for ``request``)."""
    write(name, source, interaction(name, method, path, **request))


def key(run_id: str, what: str) -> str:
    """Idempotency keys the tests send (deterministic per recording run)."""
    return f"bk-{run_id}-{what}"


# --------------------------------------------------------------------------- objects


def customer(cid: str, *, email: str | None, user_id: str, created: int = NOW) -> dict[str, Any]:
    obj = fixture("customer")
    obj.update(id=cid, email=email, metadata={"user_id": user_id}, created=created, discount=None)
    return obj


def product(name: str) -> dict[str, Any]:
    obj = fixture("product")
    obj.update(
        id=RECORDED["products"][name],
        name=name,
        description=None,
        default_price=None,
        package_dimensions=None,
        type="service",
        created=NOW,
        updated=NOW,
    )
    return obj


def price(
    entry: dict[str, Any], *, price_id: str | None = None, expand: bool = True
) -> dict[str, Any]:
    obj = fixture("price")
    obj.update(
        id=price_id or RECORDED["prices"][entry["lookup_key"]],
        lookup_key=entry["lookup_key"],
        currency=entry["currency"],
        unit_amount=entry["unit_amount"],
        unit_amount_decimal=str(entry["unit_amount"]),
        custom_unit_amount=None,
        transform_quantity=None,
        created=NOW,
    )
    obj["product"] = (
        product(entry["product_name"]) if expand else RECORDED["products"][entry["product_name"]]
    )
    if entry["interval"] == "one_time":
        obj.update(type="one_time", recurring=None)
    else:
        obj["recurring"] = dict(obj["recurring"], interval=entry["interval"])
    return obj


def price_list(prices: list[dict[str, Any]], *, has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": prices, "has_more": has_more, "url": "/v1/prices"}


def subscription(sid: str, cid: str, *, status: str, user_id: str) -> dict[str, Any]:
    obj = fixture("subscription")
    start = NOW - 3600
    obj.update(
        id=sid,
        customer=cid,
        status=status,
        created=start,
        start_date=start,
        billing_cycle_anchor=start + 14 * 86400,
        cancel_at=None,
        canceled_at=None,
        ended_at=None,
        cancel_at_period_end=False,
        metadata={"user_id": user_id},
        next_pending_invoice_item_invoice=None,
        pending_update=None,
        pause_collection=None,
        transfer_data=None,
        billing_schedules=[],
    )
    if status == "trialing":
        obj.update(trial_start=start, trial_end=start + 14 * 86400)
    else:
        obj.update(trial_start=None, trial_end=None)
    item = obj["items"]["data"][0]
    item.update(
        id="si_" + sid[4:18],
        subscription=sid,
        created=start,
        current_period_start=start,
        current_period_end=start + 30 * 86400,
    )
    item["price"] = price(CATALOG[0], expand=False)
    item["plan"] = dict(
        item["plan"],
        id=item["price"]["id"],
        amount=2000,
        amount_decimal="2000",
        billing_scheme="per_unit",
        currency="usd",
        interval_count=1,
        livemode=False,
        metadata={},
        product=item["price"]["product"],
        created=NOW,
    )
    obj["items"]["url"] = f"/v1/subscription_items?subscription={sid}"
    return obj


def checkout(
    sid: str,
    *,
    mode: str,
    cid: str,
    user_id: str,
    metadata: dict[str, str],
    status: str = "open",
    payment_status: str = "unpaid",
    subscription: str | dict[str, Any] | None = None,
    amount: int = 2000,
) -> dict[str, Any]:
    obj = fixture("checkout.session")
    obj.update(
        id=sid,
        mode=mode,
        customer=cid,
        client_reference_id=user_id,
        metadata=metadata,
        status=status,
        payment_status=payment_status,
        subscription=subscription,
        amount_subtotal=amount,
        amount_total=amount,
        currency="usd",
        created=NOW,
        expires_at=NOW + 86400,
        payment_intent=None,
        shipping_cost=None,
        currency_conversion=None,
        shipping_address_collection=None,
        invoice_creation=None,
        customer_email=None,
        success_url="https://app.example.com/billing/success?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="https://app.example.com/pricing",
        url=None if status != "open" else f"https://checkout.stripe.com/c/pay/{sid}",
    )
    obj["customer_details"] = dict(obj["customer_details"], email="ada@example.com")
    return obj


def error(
    kind: str, message: str, *, code: str | None = None, param: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": kind, "message": message}
    if code is not None:
        body["code"] = code
        body["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param is not None:
        body["param"] = param
    body.update(extra)
    return {"error": body}


# --------------------------------------------------------------------------- scenarios

SUCCESS = "https://app.example.com/billing/success?session_id={CHECKOUT_SESSION_ID}"
CANCEL = "https://app.example.com/pricing"
PRICES_QUERY = {"expand": ["data.product"], "limit": 100}


def build() -> None:
    """Write every cassette and world.json."""
    OUT.mkdir(parents=True, exist_ok=True)
    world = RECORDED
    run = world["run_id"]
    wcus, wsub = world["customer_id"], world["subscription_id"]
    month, year, lifetime = (world["prices"][e["lookup_key"]] for e in CATALOG)

    single(
        "create_customer",
        "customer.json",
        "POST",
        "/v1/customers",
        form={"metadata": {"plan": "pro", "user_id": "user-ada"}, "email": "ada@example.com"},
        idempotency_key=key(run, "customer-user-ada"),
        body=customer("cus_QXg1AdaLovelace01", email="ada@example.com", user_id="user-ada")
        | {"metadata": {"plan": "pro", "user_id": "user-ada"}},
    )
    single(
        "retrieve_customer",
        "customer.json",
        "GET",
        f"/v1/customers/{wcus}",
        body=customer(wcus, email=world["customer_email"], user_id="billingkit-world"),
    )
    single(
        "retrieve_deleted_customer",
        "deleted_customer.json",
        "GET",
        f"/v1/customers/{world['deleted_customer_id']}",
        body=fixture("deleted_customer") | {"id": world["deleted_customer_id"]},
    )

    sub_form = {
        "mode": "subscription",
        "customer": wcus,
        "line_items": [{"price": month, "quantity": 1}],
        "success_url": SUCCESS,
        "cancel_url": CANCEL,
        "client_reference_id": "user-ada",
        "metadata": {"user_id": "user-ada", "plan": "pro"},
        "allow_promotion_codes": True,
        "subscription_data": {
            "metadata": {"user_id": "user-ada", "plan": "pro"},
            "trial_period_days": 14,
        },
    }
    sub_session = "cs_test_a1BkSubscriptionOpen000000000000000000000000000000000000001"
    single(
        "create_checkout_subscription",
        "checkout.session.json",
        "POST",
        "/v1/checkout/sessions",
        form=sub_form,
        idempotency_key=key(run, "checkout-sub-user-ada"),
        body=checkout(
            sub_session,
            mode="subscription",
            cid=wcus,
            user_id="user-ada",
            metadata=sub_form["metadata"],
        ),
    )
    pay_form = {
        "mode": "payment",
        "customer": wcus,
        "line_items": [{"price": lifetime, "quantity": 2}],
        "success_url": SUCCESS,
        "cancel_url": CANCEL,
        "client_reference_id": "user-ada",
        "metadata": {"user_id": "user-ada", "plan": "lifetime"},
    }
    pay_session = "cs_test_a1BkPaymentOpen00000000000000000000000000000000000000000001"
    single(
        "create_checkout_payment",
        "checkout.session.json",
        "POST",
        "/v1/checkout/sessions",
        form=pay_form,
        idempotency_key=key(run, "checkout-pay-user-ada"),
        body=checkout(
            pay_session,
            mode="payment",
            cid=wcus,
            user_id="user-ada",
            metadata=pay_form["metadata"],
            amount=19800,
        ),
    )
    min_form = {
        "mode": "subscription",
        "customer": wcus,
        "line_items": [{"price": year, "quantity": 1}],
        "success_url": SUCCESS,
        "cancel_url": CANCEL,
        "client_reference_id": "user-bob",
    }
    open_session = "cs_test_a1BkRetrieveOpen0000000000000000000000000000000000000000001"
    open_body = checkout(
        open_session, mode="subscription", cid=wcus, user_id="user-bob", metadata={}, amount=20000
    )
    write(
        "retrieve_open_checkout",
        "checkout.session.json",
        interaction(
            "retrieve_open_checkout",
            "POST",
            "/v1/checkout/sessions",
            form=min_form,
            idempotency_key=key(run, "checkout-open-user-bob"),
            body=open_body,
        ),
        interaction(
            "retrieve_open_checkout",
            "GET",
            f"/v1/checkout/sessions/{open_session}",
            query={"expand": ["subscription"]},
            body=copy.deepcopy(open_body),
        ),
    )

    syn = SYNTHETIC
    syn_sub = subscription(
        syn["subscription_id"], syn["customer_id"], status="active", user_id=syn["user_id"]
    )
    single(
        "retrieve_completed_checkout",
        "checkout.session.json + subscription.json (synthetic)",
        "GET",
        f"/v1/checkout/sessions/{syn['session_id']}",
        query={"expand": ["subscription"]},
        body=checkout(
            syn["session_id"],
            mode="subscription",
            cid=syn["customer_id"],
            user_id=syn["user_id"],
            metadata={"user_id": syn["user_id"]},
            status="complete",
            payment_status="paid",
            subscription=syn_sub,
        ),
    )

    catalog_prices = [price(entry) for entry in CATALOG]
    keys3 = sorted(entry["lookup_key"] for entry in CATALOG)
    single(
        "list_prices_lookup_keys",
        "price.json + product.json",
        "GET",
        "/v1/prices",
        query={"active": True, "lookup_keys": keys3, **PRICES_QUERY},
        body=price_list(catalog_prices),
    )
    other = price(CATALOG[0], price_id="price_1PgafmB7WZ01zgkWUnrelated")
    other["lookup_key"] = None
    single(
        "list_prices_mixed",
        "price.json + product.json",
        "GET",
        "/v1/prices",
        query={"active": True, **PRICES_QUERY},
        body=price_list([other, *copy.deepcopy(catalog_prices)]),
    )
    absent = [f"billingkit_test_absent_{n}" for n in range(1, 10)]
    many = sorted([*keys3, *absent])  # the gateway sorts keys before chunking
    write(
        "list_prices_many_keys",
        "price.json + product.json",
        interaction(
            "list_prices_many_keys",
            "GET",
            "/v1/prices",
            query={"active": True, "lookup_keys": many[:10], **PRICES_QUERY},
            body=price_list([price(CATALOG[2])]),
        ),
        interaction(
            "list_prices_many_keys",
            "GET",
            "/v1/prices",
            query={"active": True, "lookup_keys": many[10:], **PRICES_QUERY},
            body=price_list([price(CATALOG[0]), price(CATALOG[1])]),
        ),
    )
    page1 = [price(CATALOG[0])]
    for n in range(99):
        filler = price(CATALOG[1], price_id=f"price_1PgafmB7WZ01zgkWFiller{n:03d}")
        filler["lookup_key"] = None
        page1.append(filler)
    page2 = [price(CATALOG[1], price_id=syn["page2_price_id"])]
    page2[0]["lookup_key"] = None
    write(
        "list_prices_paginated",
        "price.json + product.json (synthetic: 2 pages)",
        interaction(
            "list_prices_paginated",
            "GET",
            "/v1/prices",
            query={"active": True, **PRICES_QUERY},
            body=price_list(page1, has_more=True),
            compact=True,
        ),
        interaction(
            "list_prices_paginated",
            "GET",
            "/v1/prices",
            query={"active": True, **PRICES_QUERY, "starting_after": page1[-1]["id"]},
            body=price_list(page2, has_more=True),
        ),
    )

    single(
        "retrieve_subscription",
        "subscription.json",
        "GET",
        f"/v1/subscriptions/{wsub}",
        body=subscription(wsub, wcus, status="trialing", user_id="billingkit-world"),
    )
    portal = fixture("billing_portal.session")
    portal.update(
        id="bps_1Pgc7HB7WZ01zgkWBkPortal1",
        customer=wcus,
        livemode=False,
        return_url="https://app.example.com/account",
        created=NOW,
        flow=None,
        url="https://billing.stripe.com/p/session/test_YWNjdF9CaWxsaW5na2l0",
    )
    single(
        "create_portal_session",
        "billing_portal.session.json",
        "POST",
        "/v1/billing_portal/sessions",
        form={"customer": wcus, "return_url": "https://app.example.com/account"},
        idempotency_key=key(run, "portal-user-world"),
        body=portal,
    )

    # ----------------------------------------------------------------- errors
    single(
        "error_authentication",
        "Stripe's 401 error body",
        "GET",
        f"/v1/customers/{wcus}",
        status=401,
        body=error("invalid_request_error", "Invalid API Key provided: sk_test_************4242"),
    )
    single(
        "error_not_found",
        "Stripe's 404 error body",
        "GET",
        "/v1/customers/cus_billingkitMissing0",
        status=404,
        body=error(
            "invalid_request_error",
            "No such customer: 'cus_billingkitMissing0'",
            code="resource_missing",
            param="id",
        ),
    )
    bad_form = dict(min_form, success_url="not a url", client_reference_id="user-bad")
    single(
        "error_invalid_request",
        "Stripe's 400 error body",
        "POST",
        "/v1/checkout/sessions",
        form=bad_form,
        idempotency_key=key(run, "checkout-bad-url"),
        status=400,
        body=error(
            "invalid_request_error", "Not a valid URL", code="url_invalid", param="success_url"
        ),
    )
    idem = key(run, "customer-user-idem")
    write(
        "error_idempotency",
        "customer.json + Stripe's idempotency_error body",
        interaction(
            "error_idempotency",
            "POST",
            "/v1/customers",
            form={"metadata": {"user_id": "user-idem"}, "email": "first@example.com"},
            idempotency_key=idem,
            body=customer("cus_QXg1IdempotentBk1", email="first@example.com", user_id="user-idem"),
        ),
        interaction(
            "error_idempotency",
            "POST",
            "/v1/customers",
            form={"metadata": {"user_id": "user-idem"}, "email": "second@example.com"},
            idempotency_key=idem,
            status=400,
            body=error(
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same "
                f"parameters they were first used with. Try using a key other "
                f"than '{idem}' if you meant to execute a different request.",
            ),
        ),
    )
    single(
        "error_card",
        "Stripe's 402 card_error body (synthetic)",
        "POST",
        "/v1/customers",
        form={"metadata": {"user_id": syn["user_id"]}, "email": "card@example.com"},
        idempotency_key="bk-synthetic-customer-card",
        status=402,
        body=error(
            "card_error",
            "Your card was declined.",
            code="card_declined",
            param="",
            decline_code="generic_decline",
        ),
    )
    single(
        "error_rate_limit",
        "Stripe's 429 error body (synthetic)",
        "GET",
        "/v1/prices",
        query={"active": True, "lookup_keys": keys3, **PRICES_QUERY},
        status=429,
        body=error(
            "invalid_request_error",
            "Request rate limit exceeded. You can learn more about rate "
            "limits here https://stripe.com/docs/rate-limits.",
            code="rate_limit",
        ),
    )
    single(
        "error_server",
        "Stripe's 500 api_error body (synthetic)",
        "GET",
        f"/v1/subscriptions/{syn['subscription_id']}",
        status=500,
        body=error("api_error", "An unknown error occurred"),
    )
    retry_form = {"metadata": {"user_id": syn["user_id"]}, "email": "retry@example.com"}
    write(
        "retry_server_error",
        "customer.json + Stripe's 500 api_error body (synthetic)",
        interaction(
            "retry_server_error",
            "POST",
            "/v1/customers",
            form=retry_form,
            idempotency_key="bk-synthetic-customer-retry",
            status=500,
            body=error("api_error", "An unknown error occurred"),
        ),
        interaction(
            "retry_server_error",
            "POST",
            "/v1/customers",
            form=retry_form,
            idempotency_key="bk-synthetic-customer-retry",
            body=customer(syn["customer_id"], email="retry@example.com", user_id=syn["user_id"]),
        ),
    )

    build_flows(world)

    world_doc = {"catalog": CATALOG, "recorded": RECORDED, "synthetic": SYNTHETIC}
    (OUT / "world.json").write_text(
        json.dumps(world_doc, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


# --------------------------------------------------------------------------- service flows

FLOW_USER = "user-flow"
FLOW_CUSTOMER = "cus_QXg1FlowCustomer01"
FLOW_SESSION = "cs_test_a1BkFlowStartCheckout0000000000000000000000000000000000001"


def build_flows(world: dict[str, Any]) -> None:
    """Cassettes for CheckoutService and WebhookProcessor running over StripeSdkGateway.

    The idempotency keys are the ones the services derive (imported from billingkit, so run
    this script with ``PYTHONPATH=src``); the clock of the flow tests is frozen at ``NOW``.
    """
    from datetime import datetime, timezone

    from billingkit.domain import Interval
    from billingkit.services.checkout import (
        checkout_idempotency_key,
        checkout_request_key,
        customer_idempotency_key,
    )

    keys3 = sorted(entry["lookup_key"] for entry in CATALOG)
    catalog_load = interaction(
        "flow_catalog",
        "GET",
        "/v1/prices",
        query={"active": True, "lookup_keys": keys3, **PRICES_QUERY},
        body=price_list([price(entry) for entry in CATALOG]),
    )
    wsub, wcus = world["subscription_id"], world["customer_id"]
    write(
        "flow_webhook_tie_refetch",
        "price.json + product.json + subscription.json",
        copy.deepcopy(catalog_load),
        interaction(
            "flow_webhook_tie_refetch",
            "GET",
            f"/v1/subscriptions/{wsub}",
            body=subscription(wsub, wcus, status="trialing", user_id="billingkit-world"),
        ),
    )

    month = world["prices"]["billingkit_test_pro_month"]
    tags = {"user_id": FLOW_USER, "plan_key": "pro", "interval": "month"}
    request_key = checkout_request_key(
        user_id=FLOW_USER,
        plan_key="pro",
        interval=Interval.MONTH,
        price_id=month,
        quantity=1,
        trial_days=None,
        allow_promotion_codes=False,
        success_url=SUCCESS,
        cancel_url=CANCEL,
        metadata={},
    )
    now = datetime.fromtimestamp(NOW, tz=timezone.utc)
    session_key = checkout_idempotency_key(request_key, FLOW_CUSTOMER, now, 60)
    portal = fixture("billing_portal.session")
    portal.update(
        id="bps_1Pgc7HB7WZ01zgkWBkFlowPor",
        customer=FLOW_CUSTOMER,
        livemode=False,
        return_url="https://app.example.com/account",
        created=NOW,
        flow=None,
        url="https://billing.stripe.com/p/session/test_YWNjdF9GbG93UG9ydGFs",
    )
    flow_start = [
        interaction(
            "flow_start_checkout",
            "POST",
            "/v1/customers",
            form={"metadata": {"user_id": FLOW_USER}, "email": "flow@example.com"},
            idempotency_key=customer_idempotency_key(FLOW_USER),
            body=customer(FLOW_CUSTOMER, email="flow@example.com", user_id=FLOW_USER),
        ),
        interaction(
            "flow_start_checkout",
            "POST",
            "/v1/checkout/sessions",
            form={
                "mode": "subscription",
                "customer": FLOW_CUSTOMER,
                "line_items": [{"price": month, "quantity": 1}],
                "success_url": SUCCESS,
                "cancel_url": CANCEL,
                "client_reference_id": FLOW_USER,
                "metadata": tags,
                "subscription_data": {"metadata": tags},
            },
            idempotency_key=session_key,
            body=checkout(
                FLOW_SESSION,
                mode="subscription",
                cid=FLOW_CUSTOMER,
                user_id=FLOW_USER,
                metadata=tags,
            ),
        ),
    ]
    write(
        "flow_start_checkout",
        "price.json + product.json + customer.json + checkout.session.json"
        " + billing_portal.session.json",
        copy.deepcopy(catalog_load),
        *flow_start,
        # the double submit: is the stored session still open? (it is: the same object)
        interaction(
            "flow_start_checkout",
            "GET",
            f"/v1/checkout/sessions/{FLOW_SESSION}",
            query={"expand": ["subscription"]},
            body=json.loads(flow_start[1]["response"]["body"]["string"]),
        ),
        interaction(
            "flow_start_checkout",
            "POST",
            "/v1/billing_portal/sessions",
            form={"customer": FLOW_CUSTOMER, "return_url": "https://app.example.com/account"},
            body=portal,
        ),
    )

    # start then confirm: the same first three answers, then the session after the customer
    # paid (synthetic: test mode cannot complete a Checkout without a browser).
    start_interactions = [copy.deepcopy(catalog_load), *copy.deepcopy(flow_start)]
    flow_sub_id = "sub_1Pgc6rB7WZ01zgkWFlowSub01"
    paid = subscription(flow_sub_id, FLOW_CUSTOMER, status="active", user_id=FLOW_USER)
    paid["metadata"] = tags
    write(
        "flow_confirm_checkout",
        "price.json + product.json + customer.json + checkout.session.json"
        " + subscription.json (synthetic)",
        *start_interactions,
        interaction(
            "flow_confirm_checkout",
            "GET",
            f"/v1/checkout/sessions/{FLOW_SESSION}",
            query={"expand": ["subscription"]},
            body=checkout(
                FLOW_SESSION,
                mode="subscription",
                cid=FLOW_CUSTOMER,
                user_id=FLOW_USER,
                metadata=tags,
                status="complete",
                payment_status="paid",
                subscription=paid,
            ),
        ),
    )


if __name__ == "__main__":
    build()
