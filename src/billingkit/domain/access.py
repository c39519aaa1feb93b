"""Who gets access: the app's ``AccessPolicy`` and the rule that applies it.

See ``docs/plans-and-access.md`` for how apps configure it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import NonNegativeInt

from billingkit.domain._base import Value
from billingkit.domain.billing import Subscription, SubscriptionStatus

__all__ = ["RECOVERING_STATUSES", "AccessPolicy", "grants_access", "is_activation", "is_recovery"]


class AccessPolicy(Value):
    """Which subscription statuses grant access to a paid plan.

    ``past_due`` grants access only for ``past_due_grace_days`` days counted from the start of
    the unpaid period (when the renewal invoice failed); 0 means no grace.
    """

    granting_statuses: frozenset[SubscriptionStatus] = frozenset(
        {SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING}
    )
    past_due_grace_days: NonNegativeInt = 0


def grants_access(subscription: Subscription, policy: AccessPolicy, now: datetime) -> bool:
    """Whether ``subscription`` grants access under ``policy`` at ``now``.

    A status in ``policy.granting_statuses`` grants access. ``past_due`` (when not listed)
    grants access for ``policy.past_due_grace_days`` days counted from
    ``current_period_start`` (the renewal that failed), the end excluded; never without a
    known period start.
    """
    if subscription.status in policy.granting_statuses:
        return True
    if (
        subscription.status is SubscriptionStatus.PAST_DUE
        and policy.past_due_grace_days > 0
        and subscription.current_period_start is not None
    ):
        grace_end = subscription.current_period_start + timedelta(days=policy.past_due_grace_days)
        return now < grace_end
    return False


#: Statuses a subscription reaches only after it was paid for: a return to access from one
#: of them is a recovery, not a first activation.
RECOVERING_STATUSES = frozenset({SubscriptionStatus.PAST_DUE, SubscriptionStatus.UNPAID})


def _returns_to_access(
    previous: SubscriptionStatus | None, status: SubscriptionStatus, policy: AccessPolicy
) -> bool:
    granting = policy.granting_statuses
    return status in granting and previous not in granting


def is_recovery(
    previous: SubscriptionStatus | None, status: SubscriptionStatus, policy: AccessPolicy
) -> bool:
    """Whether moving from ``previous`` to ``status`` is a return to access after a lapse.

    The rule for the ``SubscriptionRecovered`` hook: ``status`` is one of
    ``policy.granting_statuses``, ``previous`` is not, and ``previous`` is ``past_due`` or
    ``unpaid`` (``RECOVERING_STATUSES``: the subscription granted access before), or
    ``paused`` when trials grant access (Stripe pauses a subscription only when its trial
    ends without a payment method, so it granted access during the trial).
    """
    if not _returns_to_access(previous, status, policy):
        return False
    if previous is SubscriptionStatus.PAUSED:
        return SubscriptionStatus.TRIALING in policy.granting_statuses
    return previous in RECOVERING_STATUSES


def is_activation(
    previous: SubscriptionStatus | None, status: SubscriptionStatus, policy: AccessPolicy
) -> bool:
    """Whether moving from ``previous`` to ``status`` activates a subscription.

    The rule for the ``SubscriptionActivated`` hook, which fires once per subscription, the
    first time it grants access: ``status`` is one of ``policy.granting_statuses``,
    ``previous`` is not (``None``: the subscription is new, or its previous status is
    unknown), and the move is not a recovery (``is_recovery``: back from ``past_due``,
    ``unpaid``, or a pause after a granting trial). The ``past_due`` grace period plays no
    part. Under the default policy that is: becomes ``active`` or ``trialing`` from
    ``incomplete`` (or is created so).
    """
    return _returns_to_access(previous, status, policy) and not is_recovery(
        previous, status, policy
    )
