"""Who gets access: the app's ``AccessPolicy`` and the rule that applies it.

See ``docs/plans-and-access.md`` for how apps configure it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import NonNegativeInt

from billingkit.domain._base import Value
from billingkit.domain.billing import Subscription, SubscriptionStatus

__all__ = ["AccessPolicy", "grants_access", "is_activation"]


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


def is_activation(
    previous: SubscriptionStatus | None, status: SubscriptionStatus, policy: AccessPolicy
) -> bool:
    """Whether moving from ``previous`` to ``status`` activates a subscription.

    The rule for the ``SubscriptionActivated`` hook: ``status`` is one of
    ``policy.granting_statuses`` and ``previous`` is not (``None``: the subscription is new,
    or its previous status is unknown). The ``past_due`` grace period plays no part: a
    ``past_due`` subscription back to ``active`` is activated again. Under the default policy
    that is: becomes ``active`` or ``trialing`` from anything else.
    """
    granting = policy.granting_statuses
    return status in granting and previous not in granting
