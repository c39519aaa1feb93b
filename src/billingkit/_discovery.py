"""Finding the app's ``Billing`` by name, the way Flask, Celery and uvicorn do.

Shared by the ``billingkit`` command (``--app``) and the queue workers
(``billingkit.contrib.rq``, ``billingkit.contrib.celery``), which run in processes of
their own and must build the app's services there. A target is ``module:attribute`` (or
``BILLINGKIT_APP``): a module importable from the current directory and an attribute in it,
either a ``Billing`` or a callable taking no arguments that returns one (a
factory). ``module`` alone looks for an attribute ``billing``, then a factory
``create_billing``.

Every mistake in the target is an ``AppNotFoundError`` (a
``ConfigurationError``) with the reason. A
``BillingError`` raised by the app's own module or factory
propagates unchanged. Nothing is imported before ``find_billing`` is called.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Mapping

from billingkit.composition import Billing
from billingkit.errors import BillingError, ConfigurationError

__all__ = [
    "APP_ENVVAR",
    "DEFAULT_ATTRIBUTES",
    "AppNotFoundError",
    "billing_from_env",
    "find_billing",
]

#: The environment variable naming the app when no target is given.
APP_ENVVAR = "BILLINGKIT_APP"
#: Attributes tried, in order, when the app is given as a module without ``:attribute``.
DEFAULT_ATTRIBUTES = ("billing", "create_billing")


class AppNotFoundError(ConfigurationError):
    """The app target names no importable module, no attribute, or not a ``Billing``."""


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
            raise AppNotFoundError(
                f"could not import {module_name!r}: no module named {exc.name!r} "
                f"(run from the directory that contains it, or fix --app/{APP_ENVVAR})"
            ) from None
        raise AppNotFoundError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    except BillingError:
        raise
    except Exception as exc:
        # The app module itself is broken: say so in one line (its own bug, not ours).
        raise AppNotFoundError(
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
            raise AppNotFoundError(
                f"{target!r} is a callable that needs arguments; give a Billing object or "
                "a factory that takes none"
            ) from None
    return factory()


def find_billing(target: str) -> tuple[Billing, bool]:
    """Import ``target`` (``module:attribute`` or ``module``) and return its ``Billing``.

    The flag is true when a factory built it (the caller then owns it and closes it when
    done). Raises ``AppNotFoundError`` for a missing module or attribute or a wrong
    type; a ``BillingError`` of the app's factory propagates.
    """
    target = target.strip()
    module_name, sep, attribute = target.partition(":")
    if not module_name or (sep and not attribute):
        raise AppNotFoundError(
            f"--app {target!r}: expected 'module:attribute' (e.g. 'myapp.billing:billing')"
        )
    module = _import(module_name)
    if not sep:
        names = [name for name in DEFAULT_ATTRIBUTES if hasattr(module, name)]
        if not names:
            tried = " or ".join(repr(name) for name in DEFAULT_ATTRIBUTES)
            raise AppNotFoundError(
                f"module {module_name!r} has no {tried}; name the attribute: "
                f"--app {module_name}:ATTRIBUTE"
            )
        attribute = names[0]
    value: object = module
    for part in attribute.split("."):
        if not part.isidentifier() or not hasattr(value, part):
            raise AppNotFoundError(f"module {module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    shown = f"{module_name}:{attribute}"
    if isinstance(value, Billing):
        return value, False
    if callable(value) and not isinstance(value, type):
        built = _call_factory(shown, value)
        if isinstance(built, Billing):
            return built, True
        raise AppNotFoundError(
            f"the factory {shown!r} returned a {type(built).__name__}, not a billingkit.Billing"
        )
    raise AppNotFoundError(
        f"{shown!r} is a {type(value).__name__}, not a billingkit.Billing "
        "(or a factory returning one)"
    )


def billing_from_env(environ: Mapping[str, str] | None = None) -> tuple[Billing, bool]:
    """The ``Billing`` named by ``BILLINGKIT_APP`` in ``environ`` (default ``os.environ``).

    Raises ``AppNotFoundError`` when the variable is unset or names no ``Billing``.
    """
    target = (os.environ if environ is None else environ).get(APP_ENVVAR, "")
    if not target.strip():
        raise AppNotFoundError(
            f"no app given: set {APP_ENVVAR}=module:attribute (e.g. myapp.billing:billing)"
        )
    return find_billing(target)
