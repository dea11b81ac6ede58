"""MySQL/MariaDB sources against the real server: the shared cases, then MySQL's own types."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from database_source_cases import DatabaseSourceCases
from servers import Database, mysql_database

__all__ = ["mysql_database"]  # the session fixture, used through `database`


class TestMysqlSource(DatabaseSourceCases):
    @pytest.fixture
    def database(self, mysql_database: Database) -> Database:
        return mysql_database

    def test_mysql_types_and_qualified_tables(self, tmp_path: Path, database: Database) -> None:
        database.execute(
            "CREATE TABLE flags (id bigint unsigned PRIMARY KEY, active tinyint(1), "
            "seen timestamp(6) NULL, note varchar(20), big decimal(38,10))"
        )
        database.execute(
            "INSERT INTO flags VALUES (1, 1, '2026-03-01 10:00:00.000001', 'ñ', 15), "
            "(2, 0, NULL, NULL, NULL), (3, 7, NULL, NULL, 1.5)"
        )
        columns = [
            {"name": "id", "type": "bigint", "nullable": False},
            {"name": "active", "type": "boolean"},
            {"name": "seen", "type": "timestamp"},
            {"name": "note"},
            {"name": "big", "type": "integer"},
        ]
        config = self.config(tmp_path, database, f"{database.name}.flags", "snapshot", columns=columns)

        [result] = self.ingest(config)

        assert (result.rows_loaded, result.rows_quarantined) == (2, 1)
        assert self.rows(config, "SELECT id, active, seen, note, big FROM raw.src__rows ORDER BY id") == [
            (1, True, datetime(2026, 3, 1, 10, 0, 0, 1), "ñ", 15),
            (2, False, None, None, None),
        ]
        [(position, day, reason)] = self.rows(
            config, "SELECT _fabric_position, _fabric_partition, reason FROM quarantine.src__rows"
        )
        assert (position, day) == ("id=3", date(2026, 3, 2))
        assert reason.endswith(
            "flags id=3: field active: '7' is not a valid boolean; "
            "field big: '1.5000000000' is not a valid integer"
        )
