"""CSV at production grade: BOM, gzip, dialect options, header mapping, huge lines, inference."""

from __future__ import annotations

import gzip
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fabric.config import FabricConfig, parse_config
from fabric.ingest import ingest_entity
from fabric.partitions import Window
from fabric.warehouse import Warehouse

DAY = date(2026, 3, 1)
COLUMNS: list[dict[str, Any]] = [
    {"name": "id", "type": "integer", "nullable": False},
    {"name": "amount", "type": "decimal", "precision": 10, "scale": 2},
    {"name": "day", "type": "date", "format": "%d.%m.%Y"},
]


def make_config(
    tmp_path: Path, columns: list[dict[str, Any]] | None = COLUMNS, **options: Any
) -> FabricConfig:
    entity: dict[str, Any] = {"pattern": "t_{date:%Y%m%d}.csv"}
    if columns is not None:
        entity["columns"] = columns
    return parse_config(
        {
            "project": "test",
            "warehouse": {"path": "warehouse.duckdb"},
            "partitions": {"start_date": "2026-01-01"},
            "sources": {"desk": {"kind": "csv", "root": "desk", **options, "entities": {"t": entity}}},
        },
        tmp_path,
    )


def write(tmp_path: Path, content: bytes, day: date = DAY) -> Path:
    path = tmp_path / "desk" / f"t_{day:%Y%m%d}.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    return path


def ingest(config: FabricConfig, day: date = DAY) -> Any:
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    [result] = ingest_entity(config, "desk", "t", Window(day, day), "run-1", warehouse)
    return result


def rows(config: FabricConfig, sql: str) -> list[tuple[Any, ...]]:
    with Warehouse(config.resolve(config.warehouse.path)).connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def test_bom_crlf_and_gzip_are_read_like_plain_files(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    text = b"\xef\xbb\xbfid,amount,day\r\n1,12.50,01.03.2026\r\n2,,02.03.2026\r\n"
    write(tmp_path, gzip.compress(text))

    result = ingest(config)

    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (2, 2, 0)
    assert rows(config, "SELECT id, amount, day, _fabric_position FROM raw.desk__t ORDER BY id") == [
        (1, Decimal("12.50"), date(2026, 3, 1), "line 2"),
        (2, None, date(2026, 3, 2), "line 3"),
    ]


def test_decimal_comma_delimiter_skipped_rows_and_impossible_dates(tmp_path: Path) -> None:
    config = make_config(tmp_path, delimiter=";", decimal_separator=",", skip_rows=2)
    path = write(
        tmp_path,
        b"Export of tickets; generated 2026-03-02\n"  # 1 skipped (its ; and quote do not count)
        b'"unterminated note\n'  # 2 skipped
        b"id;amount;day\n"  # 3 header
        b"1;12,50;01.03.2026\n"  # 4
        b"2;1.234,50;01.03.2026\n"  # 5 a point: not a decimal-comma number
        b"3;7;31.02.2026\n"  # 6 impossible date
        b"4;x;01.13.2026\n",  # 7 two bad fields
    )

    result = ingest(config)

    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (4, 1, 3)
    assert rows(config, "SELECT id, amount, _fabric_position FROM raw.desk__t") == [
        (1, Decimal("12.50"), "line 4")
    ]
    reasons = dict(rows(config, "SELECT _fabric_position, reason FROM quarantine.desk__t"))
    where = f"file {path.resolve()}"
    assert reasons["line 5"] == (
        f"{where} line 5: field amount: 1.234,50 is not a number with decimal separator ','"
    )
    assert reasons["line 6"] == (
        f"{where} line 6: field day: '31.02.2026' is not a valid date in format %d.%m.%Y"
    )
    assert "field amount: 'x'" in reasons["line 7"] and "field day" in reasons["line 7"]


def test_header_columns_are_mapped_by_name(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    write(tmp_path, b"day,ID,amount\n01.03.2026,1,5\n".replace(b"ID", b"id"))

    result = ingest(config)

    assert result.rows_loaded == 1
    assert rows(config, "SELECT id, amount, day FROM raw.desk__t") == [(1, Decimal("5.00"), date(2026, 3, 1))]


def test_without_a_header_the_columns_are_positional(tmp_path: Path) -> None:
    config = make_config(tmp_path, header=False)
    write(tmp_path, b"1,5,01.03.2026\n2,6,02.03.2026,extra\n")

    result = ingest(config)

    assert (result.rows_loaded, result.rows_quarantined) == (1, 1)
    assert rows(config, "SELECT reason_code FROM quarantine.desk__t") == [("field_count",)]


def test_a_50_mb_single_line_is_loaded_whole(tmp_path: Path) -> None:
    config = make_config(tmp_path, [{"name": "id", "type": "integer"}, {"name": "note"}])
    note = b"x" * (50 << 20)
    write(tmp_path, b"id,note\n1," + note + b"\n2,short\n")

    result = ingest(config)

    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (2, 2, 0)
    assert rows(config, "SELECT id, length(note) FROM raw.desk__t ORDER BY id") == [
        (1, 50 << 20),
        (2, 5),
    ]


def test_an_undeclared_entity_gets_an_inferred_contract(tmp_path: Path) -> None:
    config = make_config(tmp_path, None)
    write(tmp_path, b"Ticket Id,Amount,Opened,Done\n1,12.5,2026-03-01,true\n2,3,2026-03-02,\n")

    result = ingest(config)

    assert result.rows_loaded == 2
    assert rows(
        config,
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'desk__t' "
        "AND schema_name = 'raw' AND NOT column_name LIKE '\\_fabric%' ESCAPE '\\'",
    ) == [
        ("ticket_id", "INTEGER"),
        ("amount", "DECIMAL(18,1)"),
        ("opened", "DATE"),
        ("done", "BOOLEAN"),
    ]
    assert rows(config, "SELECT version, origin FROM meta.contracts") == [(1, "inferred")]


@pytest.mark.parametrize("content", [b"", b"id,amount,day\n", b"\xef\xbb\xbfid,amount,day\r\n\r\n"])
def test_empty_and_header_only_files_load_nothing(tmp_path: Path, content: bytes) -> None:
    config = make_config(tmp_path)
    write(tmp_path, gzip.compress(content) if content.endswith(b"\r\n") else content)

    result = ingest(config)

    assert (result.status, result.rows_read) == ("ok", 0)
