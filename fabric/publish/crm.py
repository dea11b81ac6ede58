"""Write-back of churn scores into the CRM's SQLite database, one row per CRM customer.

Each partition is one SQLite transaction: the day's rows go into a TEMP table, then a single
`INSERT ... SELECT ... ON CONFLICT DO UPDATE` merges them. The update only fires when the
incoming partition is at least as new as the stored one (a backfill of an old day never
overwrites a newer score) and when something actually changed, so publishing the same scores
twice leaves the table, `published_at` included, exactly as it was.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa

from fabric.config import FabricConfig, SqlitePublisher
from fabric.errors import PublishError
from fabric.identifiers import quote
from fabric.partitions import Window
from fabric.publish.delivery import Delivered, PublishResult, deliver_window, publisher_config
from fabric.scoring.score import Gate, quality_gate
from fabric.warehouse import Warehouse

_BUSY_TIMEOUT_SECONDS = 30.0
# Columns Fabric owns in the CRM table besides the key, in table order.
_VALUE_COLUMNS = (
    "churn_score",
    "churn_decision",
    "model_name",
    "model_version",
    "scored_for",
    "lineage_id",
)


def _table_ddl(table: str, key: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS main.{quote(table)} ({quote(key)} INTEGER PRIMARY KEY, "
        "churn_score REAL, churn_decision INTEGER, model_name TEXT, model_version INTEGER, "
        "scored_for TEXT, lineage_id TEXT, published_at TEXT)"
    )


def _upsert_sql(table: str, key: str) -> str:
    target = quote(table)
    columns = ", ".join(_VALUE_COLUMNS)
    assignments = ", ".join(f"{c} = excluded.{c}" for c in (*_VALUE_COLUMNS, "published_at"))
    incoming = ", ".join(f"excluded.{c}" for c in _VALUE_COLUMNS)
    stored = ", ".join(f"{target}.{c}" for c in _VALUE_COLUMNS)
    # `WHERE true` keeps SQLite from reading ON CONFLICT as a join constraint of the SELECT.
    return (
        f"INSERT INTO main.{target} ({quote(key)}, {columns}, published_at) "
        f"SELECT {quote(key)}, {columns}, ? FROM temp.staged_scores WHERE true "
        f"ON CONFLICT ({quote(key)}) DO UPDATE SET {assignments} "
        f"WHERE excluded.scored_for >= {target}.scored_for AND ({incoming}) IS NOT ({stored})"
    )


def upsert_scores(
    path: Path, table: str, key: str, day: date, scores: pa.Table, published_at: str
) -> Delivered:
    """Merge one partition's score rows into `table` of the SQLite database at `path`."""
    if not path.is_file():
        raise PublishError(
            f"{path}: CRM database not found (publishers path in fabric.yaml); "
            "Fabric does not create a business system's database"
        )
    crm_ids = scores.column("crm_customer_id").to_pylist()
    rows = [
        (crm_id, score, int(decision), model, version, day.isoformat(), lineage)
        for crm_id, score, decision, model, version, lineage in zip(
            crm_ids,
            scores.column("score").to_pylist(),
            scores.column("decision").to_pylist(),
            scores.column("model_name").to_pylist(),
            scores.column("model_version").to_pylist(),
            scores.column("lineage_id").to_pylist(),
            strict=True,
        )
        if crm_id is not None
    ]
    try:
        con = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=rw",
            uri=True,
            timeout=_BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
        )
    except sqlite3.Error as exc:
        raise PublishError(f"{path}: cannot open the CRM database: {exc}") from None
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute(_table_ddl(table, key))
        con.execute(
            f"CREATE TEMP TABLE staged_scores ({quote(key)} INTEGER, churn_score REAL, "
            "churn_decision INTEGER, model_name TEXT, model_version INTEGER, scored_for TEXT, "
            "lineage_id TEXT)"
        )
        con.executemany("INSERT INTO temp.staged_scores VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        changed = con.execute(_upsert_sql(table, key), [published_at]).rowcount
        con.execute("DROP TABLE temp.staged_scores")
        con.execute("COMMIT")
    except sqlite3.Error as exc:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise PublishError(f"{path}: writing {table} for {day} failed: {exc}") from None
    finally:
        con.close()
    message = f"{changed} inserted or updated, {len(rows) - changed} unchanged or newer in CRM"
    if len(rows) < len(crm_ids):
        message += f", {len(crm_ids) - len(rows)} without a CRM id skipped"
    return Delivered(rows=len(rows), message=message)


def publish_crm(
    config: FabricConfig,
    warehouse: Warehouse,
    publisher_name: str,
    window: Window,
    run_id: str,
    gate: Gate | None = None,
) -> PublishResult:
    """Upsert each open day's scores into the CRM table of publisher `publisher_name`."""
    publisher = publisher_config(config, publisher_name, SqlitePublisher)
    path = config.resolve(publisher.path)
    published_at = datetime.now(UTC).isoformat(timespec="seconds")
    return deliver_window(
        warehouse,
        publisher_name,
        window,
        run_id,
        gate or quality_gate(config),
        lambda day, scores: upsert_scores(
            path, publisher.table, publisher.key, day, scores, published_at
        ),
    )
