"""Finding the app's ``Billing``, the way Flask, Celery and uvicorn do.

``--app module:attribute`` (or ``BILLINGKIT_APP``) names a module importable from the
current directory and an attribute in it: a ``Billing``, or a callable
taking no arguments that returns one (a factory). ``module`` alone looks for an attribute
``billing``, then a factory ``create_billing``. Every mistake is a
``click.UsageError`` (exit 2) with the reason; nothing is imported before a command
needs the app, so ``--help`` always works.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from dataclasses import dataclass, field

import click

from billingkit.cli._common import error_from
from billingkit.composition import Billing
from billingkit.errors import BillingError

__all__ = ["APP_ENVVAR", "AppLocator", "find_billing"]

#: The environment variable read when ``--app`` is not given.
APP_ENVVAR = "BILLINGKIT_APP"
#: Attributes tried, in order, when the app is given as a module without ``:attribute``.
DEFAULT_ATTRIBUTES = ("billing", "create_billing")


def _import(module_name: str) -> object:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (
            exc.name == module_name or module_name.startswith(exc.name + ".")
        ):
            raise click.UsageError(
                f"could not import {module_name!r}: no module named {exc.name!r} "
                f"(run from the directory that contains it, or fix --app/{APP_ENVVAR})"
            ) from None
        raise click.UsageError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    except BillingError as exc:
        raise error_from(exc) from None
    except Exception as exc:
        # The app module itself is broken: say so in one line (its own bug, not ours).
        raise click.UsageError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None


def _call_factory(target: str, factory: object) -> object:
    assert callable(factory)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature: just try the call
        signature = None
    if signature is not None:
        try:
            signature.bind()
        except TypeError:
            raise click.UsageError(
                f"{target!r} is a callable that needs arguments; give a Billing object or "
                "a factory that takes none"
            ) from None
    try:
        return factory()
    except BillingError as exc:
        raise error_from(exc) from None


def find_billing(target: str) -> tuple[Billing, bool]:
    """Import ``target`` (``module:attribute`` or ``module``) and return its ``Billing``.

    The flag is true when a factory built it (the caller then closes it when done).
    Raises ``click.UsageError`` for a missing module or attribute or a wrong type.
    """
    target = target.strip()
    module_name, sep, attribute = target.partition(":")
    if not module_name or (sep and not attribute):
        raise click.UsageError(
            f"--app {target!r}: expected 'module:attribute' (e.g. 'myapp.billing:billing')"
        )
    module = _import(module_name)
    if sep:
        names: tuple[str, ...] = (attribute,)
    else:
        names = tuple(name for name in DEFAULT_ATTRIBUTES if hasattr(module, name))
        if not names:
            tried = " or ".join(repr(name) for name in DEFAULT_ATTRIBUTES)
            raise click.UsageError(
                f"module {module_name!r} has no {tried}; name the attribute: "
                f"--app {module_name}:ATTRIBUTE"
            )
        attribute = names[0]
    value: object = module
    for part in attribute.split("."):
        if not part.isidentifier() or not hasattr(value, part):
            raise click.UsageError(f"module {module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    shown = f"{module_name}:{attribute}"
    if isinstance(value, Billing):
        return value, False
    if callable(value) and not isinstance(value, type):
        built = _call_factory(shown, value)
        if isinstance(built, Billing):
            return built, True
        raise click.UsageError(
            f"the factory {shown!r} returned a {type(built).__name__}, not a billingkit.Billing"
        )
    raise click.UsageError(
        f"{shown!r} is a {type(value).__name__}, not a billingkit.Billing "
        "(or a factory returning one)"
    )


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
