"""JSON lines ingest: flattening by path, invalid lines, typed casts, reruns, missing files."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from fabric.config import FabricConfig, parse_config
from fabric.ingest import ingest_entity
from fabric.partitions import Window
from fabric.warehouse import Warehouse

DAY = date(2026, 3, 1)
ONE_DAY = Window(DAY, DAY)
COLUMNS = [
    {"name": "event_id", "path": "event_id", "nullable": False},
    {"name": "event_ts", "path": "ts", "type": "timestamp", "nullable": False},
    {"name": "user_id", "path": "user.id", "nullable": False},
    {"name": "user_email", "path": "user.email"},
    {"name": "clicks", "path": "metrics.clicks", "type": "integer"},
    {"name": "share", "path": "metrics.share", "type": "double"},
    {"name": "beta", "path": "flags.beta", "type": "boolean"},
    {"name": "props", "path": "props"},
]


def make_config(tmp_path: Path) -> FabricConfig:
    return parse_config(
        {
            "project": "test",
            "warehouse": {"path": "warehouse.duckdb"},
            "partitions": {"start_date": "2026-01-01"},
            "sources": {
                "web": {
                    "kind": "jsonl",
                    "root": "web",
                    "entities": {
                        "events": {"pattern": "events_{date:%Y%m%d}.jsonl", "columns": COLUMNS}
                    },
                }
            },
        },
        tmp_path,
    )


def write(tmp_path: Path, day: date, content: bytes) -> Path:
    path = tmp_path / "web" / f"events_{day:%Y%m%d}.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    return path


def event(n: int, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": f"e{n}",
        "ts": "2026-03-01T10:00:00Z",
        "user": {"id": f"u{n}", "email": f"u{n}@example.com"},
        "metrics": {"clicks": n, "share": 0.5},
        "flags": {"beta": True},
        "props": {"page": "/plans", "tags": ["a", "b"]},
    }
    return base | changes


def line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


def ingest(config: FabricConfig, window: Window = ONE_DAY) -> list[Any]:
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    return ingest_entity(config, "web", "events", window, "run-1", warehouse)


def rows(config: FabricConfig, sql: str) -> list[tuple[Any, ...]]:
    with Warehouse(config.resolve(config.warehouse.path)).connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def test_nested_paths_are_flattened_and_typed(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    path = write(
        tmp_path,
        DAY,
        line(event(1))
        + line(event(2, ts="2026-03-01T12:30:00+02:00", user={"id": 7, "email": None}))
        + line({"event_id": "e3", "ts": "2026-03-01 09:15:00", "user": {"id": "u3"}}),
    )

    [result] = ingest(config)

    assert (result.status, result.rows_read, result.rows_loaded) == ("ok", 3, 3)
    assert rows(
        config,
        "SELECT * EXCLUDE (_fabric_load_id, _fabric_loaded_at, _fabric_partition) "
        "FROM raw.web__events ORDER BY event_id",
    ) == [
        ("e1", datetime(2026, 3, 1, 10), "u1", "u1@example.com", 1, 0.5, True,
         '{"page":"/plans","tags":["a","b"]}', str(path.resolve()), "line 1"),
        ("e2", datetime(2026, 3, 1, 10, 30), "7", None, 2, 0.5, True,
         '{"page":"/plans","tags":["a","b"]}', str(path.resolve()), "line 2"),
        ("e3", datetime(2026, 3, 1, 9, 15), "u3", None, None, None, None, None,
         str(path.resolve()), "line 3"),
    ]  # fmt: skip


def test_every_line_is_loaded_quarantined_or_blank(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    good = line(event(1))
    content = (
        good  # 1
        + good[:25]
        + b"\n"  # 2 truncated: json_parse
        + b"[1, 2]\n"  # 3 not an object: json_parse
        + b'"just text"\n'  # 4 not an object
        + b"\n"  # 5 blank: not a record
        + b"   \t\r\n"  # 6 blank
        + line(event(7, ts="2026-02-31T10:00:00Z"))  # 7 impossible date: type_cast
        + line(event(8, metrics={"clicks": "many"}))  # 8 type_cast
        + line(event(9, metrics={"clicks": 1.5}))  # 9 not an integer: type_cast
        + line(event(10, user={"email": "x@y"}))  # 10 missing user.id: null_value
        + good.replace(b"e1", b"e\x001")  # 11 NUL byte: encoding
        + good.replace(b"/plans", b"/pl\xffans")  # 12 invalid UTF-8: encoding
        + line(event(13)).replace(b"\n", b"\r\n")  # 13 CRLF is fine
        + good[:-1]  # 14 last line without a newline is fine
    )
    path = write(tmp_path, DAY, content)

    [result] = ingest(config)

    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (12, 3, 9)
    assert rows(config, "SELECT _fabric_position FROM raw.web__events ORDER BY 1") == [
        ("line 1",), ("line 13",), ("line 14",)
    ]  # fmt: skip
    quarantined = rows(
        config,
        "SELECT _fabric_position, reason_code, reason, raw_record FROM quarantine.web__events "
        "ORDER BY _fabric_position[6:]::INT",
    )
    assert [(p, code) for p, code, _, _ in quarantined] == [
        ("line 2", "json_parse"),
        ("line 3", "json_parse"),
        ("line 4", "json_parse"),
        ("line 7", "type_cast"),
        ("line 8", "type_cast"),
        ("line 9", "type_cast"),
        ("line 10", "null_value"),
        ("line 11", "encoding"),
        ("line 12", "encoding"),
    ]
    reasons = {p: reason for p, _, reason, _ in quarantined}
    where = f"file {path.resolve()}"
    assert reasons["line 2"] == f"{where} line 2: not valid JSON"
    assert reasons["line 3"] == f"{where} line 3: valid JSON but not an object (ARRAY)"
    assert reasons["line 7"] == (
        f"{where} line 7: field event_ts: '2026-02-31T10:00:00Z' is not a valid timestamp"
    )
    assert reasons["line 10"].endswith("field user_id: missing value (the column is not nullable)")
    assert reasons["line 12"].startswith(f"{where} line 12: byte 0xff is not valid utf-8 at column")
    raw = {p: record for p, _, _, record in quarantined}
    assert raw["line 2"] == good[:25].decode()
    assert "\\x00" in raw["line 11"] and "\\xff" in raw["line 12"]


def test_rerun_gives_identical_tables(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    window = Window(DAY, date(2026, 3, 3))
    for offset, day in enumerate(window):
        write(tmp_path, day, b"".join(line(event(n)) for n in range(offset * 5)) + b"{bad\n")
    query = "SELECT * EXCLUDE (_fabric_load_id, _fabric_loaded_at) FROM {} ORDER BY ALL"
    tables = ("raw.web__events", "quarantine.web__events")

    first = ingest(config, window)
    before = [rows(config, query.format(t)) for t in tables]
    second = ingest(config, window)

    assert [rows(config, query.format(t)) for t in tables] == before
    assert (
        [(r.rows_read, r.rows_loaded, r.rows_quarantined) for r in second]
        == [(r.rows_read, r.rows_loaded, r.rows_quarantined) for r in first]
        == [(1, 0, 1), (6, 5, 1), (11, 10, 1)]
    )


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file_is_ok_and_missing_file_is_recorded(tmp_path: Path, content: bytes) -> None:
    config = make_config(tmp_path)
    write(tmp_path, DAY, content)

    empty, missing = ingest(config, Window(DAY, date(2026, 3, 2)))

    assert (empty.status, empty.rows_read, empty.rows_loaded) == ("ok", 0, 0)
    assert missing.status == "missing" and "events_20260302.jsonl" in missing.message
    assert rows(config, "SELECT status FROM meta.loads ORDER BY partition") == [
        ("ok",),
        ("missing",),
    ]
    assert rows(config, "SELECT count(*) FROM raw.web__events") == [(0,)]


def test_observed_paths_follow_first_appearance_in_document_order() -> None:
    """Keys first seen on the same line keep that line's order (drift reports and `evolve` add
    columns in this order); nested objects are flattened unless their path is declared."""
    import duckdb

    from fabric.config import Column
    from fabric.ingest.jsonl import observed_paths

    con = duckdb.connect()
    docs = [
        {"zeta": 1, "alpha": {"x": 1, "b": 2}, "mid": [1], "props": {"k": 1}},
        {"zeta": 2, "late": {"deep": {"q": True}}, "alpha": "now text", "a/b~c": None},
        "not an object",
    ]
    con.execute("CREATE TABLE lines (_fabric_seq BIGINT, _fabric_code VARCHAR, _fabric_text VARCHAR)")
    for line, doc in enumerate(docs):
        con.execute("INSERT INTO lines VALUES (?, NULL, ?)", [(1 << 32) + line, json.dumps(doc)])
    con.execute("INSERT INTO lines VALUES (0, NULL, ?)", [json.dumps({"only": "file 0"})])
    con.execute("INSERT INTO lines VALUES (?, 'json_parse', '{bad')", [(1 << 32) + 9])
    found = observed_paths(con, "lines", [Column(name="props", path="props")])
    assert found == {
        0: ("only",),
        1: ("zeta", "mid", "props", "a/b~c", "alpha.x", "alpha.b", "late.deep.q"),
    }
