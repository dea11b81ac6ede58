"""SQLite business database (the demo CRM): the batch goes in as one JSON parameter, is staged
into a TEMP table with `json_each` and merged with `INSERT ... ON CONFLICT DO UPDATE`, all in one
`BEGIN IMMEDIATE` transaction."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import pyarrow as pa

from fabric.errors import PublishError
from fabric.identifiers import quote
from fabric.publish.outbox import BatchOutcome
from fabric.publish.targets.base import TransientError, confirm_all
from fabric.publish.targets.crm_table import VALUE_COLUMNS, staged_rows, target_refs

_BUSY_TIMEOUT_SECONDS = 30.0


class SqliteTarget:
    per_partition = False

    def __init__(self, path: Path, table: str, key: str) -> None:
        self.path, self.table, self.key = path, table, key
        self.label = f"sqlite:{path}#{table}"
        self._con: sqlite3.Connection | None = None

    def __enter__(self) -> SqliteTarget:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def _connection(self) -> sqlite3.Connection:
        if self._con is None:
            if not self.path.is_file():  # an unmounted share may come back: retried
                raise TransientError(
                    f"{self.path}: CRM database not found (publishers path in fabric.yaml); "
                    "Fabric does not create a business system's database"
                )
            self._con = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=rw",
                uri=True,
                timeout=_BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
            )
        return self._con

    def _sql(self) -> tuple[str, str, str]:
        table, key = quote(self.table), quote(self.key)
        ddl = (
            f"CREATE TABLE IF NOT EXISTS main.{table} ({key} INTEGER PRIMARY KEY, "
            "churn_score REAL, churn_decision INTEGER, model_name TEXT, model_version INTEGER, "
            "scored_for TEXT, lineage_id TEXT, message_id TEXT, published_at TEXT)"
        )
        columns = ", ".join(VALUE_COLUMNS)
        assignments = ", ".join(f"{c} = excluded.{c}" for c in (*VALUE_COLUMNS, "published_at"))
        # `WHERE true` keeps SQLite from reading ON CONFLICT as a join constraint of the SELECT.
        upsert = (
            f"INSERT INTO main.{table} ({key}, {columns}, published_at) "
            f"SELECT key, {columns}, ? FROM temp.fabric_staged WHERE operation <> 'delete' "
            f"ON CONFLICT ({key}) DO UPDATE SET {assignments} "
            f"WHERE excluded.scored_for >= {table}.scored_for "
            f"AND excluded.message_id IS NOT {table}.message_id"
        )
        delete = (
            f"DELETE FROM main.{table} WHERE EXISTS (SELECT 1 FROM temp.fabric_staged s "
            f"WHERE s.operation = 'delete' AND s.key = {table}.{key} "
            f"AND s.scored_for = {table}.scored_for)"
        )
        return ddl, upsert, delete

    def send(self, batch: pa.Table, keep: pa.Table | None) -> BatchOutcome:
        rows = staged_rows(batch)
        # JSON true/false read back with ->> are SQLite's 1/0.
        names = ("key", "churn_score", "churn_decision", "model_name", "model_version", "scored_for",
                 "lineage_id", "message_id", "operation")  # fmt: skip
        document = json.dumps([[r[n] for n in names] for r in rows.to_pylist()], default=str)
        ddl, upsert, delete = self._sql()
        published_at = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            con = self._connection()
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute(ddl)
                con.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS fabric_staged (key INTEGER, churn_score REAL, "
                    "churn_decision INTEGER, model_name TEXT, model_version INTEGER, scored_for TEXT, "
                    "lineage_id TEXT, message_id TEXT, operation TEXT)"
                )
                con.execute("DELETE FROM temp.fabric_staged")
                con.execute(
                    "INSERT INTO temp.fabric_staged SELECT value->>0, value->>1, value->>2, "
                    "value->>3, value->>4, value->>5, value->>6, value->>7, value->>8 "
                    "FROM json_each(?)",
                    [document],
                )
                con.execute(upsert, [published_at])
                con.execute(delete)
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:  # locked, I/O: may pass
            self.__exit__(None, None, None)
            raise TransientError(f"{self.label}: {exc}") from None
        except sqlite3.Error as exc:
            raise PublishError(f"{self.label}: writing the batch failed: {exc}") from None
        return confirm_all(batch, target_refs(self.key, batch))
