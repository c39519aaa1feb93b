"""The plan catalog: the app's plans joined with their live Stripe prices.

Prices are fetched with **one** ``StripeGateway.list_prices`` call for the whole catalog and
cached for ``BillingConfig.price_cache_ttl_seconds``. When Stripe cannot be reached after a
first good load, the last good prices are served with ``Plan.stale`` set; only a catalog that
never loaded raises ``PricesUnavailableError``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from billingkit.config import BillingConfig
from billingkit.domain import Interval, Plan, PlanDefinition, Price
from billingkit.errors import (
    ConfigurationError,
    GatewayError,
    PricesUnavailableError,
    UnknownPlanError,
)
from billingkit.ports import Clock, StripeGateway, require_aware_clock, system_clock

__all__ = ["PlanCatalog"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Snapshot:
    """One load of the catalog: immutable, swapped in whole so readers never lock."""

    #: Every plan (free ones included), keyed by plan key.
    plans: Mapping[str, Plan]
    #: Every price id the load saw (active or not) -> plan key.
    plan_by_price: Mapping[str, str]
    loaded_at: datetime
    #: Earliest time a fresh load may be attempted (TTL, or back-off after a failure).
    refresh_at: datetime


class PlanCatalog:
    """The app's plans with their live Stripe prices, cached and safe to share across threads.

    Args:
        config: the billing configuration (plans, price cache TTL).
        gateway: where prices come from.
        clock: current time, injected so tests can move it.
        failure_backoff_seconds: after a failed load, how long to wait before calling Stripe
            again. In the meantime the last good prices are served (``stale=True``), or
            ``PricesUnavailableError`` is raised if there are none, without a call. This
            keeps a Stripe outage from costing one failing call per request. ``0`` retries on
            every read.

    Free plans (no price) never need Stripe: a catalog with only free plans makes no call.
    """

    def __init__(
        self,
        config: BillingConfig,
        *,
        gateway: StripeGateway,
        clock: Clock = system_clock,
        failure_backoff_seconds: float = 15.0,
    ) -> None:
        if failure_backoff_seconds < 0:
            raise ConfigurationError("failure_backoff_seconds must not be negative")
        self._gateway = gateway
        self._clock = require_aware_clock(clock)
        self._ttl = timedelta(seconds=config.price_cache_ttl_seconds)
        self._backoff = timedelta(seconds=failure_backoff_seconds)
        self._definitions: dict[str, PlanDefinition] = {
            plan.key: plan for plan in sorted(config.plans, key=lambda plan: (plan.order, plan.key))
        }
        self._configured_ids: dict[str, str] = {}
        self._configured_keys: dict[str, str] = {}
        for plan in self._definitions.values():
            for ref in plan.prices.values():
                target, value = (
                    (self._configured_ids, ref.price_id)
                    if ref.price_id is not None
                    else (self._configured_keys, ref.lookup_key)
                )
                assert value is not None  # PriceRef guarantees one of the two
                target[value] = plan.key  # one plan per price: BillingConfig checked it
        self._free_plans = {
            key: Plan(definition=plan) for key, plan in self._definitions.items() if plan.is_free
        }
        #: Held while calling Stripe: concurrent cold callers wait for one load.
        self._load_lock = threading.Lock()
        #: Guards swapping the snapshot and the invalidation generation (never held on I/O).
        self._swap_lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        #: Bumped by invalidate(); a load started under an older generation is not kept fresh.
        self._generation = 0
        #: The last cold-load failure and when to call Stripe again.
        self._cold_failure: tuple[GatewayError, datetime] | None = None

    # ------------------------------------------------------------------------------ reading

    def plans(self) -> list[Plan]:
        """Every plan, sorted by ``order`` then key, with live prices (one cached call)."""
        if not self._needs_prices():
            return [self._free_plans[key] for key in self._definitions]
        plans = self._current().plans
        return [plans[key] for key in self._definitions]

    def plan(self, key: str) -> Plan:
        """The plan with ``key`` and its live prices; ``UnknownPlanError`` if none."""
        definition = self._definition(key)
        if definition.is_free:
            return self._free_plans[key]
        return self._current().plans[key]

    def price_for(self, plan_key: str, interval: Interval | str) -> Price:
        """The active Stripe price to charge for ``plan_key`` billed every ``interval``.

        Raises ``UnknownPlanError`` for an unknown plan, a plan without a price for that
        interval (free plans have none), or a price missing or inactive in Stripe.
        """
        definition = self._definition(plan_key)
        wanted = _interval(interval, plan_key)
        if wanted not in definition.prices:
            offered = ", ".join(i.value for i in definition.prices) or "none: it is free"
            raise UnknownPlanError(
                f"plan {plan_key!r} has no {wanted.value!r} price (intervals: {offered})"
            )
        price = self._current().plans[plan_key].prices.get(wanted)
        if price is None:
            ref = definition.prices[wanted]
            raise UnknownPlanError(
                f"the {wanted.value!r} price of plan {plan_key!r} "
                f"({ref.price_id or 'lookup key ' + repr(ref.lookup_key)}) "
                "is missing or inactive in Stripe"
            )
        return price

    def plan_for_price(self, price_id: str) -> Plan:
        """The plan a Stripe price id belongs to; ``UnknownPlanError`` if none."""
        key = self.plan_key_for_price(price_id)
        if key is None:
            raise UnknownPlanError(
                f"no plan uses price {price_id!r}; known plans: {self._known_keys()}"
            )
        return self.plan(key)

    def plan_key_for_price(self, price_id: str, *, load: bool = True) -> str | None:
        """The key of the plan using ``price_id``, or ``None``.

        Configured price ids answer without any Stripe call. Prices configured by lookup key
        need the (cached) price list: it is loaded only when lookup keys are configured and
        ``load`` is true; with ``load=False`` only an already cached list is consulted, so the
        call never reaches Stripe. A load failure with nothing cached raises
        ``PricesUnavailableError`` (retryable).
        """
        key = self._configured_ids.get(price_id)
        if key is not None or not self._configured_keys:
            return key
        snapshot = self._current() if load else self._snapshot
        if snapshot is None:
            return None
        return snapshot.plan_by_price.get(price_id)

    def invalidate(self) -> None:
        """Forget the cached prices' freshness: the next read reloads them from Stripe.

        The last good prices stay as the fallback should that reload fail. Called by the
        webhook processor on ``price.*`` and ``product.*`` events.
        """
        with self._swap_lock:
            self._generation += 1
            snapshot = self._snapshot
            if snapshot is not None:
                self._snapshot = replace(snapshot, refresh_at=snapshot.loaded_at)

    # ------------------------------------------------------------------------------ loading

    def _definition(self, key: str) -> PlanDefinition:
        definition = self._definitions.get(key)
        if definition is None:
            raise UnknownPlanError(f"unknown plan {key!r}; known plans: {self._known_keys()}")
        return definition

    def _known_keys(self) -> str:
        return ", ".join(repr(key) for key in self._definitions) or "none configured"

    def _needs_prices(self) -> bool:
        return bool(self._configured_ids or self._configured_keys)

    def _current(self) -> _Snapshot:
        """A snapshot fit to serve, loading (once, whatever the number of callers) if due."""
        snapshot = self._snapshot
        if snapshot is not None and self._clock() < snapshot.refresh_at:
            return snapshot
        if snapshot is None:
            self._load_lock.acquire()
        elif not self._load_lock.acquire(blocking=False):
            return snapshot  # warm but due: another caller is refreshing, serve the cache
        try:
            snapshot = self._snapshot
            now = self._clock()
            if snapshot is not None and now < snapshot.refresh_at:
                return snapshot  # another caller loaded it while we waited
            if snapshot is None and self._cold_failure is not None:
                error, retry_at = self._cold_failure
                if now < retry_at:
                    raise _unavailable(error) from error
            return self._load(snapshot, now)
        finally:
            self._load_lock.release()

    def _load(self, previous: _Snapshot | None, now: datetime) -> _Snapshot:
        """Call Stripe once for every configured price; the caller holds the load lock."""
        generation = self._generation
        try:
            prices = self._gateway.list_prices(
                price_ids=list(self._configured_ids), lookup_keys=list(self._configured_keys)
            )
            # A reference without a price_/plan_ prefix is a lookup key or, when no price
            # has that key, the custom id of a legacy plan: those are asked for by id, in a
            # second call made only when some reference matched nothing.
            seen = {price.id for price in prices} | {price.lookup_key for price in prices}
            unmatched = [key for key in self._configured_keys if key not in seen]
            if unmatched:
                prices = [*prices, *self._gateway.list_prices(price_ids=unmatched)]
        except GatewayError as error:
            if previous is None:
                self._cold_failure = (error, now + self._backoff)
                logger.warning("loading Stripe prices failed (nothing cached): %r", error)
                raise _unavailable(error) from error
            logger.warning("loading Stripe prices failed; serving stale prices: %r", error)
            stale = replace(
                previous,
                plans={key: _mark_stale(plan) for key, plan in previous.plans.items()},
                refresh_at=now + self._backoff,
            )
            self._store(stale, generation)
            return stale
        self._cold_failure = None
        snapshot = self._build(prices, now)
        self._store(snapshot, generation)
        return snapshot

    def _store(self, snapshot: _Snapshot, generation: int) -> None:
        with self._swap_lock:
            if generation != self._generation:
                # invalidate() ran while Stripe was being called: serve this load once, but
                # let the next read fetch again.
                snapshot = replace(snapshot, refresh_at=snapshot.loaded_at)
            self._snapshot = snapshot

    def _build(self, prices: Iterable[Price], now: datetime) -> _Snapshot:
        by_id: dict[str, Price] = {}
        by_lookup_key: dict[str, Price] = {}
        for price in prices:
            by_id[price.id] = price
            if price.lookup_key is not None:
                by_lookup_key[price.lookup_key] = price
        plans: dict[str, Plan] = {}
        plan_by_price: dict[str, str] = dict(self._configured_ids)
        for key, definition in self._definitions.items():
            live: dict[Interval, Price] = {}
            for interval, ref in definition.prices.items():
                found = (
                    by_id.get(ref.price_id)
                    if ref.price_id is not None
                    else by_lookup_key.get(ref.lookup_key or "") or by_id.get(ref.lookup_key or "")
                )
                if found is None:
                    logger.warning("plan %r: %s price %s not in Stripe", key, interval.value, ref)
                    continue
                plan_by_price[found.id] = key
                if not found.active or found.interval is not interval:
                    # Never sell an archived price, nor a yearly one labelled monthly.
                    logger.warning(
                        "plan %r: %s price %s is not sellable (active=%s, bills every %s)",
                        key,
                        interval.value,
                        found.id,
                        found.active,
                        found.interval.value,
                    )
                    continue
                live[interval] = found
            plans[key] = Plan(definition=definition, prices=live)
        return _Snapshot(
            plans=plans, plan_by_price=plan_by_price, loaded_at=now, refresh_at=now + self._ttl
        )


def _interval(value: Interval | str, plan_key: str) -> Interval:
    try:
        return Interval(value)
    except ValueError:
        known = ", ".join(i.value for i in Interval)
        raise UnknownPlanError(
            f"no interval {value!r} for plan {plan_key!r}; intervals are: {known}"
        ) from None


def _unavailable(error: GatewayError) -> PricesUnavailableError:
    return PricesUnavailableError(
        f"Stripe prices could not be loaded and none were loaded before ({type(error).__name__});"
        " retry later"
    )


def _mark_stale(plan: Plan) -> Plan:
    if plan.is_free or plan.stale:
        return plan
    return plan.model_copy(update={"stale": True})
