"""CSV ingest: cp1252, CRLF, quoted multi-line values, malformed records, reruns, missing files."""

from __future__ import annotations

import csv
import io
import logging
import random
import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from fabric.config import FabricConfig, parse_config
from fabric.errors import ConfigError, SourceError
from fabric.ingest import csv as csv_reader
from fabric.ingest import ingest_entity
from fabric.ingest.csv import CsvStage
from fabric.ingest.files import DayFile, day_files
from fabric.partitions import Window
from fabric.warehouse import Warehouse

DAY = date(2026, 3, 1)
ONE_DAY = Window(DAY, DAY)
COLUMNS: list[dict[str, Any]] = [
    {"name": "id", "type": "integer", "nullable": False},
    {"name": "name"},
    {"name": "amount", "type": "decimal", "precision": 10, "scale": 2},
    {"name": "opened_at", "type": "timestamp", "format": "%Y-%m-%d %H:%M:%S"},
    {"name": "day", "type": "date", "format": "%Y-%m-%d"},
    {"name": "flag", "type": "boolean"},
    {"name": "note"},
]
HEADER = "id,name,amount,opened_at,day,flag,note\r\n"


def make_config(
    tmp_path: Path, columns: list[dict[str, Any]] = COLUMNS, pattern: str = "t_{date:%Y%m%d}.csv"
) -> FabricConfig:
    source = {
        "kind": "csv",
        "root": "desk",
        "encoding": "cp1252",
        "null_markers": ["", "NULL"],
        "entities": {"tickets": {"pattern": pattern, "columns": columns}},
    }
    return parse_config(
        {
            "project": "test",
            "warehouse": {"path": "warehouse.duckdb"},
            "partitions": {"start_date": "2026-01-01"},
            "sources": {"desk": source},
        },
        tmp_path,
    )


def write(tmp_path: Path, day: date, content: bytes) -> Path:
    path = tmp_path / "desk" / f"t_{day:%Y%m%d}.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    return path


def ingest(config: FabricConfig, window: Window = ONE_DAY) -> list[Any]:
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    return ingest_entity(config, "desk", "tickets", window, "run-1", warehouse)


def rows(config: FabricConfig, sql: str) -> list[tuple[Any, ...]]:
    with Warehouse(config.resolve(config.warehouse.path)).connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def test_typed_rows_with_quoted_multiline_values_and_positions(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    text = (
        HEADER
        + '1,Jörg,12.50,2026-03-01 10:00:00,2026-03-01,true,"multi\r\nline ""quoted"" €"\r\n'
        + '2,"Smith, Anna",-3,2026-03-01 11:00:00,2026-02-28,false,NULL\r\n'
        + "3,,,,,,\r\n"
    )
    path = write(tmp_path, DAY, text.encode("cp1252"))

    [result] = ingest(config)

    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (3, 3, 0)
    assert result.status == "ok" and result.source_path == str(path.resolve())
    assert rows(
        config,
        "SELECT * EXCLUDE (_fabric_load_id, _fabric_loaded_at) FROM raw.desk__tickets ORDER BY id",
    ) == [
        (1, "Jörg", Decimal("12.50"), datetime(2026, 3, 1, 10), date(2026, 3, 1), True,
         'multi\r\nline "quoted" €', DAY, str(path.resolve()), "line 2"),
        (2, "Smith, Anna", Decimal("-3.00"), datetime(2026, 3, 1, 11), date(2026, 2, 28), False,
         None, DAY, str(path.resolve()), "line 4"),
        (3, None, None, None, None, None, None, DAY, str(path.resolve()), "line 5"),
    ]  # fmt: skip
    assert rows(config, "SELECT DISTINCT _fabric_load_id FROM raw.desk__tickets") == [
        (result.load_id,)
    ]
    assert rows(
        config,
        "SELECT source, entity, partition, rows_read, rows_loaded, rows_quarantined, status, "
        "run_id FROM meta.loads",
    ) == [("desk", "tickets", DAY, 3, 3, 0, "ok", "run-1")]


MALFORMED = (
    b"id,at,note\r\n"  # 1
    b"1,2026-03-01 10:00:00,ok\r\n"  # 2 loaded
    b"2,2026-02-31 10:00:00,impossible date\r\n"  # 3 type_cast
    b"x3,2026-03-01 10:00:00,bad number\r\n"  # 4 type_cast
    b"4,2026-03-01 10:00:00,too,many\r\n"  # 5 field_count
    b"5,2026-03-01 10:00:00,caf\x81\r\n"  # 6 encoding (0x81 is not cp1252)
    b"6,2026-03-01 10:00:00,nul\x00byte\r\n"  # 7 encoding
    b",2026-03-01 10:00:00,no id\r\n"  # 8 null_value
    b"\r\n"  # 9 empty line: not a record
    b'8,"2026-03-01 10:00:00","multi\r\nline"\r\n'  # 10-11 loaded
    b"12.5,2026-03-01 10:00:00,not an integer\r\n"  # 12 type_cast
    b"9,2026-03-01 10:00:00"  # 13 truncated last line: field_count
)
MALFORMED_COLUMNS: list[dict[str, Any]] = [
    {"name": "id", "type": "integer", "nullable": False},
    {"name": "at", "type": "timestamp", "format": "%Y-%m-%d %H:%M:%S"},
    {"name": "note"},
]
EXPECTED_QUARANTINE = [
    ("line 3", "type_cast"),
    ("line 4", "type_cast"),
    ("line 5", "field_count"),
    ("line 6", "encoding"),
    ("line 7", "encoding"),
    ("line 8", "null_value"),
    ("line 12", "type_cast"),
    ("line 13", "field_count"),
]


@pytest.mark.parametrize("newline", [b"\r\n", b"\n"])
def test_every_record_is_loaded_or_quarantined(
    tmp_path: Path, newline: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path, MALFORMED_COLUMNS)
    path = write(tmp_path, DAY, MALFORMED.replace(b"\r\n", newline))

    with caplog.at_level(logging.INFO, logger="fabric.ingest"):
        [result] = ingest(config)

    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (10, 2, 8)
    # the steps of a load in the log (and so in a Dagster run's event log): read, checked, committed
    logged = [r.getMessage() for r in caplog.records]
    assert re.fullmatch(r"ingest desk\.tickets: 10 records read from 1 file\(s\) in \d+\.\d s", logged[0])
    assert re.fullmatch(r"ingest desk\.tickets: records checked against the contract and cast in \d+\.\d s",
                        logged[1])  # fmt: skip
    committed = f"ingest desk.tickets {DAY} committed (1 of 1 days): 10 read, 2 loaded, 8 quarantined"
    assert logged[2:] == [committed]
    assert result.status == "warning"
    assert rows(config, "SELECT id, _fabric_position FROM raw.desk__tickets ORDER BY id") == [
        (1, "line 2"),
        (8, "line 10"),
    ]
    quarantined = rows(
        config,
        "SELECT _fabric_position, reason_code, reason, raw_record FROM quarantine.desk__tickets "
        "ORDER BY _fabric_position[6:]::INT",
    )
    assert [(p, code) for p, code, _, _ in quarantined] == EXPECTED_QUARANTINE
    reasons = {p: reason for p, _, reason, _ in quarantined}
    where = f"file {path.resolve()}"
    assert reasons["line 3"] == (
        f"{where} line 3: field at: '2026-02-31 10:00:00' is not a valid timestamp "
        "in format %Y-%m-%d %H:%M:%S"
    )
    assert reasons["line 5"] == f"{where} line 5: expected 3 fields, got 4"
    assert reasons["line 6"] == f"{where} line 6: byte 0x81 is not valid cp1252 at column 26"
    assert reasons["line 7"] == f"{where} line 7: NUL byte at column 26"
    assert (
        reasons["line 8"] == f"{where} line 8: field id: missing value (the column is not nullable)"
    )
    assert reasons["line 13"] == f"{where} line 13: expected 3 fields, got 2"
    raw = {p: record for p, _, _, record in quarantined}
    assert raw["line 4"] == "x3,2026-03-01 10:00:00,bad number"
    assert raw["line 6"] == "5,2026-03-01 10:00:00,caf\\x81"
    assert raw["line 13"] == "9,2026-03-01 10:00:00"
    assert "line 3: field at" in result.message and "(and 5 more)" in result.message


def test_mixed_line_ends_and_stray_quotes_fall_back_to_exact_parsing(tmp_path: Path) -> None:
    config = make_config(tmp_path, MALFORMED_COLUMNS)
    write(
        tmp_path,
        DAY,
        b"id,at,note\n"
        b"1,2026-03-01 10:00:00,lf\n"
        b"2,2026-03-01 10:00:00,crlf\r\n"
        b'3,2026-03-01 10:00:00,"closed"early\n'  # 4 quoting
        b'4,2026-03-01 10:00:00,"two\r\nlines"\n',
    )

    [result] = ingest(config)

    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (4, 3, 1)
    assert rows(config, "SELECT id, note, _fabric_position FROM raw.desk__tickets ORDER BY id") == [
        (1, "lf", "line 2"),
        (2, "crlf", "line 3"),
        (4, "two\r\nlines", "line 5"),
    ]
    assert rows(config, "SELECT _fabric_position, reason_code FROM quarantine.desk__tickets") == [
        ("line 4", "quoting")
    ]


def _random_field(rng: random.Random) -> str:
    return rng.choice(
        ["plain", "", "NULL", " spaced ", "a,b", 'say "hi"', "x\ny", "x\r\ny", "é€\u2019", '"', ","]
    )


def _render(value: str) -> str:
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _random_file(rng: random.Random) -> bytes:
    newline = rng.choice(["\r\n", "\n"])
    lines = ["a,b,c"]
    for _ in range(rng.randrange(0, 40)):
        roll = rng.random()
        if roll < 0.05:
            lines.append("")
            continue
        width = 3 if roll < 0.8 else rng.choice([1, 2, 4, 5])
        lines.append(",".join(_render(_random_field(rng)) for _ in range(width)))
    text = newline.join(lines) + (newline if rng.random() < 0.7 else "")
    data = text.encode("cp1252")
    if rng.random() < 0.2 and len(data) > 10:
        cut = rng.randrange(8, len(data))  # after the header
        data = data[:cut] + b"\x81" + data[cut:]
    return data


def test_duckdb_reader_and_exact_parser_agree_on_random_files(tmp_path: Path) -> None:
    """DuckDB's read_csv path must stage exactly what the record-by-record parser stages."""
    rng = random.Random(7)
    columns = [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    config = make_config(tmp_path, columns)
    window = Window(date(2026, 1, 1), date(2026, 1, 30))
    for day in window:
        write(tmp_path, day, _random_file(rng))
    source = config.sources["desk"]
    files = day_files(config, source.root, source.entities["tickets"].pattern, window)  # type: ignore[union-attr]
    staged = []
    for python_only in (False, True):
        con = duckdb.connect()
        work = tmp_path / f"work{python_only}"
        work.mkdir()
        stage = CsvStage(con, source, source.entities["tickets"], "sources.desk", work)  # type: ignore[arg-type]
        stage.stage(files, "staged", python_only=python_only)
        staged.append(con.execute("SELECT * FROM staged ORDER BY _fabric_seq").fetchall())
        if not python_only:
            fallbacks = stage.parsed_in_python
    assert staged[0] == staged[1]
    assert len(staged[0]) > 300
    codes = {row[5] for row in staged[0]}
    assert {"field_count", "encoding", None} <= codes
    # DuckDB's reader did the files; it refuses one whose stray quote meets a bare LF in a
    # CRLF file (its state machine errors), which the exact parser then reads.
    assert len(fallbacks) <= 2


def test_small_scan_chunks_and_batches_give_the_same_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records split over many scan chunks (stored as many parts), rows checked and records
    parsed in small batches: the same tables as with one chunk per file."""
    window = Window(date(2026, 1, 1), date(2026, 1, 12))
    query = "SELECT * EXCLUDE (_fabric_load_id, _fabric_loaded_at) FROM {} ORDER BY ALL"
    config = make_config(tmp_path, [{"name": "a"}, {"name": "b"}, {"name": "c"}])
    for day in window:
        malformed = MALFORMED.replace(b"id,at,note", b"a,b,c")
        write(tmp_path, day, _random_file(random.Random(day.day)) if day.day > 1 else malformed)
    source = config.sources["desk"]
    files = day_files(config, source.root, source.entities["tickets"].pattern, window)  # type: ignore[union-attr]
    tables, parts = [], []
    for chunk, batch in ((16 << 20, 1 << 20), (37, 3)):
        monkeypatch.setattr(csv_reader, "_CHUNK_BYTES", chunk)
        monkeypatch.setattr(csv_reader, "_BATCH_ROWS", batch)
        monkeypatch.setattr(csv_reader, "_INSERT_ROWS", batch)
        config.resolve(config.warehouse.path).unlink(missing_ok=True)
        results = ingest(config, window)
        tables.append(
            [[(r.rows_read, r.rows_loaded, r.rows_quarantined) for r in results]]
            + [rows(config, query.format(t)) for t in ("raw.desk__tickets", "quarantine.desk__tickets")]
        )
        work = tmp_path / f"work{chunk}"
        work.mkdir()
        stage = CsvStage(duckdb.connect(), source, source.entities["tickets"], "sources.desk", work)  # type: ignore[arg-type]
        stage.scan(files)
        parts.append(max(len(records.parts) for records in stage.records.values()))
    assert tables[0] == tables[1]
    assert sum(read for read, _, _ in tables[0][0]) > 150 and len(tables[0][2]) > 10


def test_rerun_gives_identical_tables(tmp_path: Path) -> None:
    config = make_config(tmp_path, MALFORMED_COLUMNS)
    window = Window(DAY, date(2026, 3, 2))
    write(tmp_path, DAY, MALFORMED)
    write(tmp_path, date(2026, 3, 2), MALFORMED.replace(b"\r\n", b"\n"))
    query = "SELECT * EXCLUDE (_fabric_load_id, _fabric_loaded_at) FROM {} ORDER BY ALL"

    first = ingest(config, window)
    before = [
        rows(config, query.format(t)) for t in ("raw.desk__tickets", "quarantine.desk__tickets")
    ]
    second = ingest(config, window)
    after = [
        rows(config, query.format(t)) for t in ("raw.desk__tickets", "quarantine.desk__tickets")
    ]

    assert before == after
    assert [r.rows_loaded for r in first] == [r.rows_loaded for r in second] == [2, 2]
    assert {r.load_id for r in first}.isdisjoint({r.load_id for r in second})
    assert rows(
        config, "SELECT DISTINCT _fabric_load_id FROM raw.desk__tickets ORDER BY 1"
    ) == sorted((r.load_id,) for r in second)
    assert rows(config, "SELECT count(*) FROM meta.loads") == [(4,)]


def test_missing_file_clears_the_partition_and_the_run_goes_on(tmp_path: Path) -> None:
    config = make_config(tmp_path, MALFORMED_COLUMNS)
    window = Window(DAY, date(2026, 3, 2))
    first = write(tmp_path, DAY, MALFORMED)
    write(tmp_path, date(2026, 3, 2), MALFORMED)
    ingest(config, window)
    first.unlink()

    missing, present = ingest(config, window)

    assert missing.status == "missing"
    assert (missing.rows_read, missing.rows_loaded, missing.rows_quarantined) == (0, 0, 0)
    assert missing.message == f"no file for 2026-03-01: expected {first.resolve()}"
    assert present.status == "warning" and present.rows_loaded == 2
    for table in ("raw.desk__tickets", "quarantine.desk__tickets"):
        assert rows(config, f"SELECT DISTINCT _fabric_partition FROM {table}") == [
            (date(2026, 3, 2),)
        ]
    assert rows(
        config,
        "SELECT status, source_path FROM meta.loads WHERE partition = '2026-03-01' "
        "ORDER BY finished_at DESC LIMIT 1",
    ) == [("missing", str(first.resolve()))]


@pytest.mark.parametrize("content", [b"", HEADER.encode(), HEADER.encode() + b"\r\n\r\n"])
def test_empty_and_header_only_files_load_nothing(tmp_path: Path, content: bytes) -> None:
    config = make_config(tmp_path)
    write(tmp_path, DAY, content)

    [result] = ingest(config)

    assert (result.status, result.rows_read, result.rows_loaded, result.rows_quarantined) == (
        "ok",
        0,
        0,
        0,
    )
    assert rows(config, "SELECT count(*) FROM raw.desk__tickets") == [(0,)]


def test_a_header_that_does_not_match_the_declaration_is_refused(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    path = write(tmp_path, DAY, b"id,title\r\n1,x\r\n")

    with pytest.raises(SourceError, match=f"{path.resolve()}.*header names columns"):
        ingest(config)


def test_a_pattern_that_leaves_the_source_root_is_refused(tmp_path: Path) -> None:
    config = make_config(tmp_path, pattern="{date:..}/secret.csv")

    with pytest.raises(ConfigError, match=r"renders to .*secret\.csv, outside the source root"):
        ingest(config)


def test_quoting_per_record_is_what_the_values_do_not_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan's quoting count (quote characters that are syntax) is exactly the record's
    bytes minus its delimiters and the bytes of the values Python's csv module reads from it,
    for doubled quotes, quoted delimiters and line breaks, empty quoted values, in small chunks
    (records split between chunks)."""
    rng = random.Random(11)
    values = ["plain", "", '""', 'say "hi"', '"', '""""', "a,b", "x\ny", "x\r\ny", "é€"]
    lines = [",".join(_render(rng.choice(values)) for _ in range(3)) for _ in range(400)]
    path = tmp_path / "quoting.csv"
    path.write_bytes("\n".join(lines).encode())
    dialect = csv_reader.Dialect("utf-8", ",", '"', header=False, null_markers=())
    for chunk in (1 << 20, 29):
        monkeypatch.setattr(csv_reader, "_CHUNK_BYTES", chunk)
        records = csv_reader.scan_records(DayFile(DAY, path, 0), dialect, tmp_path / "copy.csv")
        assert len(records) == len(lines) and records.read_path == path
        found = records.take(range(len(lines)))
        for index, text in enumerate(records.texts(range(len(lines)))):
            [parsed] = list(csv.reader(io.StringIO(text, newline="")))
            value_bytes = sum(len(v.encode()) for v in parsed)
            size = int(found.ends[index] - found.starts[index])
            assert int(found.quoting[index]) == size - 2 - value_bytes, text


def test_a_row_duckdb_accepts_with_a_trailing_empty_field_is_quarantined(tmp_path: Path) -> None:
    """duckdb 1.5.5 reads `4,5,6,` as three values (the empty fourth dropped) without a reject:
    the row's values hold a byte less than the record, so it is parsed here and quarantined."""
    config = make_config(tmp_path, [{"name": "a"}, {"name": "b"}, {"name": "c"}])
    write(tmp_path, ONE_DAY.start, b'a,b,c\n1,2,3\n4,5,6,\n7,"8,""x""",9\n')
    [result] = ingest(config)
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (3, 2, 1)
    assert rows(config, "SELECT _fabric_position, reason_code FROM quarantine.desk__tickets") == [
        ("line 3", "field_count")
    ]
    assert rows(config, "SELECT b FROM raw.desk__tickets ORDER BY a") == [("2",), ('8,"x"',)]
