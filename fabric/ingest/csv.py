"""CSV day files: DuckDB's reader for speed, an independent record scan for exact accounting.

Every physical record of a file must end up loaded or quarantined, with the physical line where
it starts; DuckDB's `read_csv` gives no line for the rows it accepts, only approximate byte
positions for the ones it rejects, and (duckdb 1.5.5) sometimes accepts a row it should reject.
So each file is first scanned here, in chunks (streaming):

1. transcode to UTF-8 (`files.transcode`; DuckDB cannot read cp1252 without a 350 MB extension),
   escaping undecodable and NUL bytes and noting their lines; a copy is written only when the
   bytes change (always for cp1252, never for clean UTF-8);
2. find the records by quote parity with numpy: a newline ends a record when the number of
   quote characters before it is even (exact for RFC 4180 quoting, where `""` is a quote).
   Empty lines between records are skipped and counted nowhere; with `header`, the first
   non-empty record is the header and must name the declared columns in order.

DuckDB then reads all files of one newline style in one `read_csv` scan (all VARCHAR, strict,
rejects stored) and its output is cross-checked per file: each reject must fall on a record that
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
import io
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
_NEWLINE_OPTION = {"\n": "\\n", "\r\n": "\\r\\n"}  # as read_csv spells them
Int64Array = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Dialect:
    """The declared CSV dialect of a source."""

    encoding: str
    delimiter: str
    quote: str
    header: bool
    null_markers: tuple[str, ...]

    @classmethod
    def of(cls, source: CsvSource, key: str) -> Dialect:
        for name, value in (("delimiter", source.delimiter), ("quote", source.quote)):
            if len(value) != 1 or not value.isascii() or value in "\r\n":
                raise ConfigError(f"{key}.{name}: must be one ASCII character, got {value!r}")
        if source.delimiter == source.quote:
            raise ConfigError(f"{key}: delimiter and quote must differ")
        return cls(
            encoding=check_encoding(source.encoding, f"{key}.encoding"),
            delimiter=source.delimiter,
            quote=source.quote,
            header=source.header,
            null_markers=tuple(source.null_markers),
        )


@dataclass
class Records:
    """The records of one CSV file, found by quote parity (header and empty lines excluded)."""

    file: DayFile
    read_path: Path  # the UTF-8 bytes DuckDB reads: the file itself or a transcoded copy
    header: str | None
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
        if self._data is None:
            self._data = self.read_path.read_bytes()
        return self._data

    def text(self, index: int) -> str:
        return self.data()[self.starts[index] : self.ends[index]].decode("utf-8")


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
            name: np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
            for name, parts in self.parts.items()
        }
        keep = joined["ends"] > joined["starts"]
        return {name: values[keep] for name, values in joined.items()}

    def _add(self, *columns: Int64Array) -> None:
        for parts, values in zip(self.parts.values(), columns, strict=True):
            parts.append(values)


def scan_records(file: DayFile, dialect: Dialect, copy_path: Path) -> Records:
    """Transcode (if needed) and segment one file; see the module docstring."""
    segmenter = _Segmenter(dialect.quote)
    bad_lines: dict[int, str] = {}
    copied = 0
    copy = None
    try:
        with file.path.open("rb") as handle:
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
                for (line, column), problem in zip(
                    line_of(chunk, [b.offset for b in bad]), bad, strict=True
                ):
                    bad_lines.setdefault(
                        segmenter.lines + line + 1, f"{problem.description} at column {column + 1}"
                    )
                if copy is None and out is not chunk:
                    copy = copy_path.open("wb")
                    with file.path.open("rb") as original:  # earlier chunks were unchanged
                        copy.write(original.read(copied))
                if copy is not None:
                    copy.write(out)
                copied += len(chunk)
                segmenter.feed(out)
                if not block:
                    break
    finally:
        if copy is not None:
            copy.close()
    found = segmenter.finish()
    records = Records(
        file=file,
        read_path=copy_path if copy is not None else file.path,
        header=None,
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
        for name in ("starts", "ends", "lines", "spans", "quotes"):
            setattr(records, name, getattr(records, name)[1:])
    for line, description in bad_lines.items():
        index = int(np.searchsorted(records.lines, line, side="right")) - 1
        if index >= 0:
            records.bad.setdefault(index, description)
    return records


def check_header(records: Records, dialect: Dialect, columns: Sequence[Column]) -> None:
    """Refuse a file whose header does not name the declared columns, in order."""
    if records.header is None:
        return
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
    expected = [c.name for c in columns]
    if [name.strip().lstrip("\ufeff") for name in found] != expected:
        raise SourceError(
            f"file {records.file.path}: the header names columns {found} but the source "
            f"declares {expected}; update the columns in fabric.yaml or fix the file"
        )


class CsvStage:
    """Stages the CSV day files of a window as text records (see `casting`)."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        source: CsvSource,
        entity: FileEntity,
        key: str,
        workdir: Path,
    ) -> None:
        if not entity.columns:
            raise ConfigError(f"{key}.columns: a CSV entity needs its columns declared")
        self.con = con
        self.dialect = Dialect.of(source, key.rsplit(".entities.", 1)[0])
        self.columns = list(entity.columns)
        self.workdir = workdir
        self.records: dict[int, Records] = {}
        self.parsed_in_python: list[Path] = []  # files DuckDB's reader could not be trusted with

    def stage(self, files: Sequence[DayFile], relation: str, python_only: bool = False) -> None:
        """Create TEMP table `relation` holding one row per record of the existing `files`."""
        for file in files:
            records = scan_records(file, self.dialect, self.workdir / f"{file.index}.csv")
            check_header(records, self.dialect, self.columns)
            if len(records):
                self.records[file.index] = records
        schema = ", ".join(
            [f"{name} {kind}" for name, kind in BOOKKEEPING]
            + [f"{quote(c.name)} VARCHAR" for c in self.columns]
        )
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {quote(relation)} ({schema})")
        fallback = [r for r in self.records.values() if python_only or r.newline is None]
        for newline in ("\n", "\r\n"):
            group = [r for r in self.records.values() if r.newline == newline and not python_only]
            if group:
                fallback += self._stage_duckdb(group, newline, relation)
        for records in fallback:
            self._insert(relation, records, range(len(records)))
        self.parsed_in_python = [r.file.path for r in fallback]

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

    def _scan(self, group: list[Records], newline: str) -> None:
        # strict_mode is left at its default (strict: a stray quote is a reject): passing
        # strict_mode = true explicitly together with new_line = '\r\n' makes duckdb 1.5.5
        # return no rows and no rejects at all (the cross-check would catch it, slowly).
        # Null markers are applied afterwards (nullstr NUL never matches: NUL bytes are escaped
        # by transcoding) so that every value keeps its length for the cross-check.
        dialect = self.dialect
        paths = "[" + ", ".join(literal(str(r.read_path)) for r in group) + "]"
        names = "{" + ", ".join(f"{literal(c.name)}: 'VARCHAR'" for c in self.columns) + "}"
        self.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _fabric_csv_rows AS
                SELECT * FROM read_csv({paths}, columns = {names}, header = {dialect.header},
                    delim = {literal(dialect.delimiter)}, quote = {literal(dialect.quote)},
                    escape = {literal(dialect.quote)},
                    new_line = {literal(_NEWLINE_OPTION[newline])},
                    nullstr = [chr(0)], auto_detect = false, null_padding = false,
                    filename = '_fabric_file', store_rejects = true,
                    rejects_table = '_fabric_csv_rejects', rejects_scan = '_fabric_csv_scans')"""
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
                "SELECT _fabric_file, min(rowid), max(rowid), count(*) "
                "FROM _fabric_csv_rows GROUP BY ALL"
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
            located = _locate_rejects(
                records, rejected.get(path, []), self.dialect, len(self.columns)
            )
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
                    - (len(self.columns) - 1),
                }
            )
        columns = {n: np.concatenate([m[n] for m in maps]) for n in maps[0]} if maps else {}
        # A row is its record when it spans as many lines; its values are right when they hold
        # as many bytes besides quote characters as the record does besides quotes and
        # delimiters. Rows of a file that fails either are parsed here. (A plain scan returns
        # rows in rowid order: preserve_insertion_order, which the positional join needs too.)
        values = "concat(" + ", ".join(f"r.{quote(c.name)}" for c in self.columns) + ")"
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
            nulled = ", ".join(self._nulled(f"r.{quote(c.name)}") for c in self.columns)
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
                    f"""INSERT INTO {quote(relation)}
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
        width = len(self.columns)
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
                f"""INSERT INTO {quote(relation)}
                    SELECT ?, ?, 'line ' || p.line, (?::BIGINT << 32) + p.line, NULL, p.code,
                           p.reason, {", ".join(f"p.c{i}" for i in range(width))}
                    FROM _fabric_csv_part AS p""",
                [records.file.day, str(records.file.path), records.file.index],
            )
        finally:
            self.con.unregister("_fabric_csv_part")


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


def _parse_record(
    text: str, dialect: Dialect, width: int
) -> tuple[str | None, str | None, list[str | None]]:
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
