"""Finding the app's ``Billing``, the way Flask, Celery and uvicorn do.

``--app module:attribute`` (or ``BILLINGKIT_APP``) names a module importable from the
current directory and an attribute in it: a ``Billing``, or a callable
taking no arguments that returns one (a factory). ``module`` alone looks for an attribute
``billing``, then a factory ``create_billing``. The search itself is
``billingkit._discovery``'s (shared with the queue workers); here every mistake becomes a
``click.UsageError`` (exit 2) with the reason, and a billingkit error of the app's own
exit 3. Nothing is imported before a command needs the app, so ``--help`` always works.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import click

from billingkit import _discovery
from billingkit._discovery import APP_ENVVAR, DEFAULT_ATTRIBUTES, AppNotFoundError
from billingkit.cli._common import error_from
from billingkit.composition import Billing
from billingkit.errors import BillingError

__all__ = ["APP_ENVVAR", "DEFAULT_ATTRIBUTES", "AppLocator", "find_billing"]


def find_billing(target: str) -> tuple[Billing, bool]:
    """Import ``target`` (``module:attribute`` or ``module``) and return its ``Billing``.

    The flag is true when a factory built it (the caller then closes it when done).
    Raises ``click.UsageError`` for a missing module or attribute or a wrong type.
    """
    try:
        return _discovery.find_billing(target)
    except AppNotFoundError as exc:
        raise click.UsageError(str(exc)) from None
    except BillingError as exc:
        raise error_from(exc) from None


@dataclass
class AppLocator:
    """Holds ``--app`` and loads the ``Billing`` on first use (commands' ``ctx.obj``)."""

    target: str | None
    _billing: Billing | None = field(default=None, repr=False)
    _owned: bool = field(default=False, repr=False)

    def load(self) -> Billing:
        """The app's ``Billing``; ``click.UsageError`` if it cannot be found."""
        if self._billing is None:
            if not self.target:
                raise click.UsageError(
                    f"no app given: pass --app module:attribute or set {APP_ENVVAR} "
                    "(e.g. --app myapp.billing:billing)"
                )
            self._billing, self._owned = find_billing(self.target)
        return self._billing

    def close(self) -> None:
        """Close the ``Billing`` if a factory built it for this command."""
        if self._billing is not None and self._owned:
            self._billing.close()
        self._billing = None
