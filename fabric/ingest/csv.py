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
   so the order may differ; `contract` compares the names with the contract).

DuckDB then reads all files of one newline style and header in one `read_csv` scan (all
VARCHAR, strict, rejects stored). In the common case (`CsvStage._stage_fast`) that scan is
joined by position to the records found here and checked row by row on the way, straight into
the staged table: one pass. If DuckDB rejected a row or a row does not span its record's
lines, the group is read again and cross-checked per file: each reject must fall on a record that
Python's csv module also finds bad, the accepted rows must be the other records in order, each
spanning as many lines as its record; then a row whose values do not hold exactly the record's
bytes (besides delimiters and quotes) is re-parsed here. A file that fails the cross-check, that
DuckDB refuses to read, or that mixes CRLF and LF terminators is parsed record by record with
Python's csv module instead: slower, same result (a test compares both on random files).

Reason codes: `field_count`, `quoting` (unterminated or misplaced quote), `encoding`, then
`type_cast` / `null_value` from casting. Null markers apply to quoted values too ("" is null).
The raw text of a quarantined record is its exact text from the file (as UTF-8).
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fabric.config import Column, CsvSource, FileEntity
from fabric.errors import ConfigError, SourceError
from fabric.identifiers import quote
from fabric.ingest.casting import BOOKKEEPING, literal
from fabric.ingest.files import DayFile, check_encoding, line_of, transcode

_CHUNK_BYTES = 16 << 20
_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
_MANY_RECORDS = 1000
_NEWLINE_OPTION = {"\n": "\\n", "\r\n": "\\r\\n"}  # as read_csv spells them
Int64Array = npt.NDArray[np.int64]
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


@dataclass
class Records:
    """The records of one CSV file, found by quote parity (header and empty lines excluded)."""

    file: DayFile
    read_path: Path  # the UTF-8 bytes DuckDB reads: the file itself or a transcoded copy
    header: str | None
    names: tuple[str, ...] | None  # the header's column names (None without a header)
    starts: Int64Array  # byte offset of each record in read_path
    ends: Int64Array  # byte offset just after it (terminator excluded)
    lines: Int64Array  # 1-based physical line where it starts
    spans: Int64Array  # physical lines it covers
    quotes: Int64Array  # quote characters in it
    bad: dict[int, str]  # record index -> encoding problem
    newline: str | None  # '\n' or '\r\n'; None when the file mixes them
    _data: bytes | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.starts)

    def data(self) -> bytes:
        """The whole file (kept): for reading many records."""
        if self._data is None:
            self._data = self.read_path.read_bytes()
        return self._data

    def text(self, index: int) -> str:
        """One record's text; read from the file unless `data` was loaded."""
        start, end = int(self.starts[index]), int(self.ends[index])
        if self._data is not None:
            return self._data[start:end].decode("utf-8")
        with self.read_path.open("rb") as handle:
            handle.seek(start)
            return handle.read(end - start).decode("utf-8")


class _Segmenter:
    """Finds record boundaries in consecutive chunks of UTF-8 text (each ending at a newline,
    except the last) by quote parity, with numpy over whole chunks."""

    def __init__(self, quote: str) -> None:
        self.quote = ord(quote)
        self.offset = 0  # bytes fed so far
        self.lines = 0  # newlines fed so far
        self.quotes = 0  # quote characters fed so far
        self.start, self.start_line, self.start_quotes = 0, 1, 0  # the record being read
        self.crlf = self.lf = 0
        self.parts: dict[str, list[Int64Array]] = {
            "starts": [], "ends": [], "first": [], "last": [], "quotes": []
        }  # fmt: skip

    def feed(self, chunk: bytes) -> None:
        raw = np.frombuffer(chunk, np.uint8)
        newlines = np.flatnonzero(raw == 10)
        quotes = np.flatnonzero(raw == self.quote)
        before = self.quotes + np.searchsorted(quotes, newlines)  # quotes before each newline
        terminates = (before & 1) == 0
        ending = newlines[terminates]
        carriage = np.zeros(len(ending), dtype=bool)
        inside = ending > 0
        carriage[inside] = raw[ending[inside] - 1] == 13
        self.crlf += int(carriage.sum())
        self.lf += len(carriage) - int(carriage.sum())
        if len(ending):
            last_line = np.flatnonzero(terminates) + self.lines + 1
            quotes_at_end = before[terminates]
            self._add(
                np.concatenate(([self.start], ending[:-1] + 1 + self.offset)),
                ending + self.offset - carriage,
                np.concatenate(([self.start_line], last_line[:-1] + 1)),
                last_line,
                np.diff(quotes_at_end, prepend=self.start_quotes),
            )
            self.start = int(ending[-1]) + 1 + self.offset
            self.start_line = int(last_line[-1]) + 1
            self.start_quotes = int(quotes_at_end[-1])
        self.offset += len(chunk)
        self.lines += len(newlines)
        self.quotes += len(quotes)

    def skip(self, chunk: bytes) -> None:
        """Advance over bytes that hold no records (a BOM, the lines before the header).
        Their quote characters do not count: quote parity starts after them."""
        self.offset += len(chunk)
        self.lines += chunk.count(b"\n")
        self.start, self.start_line, self.start_quotes = self.offset, self.lines + 1, self.quotes

    def finish(self) -> dict[str, Int64Array]:
        """starts, ends (terminator excluded), first and last line, quote characters per record;
        empty records (blank lines) are left out."""
        if self.start < self.offset:  # a last record without a newline
            self._add(
                np.array([self.start]),
                np.array([self.offset]),
                np.array([self.start_line]),
                np.array([self.lines + 1]),
                np.array([self.quotes - self.start_quotes]),
            )
        joined = {
            name: np.concatenate(parts).astype(np.int64, copy=False) if parts else np.zeros(0, np.int64)
            for name, parts in self.parts.items()
        }
        keep = joined["ends"] > joined["starts"]
        return {name: values[keep] for name, values in joined.items()}

    def _add(self, *columns: Int64Array) -> None:
        for parts, values in zip(self.parts.values(), columns, strict=True):
            parts.append(values)


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
    found = segmenter.finish()
    records = Records(
        file=file,
        read_path=copy_path if copy is not None else file.path,
        header=None,
        names=None,
        starts=found["starts"],
        ends=found["ends"],
        lines=found["first"],
        spans=found["last"] - found["first"] + 1,
        quotes=found["quotes"],
        bad={},
        newline=None if segmenter.crlf and segmenter.lf else "\r\n" if segmenter.crlf else "\n",
    )
    if dialect.header and len(records):
        records.header = records.text(0)
        header_lines = range(records.lines[0], records.lines[0] + records.spans[0])
        if any(line in header_lines for line in bad_lines):
            raise SourceError(f"file {file.path}: the header line holds bytes that are not text")
        records.names = header_names(records, dialect)
        for name in ("starts", "ends", "lines", "spans", "quotes"):
            setattr(records, name, getattr(records, name)[1:])
    for line, description in bad_lines.items():
        index = int(np.searchsorted(records.lines, line, side="right")) - 1
        if index >= 0:
            records.bad.setdefault(index, description)
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
            f"file {records.file.path} line {records.lines[0]}: the header names columns "
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
        texts = []
        files = rows >> 32
        for index in np.unique(files):
            if np.count_nonzero(files == index) > _MANY_RECORDS:
                self.records[int(index)].data()
        for seq in rows.tolist():
            records = self.records[seq >> 32]
            texts.append(records.text(int(np.searchsorted(records.lines, seq & 0xFFFFFFFF))))
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
        values plus, per row, the lines it spans and its value bytes besides quote characters;
        numpy then checks each row against its record (`misaligned` when it spans other lines
        than its record, `inexact` when its values do not hold the record's bytes besides
        delimiters and quotes). `table` becomes a view adding the bookkeeping columns, the line
        of a row being its rowid plus the file's offset (`_line_view`).

        Returns False, with no `table` left, when DuckDB rejected a row, refused a file, or a
        row is misaligned: `_stage_duckdb` then works out what it can use. Otherwise the
        inexact rows and the records with bytes that are not text are removed from `table`
        and re-parsed here into `parsed`, like `_reconcile` does.
        """
        width = self._width(group[0])
        con = self.con
        rows = quote(f"{table}_rows")
        values = "concat(" + ", ".join(f"c{i}" for i in range(width)) + ")"
        mapped = ", ".join(
            f"{self._nulled(f'c{i}') if i is not None else 'NULL'}::VARCHAR AS {quote(c.name)}"
            for c, i in zip(self.columns, self._fields(group[0]), strict=True)
        )
        try:
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE {rows} AS
                    SELECT {mapped}, _fabric_file,
                           strlen(_v) - strlen(replace(_v, chr(10), '')) + 1 AS _fabric_span,
                           strlen(replace(_v, {literal(self.dialect.quote)}, '')) AS _fabric_chars
                    FROM (SELECT *, {values} AS _v FROM {self._read_csv(group, newline)})"""
            )
            rejects = _count(con.execute("SELECT count(*) FROM _fabric_csv_rejects"))
            runs = con.execute(
                f"SELECT _fabric_file, min(rowid), count(*) FROM {rows} GROUP BY ALL ORDER BY 2"
            ).fetchall()
            found = con.execute(f"SELECT _fabric_span, _fabric_chars FROM {rows}").fetchnumpy()
        except duckdb.Error:
            rejects, runs, found = -1, [], {}
        finally:
            for scan in ("_fabric_csv_rejects", "_fabric_csv_scans"):
                con.execute(f"DROP TABLE IF EXISTS {scan}")
        # Each file's rows must be one run of rowids, the runs in group order, one row per record.
        expected = [(str(r.read_path), len(r)) for r in group]
        if rejects or [(str(path), int(count)) for path, _, count in runs] != expected:
            con.execute(f"DROP TABLE IF EXISTS {rows}")
            return False
        spans = np.concatenate([r.spans for r in group])
        chars = np.concatenate([(r.ends - r.starts - r.quotes) - (width - 1) for r in group])
        if not np.array_equal(found["_fabric_span"], spans):
            con.execute(f"DROP TABLE IF EXISTS {rows}")
            return False
        inexact = np.flatnonzero(found["_fabric_chars"] != chars)
        firsts = np.cumsum([0] + [len(r) for r in group])
        again: dict[int, set[int]] = {r.file.index: set(r.bad) for r in group}
        for row in inexact.tolist():
            position = int(np.searchsorted(firsts, row, side="right")) - 1
            again[group[position].file.index].add(row - int(firsts[position]))
        redo = [int(firsts[i]) + record for i, r in enumerate(group) for record in again[r.file.index]]
        if redo:
            con.execute(f"DELETE FROM {rows} WHERE rowid IN (SELECT unnest(?::BIGINT[]))", [redo])
            for index, records in again.items():
                self._insert(parsed, self.records[index], sorted(records))
        self._line_view(group, rows, table, firsts)
        return True

    def _line_view(self, group: list[Records], rows: str, view: str, firsts: npt.NDArray[np.int64]) -> None:
        """TEMP view `view` over the TEMP table `rows` (one row per record of `group`, in
        order) with the bookkeeping columns. A row's line is its rowid plus an offset that only
        changes after a record spanning several lines or blank lines, and at a new file: one
        step per change (`_fabric_csv_steps_*`), found by an ASOF join; with one step (the usual
        single-line file) the view needs no join and keeps the rows in order."""
        starts, offsets, files = [], [], []
        for first, records in zip(firsts[:-1].tolist(), group, strict=True):
            offset = records.lines - np.arange(first, first + len(records))
            changes = np.concatenate(([0], np.flatnonzero(np.diff(offset)) + 1))
            starts.append(changes + first)
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
        # for the positional join below.
        expected_first = 0
        for first, last, count in sorted(accepted.values()):
            if first != expected_first or last - first + 1 != count:
                return group
            expected_first += count

        matched: dict[int, set[int]] = {}  # file index -> records parsed here
        maps = []  # one row per row of _fabric_csv_rows, in rowid order
        for records in sorted(group, key=lambda r: accepted.get(str(r.read_path), (0, 0, 0))):
            path = str(records.read_path)
            count = accepted.get(path, (0, -1, 0))[2]
            located = _locate_rejects(records, rejected.get(path, []), self.dialect, self._width(records))
            accepted_here = np.ones(len(records), dtype=bool)
            accepted_here[sorted(located or ())] = False
            kept = np.flatnonzero(accepted_here)
            if located is None or count != len(kept):
                kept = np.full(count, -1)  # placeholders: this file is parsed here
            else:
                matched[records.file.index] = located | set(records.bad)
            maps.append(
                {
                    "file": np.full(count, records.file.index, dtype=np.int64),
                    "record": kept,
                    "line": records.lines[kept],
                    "span": records.spans[kept],
                    "chars": (records.ends - records.starts - records.quotes)[kept]
                    - (self._width(records) - 1),
                }
            )
        columns = {n: np.concatenate([m[n] for m in maps]) for n in maps[0]} if maps else {}
        # A row is its record when it spans as many lines; its values are right when they hold
        # as many bytes besides quote characters as the record does besides quotes and
        # delimiters. Rows of a file that fails either are parsed here. (A plain scan returns
        # rows in rowid order: preserve_insertion_order, which the positional join needs too.)
        values = "concat(" + ", ".join(f"r.c{i}" for i in range(self._width(group[0]))) + ")"
        found = con.execute(
            f"""SELECT strlen(v) - strlen(replace(v, chr(10), '')) AS newlines,
                       strlen(replace(v, {literal(self.dialect.quote)}, '')) AS chars
                FROM (SELECT {values} AS v FROM _fabric_csv_rows AS r)"""
        ).fetchnumpy()
        checked = columns["record"] >= 0
        aligned = found["newlines"] + 1 == columns["span"]
        exact = found["chars"] == columns["chars"]
        for row in np.flatnonzero(checked & ~(aligned & exact)):
            file = int(columns["file"][row])
            if not aligned[row]:
                matched.pop(file, None)
            elif file in matched:
                matched[file].add(int(columns["record"][row]))
        if matched:
            fields = self._fields(group[0])
            nulled = ", ".join(self._nulled(f"r.c{i}") if i is not None else "NULL" for i in fields)
            row_file = columns["file"]
            keep = np.isin(row_file, list(matched)) & (columns["record"] >= 0)
            for index, parsed_here in matched.items():
                keep[(row_file == index) & np.isin(columns["record"], list(parsed_here))] = False
            con.register(
                "_fabric_csv_map",
                pa.table({"file": row_file, "line": columns["line"], "keep": keep}),
            )
            con.register("_fabric_csv_files", self._files_table([self.records[i] for i in matched]))
            try:
                con.execute(
                    f"""INSERT INTO {self._target(relation)}
                        SELECT f.day, f.source, 'line ' || m.line, (m.file << 32) + m.line,
                               NULL, NULL, NULL, {nulled}
                        FROM (_fabric_csv_rows AS r POSITIONAL JOIN _fabric_csv_map AS m)
                             JOIN _fabric_csv_files AS f USING (file)
                        WHERE m.keep"""
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
        """Parse the records `indices` of a file here (`_parse_record`) into `relation`."""
        if not len(indices):
            return
        width = self._width(records)
        if len(indices) > _MANY_RECORDS:
            records.data()  # one read of the file rather than one per record
        codes: list[str | None] = []
        reasons: list[str | None] = []
        values: list[list[str | None]] = [[] for _ in range(width)]
        for index in indices:
            code: str | None
            reason: str | None
            fields: list[str | None]
            if index in records.bad:
                code, reason, fields = "encoding", records.bad[index], [None] * width
            else:
                code, reason, fields = _parse_record(records.text(index), self.dialect, width)
            codes.append(code)
            reasons.append(reason)
            for column, value in zip(values, fields, strict=True):
                column.append(value)
        staged = ", ".join(f"p.c{i}" if i is not None else "NULL" for i in self._fields(records))
        part = pa.table(
            {
                "line": pa.array(records.lines[list(indices)], pa.int64()),
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


def _count(cursor: duckdb.DuckDBPyConnection) -> int:
    row = cursor.fetchone()
    return int(row[0]) if row else 0


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
    for offset in offsets:
        index = int(np.searchsorted(records.starts, offset, side="right")) - 1
        candidates = [index] if index >= 0 and offset <= records.ends[index] else []
        following = index + 1
        if (
            following < len(records)
            and (index < 0 or offset >= records.ends[index])
            and not records.data()[offset : records.starts[following]].strip(b"\r\n")
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
