"""PII masking: the Python and SQL versions agree, values stay groupable, previews are masked."""

from __future__ import annotations

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from fabric.errors import ConfigError
from fabric.pii import MaskKind, mask_frame, mask_kind, mask_value, masked_select

TRICKY = [
    None, "", "   ", " Jane.Doe@Example.DE ", "jane.doe@example.de", "@example.de", "a@b",
    "a@b.", "x@y@z.Co", "no-at-sign", "+49 (30) 123-4567", "0049 30 1234567", "n/a", "7",
    "Österreich", "élise", "e\u0301lise", "ßtraße 1", "o'brien", "Hauptstr. 5\nBerlin",
]  # fmt: skip
COLUMNS = ["email", "requester_email", "phone", "first_name", "account_name", "street", "value"]


def test_kinds_follow_the_column_name() -> None:
    assert [mask_kind(c) for c in COLUMNS] == [
        MaskKind.EMAIL, MaskKind.EMAIL, MaskKind.PHONE, MaskKind.NAME, MaskKind.NAME,
        MaskKind.TEXT, MaskKind.TEXT,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("column", "value", "masked"),
    [
        ("email", " Jane.Doe@Example.DE ", "j***@***.de"),
        ("email", "x@y@z.Co", "x***@***.co"),
        ("email", "a@b", "a***@***"),
        ("email", "no-at-sign", "***"),
        ("phone", "+49 (30) 123-4567", "***67"),
        ("phone", "n/a", "***"),
        ("last_name", " müller", "M***"),
        ("last_name", "ölsen", "ö***"),  # case folding is ASCII-only, the same as in SQL
        ("first_name", "jane", "J***"),
        ("street", "Hauptstr. 5", "***"),
        ("email", None, None),
        ("email", float("nan"), None),
        ("phone", "  ", ""),
        ("phone", 4930123456, "***56"),
    ],
)
def test_mask_value(column: str, value: object, masked: str | None) -> None:
    assert mask_value(column, value) == masked


def test_variants_of_one_email_group_together() -> None:
    assert len({mask_value("email", v) for v in TRICKY[3:5]}) == 1


def test_sql_masking_equals_python_masking() -> None:
    con = duckdb.connect()
    con.execute(f"CREATE TABLE people ({', '.join(f'{c} VARCHAR' for c in COLUMNS)}, id INTEGER)")
    con.executemany(
        f"INSERT INTO people VALUES ({', '.join('?' * (len(COLUMNS) + 1))})",
        [[value] * len(COLUMNS) + [i] for i, value in enumerate(TRICKY)],
    )
    rows = con.execute(
        masked_select("memory.main.people", [*COLUMNS, "id"], COLUMNS) + " ORDER BY id"
    ).fetchall()
    for value, row in zip(TRICKY, rows, strict=True):
        assert list(row[:-1]) == [mask_value(c, value) for c in COLUMNS], value


def test_masked_select_keeps_other_columns_and_quotes_names() -> None:
    sql = masked_select("integrated.customers", ["id", "Email"], ["email", "not_there"])
    assert sql.startswith('SELECT "id", CASE WHEN')
    assert sql.endswith('END AS "Email" FROM "integrated"."customers"')
    with pytest.raises(ConfigError):
        masked_select('customers"; DROP TABLE x; --', ["id"], [])


def test_mask_frame_masks_pandas_and_arrow_previews() -> None:
    frame = pd.DataFrame({"id": [1, 2], "email": ["ann@x.org", None], "plan": ["pro", "basic"]})
    masked = mask_frame(frame, ["email"])
    assert masked["email"].tolist() == ["a***@***.org", None]
    assert masked["plan"].tolist() == ["pro", "basic"] and frame["email"][0] == "ann@x.org"

    table = mask_frame(pa.Table.from_pandas(frame, preserve_index=False), ["EMAIL"])
    assert isinstance(table, pa.Table)
    assert table.column("email").to_pylist() == ["a***@***.org", None]
    assert table.column("id").to_pylist() == [1, 2]
