"""Cutting a data file into records.

Formats: fixed length (`F`), records behind a header (`V`: 4-byte RDW, or a registered
custom header parser), records whose length a copybook field gives (`record_length_field`),
records whose length follows from their OCCURS DEPENDING ON counters, and text lines (`D`).
Records come out in `RecordBlock`s: a zero-padded (n, width) matrix of payload bytes plus
where each record came from, so the decoders can work column-wise on whole blocks.

Headers must be read one after the other, so finding record boundaries in variable-length
files is a loop over records; everything after it (decoding) is vectorised.

A problem with the framing itself (an RDW claiming more bytes than are left, a truncated
last record, a file that is not a whole number of fixed-length records) raises
`FramingError` with the byte offset, or, with `on_framing_error=quarantine`, becomes a
`FramingIssue` and reading goes on with the bytes that can be framed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fabric.copybook.errors import FramingError, OptionError


@dataclass
class RecordBlock:
    """Records as rows of a matrix, each padded with zeros to the block width."""

    data: np.ndarray  # (n, width) uint8
    lengths: np.ndarray | None  # (n,) payload bytes per record; None: all rows are full
    offsets: np.ndarray  # (n,) byte offset of each payload in the file
    numbers: np.ndarray  # (n,) 0-based position of each record in the file

    def __len__(self) -> int:
        return self.data.shape[0]

    def byte_lengths(self) -> np.ndarray:
        if self.lengths is None:
            return np.full(len(self), self.data.shape[1], dtype=np.int64)
        return self.lengths

    def take(self, rows: np.ndarray) -> RecordBlock:
        return RecordBlock(
            self.data[rows],
            None if self.lengths is None else self.lengths[rows],
            self.offsets[rows],
            self.numbers[rows],
        )


@dataclass(frozen=True)
class FramingIssue:
    """Bytes that could not be framed into a record, kept for the quarantine."""

    path: str
    offset: int
    length: int
    reason: str
    data: bytes


class RecordHeaderParser(Protocol):
    """Reads the header in front of each variable-length record."""

    @property
    def header_size(self) -> int: ...

    def parse(self, header: bytes, offset: int) -> tuple[int, bool]:
        """(payload length, whether the record is valid); invalid records are skipped."""


@dataclass(frozen=True)
class RdwParser:
    """A 4-byte record descriptor word.

    Cobrix reads it little-endian by default: when the first two bytes are zero the length
    is bytes 2-3 (low byte first), otherwise bytes 0-1. Big-endian reads bytes 0-1 (or 2-3
    when 0-1 are zero) high byte first. `adjustment` is added to the decoded length.
    """

    big_endian: bool = False
    adjustment: int = 0
    header_size: int = 4

    def parse(self, header: bytes, offset: int) -> tuple[int, bool]:
        pair = header[2:4] if header[0] == 0 and header[1] == 0 else header[0:2]
        length = int.from_bytes(pair, "big" if self.big_endian else "little")
        return length + self.adjustment, True


HeaderParserFactory = Callable[[str | None], RecordHeaderParser]
_HEADER_PARSERS: dict[str, HeaderParserFactory] = {}


def register_record_header_parser(name: str, factory: HeaderParserFactory) -> None:
    """Make `record_header_parser=<name>` use `factory(rhp_additional_info)`."""
    _HEADER_PARSERS[name] = factory


def header_parser(name: str, additional_info: str | None) -> RecordHeaderParser:
    if name not in _HEADER_PARSERS:
        known = ", ".join(sorted(_HEADER_PARSERS)) or "none registered"
        raise OptionError(f"unknown record_header_parser {name!r} ({known})")
    return _HEADER_PARSERS[name](additional_info)


@dataclass(frozen=True)
class Framing:
    """Where the framed bytes come from and what to do with framing problems."""

    path: str
    base_offset: int  # file offset of the first framed byte (after file_start_offset)
    chunk_records: int  # records per block
    policy: str  # on_framing_error: "fail" or "quarantine"

    def problem(self, position: int, reason: str, data: bytes) -> FramingIssue:
        """Raise the problem at `position` (relative to the framed bytes), or return it as
        an issue when quarantining."""
        offset = self.base_offset + position
        if self.policy == "fail":
            raise FramingError(
                f"{reason} (set on_framing_error=quarantine to keep reading)",
                path=self.path,
                offset=offset,
            )
        return FramingIssue(self.path, offset, len(data), reason, data)


def fixed_blocks(
    buffer: np.ndarray, framing: Framing, record_length: int, payload: tuple[int, int]
) -> Iterator[RecordBlock | FramingIssue]:
    """Fixed-length records; `payload` is the (start, end) of the copybook bytes in each."""
    count, remainder = divmod(len(buffer), record_length)
    if remainder:
        yield framing.problem(
            count * record_length,
            f"the data is {len(buffer)} bytes, not a whole number of {record_length}-byte "
            f"records: the last {remainder} bytes are a truncated record (check the "
            f"copybook, record_length and the file offsets)",
            bytes(buffer[count * record_length :]),
        )
    matrix = buffer[: count * record_length].reshape(count, record_length)
    start, end = payload
    for first in range(0, count, framing.chunk_records):
        last = min(first + framing.chunk_records, count)
        numbers = np.arange(first, last, dtype=np.int64)
        yield RecordBlock(
            data=np.array(matrix[first:last, start:end]),  # a copy: outlives the file mapping
            lengths=None,
            offsets=framing.base_offset + numbers * record_length + start,
            numbers=numbers,
        )


@dataclass
class Spans:
    """Where records are: payload offsets and lengths within the buffer."""

    starts: list[int]
    lengths: list[int]
    numbers: list[int]


def header_spans(
    data: bytes | memoryview, parser: RecordHeaderParser, framing: Framing
) -> Iterator[Spans | FramingIssue]:
    """Walk record headers; yields spans in batches of up to `chunk_records` records."""
    size = len(data)
    position = 0
    number = 0
    spans = Spans([], [], [])
    header_size = parser.header_size
    while position < size:
        if position + header_size > size:
            yield framing.problem(
                position,
                f"{size - position} bytes left at the end, too few for a {header_size}-byte record header",
                bytes(data[position:]),
            )
            break
        length, valid = parser.parse(bytes(data[position : position + header_size]), position)
        payload = position + header_size
        if length < 0 or payload + length > size:
            yield framing.problem(
                position,
                f"the record header announces {length} bytes but only {size - payload} are "
                f"left in the file (a truncated last record, or a wrong RDW setting: "
                f"is_rdw_big_endian / rdw_adjustment)",
                bytes(data[position:]),
            )
            break
        if valid and length > 0:
            spans.starts.append(payload)
            spans.lengths.append(length)
            spans.numbers.append(number)
            if len(spans.starts) >= framing.chunk_records:
                yield spans
                spans = Spans([], [], [])
        number += 1
        position = payload + length
    if spans.starts:
        yield spans


def sized_spans(
    data: bytes | memoryview, record_size: Callable[[int], int], framing: Framing
) -> Iterator[Spans | FramingIssue]:
    """Records back to back whose size `record_size(position)` reads from the record itself."""
    size = len(data)
    position = 0
    number = 0
    spans = Spans([], [], [])
    while position < size:
        try:
            length = record_size(position)
        except (IndexError, ValueError) as exc:
            yield framing.problem(position, f"cannot size the record: {exc}", bytes(data[position:]))
            break
        if length <= 0 or position + length > size:
            yield framing.problem(
                position,
                f"the record needs {length} bytes but {size - position} are left (a truncated last record?)",
                bytes(data[position:]),
            )
            break
        spans.starts.append(position)
        spans.lengths.append(length)
        spans.numbers.append(number)
        if len(spans.starts) >= framing.chunk_records:
            yield spans
            spans = Spans([], [], [])
        number += 1
        position += length
    if spans.starts:
        yield spans


def text_spans(buffer: np.ndarray, *, chunk_records: int) -> Iterator[Spans]:
    """Lines ended by LF (a CR before it is dropped); a last line without LF counts too."""
    ends = np.flatnonzero(buffer == 0x0A)
    starts = np.concatenate(([0], ends + 1))
    stops = np.concatenate((ends, [len(buffer)]))
    if stops[-1] == starts[-1]:
        starts, stops = starts[:-1], stops[:-1]
    has_cr = (stops > starts) & (buffer[np.maximum(stops - 1, 0)] == 0x0D)
    stops = stops - has_cr
    numbers = np.arange(len(starts))
    nonempty = stops > starts
    for first in range(0, len(starts), chunk_records):
        part = slice(first, first + chunk_records)
        keep = nonempty[part]
        yield Spans(
            starts[part][keep].tolist(),
            (stops[part] - starts[part])[keep].tolist(),
            numbers[part][keep].tolist(),
        )


def gather(
    buffer: np.ndarray,
    spans: Spans,
    *,
    base_offset: int,
    payload: tuple[int, int | None],
    width: int,
) -> RecordBlock:
    """Copy spans into a zero-padded block of `width` columns.

    `payload` = (bytes to skip at the start of each record, bytes to drop at its end).
    """
    skip, drop = payload
    starts = np.asarray(spans.starts, dtype=np.int64) + skip
    lengths = np.asarray(spans.lengths, dtype=np.int64) - skip - (drop or 0)
    lengths = np.clip(lengths, 0, width)
    columns = np.arange(width, dtype=np.int64)
    index = starts[:, None] + columns[None, :]
    inside = columns[None, :] < lengths[:, None]
    data = buffer[np.minimum(index, len(buffer) - 1)] if len(buffer) else np.zeros(index.shape)
    data = np.where(inside, data, 0).astype(np.uint8)
    full = bool((lengths == width).all())
    return RecordBlock(
        data=data,
        lengths=None if full else lengths,
        offsets=base_offset + starts,
        numbers=np.asarray(spans.numbers, dtype=np.int64),
    )
