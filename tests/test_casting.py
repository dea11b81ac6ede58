"""The typed parse of source text (`casting.typed_expr`), run in DuckDB: spaces around a value
are allowed, anything looser than the declared type is not."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb
import pytest

from fabric.config import Column
from fabric.ingest.casting import typed_expr

COLUMNS = {
    "integer": Column(name="v", type="integer"),
    "decimal": Column(name="v", type="decimal", precision=10, scale=2),
    "double": Column(name="v", type="double"),
    "boolean": Column(name="v", type="boolean"),
    "date": Column(name="v", type="date"),
    "date_format": Column(name="v", type="date", format="%d.%m.%Y"),
    "timestamp_format": Column(name="v", type="timestamp", format="%Y-%m-%d %H:%M:%S"),
    "timestamp": Column(name="v", type="timestamp"),
}


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        ("integer", "42", 42),
        ("integer", "  -42 ", -42),
        ("integer", "+7", 7),
        ("integer", "12.5", None),
        ("integer", "1e3", None),
        ("integer", "\t42", None),
        ("integer", "4 2", None),
        ("decimal", " 12.50 ", Decimal("12.50")),
        ("decimal", ".5", Decimal("0.50")),
        ("decimal", "12.505", None),  # more fraction digits than the scale: no silent rounding
        ("double", " 1.5e3 ", 1500.0),
        ("double", "abc", None),
        ("boolean", " true ", True),
        ("boolean", "yes", True),  # DuckDB's boolean text: true/false, t/f, yes/no, y/n, 1/0
        ("boolean", "maybe", None),
        ("date", " 2026-01-05 ", date(2026, 1, 5)),
        ("date_format", " 05.01.2026", date(2026, 1, 5)),
        ("date_format", "5.1.2026", None),  # the format's digits exactly
        ("date_format", "31.02.2026", None),  # an impossible date
        ("timestamp_format", "2026-01-05 10:11:12 ", datetime(2026, 1, 5, 10, 11, 12)),
        ("timestamp_format", "2026-01-05 10:11", None),
        ("timestamp", "2026-01-05T10:11:12+02:00", datetime(2026, 1, 5, 8, 11, 12)),
    ],
)
def test_typed_values(kind: str, text: str, expected: Any) -> None:
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        row = con.execute(f"SELECT {typed_expr(COLUMNS[kind], '$1')}", [text]).fetchone()
    assert row is not None and row[0] == expected
