"""How an elementary item is stored: its encoding, byte size and Arrow value type.

An encoding combines the PICTURE with the USAGE and SIGN clauses. The Arrow type follows
the Spark/Cobrix convention so that values compare with the reference corpus: integral
numbers become int32 up to 9 digits, int64 up to 18 and decimal128 beyond; numbers with a
fractional part or P scaling become decimal128(precision, scale); COMP-1/COMP-2 become
float32/float64.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import Enum

import pyarrow as pa

from fabric.copybook.picture import Picture, PictureKind

MAX_DECIMAL_DIGITS = 38


class Usage(Enum):
    DISPLAY = "DISPLAY"
    BINARY = "BINARY"  # COMP, COMP-0, COMP-4, COMP-5, COMPUTATIONAL, BINARY: big-endian
    BINARY_LITTLE_ENDIAN = "COMP-9"  # a Cobrix extension: little-endian binary
    PACKED = "COMP-3"
    PACKED_NO_SIGN = "COMP-3U"  # packed digits without a sign nibble
    FLOAT = "COMP-1"
    DOUBLE = "COMP-2"
    NATIONAL = "NATIONAL"


@dataclass(frozen=True)
class NumberFormat:
    """Digits and scaling shared by every numeric encoding."""

    digits: int
    scale: int  # digits right of the decimal point in the value
    multiplier_exponent: int  # trailing P positions: the stored digits times 10**this
    signed: bool
    is_decimal: bool

    @property
    def precision(self) -> int:
        return max(self.digits + self.multiplier_exponent, self.scale, 1)

    @classmethod
    def from_picture(cls, picture: Picture) -> NumberFormat:
        return cls(
            digits=picture.digits,
            scale=picture.value_scale,
            multiplier_exponent=picture.scale_right,
            signed=picture.signed,
            is_decimal=picture.is_decimal,
        )


@dataclass(frozen=True)
class Alphanumeric:
    size: int


@dataclass(frozen=True)
class National:
    """PIC N: UTF-16 text, two bytes per character."""

    size: int


@dataclass(frozen=True)
class Display:
    """A number stored as characters (zoned decimal, SIGN SEPARATE, or an edited picture)."""

    size: int
    number: NumberFormat
    sign_leading: bool = False
    sign_separate: bool = False
    explicit_point: bool = False
    edited: bool = False


@dataclass(frozen=True)
class Packed:
    size: int
    number: NumberFormat
    has_sign_nibble: bool = True


@dataclass(frozen=True)
class Binary:
    size: int
    number: NumberFormat
    little_endian: bool = False


@dataclass(frozen=True)
class Floating:
    size: int  # 4 (COMP-1) or 8 (COMP-2)


Encoding = Alphanumeric | National | Display | Packed | Binary | Floating


@dataclass(frozen=True)
class SignClause:
    leading: bool
    separate: bool


def binary_size(digits: int) -> int:
    """Bytes of a binary (COMP) item: halfword, fullword, doubleword, then just enough."""
    if digits <= 4:
        return 2
    if digits <= 9:
        return 4
    if digits <= 18:
        return 8
    return math.ceil((digits * math.log2(10) + 1) / 8)


def make_encoding(picture: Picture | None, usage: Usage, sign: SignClause | None) -> Encoding:
    """Combine PICTURE, USAGE and SIGN into an encoding; raises ValueError when inconsistent."""
    if usage is Usage.FLOAT:
        return Floating(4)
    if usage is Usage.DOUBLE:
        return Floating(8)
    if picture is None:
        raise ValueError(f"USAGE {usage.value} needs a PIC clause")
    if picture.kind is PictureKind.NATIONAL or usage is Usage.NATIONAL:
        return National(picture.display_size * 2)
    if picture.kind is PictureKind.ALPHANUMERIC:
        if usage is not Usage.DISPLAY:
            raise ValueError(f"an alphanumeric PIC {picture.source} cannot be {usage.value}")
        return Alphanumeric(picture.display_size)
    number = NumberFormat.from_picture(picture)
    if number.digits + number.multiplier_exponent > MAX_DECIMAL_DIGITS:
        raise ValueError(f"PIC {picture.source} has more than {MAX_DECIMAL_DIGITS} digits")
    if usage is Usage.DISPLAY:
        # A SIGN clause makes the item signed even when the picture has no S.
        separate = sign is not None and sign.separate
        if sign is not None and not number.signed:
            number = dataclasses.replace(number, signed=True)
        return Display(
            size=picture.display_size + (1 if separate else 0),
            number=number,
            sign_leading=sign is not None and sign.leading,
            sign_separate=separate,
            explicit_point=picture.explicit_point,
            edited=picture.edited,
        )
    if picture.edited:
        raise ValueError(f"an edited PIC {picture.source} must have USAGE DISPLAY")
    if usage is Usage.PACKED:
        return Packed(number.digits // 2 + 1, number)
    if usage is Usage.PACKED_NO_SIGN:
        return Packed((number.digits + 1) // 2, number, has_sign_nibble=False)
    little_endian = usage is Usage.BINARY_LITTLE_ENDIAN
    return Binary(binary_size(number.digits), number, little_endian=little_endian)


def arrow_type(encoding: Encoding, *, strict_integral_precision: bool = False) -> pa.DataType:
    """The Arrow type a decoded value gets (see the module docstring)."""
    if isinstance(encoding, Alphanumeric | National):
        return pa.string()
    if isinstance(encoding, Floating):
        return pa.float32() if encoding.size == 4 else pa.float64()
    number = encoding.number
    if number.is_decimal:
        return pa.decimal128(number.precision, number.scale)
    digits = number.digits
    if strict_integral_precision:
        return pa.decimal128(digits, 0)
    if isinstance(encoding, Binary) and not number.signed:
        # An unsigned binary can hold more than its digits say: 9(9) needs int64, and
        # 9(18) (8 unsigned bytes) may exceed int64.
        if digits <= 8:
            return pa.int32()
        if digits <= 17:
            return pa.int64()
        return pa.decimal128(20 if digits == 18 else digits, 0)
    if digits <= 9:
        return pa.int32()
    if digits <= 18:
        return pa.int64()
    return pa.decimal128(digits, 0)
