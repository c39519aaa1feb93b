"""Money: an integer amount in the currency's minor unit plus an ISO 4217 code. Never a float."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, StrictInt, StringConstraints

__all__ = ["ZERO_DECIMAL_CURRENCIES", "Money", "minor_unit_exponent"]

#: Currencies Stripe treats as zero-decimal: amounts are whole units (``500`` JPY is ¥500).
ZERO_DECIMAL_CURRENCIES = frozenset(
    {
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
        "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
    }
)  # fmt: skip
#: Currencies with three decimal places.
THREE_DECIMAL_CURRENCIES = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


def _normalise_currency(value: object) -> object:
    # StringConstraints checks the pattern before lower-casing, so normalise first.
    return value.strip().lower() if isinstance(value, str) else value


#: A lower-case ISO 4217 code; ``" USD "`` is read as ``"usd"``.
CurrencyCode = Annotated[
    str, BeforeValidator(_normalise_currency), StringConstraints(pattern=r"^[a-z]{3}$")
]


def minor_unit_exponent(currency: str) -> int:
    """Number of decimal places of ``currency``'s minor unit (0 for JPY, 2 for USD)."""
    code = currency.lower()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


class Money(BaseModel):
    """An exact amount of money: ``amount`` minor units of ``currency`` (lower-case ISO code).

    ``Money(amount=2000, currency="usd")`` is 20.00 USD; ``Money(amount=500, currency="jpy")``
    is 500 JPY. Floats are refused.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: StrictInt
    currency: CurrencyCode

    def format(self) -> str:
        """Human-readable form, e.g. ``"20.00 USD"``, ``"500 JPY"``, ``"-1.50 EUR"``."""
        exponent = minor_unit_exponent(self.currency)
        sign = "-" if self.amount < 0 else ""
        units = abs(self.amount)
        if exponent == 0:
            text = str(units)
        else:
            major, minor = divmod(units, 10**exponent)
            text = f"{major}.{minor:0{exponent}d}"
        return f"{sign}{text} {self.currency.upper()}"

    def __str__(self) -> str:
        return self.format()

    def __add__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(amount=self.amount + other.amount, currency=self.currency)

    def __mul__(self, factor: int) -> Money:
        if not isinstance(factor, int) or isinstance(factor, bool):
            return NotImplemented
        return Money(amount=self.amount * factor, currency=self.currency)
