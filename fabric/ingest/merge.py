"""`merge` mode: `raw.<source>__<entity>` is the current state of the source table by key.

A batch is the rows changed since the entity's cursor (`cursors`), staged and checked like any
load. It commits in one transaction:

1. refused first, before anything is written, if a key appears more than once in the batch (the
   same row twice means the declared primary key is not the source's key; picking one copy
   would be a silent guess). The refusal names the table and the repeated keys;
2. the raw rows of the batch's keys are replaced by the batch's rows that load (rows read again
   by the look-back or a rerun are rewritten as they are, with the new load's id);
3. quarantine holds the latest rejection per key: a key read again replaces its quarantined row
   (with the new rejection, or none if the row now loads). A key whose new version is
   quarantined keeps its last good version in raw;
4. the cursor advances to the batch's largest cursor value, and the `meta.loads` row is added.

A failure anywhere rolls the whole batch back, cursor included, so a rerun reads the same rows
again and converges. `_fabric_partition` of a merged row is the partition of the load that last
read it. Rows deleted in the source stay in raw: a cursor does not see deletions (read such
tables in `snapshot` mode, or mark deletions with a column).
"""

from __future__ import annotations

import logging
import uuid
from contextlib import nullcontext
from datetime import datetime

import duckdb

from fabric.config import SqliteEntity
from fabric.errors import FabricError
from fabric.identifiers import quote
from fabric.ingest import cursors, outcomes
from fabric.ingest.load import DayRead, EntityTables, LoadResult, record_load, single_threaded
from fabric.meta import utcnow

log = logging.getLogger(__name__)

_KEYS_IN_MESSAGE = 5
_REASONS_IN_MESSAGE = 3
_ROW_GROUP_ROWS = 122_880  # DuckDB's; a TEMP table this small is one row group, read by one thread


def commit_merge(
    con: duckdb.DuckDBPyConnection,
    tables: EntityTables,
    checked: str,
    spec: SqliteEntity,
    read: DayRead,
    previous: cursors.Cursor | None,
    run_id: str,
    started_at: datetime,
) -> LoadResult:
    """Merge the checked batch in TEMP table `checked` (see `casting.check_records`)."""
    staged = quote(checked)
    _refuse_repeated_keys(con, tables, staged, spec, read, run_id, started_at)
    tables.ensure(con)
    keys = [quote(k) for k in spec.primary_key]
    names = ", ".join(quote(name) for name, _ in tables.columns)
    load_id = str(uuid.uuid4())
    loaded_at = utcnow()
    con.execute("BEGIN TRANSACTION")
    try:
        replaced = _count(
            con.execute(
                f"""DELETE FROM {tables.raw} AS current
                    USING (SELECT DISTINCT {", ".join(keys)} FROM {staged}
                           WHERE _fabric_code IS NULL) AS batch
                    WHERE {" AND ".join(f"current.{k} = batch.{k}" for k in keys)}"""
            )
        )
        with single_threaded(con) if read.rows_read <= _ROW_GROUP_ROWS else nullcontext():
            loaded = _count(
                con.execute(
                    f"""INSERT INTO {tables.raw} BY NAME
                        SELECT {names}, ? AS _fabric_load_id, _fabric_partition, _fabric_source,
                               _fabric_position, ? AS _fabric_loaded_at
                        FROM {staged} WHERE _fabric_code IS NULL""",
                    [load_id, loaded_at],
                )
            )
        if con.execute(f"SELECT EXISTS (FROM {tables.quarantine})").fetchone() == (True,):
            # Only then: the join would hash every position of the batch to match nothing.
            con.execute(
                f"""DELETE FROM {tables.quarantine} AS current
                    USING (SELECT DISTINCT _fabric_position FROM {staged}) AS batch
                    WHERE current._fabric_position = batch._fabric_position"""
            )
        quarantined = _count(
            con.execute(
                f"""INSERT INTO {tables.quarantine} BY NAME
                    SELECT ? AS _fabric_load_id, _fabric_partition, _fabric_source,
                           _fabric_position, ? AS _fabric_loaded_at, _fabric_code AS reason_code,
                           _fabric_reason AS reason, _fabric_raw AS raw_record
                    FROM {staged} WHERE _fabric_code IS NOT NULL""",
                [load_id, loaded_at],
            )
        )
        if read.rows_read != loaded + quarantined:
            raise FabricError(
                f"{tables.source}.{tables.entity}: read {read.rows_read} rows from "
                f"{read.source_path} but {loaded} loaded + {quarantined} quarantined; nothing "
                "was committed (this is a bug in the reader)"
            )
        cursor = cursors.advance(con, tables.source, tables.entity, spec, previous, checked, load_id)
        result = LoadResult(
            load_id=load_id,
            source=tables.source,
            entity=tables.entity,
            partition=read.day,
            source_path=read.source_path,
            rows_read=read.rows_read,
            rows_loaded=loaded,
            rows_quarantined=quarantined,
            status="warning" if quarantined else "ok",
            message=_message(con, staged, read, loaded - replaced, replaced, quarantined, cursor),
        )
        record_load(con, result, run_id, started_at)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    log.info("ingest %s.%s merge committed: %s", tables.source, tables.entity, result.message)
    return result


def _refuse_repeated_keys(
    con: duckdb.DuckDBPyConnection,
    tables: EntityTables,
    staged: str,
    spec: SqliteEntity,
    read: DayRead,
    run_id: str,
    started_at: datetime,
) -> None:
    keys = [quote(k) for k in spec.primary_key]
    repeated = con.execute(
        f"""SELECT min(_fabric_position), count(*), count(*) OVER ()
            FROM {staged} WHERE {" AND ".join(f"{k} IS NOT NULL" for k in keys)}
            GROUP BY {", ".join(keys)} HAVING count(*) > 1
            ORDER BY 1 LIMIT {_KEYS_IN_MESSAGE}"""
    ).fetchall()
    if not repeated:
        return
    shown = ", ".join(f"{position} ({copies} rows)" for position, copies, _ in repeated)
    more = int(repeated[0][2]) - len(repeated)
    reason = (
        f"{read.source_path}: merge refused: the batch of {read.rows_read} rows holds "
        f"{repeated[0][2]} primary key value(s) ({', '.join(spec.primary_key)}) more than once: "
        f"{shown}{f' and {more} more' if more else ''}. Nothing was committed and the cursor "
        "did not move; fix the source or the declared primary_key and run the load again."
    )
    raise outcomes.refuse(
        con, tables.source, tables.entity, [read.day], read.source_path, reason, run_id, started_at
    )


def _count(cursor: duckdb.DuckDBPyConnection) -> int:
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def _message(
    con: duckdb.DuckDBPyConnection,
    staged: str,
    read: DayRead,
    new: int,
    replaced: int,
    quarantined: int,
    cursor: cursors.Cursor | None,
) -> str:
    text = f"{new + replaced} rows merged from {read.source_path} ({new} new, {replaced} replaced)"
    if cursor is not None:
        text += f"; cursor {cursor.column} now {cursor.value}"
    if quarantined:
        reasons = [
            str(reason)
            for (reason,) in con.execute(
                f"SELECT _fabric_reason FROM {staged} WHERE _fabric_code IS NOT NULL "
                f"ORDER BY _fabric_position LIMIT {_REASONS_IN_MESSAGE}"
            ).fetchall()
        ]
        more = quarantined - len(reasons)
        text += f"; {quarantined} quarantined: " + "; ".join(reasons)
        if more:
            text += f" (and {more} more)"
    return text
