"""Fixtures for the StripeSdkGateway cassette tests, and the ``--record-cassettes`` option.

Playback (the default, and CI): cassettes from tests/cassettes/stripe_sdk are replayed, no
network. Re-recording against Stripe test mode::

    STRIPE_TEST_API_KEY=sk_test_... pytest tests/integration --record-cassettes

first seeds the test-mode objects the scenarios need (catalog prices found by lookup key or
created, a customer, a deleted customer, a trialing subscription) outside any cassette, writes
their ids to world.json, then records every non-synthetic cassette afresh (vcr record mode
``all``). This folder is named ``test_*`` so pytest loads this conftest, and its option, when
``tests/integration`` is given on the command line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime
from enum import Enum
from typing import Any

import pytest
import stripe
from stripe.params import PriceCreateParams
from stripe_cassettes import CassetteKit, load_world, save_world

from billingkit.adapters.stripe_sdk import StripeSdkGateway

PLAYBACK_KEY = "sk_test_playback_only_not_a_real_key"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-cassettes",
        action="store_true",
        default=False,
        help="re-record the StripeSdkGateway cassettes against Stripe test mode "
        "(needs STRIPE_TEST_API_KEY=sk_test_...)",
    )


@pytest.fixture(scope="session")
def recording(pytestconfig: pytest.Config) -> bool:
    """Whether this run re-records cassettes against Stripe test mode."""
    return bool(pytestconfig.getoption("record_cassettes", default=False))


@pytest.fixture(scope="session")
def api_key(recording: bool) -> str:
    """The test-mode key when recording; a placeholder for playback (never sent anywhere)."""
    if not recording:
        return PLAYBACK_KEY
    key = os.environ.get("STRIPE_TEST_API_KEY", "")
    if not key.startswith(("sk_test_", "rk_test_")):
        raise pytest.UsageError(
            "--record-cassettes needs STRIPE_TEST_API_KEY=sk_test_... (test mode)"
        )
    return key


@pytest.fixture(scope="session")
def world(recording: bool, api_key: str) -> dict[str, Any]:
    """Ids and catalog the cassettes describe; seeded in Stripe test mode when recording."""
    doc = load_world()
    if recording:
        doc["recorded"] = seed_test_mode(stripe.StripeClient(api_key), doc["catalog"])
        save_world(doc)
    return doc


@pytest.fixture(scope="session")
def cassettes(recording: bool) -> CassetteKit:
    return CassetteKit(recording=recording)


@pytest.fixture
def gateway(api_key: str) -> StripeSdkGateway:
    """A gateway as an app builds it (default retries and API version)."""
    return StripeSdkGateway.from_api_key(api_key)


def seed_test_mode(client: stripe.StripeClient, catalog: list[dict[str, Any]]) -> dict[str, Any]:
    """Find or create the catalog prices, and create the customers and subscription."""
    keys = [entry["lookup_key"] for entry in catalog]
    listed = client.v1.prices.list(params={"lookup_keys": keys, "active": True, "limit": 100})
    prices = {p.lookup_key: p.id for p in listed.data if p.lookup_key}
    products: dict[str, str] = {}
    for entry in catalog:
        if entry["product_name"] not in products:
            found = client.v1.products.search(
                params={"query": f"name:'{entry['product_name']}' AND active:'true'"}
            ).data
            products[entry["product_name"]] = (
                found[0].id
                if found
                else client.v1.products.create(params={"name": entry["product_name"]}).id
            )
        if entry["lookup_key"] in prices:
            continue
        params: PriceCreateParams = {
            "product": products[entry["product_name"]],
            "currency": entry["currency"],
            "unit_amount": entry["unit_amount"],
            "lookup_key": entry["lookup_key"],
            "transfer_lookup_key": True,
        }
        if entry["interval"] != "one_time":
            params["recurring"] = {"interval": entry["interval"]}
        created = client.v1.prices.create(params=params)
        prices[entry["lookup_key"]] = created.id
    email = "world@example.com"
    customer = client.v1.customers.create(
        params={"email": email, "metadata": {"user_id": "billingkit-world"}}
    )
    deleted = client.v1.customers.create(params={"metadata": {"user_id": "billingkit-deleted"}})
    client.v1.customers.delete(deleted.id)
    subscription = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": prices[catalog[0]["lookup_key"]]}],
            "trial_period_days": 14,
            "metadata": {"user_id": "billingkit-world"},
        }
    )
    return {
        "run_id": format(int(time.time()), "x"),
        "prices": prices,
        "products": products,
        "customer_id": customer.id,
        "customer_email": email,
        "deleted_customer_id": deleted.id,
        "subscription_id": subscription.id,
    }


@pytest.fixture
def no_sdk_objects() -> Iterator[Any]:
    """A checker: walk a returned value and fail on any stripe SDK object inside it."""

    leaves = (str, int, float, bool, type(None), datetime, Enum)

    def check(value: Any, path: str = "result") -> None:
        assert not isinstance(value, stripe.StripeObject), f"SDK object leaked at {path}"
        if isinstance(value, leaves):
            return
        assert type(value).__module__.split(".")[0] != "stripe", f"SDK value at {path}"
        if hasattr(type(value), "model_fields"):
            for name in type(value).model_fields:
                check(getattr(value, name), f"{path}.{name}")
        elif isinstance(value, dict):
            for k, v in value.items():
                check(v, f"{path}[{k!r}]")
        elif isinstance(value, list | tuple | set | frozenset):
            for i, v in enumerate(value):
                check(v, f"{path}[{i}]")
        elif hasattr(value, "items") and callable(value.items):
            for k, v in value.items():
                check(v, f"{path}[{k!r}]")
        else:
            raise AssertionError(f"unexpected {type(value).__name__} at {path}")

    yield check
