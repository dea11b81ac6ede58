"""Exact integer arithmetic on columns of values up to 128 bits, and Arrow conversion.

Decimal digits are turned into integers with integer arithmetic only (never through float):
up to 19 digits fit one uint64; longer numbers (COBOL allows 38) are kept as two uint64
limbs (`hi`, `lo`) and multiplied/added with 32-bit partial products. Results become Arrow
int32, int64 or decimal128 arrays directly from buffers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
POW10 = np.array([10**k for k in range(20)], dtype=np.uint64)
_CHUNK = 18  # digits per uint64 partial value (10**18 < 2**63)


@dataclass
class Magnitudes:
    """Unsigned values as `lo` (uint64) plus `hi` (uint64 or None when all are below 2**64)."""

    lo: np.ndarray
    hi: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.lo)

    def take(self, index: np.ndarray) -> Magnitudes:
        return Magnitudes(self.lo[index], None if self.hi is None else self.hi[index])


def _mul_const(hi: np.ndarray, lo: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) * factor modulo 2**128, for 0 <= factor < 2**64."""
    c0 = np.uint64(factor & 0xFFFFFFFF)
    c1 = np.uint64(factor >> 32)
    a0 = lo & _M32
    a1 = lo >> _S32
    p00 = a0 * c0
    p01 = a0 * c1
    p10 = a1 * c0
    p11 = a1 * c1
    mid = (p00 >> _S32) + (p01 & _M32) + (p10 & _M32)
    new_lo = (p00 & _M32) | (mid << _S32)
    carry = p11 + (p01 >> _S32) + (p10 >> _S32) + (mid >> _S32)
    return hi * np.uint64(factor) + carry, new_lo


def _add(hi: np.ndarray, lo: np.ndarray, addend: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    new_lo = lo + addend
    return hi + (new_lo < lo).astype(np.uint64), new_lo


def _u64(value: int) -> np.uint64:
    return np.uint64(value)


_LOW_NIBBLES = _u64(0x0F0F0F0F0F0F0F0F)
_LOW_BYTES = _u64(0x00FF00FF00FF00FF)
_LOW_HALVES = _u64(0x0000FFFF0000FFFF)
_LOW_WORD = _u64(0xFFFFFFFF)
_NIBBLE_SIXES = _u64(0x0666666666666666)
_NIBBLE_CARRIES = _u64(0x1111111111111110)
_BYTE_SIXES = _u64(0x0606060606060606)
_HIGH_NIBBLES = _u64(0xF0F0F0F0F0F0F0F0)


def _pairs_to_u64(x: np.ndarray) -> np.ndarray:
    """Eight bytes of values 0-99 (most significant first) to one integer."""
    x = (x & _LOW_BYTES) + ((x >> _u64(8)) & _LOW_BYTES) * _u64(100)
    x = (x & _LOW_HALVES) + ((x >> _u64(16)) & _LOW_HALVES) * _u64(10000)
    return (x & _LOW_WORD) + (x >> _u64(32)) * _u64(100000000)


def packed_words_to_u64(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """16 BCD nibbles per uint64 (most significant first) to integers.

    Returns (values, valid) where valid is False when a nibble is above 9. Works on all
    words at once with a handful of integer operations (SWAR).
    """
    valid = (((words + _NIBBLE_SIXES) ^ words ^ _NIBBLE_SIXES) & _NIBBLE_CARRIES) == 0
    valid &= (words >> _u64(60)) <= _u64(9)
    pairs = (words & _LOW_NIBBLES) + ((words >> _u64(4)) & _LOW_NIBBLES) * _u64(10)
    return _pairs_to_u64(pairs), valid


def digit_words_to_u64(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8 digit bytes per uint64 (0x?0-0x?9, most significant first) to integers.

    Returns (values, valid) where valid is False when a byte's low nibble is above 9; the
    zone (high) nibbles are ignored here.
    """
    digits = words & _LOW_NIBBLES
    valid = ((digits + _BYTE_SIXES) & _HIGH_NIBBLES) == 0
    x = (digits & _LOW_BYTES) + ((digits >> _u64(8)) & _LOW_BYTES) * _u64(10)
    x = (x & _LOW_HALVES) + ((x >> _u64(16)) & _LOW_HALVES) * _u64(100)
    return (x & _LOW_WORD) + (x >> _u64(32)) * _u64(10000), valid


def digits_to_u64(digits: np.ndarray) -> np.ndarray:
    """Rows of decimal digits (most significant first, at most 19 columns) to uint64."""
    width = digits.shape[1]
    if width == 0:
        return np.zeros(digits.shape[0], dtype=np.uint64)
    weights = POW10[width - 1 :: -1] if width > 1 else POW10[:1]
    return digits.astype(np.uint64) @ weights


def digits_to_magnitudes(digits: np.ndarray) -> Magnitudes:
    """Rows of decimal digits (any width up to 38) to exact unsigned integers."""
    width = digits.shape[1]
    if width <= 19:
        return Magnitudes(digits_to_u64(digits))
    hi = np.zeros(digits.shape[0], dtype=np.uint64)
    lo = np.zeros(digits.shape[0], dtype=np.uint64)
    start = 0
    first = width % _CHUNK or _CHUNK
    for end in range(first, width + 1, _CHUNK):
        chunk = digits_to_u64(digits[:, start:end])
        hi, lo = _mul_const(hi, lo, 10 ** (end - start))
        hi, lo = _add(hi, lo, chunk)
        start = end
    return Magnitudes(lo, hi)


def scale_up(values: Magnitudes, exponent: int) -> Magnitudes:
    """Multiply by 10**exponent (exponent >= 0), widening to 128 bits when needed."""
    if exponent == 0:
        return values
    hi = values.hi if values.hi is not None else np.zeros_like(values.lo)
    lo = values.lo
    while exponent > 0:
        step = min(exponent, 19)
        hi, lo = _mul_const(hi, lo, 10**step)
        exponent -= step
    return Magnitudes(lo, hi)


def scale_up_rows(values: Magnitudes, exponents: np.ndarray) -> Magnitudes:
    """Multiply each value by 10**exponents[i] (small non-negative per-row exponents)."""
    out = values
    for exponent in np.unique(exponents):
        if exponent == 0:
            continue
        rows = exponents == exponent
        scaled = scale_up(values.take(rows), int(exponent))
        out = assign_rows(out, rows, scaled)
    return out


def assign_rows(base: Magnitudes, rows: np.ndarray, part: Magnitudes) -> Magnitudes:
    """A copy of `base` with the values at `rows` (indices or mask) replaced by `part`."""
    lo = base.lo.copy()
    lo[rows] = part.lo
    if base.hi is None and part.hi is None:
        return Magnitudes(lo)
    hi = np.zeros_like(lo) if base.hi is None else base.hi.copy()
    hi[rows] = 0 if part.hi is None else part.hi
    return Magnitudes(lo, hi)


def _at_least(values: Magnitudes, bound: int) -> np.ndarray:
    """values >= bound, elementwise (bound < 2**128)."""
    bound_hi, bound_lo = np.uint64(bound >> 64), np.uint64(bound & (2**64 - 1))
    hi = values.hi if values.hi is not None else np.zeros_like(values.lo)
    return (hi > bound_hi) | ((hi == bound_hi) & (values.lo >= bound_lo))


def _validity(null: np.ndarray) -> tuple[pa.Buffer | None, int]:
    null_count = int(np.count_nonzero(null))
    if null_count == 0:
        return None, 0
    return pa.py_buffer(np.packbits(~null, bitorder="little")), null_count


def to_arrow(
    values: Magnitudes, negative: np.ndarray, null: np.ndarray, value_type: pa.DataType
) -> tuple[pa.Array, np.ndarray]:
    """Signed values (magnitude and sign) as an Arrow array of `value_type`.

    Returns the array and a mask of the rows that were valid but did not fit the type
    (they are null in the array, as Spark makes values that overflow their type).
    """
    if pa.types.is_decimal(value_type):
        limit = 10**value_type.precision
    elif value_type == pa.int32():
        limit = 2**31
    else:
        limit = 2**63
    overflow = _at_least(values, limit) & ~null
    if value_type in (pa.int32(), pa.int64()):
        # the most negative value (-2**31 / -2**63) fits although its magnitude is the limit
        hi_zero = True if values.hi is None else values.hi == 0
        overflow &= ~(negative & (values.lo == np.uint64(limit)) & hi_zero)
    bad = null | overflow
    signed = values.lo.view(np.int64)
    if value_type in (pa.int32(), pa.int64()):
        ints = np.where(negative, -signed, signed)
        ints = np.where(bad, 0, ints)
        np_type = np.int32 if value_type == pa.int32() else np.int64
        return pa.array(ints.astype(np_type), type=value_type, mask=bad), overflow
    hi = values.hi if values.hi is not None else np.zeros_like(values.lo)
    lo = values.lo
    neg_lo = ~lo + np.uint64(1)
    neg_hi = ~hi + (lo == 0).astype(np.uint64)
    buffer = np.empty((len(lo), 2), dtype=np.uint64)
    buffer[:, 0] = np.where(negative, neg_lo, lo)
    buffer[:, 1] = np.where(negative, neg_hi, hi)
    buffer[bad] = 0
    validity, null_count = _validity(bad)
    array = pa.Array.from_buffers(
        value_type, len(lo), [validity, pa.py_buffer(buffer)], null_count=null_count
    )
    return array, overflow
