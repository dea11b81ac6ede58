"""PICTURE strings: what a `PIC` clause says about size, digits, scale and sign.

A picture is expanded (`9(5)` becomes `99999`) and read symbol by symbol. Numeric pictures
may be plain (`S9(7)V99`, `PPP9(5)`, `9(5)PPP`) or edited (`+9(8)`, `Z(6)VZZ-`,
`9(6).99-`); edited ones are decoded from their printed text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

_REPEAT = re.compile(r"([A-Za-z9$*+\-/,.0])\((\d+)\)")
_NUMERIC_SYMBOLS = frozenset("9SVP.,Z*+-B0/$")


class PictureError(ValueError):
    """The picture string is malformed; the parser adds the copybook line and column."""


class PictureKind(Enum):
    ALPHANUMERIC = "alphanumeric"
    NUMERIC = "numeric"
    NATIONAL = "national"


@dataclass(frozen=True)
class Picture:
    """The meaning of one PIC string.

    `display_size` counts character positions as stored with USAGE DISPLAY, without an
    embedded (overpunched) sign. `scale_left` counts `P` positions before the digits (the
    value is a fraction: `PPP9(5)` is 0.000ddddd) and `scale_right` those after them (the
    value is multiplied: `9(5)PPP` is ddddd000).
    """

    source: str
    kind: PictureKind
    display_size: int
    digits: int = 0
    scale: int = 0
    scale_left: int = 0
    scale_right: int = 0
    signed: bool = False
    explicit_point: bool = False
    edited: bool = False

    @property
    def precision(self) -> int:
        """Decimal digits of the value, counting the positions that P scaling adds."""
        return self.digits + self.scale_left + self.scale_right

    @property
    def value_scale(self) -> int:
        """Digits right of the decimal point in the value (never negative)."""
        if self.scale_left:
            return self.digits + self.scale_left
        return self.scale

    @property
    def is_decimal(self) -> bool:
        """True when the value has a fractional part or P scaling (a decimal, not an int)."""
        return bool(self.scale or self.scale_left or self.scale_right or self.explicit_point)


def expand(text: str) -> str:
    """Expand repetition factors: `S9(3)V9(2)` -> `S999V99`."""
    expanded = _REPEAT.sub(lambda m: m.group(1) * int(m.group(2)), text)
    if "(" in expanded or ")" in expanded:
        raise PictureError(f"malformed repetition in PIC {text!r}")
    return expanded


def parse_picture(text: str) -> Picture:
    """Read a PIC string (as written after `PIC`/`PICTURE [IS]`)."""
    if not text:
        raise PictureError("empty PIC string")
    symbols = expand(text.upper())
    if any(c in "XA" for c in symbols):
        if any(c not in "XA9B0/" for c in symbols):
            raise PictureError(f"unexpected symbol in alphanumeric PIC {text!r}")
        return Picture(text, PictureKind.ALPHANUMERIC, len(symbols))
    if "N" in symbols or "G" in symbols:
        if any(c not in "NGB" for c in symbols):
            raise PictureError(f"unexpected symbol in national PIC {text!r}")
        return Picture(text, PictureKind.NATIONAL, len(symbols))
    return _parse_numeric(text, symbols)


def _parse_numeric(text: str, symbols: str) -> Picture:
    signed = False
    edited = False
    explicit_point = False
    point_seen = False
    digits = scale = scale_left = scale_right = size = 0
    sign_symbol_seen = False
    if symbols.endswith(("CR", "DB")):
        signed = edited = True
        size += 2
        symbols = symbols[:-2]
    for pos, c in enumerate(symbols):
        if c not in _NUMERIC_SYMBOLS:
            raise PictureError(f"unexpected symbol {c!r} in numeric PIC {text!r}")
        if c == "S":
            if pos != 0:
                raise PictureError(f"S must be the first symbol of PIC {text!r}")
            signed = True
        elif c == "V":
            if point_seen:
                raise PictureError(f"more than one decimal point in PIC {text!r}")
            point_seen = True
        elif c == ".":
            if point_seen:
                raise PictureError(f"more than one decimal point in PIC {text!r}")
            point_seen = explicit_point = True
            size += 1
        elif c == "P":
            if digits == 0:
                scale_left += 1
            else:
                scale_right += 1
        elif c in "9Z*":
            if scale_right:
                raise PictureError(f"digit after trailing P scaling in PIC {text!r}")
            digits += 1
            size += 1
            edited = edited or c != "9"
            if point_seen:
                scale += 1
        elif c in "+-":
            edited = signed = True
            size += 1
            # A repeated (floating) sign: the first is the sign, the others digit positions.
            if sign_symbol_seen and 0 < pos < len(symbols) - 1:
                digits += 1
                if point_seen:
                    scale += 1
            sign_symbol_seen = True
        else:  # insertion characters: , B 0 / $
            edited = True
            size += 1
    if digits == 0:
        raise PictureError(f"numeric PIC {text!r} has no digit positions")
    if point_seen and scale_left:
        scale = 0
    return Picture(
        source=text,
        kind=PictureKind.NUMERIC,
        display_size=size,
        digits=digits,
        scale=scale,
        scale_left=scale_left,
        scale_right=scale_right,
        signed=signed,
        explicit_point=explicit_point,
        edited=edited,
    )
