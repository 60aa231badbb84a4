"""Exact Kubernetes resource quantities (``500m``, ``16Gi``, ``1e3``): parse, add, format.

Sums are exact (Decimal, never float) and printed in the canonical form apimachinery's
``resource.Quantity`` produces, so that ``kubectl`` and the scheduler read the same numbers
the Go agent would report: ``500m + 2 = 2500m``, ``1Gi + 512Mi = 1536Mi``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Context, Decimal, localcontext
from enum import StrEnum

# Enough digits for the largest quantity (Ei, 10^18 · 10^9 for nano precision) to stay exact.
_EXACT = Context(prec=80)

_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<binary>[KMGTPE]i)|(?P<decimal>[numkMGTPE])|[eE](?P<exponent>[+-]?[0-9]+))?$"
)
_BINARY_SUFFIXES = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_DECIMAL_EXPONENTS = {
    "n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18,
}  # fmt: skip
_DECIMAL_SUFFIXES = {exponent: suffix for suffix, exponent in _DECIMAL_EXPONENTS.items()}
_NANO = Decimal("1e-9")


class Format(StrEnum):
    BINARY_SI = "BinarySI"
    DECIMAL_SI = "DecimalSI"
    DECIMAL_EXPONENT = "DecimalExponent"


@dataclass(frozen=True)
class Quantity:
    value: Decimal
    format: Format = Format.DECIMAL_SI

    @classmethod
    def parse(cls, text: str | int) -> Quantity:
        if isinstance(text, int):  # quantities may arrive as JSON numbers
            return cls(Decimal(text))
        match = _QUANTITY.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 500m, 16Gi)")
        with localcontext(_EXACT):
            number = Decimal(match["number"])
            if binary := match["binary"]:
                power = 1024 ** (_BINARY_SUFFIXES.index(binary) + 1)
                return cls(number * power, Format.BINARY_SI)
            if (exponent := match["exponent"]) is not None:
                return cls(number.scaleb(int(exponent)), Format.DECIMAL_EXPONENT)
            return cls(number.scaleb(_DECIMAL_EXPONENTS[match["decimal"] or ""]))

    def __add__(self, other: Quantity) -> Quantity:
        # apimachinery's Add keeps the receiver's format; a zero start adopts the other's.
        with localcontext(_EXACT):
            fmt = self.format if self.value else other.format
            return Quantity(self.value + other.value, fmt)

    def __str__(self) -> str:
        with localcontext(_EXACT):
            # Like apimachinery, nothing finer than nano: round up (never under-report).
            value = self.value.quantize(_NANO, rounding=ROUND_CEILING)
            if value == 0:
                return "0"
            sign, magnitude = ("-" if value < 0 else ""), abs(value)
            binary = (
                self.format is Format.BINARY_SI
                and magnitude >= 1024
                and magnitude == magnitude.to_integral_value()
            )
            if binary:
                return sign + _binary(int(magnitude))
            mantissa, exponent = _decimal(magnitude)
            if self.format is Format.DECIMAL_EXPONENT:
                return f"{sign}{mantissa}" + (f"e{exponent}" if exponent else "")
            return f"{sign}{mantissa}{_DECIMAL_SUFFIXES[exponent]}"


def _binary(value: int) -> str:
    for power in range(len(_BINARY_SUFFIXES), 0, -1):
        if value % 1024**power == 0:
            return f"{value // 1024**power}{_BINARY_SUFFIXES[power - 1]}"
    return str(value)


def _decimal(value: Decimal) -> tuple[int, int]:
    """``value`` as mantissa · 10^exponent with the largest exponent (a multiple of 3)."""
    for exponent in range(18, -10, -3):
        scaled = value.scaleb(-exponent)
        if scaled == scaled.to_integral_value():
            return int(scaled), exponent
    raise AssertionError("unreachable: every value was rounded to nano precision")


def add_quantities(quantities: list[str | int]) -> str:
    """The canonical sum of ``quantities``; ``"0"`` for none."""
    total = Quantity(Decimal(0))
    for quantity in quantities:
        total = total + Quantity.parse(quantity)
    return str(total)
