"""The scores layout: writes committed in pieces, a day visible to readers only when complete."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from fabric.scoring.scores_table import (
    SCORES_ROWS,
    SCORES_TABLE,
    begin_write,
    ensure_scores,
    finish_write,
    replace_day,
)

DAY = date(2026, 3, 31)
OTHER_DAY = date(2026, 3, 30)


def _rows(n: int, score: float, run: str, day: date = DAY) -> str:
    return (
        f"SELECT DATE '{day}', 'FC' || i, i, {score}, {score} >= 0.5, 'churn', 1, 'champion', "
        f"'model', TIMESTAMP '{day} 02:00:00', '{run}', md5('{run}' || i) FROM range({n}) t(i)"
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
    replace_day(con, DAY, _rows(100, 0.2, "run-1"))
    replace_day(con, OTHER_DAY, _rows(10, 0.9, "run-1", OTHER_DAY))
    replace_day(con, DAY, _rows(80, 0.7, "run-2"))
    assert _visible(con) == [("run-2", 80, 0.7)]
    assert _visible(con, OTHER_DAY) == [("run-1", 10, 0.9)]
    # The previous write's rows are gone from the underlying table, not only hidden.
    stored = con.execute(f"SELECT count(*) FROM {SCORES_ROWS} WHERE partition_date = ?", [DAY])
    assert stored.fetchone() == (80,)
    assert "_fabric_write" not in [c[0] for c in con.execute(f"DESCRIBE {SCORES_TABLE}").fetchall()]


def test_an_unfinished_write_is_invisible_and_cleared_by_the_next(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    replace_day(con, DAY, _rows(100, 0.2, "run-1"))
    # A write that committed two batches and then died (its process killed before the swap).
    write = begin_write(con, DAY)
    for batch in range(2):
        con.execute(f"INSERT INTO {SCORES_ROWS} SELECT *, {write} FROM ({_rows(50, 0.6, f'crash-{batch}')})")
    con.close()

    reopened = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    ensure_scores(reopened)
    assert _visible(reopened) == [("run-1", 100, 0.2)]
    replace_day(reopened, DAY, _rows(70, 0.4, "run-3"))
    assert _visible(reopened) == [("run-3", 70, 0.4)]
    stored = reopened.execute(f"SELECT count(*) FROM {SCORES_ROWS} WHERE partition_date = ?", [DAY])
    assert stored.fetchone() == (70,)


def test_a_failing_write_leaves_the_day_as_it_was(con: duckdb.DuckDBPyConnection) -> None:
    replace_day(con, DAY, _rows(100, 0.2, "run-1"))
    # The last row's model version does not convert: the INSERT fails after reading 99 rows.
    failing = _rows(100, 0.3, "run-2").replace(
        "'churn', 1,", "'churn', CAST(CASE WHEN i = 99 THEN 'boom' ELSE '1' END AS INTEGER),"
    )
    with pytest.raises(duckdb.ConversionException, match="boom"):
        replace_day(con, DAY, failing)
    assert _visible(con) == [("run-1", 100, 0.2)]
    assert con.execute(f"SELECT count(*) FROM {SCORES_ROWS}").fetchone() == (100,)


def test_a_finished_write_is_swapped_in_at_once(con: duckdb.DuckDBPyConnection) -> None:
    replace_day(con, DAY, _rows(100, 0.2, "run-1"))
    write = begin_write(con, DAY)
    con.execute(f"INSERT INTO {SCORES_ROWS} SELECT *, {write} FROM ({_rows(30, 0.8, 'run-2')})")
    assert _visible(con) == [("run-1", 100, 0.2)]  # committed, not yet visible
    finish_write(con, DAY, write)
    assert _visible(con) == [("run-2", 30, 0.8)]


def test_a_warehouse_with_the_old_scores_table_is_converted(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    con.execute("CREATE SCHEMA scores")
    con.execute(
        """CREATE TABLE scores.churn_scores (
            partition_date DATE, fabric_customer_id VARCHAR, crm_customer_id BIGINT, score DOUBLE,
            decision BOOLEAN, model_name VARCHAR, model_version INTEGER, variant VARCHAR,
            scorer VARCHAR, scored_at TIMESTAMP, run_id VARCHAR, lineage_id VARCHAR)"""
    )
    con.execute(f"INSERT INTO scores.churn_scores {_rows(40, 0.1, 'old-run')}")
    con.execute(f"INSERT INTO scores.churn_scores {_rows(5, 0.9, 'old-run', OTHER_DAY)}")
    before = con.execute("SELECT * FROM scores.churn_scores ORDER BY ALL").fetchall()

    ensure_scores(con)
    assert con.execute(f"SELECT * FROM {SCORES_TABLE} ORDER BY ALL").fetchall() == before
    ensure_scores(con)  # a second call changes nothing
    replace_day(con, DAY, _rows(20, 0.5, "new-run"))
    assert _visible(con) == [("new-run", 20, 0.5)]
    assert _visible(con, OTHER_DAY) == [("old-run", 5, 0.9)]
