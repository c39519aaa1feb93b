"""StripeSdkGateway's list calls over cassettes (all synthetic): pages, filters, errors.

Each request is matched strictly (path, query, API version) and every recorded interaction
must be played, so the pagination (``starting_after`` = the last id of the page) and the
parameters (``status=all``, ``limit``, ``created[gte]``) are checked here.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from stripe_cassettes import CassetteKit

from billingkit.adapters.stripe_sdk import StripeSdkGateway
from billingkit.domain import SubscriptionStatus
from billingkit.errors import GatewayError

CUS = "cus_QXg1ListingBk0001"
SUBS = ["sub_1PgcListingBk0003", "sub_1PgcListingBk0002", "sub_1PgcListingBk0001"]
NOW = datetime(2026, 7, 29, 8, tzinfo=timezone.utc)
SINCE = datetime(2026, 7, 22, 8, tzinfo=timezone.utc)


def test_subscriptions_are_listed_page_by_page_with_every_status(
    gateway: StripeSdkGateway, cassettes: CassetteKit, no_sdk_objects: Any
) -> None:
    with cassettes.use("list_subscriptions_paginated", synthetic=True) as cassette:
        pages = gateway.list_subscriptions(page_size=2)
        first = next(pages)
        assert cassettes.requests_made(cassette) == 1  # lazy: one request per page
        assert first.has_more and first.next_cursor == SUBS[1]
        rest = list(pages)
    assert cassettes.requests_made(cassette) == 2
    assert [len(page.items) for page in (first, *rest)] == [2, 1]
    assert rest[-1].has_more is False and rest[-1].next_cursor is None
    listed = [sub for page in (first, *rest) for sub in page.items]
    assert [sub.id for sub in listed] == SUBS
    assert [sub.status for sub in listed] == [
        SubscriptionStatus.ACTIVE,
        SubscriptionStatus.CANCELED,
        SubscriptionStatus.PAST_DUE,
    ]
    assert {sub.user_id for sub in listed} == {"user-listing"}
    no_sdk_objects(listed[0])


def test_subscriptions_filtered_by_customer_and_creation(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    with cassettes.use("list_subscriptions_filtered", synthetic=True) as cassette:
        pages = list(gateway.list_subscriptions(customer_id=CUS, created_gte=SINCE))
    assert cassettes.requests_made(cassette) == 1
    assert [sub.id for page in pages for sub in page.items] == SUBS[:1]


def test_a_failing_page_raises_after_the_pages_before_it(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    with cassettes.use("list_subscriptions_error", synthetic=True):
        pages = gateway.list_subscriptions(page_size=2)
        first = next(pages)
        with pytest.raises(GatewayError) as caught:
            next(pages)
    assert [sub.id for sub in first.items] == SUBS[:2]
    assert (caught.value.http_status, caught.value.code) == (400, "resource_missing")
    assert not caught.value.retryable
    assert caught.value.request_id is not None


def test_customers_filtered_by_email(gateway: StripeSdkGateway, cassettes: CassetteKit) -> None:
    with cassettes.use("list_customers", synthetic=True):
        pages = list(gateway.list_customers(email="legacy@example.com", created_gte=SINCE))
    [customer] = [customer for page in pages for customer in page.items]
    assert customer.id == "cus_QXg1LegacyBk00001"
    assert customer.metadata == {"app_user": "legacy-7"}


def test_webhook_endpoints(gateway: StripeSdkGateway, cassettes: CassetteKit) -> None:
    with cassettes.use("list_webhook_endpoints", synthetic=True):
        [page] = list(gateway.list_webhook_endpoints())
    first, second = page.items
    assert (first.url, first.status, first.enabled_events) == (
        "https://app.example.com/billing/webhook",
        "enabled",
        ("*",),
    )
    assert first.api_version == gateway.api_version
    assert second.api_version is None
    assert second.enabled_events == ("invoice.paid", "customer.subscription.updated")


def test_a_restricted_key_cannot_list_endpoints(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    with (
        cassettes.use("list_webhook_endpoints_forbidden", synthetic=True),
        pytest.raises(GatewayError) as caught,
    ):
        list(gateway.list_webhook_endpoints())
    assert caught.value.http_status == 403
    assert not caught.value.retryable
    assert "rak_webhook_read" in str(caught.value)
