"""Contracts and schema drift of database tables, against SQLite and the real PostgreSQL and
MariaDB/MySQL servers (a missing server skips its cases locally and fails them in CI).

Each case builds a table, loads it, changes the table between two loads (a column added, one
dropped, one retyped) and checks what each contract policy did: `meta.schema_drift`,
`meta.loads`, raw and quarantine, the contract in force and the ContractError's text.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from servers import Database, mysql_database, postgres_database

from fabric.config import Column, FabricConfig, parse_config
from fabric.errors import SourceError
from fabric.ingest import LoadResult, ingest_entity
from fabric.ingest.contract import Contract, ContractError
from fabric.partitions import Window
from fabric.warehouse import Warehouse

__all__ = ["mysql_database", "postgres_database"]  # session fixtures, used through `engine`

DAY1, DAY2, DAY3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)
DECLARED: list[dict[str, Any]] = [
    {"name": "id", "type": "bigint", "nullable": False},
    {"name": "qty", "type": "integer"},
    {"name": "name"},
]
COMPARED = "SELECT * EXCLUDE (_fabric_load_id, _fabric_loaded_at) FROM {} ORDER BY ALL"


@dataclass
class Engine:
    """A database to make tables in, and how Fabric reads it."""

    kind: str  # sqlite | postgres | mysql
    run: Callable[[str, Sequence[tuple[Any, ...]] | None], None]  # SQL with %s placeholders
    source: Callable[[dict[str, Any]], dict[str, Any]]  # a sources.<name> block for entities
    label: Callable[[str], str]  # the load's source label for a table
    types: dict[str, str]  # logical type -> the engine's column type

    def create(self, columns: dict[str, str], rows: list[tuple[Any, ...]]) -> str:
        """A new table (first column the primary key) holding `rows`; returns its name."""
        table = f"t_{uuid.uuid4().hex[:10]}"
        ddl = ", ".join(f"{n} {self.types[t]}" for n, t in columns.items())
        self.run(f"CREATE TABLE {table} ({ddl}, PRIMARY KEY ({next(iter(columns))}))", None)
        self.insert(table, rows)
        return table

    def insert(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self.run(f"INSERT INTO {table} VALUES ({', '.join(['%s'] * len(rows[0]))})", rows)

    def drift(self, table: str) -> None:
        """Add text column `channel`, drop `name`, retype `qty` from integer to decimal(12,2)."""
        if self.kind == "sqlite":  # SQLite changes a column's type by rebuilding the table
            self.run(
                f"CREATE TABLE {table}_new (id INTEGER PRIMARY KEY, qty NUMERIC(12,2), channel TEXT)", None
            )
            self.run(f"INSERT INTO {table}_new SELECT id, qty, NULL FROM {table}", None)
            self.run(f"DROP TABLE {table}", None)
            self.run(f"ALTER TABLE {table}_new RENAME TO {table}", None)
            return
        self.run(f"ALTER TABLE {table} ADD COLUMN channel {self.types['string']}", None)
        self.run(f"ALTER TABLE {table} DROP COLUMN name", None)
        retype = "ALTER COLUMN qty TYPE" if self.kind == "postgres" else "MODIFY qty"
        self.run(f"ALTER TABLE {table} {retype} {self.types['decimal']}", None)


TYPES = {
    "sqlite": {"bigint": "INTEGER", "integer": "INTEGER", "decimal": "NUMERIC(12,2)",
               "timestamp": "DATETIME", "string": "TEXT"},
    "postgres": {"bigint": "bigint", "integer": "integer", "decimal": "numeric(12,2)",
                 "timestamp": "timestamp(6)", "string": "text"},
    "mysql": {"bigint": "bigint", "integer": "int", "decimal": "decimal(12,2)",
              "timestamp": "datetime(6)", "string": "text"},
}  # fmt: skip


def _sqlite(tmp_path: Path) -> Engine:
    path = tmp_path / "source.sqlite"

    def run(sql: str, rows: Sequence[tuple[Any, ...]] | None) -> None:
        with sqlite3.connect(path) as db:
            if rows is None:
                db.execute(sql)
            else:
                db.executemany(sql.replace("%s", "?"), rows)
        db.close()

    return Engine(
        "sqlite", run, lambda entities: {"kind": "sqlite", "path": str(path), "entities": entities},
        lambda table: f"sqlite:{path}#{table}", TYPES["sqlite"],
    )  # fmt: skip


def _server(database: Database) -> Engine:
    schema = "public" if database.engine == "postgres" else database.name
    server = database.server
    return Engine(
        database.engine, database.execute, database.source,
        lambda table: f"{database.engine}://{server.host}:{server.port}/{database.name}#{schema}.{table}",
        TYPES[database.engine],
    )  # fmt: skip


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    if request.param == "sqlite":
        return _sqlite(tmp_path)
    return _server(request.getfixturevalue(f"{request.param}_database"))


def config(tmp_path: Path, engine: Engine, table: str, **entity: Any) -> FabricConfig:
    spec = {"table": table, "mode": "snapshot", "primary_key": ["id"], **entity}
    return parse_config(
        {
            "project": "test",
            "warehouse": {"path": str(tmp_path / "warehouse.duckdb")},
            "partitions": {"start_date": "2026-01-01"},
            "sources": {"src": engine.source({"rows": spec})},
        },
        tmp_path,
    )


def ingest(config: FabricConfig, day: date) -> list[LoadResult]:
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    return ingest_entity(config, "src", "rows", Window(day, day), f"run-{day}", warehouse)


def rows(config: FabricConfig, sql: str) -> list[tuple[Any, ...]]:
    with Warehouse(config.resolve(config.warehouse.path)).connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def drifted(config: FabricConfig, day: date) -> list[tuple[Any, ...]]:
    return rows(
        config,
        "SELECT change, column_name, expected_type, observed_type, action, source_path FROM "
        f"meta.schema_drift WHERE run_id = 'run-{day}' ORDER BY change, column_name",
    )


def loads(config: FabricConfig) -> list[tuple[Any, ...]]:
    return rows(
        config,
        'SELECT "partition", status, rows_read, rows_loaded, rows_quarantined FROM meta.loads '
        "ORDER BY started_at, status",
    )


def drifting_table(tmp_path: Path, engine: Engine, policy: str) -> tuple[FabricConfig, str]:
    """A declared table loaded once on DAY1, then changed (`Engine.drift`) and given rows."""
    table = engine.create({"id": "bigint", "qty": "integer", "name": "string"}, [(1, 2, "a"), (2, 4, "b")])
    conf = config(tmp_path, engine, table, columns=DECLARED, contract={"policy": policy})
    [first] = ingest(conf, DAY1)
    assert (first.status, first.rows_loaded) == ("ok", 2)
    engine.drift(table)
    engine.run(f"UPDATE {table} SET qty = 2.5 WHERE id = 1", None)
    engine.insert(table, [(3, 5, "web")])
    return conf, table


def changes(engine: Engine, table: str, action: str) -> list[tuple[Any, ...]]:
    label = engine.label(table)
    return [
        ("added", "channel", None, "string", action, label),
        ("removed", "name", "string", None, action, label),
        ("retyped", "qty", "integer", "decimal(12,2)", action, label),
    ]


def test_freeze_refuses_the_load_with_the_diff(tmp_path: Path, engine: Engine) -> None:
    conf, table = drifting_table(tmp_path, engine, "freeze")
    before = [rows(conf, COMPARED.format(t)) for t in ("raw.src__rows", "quarantine.src__rows")]

    with pytest.raises(ContractError) as refused:
        ingest(conf, DAY2)

    assert str(refused.value) == (
        f"{engine.label(table)}: the table does not match the frozen contract of src.rows (policy "
        "freeze), nothing was loaded: added column channel (string), removed column name (was "
        "string), column qty retyped from integer to decimal(12,2). Update the columns in "
        "fabric.yaml, change the table back, or set contract.policy to evolve or quarantine."
    )
    assert [rows(conf, COMPARED.format(t)) for t in ("raw.src__rows", "quarantine.src__rows")] == before
    assert loads(conf) == [(DAY1, "ok", 2, 2, 0), (DAY2, "failed", 0, 0, 0)]
    assert rows(conf, f"SELECT message FROM meta.loads WHERE run_id = 'run-{DAY2}'") == [
        (str(refused.value),)
    ]
    assert drifted(conf, DAY2) == changes(engine, table, "refused")
    assert rows(conf, "SELECT count(*) FROM meta.contracts") == [(0,)]  # the declaration stays in force


def test_evolve_adds_widens_and_keeps_removed_columns_null(tmp_path: Path, engine: Engine) -> None:
    conf, table = drifting_table(tmp_path, engine, "evolve")

    [result] = ingest(conf, DAY2)

    assert (result.status, result.rows_read, result.rows_loaded, result.rows_quarantined) == ("ok", 3, 3, 0)
    assert rows(conf, "SELECT id, qty, name, channel, _fabric_partition FROM raw.src__rows ORDER BY ALL") == [
        (1, Decimal("2.00"), "a", None, DAY1),
        (1, Decimal("2.50"), None, None, DAY2),
        (2, Decimal("4.00"), "b", None, DAY1),
        (2, Decimal("4.00"), None, None, DAY2),
        (3, Decimal("5.00"), None, "web", DAY2),
    ]
    assert rows(conf, "SELECT typeof(qty), typeof(channel) FROM raw.src__rows LIMIT 1") == [
        ("DECIMAL(12,2)", "VARCHAR")
    ]
    assert drifted(conf, DAY2) == changes(engine, table, "evolved")
    [(version, origin, columns)] = rows(conf, "SELECT version, origin, columns FROM meta.contracts")
    assert (version, origin) == (1, "evolved")
    assert [(c["name"], c["type"], c["nullable"]) for c in json.loads(columns)] == [
        ("id", "bigint", False), ("qty", "decimal", True), ("name", "string", True),
        ("channel", "string", True),
    ]  # fmt: skip
    # The evolved contract is in force: the same table again is no new drift (the removed
    # column is still reported: it is still missing) and no new version.
    ingest(conf, DAY3)
    assert drifted(conf, DAY3) == [("removed", "name", "string", None, "evolved", engine.label(table))]
    assert rows(conf, "SELECT count(*) FROM meta.contracts") == [(1,)]
    assert rows(conf, "SELECT sum(rows_read) = sum(rows_loaded + rows_quarantined) FROM meta.loads") == [
        (True,)
    ]


def test_quarantine_keeps_the_contract_and_quarantines_what_does_not_fit(
    tmp_path: Path, engine: Engine
) -> None:
    conf, table = drifting_table(tmp_path, engine, "quarantine")
    label = engine.label(table)

    [result] = ingest(conf, DAY2)

    assert (result.status, result.rows_read, result.rows_loaded, result.rows_quarantined) == (
        "warning", 3, 1, 2
    )  # fmt: skip
    assert rows(conf, f"SELECT id, qty, name FROM raw.src__rows WHERE _fabric_partition = '{DAY2}'") == [
        (2, 4, None)
    ]
    assert rows(
        conf,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'raw' AND table_name = "
        "'src__rows' AND NOT starts_with(column_name, '_fabric_') ORDER BY ordinal_position",
    ) == [("id",), ("qty",), ("name",)]
    quarantined = rows(
        conf, "SELECT _fabric_position, reason_code, reason, raw_record FROM quarantine.src__rows ORDER BY 1"
    )
    assert [(p, code) for p, code, _, _ in quarantined] == [("id=1", "type_cast"), ("id=3", "schema_drift")]
    assert quarantined[0][2].startswith(f"{label} id=1: field qty: '2.5")
    assert quarantined[0][2].endswith("' is not a valid integer")
    assert quarantined[1][2] == f"{label} id=3: field channel: not in the contract (policy quarantine)"
    assert {k: v for k, v in json.loads(quarantined[1][3]).items() if k != "qty"} == {
        "id": "3", "name": None, "channel": "web"
    }  # fmt: skip
    assert drifted(conf, DAY2) == changes(engine, table, "quarantined")
    assert rows(conf, "SELECT count(*) FROM meta.contracts") == [(0,)]


@pytest.mark.parametrize("policy", ["evolve", "quarantine"])
def test_a_removed_column_declared_not_nullable(tmp_path: Path, engine: Engine, policy: str) -> None:
    table = engine.create({"id": "bigint", "note": "string"}, [(1, "a")])
    columns = [{"name": "id", "type": "bigint"}, {"name": "note", "nullable": False}]
    conf = config(tmp_path, engine, table, columns=columns, contract={"policy": policy})
    ingest(conf, DAY1)
    engine.run(f"ALTER TABLE {table} ADD COLUMN other {engine.types['string']}", None)
    engine.run(f"ALTER TABLE {table} DROP COLUMN note", None)

    [result] = ingest(conf, DAY2)

    if policy == "evolve":  # the contract lets the column be null from now on
        assert (result.rows_loaded, result.rows_quarantined) == (1, 0)
        assert rows(conf, f"SELECT id, note FROM raw.src__rows WHERE _fabric_partition = '{DAY2}'") == [
            (1, None)
        ]
        [(stored,)] = rows(conf, "SELECT columns FROM meta.contracts")
        assert [c["nullable"] for c in json.loads(stored)] == [True, True, True]
    else:  # the contract stands: a missing value
        assert (result.rows_loaded, result.rows_quarantined) == (0, 1)
        assert rows(conf, "SELECT reason_code, reason FROM quarantine.src__rows") == [
            (
                "null_value",
                f"{engine.label(table)} id=1: field note: missing value (the column is not nullable)",
            )
        ]
    assert [r[:2] for r in drifted(conf, DAY2)] == [("added", "other"), ("removed", "note")]


def test_a_removed_key_is_refused_whatever_the_policy(tmp_path: Path, engine: Engine) -> None:
    table = engine.create({"id": "bigint", "ref": "bigint", "name": "string"}, [(1, 10, "a")])
    columns = [{"name": "id", "type": "bigint"}, {"name": "ref", "type": "bigint", "nullable": False},
               {"name": "name"}]  # fmt: skip
    conf = config(
        tmp_path, engine, table, columns=columns, primary_key=["ref"], contract={"policy": "evolve"}
    )
    ingest(conf, DAY1)
    engine.run(f"ALTER TABLE {table} DROP COLUMN ref", None)

    with pytest.raises(ContractError, match=r"columns \['ref'\] were removed from the table but the entity"):
        ingest(conf, DAY2)

    assert loads(conf)[-1] == (DAY2, "failed", 0, 0, 0)
    assert [r[:2] + r[4:5] for r in drifted(conf, DAY2)] == [("removed", "ref", "refused")]


def test_a_contract_is_inferred_from_the_catalog_and_prints_to_freeze(tmp_path: Path, engine: Engine) -> None:
    columns = {
        "id": "bigint",
        "qty": "bigint",
        "amount": "decimal",
        "updated_at": "timestamp",
        "name": "string",
    }
    table = engine.create(columns, [(1, 7, "1.25", "2026-03-01 08:00:00", "Zoë")])
    inferred = config(tmp_path / "inferred", engine, table)

    [result] = ingest(inferred, DAY1)

    assert (result.status, result.rows_loaded) == ("ok", 1)
    [(version, origin, stored, key)] = rows(
        inferred, "SELECT version, origin, columns, primary_key FROM meta.contracts"
    )
    assert (version, origin, json.loads(key)) == (1, "inferred", ["id"])
    columns_in_force = tuple(Column.model_validate(c) for c in json.loads(stored))
    document = yaml.safe_load(
        Contract("src", "rows", columns_in_force, ("id",), "freeze", 1, "inferred", "").as_yaml()
    )
    assert document == {
        "columns": [
            {"name": "id", "nullable": False, "type": "bigint"},
            {"name": "qty", "type": "bigint"},
            {"name": "amount", "precision": 12, "scale": 2, "type": "decimal"},
            {"name": "updated_at", "type": "timestamp"},
            {"name": "name"},
        ],
        "primary_key": ["id"],
    }
    assert rows(inferred, "SELECT id, qty, amount, updated_at::VARCHAR, name FROM raw.src__rows") == [
        (1, 7, Decimal("1.25"), "2026-03-01 08:00:00", "Zoë")
    ]
    # Frozen in the config, the same table loads the same rows.
    frozen = config(tmp_path / "frozen", engine, table, **document)
    ingest(frozen, DAY1)
    assert rows(frozen, COMPARED.format("raw.src__rows")) == rows(inferred, COMPARED.format("raw.src__rows"))
    # The inferred contract is in force (default policy freeze): a new column is refused.
    engine.run(f"ALTER TABLE {table} ADD COLUMN extra {engine.types['integer']}", None)
    with pytest.raises(ContractError, match=r"added column extra \((integer|bigint)\)"):
        ingest(inferred, DAY2)


def test_an_inferred_contract_must_hold_the_keys(tmp_path: Path, engine: Engine) -> None:
    table = engine.create({"id": "bigint", "name": "string"}, [(1, "a")])
    conf = config(tmp_path, engine, table, primary_key=["code"])

    with pytest.raises(
        SourceError, match=r"\(columns \['id', 'name'\]\) does not fit the entity: 'code' is not"
    ):
        ingest(conf, DAY1)

    assert rows(conf, "SELECT count(*) FROM meta.contracts") == [(0,)]
    assert loads(conf) == [(DAY1, "failed", 0, 0, 0)]


def test_merge_reads_by_the_inferred_cursor(tmp_path: Path, engine: Engine) -> None:
    table = engine.create({"id": "bigint", "updated_at": "timestamp"}, [(1, "2026-03-01 08:00:00")])
    conf = config(tmp_path, engine, table, mode="merge", cursor_column="updated_at", lookback="1 minute")
    ingest(conf, DAY1)
    engine.insert(table, [(2, "2026-03-02 09:00:00"), (3, "2026-02-01 00:00:00")])

    [second] = ingest(conf, DAY2)

    # The row at the cursor again (>=) and the newer one; not the row older than the look-back.
    assert (second.rows_read, second.rows_loaded) == (2, 2)
    assert rows(conf, "SELECT cursor_value, cursor_type FROM meta.cursors") == [
        ("2026-03-02 09:00:00", "TIMESTAMP")
    ]
    assert rows(conf, "SELECT id, _fabric_partition FROM raw.src__rows ORDER BY id") == [(1, DAY2), (2, DAY2)]
