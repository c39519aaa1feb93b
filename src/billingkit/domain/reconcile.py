"""Values stored by reconcile: where an interrupted run stopped."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from billingkit.domain._base import UTCDateTime, Value

__all__ = ["ReconcileCheckpoint"]


class ReconcileCheckpoint(Value):
    """The position of an interrupted reconcile run, kept to resume it.

    ``name`` tells runs apart (one checkpoint per name); ``scope`` fingerprints the run's
    options (a resume must use the same); ``starting_after`` is the last subscription id of
    the last complete page; ``counts`` are the report's counts so far.
    """

    name: str = Field(min_length=1, max_length=100)
    scope: str = Field(max_length=512)
    starting_after: str = Field(min_length=1, max_length=255)
    counts: Mapping[str, int] = Field(default_factory=dict)
    updated_at: UTCDateTime
