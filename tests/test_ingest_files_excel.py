"""Excel .xlsx: the declared sheet and header row, typed cells, bad values, positions."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from fabric.config import FabricConfig, parse_config
from fabric.errors import SourceError
from fabric.ingest import ingest_entity
from fabric.partitions import Window
from fabric.warehouse import Warehouse

DAY = date(2026, 3, 1)
COLUMNS = [
    {"name": "id", "type": "integer", "nullable": False},
    {"name": "amount", "type": "decimal", "precision": 10, "scale": 2},
    {"name": "opened", "type": "date", "format": "%d.%m.%Y"},
    {"name": "vip", "type": "boolean"},
]


def make_config(tmp_path: Path, sheet: str = "Orders") -> FabricConfig:
    entity = {"pattern": "o_{date:%Y%m%d}.xlsx", "sheet": sheet, "header_row": 3, "columns": COLUMNS}
    return parse_config(
        {
            "project": "test",
            "warehouse": {"path": "warehouse.duckdb"},
            "partitions": {"start_date": "2026-01-01"},
            "sources": {"books": {"kind": "excel", "root": "books", "entities": {"orders": entity}}},
        },
        tmp_path,
    )


def write(tmp_path: Path, rows: list[list[Any]]) -> Path:
    book = openpyxl.Workbook()
    book.active.title = "Cover"
    sheet = book.create_sheet("Orders")
    for row in rows:
        sheet.append(row)
    path = tmp_path / "books" / f"o_{DAY:%Y%m%d}.xlsx"
    path.parent.mkdir(exist_ok=True)
    book.save(path)
    return path


def ingest(config: FabricConfig) -> Any:
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    [result] = ingest_entity(config, "books", "orders", Window(DAY, DAY), "run-1", warehouse)
    return result


def rows(config: FabricConfig, sql: str) -> list[tuple[Any, ...]]:
    with Warehouse(config.resolve(config.warehouse.path)).connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def test_cells_are_typed_and_bad_rows_quarantined_with_their_sheet_row(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    path = write(
        tmp_path,
        [
            ["Orders export"],  # 1
            [],  # 2
            ["id", "vip", "amount", "opened"],  # 3 header (columns by name)
            [1, True, 12.5, datetime(2026, 3, 1)],  # 4
            [2, False, 3, "02.03.2026"],  # 5 a date typed as text in the declared format
            [None, None, None, None],  # 6 empty row: not a record
            ["x3", None, 1, None],  # 7 type_cast
            [4, None, 1.005, None],  # 8 too many decimals
            [5, None, 1, None, "stray"],  # 9 a value past the header
        ],
    )

    result = ingest(config)

    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (5, 2, 3)
    loaded = "SELECT id, amount, opened, vip, _fabric_position FROM raw.books__orders ORDER BY id"
    assert rows(config, loaded) == [
        (1, Decimal("12.50"), date(2026, 3, 1), True, "sheet Orders row 4"),
        (2, Decimal("3.00"), date(2026, 3, 2), False, "sheet Orders row 5"),
    ]  # fmt: skip
    quarantined = rows(
        config,
        "SELECT _fabric_position, reason_code, reason, raw_record FROM quarantine.books__orders ORDER BY 1",
    )
    assert [(p, c) for p, c, _, _ in quarantined] == [
        ("sheet Orders row 7", "type_cast"),
        ("sheet Orders row 8", "type_cast"),
        ("sheet Orders row 9", "field_count"),
    ]
    assert (
        quarantined[0][2]
        == f"file {path.resolve()} sheet Orders row 7: field id: 'x3' is not a valid integer"
    )
    assert quarantined[0][3] == '{"id": "x3", "vip": null, "amount": "1", "opened": null}'


def test_a_missing_sheet_names_the_sheets_there_are(tmp_path: Path) -> None:
    config = make_config(tmp_path, sheet="Invoices")
    write(tmp_path, [[]])

    with pytest.raises(SourceError, match="no sheet 'Invoices' \\(sheets: Cover, Orders\\)"):
        ingest(config)


def test_a_file_that_is_not_a_workbook_is_refused(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    path = tmp_path / "books" / f"o_{DAY:%Y%m%d}.xlsx"
    path.parent.mkdir()
    path.write_text("id,amount\n1,2\n")

    with pytest.raises(SourceError, match=r"not a readable \.xlsx workbook"):
        ingest(config)
