"""Text fields (PIC X / A / N) and the raw-bytes debug columns.

The common case is decoded without touching single bytes in Python or NumPy loops: the
column is translated with `bytes.translate` to ASCII (or, when it holds other characters,
decoded with the code page's charmap and encoded as UTF-8), viewed as an Arrow string
array and trimmed by Arrow's kernel (Java's String.trim semantics: every character up to
U+0020 goes). Short records, control bytes in ASCII data and UTF-8 data take the general
path, which builds the UTF-8 bytes from per-code-page tables with NumPy masks.
"""

from __future__ import annotations

import codecs

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fabric.copybook.codepages import CodePage
from fabric.copybook.settings import DecodeSettings, all_zero_rows

JAVA_TRIMMED = "".join(chr(c) for c in range(0x21))


def _positions(width: int) -> np.ndarray:
    return np.arange(width, dtype=np.int64)[None, :]


def _validity(null: np.ndarray | None) -> tuple[pa.Buffer | None, int]:
    if null is None or not null.any():
        return None, 0
    return pa.py_buffer(np.packbits(~null, bitorder="little")), int(null.sum())


def _string_array(
    data: np.ndarray, lengths: np.ndarray, null: np.ndarray | None, value_type: pa.DataType
) -> pa.Array:
    """A string/binary array from concatenated bytes and per-row lengths."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    large = offsets[-1] >= 2**31
    arrow_type = value_type
    if large:
        arrow_type = pa.large_string() if value_type == pa.string() else pa.large_binary()
    validity, null_count = _validity(null)
    array = pa.Array.from_buffers(
        arrow_type,
        len(lengths),
        [
            validity,
            pa.py_buffer(offsets if large else offsets.astype(np.int32)),
            pa.py_buffer(np.ascontiguousarray(data)),
        ],
        null_count=null_count,
    )
    return array


def _trim(array: pa.Array, trimming: str) -> pa.Array:
    if trimming == "both":
        return pc.ascii_trim(array, characters=JAVA_TRIMMED)
    if trimming == "left":
        return pc.ascii_ltrim(array, characters=JAVA_TRIMMED)
    if trimming == "right":
        return pc.ascii_rtrim(array, characters=JAVA_TRIMMED)
    return array


def _null_rows(raw: np.ndarray, available: np.ndarray | None, settings: DecodeSettings) -> np.ndarray:
    null = all_zero_rows(raw) if settings.improved_null_detection else np.zeros(len(raw), bool)
    if available is not None:
        null |= available <= 0
    return null


def decode_text(raw: np.ndarray, available: np.ndarray | None, settings: DecodeSettings) -> pa.Array:
    """PIC X / PIC A through the code page (or ASCII charset), trimmed Java-style."""
    null = _null_rows(raw, available, settings)
    if available is None:
        fast = _ascii_text(raw, null, settings)
        if fast is not None:
            return fast
    page = settings.code_page
    if page is None:
        return _decode_utf8(raw, available, settings.trimming, null)
    return _decode_with_table(raw, available, page, settings, null)


def _ascii_text(raw: np.ndarray, null: np.ndarray, settings: DecodeSettings) -> pa.Array | None:
    """The fast paths, or None when the column needs the general one.

    A column whose characters are all ASCII is translated byte for byte; one holding other
    characters of a code page is decoded with the page's charmap and re-encoded as UTF-8.
    """
    m, width = raw.shape
    column = np.ascontiguousarray(raw)
    page = settings.code_page
    ascii_only = column
    if page is not None:
        ascii_only = np.frombuffer(column.tobytes().translate(page.ascii_translation), np.uint8)
    removes_controls = not settings.ebcdic and settings.trimming != "keep_all"
    if removes_controls and column.size and column.min() < 0x20:
        return None  # Spark removes control bytes from ASCII text: the general path does
    lengths = np.full(m, width, dtype=np.int64)
    if column.size and ascii_only.max() >= 0x80:
        if page is None:
            return None  # UTF-8 needs validation: the general path
        # A str decoding table is CPython's fast path (typeshed only lists the dict form).
        text = codecs.charmap_decode(column.tobytes(), "strict", page.charmap)[0]  # type: ignore[arg-type]
        encoded = np.frombuffer(text.encode("utf-8"), np.uint8)
        _, char_lengths = page.utf8
        lengths = char_lengths[column].sum(axis=1)
        return _trim(_string_array(encoded, lengths, null, pa.string()), settings.trimming)
    return _trim(_string_array(ascii_only, lengths, null, pa.string()), settings.trimming)


def _trim_bounds(
    significant: np.ndarray, trimming: str, limit: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of each row's kept span, given which positions are not trimmable."""
    m, width = significant.shape
    end_default = np.full(m, width, dtype=np.int64) if limit is None else limit.astype(np.int64)
    if trimming in ("none", "keep_all"):
        return np.zeros(m, dtype=np.int64), end_default
    anything = significant.any(axis=1)
    start = np.zeros(m, dtype=np.int64)
    end = end_default
    if trimming in ("left", "both"):
        start = np.where(anything, significant.argmax(axis=1), 0)
    if trimming in ("right", "both"):
        end = np.where(anything, width - significant[:, ::-1].argmax(axis=1), 0)
    if trimming == "left":
        start = np.where(anything, start, end)
    return start, end


def _row_sums(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sum `values` (1-D, row-major) in consecutive runs of `counts` items."""
    totals = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=totals[1:])
    ends = np.cumsum(counts)
    return totals[ends] - totals[ends - counts]


def _decode_with_table(
    raw: np.ndarray,
    available: np.ndarray | None,
    page: CodePage,
    settings: DecodeSettings,
    null: np.ndarray,
) -> pa.Array:
    positions = _positions(raw.shape[1])
    significant = ~page.trimmable[raw]
    keep = None
    if not settings.ebcdic and settings.trimming != "keep_all":
        keep = raw >= 0x20  # Spark drops control bytes from ASCII text
    if available is not None:
        in_range = positions < available[:, None]
        significant &= in_range
        keep = in_range if keep is None else keep & in_range
    start, end = _trim_bounds(significant, settings.trimming, available)
    span = (positions >= start[:, None]) & (positions < end[:, None])
    keep = span if keep is None else keep & span
    codes = raw[keep]
    counts = keep.sum(axis=1)
    table, lengths = page.utf8
    char_lengths = lengths[codes]
    if codes.size == 0 or char_lengths.max() == 1:
        return _string_array(table[codes, 0], counts, null, pa.string())
    starts = np.cumsum(char_lengths) - char_lengths
    repeated = np.repeat(codes, char_lengths)
    within = np.arange(int(char_lengths.sum())) - np.repeat(starts, char_lengths)
    data = table[repeated, within]
    return _string_array(data, _row_sums(char_lengths, counts), null, pa.string())


def _decode_utf8(raw: np.ndarray, available: np.ndarray | None, trimming: str, null: np.ndarray) -> pa.Array:
    """ASCII data as UTF-8 (Spark's default): control bytes dropped, bad sequences U+FFFD."""
    m, width = raw.shape
    keep = raw >= 0x20 if trimming != "keep_all" else np.ones(raw.shape, dtype=bool)
    if available is not None:
        keep &= _positions(width) < available[:, None]
    if trimming == "keep_all" and (raw == 0).any():
        limit = available if available is not None else np.full(m, width)
        rows = [bytes(r[: int(n)]).decode("utf-8", "replace") for r, n in zip(raw, limit, strict=True)]
        text = pa.array(rows, type=pa.string())
    else:
        framed = np.zeros((m, width + 1), dtype=np.uint8)  # a 0x00 ends each row
        framed[:, :width] = raw
        marks = np.ones((m, width + 1), dtype=bool)
        marks[:, :width] = keep
        decoded = framed[marks].tobytes().decode("utf-8", "replace")
        text = pa.array(decoded.split("\x00")[:m], type=pa.string())
    if trimming == "both":
        text = pc.utf8_trim(text, characters=" ")
    elif trimming == "left":
        text = pc.utf8_ltrim(text, characters=" ")
    elif trimming == "right":
        text = pc.utf8_rtrim(text, characters=" ")
    if null.any():
        text = pc.if_else(pa.array(null), pa.scalar(None, pa.string()), text)
    return text


def decode_national(raw: np.ndarray, available: np.ndarray | None, settings: DecodeSettings) -> pa.Array:
    """PIC N: big-endian UTF-16 code units (surrogate pairs are not combined)."""
    null = _null_rows(raw, available, settings)
    m, width = raw.shape
    units = raw[:, : width - width % 2].reshape(m, -1, 2)
    points = (units[:, :, 0].astype(np.uint32) << 8) | units[:, :, 1]
    significant = points > 0x20
    limit = None if available is None else available // 2
    if limit is not None:
        significant &= _positions(points.shape[1]) < limit[:, None]
    start, end = _trim_bounds(significant, settings.trimming, limit)
    positions = _positions(points.shape[1])
    keep = (positions >= start[:, None]) & (positions < end[:, None])
    chosen = points[keep]
    lengths = 1 + (chosen >= 0x80) + (chosen >= 0x800)
    data = np.zeros((len(chosen), 3), dtype=np.uint8)
    one, two, three = lengths == 1, lengths == 2, lengths == 3
    data[one, 0] = chosen[one]
    data[two, 0] = 0xC0 | (chosen[two] >> 6)
    data[two, 1] = 0x80 | (chosen[two] & 0x3F)
    data[three, 0] = 0xE0 | (chosen[three] >> 12)
    data[three, 1] = 0x80 | ((chosen[three] >> 6) & 0x3F)
    data[three, 2] = 0x80 | (chosen[three] & 0x3F)
    flat = data[np.arange(3)[None, :] < lengths[:, None]]
    return _string_array(flat, _row_sums(lengths, keep.sum(axis=1)), null, pa.string())


_HEX = np.frombuffer("".join(f"{b:02X}" for b in range(256)).encode(), np.uint8).reshape(256, 2)


def hex_strings(raw: np.ndarray, available: np.ndarray | None) -> pa.Array:
    """Upper-case hex of each row's bytes (Cobrix `debug=hex` columns)."""
    m, width = raw.shape
    digits = _HEX[raw].reshape(m, 2 * width)
    if available is None:
        return _string_array(digits, np.full(m, 2 * width), None, pa.string())
    keep = _positions(2 * width) < 2 * np.clip(available, 0, width)[:, None]
    return _string_array(digits[keep], keep.sum(axis=1), None, pa.string())


def raw_bytes(raw: np.ndarray, available: np.ndarray | None) -> pa.Array:
    """Each row's bytes as an Arrow binary value (Cobrix `debug=raw` columns)."""
    m, width = raw.shape
    if available is None:
        return _string_array(raw, np.full(m, width), None, pa.binary())
    keep = _positions(width) < np.clip(available, 0, width)[:, None]
    return _string_array(raw[keep], keep.sum(axis=1), None, pa.binary())
