"""SQLite tables, read with DuckDB's sqlite scanner.

Why the scanner rather than Python's sqlite3 (`CAST(.. AS TEXT)` + `fetchall` + Arrow), measured
on this 2-core box: the demo CRM (20k customers, 20k contacts, 1.5k cancellations) reads in
31-40 ms against 175-185 ms warm; a 200k-row, 4-column table in 0.09 s against 0.46 s. The
extension comes from the PyPI package `duckdb-extension-sqlite` (pinned with duckdb), so it
loads offline.

Columns are read as text (`sqlite_all_varchar`: SQLite's typing is per value, so a TEXT 'abc' in
an INTEGER column must reach casting, not fail the scan) and cast like every other source. In
`partitioned` mode a row belongs to the day of its `date_column` (see `_day_expr`); a row whose
date column holds no date at all belongs to no partition and is not read. `snapshot` mode loads
the whole table as one load for the last day of the window; `merge` mode the rows changed since
the stored cursor (filtered after the scan: SQLite files are local). Positions are `<key>=<value>`
(comma-joined for composite keys); the raw record of a quarantined row is the row as a JSON
object of its text values.

The table's catalog (`PRAGMA table_info`: names and declared types, mapped to Fabric types by
SQLite's affinity rules plus DATE, DATETIME/TIMESTAMP, BOOLEAN and DECIMAL(p,s)) is compared
with the entity's contract before reading (`table_contract`); a contract column the table no
longer has is read as NULL, and an added column is read as text when the policy quarantines the
rows holding a value in it.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Collection, Sequence
from pathlib import Path

import duckdb

from fabric.config import Column, ColumnType, SqliteEntity
from fabric.errors import SourceError
from fabric.extensions import load_extension
from fabric.identifiers import literal, quote
from fabric.ingest.casting import sql_type, typed_expr
from fabric.ingest.table_contract import TableColumn, table_column
from fabric.partitions import Window

_DECIMAL = re.compile(r"(?:NUMERIC|DECIMAL)\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)")
TABLE_WHERE = "_fabric_source || ' ' || _fabric_position"
"""SQL naming a row in quarantine reasons: `sqlite:/abs/path#table key=value`."""


def load_scanner(con: duckdb.DuckDBPyConnection) -> None:
    """Load the sqlite scanner into `con`, reading every column as text."""
    load_extension(con, "sqlite")
    con.execute("SET sqlite_all_varchar = true")


def source_label(path: Path, table: str) -> str:
    return f"sqlite:{path}#{table}"


def catalog(path: Path, table: str) -> list[TableColumn]:
    """The table's columns with the Fabric type of their declared type; SourceError when the
    file or the table is missing."""
    if not path.is_file():
        raise SourceError(f"{path}: SQLite database not found")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            found = [
                (str(r[1]), str(r[2] or ""), bool(r[3]))
                for r in db.execute(f"PRAGMA table_info({quote(table)})")
            ]
            tables = [
                str(row[0])
                for row in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
            ]
    except sqlite3.DatabaseError as exc:
        raise SourceError(f"{path}: cannot read the SQLite database ({exc})") from None
    if not found:
        raise SourceError(f"{path}: table {table!r} not found (tables: {', '.join(sorted(tables))})")
    label = source_label(path, table)
    columns = []
    for name, declared, not_null in found:
        kind, precision, scale = _fabric_type(declared)
        columns.append(table_column(label, name, kind, not not_null, declared or "(none)", precision, scale))
    return columns


def _fabric_type(declared: str) -> tuple[ColumnType, int, int]:
    """Type, precision and scale for a declared SQLite type (values are parsed from text)."""
    kind = declared.upper()
    exact = _DECIMAL.fullmatch(kind)
    if exact and int(exact[2]) <= int(exact[1]) <= 38 and int(exact[2]) <= 18:
        return "decimal", int(exact[1]), int(exact[2])
    named: dict[str, ColumnType] = {"DATE": "date", "DATETIME": "timestamp", "TIMESTAMP": "timestamp",
                                    "BOOLEAN": "boolean", "BOOL": "boolean"}  # fmt: skip
    if kind in named:
        return named[kind], 18, 0
    if "INT" in kind:  # SQLite's affinity rules, in their order
        return "bigint", 18, 0
    if any(text in kind for text in ("CHAR", "CLOB", "TEXT")) or "BLOB" in kind or not kind:
        return "string", 18, 0
    if any(real in kind for real in ("REAL", "FLOA", "DOUB")) or kind.startswith(("NUMERIC", "DECIMAL")):
        return "double", 18, 0
    return "string", 18, 0


def _day_expr(entity: SqliteEntity) -> str:
    """The business date of a row: its date column as declared, else (like SQLite's `date()`)
    the ISO date it starts with, so that a value in an unexpected format still lands in its day
    and is quarantined there."""
    column = next(c for c in entity.columns if c.name == entity.date_column)
    if column.type not in ("date", "timestamp"):
        column = Column(name=column.name, type="timestamp")
    text = quote(column.name)
    return f"coalesce(CAST({typed_expr(column, text)} AS DATE), TRY_CAST(left(trim({text}), 10) AS DATE))"


def stage(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    entity: SqliteEntity,
    window: Window,
    relation: str,
    since: str | None = None,
    extra: Sequence[str] = (),
    absent: Collection[str] = (),
) -> None:
    """Create TEMP table `relation` with the text records of the window's rows.

    `merge` mode reads the rows whose cursor column is at least `since` (the text of a value of
    the cursor's declared type; None: every row) as one load for the last day of the window.
    `extra`: table columns read after the entity's; `absent`: entity columns the table does not
    have (NULL).
    """
    load_scanner(con)
    names = [quote(c.name) for c in entity.columns] + [quote(n) for n in extra]
    scanned = [
        f"NULL::VARCHAR AS {quote(c.name)}" if c.name in absent else quote(c.name) for c in entity.columns
    ]
    scanned += [quote(n) for n in extra]
    keys = {c.name: c for c in entity.columns}
    position = " || ',' || ".join(
        f"{literal(k + '=')} || coalesce({quote(k)}, 'NULL')" for k in entity.primary_key
    )
    order = ", ".join(
        [typed_expr(keys[k], quote(k)) for k in entity.primary_key] + [quote(k) for k in entity.primary_key]
    )
    parameters: list[object]
    if entity.mode == "partitioned":
        day, keep = _day_expr(entity), "_fabric_partition BETWEEN ? AND ?"
        parameters = [window.start, window.end]
    elif entity.mode == "merge" and since is not None:
        cursor = keys[str(entity.cursor_column)]
        day = "?::DATE"
        keep = f"{typed_expr(cursor, quote(cursor.name))} >= CAST(? AS {sql_type(cursor)})"
        parameters = [window.end, since]
    else:
        day, keep, parameters = "?::DATE", "true", [window.end]
    raw = "to_json(struct_pack(" + ", ".join(f"{n} := {n}" for n in names) + "))::VARCHAR"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {quote(relation)} AS
            SELECT _fabric_partition, {literal(source_label(path, entity.table))} AS _fabric_source,
                   {position} AS _fabric_position,
                   row_number() OVER (ORDER BY {order}) AS _fabric_seq,
                   {raw} AS _fabric_raw, NULL::VARCHAR AS _fabric_code,
                   NULL::VARCHAR AS _fabric_reason, {", ".join(names)}
            FROM (
                SELECT {", ".join(scanned)}, {day} AS _fabric_partition
                FROM sqlite_scan({literal(str(path))}, {literal(entity.table)})
            )
            WHERE {keep}""",
        parameters,
    )
