"""Decoding a column of field occurrences: dispatch by encoding, binaries and floats.

Text is in `text`, zoned (DISPLAY) numbers in `zoned`, packed decimals in `packed`; this
module dispatches and decodes binary integers (byte-order views) and COMP-1/COMP-2
(IEEE 754 views, or IBM hexadecimal floating point converted with integer arithmetic and
`ldexp`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fabric.copybook.encoding import (
    Alphanumeric,
    Binary,
    Display,
    Encoding,
    Floating,
    National,
    Packed,
)
from fabric.copybook.packed import decode_packed
from fabric.copybook.settings import Decoded, DecodeSettings
from fabric.copybook.text import decode_national, decode_text
from fabric.copybook.wideint import Magnitudes, scale_up, to_arrow
from fabric.copybook.zoned import decode_display


def decode(
    encoding: Encoding,
    value_type: pa.DataType,
    raw: np.ndarray,
    available: np.ndarray | None,
    settings: DecodeSettings,
) -> Decoded:
    """Decode one column (one occurrence per row of `raw`) of a field stored as `encoding`."""
    if isinstance(encoding, Alphanumeric):
        return Decoded(decode_text(raw, available, settings))
    if isinstance(encoding, National):
        return Decoded(decode_national(raw, available, settings))
    if isinstance(encoding, Display):
        return decode_display(raw, available, encoding, value_type, settings)
    if isinstance(encoding, Packed):
        return decode_packed(raw, available, encoding, value_type, settings)
    if isinstance(encoding, Binary):
        return decode_binary(raw, available, encoding, value_type)
    return decode_float(raw, available, encoding, settings)


def decode_binary(
    raw: np.ndarray, available: np.ndarray | None, encoding: Binary, value_type: pa.DataType
) -> Decoded:
    """COMP / COMP-4 / COMP-5 / BINARY (big-endian) and COMP-9 (little-endian)."""
    m, width = raw.shape
    number = encoding.number
    big_endian = raw[:, ::-1] if encoding.little_endian else raw
    values, negative = _binary_magnitudes(np.ascontiguousarray(big_endian), number.signed)
    null = np.zeros(m, dtype=bool) if available is None else available < width
    values = scale_up(values, number.multiplier_exponent)
    array, overflow = to_arrow(values, negative, null, value_type)
    return Decoded(array, None, overflow)


def _binary_magnitudes(data: np.ndarray, signed: bool) -> tuple[Magnitudes, np.ndarray]:
    m, width = data.shape
    if width in (1, 2, 4, 8):
        view = data.view(np.dtype(f">{'i' if signed else 'u'}{width}")).reshape(m)
        if signed:
            wide = view.astype(np.int64)
            return Magnitudes(np.abs(wide).view(np.uint64)), wide < 0
        return Magnitudes(view.astype(np.uint64)), np.zeros(m, dtype=bool)
    if width > 16:
        raise ValueError(f"binary fields of {width} bytes are not supported")
    padded = np.zeros((m, 16), dtype=np.uint8)
    padded[:, 16 - width :] = data
    negative = signed & (data[:, 0] >= 0x80)
    padded[negative, : 16 - width] = 0xFF
    limbs = padded.view(">u8").reshape(m, 2).astype(np.uint64)
    hi, lo = limbs[:, 0], limbs[:, 1]
    neg_lo = ~lo + np.uint64(1)
    neg_hi = ~hi + (lo == 0).astype(np.uint64)
    return Magnitudes(np.where(negative, neg_lo, lo), np.where(negative, neg_hi, hi)), negative


def decode_float(
    raw: np.ndarray, available: np.ndarray | None, encoding: Floating, settings: DecodeSettings
) -> Decoded:
    """COMP-1 (4 bytes) / COMP-2 (8 bytes), IBM hexadecimal or IEEE 754, either byte order."""
    m, width = raw.shape
    fmt = settings.floating_point_format
    order = "<" if fmt.endswith("little_endian") else ">"
    data = np.ascontiguousarray(raw)
    if fmt.startswith("ieee754"):
        values = data.view(f"{order}f{width}").reshape(m).astype(np.float64)
    else:
        bits = data.view(f"{order}u{width}").reshape(m).astype(np.uint64)
        fraction_bits = 8 * width - 8
        sign = (bits >> np.uint64(8 * width - 1)).astype(bool)
        exponent = ((bits >> np.uint64(fraction_bits)) & np.uint64(0x7F)).astype(np.int64)
        fraction = (bits & np.uint64((1 << fraction_bits) - 1)).astype(np.float64)
        values = np.ldexp(fraction, (4 * (exponent - 64) - fraction_bits).astype(np.int32))
        values = np.where(sign, -values, values)
    null = None if available is None else available < width
    arrow_type = pa.float32() if width == 4 else pa.float64()
    np_type = np.float32 if width == 4 else np.float64
    return Decoded(pa.array(values.astype(np_type), type=arrow_type, mask=null))
