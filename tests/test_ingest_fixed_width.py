"""Fixed-width ingest: layout types, implied decimals, wrong line lengths, reruns, missing files."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fabric.config import FabricConfig, parse_config
from fabric.errors import ConfigError
from fabric.ingest import ingest_entity
from fabric.partitions import Window
from fabric.warehouse import Warehouse

DAY = date(2026, 3, 1)
ONE_DAY = Window(DAY, DAY)
LAYOUT = """\
invoices:
  - {name: invoice_no, start: 1, length: 6, type: string}
  - {name: customer, start: 7, length: 10, type: string}
  - {name: issued_on, start: 17, length: 8, type: date, format: "%Y%m%d"}
  - {name: amount, start: 25, length: 9, type: decimal, scale: 2}
  - {name: lines, start: 34, length: 3, type: integer}
"""
WIDTH = 36


def record(invoice: str, customer: str, issued: str, amount: str, lines: str) -> bytes:
    text = f"{invoice:<6}{customer:<10}{issued:<8}{amount:>9}{lines:>3}"
    assert len(text) == WIDTH
    return text.encode("ascii") + b"\n"


def make_config(tmp_path: Path) -> FabricConfig:
    erp = tmp_path / "erp"
    erp.mkdir(exist_ok=True)
    (erp / "layout.yaml").write_text(LAYOUT)
    return parse_config(
        {
            "project": "test",
            "warehouse": {"path": "warehouse.duckdb"},
            "partitions": {"start_date": "2026-01-01"},
            "sources": {
                "erp": {
                    "kind": "fixed_width",
                    "root": "erp",
                    "layout": "erp/layout.yaml",
                    "entities": {
                        "invoices": {"pattern": "inv_{date:%Y%m%d}.txt", "layout": "invoices"}
                    },
                }
            },
        },
        tmp_path,
    )


def write(tmp_path: Path, day: date, content: bytes) -> Path:
    path = tmp_path / "erp" / f"inv_{day:%Y%m%d}.txt"
    path.write_bytes(content)
    return path


def ingest(config: FabricConfig, window: Window = ONE_DAY) -> list[Any]:
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    return ingest_entity(config, "erp", "invoices", window, "run-1", warehouse)


def rows(config: FabricConfig, sql: str) -> list[tuple[Any, ...]]:
    with Warehouse(config.resolve(config.warehouse.path)).connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def test_fields_are_cut_trimmed_and_typed(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    path = write(
        tmp_path,
        DAY,
        record("INV001", "MUELLER", "20260301", "000004999", "3")
        + record("INV002", "", "20260228", "-00001050", "")
        + record("INV003", "  LEAD", "", "000000005", "12"),
    )

    [result] = ingest(config)

    assert (result.status, result.rows_read, result.rows_loaded) == ("ok", 3, 3)
    assert rows(
        config,
        "SELECT * EXCLUDE (_fabric_load_id, _fabric_loaded_at) FROM raw.erp__invoices ORDER BY 1",
    ) == [
        ("INV001", "MUELLER", date(2026, 3, 1), Decimal("49.99"), 3, DAY, str(path.resolve()),
         "line 1"),
        ("INV002", None, date(2026, 2, 28), Decimal("-10.50"), None, DAY, str(path.resolve()),
         "line 2"),
        ("INV003", "  LEAD", None, Decimal("0.05"), 12, DAY, str(path.resolve()), "line 3"),
    ]  # fmt: skip
    assert rows(
        config,
        "SELECT data_type FROM duckdb_columns() WHERE table_name = 'erp__invoices' "
        "AND schema_name = 'raw' ORDER BY column_index LIMIT 5",
    ) == [("VARCHAR",), ("VARCHAR",), ("DATE",), ("DECIMAL(18,2)",), ("INTEGER",)]


def test_every_line_is_loaded_or_quarantined(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    good = record("INV001", "MUELLER", "20260301", "000004999", "3")
    content = (
        good  # 1
        + good[:-4]
        + b"\n"  # 2 too short
        + good[:-1]
        + b"XX\n"  # 3 too long
        + record("INV004", "X", "20260231", "000000100", "1")  # 4 impossible date
        + record("INV005", "X", "2026031", "000000100", "1")  # 5 date with a digit missing
        + record("INV006", "X", "20260301", "0000049A9", "1")  # 6 bad digits
        + record("INV007", "X", "20260301", "000000100", "1").replace(b"X", b"\xc4")  # 7 not ASCII
        + record("INV008", "X", "20260301", "000000100", "1").replace(b"X", b"\x00")  # 8 NUL
        + b"\n"  # 9 empty line: not a record
        + good.replace(b"\n", b"\r\n")  # 10 CRLF is tolerated
        + good[:20]  # 11 truncated last line
    )
    path = write(tmp_path, DAY, content)

    [result] = ingest(config)

    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (10, 2, 8)
    quarantined = rows(
        config,
        "SELECT _fabric_position, reason_code, reason, raw_record FROM quarantine.erp__invoices "
        "ORDER BY _fabric_position[6:]::INT",
    )
    assert [(p, code) for p, code, _, _ in quarantined] == [
        ("line 2", "line_length"),
        ("line 3", "line_length"),
        ("line 4", "type_cast"),
        ("line 5", "type_cast"),
        ("line 6", "type_cast"),
        ("line 7", "encoding"),
        ("line 8", "encoding"),
        ("line 11", "line_length"),
    ]
    reasons = {p: reason for p, _, reason, _ in quarantined}
    where = f"file {path.resolve()}"
    assert reasons["line 2"] == f"{where} line 2: expected 36 characters, got 33"
    assert reasons["line 3"] == f"{where} line 3: expected 36 characters, got 38"
    assert reasons["line 4"] == (
        f"{where} line 4: field issued_on: '20260231' is not a valid date in format %Y%m%d"
    )
    assert reasons["line 5"].endswith(
        "field issued_on: '2026031' is not a valid date in format %Y%m%d"
    )
    assert reasons["line 6"].endswith("field amount: '0000049A9' is not a valid decimal(18,2)")
    assert reasons["line 7"] == f"{where} line 7: byte 0xc4 is not valid ascii at column 7"
    raw = {p: text for p, _, _, text in quarantined}
    assert raw["line 2"] == good[:-4].decode()
    assert raw["line 11"] == good[:20].decode()


def test_rerun_gives_identical_tables_and_a_missing_day_clears_its_partition(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path)
    window = Window(DAY, date(2026, 3, 2))
    good = record("INV001", "MUELLER", "20260301", "000004999", "3")
    write(tmp_path, DAY, good + good[:10] + b"\n")
    second_day = write(tmp_path, date(2026, 3, 2), good * 3)
    query = "SELECT * EXCLUDE (_fabric_load_id, _fabric_loaded_at) FROM {} ORDER BY ALL"
    tables = ("raw.erp__invoices", "quarantine.erp__invoices")

    ingest(config, window)
    before = [rows(config, query.format(t)) for t in tables]
    ingest(config, window)
    assert [rows(config, query.format(t)) for t in tables] == before

    second_day.unlink()
    first, missing = ingest(config, window)
    assert (first.rows_loaded, first.rows_quarantined, missing.status) == (1, 1, "missing")
    assert rows(config, "SELECT _fabric_partition, count(*) FROM raw.erp__invoices GROUP BY 1") == [
        (DAY, 1)
    ]


def test_an_unknown_layout_is_a_config_error(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    (tmp_path / "erp" / "layout.yaml").write_text(LAYOUT.replace("invoices:", "bills:"))
    write(tmp_path, DAY, b"")

    with pytest.raises(ConfigError, match="no layout named 'invoices'"):
        ingest(config)
