"""What the Celery and RQ glue share: finding the worker's ``Billing`` and when to retry.

A queue worker runs in a process of its own (often forked from a parent), so it builds the
app's ``Billing`` there, once, on its first job: from a ``Billing`` object
or a factory the app hands over, else from ``BILLINGKIT_APP`` (see
``billingkit._discovery``). Imports no queue package.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from billingkit._discovery import billing_from_env
from billingkit.composition import Billing
from billingkit.domain import EventStatus
from billingkit.errors import ConfigurationError

__all__ = ["BillingSource", "retry_countdown"]

#: What the app may hand the glue: its ``Billing``, a factory building one, or ``None``
#: (found through ``BILLINGKIT_APP`` in the worker).
BillingSpec = Billing | Callable[[], Billing] | None


class BillingSource:
    """The worker's ``Billing``, built on first use (thread-safe), from ``spec`` or the env."""

    def __init__(self, spec: BillingSpec = None) -> None:
        if spec is not None and not isinstance(spec, Billing) and not callable(spec):
            raise ConfigurationError(
                f"expected a billingkit.Billing or a factory returning one, "
                f"not {type(spec).__name__}"
            )
        self._spec = spec
        self._billing = spec if isinstance(spec, Billing) else None
        self._lock = threading.Lock()

    def get(self) -> Billing:
        """The ``Billing``; built by the factory or found through ``BILLINGKIT_APP`` once."""
        with self._lock:
            if self._billing is None:
                self._billing = self._build()
            return self._billing

    def _build(self) -> Billing:
        if self._spec is None:
            return billing_from_env()[0]
        assert not isinstance(self._spec, Billing)
        built = self._spec()
        if not isinstance(built, Billing):
            raise ConfigurationError(
                f"the billing factory returned a {type(built).__name__}, not a billingkit.Billing"
            )
        return built

    def reset(self) -> Billing | None:
        """Forget a ``Billing`` the factory built (returned, for the caller to close)."""
        with self._lock:
            built = None if isinstance(self._spec, Billing) else self._billing
            if built is not None:
                self._billing = None
            return built


def retry_countdown(billing: Billing, event_id: str, now: datetime) -> float | None:
    """Seconds until ``event_id`` should be tried again after ``process`` raised.

    The ledger decides: a ``failed`` event is due at its ``next_attempt_at`` (the back-off of
    ``RetryPolicy``), so the queue and ``drain``
    agree; a ``dead``, finished or unknown event is not retried (``None``). An event still
    ``pending`` (the failure happened before it could be recorded, e.g. the database was
    down) gives ``0.0``: the caller applies its own back-off.
    """
    with billing.repository.unit_of_work() as uow:
        record = uow.get_event(event_id)
    if record is None:
        return None
    if record.status is EventStatus.PENDING or record.status is EventStatus.PROCESSING:
        return 0.0
    if record.status is not EventStatus.FAILED:
        return None
    due = record.next_attempt_at or now
    return max(0.0, (due - now).total_seconds())
