"""`publish.sync_log`: one row per target and partition for every publish attempt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

import duckdb

from fabric.meta import utcnow

SYNC_LOG_TABLE = "publish.sync_log"
SYNC_LOG_DDL = """CREATE TABLE IF NOT EXISTS publish.sync_log (
    run_id VARCHAR, target VARCHAR, "partition" DATE, rows BIGINT, status VARCHAR,
    message VARCHAR, published_at TIMESTAMP)"""


class SyncStatus(StrEnum):
    OK = "ok"
    BLOCKED = "blocked"  # the quality gate refused the partition
    EMPTY = "empty"  # no scores for the partition: nothing was sent
    FAILED = "failed"  # the target refused or could not be reached


@dataclass(frozen=True)
class SyncEntry:
    """What happened to one partition for one target in one run."""

    run_id: str
    target: str
    partition: date
    rows: int
    status: SyncStatus
    message: str
    published_at: datetime = field(default_factory=utcnow)


def record_sync(con: duckdb.DuckDBPyConnection, entries: Sequence[SyncEntry]) -> None:
    """Append `entries` to `publish.sync_log` (created if missing)."""
    con.execute(SYNC_LOG_DDL)
    if entries:
        con.executemany(
            f"INSERT INTO {SYNC_LOG_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                [e.run_id, e.target, e.partition, e.rows, e.status.value, e.message, e.published_at]
                for e in entries
            ],
        )
