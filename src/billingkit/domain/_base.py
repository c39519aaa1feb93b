"""Shared base for billingkit's frozen value types."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

__all__ = ["UTCDateTime", "Value", "from_timestamp", "to_timestamp"]


class Value(BaseModel):
    """Base of every value type: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware (UTC)")
    return value.astimezone(timezone.utc)


#: A timezone-aware datetime, normalised to UTC. Naive datetimes are refused.
UTCDateTime = Annotated[datetime, AfterValidator(_require_aware)]


def from_timestamp(seconds: int | float) -> datetime:
    """Convert a Unix timestamp (as Stripe sends) to an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def to_timestamp(moment: datetime) -> int:
    """Convert an aware datetime to whole Unix seconds (Stripe's resolution)."""
    return int(moment.timestamp())
