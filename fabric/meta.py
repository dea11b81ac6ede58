"""The `meta` schema: what every load and every step read and wrote.

Later lineage work (OpenLineage events, record-level trace) builds on these records, so every
asset writes one `meta.runs` row and every ingest one `meta.loads` row per partition.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import duckdb

META_DDL = (
    """CREATE TABLE IF NOT EXISTS meta.loads (
        load_id VARCHAR PRIMARY KEY, source VARCHAR, entity VARCHAR, "partition" DATE,
        source_path VARCHAR, rows_read BIGINT, rows_loaded BIGINT, rows_quarantined BIGINT,
        status VARCHAR, message VARCHAR, run_id VARCHAR,
        started_at TIMESTAMP, finished_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS meta.runs (
        run_id VARCHAR, step VARCHAR, partition_start DATE, partition_end DATE,
        inputs JSON, outputs JSON, status VARCHAR, message VARCHAR,
        started_at TIMESTAMP, finished_at TIMESTAMP)""",
    # Contract versions that differ from fabric.yaml (inferred or evolved), see ingest.contract.
    """CREATE TABLE IF NOT EXISTS meta.contracts (
        source VARCHAR, entity VARCHAR, version INTEGER, origin VARCHAR, policy VARCHAR,
        columns JSON, primary_key JSON, declared_hash VARCHAR, run_id VARCHAR,
        created_at TIMESTAMP)""",
    # The source table's columns each contract version of a database entity was checked
    # against, to tell a retyped column (see ingest.table_contract).
    """CREATE TABLE IF NOT EXISTS meta.contract_catalogs (
        source VARCHAR, entity VARCHAR, declared_hash VARCHAR, version INTEGER, columns JSON,
        run_id VARCHAR, observed_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS meta.schema_drift (
        run_id VARCHAR, source VARCHAR, entity VARCHAR, "partition" DATE, source_path VARCHAR,
        change VARCHAR, column_name VARCHAR, expected_type VARCHAR, observed_type VARCHAR,
        policy VARCHAR, action VARCHAR, detected_at TIMESTAMP)""",
    # Files dropped into a landing folder, see ingest.landing.
    """CREATE TABLE IF NOT EXISTS meta.landing_files (
        source VARCHAR, entity VARCHAR, file_name VARCHAR, sha256 VARCHAR, bytes BIGINT,
        "partition" DATE, status VARCHAR, reason VARCHAR, run_key VARCHAR, run_id VARCHAR,
        stored_path VARCHAR, detected_at TIMESTAMP, updated_at TIMESTAMP)""",
    # One row per merge-mode entity: how far its loads have read, see ingest.cursors.
    """CREATE TABLE IF NOT EXISTS meta.cursors (
        source VARCHAR, entity VARCHAR, cursor_column VARCHAR, cursor_value VARCHAR,
        cursor_type VARCHAR, load_id VARCHAR, updated_at TIMESTAMP)""",
)


def utcnow() -> datetime:
    """Naive UTC timestamp, as DuckDB TIMESTAMP columns store it."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class RunRecord:
    """What one step of one run read and wrote; written to `meta.runs` by `record_run`."""

    run_id: str
    step: str
    partition_start: date | None = None
    partition_end: date | None = None
    inputs: list[str] = field(default_factory=list)
    outputs: list[dict[str, object]] = field(default_factory=list)
    status: str = "ok"
    message: str | None = None
    started_at: datetime = field(default_factory=utcnow)

    def output(self, table: str, rows: int, partitions: Sequence[date] | None = None) -> None:
        """Note that `rows` rows were written to `table` (optionally for some partitions)."""
        entry: dict[str, object] = {"table": table, "rows": rows}
        if partitions is not None:
            entry["partitions"] = [p.isoformat() for p in partitions]
        self.outputs.append(entry)


def record_run(con: duckdb.DuckDBPyConnection, record: RunRecord) -> None:
    """Append one row to `meta.runs`."""
    con.execute(
        "INSERT INTO meta.runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            record.run_id,
            record.step,
            record.partition_start,
            record.partition_end,
            json.dumps(record.inputs),
            json.dumps(record.outputs),
            record.status,
            record.message,
            record.started_at,
            utcnow(),
        ],
    )
