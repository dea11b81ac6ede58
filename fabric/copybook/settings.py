"""What every decoder shares: the decode settings and the result of decoding a column.

Decoders take `raw`, an (m, width) uint8 matrix with one field occurrence per row, and
optionally `available`, how many of those bytes the record really holds (a short
variable-length record may end inside a field).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from fabric.copybook.codepages import CodePage

TRIMMING_POLICIES = ("both", "left", "right", "none", "keep_all")
FLOATING_POINT_FORMATS = ("ibm", "ibm_little_endian", "ieee754", "ieee754_little_endian")


@dataclass(frozen=True)
class DecodeSettings:
    """How bytes become values; built from the reader options."""

    ebcdic: bool = True
    code_page: CodePage | None = None  # EBCDIC page, or ASCII single-byte charset; None: UTF-8
    trimming: str = "both"
    improved_null_detection: bool = True
    strict_sign_overpunching: bool = False
    floating_point_format: str = "ibm"


@dataclass
class Decoded:
    """A decoded column: values (null where not decodable) and what went wrong where."""

    array: pa.Array
    invalid: np.ndarray | None = None  # rows whose bytes are invalid for the encoding
    overflow: np.ndarray | None = None  # rows whose value does not fit the value type


def all_zero_rows(raw: np.ndarray) -> np.ndarray:
    """Rows made only of 0x00 bytes; only rows starting and ending with 0x00 are scanned."""
    m, width = raw.shape
    result = np.zeros(m, dtype=bool)
    if width == 0 or m == 0:
        return result
    candidates = np.flatnonzero((raw[:, 0] == 0) & (raw[:, -1] == 0))
    if candidates.size:
        result[candidates] = ~raw[candidates].any(axis=1)
    return result


def uniform_rows(raw: np.ndarray, byte: int) -> np.ndarray:
    """Rows made only of `byte`; only rows starting with it are scanned."""
    m, width = raw.shape
    result = np.zeros(m, dtype=bool)
    if width == 0 or m == 0:
        return result
    candidates = np.flatnonzero(raw[:, 0] == byte)
    if candidates.size:
        result[candidates] = (raw[candidates] == byte).all(axis=1)
    return result
