"""Optional dependencies: a missing one is a ConfigurationError naming the extra to install.

Modules that need a package only one extra installs import it inside ``requires_extra``::

    with requires_extra("flask", "flask", "werkzeug"):
        from flask import Blueprint

Without Flask, importing that module raises ``ConfigurationError``
saying ``pip install "billingkit[flask]"`` instead of a bare ``ModuleNotFoundError``. Only
the named packages are translated: a missing module of any other name is a real bug and
propagates unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from billingkit.errors import ConfigurationError

__all__ = ["MissingExtraError", "requires_extra"]


class MissingExtraError(ConfigurationError, ImportError):
    """An optional package is not installed; the message names the extra that installs it.

    Also an ``ImportError``, so code probing for an optional integration with
    ``except ImportError`` keeps working.
    """

    def __init__(self, extra: str, package: str) -> None:
        super().__init__(
            f"{package!r} is not installed; it comes with the {extra!r} extra: "
            f'pip install "billingkit[{extra}]"'
        )
        self.extra = extra
        self.package = package


@contextmanager
def requires_extra(extra: str, *packages: str) -> Iterator[None]:
    """Turn a ``ModuleNotFoundError`` for one of ``packages`` into ``MissingExtraError``.

    ``packages`` are top-level distribution import names (``"flask"``, ``"sqlalchemy"``);
    without any, ``extra`` itself is the package name.
    """
    names = frozenset(packages or (extra,))
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if top not in names:
            raise
        raise MissingExtraError(extra, top) from exc
