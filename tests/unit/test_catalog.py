from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from billingkit.config import BillingConfig
from billingkit.domain import Interval, Plan, PlanDefinition, Price, PriceRef
from billingkit.errors import (
    ConfigurationError,
    GatewayConnectionError,
    GatewayServerError,
    PricesUnavailableError,
    UnknownPlanError,
)
from billingkit.services.catalog import PlanCatalog
from billingkit.testing import FakeStripeGateway

TTL = 300


class Gateway(FakeStripeGateway):
    """The fake Stripe, recording list_prices arguments and running an optional hook first."""

    def __init__(self) -> None:
        super().__init__(webhook_secret="whsec_catalog_tests")
        self.list_args: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        self.before_list: Callable[[], None] | None = None

    def list_prices(
        self, *, price_ids: Sequence[str] = (), lookup_keys: Sequence[str] = ()
    ) -> list[Price]:
        self.list_args.append((tuple(price_ids), tuple(lookup_keys)))
        if self.before_list is not None:
            self.before_list()
        return super().list_prices(price_ids=price_ids, lookup_keys=lookup_keys)

    def tick(self, seconds: float) -> None:
        self.advance(timedelta(seconds=seconds))


PLANS = (
    PlanDefinition(key="team", name="Team", order=2, prices={
        "month": PriceRef(lookup_key="team_monthly"), "year": "price_teamY"}),
    PlanDefinition(key="free", name="Free", order=0, limits={"projects": 1}),
    PlanDefinition(key="pro", name="Pro", order=1, prices={
        "month": "price_proM", "year": PriceRef(lookup_key="pro_yearly")}, features=("exports",)),
    PlanDefinition(key="japan", name="Japan", order=1, prices={"month": "price_jpM"}),
)  # fmt: skip


def seed(gateway: Gateway) -> None:
    gateway.add_price(price_id="price_proM", amount=1500, interval="month", product_name="Pro")
    gateway.add_price(price_id="price_proY", amount=15000, interval="year", lookup_key="pro_yearly")
    gateway.add_price(
        price_id="price_teamM", amount=4900, interval="month", lookup_key="team_monthly"
    )
    gateway.add_price(price_id="price_teamY", amount=None, tiered=True, interval="year")
    gateway.add_price(price_id="price_jpM", amount=980, currency="jpy", interval="month")
    gateway.add_price(price_id="price_other", amount=1, interval="month", lookup_key="unrelated")


def move_pro_yearly(gateway: Gateway) -> None:
    """Transfer the ``pro_yearly`` lookup key to a new price, as Stripe lets you."""
    gateway.update_price("price_proY", lookup_key=None)
    gateway.add_price(
        price_id="price_proY2", amount=12000, interval="year", lookup_key="pro_yearly"
    )


@pytest.fixture
def gateway() -> Gateway:
    gateway = Gateway()
    seed(gateway)
    return gateway


def make_catalog(
    gateway: Gateway,
    plans: Sequence[PlanDefinition] = PLANS,
    ttl: int = TTL,
    **options: Any,
) -> PlanCatalog:
    config = BillingConfig(
        plans=plans,
        free_plan="free" if any(p.key == "free" for p in plans) else None,
        price_cache_ttl_seconds=ttl,
    )
    return PlanCatalog(config, gateway=gateway, clock=gateway.now, **options)


@pytest.fixture
def catalog(gateway: Gateway) -> PlanCatalog:
    return make_catalog(gateway)


def amounts(plans: Sequence[Plan]) -> Mapping[str, Mapping[str, str | None]]:
    return {
        plan.key: {
            interval.value: (str(p.amount) if p.amount else None)
            for interval, p in plan.prices.items()
        }
        for plan in plans
    }


# ------------------------------------------------------------------------------ call budget


def test_whole_catalog_costs_one_call_cold_and_zero_warm(
    catalog: PlanCatalog, gateway: Gateway
) -> None:
    plans = catalog.plans()
    assert gateway.calls["list_prices"] == 1
    assert [p.key for p in plans] == ["free", "japan", "pro", "team"]
    assert amounts(plans) == {
        "free": {},
        "japan": {"month": "980 JPY"},
        "pro": {"month": "15.00 USD", "year": "150.00 USD"},
        "team": {"month": "49.00 USD", "year": None},
    }
    # the one call asked for every configured id and lookup key at once
    ids, keys = gateway.list_args[0]
    assert sorted(ids) == ["price_jpM", "price_proM", "price_teamY"]
    assert sorted(keys) == ["pro_yearly", "team_monthly"]

    for _ in range(3):
        catalog.plans()
        for key in ("free", "pro", "team", "japan"):
            catalog.plan(key)
        for key, interval in (("pro", "month"), ("pro", Interval.YEAR), ("team", "month")):
            catalog.price_for(key, interval)
        catalog.plan_for_price("price_teamM")
        catalog.plan_key_for_price("price_proY")
    assert gateway.calls["list_prices"] == 1
    assert not any(p.stale for p in catalog.plans())


def test_a_catalog_of_free_plans_never_calls_stripe(gateway: Gateway) -> None:
    free_only = (PlanDefinition(key="free", name="Free"), PlanDefinition(key="oss", name="OSS"))
    catalog = make_catalog(gateway, plans=free_only)
    assert [p.key for p in catalog.plans()] == ["free", "oss"]
    assert catalog.plan("oss").prices == {}
    assert catalog.plan_key_for_price("price_proM") is None
    with pytest.raises(UnknownPlanError):
        catalog.price_for("free", "month")
    assert gateway.calls["list_prices"] == 0


def test_free_plans_are_served_without_a_call_in_a_paid_catalog(
    catalog: PlanCatalog, gateway: Gateway
) -> None:
    assert catalog.plan("free").is_free
    with pytest.raises(UnknownPlanError, match="free"):
        catalog.price_for("free", "month")
    assert gateway.calls["list_prices"] == 0


def test_plan_key_for_price_needs_no_call_with_price_ids_only(gateway: Gateway) -> None:
    by_id = (PlanDefinition(key="pro", name="Pro", prices={"month": "price_proM"}),)
    catalog = make_catalog(gateway, plans=by_id)
    assert catalog.plan_key_for_price("price_proM") == "pro"
    assert catalog.plan_key_for_price("price_unknown") is None
    assert gateway.calls["list_prices"] == 0


def test_plan_key_for_price_loads_once_for_lookup_keys(
    catalog: PlanCatalog, gateway: Gateway
) -> None:
    assert catalog.plan_key_for_price("price_teamY") == "team"  # configured id: no call
    assert catalog.plan_key_for_price("price_proY", load=False) is None  # nothing cached
    assert gateway.calls["list_prices"] == 0
    assert catalog.plan_key_for_price("price_proY") == "pro"
    assert catalog.plan_key_for_price("price_teamM") == "team"
    assert catalog.plan_key_for_price("price_other") is None
    assert catalog.plan_key_for_price("price_proY", load=False) == "pro"
    assert gateway.calls["list_prices"] == 1


# ------------------------------------------------------------------------- cache and staleness


def test_ttl_expiry_reloads(catalog: PlanCatalog, gateway: Gateway) -> None:
    catalog.plans()
    move_pro_yearly(gateway)
    gateway.tick(TTL - 1)
    assert catalog.price_for("pro", "year").id == "price_proY"  # cached
    assert gateway.calls["list_prices"] == 1
    gateway.tick(1)
    assert catalog.price_for("pro", "year").id == "price_proY2"
    assert gateway.calls["list_prices"] == 2


def test_zero_ttl_reloads_on_every_read(gateway: Gateway) -> None:
    catalog = make_catalog(gateway, ttl=0)
    catalog.plans()
    catalog.plans()
    assert gateway.calls["list_prices"] == 2


def test_invalidate_reloads_on_next_read(catalog: PlanCatalog, gateway: Gateway) -> None:
    assert catalog.price_for("pro", "year").id == "price_proY"
    # the lookup key moves to a new price in Stripe
    move_pro_yearly(gateway)
    catalog.invalidate()
    assert gateway.calls["list_prices"] == 1  # invalidate itself does not call
    assert catalog.price_for("pro", "year").id == "price_proY2"
    assert catalog.plan_for_price("price_proY2").key == "pro"
    assert gateway.calls["list_prices"] == 2
    catalog.plans()
    assert gateway.calls["list_prices"] == 2


def test_invalidate_during_a_load_makes_the_next_read_reload(gateway: Gateway) -> None:
    catalog = make_catalog(gateway)
    gateway.before_list = catalog.invalidate  # a price.updated webhook arrives mid-call
    catalog.plans()
    gateway.before_list = None
    catalog.plans()
    assert gateway.calls["list_prices"] == 2
    catalog.plans()
    assert gateway.calls["list_prices"] == 2


def test_serves_stale_prices_when_stripe_fails_after_a_first_load(
    catalog: PlanCatalog, gateway: Gateway
) -> None:
    fresh = amounts(catalog.plans())
    gateway.tick(TTL)
    gateway.fail_next("list_prices", GatewayServerError("503", retryable=True, http_status=503))
    plans = catalog.plans()
    assert gateway.calls["list_prices"] == 2
    assert amounts(plans) == fresh
    assert {p.key: p.stale for p in plans} == {
        "free": False, "japan": True, "pro": True, "team": True,
    }  # fmt: skip
    assert catalog.plan("pro").stale
    assert catalog.price_for("pro", "month").id == "price_proM"
    assert catalog.plan_for_price("price_proY").stale


def test_failure_backoff_then_recovery(gateway: Gateway) -> None:
    catalog = make_catalog(gateway, failure_backoff_seconds=30)
    catalog.plans()
    gateway.tick(TTL)
    gateway.fail_next("list_prices", GatewayConnectionError("down", retryable=True))
    assert catalog.plan("pro").stale
    gateway.tick(29)
    assert catalog.plan("pro").stale  # within the back-off: no call
    assert gateway.calls["list_prices"] == 2
    gateway.tick(1)
    assert not catalog.plan("pro").stale  # retried, Stripe is back
    assert gateway.calls["list_prices"] == 3
    gateway.tick(TTL - 1)
    catalog.plans()
    assert gateway.calls["list_prices"] == 3  # a full TTL from the recovery


def test_zero_backoff_retries_on_every_read(gateway: Gateway) -> None:
    catalog = make_catalog(gateway, failure_backoff_seconds=0)
    catalog.plans()
    gateway.tick(TTL)
    gateway.fail_next("list_prices", GatewayConnectionError("down", retryable=True))
    assert catalog.plan("pro").stale
    assert not catalog.plan("pro").stale
    assert gateway.calls["list_prices"] == 3


def test_never_loaded_and_failing_raises_prices_unavailable(gateway: Gateway) -> None:
    catalog = make_catalog(gateway, failure_backoff_seconds=10)
    cause = GatewayServerError("Stripe 500", retryable=True, http_status=500)
    gateway.fail_next("list_prices", cause)
    with pytest.raises(PricesUnavailableError) as caught:
        catalog.plans()
    assert caught.value.__cause__ is cause
    assert caught.value.retryable
    # during the back-off: the same error, no call
    with pytest.raises(PricesUnavailableError) as again:
        catalog.price_for("pro", "month")
    assert again.value.__cause__ is cause
    assert gateway.calls["list_prices"] == 1
    # free plans still answer
    assert catalog.plan("free").is_free
    gateway.tick(10)
    assert catalog.price_for("pro", "month").unit_amount == 1500
    assert gateway.calls["list_prices"] == 2


def test_non_gateway_errors_propagate(gateway: Gateway) -> None:
    catalog = make_catalog(gateway)

    def explode() -> None:
        raise RuntimeError("bug")

    gateway.before_list = explode
    with pytest.raises(RuntimeError):
        catalog.plans()


# ---------------------------------------------------------------------------- lookups


def test_unknown_plan_key_lists_the_known_ones(catalog: PlanCatalog) -> None:
    with pytest.raises(UnknownPlanError, match=r"'gold'.*'free', 'japan', 'pro', 'team'") as caught:
        catalog.plan("gold")
    assert isinstance(caught.value, LookupError)
    with pytest.raises(LookupError):
        catalog.price_for("gold", "month")


def test_price_for_refuses_intervals_the_plan_does_not_sell(catalog: PlanCatalog) -> None:
    with pytest.raises(UnknownPlanError, match=r"'week'.*month"):
        catalog.price_for("japan", "week")
    with pytest.raises(UnknownPlanError, match="fortnight"):
        catalog.price_for("pro", "fortnight")


def test_missing_inactive_or_mislabelled_prices_are_not_sold(gateway: Gateway) -> None:
    plans = (
        PlanDefinition(key="gone", name="Gone", prices={"month": "price_gone"}),
        PlanDefinition(key="old", name="Old", prices={"month": "price_old", "year": "price_oldY"}),
        PlanDefinition(key="odd", name="Odd", prices={"month": "price_oddY"}),
    )
    gateway.add_price(price_id="price_old", amount=900, interval="month", active=False)
    gateway.add_price(price_id="price_oldY", amount=9000, interval="year")
    gateway.add_price(price_id="price_oddY", amount=9000, interval="year")
    catalog = make_catalog(gateway, plans=plans)
    with pytest.raises(UnknownPlanError, match="missing or inactive"):
        catalog.price_for("gone", "month")
    with pytest.raises(UnknownPlanError, match="missing or inactive"):
        catalog.price_for("old", "month")
    with pytest.raises(UnknownPlanError, match="missing or inactive"):
        catalog.price_for("odd", "month")
    assert set(catalog.plan("old").prices) == {Interval.YEAR}
    assert catalog.plan("gone").prices == {}
    # an existing subscriber on the archived price still maps to the plan
    assert catalog.plan_for_price("price_old").key == "old"
    assert gateway.calls["list_prices"] == 1


def test_plan_for_price(catalog: PlanCatalog) -> None:
    assert catalog.plan_for_price("price_proM").key == "pro"
    assert catalog.plan_for_price("price_proY").key == "pro"  # via lookup key
    with pytest.raises(UnknownPlanError, match="price_other"):
        catalog.plan_for_price("price_other")


def test_plans_sort_by_order_then_key(gateway: Gateway) -> None:
    plans = (
        PlanDefinition(key="b", name="B", order=5),
        PlanDefinition(key="a", name="A", order=5),
        PlanDefinition(key="z", name="Z", order=-1),
    )
    assert [p.key for p in make_catalog(gateway, plans=plans).plans()] == ["z", "a", "b"]


def test_a_price_shared_by_two_plans_is_a_configuration_error(gateway: Gateway) -> None:
    plans = (
        PlanDefinition(key="a", name="A", prices={"month": "price_x"}),
        PlanDefinition(key="b", name="B", prices={"year": "price_x"}),
    )
    with pytest.raises(ConfigurationError, match="price_x"):
        make_catalog(gateway, plans=plans)
    with pytest.raises(ConfigurationError):
        make_catalog(gateway, failure_backoff_seconds=-1)


# ---------------------------------------------------------------------------- concurrency


def test_concurrent_cold_callers_cause_one_load(gateway: Gateway) -> None:
    catalog = make_catalog(gateway)
    threads_in = threading.Semaphore(0)
    all_in = threading.Event()

    def slow_list() -> None:
        # hold the load open until every thread has asked for plans
        all_in.wait(timeout=5)

    gateway.before_list = slow_list
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        threads_in.release()
        try:
            results.append([p.key for p in catalog.plans()])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for _ in threads:
        threads_in.acquire(timeout=5)
    all_in.set()
    for thread in threads:
        thread.join(timeout=10)
    assert not errors
    assert len(results) == 8
    assert all(keys == ["free", "japan", "pro", "team"] for keys in results)
    assert gateway.calls["list_prices"] == 1


def test_warm_but_due_readers_are_served_while_one_refreshes(
    catalog: PlanCatalog, gateway: Gateway
) -> None:
    catalog.plans()
    gateway.tick(TTL)
    entered, release = threading.Event(), threading.Event()

    def blocking_list() -> None:
        entered.set()
        release.wait(timeout=5)

    gateway.before_list = blocking_list
    move_pro_yearly(gateway)
    refresher = threading.Thread(target=catalog.plans)
    refresher.start()
    assert entered.wait(timeout=5)
    # the refresh is in flight: this read is answered from the cache, without waiting
    assert catalog.price_for("pro", "year").id == "price_proY"
    release.set()
    refresher.join(timeout=5)
    gateway.before_list = None
    assert catalog.price_for("pro", "year").id == "price_proY2"
    assert gateway.calls["list_prices"] == 2


def test_a_naive_clock_is_refused_when_the_catalog_is_built(gateway: Gateway) -> None:
    config = BillingConfig(plans=PLANS, free_plan="free")
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        PlanCatalog(config, gateway=gateway, clock=lambda: datetime(2026, 1, 1, 12, 0))
    assert gateway.total_calls == 0


# ------------------------------------------------------------------------------ issue 11 item 6


def test_an_unprefixed_reference_no_lookup_key_matches_is_taken_as_a_legacy_id(
    gateway: Gateway,
) -> None:
    # Legacy Stripe plans often have custom ids without a prefix ("gold-monthly").
    gateway.add_price(price_id="gold-monthly", amount=900, interval="month", product_name="Gold")
    plans = (
        *PLANS,
        PlanDefinition(key="gold", name="Gold", order=3, prices={"month": "gold-monthly"}),
    )
    catalog = make_catalog(gateway, plans)
    assert catalog.plan("gold").definition.prices[Interval.MONTH] == PriceRef(
        lookup_key="gold-monthly"
    )
    assert catalog.price_for("gold", "month").id == "gold-monthly"
    assert catalog.plan_key_for_price("gold-monthly") == "gold"
    # no price has the lookup key "gold-monthly": one more call asks for it (only) by id
    assert gateway.list_args[1:] == [(("gold-monthly",), ())]
    catalog.plans()
    assert gateway.calls["list_prices"] == 2  # cached like the rest


def test_a_lookup_key_wins_over_a_price_whose_id_is_the_same_string(gateway: Gateway) -> None:
    gateway.add_price(price_id="team_monthly", amount=1, interval="month")
    catalog = make_catalog(gateway)
    assert catalog.price_for("team", "month").id == "price_teamM"
    assert catalog.plan_key_for_price("price_teamM") == "team"
    assert catalog.plan_key_for_price("team_monthly") is None
