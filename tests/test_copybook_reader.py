"""The reader API: record formats, positions, streaming, segments, Arrow/DuckDB, CLI."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from fabric.copybook import (
    CopybookReader,
    OptionError,
    read_copybook,
    read_copybook_file,
)
from fabric.copybook.cli import app
from fabric.copybook.jsonlines import java_float, json_lines

COPYBOOK = """\
       01  ACCOUNT.
           05  ACCOUNT-ID     PIC X(6).
           05  BALANCE        PIC S9(5)V99 COMP-3.
           05  OPENED         PIC 9(8).
           05  BRANCH         PIC S9(4) COMP.
           05  N-TXN          PIC 9.
           05  TXN OCCURS 3 DEPENDING ON N-TXN.
               10  TXN-AMOUNT PIC S9(3) COMP-3.
"""
RECORD = 6 + 4 + 8 + 2 + 1 + 3 * 2


def packed(value: int, digits: int) -> bytes:
    text = str(abs(value)).rjust(digits + (1 - digits % 2), "0")
    return bytes.fromhex(text + ("D" if value < 0 else "C"))


def account(ident: str, balance: int, opened: int, branch: int, txns: list[int]) -> bytes:
    body = ident.ljust(6).encode("cp037") + packed(balance, 7)
    body += str(opened).rjust(8, "0").encode("cp037") + branch.to_bytes(2, "big", signed=True)
    body += str(len(txns)).encode("cp037")
    slots = [packed(t, 3) for t in txns] + [b"\x00\x0c"] * (3 - len(txns))
    return body + b"".join(slots)


RECORDS = [
    account("A1", 12345, 20240101, 7, [100, -5]),
    account("B22", -99, 20231231, -1, []),
    account("C333", 0, 19991231, 32767, [1, 2, 3]),
]


@pytest.fixture
def fixed_file(tmp_path: Path) -> Path:
    path = tmp_path / "accounts.dat"
    path.write_bytes(b"".join(RECORDS))
    return path


def rdw(payload: bytes, big_endian: bool) -> bytes:
    if big_endian:
        return len(payload).to_bytes(2, "big") + b"\x00\x00" + payload
    return b"\x00\x00" + len(payload).to_bytes(2, "little") + payload


def test_fixed_length_values_flattened_with_lists(fixed_file: Path):
    table = read_copybook_file(COPYBOOK, fixed_file, {})
    assert table.column_names == [
        "ACCOUNT_ID", "BALANCE", "OPENED", "BRANCH", "N_TXN", "TXN",
    ]  # fmt: skip
    assert table.schema.field("BALANCE").type == pa.decimal128(7, 2)
    assert table.schema.field("TXN").type == pa.list_(pa.struct([("TXN_AMOUNT", pa.int32())]))
    rows = table.to_pylist()
    assert rows[0]["BALANCE"] == Decimal("123.45")
    assert rows[1]["BALANCE"] == Decimal("-0.99")
    assert rows[0]["TXN"] == [{"TXN_AMOUNT": 100}, {"TXN_AMOUNT": -5}]
    assert rows[1]["TXN"] == []
    assert [r["BRANCH"] for r in rows] == [7, -1, 32767]


def test_positions_and_nested_output(fixed_file: Path):
    result = read_copybook(COPYBOOK, fixed_file, {"schema_retention_policy": "keep_original"},
                           flatten=False)  # fmt: skip
    assert result.table.column_names == ["ACCOUNT"]
    assert result.positions.to_pydict() == {
        "file_id": [0, 0, 0],
        "record_number": [0, 1, 2],
        "record_offset": [0, RECORD, 2 * RECORD],
        "record_length": [RECORD] * 3,
    }
    assert result.files == [str(fixed_file)]
    assert result.issues.num_rows == 0


def test_generated_columns_and_copybook_from_a_path(fixed_file: Path, tmp_path: Path):
    copybook = tmp_path / "account.cpy"
    copybook.write_text(COPYBOOK)
    table = read_copybook_file(copybook, fixed_file, {"generate_record_id": "true"})
    assert table.column_names[:3] == ["File_Id", "Record_Id", "Record_Byte_Length"]
    assert table["Record_Id"].to_pylist() == [0, 1, 2]


def test_record_and_file_offsets(tmp_path: Path):
    path = tmp_path / "framed.dat"
    body = b"".join(b"<<" + r + b">>>" for r in RECORDS)
    path.write_bytes(b"HEADER" + body + b"TRAILER!")
    options = {
        "file_start_offset": "6",
        "file_end_offset": "8",
        "record_start_offset": "2",
        "record_end_offset": "3",
    }
    result = read_copybook(COPYBOOK, path, options)
    assert result.table["ACCOUNT_ID"].to_pylist() == ["A1", "B22", "C333"]
    assert result.positions["record_offset"].to_pylist() == [8, 8 + RECORD + 5, 8 + 2 * (RECORD + 5)]
    longer = tmp_path / "longer.dat"
    longer.write_bytes(b"".join(r + b"  " for r in RECORDS))
    table = read_copybook_file(COPYBOOK, longer, {"record_length": str(RECORD + 2)})
    assert table["OPENED"].to_pylist() == [20240101, 20231231, 19991231]


@pytest.mark.parametrize("big_endian", [False, True])
def test_rdw_records(tmp_path: Path, big_endian: bool):
    path = tmp_path / "rdw.dat"
    short = RECORDS[1][:12]  # ends inside OPENED
    path.write_bytes(b"".join(rdw(p, big_endian) for p in (RECORDS[0], short, RECORDS[2])))
    options = {"record_format": "V", "is_rdw_big_endian": str(big_endian).lower()}
    result = read_copybook(COPYBOOK, path, options)
    rows = result.table.to_pylist()
    assert [r["ACCOUNT_ID"] for r in rows] == ["A1", "B22", "C333"]
    assert rows[1]["BALANCE"] == Decimal("-0.99")
    assert rows[1]["OPENED"] is None and rows[1]["TXN"] == []
    assert result.positions["record_length"].to_pylist() == [RECORD, 12, RECORD]
    assert result.positions["record_offset"].to_pylist() == [4, RECORD + 8, RECORD + 24]


def test_rdw_adjustment_and_length_including_header(tmp_path: Path):
    path = tmp_path / "rdw.dat"
    path.write_bytes(b"".join((len(r) + 4).to_bytes(2, "big") + b"\0\0" + r for r in RECORDS))
    for options in ({"rdw_adjustment": "-4"}, {"is_rdw_part_of_record_length": "true"}):
        table = read_copybook_file(
            COPYBOOK, path, {"record_format": "V", "is_rdw_big_endian": "true", **options}
        )
        assert table["ACCOUNT_ID"].to_pylist() == ["A1", "B22", "C333"]


def test_text_records(tmp_path: Path):
    copybook = "       01  LINE.\n           05  CODE PIC X(3).\n           05  QTY PIC 9(4).\n"
    path = tmp_path / "lines.txt"
    path.write_bytes(b"ABC0012\r\nDE 0345\nXY\n\nZZZ9999")
    table = read_copybook_file(copybook, path, {"record_format": "D", "encoding": "ascii"})
    assert table.to_pylist() == [
        {"CODE": "ABC", "QTY": 12},
        {"CODE": "DE", "QTY": 345},
        {"CODE": "XY", "QTY": None},
        {"CODE": "ZZZ", "QTY": 9999},
    ]


NESTED = """\
       01  R.
           05  N       PIC 9.
           05  G OCCURS 0 TO 2 TIMES DEPENDING ON N.
               10  M   PIC 9.
               10  V   PIC X OCCURS 0 TO 3 TIMES DEPENDING ON M.
           05  END-MARK PIC X.
"""


def test_variable_size_occurs_fixed_and_rdw(tmp_path: Path):
    records = [b"0*", b"12AB*", b"21A3BCD*"]
    fixed = tmp_path / "vso.dat"
    fixed.write_bytes(b"".join(records))
    options = {"encoding": "ascii", "variable_size_occurs": "true"}
    expected = [
        {"N": 0, "G": [], "END_MARK": "*"},
        {"N": 1, "G": [{"M": 2, "V": ["A", "B"]}], "END_MARK": "*"},
        {"N": 2, "G": [{"M": 1, "V": ["A"]}, {"M": 3, "V": ["B", "C", "D"]}], "END_MARK": "*"},
    ]
    result = read_copybook(NESTED, fixed, options)
    assert result.table.to_pylist() == expected
    assert result.positions["record_length"].to_pylist() == [2, 5, 8]
    variable = tmp_path / "vso_rdw.dat"
    variable.write_bytes(b"".join(rdw(r, big_endian=True) for r in records))
    rdw_options = {**options, "record_format": "V", "is_rdw_big_endian": "true"}
    assert read_copybook_file(NESTED, variable, rdw_options).to_pylist() == expected


def test_streaming_batches_match_a_whole_read(tmp_path: Path):
    path = tmp_path / "many.dat"
    path.write_bytes(b"".join(RECORDS) * 40)
    reader = CopybookReader(COPYBOOK, {"generate_record_id": "true"}, chunk_bytes=10 * RECORD)
    batches = list(reader.iter_batches(path))
    assert len(batches) == 12
    streamed = pa.concat_tables([b.table for b in batches])
    assert streamed.equals(reader.read(path).table)
    assert streamed["Record_Id"].to_pylist() == list(range(120))


def test_several_files_and_compressed_input(tmp_path: Path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.dat").write_bytes(RECORDS[0])
    (folder / "b.dat.gz").write_bytes(gzip.compress(RECORDS[1] + RECORDS[2]))
    table = read_copybook_file(COPYBOOK, folder, {"generate_record_id": "true"})
    assert table["File_Id"].to_pylist() == [0, 1, 1]
    assert table["Record_Id"].to_pylist() == [0, 0, 1]
    assert table["ACCOUNT_ID"].to_pylist() == ["A1", "B22", "C333"]


SEGMENTS = """\
       01  ENTITY.
           05  SEG-ID    PIC X.
           05  COMPANY.
               10  NAME  PIC X(5).
           05  PERSON REDEFINES COMPANY.
               10  AGE   PIC 9(3).
               10  FILL  PIC XX.
"""


def test_segments_filter_redefines_and_ids(tmp_path: Path):
    path = tmp_path / "segments.dat"
    path.write_bytes(b"".join(t.encode("cp037") for t in ("CACME ", "P042  ", "P017  ", "CZED  ")))
    mapped = {
        "segment_field": "SEG-ID",
        "redefine_segment_id_map:1": "COMPANY => C",
        "redefine-segment-id-map:2": "PERSON => P",
    }
    rows = read_copybook_file(SEGMENTS, path, mapped, flatten=False).to_pylist()
    assert rows[0] == {"SEG_ID": "C", "COMPANY": {"NAME": "ACME"}, "PERSON": None}
    assert rows[1] == {"SEG_ID": "P", "COMPANY": None, "PERSON": {"AGE": 42, "FILL": ""}}
    filtered = read_copybook(SEGMENTS, path, {"segment_field": "SEG-ID", "segment_filter": "P"})
    assert filtered.table["PERSON_AGE"].to_pylist() == [42, 17]
    assert filtered.positions["record_number"].to_pylist() == [1, 2]
    ids = {"segment_field": "SEG-ID", "segment_id_level0": "C", "segment_id_level1": "P",
           "segment_id_prefix": "X", "generate_record_id": "true"}  # fmt: skip
    table = read_copybook_file(SEGMENTS, path, ids)
    assert table["Seg_Id0"].to_pylist() == ["X_0_0", "X_0_0", "X_0_0", "X_0_3"]
    assert table["Seg_Id1"].to_pylist() == [None, "X_0_0_L1_1", "X_0_0_L1_2", None]
    children = {**mapped, "segment-children:1": "COMPANY => PERSON"}
    nested = read_copybook_file(SEGMENTS, path, children, flatten=False).to_pylist()
    assert nested[0]["COMPANY"]["PERSON"] == [{"AGE": 42, "FILL": ""}, {"AGE": 17, "FILL": ""}]
    assert nested[1]["COMPANY"] == {"NAME": "ZED", "PERSON": []}


def test_debug_columns(fixed_file: Path):
    table = read_copybook_file(COPYBOOK, fixed_file, {"debug": "true"})
    assert table["BRANCH_debug"].to_pylist() == ["0007", "FFFF", "7FFF"]
    raw = read_copybook_file(COPYBOOK, fixed_file, {"debug": "raw"})
    assert raw["BRANCH_debug"].to_pylist()[0] == b"\x00\x07"


def test_unknown_and_invalid_options(fixed_file: Path):
    with pytest.raises(OptionError, match="unknown copybook reader option 'colour'"):
        read_copybook_file(COPYBOOK, fixed_file, {"colour": "blue"})
    with pytest.raises(OptionError, match="record_format='Q'"):
        read_copybook_file(COPYBOOK, fixed_file, {"record_format": "Q"})
    with pytest.raises(OptionError, match="expected true or false"):
        read_copybook_file(COPYBOOK, fixed_file, {"generate_record_id": "yes"})
    read_copybook_file(COPYBOOK, fixed_file, {"input_split_records": "10"})  # Spark-only: ignored


def test_duckdb_ingestion_through_arrow(fixed_file: Path):
    table = read_copybook_file(COPYBOOK, fixed_file, {})
    connection = duckdb.connect()
    connection.register("accounts", table)
    result = connection.execute("SELECT sum(BALANCE), sum(len(TXN)) FROM accounts").fetchone()
    assert result is not None
    total, txns = result
    assert total == Decimal("122.46")
    assert txns == 5


def test_json_lines_follow_spark():
    table = pa.table(
        {
            "s": pa.array(['a\n"\u0001é', None]),
            "d": pa.array([Decimal("30.50"), Decimal("0.00")], pa.decimal128(5, 2)),
            "f": pa.array([-30503.93, 1e-5], pa.float32()),
            "g": pa.array([{"x": None}, {"x": 1}], pa.struct([("x", pa.int32())])),
            "l": pa.array([[], [1]], pa.list_(pa.int64())),
        }
    )
    lines = list(json_lines(table))
    assert lines[0] == '{"s":"a\\n\\"\\u0001é","d":30.50,"f":-30503.93,"g":{},"l":[]}'
    assert lines[1] == '{"d":0.00,"f":1.0E-5,"g":{"x":1},"l":[1]}'
    assert java_float(-3050393257.6762, single=False) == "-3.0503932576762E9"
    assert java_float(1234567.0, single=False) == "1234567.0"


def test_cli_prints_json_lines(fixed_file: Path, tmp_path: Path):
    copybook = tmp_path / "account.cpy"
    copybook.write_text(COPYBOOK)
    runner = CliRunner()
    result = runner.invoke(app, ["read", str(copybook), str(fixed_file), "-o", "debug=false"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["ACCOUNT_ID"] == "A1"
    assert lines[1]["TXN"] == []
    bad = runner.invoke(app, ["read", str(copybook), str(fixed_file), "-o", "nope=1"])
    assert bad.exit_code == 2
    assert "unknown copybook reader option 'nope'" in bad.output
    malformed = runner.invoke(app, ["read", str(copybook), str(fixed_file), "-o", "novalue"])
    assert malformed.exit_code == 2
