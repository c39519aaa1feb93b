"""``billing`` here is the Django app's ``get_billing``.

The ``--app`` of ``manage.py billingkit``: an attribute (not a factory) so the click command
uses the shared services and does not close them when it ends.
"""

from __future__ import annotations

from billingkit.composition import Billing
from billingkit.contrib.django.conf import get_billing

__all__: list[str] = []  # `billing` is served by __getattr__


def __getattr__(name: str) -> Billing:
    if name == "billing":
        return get_billing()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
