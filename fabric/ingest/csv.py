"""CSV day files: DuckDB's reader for speed, an independent record scan for exact accounting.

Every physical record of a file must end up loaded or quarantined, with the physical line where
it starts; DuckDB's `read_csv` gives no line for the rows it accepts, only approximate byte
positions for the ones it rejects, and (duckdb 1.5.5) sometimes accepts a row it should reject.
So each file is first scanned here, in chunks (streaming):

1. decompress gzip (recognised by its magic bytes) and transcode to UTF-8 (`files.transcode`;
   DuckDB cannot read cp1252 without a 350 MB extension), escaping undecodable and NUL bytes and
   noting their lines; a copy is written only when the bytes change (always for cp1252 and
   gzip, never for clean UTF-8); a UTF-8 BOM and the declared `skip_rows` lines are stepped
   over (quote parity starts after them);
2. find the records by quote parity with numpy: a newline ends a record when the number of
   quote characters before it is even (exact for RFC 4180 quoting, where `""` is a quote).
   Empty lines between records are skipped and counted nowhere; with `header`, the first
   non-empty record is the header: its names map the file's fields to the columns (by name,
   so the order may differ; `contract` compares the names with the contract). Per record, its
   offset, size, line, span and quoting (quote characters that are syntax, not value content)
   are kept per chunk in the narrowest integer type that holds them, a column that is the same
   for the whole chunk as one number (`_Part`: 2 bytes a record for short single-line records),
   never as whole-file int64 arrays.

DuckDB then reads all files of one newline style and header in one `read_csv` scan (all
VARCHAR, strict, rejects stored). In the common case (`CsvStage._stage_fast`) that scan fills a
TEMP table with, per row, the bytes its values hold, which numpy compares with the records
found here in batches of `_BATCH_ROWS` rows (Python's memory stays bounded whatever the file's
size; DuckDB's is `warehouse.ingest_memory_limit`). If DuckDB rejected a row or returned
another number of rows than records, the group is read again and cross-checked per file:
each reject must fall on a record that Python's csv module also finds bad, the accepted rows
must be the other records in order, each spanning as many lines as its record; then a row whose
values do not hold exactly the record's bytes (besides delimiters and quoting) is re-parsed
here. A file that fails the cross-check, that DuckDB refuses to read, or
that mixes CRLF and LF terminators is parsed record by record with Python's csv module instead
(in batches of `_INSERT_ROWS` records): slower, same result (a test compares both on random
files).

Reason codes: `field_count`, `quoting` (unterminated or misplaced quote), `encoding`, then
`type_cast` / `null_value` from casting. Null markers apply to quoted values too ("" is null).
The raw text of a quarantined record is its exact text from the file (as UTF-8).
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fabric.config import Column, CsvSource, FileEntity
from fabric.errors import ConfigError, SourceError
from fabric.identifiers import literal, quote
from fabric.ingest.casting import BOOKKEEPING
from fabric.ingest.files import DayFile, check_encoding, line_of, transcode

_CHUNK_BYTES = 4 << 20  # bytes scanned at once (transient memory: a few times this)
_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
_BATCH_ROWS = 1 << 20  # rows fetched from DuckDB at once to be checked against their records
_INSERT_ROWS = 100_000  # records parsed here and inserted at once
_NEWLINE_OPTION = {"\n": "\\n", "\r\n": "\\r\\n"}  # as read_csv spells them
Int64Array = npt.NDArray[np.int64]
Narrow = npt.NDArray[np.unsignedinteger[Any]] | int  # see `_narrow`
# A record DuckDB rejects for its size (max_line_size) is parsed here: no limit on a field's size
# (the csv module's default is 128 KiB), as a record is only ever as big as the file.
csv.field_size_limit(2**31 - 1)


@dataclass(frozen=True)
class Dialect:
    """The declared CSV dialect of a source."""

    encoding: str
    delimiter: str
    quote: str
    header: bool
    null_markers: tuple[str, ...]
    skip_rows: int = 0
    decimal_separator: str = "."

    @classmethod
    def of(cls, source: CsvSource, key: str) -> Dialect:
        for name, value in (("delimiter", source.delimiter), ("quote", source.quote)):
            if len(value) != 1 or not value.isascii() or value in "\r\n":
                raise ConfigError(f"{key}.{name}: must be one ASCII character, got {value!r}")
        if source.delimiter == source.quote:
            raise ConfigError(f"{key}: delimiter and quote must differ")
        if source.decimal_separator == source.delimiter:
            raise ConfigError(f"{key}: decimal_separator and delimiter must differ")
        encoding = check_encoding(source.encoding, f"{key}.encoding")
        return cls(
            encoding="utf-8" if encoding == "utf-8-sig" else encoding,  # the BOM is always skipped
            delimiter=source.delimiter,
            quote=source.quote,
            header=source.header,
            null_markers=tuple(source.null_markers),
            skip_rows=source.skip_rows,
            decimal_separator=source.decimal_separator,
        )


class _Arrays(NamedTuple):
    """Per-record values of some consecutive records (see `Records`)."""

    starts: Int64Array  # byte offset of each record in the file DuckDB reads
    ends: Int64Array  # byte offset just after it (terminator excluded)
    lines: Int64Array  # 1-based physical line where it starts
    spans: Int64Array  # physical lines it covers
    quoting: Int64Array  # its quote characters that are not value content (see `_Segmenter`)


def _narrow(values: Int64Array) -> Narrow:
    """Values that are not negative as one int when they are all equal (the common case: every
    record one line long, one terminator between records), else in the narrowest unsigned type."""
    if not len(values):
        return 0
    low, high = int(values.min()), int(values.max())
    return low if low == high else values.astype(np.min_scalar_type(high))


def _wide(values: Narrow, count: int) -> Int64Array:
    if isinstance(values, int):
        return np.full(count, values, dtype=np.int64)
    return values.astype(np.int64)


@dataclass(frozen=True)
class _Part:
    """The records found in one chunk of a file, stored compactly (`_narrow`): the first record's
    offset and line, then per record its size, the bytes and lines between its start and the
    previous record's end and start, its span and its quoting (quote characters that are not
    value content)."""

    count: int
    start: int
    line: int
    sizes: Narrow  # ends - starts
    gaps: Narrow  # starts[i] - ends[i - 1], for i >= 1 (terminator and blank lines)
    advances: Narrow  # lines[i] - lines[i - 1], for i >= 1
    spans: Narrow
    quoting: Narrow

    @classmethod
    def of(cls, values: _Arrays) -> _Part:
        starts, ends, lines, spans, quoting = values
        return cls(
            len(starts), int(starts[0]), int(lines[0]), _narrow(ends - starts),
            _narrow(starts[1:] - ends[:-1]), _narrow(np.diff(lines)), _narrow(spans), _narrow(quoting),
        )  # fmt: skip

    def wide(self, name: str) -> Int64Array:
        """`sizes`, `spans` or `quoting` as int64."""
        values: Narrow = getattr(self, name)
        return _wide(values, self.count)

    def arrays(self) -> _Arrays:
        sizes = self.wide("sizes")
        starts = np.empty(self.count, dtype=np.int64)
        starts[0] = self.start
        starts[1:] = sizes[:-1] + _wide(self.gaps, self.count - 1)
        np.cumsum(starts, out=starts)
        lines = np.empty(self.count, dtype=np.int64)
        lines[0] = self.line
        lines[1:] = _wide(self.advances, self.count - 1)
        np.cumsum(lines, out=lines)
        return _Arrays(starts, starts + sizes, lines, self.wide("spans"), self.wide("quoting"))


@dataclass
class Records:
    """The records of one CSV file, found by quote parity (header and empty lines excluded).

    Stored as `_Part`s, one per chunk scanned (a few bytes per record for a file of short
    single-line records); `part` gives a part's values as int64 arrays, `take` and `index_at`
    look values up across parts.
    """

    file: DayFile
    read_path: Path  # the UTF-8 bytes DuckDB reads: the file itself or a transcoded copy
    header: str | None
    names: tuple[str, ...] | None  # the header's column names (None without a header)
    parts: list[_Part]
    bad: dict[int, str]  # record index -> encoding problem
    newline: str | None  # '\n' or '\r\n'; None when the file mixes them
    firsts: Int64Array = field(init=False, repr=False)  # index of each part's first record, then len
    _cached: tuple[int, _Arrays] | None = field(default=None, init=False, repr=False)
    _handle: BinaryIO | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._index()

    def _index(self) -> None:
        self.firsts = np.concatenate(([0], np.cumsum([p.count for p in self.parts], dtype=np.int64)))
        self._cached = None

    def __len__(self) -> int:
        return int(self.firsts[-1])

    def part(self, number: int) -> _Arrays:
        """The values of part `number` (the last one asked for is kept)."""
        if self._cached is None or self._cached[0] != number:
            self._cached = (number, self.parts[number].arrays())
        return self._cached[1]

    def drop_first(self) -> None:
        """Remove the first record (the header)."""
        if self.parts[0].count == 1:
            self.parts.pop(0)
        else:
            self.parts[0] = _Part.of(_Arrays(*(values[1:] for values in self.part(0))))
        self._index()

    def take(self, indices: npt.ArrayLike) -> _Arrays:
        """The values of the records `indices` (in any order)."""
        wanted = np.asarray(indices, dtype=np.int64)
        found = _Arrays(*(np.empty(len(wanted), dtype=np.int64) for _ in _Arrays._fields))
        order = np.argsort(wanted, kind="stable")
        bounds = np.searchsorted(wanted[order], self.firsts)
        for number in np.flatnonzero(np.diff(bounds)).tolist():
            rows = order[bounds[number] : bounds[number + 1]]
            for into, values in zip(found, self.part(number), strict=True):
                into[rows] = values[wanted[rows] - self.firsts[number]]
        return found

    def index_at(self, name: str, values: npt.ArrayLike) -> Int64Array:
        """For each of `values` (in any order), the last record whose `starts` or `lines` is at
        most the value (-1 when there is none)."""
        wanted = np.asarray(values, dtype=np.int64)
        heads = np.array([p.start if name == "starts" else p.line for p in self.parts], dtype=np.int64)
        found = np.full(len(wanted), -1, dtype=np.int64)
        order = np.argsort(wanted, kind="stable")
        bounds = np.searchsorted(wanted[order], np.append(heads, np.iinfo(np.int64).max))
        for number in np.flatnonzero(np.diff(bounds)).tolist():
            rows = order[bounds[number] : bounds[number + 1]]
            column: Int64Array = getattr(self.part(number), name)
            found[rows] = self.firsts[number] + np.searchsorted(column, wanted[rows], side="right") - 1
        return found

    def texts(self, indices: Sequence[int]) -> list[str]:
        """The records' texts (one read of the file, records in any order)."""
        found = self.take(indices)
        spans = zip(found.starts.tolist(), found.ends.tolist(), strict=True)
        with self.reading():
            return [self.between(start, end).decode("utf-8") for start, end in spans]

    def text(self, index: int) -> str:
        return self.texts([index])[0]

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Keep the file open for the `between` calls made meanwhile."""
        if self._handle is not None:
            yield
            return
        with self.read_path.open("rb") as self._handle:
            try:
                yield
            finally:
                self._handle = None

    def between(self, start: int, end: int) -> bytes:
        """The file's bytes from `start` to `end`."""
        if end <= start:
            return b""
        if self._handle is None:
            with self.reading():
                return self.between(start, end)
        self._handle.seek(start)
        return self._handle.read(end - start)


class _Segmenter:
    """Finds record boundaries in consecutive chunks of UTF-8 text (each ending at a newline,
    except the last) by quote parity, with numpy over whole chunks.

    Per record it also counts its quoting: the quote characters that are syntax, not value
    content. Inside quotes a doubled quote is one quote of the value; such a pair starts at a
    quote with an odd number of quotes before it in the record, directly followed by another.
    A well-quoted record's values then hold exactly `size - (fields - 1) - quoting` bytes, which
    DuckDB's rows are checked against (`CsvStage._check_rows`).
    """

    def __init__(self, quote: str) -> None:
        self.quote = ord(quote)
        self.offset = 0  # bytes fed so far
        self.lines = 0  # newlines fed so far
        self.quotes = 0  # quote characters fed so far
        self.escaped = 0  # doubled quotes inside quotes fed so far (one value quote each)
        self.start, self.start_line, self.start_quoting = 0, 1, 0  # the record being read
        self.crlf = self.lf = 0
        self.parts: list[_Part] = []

    def feed(self, chunk: bytes) -> None:
        raw = np.frombuffer(chunk, np.uint8)
        newlines = np.flatnonzero(raw == 10)
        quotes = np.flatnonzero(raw == self.quote)
        before = self.quotes + np.searchsorted(quotes, newlines)  # quotes before each newline
        odd = ((self.quotes + np.arange(len(quotes) - 1)) & 1) == 1
        escaped = quotes[:-1][odd & (quotes[1:] == quotes[:-1] + 1)]
        quoting = before - self.escaped - np.searchsorted(escaped, newlines)  # before each newline
        terminates = (before & 1) == 0
        ending = newlines[terminates]
        carriage = np.zeros(len(ending), dtype=bool)
        inside = ending > 0
        carriage[inside] = raw[ending[inside] - 1] == 13
        self.crlf += int(carriage.sum())
        self.lf += len(carriage) - int(carriage.sum())
        if len(ending):
            last_line = np.flatnonzero(terminates) + self.lines + 1
            quoting_at_end = quoting[terminates]
            first_line = np.concatenate(([self.start_line], last_line[:-1] + 1))
            self._add(
                np.concatenate(([self.start], ending[:-1] + 1 + self.offset)),
                ending + self.offset - carriage,
                first_line,
                last_line - first_line + 1,
                np.diff(quoting_at_end, prepend=self.start_quoting),
            )
            self.start = int(ending[-1]) + 1 + self.offset
            self.start_line = int(last_line[-1]) + 1
            self.start_quoting = int(quoting_at_end[-1])
        self.offset += len(chunk)
        self.lines += len(newlines)
        self.quotes += len(quotes)
        self.escaped += len(escaped)

    def skip(self, chunk: bytes) -> None:
        """Advance over bytes that hold no records (a BOM, the lines before the header).
        Their quote characters do not count: quote parity starts after them."""
        self.offset += len(chunk)
        self.lines += chunk.count(b"\n")
        self.start, self.start_line = self.offset, self.lines + 1
        self.start_quoting = self.quotes - self.escaped

    def finish(self) -> list[_Part]:
        """The records found, empty records (blank lines) left out."""
        if self.start < self.offset:  # a last record without a newline
            self._add(
                np.array([self.start]),
                np.array([self.offset]),
                np.array([self.start_line]),
                np.array([self.lines + 1 - self.start_line + 1]),
                np.array([self.quotes - self.escaped - self.start_quoting]),
            )
        return self.parts

    def _add(self, *columns: Int64Array) -> None:
        """Store the records of one chunk (starts, ends, lines, spans, quoting) as a part."""
        keep = columns[1] > columns[0]
        if keep.any():
            self.parts.append(_Part.of(_Arrays(*(values[keep].astype(np.int64) for values in columns))))


def _open(path: Path) -> gzip.GzipFile | io.BufferedReader:
    """The file's bytes, decompressed when it is gzip (recognised by its magic bytes)."""
    with path.open("rb") as probe:
        gzipped = probe.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if gzipped else path.open("rb")


def scan_records(file: DayFile, dialect: Dialect, copy_path: Path) -> Records:
    """Transcode (if needed) and segment one file; see the module docstring."""
    segmenter = _Segmenter(dialect.quote)
    bad_lines: dict[int, str] = {}
    copied = 0
    copy = None
    to_skip = dialect.skip_rows  # lines before the header (or the first record)
    first = True
    try:
        with _open(file.path) as handle:
            compressed = not isinstance(handle, io.BufferedReader)
            carry = b""
            while True:
                block = handle.read(_CHUNK_BYTES)
                data = carry + block
                if block:
                    cut = data.rfind(b"\n") + 1
                    if not cut:
                        carry = data
                        continue
                    chunk, carry = data[:cut], data[cut:]
                else:
                    chunk, carry = data, b""
                out, bad = transcode(chunk, dialect.encoding)
                if copy is None and (out is not chunk or compressed):
                    copy = copy_path.open("wb")
                    with _open(file.path) as original:  # earlier chunks were unchanged
                        copy.write(original.read(copied))
                if copy is not None:
                    copy.write(out)
                copied += len(chunk)
                base = segmenter.lines  # newlines before this chunk
                bom = first and dialect.encoding == "utf-8" and out.startswith(_BOM)
                skipped = len(_BOM) if bom else 0
                first = False
                while to_skip and skipped < len(out):
                    skipped = out.find(b"\n", skipped) + 1 or len(out)
                    to_skip -= 1
                if skipped:
                    segmenter.skip(out[:skipped])
                for (line, column), problem in zip(line_of(chunk, [b.offset for b in bad]), bad, strict=True):
                    bad_lines.setdefault(base + line + 1, f"{problem.description} at column {column + 1}")
                segmenter.feed(out[skipped:])
                if not block:
                    break
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(f"file {file.path}: cannot read it ({exc})") from None
    finally:
        if copy is not None:
            copy.close()
    records = Records(
        file=file,
        read_path=copy_path if copy is not None else file.path,
        header=None,
        names=None,
        parts=segmenter.finish(),
        bad={},
        newline=None if segmenter.crlf and segmenter.lf else "\r\n" if segmenter.crlf else "\n",
    )
    if dialect.header and len(records):
        records.header = records.text(0)
        header = records.part(0)
        header_lines = range(int(header.lines[0]), int(header.lines[0] + header.spans[0]))
        if any(line in header_lines for line in bad_lines):
            raise SourceError(f"file {file.path}: the header line holds bytes that are not text")
        records.names = header_names(records, dialect)
        records.drop_first()
    if bad_lines and len(records):
        lines = list(bad_lines)
        for index, line in zip(records.index_at("lines", lines).tolist(), lines, strict=True):
            if index >= 0:
                records.bad.setdefault(index, bad_lines[line])
    return records


def header_names(records: Records, dialect: Dialect) -> tuple[str, ...]:
    """The column names in a file's header (trimmed); refuses empty or repeated names."""
    assert records.header is not None
    try:
        found = next(
            csv.reader(
                io.StringIO(records.header, newline=""),
                delimiter=dialect.delimiter,
                quotechar=dialect.quote,
                strict=True,
            )
        )
    except (csv.Error, StopIteration):
        found = [records.header]
    names = tuple(name.strip() for name in found)
    repeated = sorted({n for n in names if names.count(n) > 1 or not n})
    if repeated:
        raise SourceError(
            f"file {records.file.path} line {records.part(0).lines[0]}: the header names columns "
            f"{list(names)}, with empty or repeated names {repeated}; fix the file's header"
        )
    return names


class CsvStage:
    """Stages the CSV day files of a window as text records (see `casting`).

    `scan` reads the files' records and headers; `stage` then stages the given columns, each
    taken from the file's field of the same source name (`Column.path`, else its name) when
    the file has a header, by position otherwise. A column the file lacks is null.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        source: CsvSource,
        entity: FileEntity,
        key: str,
        workdir: Path,
    ) -> None:
        self.con = con
        self.dialect = Dialect.of(source, key.rsplit(".entities.", 1)[0])
        self.key = key
        self.columns = list(entity.columns)
        self.workdir = workdir
        self.records: dict[int, Records] = {}
        self.scanned = False
        self.parsed_in_python: list[Path] = []  # files DuckDB's reader could not be trusted with
        self.ordered = True  # the staged rows come in `_fabric_seq` order (no sort needed)

    def scan(self, files: Sequence[DayFile]) -> dict[int, tuple[str, ...] | None]:
        """Find the records of the existing `files`; their header names, by file index."""
        names = {}
        for file in files:
            records = scan_records(file, self.dialect, self.workdir / f"{file.index}.csv")
            names[file.index] = records.names
            if len(records):
                self.records[file.index] = records
        self.scanned = True
        return names

    def stage(
        self,
        files: Sequence[DayFile],
        relation: str,
        python_only: bool = False,
        columns: Sequence[Column] | None = None,
    ) -> None:
        """Create TEMP relation `relation` holding one row per record of the existing `files`,
        with the text of `columns` (default: the entity's)."""
        if not self.scanned:
            self.scan(files)
        if columns is not None:
            self.columns = list(columns)
        if not self.columns:
            raise ConfigError(f"{self.key}.columns: a CSV entity without a header needs its columns declared")
        text = f"{relation}_text" if self.dialect.decimal_separator != "." else relation
        schema = ", ".join(
            [f"{name} {kind}" for name, kind in BOOKKEEPING]
            + [f"{quote(c.name)} VARCHAR" for c in self.columns]
        )
        parts = [f"{text}_parsed"]  # rows staged by inserts; whole groups read by _stage_fast
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {quote(parts[0])} ({schema})")
        fallback = [r for r in self.records.values() if python_only or r.newline is None]
        groups: dict[tuple[str, tuple[str, ...] | None], list[Records]] = {}
        for records in self.records.values():
            if records.newline is not None and not python_only:
                groups.setdefault((records.newline, records.names), []).append(records)
        for number, ((newline, _), group) in enumerate(groups.items()):
            if self._stage_fast(group, newline, f"{text}_read{number}", parts[0]):
                parts.append(f"{text}_read{number}")
            else:
                fallback += self._stage_duckdb(group, newline, parts[0])
        for records in fallback:
            self._insert(parts[0], records, range(len(records)))
        self.parsed_in_python = [r.file.path for r in fallback]
        if not _count(self.con.execute(f"SELECT count(*) FROM {quote(parts[0])}")):
            parts.pop(0)  # nothing parsed here: the read rows alone may already be in order
        self.ordered = self.ordered and len(parts) == 1 and parts[0] != f"{text}_parsed"
        self.con.execute(
            f"CREATE OR REPLACE TEMP VIEW {quote(text)} AS "
            + " UNION ALL BY NAME ".join(f"FROM {quote(part)}" for part in parts or [f"{text}_parsed"])
        )
        if text != relation:
            self._decimal_view(text, relation)

    def _width(self, records: Records) -> int:
        """Fields a record of this file must have."""
        return len(records.names) if records.names is not None else len(self.columns)

    def _fields(self, records: Records) -> list[int | None]:
        """For each staged column, the index of its field in this file's records (or None)."""
        if records.names is None:
            return list(range(len(self.columns)))
        where = {name: i for i, name in enumerate(records.names)}
        return [where.get(c.path or c.name) for c in self.columns]

    def _decimal_view(self, text: str, relation: str) -> None:
        """TEMP view `relation` over `text` reading numbers with a decimal comma: `12,50` is
        12.5; a value holding a point (a thousands separator, or the wrong separator) does not
        parse and quarantines its record (`type_cast`)."""
        numeric = [c for c in self.columns if c.type in ("decimal", "double")]
        if not numeric:
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW {quote(relation)} AS FROM {quote(text)}")
            return
        points = [f"contains({quote(c.name)}, '.')" for c in numeric]
        suffix = literal(" is not a number with decimal separator ','")
        reasons = ", ".join(
            f"CASE WHEN {point} THEN {literal(f'field {c.name}: ')} || {quote(c.name)} || {suffix} END"
            for c, point in zip(numeric, points, strict=True)
        )
        replaced = ", ".join(f"replace({quote(c.name)}, ',', '.') AS {quote(c.name)}" for c in numeric)
        self.con.execute(
            f"""CREATE OR REPLACE TEMP VIEW {quote(relation)} AS
                SELECT * REPLACE (
                    coalesce(_fabric_code, CASE WHEN {" OR ".join(points)} THEN 'type_cast' END)
                        AS _fabric_code,
                    CASE WHEN _fabric_code IS NOT NULL THEN _fabric_reason
                         WHEN {" OR ".join(points)} THEN concat_ws('; ', {reasons}) END
                        AS _fabric_reason,
                    {replaced})
                FROM {quote(text)}"""
        )

    def rows_read(self, file: DayFile) -> int:
        records = self.records.get(file.index)
        return len(records) if records is not None else 0

    def fill_raw(self, checked: str) -> None:
        """Set `_fabric_raw` of the quarantined records of TEMP table `checked` to their text."""
        rows = self.con.execute(
            f"SELECT _fabric_seq FROM {quote(checked)} WHERE _fabric_code IS NOT NULL"
        ).fetchnumpy()["_fabric_seq"]
        if not len(rows):
            return
        texts: list[str] = [""] * len(rows)
        files = rows >> 32
        for index in np.unique(files).tolist():
            positions = np.flatnonzero(files == index)
            records = self.records[index]
            found = records.texts(records.index_at("lines", rows[positions] & 0xFFFFFFFF).tolist())
            for position, text in zip(positions.tolist(), found, strict=True):
                texts[position] = text
        raw = pa.table({"seq": pa.array(rows, pa.int64()), "raw": pa.array(texts, pa.string())})
        self.con.register("_fabric_csv_raw", raw)
        try:
            self.con.execute(
                f"UPDATE {quote(checked)} SET _fabric_raw = r.raw FROM _fabric_csv_raw AS r "
                f"WHERE {quote(checked)}._fabric_seq = r.seq"
            )
        finally:
            self.con.unregister("_fabric_csv_raw")

    def _stage_duckdb(self, group: list[Records], newline: str, relation: str) -> list[Records]:
        """Read `group` with one DuckDB scan into `relation`; return the files that failed the
        cross-check or that DuckDB refuses to read (nothing of theirs is inserted)."""
        try:
            try:
                self._scan(group, newline)
            except duckdb.Error:
                # e.g. "the CSV Parser state machine reached an invalid state": find the file(s)
                if len(group) == 1:
                    return group
                return [f for r in group for f in self._stage_duckdb([r], newline, relation)]
            return self._reconcile(group, relation)
        finally:
            for table in ("_fabric_csv_rows", "_fabric_csv_rejects", "_fabric_csv_scans"):
                self.con.execute(f"DROP TABLE IF EXISTS {table}")

    def _target(self, relation: str) -> str:
        """`relation` with its column list."""
        names = [name for name, _ in BOOKKEEPING] + [quote(c.name) for c in self.columns]
        return f"{quote(relation)} ({', '.join(names)})"

    def _stage_fast(self, group: list[Records], newline: str, table: str, parsed: str) -> bool:
        """The common case: DuckDB reads `group` in one parallel scan into a TEMP table of text
        values plus, per row, the bytes its values hold (`strlen` of each, which costs nothing:
        DuckDB keeps a string's length); numpy then checks each row against its record: a row
        is `inexact` unless its values hold the record's bytes besides delimiters and quoting
        (`_Segmenter`). With as many rows per file as records, no reject, and the rows in
        order, a row that is not its record cannot hold exactly its bytes but by a coincidence
        of lengths. `table` becomes a view adding the bookkeeping columns, the line of a row
        being its rowid plus the file's offset (`_line_view`).

        Returns False, with no `table` left, when DuckDB rejected a row, refused a file, or
        returned another number of rows: `_stage_duckdb` then works out what it can use.
        Otherwise the inexact rows and the records with bytes that are not text are removed
        from `table` and re-parsed here into `parsed`, like `_reconcile` does.
        """
        width = self._width(group[0])
        con = self.con
        rows = quote(f"{table}_rows")
        mapped = ", ".join(
            f"{self._nulled(f'c{i}') if i is not None else 'NULL'}::VARCHAR AS {quote(c.name)}"
            for c, i in zip(self.columns, self._fields(group[0]), strict=True)
        )
        try:
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE {rows} AS
                    SELECT {mapped}, _fabric_file, {_value_bytes(width)} AS _fabric_chars
                    FROM {self._read_csv(group, newline)}"""
            )
            rejects = _count(con.execute("SELECT count(*) FROM _fabric_csv_rejects"))
            runs = con.execute(
                f"SELECT _fabric_file, min(rowid), count(*) FROM {rows} GROUP BY ALL ORDER BY 2"
            ).fetchall()
        except duckdb.Error:
            rejects, runs = -1, []
        finally:
            for scan in ("_fabric_csv_rejects", "_fabric_csv_scans"):
                con.execute(f"DROP TABLE IF EXISTS {scan}")
        # Each file's rows must be one run of rowids, the runs in group order, one row per record.
        expected = [(str(r.read_path), len(r)) for r in group]
        if rejects or [(str(path), int(count)) for path, _, count in runs] != expected:
            con.execute(f"DROP TABLE IF EXISTS {rows}")
            return False
        again = self._check_rows(group, rows, width)
        firsts = np.cumsum([0] + [len(r) for r in group])
        redo = [int(firsts[i]) + record for i, r in enumerate(group) for record in again[r.file.index]]
        if redo:
            con.execute(f"DELETE FROM {rows} WHERE rowid IN (SELECT unnest(?::BIGINT[]))", [redo])
            for index, records in again.items():
                self._insert(parsed, self.records[index], sorted(records))
        self._line_view(group, rows, table, firsts)
        return True

    def _check_rows(self, group: list[Records], rows: str, width: int) -> dict[int, set[int]]:
        """Compare the rows of TEMP table `rows` (`_fabric_chars`; one per record of `group`, in
        order) with their records, fetched in batches of `_BATCH_ROWS`: by file index the
        records to parse here (inexact rows and records with bytes that are not text)."""
        query = self.con.execute(f"SELECT _fabric_chars FROM {rows}")
        found = _Batches(query.to_arrow_reader(_BATCH_ROWS))
        again: dict[int, set[int]] = {}
        for records in group:
            again[records.file.index] = set(records.bad)
            for number, part in enumerate(records.parts):
                [chars] = found.take(part.count)
                inexact = chars != part.wide("sizes") - part.wide("quoting") - (width - 1)
                again[records.file.index].update((np.flatnonzero(inexact) + records.firsts[number]).tolist())
        return again

    def _line_view(self, group: list[Records], rows: str, view: str, firsts: npt.NDArray[np.int64]) -> None:
        """TEMP view `view` over the TEMP table `rows` (one row per record of `group`, in
        order) with the bookkeeping columns. A row's line is its rowid plus an offset that only
        changes after a record spanning several lines or blank lines, and at a new file: one
        step per change (`_fabric_csv_steps_*`), found by an ASOF join; with one step (the usual
        single-line file) the view needs no join and keeps the rows in order."""
        starts, offsets, files = [], [], []
        for first, records in zip(firsts[:-1].tolist(), group, strict=True):
            here, offset_here = [], []  # per part: the rows where the offset may change
            for number, part in enumerate(records.parts):
                row = first + int(records.firsts[number])
                if isinstance(part.advances, int) and part.advances == 1:  # one line per record
                    here.append(np.array([row]))
                    offset_here.append(np.array([part.line - row]))
                    continue
                offset = records.part(number).lines - np.arange(row, row + part.count)
                changes = np.concatenate(([0], np.flatnonzero(np.diff(offset)) + 1))
                here.append(changes + row)
                offset_here.append(offset[changes])
            step, offset = np.concatenate(here), np.concatenate(offset_here)
            changes = np.concatenate(([0], np.flatnonzero(np.diff(offset)) + 1))
            starts.append(step[changes])
            offsets.append(offset[changes])
            files.append(np.full(len(changes), records.file.index, dtype=np.int64))
        steps = pa.table(
            {
                "step": np.concatenate(starts).astype(np.int64),
                "line_offset": np.concatenate(offsets).astype(np.int64),
                "file": np.concatenate(files),
            }
        )
        names = ", ".join(f"r.{quote(c.name)}" for c in self.columns)
        bookkeeping = """s.day AS _fabric_partition, s.source AS _fabric_source,
                         'line ' || (r.rowid + s.line_offset) AS _fabric_position,
                         (s.file << 32) + r.rowid + s.line_offset AS _fabric_seq,
                         NULL::VARCHAR AS _fabric_raw, NULL::VARCHAR AS _fabric_code,
                         NULL::VARCHAR AS _fabric_reason"""
        if steps.num_rows == 1:
            records = group[0]
            self.con.execute(
                f"""CREATE OR REPLACE TEMP VIEW {quote(view)} AS
                    SELECT {bookkeeping}, {names}
                    FROM (SELECT rowid, * FROM {rows}) AS r,
                         (SELECT DATE {literal(records.file.day.isoformat())} AS day,
                                 {literal(str(records.file.path))} AS source,
                                 {int(steps["line_offset"][0].as_py())}::BIGINT AS line_offset,
                                 {records.file.index}::BIGINT AS file) AS s"""
            )
            return
        steps_table = quote(f"{view}_steps")
        self.con.register("_fabric_csv_steps_arrow", steps)
        self.con.register("_fabric_csv_files_arrow", self._files_table(group))
        try:
            self.con.execute(
                f"""CREATE OR REPLACE TEMP TABLE {steps_table} AS
                    SELECT step, line_offset, file, day, source
                    FROM _fabric_csv_steps_arrow JOIN _fabric_csv_files_arrow USING (file)"""
            )
        finally:
            self.con.unregister("_fabric_csv_steps_arrow")
            self.con.unregister("_fabric_csv_files_arrow")
        self.con.execute(
            f"""CREATE OR REPLACE TEMP VIEW {quote(view)} AS
                SELECT {bookkeeping}, {names}
                FROM (SELECT rowid, * FROM {rows}) AS r
                     ASOF JOIN {steps_table} AS s ON r.rowid >= s.step"""
        )
        self.ordered = False

    def _read_csv(self, group: list[Records], newline: str) -> str:
        """The `read_csv` call reading `group`: every field as text, rejects stored."""
        # strict_mode is left at its default (strict: a stray quote is a reject): passing
        # strict_mode = true explicitly together with new_line = '\r\n' makes duckdb 1.5.5
        # return no rows and no rejects at all (the cross-check would catch it, slowly).
        # Null markers are applied afterwards (nullstr NUL never matches: NUL bytes are escaped
        # by transcoding) so that every value keeps its length for the cross-check.
        dialect = self.dialect
        paths = "[" + ", ".join(literal(str(r.read_path)) for r in group) + "]"
        names = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(self._width(group[0]))) + "}"
        return f"""read_csv({paths}, columns = {names}, header = {dialect.header},
                    skip = {dialect.skip_rows},
                    delim = {literal(dialect.delimiter)}, quote = {literal(dialect.quote)},
                    escape = {literal(dialect.quote)},
                    new_line = {literal(_NEWLINE_OPTION[newline])},
                    nullstr = [chr(0)], auto_detect = false, null_padding = false,
                    filename = '_fabric_file', store_rejects = true,
                    rejects_table = '_fabric_csv_rejects', rejects_scan = '_fabric_csv_scans')"""

    def _scan(self, group: list[Records], newline: str) -> None:
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE _fabric_csv_rows AS SELECT * FROM {self._read_csv(group, newline)}"
        )

    def _reconcile(self, group: list[Records], relation: str) -> list[Records]:
        """Match DuckDB's rows and rejects to the records; insert the files that match.

        Per file: the rejects must be records that are bad here, and the accepted rows must be
        the other records, in order, each spanning as many lines as its record. Such a file
        loads DuckDB's rows, except rows whose values do not add up to their record's bytes
        (duckdb 1.5.5 drops a trailing empty extra field instead of rejecting the row): those
        records are parsed here, like the rejected and the undecodable ones.
        """
        con = self.con
        accepted = {
            str(path): (int(first), int(last), int(count))
            for path, first, last, count in con.execute(
                "SELECT _fabric_file, min(rowid), max(rowid), count(*) FROM _fabric_csv_rows GROUP BY ALL"
            ).fetchall()
        }
        rejected: dict[str, list[int]] = {}
        for path, offset in con.execute(
            """SELECT DISTINCT s.file_path, e.line_byte_position
               FROM _fabric_csv_rejects AS e JOIN _fabric_csv_scans AS s USING (scan_id, file_id)
               ORDER BY 1, 2"""
        ).fetchall():
            rejected.setdefault(str(path), []).append(int(offset))
        # Each file's rows must be one run of rowids, the runs tiling the table in file order,
        # for the line offsets below.
        expected_first = 0
        for first, last, count in sorted(accepted.values()):
            if first != expected_first or last - first + 1 != count:
                return group
            expected_first += count

        width = self._width(group[0])
        matched: dict[int, set[int]] = {}  # file index -> records parsed here
        rejected_records: dict[int, Int64Array] = {}  # file index -> its rejected records, sorted
        in_order = sorted(group, key=lambda r: accepted.get(str(r.read_path), (0, 0, 0)))
        for records in in_order:
            path = str(records.read_path)
            located = _locate_rejects(records, rejected.get(path, []), self.dialect, width)
            if located is not None and accepted.get(path, (0, -1, 0))[2] == len(records) - len(located):
                matched[records.file.index] = located | set(records.bad)
                rejected_records[records.file.index] = np.array(sorted(located), dtype=np.int64)
        # A row is its record when it spans as many lines; its values are right when they hold
        # as many bytes as the record does besides delimiters and quoting (`_Segmenter`). Rows
        # of a file that fails either are parsed here. (A plain scan returns rows in rowid
        # order: preserve_insertion_order.) The k-th row of a file is its k-th record that
        # DuckDB did not reject; its line is its rowid plus a stepwise offset.
        values = "concat(" + ", ".join(f"r.c{i}" for i in range(width)) + ")"
        found = _Batches(
            con.execute(
                f"""SELECT strlen(v) - strlen(replace(v, chr(10), '')) + 1 AS span, strlen(v) AS chars
                    FROM (SELECT {values} AS v FROM _fabric_csv_rows AS r)"""
            ).to_arrow_reader(_BATCH_ROWS)
        )
        steps: list[tuple[Int64Array, Int64Array, int]] = []  # (rowids, line offsets, file)
        skipped: list[int] = []  # rowids of the rows whose records are parsed here
        for records in in_order:
            index = records.file.index
            first, _, count = accepted.get(str(records.read_path), (0, -1, 0))
            if not count:  # no rows: every record rejected
                continue
            if index not in matched:
                found.skip(count)
                steps.append((np.array([first]), np.zeros(1, dtype=np.int64), index))
                continue
            shifted = rejected_records[index] - np.arange(len(rejected_records[index]))
            for row in range(0, count, _BATCH_ROWS):
                spans, chars = found.take(min(_BATCH_ROWS, count - row))
                rows = np.arange(row, row + len(spans))
                record = rows + np.searchsorted(shifted, rows, side="right")
                expected = records.take(record)
                if index in matched and not np.array_equal(spans, expected.spans):
                    del matched[index]
                if index not in matched:
                    continue
                inexact = chars != expected.ends - expected.starts - expected.quoting - (width - 1)
                matched[index].update(record[inexact].tolist())
                offset = expected.lines - (rows + first)
                changes = np.concatenate(([0], np.flatnonzero(np.diff(offset)) + 1))
                steps.append((rows[changes] + first, offset[changes], index))
            if index in matched:
                rejects = rejected_records[index]
                again = np.array(sorted(matched[index] - set(rejects.tolist())), dtype=np.int64)
                skipped += (first + again - np.searchsorted(rejects, again)).tolist()
            else:
                steps.append((np.array([first]), np.zeros(1, dtype=np.int64), index))
        del found
        if matched:
            fields = self._fields(group[0])
            nulled = ", ".join(self._nulled(f"r.c{i}") if i is not None else "NULL" for i in fields)
            if skipped:
                delete = "DELETE FROM _fabric_csv_rows WHERE rowid IN (SELECT unnest(?::BIGINT[]))"
                con.execute(delete, [skipped])
            con.register(
                "_fabric_csv_map",
                pa.table(
                    {
                        "step": np.concatenate([rowids for rowids, _, _ in steps]),
                        "line_offset": np.concatenate([offsets for _, offsets, _ in steps]),
                        "file": np.concatenate([np.full(len(r), i, dtype=np.int64) for r, _, i in steps]),
                    }
                ),
            )
            con.register("_fabric_csv_files", self._files_table([self.records[i] for i in matched]))
            try:
                con.execute(
                    f"""INSERT INTO {self._target(relation)}
                        SELECT f.day, f.source, 'line ' || (r.rowid + m.line_offset),
                               (m.file << 32) + r.rowid + m.line_offset, NULL, NULL, NULL, {nulled}
                        FROM (SELECT rowid, * FROM _fabric_csv_rows) AS r
                             ASOF JOIN _fabric_csv_map AS m ON r.rowid >= m.step
                             JOIN _fabric_csv_files AS f USING (file)"""
                )
            finally:
                con.unregister("_fabric_csv_map")
                con.unregister("_fabric_csv_files")
        for index, parsed_here in matched.items():
            self._insert(relation, self.records[index], sorted(parsed_here))
        return [r for r in group if r.file.index not in matched]

    def _nulled(self, value: str) -> str:
        """SQL applying the null markers to a value."""
        markers = self.dialect.null_markers
        if not markers:
            return value
        listed = ", ".join(literal(m) for m in markers)
        return f"CASE WHEN {value} IN ({listed}) THEN NULL ELSE {value} END"

    def _files_table(self, group: Sequence[Records]) -> pa.Table:
        """file index -> day and source path."""
        return pa.table(
            {
                "file": pa.array([r.file.index for r in group], pa.int64()),
                "day": pa.array([r.file.day for r in group], pa.date32()),
                "source": pa.array([str(r.file.path) for r in group], pa.string()),
            }
        )

    def _insert(self, relation: str, records: Records, indices: Sequence[int]) -> None:
        """Parse the records `indices` of a file here (`_parse_record`) into `relation`, in
        batches of `_INSERT_ROWS`."""
        for first in range(0, len(indices), _INSERT_ROWS):
            self._insert_batch(relation, records, indices[first : first + _INSERT_ROWS])

    def _insert_batch(self, relation: str, records: Records, indices: Sequence[int]) -> None:
        width = self._width(records)
        codes: list[str | None] = []
        reasons: list[str | None] = []
        values: list[list[str | None]] = [[] for _ in range(width)]
        for index, text in zip(indices, records.texts(indices), strict=True):
            code: str | None
            reason: str | None
            fields: list[str | None]
            if index in records.bad:
                code, reason, fields = "encoding", records.bad[index], [None] * width
            else:
                code, reason, fields = _parse_record(text, self.dialect, width)
            codes.append(code)
            reasons.append(reason)
            for column, value in zip(values, fields, strict=True):
                column.append(value)
        staged = ", ".join(f"p.c{i}" if i is not None else "NULL" for i in self._fields(records))
        part = pa.table(
            {
                "line": pa.array(records.take(indices).lines, pa.int64()),
                "code": pa.array(codes, pa.string()),
                "reason": pa.array(reasons, pa.string()),
                **{f"c{i}": pa.array(v, pa.string()) for i, v in enumerate(values)},
            }
        )
        self.con.register("_fabric_csv_part", part)
        try:
            self.con.execute(
                f"""INSERT INTO {self._target(relation)}
                    SELECT ?, ?, 'line ' || p.line, (?::BIGINT << 32) + p.line, NULL, p.code,
                           p.reason, {staged}
                    FROM _fabric_csv_part AS p""",
                [records.file.day, str(records.file.path), records.file.index],
            )
        finally:
            self.con.unregister("_fabric_csv_part")


class _Batches:
    """The int64 columns of a query result, taken in runs of any length from its record
    batches (so that a whole table's values are never in memory at once)."""

    def __init__(self, reader: pa.RecordBatchReader) -> None:
        self.reader = reader
        self.pending: list[Int64Array] = [np.zeros(0, dtype=np.int64)] * len(reader.schema)

    def take(self, count: int) -> list[Int64Array]:
        """The next `count` rows; raises SourceError when the result has fewer."""
        parts = [[values] for values in self.pending]
        have = len(self.pending[0])
        while have < count:
            try:
                batch = self.reader.read_next_batch()
            except StopIteration:
                raise SourceError(f"a staging query returned {count - have} rows too few") from None
            for into, column in zip(parts, batch.columns, strict=True):
                into.append(column.to_numpy().astype(np.int64, copy=False))
            have += batch.num_rows
        joined = [np.concatenate(values) if len(values) > 1 else values[0] for values in parts]
        self.pending = [values[count:] for values in joined]
        return [values[:count] for values in joined]

    def skip(self, count: int) -> None:
        for first in range(0, count, _BATCH_ROWS):
            self.take(min(_BATCH_ROWS, count - first))


def _count(cursor: duckdb.DuckDBPyConnection) -> int:
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def _value_bytes(width: int) -> str:
    """SQL for the bytes a row's text fields `c0`..`c<width-1>` hold (a NULL holds none)."""
    return " + ".join(f"coalesce(strlen(c{i}), 0)" for i in range(width))


def _locate_rejects(
    records: Records, offsets: Sequence[int], dialect: Dialect, width: int
) -> set[int] | None:
    """The records DuckDB rejected, or None when its rejects disagree with the records.

    DuckDB's `line_byte_position` is approximate: it may point after a record's opening quote,
    at its terminator or at empty lines before it. A reject belongs to the record spanning the
    offset (terminator included) or to the next one when only line breaks lie in between, and
    must be a record that parsing here finds bad.
    """
    located: set[int] = set()
    indices = records.index_at("starts", offsets).tolist()
    ends = records.take(np.maximum(indices, 0)).ends.tolist()
    following_starts = records.take(np.minimum(np.add(indices, 1), len(records) - 1)).starts.tolist()
    with records.reading():
        for offset, index, end, following_start in zip(offsets, indices, ends, following_starts, strict=True):
            candidates = [index] if index >= 0 and offset <= end else []
            following = index + 1
            if (
                following < len(records)
                and (index < 0 or offset >= end)
                and not records.between(offset, following_start).strip(b"\r\n")
            ):
                candidates.append(following)
            for candidate in candidates:
                if candidate not in located and (
                    candidate in records.bad
                    or _parse_record(records.text(candidate), dialect, width)[0] is not None
                ):
                    located.add(candidate)
                    break
            else:
                return None
    return located


def _parse_record(text: str, dialect: Dialect, width: int) -> tuple[str | None, str | None, list[str | None]]:
    """(code, reason, fields) of one record's text, parsed with Python's csv module (strict)."""
    fields: list[str | None] = [None] * width
    try:
        rows = list(
            csv.reader(
                io.StringIO(text, newline=""),
                delimiter=dialect.delimiter,
                quotechar=dialect.quote,
                doublequote=True,
                strict=True,
            )
        )
    except csv.Error as exc:
        return "quoting", f"malformed quoting ({exc})", fields
    if len(rows) != 1:
        return "quoting", "malformed quoting (a line break outside quotes)", fields
    if len(rows[0]) != width:
        return "field_count", f"expected {width} fields, got {len(rows[0])}", fields
    nulls = dialect.null_markers
    return None, None, [None if value in nulls else value for value in rows[0]]
