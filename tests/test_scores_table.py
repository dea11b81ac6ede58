"""The scores layout: writes committed in pieces, a day visible to readers only when complete."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from fabric.errors import FabricError
from fabric.scoring.score import lineage_id
from fabric.scoring.scores_table import (
    SCORES_ROWS,
    SCORES_TABLE,
    WriteInfo,
    begin_write,
    ensure_scores,
    finish_write,
    replace_day,
)

DAY = date(2026, 3, 31)
OTHER_DAY = date(2026, 3, 30)


def _rows(n: int, score: float) -> str:
    """`n` champion rows scored by the model (the columns a write inserts)."""
    return f"SELECT 'FC' || i, i, {score}, {score} >= 0.5, 1, 0 FROM range({n}) t(i)"


def _info(run: str, day: date = DAY) -> WriteInfo:
    return WriteInfo(run_id=run, scored_at=datetime(day.year, day.month, day.day, 2), champion=("churn", 1))


def _old_rows(n: int, score: float, run: str, day: date = DAY) -> str:
    """Rows of the earlier layouts, every view column stored, lineage ids as Fabric made them."""
    lineage = f"CAST(CAST(md5('{run}|{day}|FC' || i || '|churn|1') AS UUID) AS VARCHAR)"
    return (
        f"SELECT DATE '{day}', 'FC' || i, i, {score}, {score} >= 0.5, 'churn', 1, 'champion', "
        f"'model', TIMESTAMP '{day} 02:00:00', '{run}', {lineage} FROM range({n}) t(i)"
    )


def _visible(con: duckdb.DuckDBPyConnection, day: date = DAY) -> list[tuple[object, ...]]:
    return con.execute(
        f"SELECT run_id, count(*), min(score) FROM {SCORES_TABLE} WHERE partition_date = ? GROUP BY 1",
        [day],
    ).fetchall()


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    connection.execute("CREATE SCHEMA scores")
    ensure_scores(connection)
    return connection


def test_a_write_replaces_the_day_and_keeps_other_days(con: duckdb.DuckDBPyConnection) -> None:
    replace_day(con, DAY, _rows(100, 0.2), _info("run-1"))
    replace_day(con, OTHER_DAY, _rows(10, 0.9), _info("run-1", OTHER_DAY))
    replace_day(con, DAY, _rows(80, 0.7), _info("run-2"))
    assert _visible(con) == [("run-2", 80, 0.7)]
    assert _visible(con, OTHER_DAY) == [("run-1", 10, 0.9)]
    # The previous write's rows are gone from the underlying table, not only hidden.
    stored = con.execute(f"SELECT count(*) FROM {SCORES_ROWS} WHERE partition_date = ?", [DAY])
    assert stored.fetchone() == (80,)
    assert "_fabric_write" not in [c[0] for c in con.execute(f"DESCRIBE {SCORES_TABLE}").fetchall()]


def test_an_unfinished_write_is_invisible_and_cleared_by_the_next(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    replace_day(con, DAY, _rows(100, 0.2), _info("run-1"))
    # A write that committed two batches and then died (its process killed before the swap).
    write = begin_write(con, DAY)
    for _batch in range(2):
        con.execute(f"INSERT INTO {SCORES_ROWS} SELECT DATE '{DAY}', *, {write} FROM ({_rows(50, 0.6)})")
    con.close()

    reopened = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    ensure_scores(reopened)
    assert _visible(reopened) == [("run-1", 100, 0.2)]
    replace_day(reopened, DAY, _rows(70, 0.4), _info("run-3"))
    assert _visible(reopened) == [("run-3", 70, 0.4)]
    stored = reopened.execute(f"SELECT count(*) FROM {SCORES_ROWS} WHERE partition_date = ?", [DAY])
    assert stored.fetchone() == (70,)


def test_a_failing_write_leaves_the_day_as_it_was(con: duckdb.DuckDBPyConnection) -> None:
    replace_day(con, DAY, _rows(100, 0.2), _info("run-1"))
    # The last row's scorer code does not convert: the INSERT fails after reading 99 rows.
    failing = _rows(100, 0.3).replace(
        ", 1, 0 FROM", ", CAST(CASE WHEN i = 99 THEN 'boom' ELSE '1' END AS TINYINT), 0 FROM"
    )
    with pytest.raises(duckdb.ConversionException, match="boom"):
        replace_day(con, DAY, failing, _info("run-2"))
    assert _visible(con) == [("run-1", 100, 0.2)]
    assert con.execute(f"SELECT count(*) FROM {SCORES_ROWS}").fetchone() == (100,)


def test_a_finished_write_is_swapped_in_at_once(con: duckdb.DuckDBPyConnection) -> None:
    replace_day(con, DAY, _rows(100, 0.2), _info("run-1"))
    write = begin_write(con, DAY)
    con.execute(f"INSERT INTO {SCORES_ROWS} SELECT DATE '{DAY}', *, {write} FROM ({_rows(30, 0.8)})")
    assert _visible(con) == [("run-1", 100, 0.2)]  # committed, not yet visible
    finish_write(con, DAY, write, _info("run-2"))
    assert _visible(con) == [("run-2", 30, 0.8)]


def test_replacing_a_day_bigger_than_the_memory_limit_allows_to_delete(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """DuckDB holds version information for every deleted row until a checkpoint (~6.5 MB per
    million rows with duckdb 1.5.5): deleting the previous write of a 3M-row day fails with
    "Out of Memory" under a 16MB limit unless the delete lifts it. The limit is restored."""
    replace_day(con, DAY, _rows(3_000_000, 0.2), _info("run-1"))
    con.execute("SET memory_limit = '16MB'")
    replace_day(con, DAY, _rows(3_000_000, 0.4), _info("run-2"))
    assert _visible(con) == [("run-2", 3_000_000, 0.4)]
    assert con.execute(f"SELECT count(*) FROM {SCORES_ROWS}").fetchone() == (3_000_000,)
    ((limit,),) = con.execute("SELECT current_setting('memory_limit')").fetchall()
    number, unit = limit.split()
    assert unit == "MiB" and 14.5 < float(number) < 15.5  # as set, up to DuckDB's rounding


def test_a_warehouse_with_the_old_scores_table_is_converted(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    con.execute("CREATE SCHEMA scores")
    con.execute(
        """CREATE TABLE scores.churn_scores (
            partition_date DATE, fabric_customer_id VARCHAR, crm_customer_id BIGINT, score DOUBLE,
            decision BOOLEAN, model_name VARCHAR, model_version INTEGER, variant VARCHAR,
            scorer VARCHAR, scored_at TIMESTAMP, run_id VARCHAR, lineage_id VARCHAR)"""
    )
    con.execute(f"INSERT INTO scores.churn_scores {_old_rows(40, 0.1, 'old-run')}")
    con.execute(f"INSERT INTO scores.churn_scores {_old_rows(5, 0.9, 'old-run', OTHER_DAY)}")
    before = con.execute("SELECT * FROM scores.churn_scores ORDER BY ALL").fetchall()

    ensure_scores(con)
    assert con.execute(f"SELECT * FROM {SCORES_TABLE} ORDER BY ALL").fetchall() == before
    ensure_scores(con)  # a second call changes nothing
    replace_day(con, DAY, _rows(20, 0.5), _info("new-run"))
    assert _visible(con) == [("new-run", 20, 0.5)]
    assert _visible(con, OTHER_DAY) == [("old-run", 5, 0.9)]


def _previous_layout(path: Path) -> duckdb.DuckDBPyConnection:
    """A warehouse of the layout before the compact one: every column per row, per write."""
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA scores")
    con.execute(
        """CREATE TABLE scores.churn_scores_rows (
            partition_date DATE, fabric_customer_id VARCHAR, crm_customer_id BIGINT, score DOUBLE,
            decision BOOLEAN, model_name VARCHAR, model_version INTEGER, variant VARCHAR,
            scorer VARCHAR, scored_at TIMESTAMP, run_id VARCHAR, lineage_id VARCHAR, _fabric_write BIGINT)"""
    )
    con.execute(
        "CREATE TABLE scores.churn_scores_current "
        "(partition_date DATE, write_id BIGINT, swapped_at TIMESTAMP)"
    )
    con.execute(f"INSERT INTO scores.churn_scores_rows SELECT *, 7 FROM ({_old_rows(30, 0.3, 'run-a')})")
    # An unfinished write of the same day (never swapped in) and a finished one of another day.
    con.execute(f"INSERT INTO scores.churn_scores_rows SELECT *, 8 FROM ({_old_rows(9, 0.8, 'run-b')})")
    con.execute(
        f"INSERT INTO scores.churn_scores_rows SELECT *, 5 FROM ({_old_rows(4, 0.6, 'run-c', OTHER_DAY)})"
    )
    con.execute(
        f"INSERT INTO scores.churn_scores_current VALUES ('{DAY}', 7, now()), ('{OTHER_DAY}', 5, now())"
    )
    return con


def test_a_warehouse_of_full_rows_per_write_is_converted(tmp_path: Path) -> None:
    con = _previous_layout(tmp_path / "previous.duckdb")
    visible = """SELECT r.* EXCLUDE (_fabric_write) FROM scores.churn_scores_rows r
                 SEMI JOIN scores.churn_scores_current c
                 ON r.partition_date = c.partition_date AND r._fabric_write = c.write_id ORDER BY ALL"""
    before = con.execute(visible).fetchall()
    assert len(before) == 34

    ensure_scores(con)
    assert con.execute(f"SELECT * FROM {SCORES_TABLE} ORDER BY ALL").fetchall() == before
    row = con.execute(
        f"SELECT * FROM {SCORES_TABLE} WHERE crm_customer_id = 3 AND run_id = 'run-a'"
    ).fetchone()
    assert row is not None and row[-1] == lineage_id("run-a", DAY, "FC3", "churn", 1)
    # The unfinished write, never visible, is not carried over.
    assert con.execute(f"SELECT count(*) FROM {SCORES_ROWS}").fetchone() == (34,)
    replace_day(con, DAY, _rows(2, 0.5), _info("run-d"))
    assert con.execute(f"SELECT count(*) FROM {SCORES_TABLE}").fetchone() == (6,)


def test_a_conversion_that_would_change_lineage_ids_is_refused(tmp_path: Path) -> None:
    con = _previous_layout(tmp_path / "previous.duckdb")
    con.execute(
        "UPDATE scores.churn_scores_rows SET lineage_id = 'made-elsewhere' "
        "WHERE run_id = 'run-a' AND crm_customer_id < 2"
    )
    with pytest.raises(FabricError, match=f"rows of {DAY}.*2 lineage ids"):
        ensure_scores(con)
    # Nothing changed: the old tables are still there, as they were.
    assert con.execute("SELECT count(*) FROM scores.churn_scores_rows").fetchone() == (43,)
    assert "model_name" in [c[0] for c in con.execute("DESCRIBE scores.churn_scores_rows").fetchall()]
