"""Committing loads: one transaction per partition day replaces raw + quarantine + meta.loads.

The readers stage a whole window in TEMP tables first (one scan over all the day files is much
faster than one per day). Committing then walks the days: for each, in one transaction, delete
the day's rows from `raw.<source>__<entity>` and `quarantine.<source>__<entity>`, insert the
staged rows of that day into both (and into the entity's child tables, e.g. copybook OCCURS),
check that every record read was loaded or quarantined and append the day's `meta.loads` row.
A rerun converges to the same rows; a failure rolls back and leaves the day as it was (days
already committed stay committed, with their meta.loads rows).

This is `fabric.warehouse.replace_partitions` widened to two tables and a log row, which must move
together; the tables are created from the declared columns (not from a staged relation) so that
a day with no file still gets correctly typed tables.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime

import duckdb

from fabric.errors import FabricError, WarehouseError
from fabric.identifiers import qualified, quote
from fabric.meta import utcnow

log = logging.getLogger(__name__)

METADATA_COLUMNS = (
    ("_fabric_load_id", "VARCHAR"),
    ("_fabric_partition", "DATE"),
    ("_fabric_source", "VARCHAR"),
    ("_fabric_position", "VARCHAR"),
    ("_fabric_loaded_at", "TIMESTAMP"),
)
QUARANTINE_COLUMNS = (("reason_code", "VARCHAR"), ("reason", "VARCHAR"), ("raw_record", "VARCHAR"))
_REASONS_IN_MESSAGE = 3


@dataclass(frozen=True)
class LoadResult:
    """One load: one source entity x one partition day."""

    load_id: str
    source: str
    entity: str
    partition: date
    source_path: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    status: str  # 'ok' | 'warning' (some rows quarantined) | 'missing' (no file for the day)
    message: str


@dataclass(frozen=True)
class DayRead:
    """What a reader found for one partition day, before it is committed."""

    day: date
    source_path: str
    rows_read: int
    missing: bool = False


@dataclass(frozen=True)
class ChildTable:
    """A raw table of rows belonging to an entity's records (a copybook OCCURS as a table).

    `staged` is a TEMP relation with `_fabric_partition`, `_fabric_source`, `_fabric_position`
    (the parent record's) and the declared columns; each day of it replaces the day in
    `raw.<name>` in the same transaction as the entity's own tables.
    """

    name: str
    columns: tuple[tuple[str, str], ...]  # declared (name, DuckDB type), in order
    staged: str

    @property
    def raw(self) -> str:
        return qualified("raw", self.name)


@dataclass(frozen=True)
class EntityTables:
    """The raw and quarantine tables of one source entity (and its child tables, if any)."""

    source: str
    entity: str
    columns: tuple[tuple[str, str], ...]  # declared (name, DuckDB type), in order
    children: tuple[ChildTable, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.source}__{self.entity}"

    @property
    def raw(self) -> str:
        return qualified("raw", self.name)

    @property
    def quarantine(self) -> str:
        return qualified("quarantine", self.name)

    def ensure(self, con: duckdb.DuckDBPyConnection) -> None:
        """Create the tables if missing; refuse ones whose columns differ from the declaration."""
        _ensure(con, "raw", self.name, (*self.columns, *METADATA_COLUMNS))
        _ensure(con, "quarantine", self.name, (*METADATA_COLUMNS, *QUARANTINE_COLUMNS))
        for child in self.children:
            _ensure(con, "raw", child.name, (*child.columns, *METADATA_COLUMNS))


def _ensure(
    con: duckdb.DuckDBPyConnection, schema: str, name: str, columns: Sequence[tuple[str, str]]
) -> None:
    # The one table's catalog entry: `duckdb_columns()` would list every column of every attached
    # database, a source server's catalog included (tens of milliseconds per call). A missing
    # table fails to bind, which leaves an open transaction usable.
    try:
        found = con.execute(
            "SELECT name, type FROM pragma_table_info(?) ORDER BY cid", [qualified(schema, name)]
        ).fetchall()
    except duckdb.CatalogException:
        found = []
    expected = [(column, kind) for column, kind in columns]
    if not found:
        ddl = ", ".join(f"{quote(column)} {kind}" for column, kind in expected)
        con.execute(f"CREATE TABLE {qualified(schema, name)} ({ddl})")
    elif [(str(n), str(t)) for n, t in found] != expected:
        raise WarehouseError(
            f"{schema}.{name} has columns {_columns_text(found)} but the source "
            f"declares {_columns_text(expected)}. Drop the table (raw data is reloaded "
            "from the sources) or restore the previous declaration."
        )


def _columns_text(columns: Sequence[tuple[object, object]]) -> str:
    return "(" + ", ".join(f"{name} {kind}" for name, kind in columns) + ")"


@contextmanager
def single_threaded(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Run the statements inside on one DuckDB thread, then restore the connection's count.

    For work only one thread can do: reading one stream (a source query served by an index) or
    one row group. DuckDB's other threads then use CPU without doing any of it, which on a small
    machine slows the work and a source server beside it: staging 50,000 PostgreSQL rows read
    by index took 4-8x the CPU and 1.4-2x the time with 2 threads as with 1 (docs/benchmarks.md).
    """
    (threads,) = con.execute("SELECT current_setting('threads')").fetchone() or (1,)
    con.execute("SET threads = 1")
    try:
        yield
    finally:
        con.execute(f"SET threads = {int(threads)}")


def record_load(
    con: duckdb.DuckDBPyConnection, result: LoadResult, run_id: str, started_at: datetime
) -> None:
    """Append `result` to `meta.loads` (inside the caller's transaction, if any)."""
    con.execute(
        "INSERT INTO meta.loads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            result.load_id,
            result.source,
            result.entity,
            result.partition,
            result.source_path,
            result.rows_read,
            result.rows_loaded,
            result.rows_quarantined,
            result.status,
            result.message,
            run_id,
            started_at,
            utcnow(),
        ],
    )


def commit_days(
    con: duckdb.DuckDBPyConnection,
    tables: EntityTables,
    checked: str,
    days: Sequence[DayRead],
    run_id: str,
    started_at: datetime,
    progress: Callable[[int, int], None] | None = None,
) -> list[LoadResult]:
    """Commit each day of `days` from the TEMP table `checked` (see `casting.check_records`).

    `checked` is sorted by `_fabric_seq`, so rows keep the source order without another sort.
    """
    tables.ensure(con)
    staged = quote(checked)
    raw_columns = ", ".join(quote(name) for name, _ in tables.columns)
    results = []
    for done, read in enumerate(days, start=1):
        load_id = str(uuid.uuid4())
        loaded_at = utcnow()
        day = [read.day]
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"DELETE FROM {tables.raw} WHERE _fabric_partition = ?", day)
            con.execute(f"DELETE FROM {tables.quarantine} WHERE _fabric_partition = ?", day)
            loaded = _count(
                con.execute(
                    f"""INSERT INTO {tables.raw} BY NAME
                        SELECT {raw_columns}, ? AS _fabric_load_id, _fabric_partition,
                               _fabric_source, _fabric_position, ? AS _fabric_loaded_at
                        FROM {staged} WHERE _fabric_partition = ? AND _fabric_code IS NULL""",
                    [load_id, loaded_at, read.day],
                )
            )
            quarantined = _count(
                con.execute(
                    f"""INSERT INTO {tables.quarantine} BY NAME
                        SELECT ? AS _fabric_load_id, _fabric_partition, _fabric_source,
                               _fabric_position, ? AS _fabric_loaded_at,
                               _fabric_code AS reason_code, _fabric_reason AS reason,
                               _fabric_raw AS raw_record
                        FROM {staged} WHERE _fabric_partition = ? AND _fabric_code IS NOT NULL""",
                    [load_id, loaded_at, read.day],
                )
            )
            for child in tables.children:
                con.execute(f"DELETE FROM {child.raw} WHERE _fabric_partition = ?", day)
                con.execute(
                    f"""INSERT INTO {child.raw} BY NAME
                        SELECT {", ".join(quote(name) for name, _ in child.columns)},
                               ? AS _fabric_load_id, _fabric_partition, _fabric_source,
                               _fabric_position, ? AS _fabric_loaded_at
                        FROM {quote(child.staged)} WHERE _fabric_partition = ?""",
                    [load_id, loaded_at, read.day],
                )
            if read.rows_read != loaded + quarantined:
                raise FabricError(
                    f"{tables.source}.{tables.entity} {read.day}: read {read.rows_read} records "
                    f"from {read.source_path} but {loaded} loaded + {quarantined} quarantined; "
                    "nothing was committed for this day (this is a bug in the reader)"
                )
            result = LoadResult(
                load_id=load_id,
                source=tables.source,
                entity=tables.entity,
                partition=read.day,
                source_path=read.source_path,
                rows_read=read.rows_read,
                rows_loaded=loaded,
                rows_quarantined=quarantined,
                status="missing" if read.missing else "warning" if quarantined else "ok",
                message=_message(con, staged, read, loaded, quarantined),
            )
            record_load(con, result, run_id, started_at)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        results.append(result)
        log_committed(result, done, len(days))
        if progress is not None:
            progress(done, len(days))
    return results


def log_committed(result: LoadResult, done: int, days: int) -> None:
    """One line per committed day, for the operator watching a load or backfill."""
    log.info("ingest %s.%s %s committed (%d of %d days): %s read, %s loaded, %s quarantined",
             result.source, result.entity, result.partition, done, days, f"{result.rows_read:,}",
             f"{result.rows_loaded:,}", f"{result.rows_quarantined:,}")  # fmt: skip


def _count(cursor: duckdb.DuckDBPyConnection) -> int:
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def _message(
    con: duckdb.DuckDBPyConnection, staged: str, read: DayRead, loaded: int, quarantined: int
) -> str:
    if read.missing:
        return f"no file for {read.day}: expected {read.source_path}"
    if not read.rows_read:
        return f"no records in {read.source_path}"
    text = f"{loaded} rows loaded from {read.source_path}"
    if quarantined:
        reasons = [
            str(reason)
            for (reason,) in con.execute(
                f"SELECT _fabric_reason FROM {staged} WHERE _fabric_partition = ? "
                f"AND _fabric_code IS NOT NULL ORDER BY _fabric_seq LIMIT {_REASONS_IN_MESSAGE}",
                [read.day],
            ).fetchall()
        ]
        more = quarantined - len(reasons)
        text += f", {quarantined} quarantined: " + "; ".join(reasons)
        if more:
            text += f" (and {more} more)"
    return text
