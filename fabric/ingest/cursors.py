"""Merge cursors in `meta.cursors`: how far the loads of a `merge` entity have read.

One row per (source, entity): the largest `cursor_column` value among the rows read so far, as
text at the column's full precision (timestamps to the microsecond, decimals to their scale)
with its DuckDB type, the load that set it and when. It is written in the same transaction as
the rows it covers, so a load that fails leaves it where it was.

The next load reads the rows whose cursor is at least the stored value less the entity's
`lookback`. `>=` rather than `>` re-reads the rows at the boundary, so a row committed later
with the same timestamp as the last one read is not lost; the look-back re-reads a margin for
rows committed late with an older value (long transactions, clock skew between writers). Rows
read again are upserted by key, never doubled. A cursor stored for another column or type than
the one declared now is ignored: the next load reads the whole table, which a merge absorbs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import duckdb

from fabric.config import SqliteEntity
from fabric.identifiers import quote
from fabric.ingest.casting import sql_type
from fabric.meta import utcnow


@dataclass(frozen=True)
class Cursor:
    """A stored cursor: `value` is the text of a value of DuckDB type `type`."""

    column: str
    value: str
    type: str


def _declared(spec: SqliteEntity) -> tuple[str, str]:
    column = next(c for c in spec.columns if c.name == spec.cursor_column)
    return column.name, sql_type(column)


def stored(con: duckdb.DuckDBPyConnection, source: str, entity: str, spec: SqliteEntity) -> Cursor | None:
    """The cursor of `source.entity`, or None (never loaded, or the declaration changed)."""
    row = con.execute(
        "SELECT cursor_column, cursor_value, cursor_type FROM meta.cursors WHERE source = ? AND entity = ?",
        [source, entity],
    ).fetchone()
    if row is None or (row[0], row[2]) != _declared(spec):
        return None
    return Cursor(str(row[0]), str(row[1]), str(row[2]))


def lower_bound(cursor: Cursor | None, lookback: timedelta | Decimal) -> str | None:
    """The text of the smallest cursor value the next load reads (None: read everything)."""
    if cursor is None:
        return None
    if isinstance(lookback, timedelta):  # a DATE or TIMESTAMP cursor (see config._lookback)
        try:
            if cursor.type == "DATE":
                days = math.ceil(lookback / timedelta(days=1))
                return (date.fromisoformat(cursor.value) - timedelta(days=days)).isoformat()
            moment = datetime.fromisoformat(cursor.value) - lookback
        except OverflowError:  # a look-back reaching before year 1: read everything
            return None
        return moment.isoformat(sep=" ", timespec="microseconds")
    bound = Decimal(cursor.value) - lookback
    if cursor.type.startswith("DECIMAL"):
        return format(bound, "f")
    return str(math.floor(bound))


def advance(
    con: duckdb.DuckDBPyConnection,
    source: str,
    entity: str,
    spec: SqliteEntity,
    previous: Cursor | None,
    relation: str,
    load_id: str,
) -> Cursor | None:
    """Store the larger of `previous` and the largest cursor value in `relation`.

    Runs inside the caller's transaction. `relation` holds the batch's typed cursor column
    (NULL where it did not parse). Returns the stored cursor (None: nothing to store yet).
    """
    column, kind = _declared(spec)
    row = con.execute(
        f"SELECT CAST(greatest(max({quote(column)}), CAST(? AS {kind})) AS VARCHAR) FROM {quote(relation)}",
        [previous.value if previous else None],
    ).fetchone()
    if row is None or row[0] is None:
        return previous
    cursor = Cursor(column, str(row[0]), kind)
    con.execute("DELETE FROM meta.cursors WHERE source = ? AND entity = ?", [source, entity])
    con.execute(
        "INSERT INTO meta.cursors VALUES (?, ?, ?, ?, ?, ?, ?)",
        [source, entity, cursor.column, cursor.value, cursor.type, load_id, utcnow()],
    )
    return cursor
