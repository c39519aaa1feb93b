from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from billingkit.adapters.memory import InMemoryRepository
from billingkit.config import AccessPolicy, BillingConfig
from billingkit.domain import (
    CustomerLink,
    PlanDefinition,
    PriceRef,
    Subscription,
    SubscriptionStatus,
)
from billingkit.domain.access import grants_access
from billingkit.errors import ConfigurationError, InvalidInputError
from billingkit.services.catalog import PlanCatalog
from billingkit.services.customers import BillingDetails, CustomerDetails
from billingkit.testing import FakeStripeGateway

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
S = SubscriptionStatus


FREE = PlanDefinition(key="free", name="Free", features=("basic",), limits={"projects": 1})
PRO = PlanDefinition(
    key="pro",
    name="Pro",
    prices={"month": "price_proM", "year": PriceRef(lookup_key="pro_yearly")},
    features=("basic", "exports"),
    limits={"projects": None, "seats": 5},
)

ADDON = PlanDefinition(
    key="addon",
    name="Analytics add-on",
    prices={"month": "price_addonM"},
    features=("analytics",),
    limits={"seats": 10, "dashboards": 3},
)
TEAM = PlanDefinition(
    key="team",
    name="Team",
    prices={"month": "price_teamM"},
    features=("exports", "sso"),
    limits={"projects": 50, "seats": None},
)


class World:
    def __init__(
        self,
        *,
        free_plan: str | None = "free",
        access: AccessPolicy | None = None,
        multiple: bool = False,
    ):
        self.now = NOW
        self.config = BillingConfig(
            plans=(FREE, PRO, ADDON, TEAM),
            free_plan=free_plan,
            access=access or AccessPolicy(),
            allow_multiple_subscriptions=multiple,
        )
        self.gateway = FakeStripeGateway(webhook_secret="whsec_details_tests")
        self.gateway.add_price(
            price_id="price_proY", amount=15000, interval="year", lookup_key="pro_yearly"
        )
        self.repository = InMemoryRepository()
        self.catalog = PlanCatalog(self.config, gateway=self.gateway, clock=lambda: self.now)
        self.details = CustomerDetails(
            self.config, repository=self.repository, catalog=self.catalog, clock=lambda: self.now
        )

    def subscribe(
        self, sub_id: str = "sub_1", status: S = S.ACTIVE, *, days_ago: int = 5, **fields: Any
    ) -> Subscription:
        fields.setdefault("user_id", "u1")
        fields.setdefault("plan_key", "pro")
        fields.setdefault("price_id", "price_proM")
        sub = Subscription(
            id=sub_id,
            customer_id=fields.pop("customer_id", "cus_1"),
            status=status,
            created=NOW - timedelta(days=days_ago),
            current_period_start=fields.pop("current_period_start", NOW - timedelta(days=days_ago)),
            current_period_end=fields.pop("current_period_end", NOW + timedelta(days=25)),
            **fields,
        )
        with self.repository.unit_of_work() as uow:
            uow.save_subscription(sub)
        return sub

    def for_user(self, user_id: str = "u1") -> BillingDetails:
        return self.details.for_user(user_id)


@pytest.fixture
def world() -> World:
    return World()


def assert_no_stripe_call(world: World) -> None:
    assert world.gateway.total_calls == 0


# --------------------------------------------------------------------------- status x policy

DEFAULT_ACCESS = {
    S.ACTIVE: True,
    S.TRIALING: True,
    S.PAST_DUE: False,
    S.UNPAID: False,
    S.PAUSED: False,
    S.INCOMPLETE: False,
}


@pytest.mark.parametrize("status", list(DEFAULT_ACCESS), ids=lambda s: s.value)
def test_live_status_under_default_policy(world: World, status: S) -> None:
    world.subscribe(status=status)
    details = world.for_user()
    assert details.status is status
    assert details.subscription_id == "sub_1"
    assert details.plan_key == "pro"
    assert details.plan == PRO
    assert details.has_access is DEFAULT_ACCESS[status]
    assert details.has_feature("exports") is DEFAULT_ACCESS[status]
    assert_no_stripe_call(world)


@pytest.mark.parametrize("status", [S.CANCELED, S.INCOMPLETE_EXPIRED], ids=lambda s: s.value)
def test_terminal_status_falls_back_to_the_free_plan(world: World, status: S) -> None:
    world.subscribe(status=status, canceled_at=NOW - timedelta(days=1))
    details = world.for_user()
    assert (details.plan_key, details.status, details.subscription_id) == ("free", None, None)
    assert details.has_access
    assert details.has_feature("basic") and not details.has_feature("exports")
    assert_no_stripe_call(world)


CUSTOM = AccessPolicy(granting_statuses=frozenset({S.ACTIVE, S.PAST_DUE, S.PAUSED}))


@pytest.mark.parametrize("status", list(S), ids=lambda s: s.value)
def test_every_status_under_a_custom_policy(status: S) -> None:
    world = World(access=CUSTOM)
    world.subscribe(status=status)
    details = world.for_user()
    if status.is_terminal:
        assert (details.plan_key, details.status, details.has_access) == ("free", None, True)
    else:
        assert details.status is status
        assert details.has_access is (status in {S.ACTIVE, S.PAST_DUE, S.PAUSED})
    assert_no_stripe_call(world)


# ------------------------------------------------------------------------------ grace days


@pytest.mark.parametrize(
    ("elapsed", "granted"),
    [
        (timedelta(0), True),
        (timedelta(days=3) - timedelta(seconds=1), True),
        (timedelta(days=3), False),
        (timedelta(days=30), False),
    ],
)
def test_past_due_grace_days_count_from_the_period_start(elapsed: timedelta, granted: bool) -> None:
    world = World(access=AccessPolicy(past_due_grace_days=3))
    world.subscribe(status=S.PAST_DUE, current_period_start=NOW)
    world.now = NOW + elapsed
    assert world.for_user().has_access is granted


def test_past_due_without_a_period_start_gets_no_grace() -> None:
    world = World(access=AccessPolicy(past_due_grace_days=3))
    world.subscribe(status=S.PAST_DUE, current_period_start=None)
    assert not world.for_user().has_access


def test_grants_access_is_usable_on_its_own() -> None:
    sub = Subscription(
        id="sub_1", customer_id="cus_1", status=S.PAST_DUE, created=NOW, current_period_start=NOW
    )
    policy = AccessPolicy(past_due_grace_days=1)
    assert grants_access(sub, policy, NOW + timedelta(hours=23))
    assert not grants_access(sub, policy, NOW + timedelta(hours=24))
    assert not grants_access(sub, AccessPolicy(), NOW)


# ------------------------------------------------------------------------------ free plan


def test_no_subscription_is_the_free_plan(world: World) -> None:
    details = world.for_user("nobody")
    assert details == BillingDetails(user_id="nobody", plan_key="free", plan=FREE, has_access=True)
    assert not details.is_subscribed
    assert details.limit("projects") == 1
    assert details.limit("seats") == 0
    assert details.limit("seats", default=None) is None
    assert_no_stripe_call(world)


def test_no_subscription_and_no_free_plan_is_no_plan_without_access() -> None:
    world = World(free_plan=None)
    details = world.for_user()
    assert (details.plan_key, details.plan, details.has_access) == (None, None, False)
    assert not details.has_feature("basic")
    assert details.limit("projects") == 0
    world.subscribe(status=S.CANCELED)
    assert world.for_user().plan is None


# ------------------------------------------------------------------------- several subscriptions


def test_an_older_granting_subscription_wins_over_a_newer_lapsed_one(world: World) -> None:
    world.subscribe("sub_old", S.ACTIVE, days_ago=40)
    world.subscribe("sub_new", S.UNPAID, days_ago=2)
    details = world.for_user()
    assert (details.subscription_id, details.has_access) == ("sub_old", True)


def test_newest_granting_subscription_wins(world: World) -> None:
    world.subscribe("sub_a", S.ACTIVE, days_ago=40)
    world.subscribe("sub_b", S.TRIALING, days_ago=2, trial_end=NOW + timedelta(days=12))
    world.subscribe("sub_c", S.CANCELED, days_ago=1)
    details = world.for_user()
    assert details.subscription_id == "sub_b"
    assert details.trial_end == NOW + timedelta(days=12)


def test_without_a_granting_one_the_newest_live_subscription_is_reported(world: World) -> None:
    world.subscribe("sub_a", S.PAST_DUE, days_ago=40)
    world.subscribe("sub_b", S.UNPAID, days_ago=20)
    world.subscribe("sub_c", S.CANCELED, days_ago=1)
    details = world.for_user()
    assert (details.subscription_id, details.status, details.has_access) == (
        "sub_b", S.UNPAID, False
    )  # fmt: skip


def test_subscriptions_are_found_through_the_customer_link(world: World) -> None:
    with world.repository.unit_of_work() as uow:
        uow.link_customer(CustomerLink(user_id="u2", customer_id="cus_2"))
    world.subscribe(user_id=None, customer_id="cus_2")
    assert world.for_user("u2").subscription_id == "sub_1"
    assert world.for_user("u1").subscription_id is None


# ------------------------------------------------------------------------------ plan mapping


def test_details_copy_the_subscription_dates(world: World) -> None:
    cancel_at = NOW + timedelta(days=25)
    world.subscribe(cancel_at_period_end=True, cancel_at=cancel_at, current_period_end=cancel_at)
    details = world.for_user()
    assert details.cancel_at_period_end
    assert details.cancel_at == cancel_at
    assert details.current_period_end == cancel_at
    assert details.price_id == "price_proM"
    assert details.trial_end is None


def test_plan_from_a_configured_price_id_when_no_plan_key_is_stored(world: World) -> None:
    world.subscribe(plan_key=None, price_id="price_proM")
    details = world.for_user()
    assert (details.plan_key, details.plan) == ("pro", PRO)
    assert_no_stripe_call(world)


def test_plan_from_a_lookup_key_price_only_once_the_catalog_has_it(world: World) -> None:
    world.subscribe(plan_key=None, price_id="price_proY")
    details = world.for_user()
    assert (details.plan_key, details.plan, details.has_access) == (None, None, True)
    assert_no_stripe_call(world)
    world.catalog.plans()  # the app listed plans: prices are cached
    assert world.gateway.calls["list_prices"] == 1
    assert world.for_user().plan_key == "pro"
    assert world.gateway.calls["list_prices"] == 1


def test_a_plan_removed_from_the_config_still_reports_status_and_access(world: World) -> None:
    world.subscribe(plan_key="legacy", price_id="price_legacy")
    details = world.for_user()
    assert (details.plan_key, details.plan) == ("legacy", None)
    assert (details.status, details.has_access) == (S.ACTIVE, True)
    assert not details.has_feature("basic")
    assert details.limit("projects") == 0


def test_features_and_limits_follow_access(world: World) -> None:
    world.subscribe(status=S.ACTIVE)
    details = world.for_user()
    assert details.has_feature("exports") and not details.has_feature("sso")
    assert details.limit("projects") is None  # unlimited
    assert details.limit("seats") == 5
    assert details.limit("storage_gb", default=10) == 10
    lapsed = details.model_copy(update={"has_access": False})
    assert not lapsed.has_feature("exports")
    assert lapsed.limit("seats") == 0


def test_blank_user_id_is_refused(world: World) -> None:
    for bad in ("", "   "):
        with pytest.raises(InvalidInputError):
            world.details.for_user(bad)


def test_billing_details_is_frozen(world: World) -> None:
    details = world.for_user()
    with pytest.raises(ValidationError):
        details.has_access = False  # type: ignore[misc]


def test_a_naive_clock_is_refused_when_the_service_is_built(world: World) -> None:
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        CustomerDetails(
            world.config,
            repository=world.repository,
            catalog=world.catalog,
            clock=lambda: datetime(2026, 3, 10, 12, 0),
        )


# --------------------------------------------------------------------------- issue 11 item 6


def test_plan_problem_says_why_the_plan_is_none(world: World) -> None:
    assert world.for_user().plan_problem is None  # the free plan
    world.subscribe(plan_key=None, price_id="price_nobody_sells")
    details = world.for_user()
    assert details.plan is None and details.has_access
    assert details.plan_problem is not None and "price_nobody_sells" in details.plan_problem


def test_plan_problem_names_a_plan_removed_from_the_config(world: World) -> None:
    world.subscribe(plan_key="legacy", price_id="price_legacy")
    problem = world.for_user().plan_problem
    assert problem is not None and "'legacy'" in problem


def test_plan_problem_is_none_when_the_plan_is_known(world: World) -> None:
    world.subscribe()
    details = world.for_user()
    assert (details.plan, details.plan_problem) == (PRO, None)


def test_plan_problem_without_subscription_and_without_free_plan() -> None:
    world = World(free_plan=None)
    problem = world.details.for_user("u1").plan_problem
    assert problem is not None and "free plan" in problem


# ------------------------------------------------------------------ several subscriptions


def test_several_granting_subscriptions_combine_their_entitlements() -> None:
    world = World(multiple=True)
    world.subscribe("sub_pro", S.ACTIVE, days_ago=40)
    world.subscribe("sub_addon", S.ACTIVE, days_ago=10, plan_key="addon", price_id="price_addonM")
    details = world.for_user()
    assert details.subscription_id == "sub_addon"  # the newest granting one is described
    assert details.other_subscription_ids == ("sub_pro",)
    assert details.other_plans == (PRO,)
    assert details.features == {"basic", "exports", "analytics"}
    assert details.has_feature("exports") and details.has_feature("analytics")
    assert not details.has_feature("sso")
    assert details.limit("seats") == 10  # the larger of 5 and 10
    assert details.limit("projects") is None  # Pro's unlimited wins over the add-on's none
    assert details.limit("dashboards") == 3
    assert details.limit("storage", default=7) == 7
    assert_no_stripe_call(world)


def test_unlimited_wins_over_any_number_whatever_the_order() -> None:
    world = World(multiple=True)
    world.subscribe("sub_team", S.ACTIVE, days_ago=1, plan_key="team", price_id="price_teamM")
    world.subscribe("sub_addon", S.TRIALING, days_ago=3, plan_key="addon", price_id="price_addonM")
    details = world.for_user()
    assert details.subscription_id == "sub_team"
    assert details.limit("seats") is None
    assert details.limit("projects") == 50
    assert details.features == {"exports", "sso", "analytics"}


def test_lapsed_and_ended_subscriptions_add_nothing() -> None:
    world = World(multiple=True)
    world.subscribe("sub_pro", S.ACTIVE, days_ago=40)
    world.subscribe("sub_addon", S.PAST_DUE, days_ago=10, plan_key="addon", price_id="price_addonM")
    world.subscribe("sub_team", S.CANCELED, days_ago=5, plan_key="team", price_id="price_teamM")
    details = world.for_user()
    assert (details.subscription_id, details.other_subscription_ids) == ("sub_pro", ())
    assert details.features == {"basic", "exports"}
    assert details.limit("seats") == 5


def test_without_the_setting_only_the_newest_granting_subscription_counts(world: World) -> None:
    world.subscribe("sub_pro", S.ACTIVE, days_ago=40)
    world.subscribe("sub_addon", S.ACTIVE, days_ago=10, plan_key="addon", price_id="price_addonM")
    details = world.for_user()
    assert (details.subscription_id, details.other_plans) == ("sub_addon", ())
    assert not details.has_feature("exports")
    assert details.limit("seats") == 10


def test_a_granting_subscription_at_an_unknown_price_adds_no_plan() -> None:
    world = World(multiple=True)
    world.subscribe("sub_pro", S.ACTIVE, days_ago=40)
    world.subscribe("sub_odd", S.ACTIVE, days_ago=10, plan_key=None, price_id="price_odd")
    details = world.for_user()
    assert details.subscription_id == "sub_odd" and details.plan is None
    assert details.other_plans == (PRO,)
    assert details.has_feature("exports")  # the known plan still counts


def test_without_access_nothing_is_combined() -> None:
    world = World(multiple=True)
    world.subscribe("sub_pro", S.UNPAID, days_ago=40)
    world.subscribe("sub_addon", S.PAST_DUE, days_ago=10, plan_key="addon", price_id="price_addonM")
    details = world.for_user()
    assert not details.has_access and details.features == frozenset()
    assert details.limit("seats") == 0


def test_subscriptions_lists_each_one_newest_first_without_a_stripe_call() -> None:
    world = World(multiple=True)
    world.subscribe("sub_pro", S.ACTIVE, days_ago=40)
    world.subscribe("sub_addon", S.PAST_DUE, days_ago=10, plan_key="addon", price_id="price_addonM")
    world.subscribe("sub_team", S.CANCELED, days_ago=5, plan_key="team", price_id="price_teamM")
    listed = world.details.subscriptions("u1")
    assert [(d.subscription_id, d.plan_key, d.has_access) for d in listed] == [
        ("sub_addon", "addon", False),
        ("sub_pro", "pro", True),
    ]
    assert all(d.other_plans == () for d in listed)
    assert listed[1].has_feature("exports") and not listed[0].has_feature("analytics")
    everything = world.details.subscriptions("u1", include_ended=True)
    assert [d.subscription_id for d in everything] == ["sub_team", "sub_addon", "sub_pro"]
    assert everything[0].status is S.CANCELED and not everything[0].has_access
    assert world.details.subscriptions("someone-else") == []
    assert_no_stripe_call(world)
    with pytest.raises(InvalidInputError):
        world.details.subscriptions(" ")
