"""Excel `.xlsx` day files: one sheet per entity, its header row naming the columns.

Read with openpyxl in read-only mode (streaming rows, each with its sheet row number, cells with
their Excel types). DuckDB's `excel` extension (PyPI wheel `duckdb-extension-excel`) was tried:
its `read_xlsx` stops at the first empty row by default (the rows after it are not read, with
no error) and returns no row numbers, which the quarantine positions need; with
`stop_at_empty = false` empty rows come back as nulls, so it could be used later for speed
(not measured here: spreadsheets delivered as day files are small).

Cells become text for the common casting step: numbers without a spurious `.0`, booleans as
`true`/`false`, date cells as ISO text (or in the column's declared `format`), strings as they
are (null markers apply). A row whose cells are all empty is not a record. A value in a column
past the header's last name has no column to go to, so its row is quarantined (`field_count`).
Positions are `sheet <name> row <n>` (1-based sheet row); the raw record is the row as a JSON
object of header name to text.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

import duckdb
import pyarrow as pa

from fabric.config import Column, ExcelEntity
from fabric.errors import SourceError
from fabric.identifiers import quote
from fabric.ingest.files import DayFile


@dataclass
class _Sheet:
    file: DayFile
    sheet: str
    names: tuple[str, ...]
    rows: list[tuple[int, list[Any]]]  # (sheet row, cell values) of each record


@dataclass
class Sheets:
    """The records of one entity's sheet in each file of a window."""

    sheets: dict[int, _Sheet] = field(default_factory=dict)

    @property
    def names(self) -> dict[int, tuple[str, ...] | None]:
        return {index: sheet.names for index, sheet in self.sheets.items()}

    @property
    def counts(self) -> dict[int, int]:
        return {index: len(sheet.rows) for index, sheet in self.sheets.items()}

    def stage(
        self,
        con: duckdb.DuckDBPyConnection,
        columns: Sequence[Column],
        null_markers: Sequence[str],
        relation: str,
    ) -> None:
        """Create TEMP view `relation` of text records (the `columns`, by header name)."""
        data: dict[str, list[Any]] = {
            name: [] for name in ("day", "source", "position", "seq", "raw", "code", "reason")
        }
        values: list[list[str | None]] = [[] for _ in columns]
        for sheet in self.sheets.values():
            where = {name: i for i, name in enumerate(sheet.names)}
            fields = [where.get(c.path or c.name) for c in columns]
            for row, cells in sheet.rows:
                texts = [_text(cell, None) for cell in cells]
                outside = any(t is not None for t in texts[len(sheet.names) :])
                data["day"].append(sheet.file.day)
                data["source"].append(str(sheet.file.path))
                data["position"].append(f"sheet {sheet.sheet} row {row}")
                data["seq"].append((sheet.file.index << 32) + row)
                data["raw"].append(
                    json.dumps(dict(zip(sheet.names, texts, strict=False)), ensure_ascii=False)
                )
                data["code"].append("field_count" if outside else None)
                data["reason"].append(
                    f"values past the header's {len(sheet.names)} columns" if outside else None
                )
                for column, index, target in zip(columns, fields, values, strict=True):
                    text = (
                        _text(cells[index], column.format)
                        if index is not None and index < len(cells)
                        else None
                    )
                    target.append(None if text in null_markers else text)
        table = pa.table(
            {
                "_fabric_partition": pa.array(data["day"], pa.date32()),
                "_fabric_source": pa.array(data["source"], pa.string()),
                "_fabric_position": pa.array(data["position"], pa.string()),
                "_fabric_seq": pa.array(data["seq"], pa.int64()),
                "_fabric_raw": pa.array(data["raw"], pa.string()),
                "_fabric_code": pa.array(data["code"], pa.string()),
                "_fabric_reason": pa.array(data["reason"], pa.string()),
                **{c.name: pa.array(v, pa.string()) for c, v in zip(columns, values, strict=True)},
            }
        )
        con.register(f"{relation}_rows", table)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {quote(relation)} AS FROM {relation}_rows")


def _text(cell: Any, fmt: str | None) -> str | None:
    """A cell value as the text casting parses."""
    if cell is None:
        return None
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, float) and cell.is_integer() and abs(cell) < 1e15:
        return str(int(cell))
    if isinstance(cell, datetime):
        if fmt:
            return cell.strftime(fmt)
        return cell.date().isoformat() if cell.time() == time() else cell.isoformat(sep=" ")
    if isinstance(cell, date | time):
        return cell.strftime(fmt) if fmt and isinstance(cell, date) else cell.isoformat()
    return str(cell)


def read_sheets(files: Sequence[DayFile], entity: ExcelEntity, key: str) -> Sheets:
    """Read the entity's sheet of every file (see the module docstring)."""
    import openpyxl  # imported here: only Excel sources need it

    sheets = Sheets()
    for file in files:
        try:
            book = openpyxl.load_workbook(file.path, read_only=True, data_only=True)
        except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
            raise SourceError(f"file {file.path}: not a readable .xlsx workbook ({exc})") from None
        try:
            name = entity.sheet or book.sheetnames[0]
            if name not in book.sheetnames:
                raise SourceError(
                    f"file {file.path}: no sheet {name!r} (sheets: {', '.join(book.sheetnames)}); "
                    f"check {key}.sheet"
                )
            rows = book[name].iter_rows(min_row=entity.header_row, values_only=True)
            header = next(rows, None)
            if header is None:
                continue  # an empty sheet: no records
            names = [str(v).strip() if v is not None else "" for v in header]
            while names and not names[-1]:
                names.pop()
            repeated = sorted({n for n in names if names.count(n) > 1 or not n})
            if repeated:
                raise SourceError(
                    f"file {file.path} sheet {name} row {entity.header_row}: the header row names "
                    f"columns {names}, with empty or repeated names {repeated}"
                )
            records = [
                (entity.header_row + offset, list(cells))
                for offset, cells in enumerate(rows, start=1)
                if any(c is not None and c != "" for c in cells)
            ]
        finally:
            book.close()
        sheets.sheets[file.index] = _Sheet(file, name, tuple(names), records)
    return sheets
