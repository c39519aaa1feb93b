"""CheckoutService and WebhookProcessor end to end over StripeSdkGateway (cassettes).

Proves the real adapter honours the port as the services use it: the catalog's one-call
load, the services' idempotency keys, and the webhook tie re-fetch.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from stripe_cassettes import CassetteKit

from billingkit import Billing
from billingkit.adapters.memory import InMemoryRepository
from billingkit.adapters.stripe_sdk import StripeSdkGateway
from billingkit.config import BillingConfig
from billingkit.domain import CustomerLink, PlanDefinition, SubscriptionStatus
from billingkit.services.webhooks import WebhookOutcome
from billingkit.testing import build_event, signed_delivery

NOW = datetime(2026, 7, 29, 8, 0, tzinfo=timezone.utc)  # the cassettes' frozen time
SECRET = "whsec_billingkit_flow_tests"
SUCCESS = "https://app.example.com/billing/success?session_id={CHECKOUT_SESSION_ID}"
SUBSCRIPTION = json.loads(
    (
        Path(__file__).resolve().parents[2]
        / "fixtures/stripe/openapi/2026-07-29_f0758b15/subscription.json"
    ).read_text(encoding="utf-8")
)


START: dict[str, Any] = {
    "user_id": "user-flow",
    "email": "flow@example.com",
    "plan_key": "pro",
    "interval": "month",
    "success_url": SUCCESS,
    "cancel_url": "https://app.example.com/pricing",
}


def _config() -> BillingConfig:
    return BillingConfig(
        plans=(
            PlanDefinition(
                key="pro",
                name="Pro",
                prices={"month": "billingkit_test_pro_month", "year": "billingkit_test_pro_year"},
            ),
            PlanDefinition(
                key="lifetime", name="Lifetime", prices={"one_time": "billingkit_test_lifetime"}
            ),
        ),
        webhook_secrets=(SECRET,),
    )


def _clock() -> datetime:
    return NOW


def _billing(gateway: StripeSdkGateway) -> Billing:
    """The services over the SDK gateway, an empty memory repository and the frozen time."""
    return Billing.build(_config(), gateway, InMemoryRepository(), clock=_clock)


def test_start_checkout_and_billing_portal_over_the_sdk_gateway(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    billing = _billing(gateway)
    checkout, repository = billing.checkout, billing.repository
    with cassettes.use("flow_start_checkout") as cassette:
        start = checkout.start_checkout(**START)
        # a double submit: the stored session, once Stripe confirms it is still open
        again = checkout.start_checkout(**START)
        portal_url = checkout.open_billing_portal("user-flow", "https://app.example.com/account")
    # catalog (1, whole catalog) + customer + session + retrieve (double submit) + portal
    assert cassettes.requests_made(cassette) == 5
    assert start.session_id.startswith("cs_test_")
    assert start.url.startswith("https://checkout.stripe.com/")
    assert again.session_id == start.session_id and again.reused is True
    assert portal_url.startswith("https://billing.stripe.com/")
    with repository.unit_of_work() as uow:
        link = uow.customer_for_user("user-flow")
        record = uow.get_checkout(start.session_id)
    assert link is not None and link.customer_id.startswith("cus_")
    assert record is not None and record.user_id == "user-flow" and record.plan_key == "pro"
    assert record.customer_id == link.customer_id


def test_start_then_confirm_checkout_over_the_sdk_gateway(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    # Synthetic: a Checkout is completed in a browser, which a recording cannot do.
    billing = _billing(gateway)
    checkout, repository = billing.checkout, billing.repository
    with cassettes.use("flow_confirm_checkout", synthetic=True) as cassette:
        start = checkout.start_checkout(**START)
        confirmation = checkout.confirm_checkout(start.session_id, "user-flow")
    # catalog + customer + session, then one retrieve (subscription expanded) to confirm
    assert cassettes.requests_made(cassette) == 4
    assert confirmation.is_complete
    assert confirmation.plan_key == "pro"
    assert confirmation.subscription_status is SubscriptionStatus.ACTIVE
    assert confirmation.subscription_id is not None
    with repository.unit_of_work() as uow:
        stored = uow.get_subscription(confirmation.subscription_id)
        record = uow.get_checkout(start.session_id)
    assert stored is not None and stored.user_id == "user-flow" and stored.plan_key == "pro"
    assert record is not None and record.status == "complete"


def _subscription_event(world: dict[str, Any], status: str, created: int) -> dict[str, Any]:
    recorded = world["recorded"]
    obj = copy.deepcopy(SUBSCRIPTION)
    obj.update(
        id=recorded["subscription_id"],
        customer=recorded["customer_id"],
        status=status,
        cancel_at=None,
        canceled_at=None,
        ended_at=None,
        cancel_at_period_end=False,
        metadata={"user_id": "billingkit-world"},
    )
    item = obj["items"]["data"][0]
    item["price"] = dict(item["price"], id=recorded["prices"]["billingkit_test_pro_month"])
    return build_event("customer.subscription.updated", obj, created=created)


def test_same_second_webhook_tie_refetches_the_subscription_through_the_sdk(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    billing = _billing(gateway)
    repository, processor = billing.repository, billing.webhooks
    recorded = world["recorded"]
    with repository.unit_of_work() as uow:
        uow.link_customer(
            CustomerLink(user_id="billingkit-world", customer_id=recorded["customer_id"])
        )
    second = int(NOW.timestamp()) - 10
    signed_at = int(NOW.timestamp())
    active = signed_delivery(
        _subscription_event(world, "active", second), SECRET, timestamp=signed_at
    )
    past_due = signed_delivery(
        _subscription_event(world, "past_due", second), SECRET, timestamp=signed_at
    )

    with cassettes.use("flow_webhook_tie_refetch") as cassette:
        first = processor.handle(active.payload, active.signature)
        tied = processor.handle(past_due.payload, past_due.signature)
    # the catalog's one load (plan_key for the price) + the re-fetch on the tie
    assert cassettes.requests_made(cassette) == 2
    assert first.outcome is WebhookOutcome.PROCESSED
    assert tied.outcome is WebhookOutcome.PROCESSED
    with repository.unit_of_work() as uow:
        stored = uow.get_subscription(recorded["subscription_id"])
    # neither event's state: the state Stripe answered when asked (the seeded trial)
    assert stored is not None
    assert stored.status is SubscriptionStatus.TRIALING
    assert stored.plan_key == "pro"
    assert stored.user_id == "billingkit-world"
