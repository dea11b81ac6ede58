"""DISPLAY numbers: zoned decimals, SIGN SEPARATE and edited pictures, EBCDIC or ASCII.

Plain zoned fields of up to 19 digits go through a fast path: the digits are packed into
big-endian 64-bit words and validated and converted eight at a time (SWAR). Rows the fast
path cannot take (spaces, explicit signs or points, edited pictures, wider fields) go
through the general reader, which classifies every character and checks the layout:
optional spaces around the number, at most one sign (an overpunched digit, or a '+'/'-'
at either end), at most one decimal point where the picture has one.

Cobrix conventions kept: a blank field is null, except that an implied-decimal field (V)
reads blanks as zero; with improved null detection off, low-values read as zero.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import pyarrow as pa

from fabric.copybook.encoding import Display
from fabric.copybook.settings import Decoded, DecodeSettings, all_zero_rows
from fabric.copybook.wideint import (
    Magnitudes,
    assign_rows,
    digit_words_to_u64,
    digits_to_magnitudes,
    scale_up,
    scale_up_rows,
    to_arrow,
)

_HIGH_NIBBLES = np.uint64(0xF0F0F0F0F0F0F0F0)
_FAST_MAX_WIDTH = 19


class _Char(IntEnum):
    INVALID = 0
    DIGIT = 1
    PLUS_DIGIT = 2  # a digit with an overpunched positive sign
    MINUS_DIGIT = 3  # a digit with an overpunched negative sign
    SPACE = 4
    PLUS = 5
    MINUS = 6
    POINT = 7
    COMMA = 8
    LOW_VALUE = 9


def _char_tables(ebcdic: bool) -> tuple[np.ndarray, np.ndarray]:
    kind = np.zeros(256, dtype=np.uint8)
    value = np.zeros(256, dtype=np.uint8)
    if ebcdic:
        for d in range(10):
            kind[0xF0 + d], value[0xF0 + d] = _Char.DIGIT, d
            kind[0xC0 + d], value[0xC0 + d] = _Char.PLUS_DIGIT, d
            kind[0xD0 + d], value[0xD0 + d] = _Char.MINUS_DIGIT, d
        specials = {0x40: _Char.SPACE, 0x4E: _Char.PLUS, 0x60: _Char.MINUS, 0x4B: _Char.POINT,
                    0x6B: _Char.COMMA, 0x00: _Char.LOW_VALUE}  # fmt: skip
    else:
        for d in range(10):
            kind[0x30 + d], value[0x30 + d] = _Char.DIGIT, d
            kind[0x70 + d], value[0x70 + d] = _Char.MINUS_DIGIT, d  # Micro Focus p-y
        for d, (plus, minus) in enumerate(zip("{ABCDEFGHI", "}JKLMNOPQR", strict=True)):
            kind[ord(plus)], value[ord(plus)] = _Char.PLUS_DIGIT, d
            kind[ord(minus)], value[ord(minus)] = _Char.MINUS_DIGIT, d
        specials = {0x20: _Char.SPACE, 0x2B: _Char.PLUS, 0x2D: _Char.MINUS, 0x2E: _Char.POINT,
                    0x2C: _Char.COMMA, 0x00: _Char.LOW_VALUE}  # fmt: skip
    for byte, char in specials.items():
        kind[byte] = char
    return kind, value


_TABLES = {True: _char_tables(ebcdic=True), False: _char_tables(ebcdic=False)}


def decode_display(
    raw: np.ndarray,
    available: np.ndarray | None,
    encoding: Display,
    value_type: pa.DataType,
    settings: DecodeSettings,
) -> Decoded:
    m, width = raw.shape
    number = encoding.number
    all_low = all_zero_rows(raw)
    truncated = np.zeros(m, dtype=bool) if available is None else available < width
    null = truncated.copy()
    if settings.improved_null_detection:
        null |= all_low
    plain = not (encoding.edited or encoding.explicit_point or encoding.sign_separate)
    if plain and width <= _FAST_MAX_WIDTH:
        values, negative, fast = _plain_fast(raw, encoding, settings)
    else:
        values = Magnitudes(np.zeros(m, dtype=np.uint64))
        negative = np.zeros(m, dtype=bool)
        fast = np.zeros(m, dtype=bool)
    invalid = np.zeros(m, dtype=bool)
    slow = np.flatnonzero(~fast & ~null)
    if slow.size:
        part, part_negative, part_null, part_invalid = _parse_rows(raw[slow], encoding, settings)
        values = assign_rows(values, slow, part)
        negative[slow] = part_negative
        null[slow] |= part_null
        invalid[slow] = part_invalid
    if not settings.improved_null_detection:
        zero = all_low & ~truncated  # low-values read as zero
        null &= ~zero
        invalid &= ~zero
        values = assign_rows(values, zero, Magnitudes(np.zeros(int(zero.sum()), np.uint64)))
    null |= invalid
    values = scale_up(values, number.multiplier_exponent)
    array, overflow = to_arrow(values, negative, null, value_type)
    return Decoded(array, invalid, overflow)


def _plain_fast(
    raw: np.ndarray, encoding: Display, settings: DecodeSettings
) -> tuple[Magnitudes, np.ndarray, np.ndarray]:
    """Values of rows made of digits with at most an overpunched sign at the sign position.

    Returns (magnitudes, negative, fast): rows where `fast` is False must be re-read.
    """
    m, width = raw.shape
    words = (width + 7) // 8
    pad = 8 * words - width
    zone = 0xF0 if settings.ebcdic else 0x30
    buffer = np.empty((m, 8 * words), dtype=np.uint8)
    buffer[:, :pad] = zone
    buffer[:, pad:] = raw
    sign_at = pad if encoding.sign_leading else 8 * words - 1
    sign_byte = buffer[:, sign_at].copy()
    negative = np.zeros(m, dtype=bool)
    if settings.ebcdic:
        sign_zone = sign_byte >> 4
        buffer[:, sign_at] = zone | (sign_byte & 0x0F)
        if encoding.number.signed:
            sign_ok = (sign_zone == 0xF) | (sign_zone == 0xC) | (sign_zone == 0xD)
            negative = sign_zone == 0xD
        elif settings.strict_sign_overpunching:
            sign_ok = sign_zone == 0xF
        else:
            sign_ok = (sign_zone == 0xF) | (sign_zone == 0xC)
    else:
        sign_ok = np.ones(m, dtype=bool)  # overpunched ASCII signs take the general path
    packed = buffer.view(">u8").astype(np.uint64)
    zone_word = np.uint64(int.from_bytes(bytes([zone]) * 8, "big"))
    fast = sign_ok
    value = np.zeros(m, dtype=np.uint64)
    for k in range(words):
        part, valid = digit_words_to_u64(packed[:, k])
        fast = fast & valid & ((packed[:, k] & _HIGH_NIBBLES) == zone_word)
        value = value * np.uint64(10**8) + part
    return Magnitudes(value), negative & fast, fast


def _parse_rows(
    raw: np.ndarray, encoding: Display, settings: DecodeSettings
) -> tuple[Magnitudes, np.ndarray, np.ndarray, np.ndarray]:
    """The general reader: returns (magnitudes, negative, null, invalid) for each row."""
    kind_table, value_table = _TABLES[settings.ebcdic]
    kinds = kind_table[raw]
    digits = value_table[raw]
    k, width = kinds.shape
    number = encoding.number
    positions = np.arange(width)[None, :]
    blank = (kinds == _Char.SPACE) | (kinds == _Char.LOW_VALUE)
    filled = ~blank
    anything = filled.any(axis=1)
    first = np.where(anything, filled.argmax(axis=1), 0)
    last = np.where(anything, width - 1 - filled[:, ::-1].argmax(axis=1), -1)
    inside = (positions >= first[:, None]) & (positions <= last[:, None])
    at_edge = (positions == first[:, None]) | (positions == last[:, None])

    is_digit = (kinds >= _Char.DIGIT) & (kinds <= _Char.MINUS_DIGIT)
    sign_chars = (kinds == _Char.PLUS) | (kinds == _Char.MINUS)
    overpunch = (kinds == _Char.PLUS_DIGIT) | (kinds == _Char.MINUS_DIGIT)
    points = kinds == _Char.POINT
    invalid = (kinds == _Char.INVALID).any(axis=1)
    invalid |= (blank & inside).any(axis=1)
    invalid |= sign_chars.sum(axis=1) > 1
    invalid |= (sign_chars & ~at_edge).any(axis=1)
    invalid |= overpunch.sum(axis=1) > 1
    invalid |= overpunch.any(axis=1) & sign_chars.any(axis=1)
    if not encoding.edited:
        invalid |= (kinds == _Char.COMMA).any(axis=1)
    if encoding.explicit_point:
        invalid |= points.sum(axis=1) > 1
    else:
        invalid |= points.any(axis=1)
    if settings.strict_sign_overpunching:
        sign_col = 0 if encoding.sign_leading else width - 1
        invalid |= (overpunch & (positions != sign_col)).any(axis=1)
    else:
        first_digit = is_digit.argmax(axis=1)
        last_digit = width - 1 - is_digit[:, ::-1].argmax(axis=1)
        digit_edge = (positions == first_digit[:, None]) | (positions == last_digit[:, None])
        invalid |= (overpunch & ~digit_edge).any(axis=1)
    negative = ((kinds == _Char.MINUS) | (kinds == _Char.MINUS_DIGIT)).any(axis=1)
    if not number.signed:
        invalid |= negative
        if settings.strict_sign_overpunching:
            invalid |= overpunch.any(axis=1)
    digit_count = is_digit.sum(axis=1)
    no_digits = digit_count == 0
    invalid |= no_digits & (sign_chars.any(axis=1) | points.any(axis=1))
    invalid |= digit_count > 38
    # Right-align the digits, skipping signs, points and blanks.
    to_right = np.cumsum(is_digit[:, ::-1], axis=1)[:, ::-1] - is_digit
    slots = min(width, 38)
    aligned = np.zeros((k, slots), dtype=np.uint8)
    rows, cols = np.nonzero(is_digit & (to_right < slots))
    aligned[rows, slots - 1 - to_right[rows, cols]] = digits[rows, cols]
    values = digits_to_magnitudes(aligned)
    if encoding.explicit_point:
        point_at = np.where(points.any(axis=1), points.argmax(axis=1), width)
        fraction = (is_digit & (positions > point_at[:, None])).sum(axis=1)
        invalid |= fraction > number.scale
        values = scale_up_rows(values, np.clip(number.scale - fraction, 0, None))
    # A blank field is null, except an implied-decimal one, which Cobrix reads as zero.
    null = no_digits & ~invalid
    if number.scale > 0 and not encoding.explicit_point:
        null[:] = False
    return values, negative & ~invalid, null, invalid
