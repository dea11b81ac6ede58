"""The warehouse: one DuckDB file, one writer at a time, atomic partition replacement.

Connections are short-lived on purpose. DuckDB lets one process open a file read-write, and dbt
runs as a separate process; a connection held across steps would lock dbt out. Every operation
opens `with warehouse.connect() as con:` and closes it when done.

Kept deliberately small (connect, replace partitions, read) so that a DuckLake-backed warehouse
can stand in for the single file later.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb

from fabric.errors import WarehouseError
from fabric.identifiers import qualified, quote, split_qualified
from fabric.meta import META_DDL

SCHEMAS = ("raw", "quarantine", "staging", "integrated", "features", "scores", "publish", "meta")
_LOCK_RETRY_SECONDS = 30.0


def _open_error(path: Path, exc: duckdb.IOException, locked: bool) -> str:
    """What an operator reads when the warehouse file does not open."""
    if locked:
        return (
            f"{path}: cannot open the warehouse ({exc}). Another process holds it: DuckDB allows "
            "one writer; wait for the running job or stop it."
        )
    return (
        f"{path}: cannot open the warehouse ({exc}). The file itself is unreadable; a process "
        "killed while DuckDB checkpointed can leave it so (docs/architecture.md, 'Crashes'). "
        "Restore the file from a backup, or move it aside and reload: `fabric run --from <first day> "
        "--to <last day>` rebuilds raw data from the sources (meta, outbox and published snapshots "
        "are lost, so the next publish re-sends everything; consumers drop the duplicates by id)."
    )


class Warehouse:
    """A DuckDB warehouse file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open a connection; read-write connections create the layer schemas and meta tables.

        A lock held by another process (a dbt run finishing, a second Dagster run) is retried
        for up to 30 s before failing with a message that says who to look for.
        """
        if read_only and not self.path.exists():
            raise WarehouseError(f"{self.path}: warehouse does not exist yet (run an ingest first)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + _LOCK_RETRY_SECONDS
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                locked = "could not set lock" in str(exc).lower()  # not "block" of a damaged file
                if not locked or time.monotonic() > deadline:
                    raise WarehouseError(_open_error(self.path, exc, locked)) from None
                time.sleep(0.5)
        try:
            if not read_only:
                for schema in SCHEMAS:
                    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
                for ddl in META_DDL:
                    con.execute(ddl)
            yield con
        finally:
            con.close()


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether `schema.table` exists."""
    schema, name = split_qualified(table)
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, name],
    ).fetchone()
    return bool(row and row[0])


def replace_partitions(
    con: duckdb.DuckDBPyConnection,
    table: str,
    partition_column: str,
    partitions: Sequence[date],
    source_relation: str,
) -> int:
    """Atomically replace `partitions` of `table` with all rows of `source_relation`.

    `source_relation` is a table or view visible on `con` (typically a TEMP table holding the
    staged rows). In one transaction: create `table` with the relation's shape if missing, delete
    the partitions, insert the staged rows by column name. Running it twice gives the same table;
    a failure rolls back and leaves the previous rows. Returns the number of rows inserted.
    """
    schema, name = split_qualified(table)
    target = qualified(schema, name)
    column = quote(partition_column)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {target} AS SELECT * FROM {source_relation} LIMIT 0"
        )
        if partitions:
            con.execute(
                f"DELETE FROM {target} WHERE {column} IN (SELECT unnest(?::DATE[]))",
                [list(partitions)],
            )
        inserted = con.execute(
            f"INSERT INTO {target} BY NAME SELECT * FROM {source_relation}"
        ).fetchone()
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return int(inserted[0]) if inserted else 0
