"""What the repository adapters still share beyond ``UnitOfWorkBase``.

Private to ``billingkit.adapters``: the aware-UTC check of the ``datetime`` arguments
(``created_after``, ``processed_at``), with one error message for every adapter.
"""

from __future__ import annotations

from datetime import datetime, timezone

from billingkit.errors import RepositoryError


def aware_utc(moment: datetime, name: str) -> datetime:
    """``moment`` in UTC; a naive datetime is a ``RepositoryError`` naming ``name``."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise RepositoryError(f"{name} must be a timezone-aware datetime")
    return moment.astimezone(timezone.utc)
