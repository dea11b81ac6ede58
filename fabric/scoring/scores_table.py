"""Where score rows live: compact rows, written in bounded memory, visible one whole day at a time.

Everyone reads `scores.churn_scores`, a view over two tables:

- `scores.churn_scores_rows`: per score row only what varies by row: partition, entity keys,
  score, decision, who scored it (`scored_by`: 0 rules, 1 the champion model, 2 the challenger
  model) and its variant (an index into `VARIANTS`), tagged with its write (`_fabric_write`);
- `scores.churn_scores_current`: for each day, the write readers see, with what is the same for
  every row of that write: run id, scoring time, and the model name and version behind codes 1
  and 2 (code 0 is always model `rules`, version 0).

The view decodes the codes and derives `lineage_id`, a function of the row
(`fabric.scoring.score.lineage_id`: MD5 of `run|partition|customer|model|version` in UUID form),
so it costs nothing to write and is computed only by queries that select it. Storing these
columns per row made writing a score row about four times as expensive (measured with duckdb
1.5.5: 1M rows 1.6-1.8 CPU s with the 36-character lineage id and five constant strings, 0.4 s
compact), which mattered next to the model's own prediction time (docs/benchmarks.md).

A scoring run writes a day under a new write id and commits batch by batch. It then swaps the
day's pointer (and the write's description) in one small transaction, and only after that
deletes the rows of the day's previous write. Readers see the old day or the new one, never part
of a day. A single transaction per day would also be atomic, but DuckDB keeps a transaction's
appended rows in memory until it commits, unbounded by `memory_limit`: memory would grow with
the size of the day.

A crash before the swap leaves rows that no reader sees. The next write of that day deletes
them first (`begin_write`), so reruns converge.

Warehouses from earlier layouts (a `scores.churn_scores` table; rows holding every column) are
converted in place by `ensure_scores`, after checking that each day's stored lineage ids, run
and models are what the compact layout derives: otherwise it refuses, naming the day.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, datetime

import duckdb
import pyarrow as pa

from fabric.errors import FabricError
from fabric.scoring.variants import VARIANTS
from fabric.warehouse import table_exists

log = logging.getLogger(__name__)

SCORES_TABLE = "scores.churn_scores"
SCORES_ROWS = "scores.churn_scores_rows"
SCORES_CURRENT = "scores.churn_scores_current"
SCORES_PARTITION_COLUMN = "partition_date"
WRITE_COLUMN = "_fabric_write"
RULES_MODEL = ("rules", 0)
BY_RULES, BY_CHAMPION, BY_CHALLENGER = 0, 1, 2
"""`scored_by` codes of `scores.churn_scores_rows`."""
SCORES_SCHEMA = pa.schema(
    [
        ("partition_date", pa.date32()),
        ("fabric_customer_id", pa.string()),
        ("crm_customer_id", pa.int64()),
        ("score", pa.float64()),
        ("decision", pa.bool_()),
        ("model_name", pa.string()),
        ("model_version", pa.int32()),
        ("variant", pa.string()),
        ("scorer", pa.string()),
        ("scored_at", pa.timestamp("us")),
        ("run_id", pa.string()),
        ("lineage_id", pa.string()),
    ]
)
ROW_COLUMNS = "fabric_customer_id, crm_customer_id, score, decision, scored_by, variant"
"""What a write inserts per row (after `partition_date`), see `replace_day`."""
_ROWS_DDL = f"""CREATE TABLE IF NOT EXISTS {SCORES_ROWS} (
    partition_date DATE, fabric_customer_id VARCHAR, crm_customer_id BIGINT, score DOUBLE,
    decision BOOLEAN, scored_by TINYINT, variant TINYINT, {WRITE_COLUMN} BIGINT)"""
_CURRENT_DDL = f"""CREATE TABLE IF NOT EXISTS {SCORES_CURRENT} (
    partition_date DATE, write_id BIGINT, swapped_at TIMESTAMP, run_id VARCHAR, scored_at TIMESTAMP,
    champion_name VARCHAR, champion_version INTEGER, challenger_name VARCHAR, challenger_version INTEGER)"""


LINEAGE_ID_SQL = """CAST(CAST(md5(run_id || '|' || CAST(partition_date AS VARCHAR) || '|'
    || fabric_customer_id || '|' || model_name || '|' || CAST(model_version AS VARCHAR)) AS UUID)
    AS VARCHAR)"""
"""SQL for a score row's lineage id from its columns (`fabric.scoring.score.lineage_id` in SQL):
the view derives it, and publishing computes it for the records it stages."""


def _variant_sql(column: str) -> str:
    whens = " ".join(f"WHEN {code} THEN '{name}'" for code, name in enumerate(VARIANTS))
    return f"CASE {column} {whens} END"


_VIEW = f"""CREATE OR REPLACE VIEW {SCORES_TABLE} AS
    SELECT partition_date, fabric_customer_id, crm_customer_id, score, decision, model_name,
        model_version, variant, scorer, scored_at, run_id,
        {LINEAGE_ID_SQL} AS lineage_id
    FROM (
        SELECT r.partition_date, r.fabric_customer_id, r.crm_customer_id, r.score, r.decision,
            CASE r.scored_by WHEN {BY_CHAMPION} THEN c.champion_name WHEN {BY_CHALLENGER}
                THEN c.challenger_name ELSE '{RULES_MODEL[0]}' END AS model_name,
            CASE r.scored_by WHEN {BY_CHAMPION} THEN c.champion_version WHEN {BY_CHALLENGER}
                THEN c.challenger_version ELSE {RULES_MODEL[1]} END AS model_version,
            {_variant_sql("r.variant")} AS variant,
            CASE WHEN r.scored_by = {BY_RULES} THEN 'rules' ELSE 'model' END AS scorer,
            c.scored_at, c.run_id
        FROM {SCORES_ROWS} AS r
        JOIN {SCORES_CURRENT} AS c
            ON r.partition_date = c.partition_date AND r.{WRITE_COLUMN} = c.write_id
    )"""


@dataclass(frozen=True)
class WriteInfo:
    """What every row of one write shares: the run, when it scored, and the models behind
    `scored_by` codes 1 (champion) and 2 (challenger), as (name, version), None if unused."""

    run_id: str
    scored_at: datetime
    champion: tuple[str, int] | None = None
    challenger: tuple[str, int] | None = None


def ensure_scores(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables and the view, converting a warehouse of an earlier layout in place."""
    if _is_table(con, SCORES_TABLE):  # the first layout: one table holding every column
        _convert(con, SCORES_TABLE, has_writes=False)
    elif table_exists(con, SCORES_ROWS) and "model_name" in _columns(con, SCORES_ROWS):
        _convert(con, SCORES_ROWS, has_writes=True)  # rows with every column, per write
    con.execute(_ROWS_DDL)
    con.execute(_CURRENT_DDL)
    con.execute(_VIEW)


def begin_write(con: duckdb.DuckDBPyConnection, day: date) -> int:
    """A new write id for `day`, after deleting rows of the day's unfinished writes."""
    query = f"SELECT max(write_id) FROM {SCORES_CURRENT} WHERE partition_date = ?"
    row = con.execute(query, [day]).fetchone()
    current = row[0] if row else None
    _delete_rows(con, f"partition_date = ? AND {WRITE_COLUMN} IS DISTINCT FROM ?", [day, current])
    return max(time.time_ns(), int(current or 0) + 1)


def finish_write(con: duckdb.DuckDBPyConnection, day: date, write_id: int, info: WriteInfo) -> None:
    """Make write `write_id` the day's rows for every reader, then drop the previous write."""
    champion = info.champion or (None, None)
    challenger = info.challenger or (None, None)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM {SCORES_CURRENT} WHERE partition_date = ?", [day])
        con.execute(
            f"INSERT INTO {SCORES_CURRENT} VALUES (?, ?, now()::TIMESTAMP, ?, ?, ?, ?, ?, ?)",
            [day, write_id, info.run_id, info.scored_at, *champion, *challenger],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    _delete_rows(con, f"partition_date = ? AND {WRITE_COLUMN} <> ?", [day, write_id])


def discard_write(con: duckdb.DuckDBPyConnection, day: date, write_id: int) -> None:
    """Delete the rows of a write that will not be finished (the day keeps its current rows)."""
    _delete_rows(con, f"partition_date = ? AND {WRITE_COLUMN} = ?", [day, write_id])


def _delete_rows(con: duckdb.DuckDBPyConnection, where: str, params: list[object]) -> None:
    """Delete score rows without the connection's memory limit, then restore it.

    Scoring streams under a small limit (`warehouse.scoring_memory_limit`), but DuckDB keeps
    version information for every row a DELETE removes until the next checkpoint: measured with
    duckdb 1.5.5, about 6.5 MB per million rows. Deleting a replaced 10M-row day failed with
    "Out of Memory" under a 64MB limit (and would have under 256MB at ~40M rows). Without a limit
    the delete of 10M rows peaked at 270 MB RSS.
    """
    limit = _memory_limit(con)
    con.execute("RESET memory_limit")
    # RESET alone changes the setting but not the buffer pool's limit (duckdb 1.5.5): set the
    # default it reports explicitly.
    con.execute(f"SET memory_limit = '{_memory_limit(con)}'")
    try:
        ((deleted,),) = con.execute(f"DELETE FROM {SCORES_ROWS} WHERE {where}", params).fetchall()
        if deleted:
            con.execute("CHECKPOINT")  # writes the deletes out, freeing their version information
    finally:
        try:
            con.execute(f"SET memory_limit = '{limit}'")
        except duckdb.OutOfMemoryException as exc:  # the checkpoint could not run (another writer)
            log.warning("scores: DuckDB's memory limit stays at its default after a delete: %s", exc)


def _memory_limit(con: duckdb.DuckDBPyConnection) -> str:
    """The connection's memory limit as DuckDB renders it (e.g. '61.0 MiB'), which SET accepts
    (rounded to a tenth of its unit)."""
    ((limit,),) = con.execute("SELECT current_setting('memory_limit')").fetchall()
    return str(limit)


def replace_day(
    con: duckdb.DuckDBPyConnection,
    day: date,
    select: str,
    info: WriteInfo,
    params: list[object] | None = None,
) -> None:
    """Replace `day`'s rows with the rows of `select` (columns as `ROW_COLUMNS`, in that order),
    as one write: for loading score rows made elsewhere (benchmarks, tests)."""
    write_id = begin_write(con, day)
    try:
        con.execute(
            f"INSERT INTO {SCORES_ROWS} SELECT CAST(? AS DATE), *, {write_id} FROM ({select})",
            [day, *(params or [])],
        )
    except BaseException:
        discard_write(con, day, write_id)
        raise
    finish_write(con, day, write_id, info)


def _convert(con: duckdb.DuckDBPyConnection, old: str, has_writes: bool) -> None:
    """Move the rows of an earlier layout (`old`: every view column per row, plus the write
    column when `has_writes`) into the compact tables, in one transaction. Each (day, write)
    must hold one run and scoring time, one model per scored-by code, and the lineage ids the
    view derives; otherwise nothing changes and the error names the day. Rows of unfinished
    writes (never visible) are dropped, as the day's next write would."""
    write, visible = "0", ""
    if has_writes:
        write = f"old.{WRITE_COLUMN}"
        visible = (
            f"SEMI JOIN {SCORES_CURRENT} AS c "
            f"ON c.partition_date = old.partition_date AND c.write_id = old.{WRITE_COLUMN}"
        )
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"""CREATE TEMP TABLE _fabric_scores_old AS
                SELECT old.*, {write} AS _write,
                    CASE WHEN scorer = 'rules' THEN {BY_RULES} WHEN variant = 'champion' THEN {BY_CHAMPION}
                         ELSE {BY_CHALLENGER} END AS _by
                FROM {old} AS old {visible}"""
        )
        con.execute(
            f"""CREATE TEMP TABLE _fabric_scores_writes AS
                SELECT partition_date, _write,
                    count(DISTINCT run_id) AS runs, count(DISTINCT scored_at) AS times,
                    count(DISTINCT (model_name, model_version)) FILTER (WHERE _by = {BY_CHAMPION})
                        AS champions,
                    count(DISTINCT (model_name, model_version)) FILTER (WHERE _by = {BY_CHALLENGER})
                        AS challengers,
                    count(*) FILTER (WHERE _by = {BY_RULES} AND (model_name, model_version)
                        IS DISTINCT FROM ('{RULES_MODEL[0]}', {RULES_MODEL[1]})) AS odd_rules,
                    count(*) FILTER (WHERE lineage_id IS DISTINCT FROM {LINEAGE_ID_SQL})
                        AS odd_lineage,
                    any_value(run_id) AS run_id, any_value(scored_at) AS scored_at,
                    any_value(model_name) FILTER (WHERE _by = {BY_CHAMPION}) AS champion_name,
                    any_value(model_version) FILTER (WHERE _by = {BY_CHAMPION}) AS champion_version,
                    any_value(model_name) FILTER (WHERE _by = {BY_CHALLENGER}) AS challenger_name,
                    any_value(model_version) FILTER (WHERE _by = {BY_CHALLENGER}) AS challenger_version
                FROM _fabric_scores_old GROUP BY ALL"""
        )
        bad = con.execute(
            """SELECT partition_date, runs, times, champions, challengers, odd_rules, odd_lineage
               FROM _fabric_scores_writes
               WHERE runs > 1 OR times > 1 OR champions > 1 OR challengers > 1 OR odd_rules > 0
                  OR odd_lineage > 0
               ORDER BY 1 LIMIT 1"""
        ).fetchone()
        if bad:
            raise FabricError(
                f"{SCORES_TABLE}: cannot convert the rows of {bad[0]} to the compact layout "
                f"({bad[1]} runs, {bad[2]} scoring times, {bad[3]} champion and {bad[4]} challenger "
                f"models, {bad[5]} rule rows not of model rules v0, {bad[6]} lineage ids that are not "
                "MD5(run|partition|customer|model|version)); re-score that day with `fabric score`, "
                "or delete its rows, then retry"
            )
        if has_writes:
            con.execute(f"DROP VIEW IF EXISTS {SCORES_TABLE}")
        con.execute(f"DROP TABLE {old}")
        con.execute(f"DROP TABLE IF EXISTS {SCORES_CURRENT}")
        con.execute(_ROWS_DDL)
        con.execute(_CURRENT_DDL)
        variants = " ".join(f"WHEN '{name}' THEN {code}" for code, name in enumerate(VARIANTS))
        con.execute(
            f"""INSERT INTO {SCORES_ROWS}
                SELECT partition_date, fabric_customer_id, crm_customer_id, score, decision, _by,
                       CASE variant {variants} END, _write
                FROM _fabric_scores_old"""
        )
        con.execute(
            f"""INSERT INTO {SCORES_CURRENT}
                SELECT partition_date, _write, now()::TIMESTAMP, run_id, scored_at,
                       champion_name, champion_version, challenger_name, challenger_version
                FROM _fabric_scores_writes"""
        )
        con.execute("DROP TABLE _fabric_scores_old")
        con.execute("DROP TABLE _fabric_scores_writes")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _columns(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
    schema, table = name.split(".")
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchall()
    return [r[0] for r in rows]


def _is_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    schema, table = name.split(".")
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = ? AND table_name = ? AND table_type = 'BASE TABLE'",
        [schema, table],
    ).fetchone()
    return bool(row and row[0])
