"""What the repository adapters share: unit-of-work lifecycle checks and the save rule.

Private to :mod:`billingkit.adapters`; ``InMemoryRepository`` and ``SqlAlchemyRepository``
both use it so the rules of use (and their error messages) and the reference rule of
``save_subscription`` are written once.
"""

from __future__ import annotations

from datetime import datetime, timezone

from billingkit.errors import RepositoryError

#: Lifecycle states of a unit of work: created, inside its ``with`` block, exited.
NEW, OPEN, CLOSED = 0, 1, 2



def nested_error() -> RepositoryError:
    """The error for opening a unit of work on a thread that already holds one."""
    return RepositoryError(
        "nested unit of work: this thread already holds a unit of work of this "
        "repository; finish it before opening another one"
    )


def misuse_error(state: int) -> RepositoryError:
    """The error for using a unit of work in ``state`` from a thread that does not own it."""
    if state == NEW:
        return RepositoryError("unit of work used before its with block was entered")
    if state == CLOSED:
        return RepositoryError("unit of work used after its with block exited")
    return RepositoryError("unit of work used from another thread than its owner")


def aware_utc(moment: datetime, name: str) -> datetime:
    """``moment`` in UTC; a naive datetime is a :class:`RepositoryError` naming ``name``."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise RepositoryError(f"{name} must be a timezone-aware datetime")
    return moment.astimezone(timezone.utc)
