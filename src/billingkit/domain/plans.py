"""Plans as the app defines them, prices as Stripe knows them, and the two joined."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from billingkit.domain._base import Value
from billingkit.domain.money import CurrencyCode, Money

__all__ = ["Interval", "Plan", "PlanDefinition", "Price", "PriceRef"]

PlanKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class Interval(str, Enum):
    """How often a price is charged; ``ONE_TIME`` is a single purchase (payment mode)."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"
    ONE_TIME = "one_time"

    def __str__(self) -> str:
        return self.value


class PriceRef(Value):
    """Where a plan's price lives in Stripe: exactly one of a price id or a lookup key.

    Lookup keys let the app move to a new price without a deploy.
    """

    price_id: str | None = None
    lookup_key: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PriceRef:
        if (self.price_id is None) == (self.lookup_key is None):
            raise ValueError("give exactly one of price_id or lookup_key")
        return self

    @classmethod
    def parse(cls, value: str) -> PriceRef:
        """``"price_..."`` (or a legacy ``"plan_..."``) is an id; anything else a lookup key."""
        if value.startswith(("price_", "plan_")):
            return cls(price_id=value)
        return cls(lookup_key=value)


class PlanDefinition(Value):
    """A plan as the app sells it.

    ``prices`` maps an interval to a ``PriceRef`` (a plain string is read with
    ``PriceRef.parse``). A plan with no prices is free. ``limits`` maps a limit name to a
    number, ``None`` meaning unlimited.
    """

    key: PlanKey
    name: str
    description: str = ""
    order: int = 0
    prices: Mapping[Interval, PriceRef] = Field(default_factory=dict)
    features: tuple[str, ...] = ()
    limits: Mapping[str, int | None] = Field(default_factory=dict)

    @field_validator("prices", mode="before")
    @classmethod
    def _parse_refs(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: PriceRef.parse(v) if isinstance(v, str) else v for k, v in value.items()}
        return value

    @property
    def is_free(self) -> bool:
        """A plan without any Stripe price costs nothing and needs no checkout."""
        return not self.prices


class Price(Value):
    """A Stripe price with the fields billingkit needs (and its product's name)."""

    id: str
    product_id: str
    product_name: str | None = None
    lookup_key: str | None = None
    currency: CurrencyCode
    #: Per-unit amount in minor units; ``None`` for tiered or custom-amount prices.
    unit_amount: int | None
    interval: Interval
    interval_count: int = 1
    active: bool = True
    billing_scheme: Literal["per_unit", "tiered"] = "per_unit"
    livemode: bool = False
    #: ``metered``: billed in arrears from a Billing Meter's usage (no quantity at checkout).
    usage_type: Literal["licensed", "metered"] = "licensed"
    #: The meter (``mtr_...``) a metered price bills from, if Stripe named it.
    meter_id: str | None = None

    @property
    def amount(self) -> Money | None:
        """The per-unit price as ``Money``, or ``None`` when tiered."""
        if self.unit_amount is None:
            return None
        return Money(amount=self.unit_amount, currency=self.currency)

    @property
    def is_recurring(self) -> bool:
        """Whether this price bills on an interval (subscription mode)."""
        return self.interval is not Interval.ONE_TIME

    @property
    def is_metered(self) -> bool:
        """Whether this price bills recorded usage (``recurring.usage_type="metered"``)."""
        return self.usage_type == "metered"


class Plan(Value):
    """A plan definition joined with its live Stripe prices.

    ``stale`` is true when the prices come from the last good load because Stripe could not
    be reached.
    """

    definition: PlanDefinition
    prices: Mapping[Interval, Price] = Field(default_factory=dict)
    stale: bool = False

    @property
    def key(self) -> str:
        """The plan's key."""
        return self.definition.key

    @property
    def name(self) -> str:
        """The plan's display name."""
        return self.definition.name

    @property
    def features(self) -> tuple[str, ...]:
        """Feature flags the plan grants."""
        return self.definition.features

    @property
    def limits(self) -> Mapping[str, int | None]:
        """Numeric limits of the plan (``None`` is unlimited)."""
        return self.definition.limits

    @property
    def is_free(self) -> bool:
        """Whether the plan has no price."""
        return self.definition.is_free
