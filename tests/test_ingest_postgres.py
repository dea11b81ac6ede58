"""PostgreSQL sources against the real server: the shared cases, then what is PostgreSQL's own."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from database_source_cases import COLUMNS, DatabaseSourceCases
from servers import Database, Server, postgres_database, require

from fabric.errors import SourceError
from fabric.partitions import Window

__all__ = ["postgres_database"]  # the session fixture, used through `database`


class TestPostgresSource(DatabaseSourceCases):
    @pytest.fixture
    def database(self, postgres_database: Database) -> Database:
        return postgres_database

    def test_timestamptz_lands_in_utc_and_schemas_name_tables(
        self, tmp_path: Path, database: Database
    ) -> None:
        database.execute("CREATE SCHEMA IF NOT EXISTS sales")
        database.execute(
            "CREATE TABLE sales.events (id bigint PRIMARY KEY, qty integer, amount numeric(38,10), "
            "updated_at timestamptz, name text)"
        )
        database.execute(
            "INSERT INTO sales.events VALUES (1, 1, 1, '2026-03-01 23:30:00.5+00', 'late evening'), "
            "(2, 2, 2, '2026-03-02 00:30:00.25+02', 'just after midnight in Kyiv')"
        )
        config = self.config(tmp_path, database, "sales.events", "partitioned")

        results = self.ingest(config)

        assert [(r.partition, r.rows_loaded) for r in results] == [
            (date(2026, 3, 1), 2), (date(2026, 3, 2), 0)
        ]  # fmt: skip
        assert self.rows(config, "SELECT id, updated_at, _fabric_source FROM raw.src__rows ORDER BY id") == [
            (1, datetime(2026, 3, 1, 23, 30, 0, 500000), results[0].source_path),
            (2, datetime(2026, 3, 1, 22, 30, 0, 250000), results[0].source_path),
        ]
        assert results[0].source_path.endswith("#sales.events")

    def test_numeric_without_precision_is_refused_unless_declared_double(
        self, tmp_path: Path, database: Database
    ) -> None:
        database.execute(
            "CREATE TABLE loose (id bigint PRIMARY KEY, qty integer, amount numeric, "
            "updated_at timestamp, name text)"
        )
        database.execute("INSERT INTO loose VALUES (1, 1, 0.1, '2026-03-02', 'a')")
        config = self.config(tmp_path, database, "loose", "snapshot")

        with pytest.raises(SourceError, match="column amount is numeric without a precision"):
            self.ingest(config)

        double = [{**c, "type": "double"} if c["name"] == "amount" else c for c in COLUMNS]
        [result] = self.ingest(self.config(tmp_path, database, "loose", "snapshot", columns=double))
        assert result.rows_loaded == 1

    def test_a_text_date_column_cannot_partition(self, tmp_path: Path, database: Database) -> None:
        database.execute(
            "CREATE TABLE texts (id bigint PRIMARY KEY, qty integer, amount numeric(38,10), "
            "updated_at text, name text)"
        )
        config = self.config(tmp_path, database, "texts", "partitioned")

        with pytest.raises(SourceError, match="column updated_at is text in the server"):
            self.ingest(config, Window(date(2026, 3, 1), date(2026, 3, 1)))


def test_a_missing_server_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    nowhere = Server("postgres", "127.0.0.1", 1, "postgres")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"postgres server not reachable at 127\.0\.0\.1:1"):
        require(nowhere)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true needs it"):
        require(nowhere)
