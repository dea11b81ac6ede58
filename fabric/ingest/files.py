"""Day files of a file source: where each partition's file is, and its bytes as checked UTF-8.

A file entity's `pattern` names one file per business day under the source root. Paths are
resolved (symlinks included) and must stay inside the root: a pattern such as `{date:..}` that
renders to a parent directory is refused before anything is read.

The readers hand DuckDB UTF-8 text. `transcode` turns a chunk of a file in its declared encoding
into UTF-8 and reports every byte that is not text in that encoding (undecodable bytes and NUL
bytes, which no text format here allows). Such bytes are replaced by a visible escape (`\\x81`)
that contains no newline, quote or delimiter, so the record structure of the text is unchanged
and the record holding them can be quarantined with reason `encoding`.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fabric.config import FabricConfig
from fabric.errors import ConfigError
from fabric.partitions import Window

_UTF8_COMPATIBLE = {"utf-8", "ascii"}  # valid input in these is already valid UTF-8


@dataclass(frozen=True)
class DayFile:
    """The file expected for one partition day (it may not exist)."""

    day: date
    path: Path
    index: int  # position in the window, used to build row sequence numbers

    @property
    def exists(self) -> bool:
        return self.path.is_file()


@dataclass(frozen=True)
class BadByte:
    """A byte that is not text in the declared encoding, by 0-based offset in its chunk."""

    offset: int
    description: str


def day_files(config: FabricConfig, root: Path, pattern: str, window: Window) -> list[DayFile]:
    """One `DayFile` per day of `window`, refusing paths that leave `root`."""
    base = config.resolve(root).resolve()
    files = []
    for index, day in enumerate(window):
        try:
            rendered = pattern.format(date=day)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"file pattern {pattern!r}: cannot render it for {day} ({exc}); the only "
                "placeholder is {date:<strftime format>}"
            ) from None
        path = (base / rendered).resolve()
        if not path.is_relative_to(base):
            raise ConfigError(f"file pattern {pattern!r} renders to {path}, outside the source root {base}")
        files.append(DayFile(day, path, index))
    return files


def check_encoding(encoding: str, key: str) -> str:
    """The codec's canonical name; the readers need an ASCII-compatible encoding."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ConfigError(f"{key}: unknown encoding {encoding!r}") from None
    if '\n\r,;|\t"'.encode(name, errors="replace") != b'\n\r,;|\t"':
        raise ConfigError(
            f"{key}: encoding {encoding!r} is not ASCII-compatible (e.g. UTF-16); "
            "convert the files to UTF-8 or a single-byte encoding"
        )
    return name


def transcode(chunk: bytes, encoding: str) -> tuple[bytes, list[BadByte]]:
    """`chunk` as UTF-8, with the bytes that are not text in `encoding` escaped and listed.

    Returns `chunk` itself when it is already valid UTF-8 text (the common case costs one
    validating decode and no copy).
    """
    if encoding in _UTF8_COMPATIBLE:
        try:
            chunk.decode(encoding)
        except UnicodeDecodeError:
            pass
        else:
            if b"\x00" not in chunk:
                return chunk, []
    pieces: list[str] = []
    bad: list[BadByte] = []
    position = 0
    while position < len(chunk):
        try:
            pieces.append(chunk[position:].decode(encoding))
            break
        except UnicodeDecodeError as exc:
            end = position + exc.start
            pieces.append(chunk[position:end].decode(encoding))
            for offset in range(end, position + exc.end):
                bad.append(BadByte(offset, f"byte 0x{chunk[offset]:02x} is not valid {encoding}"))
                pieces.append(f"\\x{chunk[offset]:02x}")
            position += exc.end
    text = "".join(pieces)
    if "\x00" in text:
        raw = np.frombuffer(chunk, np.uint8)
        bad.extend(BadByte(int(i), "NUL byte") for i in np.flatnonzero(raw == 0))
        bad.sort(key=lambda b: b.offset)
        text = text.replace("\x00", "\\x00")
    return text.encode("utf-8"), bad


def line_of(chunk: bytes, offsets: Sequence[int]) -> list[tuple[int, int]]:
    """(0-based line index, 0-based column in bytes) of each byte offset in `chunk`."""
    raw = np.frombuffer(chunk, np.uint8)
    newlines = np.flatnonzero(raw == 10)
    result = []
    for offset in offsets:
        line = int(np.searchsorted(newlines, offset))
        start = int(newlines[line - 1]) + 1 if line else 0
        result.append((line, offset - start))
    return result


def split_lines(data: bytes, blank: bytes) -> tuple[pa.LargeStringArray, npt.NDArray[np.bool_]]:
    """The lines of UTF-8 `data`, each with its terminator, as Arrow strings sharing `data`,
    and whether each line consists only of bytes in `blank` (it always may hold CR and LF).

    A final line without a newline is included; empty `data` has no lines.
    """
    raw = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(raw == 10) + 1
    if len(data) and data[-1:] != b"\n":
        ends = np.append(ends, len(data))
    offsets = np.concatenate(([0], ends)).astype(np.int64)
    lines = pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))
    content = ~np.isin(raw, np.frombuffer(blank + b"\r\n", np.uint8))
    empty = ~np.logical_or.reduceat(content, offsets[:-1]) if len(ends) else content[:0]
    return lines, empty


FILE_WHERE = "'file ' || _fabric_source || ' ' || _fabric_position"
"""SQL naming a record of a file in quarantine reasons: `file /abs/path line N`."""


def stage_lines(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[DayFile],
    encoding: str,
    blank: bytes,
    relation: str,
) -> dict[int, int]:
    """Create TEMP view `relation` over the records (non-blank lines) of the existing `files`.

    A line is blank when it holds only bytes in `blank` besides its terminator; blank lines are
    not records. Columns: `_fabric_partition`, `_fabric_source`, `_fabric_seq`, `_fabric_line`
    (1-based physical line), `_fabric_text` (the line as UTF-8, terminator included), and
    `_fabric_code` / `_fabric_reason` set to `encoding` for lines holding bytes that are not text.
    The lines stay in Arrow buffers registered on `con` (`<relation>_lines`, `<relation>_files`),
    not copied. Returns the number of records per file index.
    """
    parts = []
    records = {}
    for file in files:
        data = file.path.read_bytes()
        text, bad = transcode(data, encoding)
        lines, empty = split_lines(text, blank)
        codes: pa.Array = pa.nulls(len(lines), pa.string())
        reasons: pa.Array = codes
        if bad:
            found: dict[int, list[str]] = {}
            for (line, column), problem in zip(line_of(data, [b.offset for b in bad]), bad, strict=True):
                found.setdefault(line, []).append(f"{problem.description} at column {column + 1}")
            first = {
                line: f"{items[0]} (and {len(items) - 1} more)" if len(items) > 1 else items[0]
                for line, items in found.items()
            }
            codes = pa.array(["encoding" if i in first else None for i in range(len(lines))])
            reasons = pa.array([first.get(i) for i in range(len(lines))], pa.string())
        records[file.index] = len(lines) - int(empty.sum())
        parts.append(
            pa.table(
                {
                    "file": np.full(len(lines), file.index, dtype=np.int64),
                    "line": np.arange(1, len(lines) + 1, dtype=np.int64),
                    "blank": empty,
                    "text": lines,
                    "code": codes,
                    "reason": reasons,
                }
            )
        )
    schema = pa.schema(
        [("file", pa.int64()), ("line", pa.int64()), ("blank", pa.bool_()),
         ("text", pa.large_string()), ("code", pa.string()), ("reason", pa.string())]
    )  # fmt: skip
    con.register(
        f"{relation}_lines",
        pa.concat_tables([p.cast(schema) for p in parts]) if parts else schema.empty_table(),
    )
    con.register(
        f"{relation}_files",
        pa.table(
            {
                "file": pa.array([f.index for f in files], pa.int64()),
                "day": pa.array([f.day for f in files], pa.date32()),
                "source": pa.array([str(f.path) for f in files], pa.string()),
            }
        ),
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW {relation} AS
            SELECT f.day AS _fabric_partition, f.source AS _fabric_source,
                   (l.file << 32) + l.line AS _fabric_seq, l.line AS _fabric_line,
                   l.text AS _fabric_text, l.code AS _fabric_code, l.reason AS _fabric_reason
            FROM {relation}_lines AS l JOIN {relation}_files AS f USING (file)
            WHERE NOT l.blank"""
    )
    return records
