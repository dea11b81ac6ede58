"""Contracts and schema drift: freeze refuses with a diff, evolve adds and widens, quarantine."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from fabric.config import Column, FabricConfig, parse_config
from fabric.ingest import ingest_entity
from fabric.ingest.contract import Contract, ContractError, widen
from fabric.partitions import Window
from fabric.warehouse import Warehouse

DAY = date(2026, 3, 1)
NEXT = date(2026, 3, 2)
COLUMNS = [{"name": "id", "type": "integer", "nullable": False}, {"name": "qty", "type": "integer"}]


def make_config(tmp_path: Path, policy: str) -> FabricConfig:
    return parse_config(
        {
            "project": "test",
            "warehouse": {"path": "warehouse.duckdb"},
            "partitions": {"start_date": "2026-01-01"},
            "sources": {
                "shop": {
                    "kind": "csv",
                    "root": "shop",
                    "entities": {
                        "orders": {
                            "pattern": "o_{date:%Y%m%d}.csv",
                            "columns": COLUMNS,
                            "primary_key": ["id"],
                            "contract": {"policy": policy},
                        }
                    },
                }
            },
        },
        tmp_path,
    )


def write(tmp_path: Path, day: date, text: str) -> Path:
    path = tmp_path / "shop" / f"o_{day:%Y%m%d}.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def ingest(config: FabricConfig, start: date = DAY, end: date = DAY) -> list[Any]:
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    return ingest_entity(config, "shop", "orders", Window(start, end), "run-1", warehouse)


def rows(config: FabricConfig, sql: str) -> list[tuple[Any, ...]]:
    with Warehouse(config.resolve(config.warehouse.path)).connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def test_freeze_refuses_the_window_with_a_diff_and_records_it(tmp_path: Path) -> None:
    config = make_config(tmp_path, "freeze")
    write(tmp_path, DAY, "id,qty\n1,2\n")
    ingest(config)
    write(tmp_path, DAY, "id,qty\n1,3\n")
    path = write(tmp_path, NEXT, "id,channel\n2,web\n")

    with pytest.raises(ContractError) as error:
        ingest(config, DAY, NEXT)

    message = str(error.value)
    assert f"file {path.resolve()}: the header names columns ['id', 'channel']" in message
    assert "added column channel (string), removed column qty (was integer)" in message
    assert rows(config, "SELECT qty FROM raw.shop__orders") == [(2,)]  # previous state intact
    assert rows(
        config, "SELECT partition, change, column_name, action FROM meta.schema_drift ORDER BY 3"
    ) == [(NEXT, "added", "channel", "refused"), (NEXT, "removed", "qty", "refused")]
    # Each day of the refused window has a failed load saying why (operators look there first).
    failed = rows(
        config,
        "SELECT partition, source_path, message FROM meta.loads WHERE status = 'failed' ORDER BY 1",
    )
    assert [(day, Path(source).name) for day, source, _ in failed] == [
        (DAY, f"o_{DAY:%Y%m%d}.csv"), (NEXT, path.name)
    ]
    assert all("removed column qty" in message for *_, message in failed)


def test_freeze_refuses_a_column_none_of_whose_values_fit(tmp_path: Path) -> None:
    config = make_config(tmp_path, "freeze")
    write(tmp_path, DAY, "id,qty\n1,2.5\n2,1.5\n")

    with pytest.raises(ContractError, match="column qty retyped from integer to decimal"):
        ingest(config)


def test_evolve_adds_columns_and_widens_types(tmp_path: Path) -> None:
    config = make_config(tmp_path, "evolve")
    write(tmp_path, DAY, "id,qty\n1,2\n")
    ingest(config)
    write(tmp_path, NEXT, "id,qty,channel\n2,2.5,web\n3,4,\n")

    [result] = ingest(config, NEXT, NEXT)

    assert (result.rows_loaded, result.rows_quarantined) == (2, 0)
    assert rows(config, "SELECT id, qty, channel FROM raw.shop__orders ORDER BY id") == [
        (1, Decimal("2.0"), None),
        (2, Decimal("2.5"), "web"),
        (3, Decimal("4.0"), None),
    ]
    assert rows(config, "SELECT version, origin FROM meta.contracts") == [(1, "evolved")]
    assert rows(
        config,
        "SELECT change, column_name, expected_type, observed_type, action FROM meta.schema_drift ORDER BY 2",
    ) == [
        ("added", "channel", None, None, "evolved"),
        ("retyped", "qty", "integer", "decimal(18,1)", "evolved"),
    ]
    # The evolved contract is in force: the same file again is no drift.
    ingest(config, NEXT, NEXT)
    assert rows(config, "SELECT count(*) FROM meta.schema_drift") == [(2,)]


def test_quarantine_keeps_rows_that_fit_and_quarantines_the_others(tmp_path: Path) -> None:
    config = make_config(tmp_path, "quarantine")
    path = write(tmp_path, DAY, "id,qty,channel\n1,2,\n2,3,web\n3,x,\n")

    [result] = ingest(config)

    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (3, 1, 2)
    assert rows(config, "SELECT id FROM raw.shop__orders") == [(1,)]
    assert rows(
        config, "SELECT _fabric_position, reason_code, reason FROM quarantine.shop__orders ORDER BY 1"
    ) == [
        ("line 3", "schema_drift",
         f"file {path.resolve()} line 3: field channel: not in the contract (policy quarantine)"),
        ("line 4", "type_cast", f"file {path.resolve()} line 4: field qty: 'x' is not a valid integer"),
    ]  # fmt: skip
    assert rows(config, "SELECT change, column_name, action FROM meta.schema_drift") == [
        ("added", "channel", "quarantined")
    ]


def test_a_contract_prints_as_the_yaml_that_freezes_it() -> None:
    columns = (Column(name="id", type="integer"), Column(name="total", type="decimal", scale=3))
    contract = Contract("s", "e", columns, ("id",), "freeze", 2, "evolved", "x")

    document = yaml.safe_load(contract.as_yaml())

    assert document == {
        "columns": [
            {"name": "id", "type": "integer"},
            {"name": "total", "precision": 18, "scale": 3, "type": "decimal"},
        ],
        "primary_key": ["id"],
    }
    assert [Column.model_validate(c) for c in document["columns"]] == list(columns)


@pytest.mark.parametrize(
    ("expected", "observed", "wider"),
    [("integer", "bigint", "bigint"), ("integer", "double", "double"), ("bigint", "integer", "bigint"),
     ("date", "timestamp", "timestamp"), ("integer", "date", "string"), ("boolean", "integer", "string")],
)  # fmt: skip
def test_types_widen_within_their_family_else_to_string(expected: str, observed: str, wider: str) -> None:
    assert widen(Column(name="c", type=expected), Column(name="c", type=observed)).type == wider  # type: ignore[arg-type]
