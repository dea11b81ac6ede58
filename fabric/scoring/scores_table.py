"""Where score rows live: written in bounded memory, made visible one whole day at a time.

Everyone reads `scores.churn_scores`, a view joining two tables:

- `scores.churn_scores_rows`: the rows of every write, each tagged with its write
  (`_fabric_write`, a BIGINT);
- `scores.churn_scores_current`: for each day, the write that readers see.

A scoring run writes a day under a new write id and commits batch by batch. It then swaps the
day's pointer in one small transaction, and only after that deletes the rows of the day's
previous write. Readers see the old day or the new one, never part of a day.

A single transaction per day would also be atomic, but DuckDB keeps a transaction's appended
rows in memory until it commits: about 170 bytes per score row, measured with duckdb 1.5.5, and
`memory_limit` does not bound it. The memory would then grow with the size of the day.

A crash before the swap leaves rows that no reader sees. The next write of that day deletes
them first (`begin_write`), so reruns converge.
"""

from __future__ import annotations

import time
from datetime import date

import duckdb
import pyarrow as pa

from fabric.warehouse import table_exists

SCORES_TABLE = "scores.churn_scores"
SCORES_ROWS = "scores.churn_scores_rows"
SCORES_CURRENT = "scores.churn_scores_current"
SCORES_PARTITION_COLUMN = "partition_date"
WRITE_COLUMN = "_fabric_write"
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
_COLUMNS = """partition_date DATE, fabric_customer_id VARCHAR, crm_customer_id BIGINT,
    score DOUBLE, decision BOOLEAN, model_name VARCHAR, model_version INTEGER, variant VARCHAR,
    scorer VARCHAR, scored_at TIMESTAMP, run_id VARCHAR, lineage_id VARCHAR"""
_VIEW = f"""CREATE OR REPLACE VIEW {SCORES_TABLE} AS
    SELECT r.* EXCLUDE ({WRITE_COLUMN})
    FROM {SCORES_ROWS} AS r
    SEMI JOIN {SCORES_CURRENT} AS c
        ON r.partition_date = c.partition_date AND r.{WRITE_COLUMN} = c.write_id"""


def ensure_scores(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables and the view. A warehouse from before this layout, where
    `scores.churn_scores` is a table, is converted in place: each day keeps its rows, which
    were written by one run."""
    if _is_table(con, SCORES_TABLE) and not table_exists(con, SCORES_ROWS):
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"ALTER TABLE {SCORES_TABLE} RENAME TO churn_scores_rows")
            con.execute(f"ALTER TABLE {SCORES_ROWS} ADD COLUMN {WRITE_COLUMN} BIGINT DEFAULT 0")
            con.execute(
                f"""CREATE TABLE {SCORES_CURRENT} AS
                    SELECT DISTINCT partition_date, 0::BIGINT AS write_id, now()::TIMESTAMP AS swapped_at
                    FROM {SCORES_ROWS}"""
            )
            con.execute(_VIEW)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return
    con.execute(f"CREATE TABLE IF NOT EXISTS {SCORES_ROWS} ({_COLUMNS}, {WRITE_COLUMN} BIGINT)")
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {SCORES_CURRENT} (
            partition_date DATE, write_id BIGINT, swapped_at TIMESTAMP)"""
    )
    con.execute(_VIEW)


def begin_write(con: duckdb.DuckDBPyConnection, day: date) -> int:
    """A new write id for `day`, after deleting rows of the day's unfinished writes."""
    query = f"SELECT max(write_id) FROM {SCORES_CURRENT} WHERE partition_date = ?"
    row = con.execute(query, [day]).fetchone()
    current = row[0] if row else None
    con.execute(
        f"DELETE FROM {SCORES_ROWS} WHERE partition_date = ? AND {WRITE_COLUMN} IS DISTINCT FROM ?",
        [day, current],
    )
    return max(time.time_ns(), int(current or 0) + 1)


def finish_write(con: duckdb.DuckDBPyConnection, day: date, write_id: int) -> None:
    """Make write `write_id` the day's rows for every reader, then drop the previous write."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM {SCORES_CURRENT} WHERE partition_date = ?", [day])
        con.execute(
            f"INSERT INTO {SCORES_CURRENT} VALUES (?, ?, now()::TIMESTAMP)", [day, write_id]
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute(
        f"DELETE FROM {SCORES_ROWS} WHERE partition_date = ? AND {WRITE_COLUMN} <> ?", [day, write_id]
    )


def discard_write(con: duckdb.DuckDBPyConnection, day: date, write_id: int) -> None:
    """Delete the rows of a write that will not be finished (the day keeps its current rows)."""
    con.execute(
        f"DELETE FROM {SCORES_ROWS} WHERE partition_date = ? AND {WRITE_COLUMN} = ?", [day, write_id]
    )


def replace_day(
    con: duckdb.DuckDBPyConnection, day: date, select: str, params: list[object] | None = None
) -> None:
    """Replace `day`'s rows with the rows of `select` (the view's columns, in its order), as one
    write: for loading score rows made elsewhere (benchmarks, tests, a migration)."""
    write_id = begin_write(con, day)
    try:
        con.execute(f"INSERT INTO {SCORES_ROWS} SELECT *, {write_id} FROM ({select})", params)
    except BaseException:
        discard_write(con, day, write_id)
        raise
    finish_write(con, day, write_id)


def _is_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    schema, table = name.split(".")
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = ? AND table_name = ? AND table_type = 'BASE TABLE'",
        [schema, table],
    ).fetchone()
    return bool(row and row[0])
