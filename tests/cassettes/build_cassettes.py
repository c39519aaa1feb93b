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
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
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
    body: dict[str, Any] | None = None,
    compact: bool = False,
    raw_body: str | None = None,
    content_type: str = "application/json",
    stripe_headers: bool = True,
) -> dict[str, Any]:
    """One vcrpy interaction, request and response, in the cassette YAML layout.

    ``raw_body`` (with its ``content_type``) stands for an answer that is not Stripe's JSON,
    e.g. a proxy's HTML error page; ``stripe_headers=False`` leaves out the headers only
    Stripe sends (``Request-Id``, ``Stripe-Version``).
    """
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
        # a POST without parameters has no body at all (resume, release)
        encoded = None if form is None else urlencode(flatten(form), safe="[]", quote_via=quote)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = [idempotency_key]
    request_id = _request_id(f"{name}:{method}:{uri}:{encoded}:{status}")
    response_headers: dict[str, list[str]] = {
        "Content-Type": [content_type],
        "Server": ["nginx"],
        "Cache-Control": ["no-cache, no-store"],
        "Request-Id": [request_id],
        "Stripe-Version": [API_VERSION],
        "Strict-Transport-Security": ["max-age=63072000; includeSubDomains; preload"],
    }
    if not stripe_headers:
        del response_headers["Request-Id"], response_headers["Stripe-Version"]
    body = body if body is not None else {}
    if method == "POST" and stripe_headers:
        response_headers["Idempotency-Key"] = [idempotency_key or "SDK-generated"]
        response_headers["Original-Request"] = [request_id]
    if status >= 400 and isinstance(body.get("error"), dict):
        body["error"].setdefault(
            "request_log_url", f"https://dashboard.stripe.com/test/logs/{request_id}"
        )
    return {
        "request": {"body": encoded, "headers": headers, "method": method, "uri": uri},
        "response": {
            "body": {
                "string": raw_body
                if raw_body is not None
                else json.dumps(body, indent=None if compact else 2)
            },
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


# Error pages an HTTP proxy between the app and Stripe answers with (not Stripe's JSON).
PROXY_502_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n" + "<!-- a padding comment to make the page long -->\r\n" * 20
)
PROXY_404_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>"
    "<h1>Not Found</h1><p>The requested URL was not found on this proxy.</p></body></html>\n"
)

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
    # Checkout options: Stripe Tax (with the customer address update it needs), tax ids (with
    # the name update), a required billing address, a trial without a card that pauses when
    # it ends without one, a coupon applied up front, the page in German.
    options_form = {
        "mode": "subscription",
        "customer": wcus,
        "line_items": [{"price": month, "quantity": 1}],
        "success_url": SUCCESS,
        "cancel_url": CANCEL,
        "client_reference_id": "user-ada",
        "metadata": {"user_id": "user-ada", "plan": "pro"},
        "automatic_tax": {"enabled": True},
        "tax_id_collection": {"enabled": True},
        "customer_update": {"address": "auto", "name": "auto"},
        "billing_address_collection": "required",
        "payment_method_collection": "if_required",
        "discounts": [{"coupon": "launch20"}],
        "locale": "de",
        "subscription_data": {
            "metadata": {"user_id": "user-ada", "plan": "pro"},
            "trial_period_days": 14,
            "trial_settings": {"end_behavior": {"missing_payment_method": "pause"}},
        },
    }
    options_body = checkout(
        "cs_test_a1BkCheckoutOptions0000000000000000000000000000000000000001",
        mode="subscription",
        cid=wcus,
        user_id="user-ada",
        metadata=options_form["metadata"],
        amount=0,
    )
    options_body.update(
        automatic_tax={
            "enabled": True,
            "liability": {"type": "self"},
            "status": "requires_location_inputs",
            "provider": "stripe",
        },
        tax_id_collection={"enabled": True, "required": "never"},
        billing_address_collection="required",
        payment_method_collection="if_required",
        locale="de",
        discounts=[{"coupon": "launch20", "promotion_code": None}],
    )
    single(
        "create_checkout_options",
        "checkout.session.json",
        "POST",
        "/v1/checkout/sessions",
        form=options_form,
        idempotency_key=key(run, "checkout-options-user-ada"),
        body=options_body,
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
    single(
        "error_not_found_without_code",
        "Stripe's 404 body for an unknown URL, which has no code (synthetic)",
        "GET",
        f"/v1/subscriptions/{syn['subscription_id']}",
        status=404,
        body=error(
            "invalid_request_error",
            f"Unrecognized request URL (GET: /v1/subscriptions/{syn['subscription_id']}). "
            "Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
        ),
    )
    single(
        "error_proxy_html_502",
        "a proxy's HTML 502 page, not Stripe's JSON (synthetic)",
        "GET",
        f"/v1/customers/{syn['customer_id']}",
        status=502,
        raw_body=PROXY_502_PAGE,
        content_type="text/html",
        stripe_headers=False,
    )
    single(
        "error_proxy_html_404",
        "a proxy's HTML 404 page, not Stripe's JSON (synthetic)",
        "GET",
        f"/v1/customers/{syn['customer_id']}",
        status=404,
        raw_body=PROXY_404_PAGE,
        content_type="text/html",
        stripe_headers=False,
    )
    single(
        "error_proxy_json_403",
        "an API gateway's JSON 403 without Stripe's error object (synthetic)",
        "GET",
        f"/v1/customers/{syn['customer_id']}",
        status=403,
        raw_body='{"message": "Forbidden: egress denied for key sk_test_********4242"}',
        stripe_headers=False,
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


# ------------------------------------------------------------------ subscription management
# All synthetic: built from subscription.json and invoice.json (openapi 2026-07-29), and for
# the schedule and promotion code (no fixture held) from the API reference's object layout.

MGMT_SUB = "sub_1Pgc6rB7WZ01zgkWManage01"
MGMT_CUS = "cus_QXg1ManageBk0001"
MGMT_ITEM = "si_QXg1ManageItem01"
MGMT_SCHED = "sub_sched_1PgcManageBk0001"
MGMT_PROMO = "promo_1PgcManageSpring25"
MGMT_KEY = "bk-synthetic-manage"
PERIOD_START = NOW - 10 * 86400
PERIOD_END = PERIOD_START + 31 * 86400


def managed_subscription(*, quantity: int = 1, status: str = "active") -> dict[str, Any]:
    """The subscription the management cassettes change (pro monthly, 10 days in)."""
    obj = subscription(MGMT_SUB, MGMT_CUS, status=status, user_id="user-manage")
    obj.update(created=PERIOD_START, start_date=PERIOD_START, billing_cycle_anchor=PERIOD_START)
    item = obj["items"]["data"][0]
    item.update(
        id=MGMT_ITEM,
        quantity=quantity,
        created=PERIOD_START,
        current_period_start=PERIOD_START,
        current_period_end=PERIOD_END,
    )
    return obj


def proration_line(line_id: str, amount: int, quantity: int, label: str) -> dict[str, Any]:
    line: dict[str, Any] = copy.deepcopy(fixture("invoice")["lines"]["data"][0])
    price_id = RECORDED["prices"]["billingkit_test_pro_month"]
    line.update(
        id=line_id,
        amount=amount,
        subtotal=amount,
        quantity=quantity,
        description=f"{label} {quantity} × billingkit test Pro after 29 Jul 2026",  # noqa: RUF001
        discountable=False,
        period={"start": NOW, "end": PERIOD_END},
        invoice="in_1PgcManageProration1",
    )
    line["parent"] = {
        "invoice_item_details": None,
        "subscription_item_details": {
            "invoice_item": None,
            "proration": True,
            "proration_details": {"credited_items": None},
            "subscription": MGMT_SUB,
            "subscription_item": MGMT_ITEM,
        },
        "type": "subscription_item_details",
    }
    line["pricing"] = {
        "price_details": {
            "price": price_id,
            "product": RECORDED["products"]["billingkit test Pro"],
        },
        "type": "price_details",
        "unit_amount_decimal": "2000",
    }
    return line


def management_invoice(*, status: str, paid: bool, invoice_id: str) -> dict[str, Any]:
    """Seats 1 -> 3, 21 of 31 days left: credit 2000 x 21/31, charge 6000 x 21/31."""
    obj = fixture("invoice")
    lines = [
        proration_line("il_1PgcManageCredit01", -1355, 1, "Unused time on"),
        proration_line("il_1PgcManageCharge01", 4065, 3, "Remaining time on"),
    ]
    for line in lines:
        line["invoice"] = invoice_id
    total = 4065 - 1355
    obj.update(
        id=invoice_id,
        customer=MGMT_CUS,
        status=status,
        billing_reason="subscription_update",
        subscription=None,
        amount_due=total,
        amount_paid=total if paid else 0,
        amount_remaining=0 if paid else total,
        subtotal=total,
        subtotal_excluding_tax=total,
        total=total,
        total_excluding_tax=total,
        total_discount_amounts=[],
        discounts=[],
        starting_balance=0,
        created=NOW,
        period_start=PERIOD_START,
        period_end=NOW,
        hosted_invoice_url=f"https://invoice.stripe.com/i/acct_1PgcManage/test_{invoice_id}",
        next_payment_attempt=None,
        attempted=True,
        attempt_count=1,
    )
    obj["lines"] = {
        "object": "list",
        "data": lines,
        "has_more": False,
        "total_count": 2,
        "url": f"/v1/invoices/{invoice_id}/lines",
    }
    obj["parent"] = {
        "quote_details": None,
        "subscription_details": {"metadata": {"user_id": "user-manage"}, "subscription": MGMT_SUB},
        "type": "subscription_details",
    }
    return obj


def schedule_object(*, phases: int, status: str = "active") -> dict[str, Any]:
    """A subscription_schedule in the API reference's layout (no fixture held)."""
    price_month = RECORDED["prices"]["billingkit_test_pro_month"]
    price_year = RECORDED["prices"]["billingkit_test_pro_year"]

    def phase(price: str, quantity: int, start: int, end: int, proration: str) -> dict[str, Any]:
        return {
            "add_invoice_items": [],
            "application_fee_percent": None,
            "billing_cycle_anchor": None,
            "collection_method": None,
            "currency": "usd",
            "default_payment_method": None,
            "default_tax_rates": [],
            "description": None,
            "discounts": [],
            "end_date": end,
            "invoice_settings": None,
            "items": [
                {
                    "discounts": [],
                    "metadata": {},
                    "plan": price,
                    "price": price,
                    "quantity": quantity,
                    "tax_rates": [],
                }
            ],
            "metadata": {},
            "on_behalf_of": None,
            "proration_behavior": proration,
            "start_date": start,
            "transfer_data": None,
            "trial_end": None,
        }

    listed = [phase(price_month, 1, PERIOD_START, PERIOD_END, "create_prorations")]
    if phases == 2:
        listed.append(phase(price_year, 1, PERIOD_END, PERIOD_END + 365 * 86400, "none"))
    released = status == "released"
    return {
        "id": MGMT_SCHED,
        "object": "subscription_schedule",
        "application": None,
        "billing_mode": {"type": "flexible"},
        "canceled_at": None,
        "completed_at": None,
        "created": NOW,
        "current_phase": None if released else {"end_date": PERIOD_END, "start_date": PERIOD_START},
        "customer": MGMT_CUS,
        "customer_account": None,
        "default_settings": {
            "application_fee_percent": None,
            "billing_cycle_anchor": "automatic",
            "collection_method": "charge_automatically",
            "default_payment_method": None,
            "description": None,
            "invoice_settings": {"account_tax_ids": None, "days_until_due": None},
            "on_behalf_of": None,
            "transfer_data": None,
        },
        "end_behavior": "release",
        "livemode": False,
        "metadata": {},
        "phases": listed,
        "released_at": NOW if released else None,
        "released_subscription": MGMT_SUB if released else None,
        "status": status,
        "subscription": None if released else MGMT_SUB,
        "test_clock": None,
    }


def promotion_code_object() -> dict[str, Any]:
    """A promotion_code (clover+ layout, coupon expanded) from the API reference."""
    return {
        "id": MGMT_PROMO,
        "object": "promotion_code",
        "active": True,
        "code": "SPRING25",
        "created": NOW,
        "customer": None,
        "customer_account": None,
        "expires_at": None,
        "livemode": False,
        "max_redemptions": None,
        "metadata": {},
        "promotion": {
            "coupon": {
                "id": "spring25",
                "object": "coupon",
                "amount_off": None,
                "created": NOW,
                "currency": None,
                "duration": "repeating",
                "duration_in_months": 3,
                "livemode": False,
                "max_redemptions": None,
                "metadata": {},
                "name": "Spring 25 %",
                "percent_off": 25.0,
                "redeem_by": None,
                "times_redeemed": 4,
                "valid": True,
            },
            "type": "coupon",
        },
        "restrictions": {
            "first_time_transaction": False,
            "minimum_amount": None,
            "minimum_amount_currency": None,
        },
        "times_redeemed": 4,
    }


def build_management() -> None:
    """Cassettes for the subscription management calls and the errors each can meet."""
    seats = {
        "expand": ["latest_invoice"],
        "items": [{"id": MGMT_ITEM, "quantity": 3}],
        "proration_behavior": "always_invoice",
        "payment_behavior": "pending_if_incomplete",
    }
    applied = managed_subscription(quantity=3)
    applied["latest_invoice"] = management_invoice(
        status="paid", paid=True, invoice_id="in_1PgcManageProration1"
    )
    single(
        "update_subscription_applied",
        "subscription.json + invoice.json (synthetic)",
        "POST",
        f"/v1/subscriptions/{MGMT_SUB}",
        form=seats,
        idempotency_key=f"{MGMT_KEY}-seats",
        body=applied,
    )
    pending = managed_subscription(quantity=1)
    pending["latest_invoice"] = management_invoice(
        status="open", paid=False, invoice_id="in_1PgcManageProration2"
    )
    pending_item = copy.deepcopy(pending["items"]["data"][0])
    pending_item["quantity"] = 3
    pending["pending_update"] = {
        "billing_cycle_anchor": None,
        "expires_at": NOW + 23 * 3600,
        "subscription_items": [pending_item],
        "trial_end": None,
        "trial_from_plan": None,
    }
    single(
        "update_subscription_pending",
        "subscription.json + invoice.json (synthetic: the card declined)",
        "POST",
        f"/v1/subscriptions/{MGMT_SUB}",
        form=seats,
        idempotency_key=f"{MGMT_KEY}-seats-declined",
        body=pending,
    )
    strict = dict(seats, payment_behavior="error_if_incomplete")
    single(
        "update_subscription_card_declined",
        "Stripe's 402 card_error body (synthetic)",
        "POST",
        f"/v1/subscriptions/{MGMT_SUB}",
        form=strict,
        idempotency_key=f"{MGMT_KEY}-seats-strict",
        status=402,
        body=error(
            "card_error",
            "Your card was declined.",
            code="card_declined",
            decline_code="insufficient_funds",
        ),
    )
    single(
        "update_subscription_not_found",
        "Stripe's 404 error body (synthetic)",
        "POST",
        "/v1/subscriptions/sub_billingkitMissing0",
        form={"expand": ["latest_invoice"], "cancel_at_period_end": True},
        idempotency_key=f"{MGMT_KEY}-missing",
        status=404,
        body=error(
            "invalid_request_error",
            "No such subscription: 'sub_billingkitMissing0'",
            code="resource_missing",
            param="id",
        ),
    )
    single(
        "update_subscription_invalid",
        "Stripe's 400 error body (synthetic)",
        "POST",
        f"/v1/subscriptions/{MGMT_SUB}",
        form={
            "expand": ["latest_invoice"],
            "payment_behavior": "pending_if_incomplete",
            "discounts": [{"promotion_code": MGMT_PROMO}],
        },
        idempotency_key=f"{MGMT_KEY}-pending-discount",
        status=400,
        body=error(
            "invalid_request_error",
            "`discounts` cannot be used with `payment_behavior=pending_if_incomplete`.",
            code="parameter_invalid_empty",
            param="discounts",
        ),
    )

    canceled = managed_subscription()
    canceled.update(status="canceled", canceled_at=NOW, ended_at=NOW)
    canceled["cancellation_details"] = {
        "comment": None,
        "feedback": None,
        "reason": "cancellation_requested",
    }
    single(
        "cancel_subscription_now",
        "subscription.json (synthetic)",
        "DELETE",
        f"/v1/subscriptions/{MGMT_SUB}",
        query={"prorate": True, "invoice_now": True},
        idempotency_key=f"{MGMT_KEY}-cancel",
        body=canceled,
    )
    single(
        "cancel_subscription_not_found",
        "Stripe's 404 error body (synthetic)",
        "DELETE",
        "/v1/subscriptions/sub_billingkitMissing0",
        idempotency_key=f"{MGMT_KEY}-cancel-missing",
        status=404,
        body=error(
            "invalid_request_error",
            "No such subscription: 'sub_billingkitMissing0'",
            code="resource_missing",
            param="id",
        ),
    )
    resumed = managed_subscription()
    resumed["billing_cycle_anchor"] = NOW
    single(
        "resume_subscription",
        "subscription.json (synthetic)",
        "POST",
        f"/v1/subscriptions/{MGMT_SUB}/resume",
        idempotency_key=f"{MGMT_KEY}-resume",
        body=resumed,
    )
    single(
        "resume_subscription_invalid",
        "Stripe's 400 error body (synthetic)",
        "POST",
        f"/v1/subscriptions/{MGMT_SUB}/resume",
        idempotency_key=f"{MGMT_KEY}-resume-active",
        status=400,
        body=error(
            "invalid_request_error",
            "Only paused subscriptions can be resumed.",
            code="subscription_not_paused",
        ),
    )

    preview_form = {
        "customer": MGMT_CUS,
        "subscription": MGMT_SUB,
        "subscription_details": {
            "proration_behavior": "always_invoice",
            "items": [{"id": MGMT_ITEM, "quantity": 3}],
            "proration_date": NOW,
        },
    }
    preview = management_invoice(status="draft", paid=False, invoice_id="upcoming_in_manage")
    preview.update(
        attempted=False,
        attempt_count=0,
        hosted_invoice_url=None,
        amount_remaining=preview["amount_due"],
    )
    single(
        "preview_invoice",
        "invoice.json (synthetic)",
        "POST",
        "/v1/invoices/create_preview",
        form=preview_form,
        body=preview,
    )
    single(
        "preview_invoice_not_found",
        "Stripe's 404 error body (synthetic)",
        "POST",
        "/v1/invoices/create_preview",
        form=dict(preview_form, subscription="sub_billingkitMissing0"),
        status=404,
        body=error(
            "invalid_request_error",
            "No such subscription: 'sub_billingkitMissing0'",
            code="resource_missing",
            param="subscription",
        ),
    )
    late: dict[str, Any] = copy.deepcopy(preview_form)
    late["subscription_details"]["proration_date"] = PERIOD_END + 86400
    single(
        "preview_invoice_invalid",
        "Stripe's 400 error body (synthetic)",
        "POST",
        "/v1/invoices/create_preview",
        form=late,
        status=400,
        body=error(
            "invalid_request_error",
            "The proration_date must be within the current billing period.",
            param="subscription_details[proration_date]",
        ),
    )

    price_year = RECORDED["prices"]["billingkit_test_pro_year"]
    price_month = RECORDED["prices"]["billingkit_test_pro_month"]
    write(
        "schedule_subscription_change",
        "subscription_schedule layout from the API reference (synthetic)",
        interaction(
            "schedule_subscription_change",
            "POST",
            "/v1/subscription_schedules",
            form={"from_subscription": MGMT_SUB},
            idempotency_key=f"{MGMT_KEY}-schedule:create",
            body=schedule_object(phases=1),
        ),
        interaction(
            "schedule_subscription_change",
            "POST",
            f"/v1/subscription_schedules/{MGMT_SCHED}",
            form={
                "end_behavior": "release",
                "phases": [
                    {
                        "items": [{"price": price_month, "quantity": 1}],
                        "start_date": PERIOD_START,
                        "end_date": PERIOD_END,
                    },
                    {
                        "items": [{"price": price_year, "quantity": 1}],
                        "proration_behavior": "none",
                    },
                ],
            },
            idempotency_key=f"{MGMT_KEY}-schedule:phases",
            body=schedule_object(phases=2),
        ),
    )
    single(
        "schedule_subscription_change_invalid",
        "Stripe's 400 error body (synthetic)",
        "POST",
        "/v1/subscription_schedules",
        form={"from_subscription": MGMT_SUB},
        idempotency_key=f"{MGMT_KEY}-schedule-again:create",
        status=400,
        body=error(
            "invalid_request_error",
            f"You cannot migrate a subscription that is already attached to a schedule: "
            f"`{MGMT_SCHED}`.",
            param="from_subscription",
        ),
    )
    single(
        "release_subscription_schedule",
        "subscription_schedule layout from the API reference (synthetic)",
        "POST",
        f"/v1/subscription_schedules/{MGMT_SCHED}/release",
        idempotency_key=f"{MGMT_KEY}-release",
        body=schedule_object(phases=2, status="released"),
    )
    single(
        "release_subscription_schedule_not_found",
        "Stripe's 404 error body (synthetic)",
        "POST",
        "/v1/subscription_schedules/sub_sched_billingkitMissing/release",
        idempotency_key=f"{MGMT_KEY}-release-missing",
        status=404,
        body=error(
            "invalid_request_error",
            "No such subscription schedule: 'sub_sched_billingkitMissing'",
            code="resource_missing",
            param="schedule",
        ),
    )
    promo_query = {"active": True, "expand": ["data.promotion.coupon"], "limit": 10}
    single(
        "find_promotion_code",
        "promotion_code layout from the API reference (synthetic)",
        "GET",
        "/v1/promotion_codes",
        query={**promo_query, "code": "SPRING25"},
        body={
            "object": "list",
            "data": [promotion_code_object()],
            "has_more": False,
            "url": "/v1/promotion_codes",
        },
    )
    single(
        "find_promotion_code_none",
        "Stripe's empty list (synthetic)",
        "GET",
        "/v1/promotion_codes",
        query={**promo_query, "code": "NOSUCHCODE"},
        body={"object": "list", "data": [], "has_more": False, "url": "/v1/promotion_codes"},
    )


# --------------------------------------------------------------------------- list calls
# Synthetic: subscriptions and customers from subscription.json and customer.json
# (openapi 2026-07-29), webhook endpoints in the API reference's layout (no fixture held).

LIST_CUS = "cus_QXg1ListingBk0001"
LIST_SUBS = [f"sub_1PgcListingBk000{n}" for n in (3, 2, 1)]  # newest first, as Stripe lists
LIST_SINCE = NOW - 7 * 86400


def list_of(path: str, data: list[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": path}


def listed_subscription(sid: str, age: int, status: str = "active") -> dict[str, Any]:
    obj = subscription(sid, LIST_CUS, status=status, user_id="user-listing")
    obj.update(created=NOW - age, start_date=NOW - age)
    if status == "canceled":
        obj.update(canceled_at=NOW - 60, ended_at=NOW - 60)
    return obj


def webhook_endpoint(
    we_id: str, url: str, events: list[str], version: str | None
) -> dict[str, Any]:
    """A webhook_endpoint in the API reference's layout (no fixture held; no secret)."""
    return {
        "id": we_id,
        "object": "webhook_endpoint",
        "api_version": version,
        "application": None,
        "created": NOW - 86400,
        "description": None,
        "enabled_events": events,
        "livemode": False,
        "metadata": {},
        "status": "enabled",
        "url": url,
    }


def build_lists() -> None:
    """Cassettes for the list calls: a multi-page listing, filters, endpoints, an error."""
    subs = [
        listed_subscription(LIST_SUBS[0], 600),
        listed_subscription(LIST_SUBS[1], 1200, status="canceled"),
        listed_subscription(LIST_SUBS[2], 1800, status="past_due"),
    ]
    query = {"status": "all", "limit": 2}
    write(
        "list_subscriptions_paginated",
        "subscription.json (synthetic: 3 subscriptions, 2 per page)",
        interaction(
            "list_subscriptions_paginated",
            "GET",
            "/v1/subscriptions",
            query=query,
            body=list_of("/v1/subscriptions", subs[:2], has_more=True),
        ),
        interaction(
            "list_subscriptions_paginated",
            "GET",
            "/v1/subscriptions",
            query={**query, "starting_after": LIST_SUBS[1]},
            body=list_of("/v1/subscriptions", subs[2:], has_more=False),
        ),
    )
    single(
        "list_subscriptions_filtered",
        "subscription.json (synthetic)",
        "GET",
        "/v1/subscriptions",
        query={
            "status": "all",
            "limit": 100,
            "customer": LIST_CUS,
            "created": {"gte": LIST_SINCE},
        },
        body=list_of("/v1/subscriptions", subs[:1], has_more=False),
    )
    write(
        "list_subscriptions_error",
        "subscription.json + Stripe's 400 resource_missing body (synthetic: the cursor's "
        "subscription was deleted between the pages)",
        interaction(
            "list_subscriptions_error",
            "GET",
            "/v1/subscriptions",
            query=query,
            body=list_of("/v1/subscriptions", subs[:2], has_more=True),
        ),
        interaction(
            "list_subscriptions_error",
            "GET",
            "/v1/subscriptions",
            query={**query, "starting_after": LIST_SUBS[1]},
            status=400,
            body=error(
                "invalid_request_error",
                f"No such subscription: '{LIST_SUBS[1]}'",
                code="resource_missing",
                param="starting_after",
            ),
        ),
    )
    legacy = customer("cus_QXg1LegacyBk00001", email="legacy@example.com", user_id="unused")
    legacy["metadata"] = {"app_user": "legacy-7"}
    single(
        "list_customers",
        "customer.json (synthetic)",
        "GET",
        "/v1/customers",
        query={"limit": 100, "email": "legacy@example.com", "created": {"gte": LIST_SINCE}},
        body=list_of("/v1/customers", [legacy], has_more=False),
    )
    endpoints = [
        webhook_endpoint(
            "we_1PgcListingBk0001", "https://app.example.com/billing/webhook", ["*"], API_VERSION
        ),
        webhook_endpoint(
            "we_1PgcListingBk0002",
            "http://old.example.com/hook",
            ["invoice.paid", "customer.subscription.updated"],
            None,
        ),
    ]
    single(
        "list_webhook_endpoints",
        "webhook_endpoint layout from the API reference (synthetic)",
        "GET",
        "/v1/webhook_endpoints",
        query={"limit": 100},
        body=list_of("/v1/webhook_endpoints", endpoints, has_more=False),
    )
    single(
        "list_webhook_endpoints_forbidden",
        "Stripe's 403 error body for a restricted key (synthetic)",
        "GET",
        "/v1/webhook_endpoints",
        query={"limit": 100},
        status=403,
        body=error(
            "invalid_request_error",
            "The provided key does not have the required permissions for this endpoint on "
            "account 'acct_1Pgc'. Having the 'rak_webhook_read' permission would allow this "
            "request to continue.",
        ),
    )


# --------------------------------------------------------------------------- payment methods

PM_CUS = "cus_QXg1CardUpdate0001"
PM_SUB = "sub_1Pgc6rB7WZ01zgkWCardUp1"
PM_METHOD = "pm_1PgcCardUpdateMaster01"
PM_KEY = "billingkit-default-pm-synthetic"
PM_SETUP_KEY = "billingkit-setup-synthetic"
PM_SUCCESS = "https://app.example.com/account/card?done=1"
PM_CANCEL = "https://app.example.com/account"
PM_METADATA = {"billingkit_purpose": "payment_method_update", "user_id": "user-card"}


def setup_session() -> dict[str, Any]:
    """The open setup-mode session ``create_setup_checkout_session`` answers."""
    obj = checkout(
        "cs_test_a1CardUpdateSetup01",
        mode="setup",
        cid=PM_CUS,
        user_id="user-card",
        metadata=PM_METADATA,
        payment_status="no_payment_required",
    )
    obj.update(
        amount_subtotal=None,
        amount_total=None,
        currency=None,
        subscription=None,
        success_url=PM_SUCCESS,
        cancel_url=PM_CANCEL,
        setup_intent="seti_1PgcCardUpdateSetup01",
    )
    return obj


def build_payment_methods() -> None:
    """Cassettes for the setup-mode Checkout and the default-payment-method update."""
    setup_form = {
        "mode": "setup",
        "customer": PM_CUS,
        "allowed_payment_method_types": ["card"],
        "success_url": PM_SUCCESS,
        "cancel_url": PM_CANCEL,
        "client_reference_id": "user-card",
        "metadata": PM_METADATA,
        "setup_intent_data": {"metadata": PM_METADATA},
    }
    single(
        "create_setup_checkout_session",
        "checkout.session.json (synthetic: setup mode)",
        "POST",
        "/v1/checkout/sessions",
        form=setup_form,
        idempotency_key=PM_SETUP_KEY,
        body=setup_session(),
    )
    single(
        "create_setup_checkout_session_invalid",
        "Stripe's 400 invalid_request_error body (synthetic)",
        "POST",
        "/v1/checkout/sessions",
        form=setup_form,
        idempotency_key=PM_SETUP_KEY + "-invalid",
        status=400,
        body=error(
            "invalid_request_error",
            "No such customer: 'cus_QXg1CardUpdate0001'",
            code="resource_missing",
            param="customer",
        ),
    )
    updated = customer(PM_CUS, email="ada@example.com", user_id="user-card")
    updated["invoice_settings"] = dict(
        updated.get("invoice_settings") or {}, default_payment_method=PM_METHOD
    )
    sub = subscription(PM_SUB, PM_CUS, status="active", user_id="user-card")
    sub["default_payment_method"] = PM_METHOD
    write(
        "set_default_payment_method",
        "customer.json + subscription.json (synthetic: the new default)",
        interaction(
            "set_default_payment_method",
            "POST",
            f"/v1/customers/{PM_CUS}",
            form={"invoice_settings": {"default_payment_method": PM_METHOD}},
            idempotency_key=f"{PM_KEY}-customer",
            body=updated,
        ),
        interaction(
            "set_default_payment_method",
            "POST",
            f"/v1/subscriptions/{PM_SUB}",
            form={"default_payment_method": PM_METHOD},
            idempotency_key=f"{PM_KEY}-{PM_SUB}",
            body=sub,
        ),
    )
    single(
        "set_default_payment_method_invalid",
        "Stripe's 400 invalid_request_error body (synthetic)",
        "POST",
        f"/v1/customers/{PM_CUS}",
        form={"invoice_settings": {"default_payment_method": PM_METHOD}},
        idempotency_key=f"{PM_KEY}-invalid-customer",
        status=400,
        body=error(
            "invalid_request_error",
            f"The customer does not have a payment method with the ID {PM_METHOD}. The "
            "payment method must be attached to the customer.",
            param="invoice_settings[default_payment_method]",
        ),
    )


USAGE_CUSTOMER = "cus_QXg1UsageBk00001"
USAGE_AT = 1785311000  # 2026-07-29T07:43:20Z


def build_usage() -> None:
    """``create_meter_event``: accepted, an unknown meter (400) and a rate limit (429)."""
    form = {
        "event_name": "api_calls",
        "identifier": "bku_0001",
        "payload": {"stripe_customer_id": USAGE_CUSTOMER, "value": "25"},
        "timestamp": USAGE_AT,
    }
    single(
        "create_meter_event",
        "billing.meter_event layout from the API reference (synthetic)",
        "POST",
        "/v1/billing/meter_events",
        form=form,
        idempotency_key="bk-meter-event-bku_0001",
        body={
            "object": "billing.meter_event",
            "created": NOW,
            "event_name": "api_calls",
            "identifier": "bku_0001",
            "livemode": False,
            "payload": {"stripe_customer_id": USAGE_CUSTOMER, "value": "25"},
            "timestamp": USAGE_AT,
        },
    )
    missing = {**form, "event_name": "no_such_meter", "identifier": "bku_0002"}
    single(
        "create_meter_event_no_meter",
        "Stripe's 400 error body (synthetic)",
        "POST",
        "/v1/billing/meter_events",
        form=missing,
        idempotency_key="bk-meter-event-bku_0002",
        status=400,
        body=error(
            "invalid_request_error",
            "No active meter was found matching event_name no_such_meter",
            param="event_name",
        ),
    )
    metered_form = {
        "mode": "subscription",
        "customer": USAGE_CUSTOMER,
        "line_items": [{"price": "price_1PgafmB7WZ01zgkWMetered01"}],  # no quantity
        "success_url": SUCCESS,
        "cancel_url": CANCEL,
        "client_reference_id": "user-usage",
    }
    single(
        "create_checkout_metered",
        "checkout.session.json (synthetic: a metered price)",
        "POST",
        "/v1/checkout/sessions",
        form=metered_form,
        idempotency_key="bk-synthetic-checkout-metered",
        body=checkout(
            "cs_test_a1BkMeteredOpen000000000000000000000000000000000000000000001",
            mode="subscription",
            cid=USAGE_CUSTOMER,
            user_id="user-usage",
            metadata={},
        ),
    )
    limited = {**form, "identifier": "bku_0003"}
    single(
        "create_meter_event_rate_limited",
        "Stripe's 429 error body (synthetic)",
        "POST",
        "/v1/billing/meter_events",
        form=limited,
        idempotency_key="bk-meter-event-bku_0003",
        status=429,
        body=error(
            "invalid_request_error",
            "Request rate limit exceeded. Learn more about rate limits here "
            "https://stripe.com/docs/rate-limits.",
            code="rate_limit",
        ),
    )


if __name__ == "__main__":
    build()
    build_management()
    build_lists()
    build_payment_methods()

    build_usage()
