"""Packed decimals (COMP-3, and COMP-3U without a sign nibble).

Fields of up to 10 bytes (19 digits) are read as big-endian 64-bit words and converted
sixteen nibbles at a time (SWAR); wider ones go digit by digit into 128-bit integers. The
sign nibble C, A, E or F is positive, B or D negative; anything else, or a digit nibble
above 9, makes the value invalid. A field of only low-values or only spaces is blank
(null, not invalid).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fabric.copybook.encoding import Packed
from fabric.copybook.settings import Decoded, DecodeSettings, all_zero_rows, uniform_rows
from fabric.copybook.wideint import (
    Magnitudes,
    digits_to_magnitudes,
    packed_words_to_u64,
    scale_up,
    to_arrow,
)

_U4 = np.uint64(4)
_U60 = np.uint64(60)
_NIBBLE = np.uint64(0x0F)


def decode_packed(
    raw: np.ndarray,
    available: np.ndarray | None,
    encoding: Packed,
    value_type: pa.DataType,
    settings: DecodeSettings,
) -> Decoded:
    m, width = raw.shape
    if width <= 10:
        values, sign, invalid = _words(raw, encoding.has_sign_nibble)
    else:
        values, sign, invalid = _digits(raw, encoding.has_sign_nibble)
    negative = np.zeros(m, dtype=bool)
    if encoding.has_sign_nibble:
        invalid |= sign < 0x0A
        negative = (sign == 0x0B) | (sign == 0x0D)
        if not encoding.number.signed:
            invalid |= negative
    null = all_zero_rows(raw) | uniform_rows(raw, 0x40 if settings.ebcdic else 0x20)
    if available is not None:
        null |= available < width
    invalid &= ~null
    values = scale_up(values, encoding.number.multiplier_exponent)
    array, overflow = to_arrow(values, negative, null | invalid, value_type)
    return Decoded(array, invalid, overflow)


def _words(raw: np.ndarray, has_sign: bool) -> tuple[Magnitudes, np.ndarray, np.ndarray]:
    """(magnitudes, sign nibbles, invalid) for fields of at most 10 bytes."""
    m, width = raw.shape
    size = 8 if width <= 8 else 16
    buffer = np.zeros((m, size), dtype=np.uint8)
    buffer[:, size - width :] = raw
    words = buffer.view(">u8").astype(np.uint64)
    lo = words[:, -1]
    sign = (lo & _NIBBLE).astype(np.uint8)
    if size == 8:
        digits = lo >> _U4 if has_sign else lo
        value, valid = packed_words_to_u64(digits)
        return Magnitudes(value), sign, ~valid
    hi = words[:, 0]
    if has_sign:
        lo = (lo >> _U4) | (hi << _U60)
        hi = hi >> _U4
    low_value, low_valid = packed_words_to_u64(lo)
    high_value, high_valid = packed_words_to_u64(hi)
    value = high_value * np.uint64(10**16) + low_value
    return Magnitudes(value), sign, ~(low_valid & high_valid)


def _digits(raw: np.ndarray, has_sign: bool) -> tuple[Magnitudes, np.ndarray, np.ndarray]:
    """(magnitudes, sign nibbles, invalid) nibble by nibble, for wide fields."""
    m, width = raw.shape
    nibbles = np.empty((m, 2 * width), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0x0F
    digits = nibbles[:, :-1] if has_sign else nibbles
    invalid = np.asarray((digits > 9).any(axis=1), dtype=bool)
    return digits_to_magnitudes(digits), nibbles[:, -1], invalid
