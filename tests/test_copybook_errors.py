"""Bad input: every problem is reported with where it is, quarantined or refused; nothing
is silently dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric.copybook import (
    CopybookSyntaxError,
    DecodeError,
    FramingError,
    UnknownCodePageError,
    read_copybook,
    read_copybook_file,
)

COPYBOOK = """\
       01  REC.
           05  ID      PIC X(4).
           05  AMOUNT  PIC S9(5)V99 COMP-3.
           05  DAY     PIC 9(8).
"""
RECORD = 4 + 4 + 8


def record(ident: str, amount_hex: str, day: str) -> bytes:
    return ident.encode("cp037") + bytes.fromhex(amount_hex) + day.encode("cp037")


GOOD = [record("A001", "0012345C", "20240101"), record("A003", "0000001D", "20240103")]


def write(tmp_path: Path, data: bytes, name: str = "data.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_invalid_packed_nibble_is_reported_and_the_rest_decodes(tmp_path: Path):
    bad = record("A002", "00A2345C", "20240102")
    path = write(tmp_path, GOOD[0] + bad + GOOD[1])
    result = read_copybook(COPYBOOK, path, {})
    assert result.table["ID"].to_pylist() == ["A001", "A002", "A003"]
    assert result.table["AMOUNT"].to_pylist()[1] is None
    assert result.table["DAY"].to_pylist()[1] == 20240102
    [issue] = result.issues.to_pylist()
    assert issue["kind"] == "decode"
    assert issue["field"] == "REC.AMOUNT"
    assert issue["record_number"] == 1
    assert issue["record_offset"] == RECORD
    assert issue["offset"] == RECORD + 4
    assert issue["data_hex"] == "00A2345C"
    assert issue["record_hex"] == bad.hex().upper()
    assert "packed decimal" in issue["reason"]
    assert issue["quarantined"] is False


def test_invalid_zoned_digit_quarantines_the_record(tmp_path: Path):
    bad = record("A002", "0012345C", "2024O102")  # letter O instead of zero
    path = write(tmp_path, GOOD[0] + bad + GOOD[1])
    result = read_copybook(COPYBOOK, path, {"on_decode_error": "quarantine"})
    assert result.table["ID"].to_pylist() == ["A001", "A003"]
    assert result.positions["record_number"].to_pylist() == [0, 2]
    [issue] = result.issues.to_pylist()
    assert issue["field"] == "REC.DAY"
    assert issue["offset"] == RECORD + 8
    assert issue["data_hex"] == "F2F0F2F4D6F1F0F2"
    assert "zoned decimal" in issue["reason"]
    assert issue["quarantined"] is True
    quarantined = {i["record_number"] for i in result.issues.to_pylist() if i["quarantined"]}
    assert result.table.num_rows + len(quarantined) == 3  # rows read = loaded + quarantined


def test_decode_error_can_refuse_the_file(tmp_path: Path):
    path = write(tmp_path, GOOD[0] + record("A002", "0012345A", "20240102"))
    table = read_copybook_file(COPYBOOK, path, {})  # sign nibble A is a valid positive sign
    assert table.num_rows == 2
    path = write(tmp_path, GOOD[0] + record("A002", "00123451", "20240102"))
    with pytest.raises(DecodeError, match=r"record 1 \(byte offset 16\), field REC.AMOUNT at "
                       r"byte offset 20: invalid packed decimal.*bytes 00123451"):  # fmt: skip
        read_copybook_file(COPYBOOK, path, {"on_decode_error": "fail"})


def rdw(payload: bytes, length: int | None = None) -> bytes:
    return (len(payload) if length is None else length).to_bytes(2, "big") + b"\0\0" + payload


def test_rdw_longer_than_the_rest_of_the_file(tmp_path: Path):
    path = write(tmp_path, rdw(GOOD[0]) + rdw(GOOD[1], length=500))
    options = {"record_format": "V", "is_rdw_big_endian": "true"}
    with pytest.raises(FramingError, match="byte offset 20: the record header announces 500 "
                       "bytes but only 16 are left") as info:  # fmt: skip
        read_copybook(COPYBOOK, path, options)
    assert info.value.offset == 20
    result = read_copybook(COPYBOOK, path, {**options, "on_framing_error": "quarantine"})
    assert result.table["ID"].to_pylist() == ["A001"]
    [issue] = result.issues.to_pylist()
    assert issue["kind"] == "framing"
    assert issue["offset"] == 20
    assert issue["quarantined"] is True
    assert issue["data_hex"].startswith("01F40000")


def test_truncated_last_record(tmp_path: Path):
    path = write(tmp_path, GOOD[0] + GOOD[1][:-5])
    with pytest.raises(FramingError, match=r"byte offset 16: .*the last 11 bytes are a "
                       r"truncated record") as info:  # fmt: skip
        read_copybook_file(COPYBOOK, path, {})
    assert info.value.path == str(path)
    result = read_copybook(COPYBOOK, path, {"on_framing_error": "quarantine"})
    assert result.table["ID"].to_pylist() == ["A001"]
    assert result.issues["data_hex"].to_pylist() == [GOOD[1][:-5].hex().upper()]
    rdw_path = write(tmp_path, rdw(GOOD[0]) + b"\x00\x10", "short_header.bin")
    with pytest.raises(FramingError, match="2 bytes left at the end, too few for a 4-byte"):
        read_copybook_file(COPYBOOK, rdw_path, {"record_format": "V", "is_rdw_big_endian": "true"})


def test_data_length_not_a_multiple_of_the_record_length(tmp_path: Path):
    path = write(tmp_path, b"".join(GOOD) + GOOD[0])  # 48 bytes
    with pytest.raises(FramingError, match="the data is 48 bytes, not a whole number of "
                       "20-byte records"):  # fmt: skip
        read_copybook_file(COPYBOOK, path, {"record_length": "20"})


def test_copybook_syntax_error_names_line_and_token(tmp_path: Path):
    path = write(tmp_path, b"".join(GOOD))
    broken = COPYBOOK.replace("PIC 9(8).", "PIC 9(8) OCCURS.")
    with pytest.raises(CopybookSyntaxError) as info:
        read_copybook_file(broken, path, {})
    assert (info.value.line, info.value.token) == (4, ".")
    assert "copybook line 4" in str(info.value)
    assert "number of occurrences" in str(info.value)


def test_unknown_code_page(tmp_path: Path):
    path = write(tmp_path, b"".join(GOOD))
    with pytest.raises(UnknownCodePageError, match="unknown EBCDIC code page 'cp4711'"):
        read_copybook_file(COPYBOOK, path, {"ebcdic_code_page": "cp4711"})


def test_depending_on_value_out_of_bounds_is_clamped_and_reported(tmp_path: Path):
    copybook = """\
       01  REC.
           05  N     PIC 9.
           05  ITEM  PIC X OCCURS 0 TO 2 TIMES DEPENDING ON N.
"""
    path = write(tmp_path, "1AB7CD".encode("cp037"))
    result = read_copybook(copybook, path, {})
    assert result.table["ITEM"].to_pylist() == [["A"], ["C", "D"]]
    [issue] = result.issues.to_pylist()
    assert issue["field"] == "REC.N"
    assert issue["record_number"] == 1
    assert issue["offset"] == 3
    assert issue["reason"] == "OCCURS DEPENDING ON value outside 0..2 for ITEM (clamped)"
