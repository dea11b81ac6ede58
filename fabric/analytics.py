"""The analytics snapshot: a read-only, PII-masked copy of what analysts query.

Analysts never open the live warehouse (one writer at a time; a long query would block the
nightly run). `refresh_snapshot` builds a complete new DuckDB file under a unique hidden name
next to `warehouse.analytics_path`, from a read-only connection to the warehouse with the new
file ATTACHed, and then renames it over the old snapshot. A reader that still has the old file
open keeps reading the old file (POSIX keeps an unlinked file alive while it is open); a reader
that opens afterwards sees the new one. A failed refresh leaves the old snapshot in place.

Copied, under the same schema-qualified names as in the warehouse: the scores, the integrated
customers, the features, the publish sync log and `meta.loads`; each is also a view under its
bare name in the default schema (`churn_scores`, `customers`, ...). Two small views more:
`meta.load_summary` (per source entity: latest partition, rows, failures) and `meta.snapshot`
(when and from where the snapshot was taken). PII columns listed under `pii:` in fabric.yaml
are masked with `fabric.pii` on the way.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from fabric.config import FabricConfig
from fabric.errors import WarehouseError
from fabric.identifiers import qualified, quote, split_qualified
from fabric.meta import utcnow
from fabric.pii import masked_select
from fabric.publish.outbox import SYNC_LOG_TABLE
from fabric.scoring.features import table_columns
from fabric.scoring.score import SCORES_TABLE
from fabric.warehouse import Warehouse, table_exists

_SNAPSHOT = "fabric_analytics_snapshot"
_READER = "analytics"
_LOAD_SUMMARY = """CREATE VIEW {snapshot}.meta.load_summary AS
    SELECT source, entity, max("partition") AS latest_partition, count(*) AS loads,
        sum(rows_loaded) AS rows_loaded, sum(rows_quarantined) AS rows_quarantined,
        count(*) FILTER (WHERE status = 'failed') AS failed_loads, max(finished_at) AS last_load_at
    FROM meta.loads GROUP BY source, entity"""


def snapshot_tables(config: FabricConfig) -> list[str]:
    """The warehouse tables copied into the snapshot."""
    return [
        SCORES_TABLE,
        "integrated.customers",
        config.scoring.features_table,
        SYNC_LOG_TABLE,
        "meta.loads",
    ]


@dataclass(frozen=True)
class SnapshotInfo:
    """What one refresh wrote."""

    path: Path
    tables: dict[str, int]
    missing: list[str]
    masked: dict[str, list[str]]
    bytes: int
    seconds: float

    def metadata(self) -> dict[str, Any]:
        """Plain values for Dagster asset metadata."""
        return {
            "path": str(self.path),
            "rows_by_table": self.tables,
            "tables_not_in_warehouse": self.missing,
            "masked_columns": self.masked,
            "size_mb": round(self.bytes / 1e6, 2),
            "seconds": round(self.seconds, 3),
        }


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def refresh_snapshot(config: FabricConfig, warehouse: Warehouse) -> SnapshotInfo:
    """Rebuild the analytics snapshot from the warehouse and swap it in atomically."""
    started = time.perf_counter()
    target = config.resolve(config.warehouse.analytics_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    rows: dict[str, int] = {}
    missing: list[str] = []
    masked: dict[str, list[str]] = {}
    try:
        with warehouse.connect(read_only=True) as con:
            con.execute(f"ATTACH {_sql_string(str(temp))} AS {_SNAPSHOT} (READ_WRITE)")
            try:
                for table in dict.fromkeys(snapshot_tables(config)):
                    if not table_exists(con, table):
                        missing.append(table)
                        continue
                    rows[table] = _copy(con, table, config.pii.get(table, []), masked)
                _create_views(con, warehouse, rows)
            finally:
                con.execute(f"DETACH {_SNAPSHOT}")
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        temp.with_name(temp.name + ".wal").unlink(missing_ok=True)
        raise
    if os.name == "posix":
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return SnapshotInfo(
        path=target,
        tables=rows,
        missing=missing,
        masked=masked,
        bytes=target.stat().st_size,
        seconds=time.perf_counter() - started,
    )


def _copy(
    con: duckdb.DuckDBPyConnection,
    table: str,
    pii_columns: list[str],
    masked: dict[str, list[str]],
) -> int:
    schema, name = split_qualified(table)
    copy = f"{_SNAPSHOT}.{qualified(schema, name)}"
    columns = list(table_columns(con, table))
    present = [c for c in columns if c.lower() in {p.lower() for p in pii_columns}]
    if present:
        masked[table] = present
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {_SNAPSHOT}.{quote(schema)}")
    con.execute(f"CREATE TABLE {copy} AS {masked_select(table, columns, pii_columns)}")
    count = con.execute(f"SELECT count(*) FROM {copy}").fetchone()
    return int(count[0]) if count else 0


def _create_views(
    con: duckdb.DuckDBPyConnection, warehouse: Warehouse, rows: dict[str, int]
) -> None:
    # Short names in the default schema (`SELECT * FROM customers`), first table wins.
    for table in rows:
        schema, name = split_qualified(table)
        con.execute(
            f"CREATE VIEW IF NOT EXISTS {_SNAPSHOT}.main.{quote(name)} AS "
            f"SELECT * FROM {qualified(schema, name)}"
        )
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {_SNAPSHOT}.meta")
    if "meta.loads" in rows:
        con.execute(_LOAD_SUMMARY.format(snapshot=_SNAPSHOT))
    tables = ", ".join(f"({_sql_string(t)}, {n})" for t, n in rows.items()) or "(NULL, NULL)"
    # A view over constants: it lives entirely inside the snapshot file.
    con.execute(
        f"CREATE VIEW {_SNAPSHOT}.meta.snapshot AS SELECT "
        f"TIMESTAMP {_sql_string(utcnow().isoformat(sep=' '))} AS refreshed_at, "
        f"{_sql_string(str(warehouse.path))} AS warehouse, t.table_name, t.row_count "
        f"FROM (VALUES {tables}) AS t(table_name, row_count)"
    )


def open_snapshot(config: FabricConfig) -> duckdb.DuckDBPyConnection:
    """A connection on which the snapshot's tables are read-only and the default catalog.

    The snapshot is ATTACHed READ_ONLY to a fresh in-memory database instead of being opened
    with `duckdb.connect(path, read_only=True)`: DuckDB shares one database instance per path
    within a process, so in a long-lived process (Dagster, a notebook) a plain connect could
    hand back the instance of the file that a refresh has since replaced.
    """
    path = config.resolve(config.warehouse.analytics_path)
    if not path.is_file():
        raise WarehouseError(
            f"{path}: no analytics snapshot yet. It is refreshed by the daily job "
            "(`fabric run` or `fabric demo run`)."
        )
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH {_sql_string(str(path))} AS {_READER} (READ_ONLY)")
        con.execute(f"USE {_READER}")
    except duckdb.Error:
        con.close()
        raise
    return con
