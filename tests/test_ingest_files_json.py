"""JSON arrays and JSON lines: auto-detection, positions, malformed arrays, inferred flattening."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from fabric.config import FabricConfig, parse_config
from fabric.errors import SourceError
from fabric.ingest import ingest_entity
from fabric.partitions import Window
from fabric.warehouse import Warehouse

DAY = date(2026, 3, 1)
NEXT = date(2026, 3, 2)
COLUMNS: list[dict[str, Any]] = [
    {"name": "order_id", "path": "id", "type": "integer", "nullable": False},
    {"name": "email", "path": "customer.email"},
]


def make_config(
    tmp_path: Path, columns: list[dict[str, Any]] | None = COLUMNS, **source: Any
) -> FabricConfig:
    entity: dict[str, Any] = {"pattern": "o_{date:%Y%m%d}.json"}
    if columns is not None:
        entity["columns"] = columns
    return parse_config(
        {
            "project": "test",
            "warehouse": {"path": "warehouse.duckdb"},
            "partitions": {"start_date": "2026-01-01"},
            "sources": {"shop": {"kind": "json", "root": "shop", **source, "entities": {"orders": entity}}},
        },
        tmp_path,
    )


def write(tmp_path: Path, day: date, content: bytes) -> Path:
    path = tmp_path / "shop" / f"o_{day:%Y%m%d}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    return path


def ingest(config: FabricConfig, start: date = DAY, end: date = DAY) -> list[Any]:
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    return ingest_entity(config, "shop", "orders", Window(start, end), "run-1", warehouse)


def rows(config: FabricConfig, sql: str) -> list[tuple[Any, ...]]:
    with Warehouse(config.resolve(config.warehouse.path)).connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def order(n: int, email: str = "a@b.c") -> dict[str, Any]:
    return {"id": n, "customer": {"email": email}}


def test_arrays_and_lines_are_detected_per_file(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    array = json.dumps([order(1), order(2), {"id": "x"}], indent=2).encode()
    write(tmp_path, DAY, b"\xef\xbb\xbf" + array)
    write(tmp_path, NEXT, b"".join(json.dumps(order(n)).encode() + b"\n" for n in (3, 4)))

    first, second = ingest(config, DAY, NEXT)

    assert (first.rows_read, first.rows_loaded, first.rows_quarantined) == (3, 2, 1)
    assert (second.rows_read, second.rows_loaded) == (2, 2)
    assert rows(config, "SELECT order_id, email, _fabric_position FROM raw.shop__orders ORDER BY 1") == [
        (1, "a@b.c", "line 2"), (2, "a@b.c", "line 8"), (3, "a@b.c", "line 1"), (4, "a@b.c", "line 2"),
    ]  # fmt: skip
    assert rows(config, "SELECT _fabric_position, reason_code FROM quarantine.shop__orders") == [
        ("line 14", "type_cast")
    ]


def test_a_file_that_is_neither_an_array_nor_lines_is_refused(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    path = write(tmp_path, DAY, b"id,email\n1,a@b.c\n")

    with pytest.raises(SourceError, match=f"file {path.resolve()} line 1: neither a JSON array"):
        ingest(config)


def test_format_array_refuses_json_lines(tmp_path: Path) -> None:
    config = make_config(tmp_path, format="array")
    write(tmp_path, DAY, b'{"id": 1}\n')

    with pytest.raises(SourceError, match="not a JSON array"):
        ingest(config)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'[{"id": 1},\n {"id": 2', "not valid JSON"),  # truncated inside an element
        (b'[{"id": 1},\n {"id": 2}', "the array is not closed"),
        (b'[{"id": 1}\n {"id": 2}]', "expected ',' or ']'"),
        (b'[{"id": 1}, {"id": 2}]\ntrailing', "text after the end of the array"),
    ],
)
def test_a_malformed_array_quarantines_the_rest_of_the_file(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    config = make_config(tmp_path)
    write(tmp_path, DAY, content)

    [result] = ingest(config)

    assert result.rows_read == result.rows_loaded + result.rows_quarantined
    assert result.rows_loaded >= 1 and result.rows_quarantined == 1
    [(code, reason)] = rows(config, "SELECT reason_code, reason FROM quarantine.shop__orders")
    assert code == "json_parse" and problem in reason and " at line " in reason


def test_nested_objects_are_flattened_by_an_inferred_mapping(tmp_path: Path) -> None:
    config = make_config(tmp_path, None)
    write(
        tmp_path,
        DAY,
        json.dumps(
            [{"id": 1, "customer": {"email": "a@b.c", "address": {"city": "Bonn"}}, "tags": ["x"]},
             {"id": 2, "customer": {"email": None}, "paid": True}]
        ).encode(),
    )  # fmt: skip

    [result] = ingest(config)

    assert result.rows_loaded == 2
    assert rows(
        config,
        "SELECT id, customer_email, customer_address_city, tags, paid FROM raw.shop__orders ORDER BY 1",
    ) == [(1, "a@b.c", "Bonn", '["x"]', None), (2, None, None, None, True)]


def test_arrays_become_child_tables_keyed_to_their_parent(tmp_path: Path) -> None:
    columns = [{"name": "order_id", "path": "id", "type": "integer", "nullable": False}]
    config = parse_config(
        {
            "project": "test",
            "warehouse": {"path": "warehouse.duckdb"},
            "partitions": {"start_date": "2026-01-01"},
            "sources": {
                "shop": {
                    "kind": "json",
                    "root": "shop",
                    "entities": {
                        "orders": {
                            "pattern": "o_{date:%Y%m%d}.json",
                            "columns": columns,
                            "primary_key": ["order_id"],
                            "child_tables": {
                                "items": {
                                    "path": "items",
                                    "columns": [
                                        {"name": "sku", "nullable": False},
                                        {"name": "qty", "type": "integer"},
                                    ],
                                }
                            },
                        }
                    },
                }
            },
        },
        tmp_path,
    )
    path = write(
        tmp_path,
        DAY,
        b"".join(
            json.dumps(o).encode() + b"\n"
            for o in [
                {"id": 1, "items": [{"sku": "a", "qty": 2}, {"sku": "b"}]},
                {"id": 2, "items": []},
                {"id": 3, "items": [{"sku": "c", "qty": "many"}]},  # a child does not fit
                {"id": 4, "items": {"sku": "d"}},  # not an array
                {"id": 5},
            ]
        ),
    )

    [result] = ingest(config)

    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (5, 3, 2)
    assert rows(
        config, "SELECT order_id, _fabric_index, sku, qty, _fabric_position FROM raw.shop__orders__items"
    ) == [(1, 1, "a", 2, "line 1"), (1, 2, "b", None, "line 1")]
    assert rows(config, "SELECT reason_code, reason FROM quarantine.shop__orders ORDER BY 2") == [
        ("child_record", f"file {path.resolve()} line 3: items[1].qty: 'many' is not a valid integer"),
        ("child_record", f"file {path.resolve()} line 4: items is not an array"),
    ]
