"""What every database server source must do, as tests shared by PostgreSQL and MySQL/MariaDB.

`DatabaseSourceCases` is subclassed by each server's test module, which provides the `database`
fixture (a throwaway database from `servers`). Every test makes its own table, so the tests are
independent of each other and of their order.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from servers import Database

from fabric.config import FabricConfig, parse_config
from fabric.errors import SourceError
from fabric.ingest import LoadResult, ingest_entity
from fabric.ingest.contract import ContractError
from fabric.partitions import Window
from fabric.warehouse import Warehouse

DAY1, DAY2 = date(2026, 3, 1), date(2026, 3, 2)
WINDOW = Window(DAY1, DAY2)
COLUMN_TYPES = {
    "postgres": {"id": "bigint", "qty": "integer", "amount": "numeric(38,10)",
                 "updated_at": "timestamp(6)", "name": "text"},
    "mysql": {"id": "bigint", "qty": "int", "amount": "decimal(38,10)",
              "updated_at": "datetime(6)", "name": "text"},
}  # fmt: skip
COLUMNS: list[dict[str, Any]] = [
    {"name": "id", "type": "bigint", "nullable": False},
    {"name": "qty", "type": "integer"},
    {"name": "amount", "type": "decimal", "precision": 38, "scale": 10},
    {"name": "updated_at", "type": "timestamp"},
    {"name": "name"},
]
BIG = Decimal("1234567890123456789012345678.0123456789")
ROWS = [
    (1, 7, BIG, datetime(2026, 3, 1, 8, 0, 0, 123456), "Zoë 日本 🎉"),
    (2, None, Decimal("-0.0000000001"), datetime(2026, 3, 1, 23, 59, 59, 999999), None),
    (3, -2147483648, None, datetime(2026, 3, 2, 0, 0, 0, 1), "plain"),
    (4, 2147483647, Decimal("0E-10"), datetime(2026, 2, 28, 12, 0), "before the window"),
]
COMPARED = "SELECT * EXCLUDE (_fabric_load_id, _fabric_loaded_at) FROM {} ORDER BY ALL"


class DatabaseSourceCases:
    """Modes, exactness, idempotence, merge cursors, refusals and secrets, against a server."""

    @pytest.fixture
    def database(self) -> Database:
        raise NotImplementedError("the server's test module provides the database")

    # helpers -------------------------------------------------------------------------------

    def create(self, db: Database, rows: list[tuple[Any, ...]] = ROWS, key: bool = True) -> str:
        """A new table holding `rows`; returns its name."""
        table = f"t_{uuid.uuid4().hex[:10]}"
        types = COLUMN_TYPES[db.engine]
        columns = ", ".join(f"{name} {kind}" for name, kind in types.items())
        db.execute(f"CREATE TABLE {table} ({columns}{', PRIMARY KEY (id)' if key else ''})")
        self.insert(db, table, rows)
        return table

    def insert(self, db: Database, table: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            db.execute(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s)", rows)

    def config(self, tmp_path: Path, db: Database, table: str, mode: str, **entity: Any) -> FabricConfig:
        connection = entity.pop("connection", {})
        spec: dict[str, Any] = {"table": table, "mode": mode, "primary_key": ["id"]}
        spec["columns"] = entity.pop("columns", COLUMNS)
        if mode == "partitioned":
            spec["date_column"] = "updated_at"
        if mode == "merge":
            spec["cursor_column"] = "updated_at"
        spec.update(entity)
        source = db.source({"rows": spec}, **connection)
        return parse_config(
            {
                "project": "test",
                "warehouse": {"path": "warehouse.duckdb"},
                "partitions": {"start_date": "2026-01-01"},
                "sources": {"src": source},
            },
            tmp_path,
        )

    def ingest(self, config: FabricConfig, window: Window = WINDOW) -> list[LoadResult]:
        warehouse = Warehouse(config.resolve(config.warehouse.path))
        return ingest_entity(config, "src", "rows", window, "run", warehouse)

    def rows(self, config: FabricConfig, sql: str) -> list[tuple[Any, ...]]:
        with Warehouse(config.resolve(config.warehouse.path)).connect(read_only=True) as con:
            return con.execute(sql).fetchall()

    def label(self, db: Database, table: str) -> str:
        schema = "public" if db.engine == "postgres" else db.name
        return f"{db.engine}://{db.server.host}:{db.server.port}/{db.name}#{schema}.{table}"

    def state(self, config: FabricConfig) -> list[list[tuple[Any, ...]]]:
        """Raw, quarantine and cursors, without load ids and load times."""
        return [
            self.rows(config, COMPARED.format("raw.src__rows")),
            self.rows(config, COMPARED.format("quarantine.src__rows")),
            self.rows(config, "SELECT cursor_column, cursor_value, cursor_type FROM meta.cursors"),
        ]

    # modes ---------------------------------------------------------------------------------

    def test_snapshot_reads_every_type_exactly(
        self, tmp_path: Path, database: Database, caplog: pytest.LogCaptureFixture
    ) -> None:
        table = self.create(database)
        config = self.config(tmp_path, database, table, "snapshot")

        with caplog.at_level(logging.INFO, logger="fabric.ingest"):
            [result] = self.ingest(config)

        committed = [r.getMessage() for r in caplog.records if " committed " in r.getMessage()]
        line = f"ingest src.rows {DAY2} committed (1 of 1 days): 4 read, 4 loaded, 0 quarantined"
        assert committed == [line]

        label = self.label(database, table)
        assert (result.partition, result.status, result.rows_read, result.rows_loaded,
                result.rows_quarantined) == (DAY2, "ok", 4, 4, 0)  # fmt: skip
        assert result.source_path == label
        assert self.rows(config, COMPARED.format("raw.src__rows")) == [
            (*row, DAY2, label, f"id={row[0]}") for row in ROWS
        ]
        assert self.rows(config, "SELECT typeof(amount), typeof(updated_at) FROM raw.src__rows LIMIT 1") == [
            ("DECIMAL(38,10)", "TIMESTAMP")
        ]
        assert self.rows(
            config, "SELECT rows_read, rows_loaded, rows_quarantined, status FROM meta.loads"
        ) == [(4, 4, 0, "ok")]

    def test_partitioned_reads_exactly_the_window_and_quarantines_bad_rows(
        self, tmp_path: Path, database: Database
    ) -> None:
        table = self.create(database)
        columns = [{**c, "nullable": False} if c["name"] == "qty" else c for c in COLUMNS]
        config = self.config(tmp_path, database, table, "partitioned", columns=columns)
        label = self.label(database, table)

        results = self.ingest(config)

        assert [(r.partition, r.rows_read, r.rows_loaded, r.rows_quarantined, r.status)
                for r in results] == [(DAY1, 2, 1, 1, "warning"), (DAY2, 1, 1, 0, "ok")]  # fmt: skip
        assert self.rows(config, "SELECT id, _fabric_partition FROM raw.src__rows ORDER BY id") == [
            (1, DAY1), (3, DAY2)
        ]  # fmt: skip
        [(position, code, reason, raw, day)] = self.rows(
            config,
            "SELECT _fabric_position, reason_code, reason, raw_record, _fabric_partition "
            "FROM quarantine.src__rows",
        )
        assert (position, code, day) == ("id=2", "null_value", DAY1)
        assert reason == f"{label} id=2: field qty: missing value (the column is not nullable)"
        assert json.loads(raw) == {"id": "2", "qty": None, "amount": "-0.0000000001",
                                   "updated_at": "2026-03-01 23:59:59.999999", "name": None}  # fmt: skip
        # A backfill of one day re-reads exactly that day, after the source changed.
        database.execute(f"UPDATE {table} SET name = 'renamed' WHERE id IN (1, 3)")
        [day2] = self.ingest(config, Window(DAY2, DAY2))
        assert (day2.partition, day2.rows_read) == (DAY2, 1)
        assert self.rows(config, "SELECT id, name FROM raw.src__rows ORDER BY id") == [
            (1, "Zoë 日本 🎉"), (3, "renamed")
        ]  # fmt: skip
        assert self.rows(
            config, "SELECT sum(rows_read) = sum(rows_loaded + rows_quarantined) FROM meta.loads"
        ) == [(True,)]

    def test_values_that_do_not_fit_the_declaration_are_quarantined_not_rounded(
        self, tmp_path: Path, database: Database
    ) -> None:
        table = self.create(database)
        columns = [{**c, "precision": 12, "scale": 2} if c["name"] == "amount" else c for c in COLUMNS]
        config = self.config(tmp_path, database, table, "snapshot", columns=columns)

        [result] = self.ingest(config)

        assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (4, 2, 2)
        assert self.rows(config, "SELECT id, amount FROM raw.src__rows ORDER BY id") == [
            (3, None), (4, Decimal("0.00"))
        ]  # fmt: skip
        quarantined = self.rows(
            config, "SELECT _fabric_position, reason_code, reason FROM quarantine.src__rows ORDER BY 1"
        )
        assert [(p, code) for p, code, _ in quarantined] == [("id=1", "type_cast"), ("id=2", "type_cast")]
        assert quarantined[1][2].endswith("id=2: field amount: '-0.0000000001' is not a valid decimal(12,2)")

    def test_rerunning_gives_identical_tables(self, tmp_path: Path, database: Database) -> None:
        table = self.create(database)
        for mode in ("snapshot", "partitioned", "merge"):
            config = self.config(tmp_path / mode, database, table, mode)
            self.ingest(config)
            before = self.state(config)
            self.ingest(config)
            assert self.state(config) == before, mode
            assert len(before[0]) == (4 if mode != "partitioned" else 3)

    # merge ---------------------------------------------------------------------------------

    def test_merge_keeps_the_current_state_by_key(self, tmp_path: Path, database: Database) -> None:
        table = self.create(database)
        config = self.config(tmp_path, database, table, "merge", lookback="1 minute")

        [first] = self.ingest(config, Window(DAY1, DAY1))
        assert (first.rows_read, first.rows_loaded, first.partition) == (4, 4, DAY1)
        assert self.rows(config, "SELECT cursor_value, cursor_type FROM meta.cursors") == [
            ("2026-03-02 00:00:00.000001", "TIMESTAMP")
        ]
        database.execute(
            f"UPDATE {table} SET qty = 8, updated_at = '2026-03-02 09:00:00.000002' WHERE id = 1"
        )
        self.insert(database, table, [(5, 1, Decimal("1.5"), datetime(2026, 3, 2, 9, 0, 0, 2), "new")])

        [second] = self.ingest(config, Window(DAY2, DAY2))

        # Read again: row 1 (changed), 5 (new), and 2 and 3, within a minute of the cursor.
        assert (second.rows_read, second.rows_loaded, second.status) == (4, 4, "ok")
        assert "4 rows merged" in second.message and "(1 new, 3 replaced)" in second.message
        assert self.rows(
            config, "SELECT id, qty, updated_at, _fabric_partition FROM raw.src__rows ORDER BY id"
        ) == [
            (1, 8, datetime(2026, 3, 2, 9, 0, 0, 2), DAY2),
            (2, None, datetime(2026, 3, 1, 23, 59, 59, 999999), DAY2),
            (3, -2147483648, datetime(2026, 3, 2, 0, 0, 0, 1), DAY2),
            (4, 2147483647, datetime(2026, 2, 28, 12, 0), DAY1),
            (5, 1, datetime(2026, 3, 2, 9, 0, 0, 2), DAY2),
        ]
        assert self.rows(config, "SELECT cursor_value FROM meta.cursors") == [("2026-03-02 09:00:00.000002",)]

    def test_merge_never_loses_or_doubles_rows_at_the_cursor(
        self, tmp_path: Path, database: Database
    ) -> None:
        last = datetime(2026, 3, 1, 12, 0, 0, 500000)
        table = self.create(database, [(1, 1, None, last, "a")])
        strict = self.config(tmp_path / "strict", database, table, "merge")
        overlap = self.config(tmp_path / "overlap", database, table, "merge", lookback="1 minute")
        self.ingest(strict)
        self.ingest(overlap)
        # Committed after those loads: one row with the very timestamp the cursor stopped at,
        # one late row whose timestamp is 30 seconds older than it, one two hours older.
        self.insert(database, table, [
            (2, 2, None, last, "same timestamp"),
            (3, 3, None, datetime(2026, 3, 1, 11, 59, 30, 500000), "late"),
            (4, 4, None, datetime(2026, 3, 1, 10, 0), "later than the look-back"),
        ])  # fmt: skip

        for config in (strict, overlap):
            self.ingest(config, Window(DAY2, DAY2))
            self.ingest(config, Window(DAY2, DAY2))

        ids = "SELECT id FROM raw.src__rows ORDER BY id"
        assert self.rows(strict, ids) == [(1,), (2,)]  # equal timestamps are re-read (>=)
        assert self.rows(overlap, ids) == [(1,), (2,), (3,)]  # the look-back catches late rows
        for config in (strict, overlap):
            assert self.rows(config, "SELECT count(*) = count(DISTINCT id) FROM raw.src__rows") == [(True,)]

    def test_merge_refuses_a_batch_that_repeats_a_key(self, tmp_path: Path, database: Database) -> None:
        table = self.create(database, ROWS[:2], key=False)
        config = self.config(tmp_path, database, table, "merge")
        self.ingest(config, Window(DAY1, DAY1))
        before = self.state(config)
        self.insert(database, table, [(2, 9, None, datetime(2026, 3, 3), "copy"),
                                      (2, 9, None, datetime(2026, 3, 3), "copy")])  # fmt: skip

        with pytest.raises(SourceError) as refused:
            self.ingest(config, Window(DAY2, DAY2))

        message = str(refused.value)
        assert f"{self.label(database, table)}: merge refused" in message
        assert "id=2 (3 rows)" in message
        assert self.state(config) == before  # rows and cursor as they were
        assert self.rows(
            config, "SELECT partition, status, rows_read, message FROM meta.loads WHERE status = 'failed'"
        ) == [(DAY2, "failed", 0, message)]

    def test_a_numeric_cursor_keeps_its_scale(self, tmp_path: Path, database: Database) -> None:
        rows = [(1, 1, Decimal("10.0000000001"), datetime(2026, 3, 1), "a"),
                (2, 2, Decimal("10.0000000002"), datetime(2026, 3, 1), "b")]  # fmt: skip
        table = self.create(database, rows)
        config = self.config(tmp_path, database, table, "merge", cursor_column="amount")

        self.ingest(config)
        self.insert(database, table, [(3, 3, Decimal("10.0000000002"), datetime(2026, 3, 1), "c")])
        [second] = self.ingest(config)

        assert self.rows(config, "SELECT cursor_value, cursor_type FROM meta.cursors") == [
            ("10.0000000002", "DECIMAL(38,10)")
        ]
        assert second.rows_read == 2  # the boundary row again, and the new one with its value
        assert self.rows(config, "SELECT count(*) FROM raw.src__rows") == [(3,)]

    # failures ------------------------------------------------------------------------------

    def test_a_table_that_disappeared_is_refused_by_name(self, tmp_path: Path, database: Database) -> None:
        table = self.create(database)
        config = self.config(tmp_path, database, table, "snapshot")
        self.ingest(config)
        before = self.state(config)
        database.execute(f"DROP TABLE {table}")

        with pytest.raises(SourceError, match=rf"table \w+\.{table} not found") as refused:
            self.ingest(config)

        assert str(refused.value).startswith(self.label(database, table))
        assert self.state(config) == before
        assert self.rows(config, "SELECT status, message FROM meta.loads ORDER BY finished_at") == [
            ("ok", f"4 rows loaded from {self.label(database, table)}"),
            ("failed", str(refused.value)),
        ]

    def test_a_dropped_column_is_refused_by_name(self, tmp_path: Path, database: Database) -> None:
        table = self.create(database)
        database.execute(f"ALTER TABLE {table} DROP COLUMN qty")

        with pytest.raises(ContractError, match=r"frozen contract of src\.rows .*: removed column qty"):
            self.ingest(self.config(tmp_path, database, table, "snapshot"))

    @pytest.mark.parametrize("mode", ["snapshot", "merge"])
    def test_a_load_that_fails_while_committing_leaves_the_previous_state(
        self, tmp_path: Path, database: Database, mode: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        table = self.create(database)
        config = self.config(tmp_path, database, table, mode)
        self.ingest(config, Window(DAY1, DAY1))
        before = self.state(config)
        database.execute(f"UPDATE {table} SET qty = 0, updated_at = '2026-03-05 00:00:00'")
        target = (
            "fabric.ingest.cursors.advance" if mode == "merge" else "fabric.ingest.sql_database.record_load"
        )

        def crash(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("the machine stopped")

        with monkeypatch.context() as patch:
            patch.setattr(target, crash)
            with pytest.raises(RuntimeError, match="the machine stopped"):
                self.ingest(config, Window(DAY1, DAY1))
        assert self.state(config) == before

        self.ingest(config, Window(DAY1, DAY1))
        self.ingest(config, Window(DAY1, DAY1))
        assert self.rows(config, "SELECT count(*), count(DISTINCT id), max(qty) FROM raw.src__rows") == [
            (4, 4, 0)
        ]

    def test_a_password_never_appears_in_errors_or_metadata(
        self, tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        table = self.create(database)
        password = "S3cret-pa55word"
        scheme = "postgresql" if database.engine == "postgres" else "mysql"
        # Nothing listens on port 1: the scanner's error quotes the whole connection string.
        monkeypatch.setenv("SRC_DSN", f"{scheme}://{database.server.user}:{password}@127.0.0.1:1/x")
        monkeypatch.setenv("SRC_PASSWORD", password)
        for connection in (
            {"dsn_env": "SRC_DSN", "host": None, "port": None, "user": None, "database": None},
            {"password_env": "SRC_PASSWORD", "port": 1},
        ):
            config = self.config(tmp_path, database, table, "snapshot", connection=connection)
            with pytest.raises(SourceError, match="connecting failed") as refused:
                self.ingest(config)
            assert password not in str(refused.value)
            assert password not in repr(config)
        logged = self.rows(config, "SELECT string_agg(source_path || message, ' ') FROM meta.loads")
        assert logged[0][0] and password not in logged[0][0]
