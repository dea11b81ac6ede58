"""MySQL/MariaDB table: per batch, one transaction of multi-row INSERTs into a TEMPORARY staging
table and one `INSERT ... SELECT ... ON DUPLICATE KEY UPDATE` (plus a DELETE for opt-in deletes).

MySQL applies the assignments of ON DUPLICATE KEY UPDATE left to right, each seeing the columns
already assigned, so `scored_for` (which every condition reads) is assigned last."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import pyarrow as pa

from fabric.errors import PublishError
from fabric.identifiers import quote, split_qualified
from fabric.publish.outbox import BatchOutcome
from fabric.publish.targets.base import TransientError, confirm_all
from fabric.publish.targets.crm_table import VALUE_COLUMNS, staged_rows, target_refs
from fabric.publish.targets.server import ServerTarget

CONNECT_TIMEOUT_SECONDS = 10
ROWS_PER_STATEMENT = 2_000
_STAGED_COLUMNS = (
    "`key` BIGINT, churn_score DOUBLE, churn_decision BOOLEAN, model_name VARCHAR(255), "
    "model_version INT, scored_for DATE, lineage_id VARCHAR(64), message_id CHAR(64), "
    "operation VARCHAR(8)"
)


def _quote(name: str) -> str:
    quote(name)  # validates
    return f"`{name}`"


def table_sql(table: str, key: str) -> tuple[str, str, str]:
    """(CREATE TABLE IF NOT EXISTS, upsert from `fabric_staged`, delete) for `table`."""
    if "." in table:
        schema, name = split_qualified(table)
        target = f"{_quote(schema)}.{_quote(name)}"
    else:
        target = _quote(table)
    k = _quote(key)
    ddl = (
        f"CREATE TABLE IF NOT EXISTS {target} ({k} BIGINT PRIMARY KEY, churn_score DOUBLE, "
        "churn_decision BOOLEAN, model_name VARCHAR(255), model_version INT, scored_for DATE, "
        "lineage_id VARCHAR(64), message_id CHAR(64), published_at DATETIME(6))"
    )
    # The staging table has the same column names: the target's must be qualified.
    newer = f"VALUES(scored_for) >= {target}.scored_for AND NOT (VALUES(message_id) <=> {target}.message_id)"
    assignments = ", ".join(
        f"{target}.{c} = IF({newer}, VALUES({c}), {target}.{c})"
        for c in (*[c for c in VALUE_COLUMNS if c != "scored_for"], "published_at", "scored_for")
    )
    columns = ", ".join(VALUE_COLUMNS)
    upsert = (
        f"INSERT INTO {target} ({k}, {columns}, published_at) "
        f"SELECT s.`key`, {', '.join('s.' + c for c in VALUE_COLUMNS)}, %s FROM fabric_staged s "
        "WHERE s.operation <> 'delete' "
        f"ON DUPLICATE KEY UPDATE {assignments}"
    )
    delete = (
        f"DELETE t FROM {target} t JOIN fabric_staged s ON s.`key` = t.{k} "
        "AND s.scored_for = t.scored_for WHERE s.operation = 'delete'"
    )
    return ddl, upsert, delete


class MysqlTarget:
    per_partition = False

    def __init__(self, server: ServerTarget, table: str, key: str) -> None:
        self.server, self.table, self.key = server, table, key
        self.label = f"{server.label}#{table}"
        self._ddl, self._upsert, self._delete = table_sql(table, key)
        self._con: Any = None

    def __enter__(self) -> MysqlTarget:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._con is not None:
            with contextlib.suppress(Exception):  # already broken: closing is best effort
                self._con.close()
            self._con = None

    def _connection(self) -> Any:
        import pymysql

        if self._con is None:
            self._con = pymysql.connect(
                host=self.server.host, port=self.server.port, user=self.server.user,
                password=self.server.password, database=self.server.database, autocommit=False,
                charset="utf8mb4", connect_timeout=CONNECT_TIMEOUT_SECONDS,
                init_command="SET time_zone = '+00:00'",
            )  # fmt: skip
        return self._con

    def send(self, batch: pa.Table, keep: pa.Table | None) -> BatchOutcome:
        import pymysql

        rows = [tuple(r.values()) for r in staged_rows(batch).to_pylist()]
        published_at = datetime.now(UTC).replace(tzinfo=None)
        try:
            con = self._connection()
            with con.cursor() as cur:
                cur.execute(self._ddl)
                cur.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS fabric_staged ({_STAGED_COLUMNS})")
                cur.execute("DELETE FROM fabric_staged")
                for start in range(0, len(rows), ROWS_PER_STATEMENT):
                    chunk = rows[start : start + ROWS_PER_STATEMENT]
                    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
                    cur.execute(
                        f"INSERT INTO fabric_staged VALUES {values}", [v for row in chunk for v in row]
                    )
                cur.execute(self._upsert, [published_at])
                cur.execute(self._delete)
            con.commit()
        except pymysql.err.OperationalError as exc:  # refused, lost, lock wait: may pass
            self.__exit__(None, None, None)
            raise TransientError(f"{self.label}: {self.server.redact(str(exc))}") from None
        except pymysql.Error as exc:
            self.__exit__(None, None, None)
            raise PublishError(
                f"{self.label}: writing the batch failed: {self.server.redact(str(exc))}"
            ) from None
        return confirm_all(batch, target_refs(self.key, batch))
