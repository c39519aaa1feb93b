"""What every port call goes through: call counting, failure injection, idempotency."""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from billingkit.errors import ConfigurationError, GatewayError
from billingkit.testing._state import FakeState, invalid

__all__ = ["PORT_OPERATIONS", "Controls"]

T = TypeVar("T")

#: The ``StripeGateway`` methods, i.e. the keys of ``calls``.
PORT_OPERATIONS = frozenset(
    {
        "create_customer",
        "retrieve_customer",
        "create_checkout_session",
        "retrieve_checkout_session",
        "list_prices",
        "retrieve_subscription",
        "create_billing_portal_session",
        "modify_subscription",
        "cancel_subscription_now",
        "resume_paused_subscription",
        "preview_invoice",
        "schedule_subscription_change",
        "release_subscription_schedule",
        "find_promotion_code",
        "list_subscriptions",
        "list_customers",
        "list_webhook_endpoints",
        "create_setup_checkout_session",
        "set_default_payment_method",
        "create_meter_event",
    }
)
_IDEMPOTENCY_TTL = timedelta(hours=24)


@dataclass
class _Failure:
    error: GatewayError
    after_applying: bool
    #: Calls that go through before this failure hits.
    after_calls: int = 0


@dataclass
class _IdempotentResult:
    operation: str
    fingerprint: str
    result: Any
    at: datetime


class Controls:
    """Runs port calls: counts them, replays idempotent creates, raises injected failures."""

    def __init__(self, state: FakeState) -> None:
        self._state = state
        #: Port calls made so far, keyed by method name (failed attempts included).
        self.calls: Counter[str] = Counter()
        self._idempotency: dict[str, _IdempotentResult] = {}
        self._failures: dict[str, deque[_Failure]] = {}

    def fail_next(
        self, operation: str, error: GatewayError, *, after_applying: bool, after_calls: int = 0
    ) -> None:
        """Queue ``error`` for a call of port method ``operation``, ``after_calls`` from now."""
        if operation not in PORT_OPERATIONS:
            raise ConfigurationError(f"unknown gateway operation {operation!r}")
        if after_calls < 0:
            raise ConfigurationError("after_calls must not be negative")
        self._failures.setdefault(operation, deque()).append(
            _Failure(error=error, after_applying=after_applying, after_calls=after_calls)
        )

    def call(
        self,
        operation: str,
        action: Callable[[], T],
        idempotency_key: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> T:
        """Count a call of ``operation`` and run ``action`` as Stripe would.

        A queued failure raises before ``action`` runs, or after it with
        ``after_applying``. With an ``idempotency_key`` the first result for the key (24 h)
        is answered again, and other ``params`` under the same key are refused.
        """
        self.calls[operation] += 1
        queue = self._failures.get(operation)
        failure = None
        if queue:
            if queue[0].after_calls > 0:
                queue[0].after_calls -= 1
            else:
                failure = queue.popleft()
        if failure is not None and not failure.after_applying:
            raise failure.error
        if idempotency_key is None:
            result = action()
        else:
            result = self._idempotent(operation, idempotency_key, params or {}, action)
        if failure is not None:
            raise failure.error
        return result

    def _idempotent(
        self, operation: str, key: str, params: Mapping[str, Any], action: Callable[[], T]
    ) -> T:
        now = self._state.now
        fingerprint = json.dumps([operation, params], sort_keys=True, default=str)
        stored = self._idempotency.get(key)
        if stored is not None and now - stored.at <= _IDEMPOTENCY_TTL:
            if stored.fingerprint != fingerprint:
                raise invalid(
                    "Keys for idempotent requests can only be used with the same parameters "
                    "they were first used with.",
                    "idempotency_error",
                )
            result: T = stored.result
            return result
        result = action()
        self._idempotency[key] = _IdempotentResult(operation, fingerprint, result, self._state.now)
        return result
