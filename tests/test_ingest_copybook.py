"""Copybook (mainframe) ingest: Cobrix corpus files and a generated EBCDIC extract into DuckDB.

The generated extract has an OCCURS DEPENDING ON group, one record with an invalid COMP-3 nibble
and one with an invalid zoned digit: both are quarantined with their bytes, the rest loads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fabric.cli import app
from fabric.config import FabricConfig, parse_config
from fabric.errors import ConfigError, SourceError
from fabric.ingest import LoadResult, ingest_entity
from fabric.partitions import Window
from fabric.warehouse import Warehouse

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "cobrix"
DAY = date(2026, 3, 1)
ONE_DAY = Window(DAY, DAY)

ACCOUNTS = """\
      * Accounts extract: 66-byte EBCDIC (cp037) records.
       01  ACCOUNT.
           05  ACCOUNT-ID        PIC 9(6).
           05  NAME              PIC X(10).
           05  BALANCE           PIC S9(7)V99 COMP-3.
           05  RATE              COMP-2.
           05  TXN-COUNT         PIC 9(1).
           05  TXN OCCURS 0 TO 3 TIMES DEPENDING ON TXN-COUNT.
               10  TXN-DATE      PIC 9(8).
               10  TXN-AMOUNT    PIC S9(5)V99 COMP-3.
"""
RECORD = 66
IBM_HALF = bytes.fromhex("4080000000000000")  # 0.5 as an IBM hexadecimal double
BAD_PACKED = bytes.fromhex("00123A4C5C")  # 'A' is not a decimal digit nibble
BAD_ZONED = bytes.fromhex("F0F07AF0F0F4")  # 0x7A is not a zoned digit


def zoned(value: int, width: int) -> bytes:
    return str(value).zfill(width).encode("cp037")


def packed(value: int, digits: int) -> bytes:
    text = str(abs(value)).zfill(digits) + ("D" if value < 0 else "C")
    return bytes.fromhex(text if len(text) % 2 == 0 else "0" + text)


def account(ident: int, name: str, cents: int, txns: list[tuple[int, int]]) -> bytes:
    data = zoned(ident, 6) + name.ljust(10).encode("cp037") + packed(cents, 9) + IBM_HALF
    data += zoned(len(txns), 1) + b"".join(zoned(d, 8) + packed(a, 7) for d, a in txns)
    data += b"\x40" * (RECORD - len(data))
    assert len(data) == RECORD
    return data


def extract() -> list[bytes]:
    """Five records: 2 has an invalid packed nibble in BALANCE, 4 an invalid zoned ACCOUNT-ID."""
    bad_balance = account(2, "BOB", 1, [(20260301, 100)])
    bad_balance = bad_balance[:16] + BAD_PACKED + bad_balance[21:]
    bad_id = BAD_ZONED + account(4, "DAN", 7, [])[6:]
    return [
        account(1, "ALICE", 12345, [(20260301, 500)]),
        bad_balance,
        account(3, "CAROL", 99, [(20260302, -250), (20260303, 1)]),
        bad_id,
        account(5, "EVE", -100000, [(20260304, 9999999)]),
    ]


def make_config(
    tmp_path: Path,
    copybook: str | Path = ACCOUNTS,
    options: dict[str, Any] | None = None,
    occurs: str = "child_tables",
) -> FabricConfig:
    (tmp_path / "mf").mkdir(exist_ok=True)
    if isinstance(copybook, str):
        (tmp_path / "accounts.cpy").write_text(copybook)
        copybook = tmp_path / "accounts.cpy"
    return parse_config(
        {
            "project": "test",
            "warehouse": {"path": "warehouse.duckdb"},
            "partitions": {"start_date": "2026-01-01"},
            "sources": {
                "mf": {
                    "kind": "copybook",
                    "root": "mf",
                    "copybook": str(copybook),
                    "options": {"ebcdic_code_page": "cp037", **(options or {})},
                    "occurs": occurs,
                    "entities": {"accounts": {"pattern": "ACCT.D{date:%Y%m%d}.DAT"}},
                }
            },
        },
        tmp_path,
    )


def write(tmp_path: Path, data: bytes, day: date = DAY) -> Path:
    path = tmp_path / "mf" / f"ACCT.D{day:%Y%m%d}.DAT"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def ingest(config: FabricConfig, window: Window = ONE_DAY) -> list[LoadResult]:
    return ingest_entity(config, "mf", "accounts", window, "run-1", Warehouse(warehouse(config)))


def warehouse(config: FabricConfig) -> Path:
    return config.resolve(config.warehouse.path)


def rows(config: FabricConfig, sql: str) -> list[tuple[Any, ...]]:
    with Warehouse(warehouse(config)).connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def corpus() -> Path:
    if not CORPUS.is_dir():
        message = f"the Cobrix conformance corpus is not at {CORPUS} (the shared folder next to the repo)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CORPUS / "data"


def test_bad_records_are_quarantined_with_bytes_and_the_rest_loads(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    records = extract()
    path = write(tmp_path, b"".join(records))

    [result] = ingest(config)

    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (5, 3, 2)
    assert result.status == "warning"
    assert rows(config, "SELECT rows_read, rows_loaded, rows_quarantined, status FROM meta.loads") == [
        (5, 3, 2, "warning")
    ]
    loaded = rows(
        config,
        "SELECT account_id, name, balance, rate, txn_count, _fabric_position, _fabric_source, "
        "_fabric_partition FROM raw.mf__accounts ORDER BY account_id",
    )
    assert loaded == [
        (1, "ALICE", Decimal("123.45"), 0.5, 1, "record 1 @ byte 0", str(path), DAY),
        (3, "CAROL", Decimal("0.99"), 0.5, 2, "record 3 @ byte 132", str(path), DAY),
        (5, "EVE", Decimal("-1000.00"), 0.5, 1, "record 5 @ byte 264", str(path), DAY),
    ]
    types = dict(rows(config, "SELECT column_name, data_type FROM duckdb_columns() "
                              "WHERE table_name = 'mf__accounts' AND schema_name = 'raw'"))  # fmt: skip
    assert (types["account_id"], types["balance"], types["rate"]) == ("INTEGER", "DECIMAL(9,2)", "DOUBLE")

    quarantined = rows(
        config,
        "SELECT _fabric_position, reason_code, reason, raw_record FROM quarantine.mf__accounts "
        "ORDER BY _fabric_position",
    )
    assert [q[:2] for q in quarantined] == [
        ("record 2 @ byte 66", "decode"), ("record 4 @ byte 198", "decode")
    ]  # fmt: skip
    packed_reason, zoned_reason = quarantined[0][2], quarantined[1][2]
    assert packed_reason.startswith(f"file {path} record 2 @ byte 66: field ACCOUNT.BALANCE at byte 82: ")
    assert "(bytes 00123A4C5C)" in packed_reason
    assert "field ACCOUNT.ACCOUNT_ID at byte 198: " in zoned_reason and "F0F07AF0F0F4" in zoned_reason
    assert quarantined[0][3] == records[1].hex().upper()
    assert quarantined[1][3] == records[3].hex().upper()


def test_occurs_rows_are_keyed_to_their_records(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    write(tmp_path, b"".join(extract()))
    ingest(config)

    children = rows(
        config,
        "SELECT a.account_id, t._fabric_index, t.txn_date, t.txn_amount "
        "FROM raw.mf__accounts__txn AS t JOIN raw.mf__accounts AS a "
        "USING (_fabric_partition, _fabric_position) ORDER BY 1, 2",
    )
    assert children == [
        (1, 1, 20260301, Decimal("5.00")),
        (3, 1, 20260302, Decimal("-2.50")),
        (3, 2, 20260303, Decimal("0.01")),
        (5, 1, 20260304, Decimal("99999.99")),
    ]  # only the active occurrences, none of the quarantined record 2
    columns = rows(config, "SELECT column_name FROM duckdb_columns() WHERE table_name = 'mf__accounts__txn'")
    assert [c for (c,) in columns] == [
        "txn_date", "txn_amount", "_fabric_index", "_fabric_load_id", "_fabric_partition",
        "_fabric_source", "_fabric_position", "_fabric_loaded_at",
    ]  # fmt: skip
    assert "txn" not in {c for (c,) in rows(config, "SELECT column_name FROM duckdb_columns() "
                                                    "WHERE table_name = 'mf__accounts'")}  # fmt: skip


def test_arrays_mode_keeps_occurs_as_list_columns(tmp_path: Path) -> None:
    config = make_config(tmp_path, occurs="arrays")
    write(tmp_path, b"".join(extract()))
    [result] = ingest(config)

    assert (result.rows_loaded, result.rows_quarantined) == (3, 2)
    assert rows(config, "SELECT account_id, txn FROM raw.mf__accounts ORDER BY account_id") == [
        (1, [{"txn_date": 20260301, "txn_amount": Decimal("5.00")}]),
        (3, [{"txn_date": 20260302, "txn_amount": Decimal("-2.50")},
             {"txn_date": 20260303, "txn_amount": Decimal("0.01")}]),
        (5, [{"txn_date": 20260304, "txn_amount": Decimal("99999.99")}]),
    ]  # fmt: skip
    assert not rows(config, "SELECT * FROM duckdb_tables() WHERE table_name = 'mf__accounts__txn'")


def test_rerun_is_idempotent_and_a_missing_file_clears_its_day(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    second = DAY + timedelta(days=1)
    write(tmp_path, b"".join(extract()))
    path = write(tmp_path, account(6, "FAY", 1, [(20260305, 1), (20260305, 2), (20260305, 3)]), second)
    window = Window(DAY, second)
    counts = """SELECT _fabric_partition, count(*), (SELECT count(*) FROM raw.mf__accounts__txn AS t
                       WHERE t._fabric_partition = a._fabric_partition)
                FROM raw.mf__accounts AS a GROUP BY ALL ORDER BY 1"""

    results = ingest(config, window)
    assert [(r.partition, r.rows_read, r.rows_loaded, r.rows_quarantined) for r in results] == [
        (DAY, 5, 3, 2), (second, 1, 1, 0)
    ]  # fmt: skip
    assert rows(config, counts) == [(DAY, 3, 4), (second, 1, 3)]
    ingest(config, window)
    assert rows(config, counts) == [(DAY, 3, 4), (second, 1, 3)]
    assert rows(config, "SELECT count(*) FROM quarantine.mf__accounts") == [(2,)]
    assert rows(config, "SELECT count(*), count(DISTINCT load_id) FROM meta.loads") == [(4, 4)]

    path.unlink()
    results = ingest(config, window)
    assert [(r.status, r.rows_read) for r in results] == [("warning", 5), ("missing", 0)]
    assert rows(config, counts) == [(DAY, 3, 4)]


def test_decode_error_policies(tmp_path: Path) -> None:
    write(tmp_path, b"".join(extract()))
    config = make_config(tmp_path, options={"on_decode_error": "null"})
    [result] = ingest(config)
    assert (result.rows_loaded, result.rows_quarantined) == (5, 0)
    assert rows(config, "SELECT _fabric_position, account_id, balance FROM raw.mf__accounts "
                        "WHERE balance IS NULL OR account_id IS NULL ORDER BY account_id") == [
        ("record 2 @ byte 66", 2, None), ("record 4 @ byte 198", None, Decimal("0.07"))
    ]  # fmt: skip

    config = make_config(tmp_path, options={"on-decode-error": "fail"})
    failed = r"mf\.accounts: .*ACCT\.D20260301\.DAT: record \d \(byte offset \d+\), field ACCOUNT\.\w+ "
    with pytest.raises(SourceError, match=failed):
        ingest(config)


def rdw_file(records: list[bytes]) -> bytes:
    return b"".join(len(r).to_bytes(2, "big") + b"\0\0" + r for r in records)


def test_framing_errors_fail_or_are_quarantined(tmp_path: Path) -> None:
    good = extract()[0]
    path = write(tmp_path, rdw_file([good, good]) + rdw_file([good])[:20])
    options = {"record_format": "V", "is_rdw_big_endian": True}

    with pytest.raises(SourceError, match=re.escape(f"{path}: at byte offset 140")):
        ingest(make_config(tmp_path, options=options))

    config = make_config(tmp_path, options={**options, "on_framing_error": "quarantine"})
    [result] = ingest(config)
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (3, 2, 1)
    assert rows(config, "SELECT _fabric_position FROM raw.mf__accounts") == [
        ("record 1 @ byte 4",),
        ("record 2 @ byte 74",),
    ]  # offsets of the data, after each RDW
    [(position, code, raw)] = rows(
        config, "SELECT _fabric_position, reason_code, raw_record FROM quarantine.mf__accounts"
    )
    assert (position, code) == ("record 3 @ byte 140", "framing")
    assert raw == rdw_file([good])[:20].hex().upper()


def test_copybook_syntax_error_fails_naming_file_and_line(tmp_path: Path) -> None:
    broken = ACCOUNTS.replace("PIC X(10).", "PIC X(10", 1)
    config = make_config(tmp_path, broken)
    write(tmp_path, b"".join(extract()))
    with pytest.raises(ConfigError, match=r"accounts\.cpy: copybook line 4, column 38, at 'X\(10'"):
        ingest(config)
    assert not warehouse(config).exists()  # refused before anything was opened or written


def test_bad_options_and_code_pages_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sources\.mf\.options: .*unknown copybook reader option 'bogus'"):
        make_config(tmp_path, options={"bogus": "1"})
    with pytest.raises(ConfigError, match=r"sources\.mf\.options: .*copybook key"):
        make_config(tmp_path, options={"copybook_contents": "01 R. 05 X PIC X."})
    config = make_config(tmp_path, options={"ebcdic_code_page": "cp9999"})
    write(tmp_path, b"".join(extract()))
    with pytest.raises(ConfigError, match=r"sources\.mf\.options: .*cp9999"):
        ingest(config)


def test_config_keys_and_option_values(tmp_path: Path) -> None:
    config = make_config(tmp_path, options={"record_length": 66, "is_rdw_big_endian": False})
    source = config.sources["mf"]
    assert source.kind == "copybook"
    assert dict(source.options) == {"ebcdic_code_page": "cp037", "record_length": "66",
                                    "is_rdw_big_endian": "false"}  # fmt: skip
    with pytest.raises(ConfigError, match=r"sources\.mf\.copybook: Field required"):
        parse_config(
            {"project": "t", "partitions": {"start_date": "2026-01-01"},
             "sources": {"mf": {"kind": "copybook", "root": ".", "entities": {"a": {"pattern": "{date}"}}}}},
            tmp_path,
        )  # fmt: skip


def copy_corpus_file(tmp_path: Path, data: Path) -> None:
    (tmp_path / "mf").mkdir(exist_ok=True)
    shutil.copyfile(data, tmp_path / "mf" / f"ACCT.D{DAY:%Y%m%d}.DAT")


def test_corpus_file_with_occurs_depending_on(tmp_path: Path) -> None:
    data = corpus()
    copy_corpus_file(tmp_path, data / "test1_data" / "example.bin")
    config = make_config(tmp_path, data / "test1_copybook.cob", options={"ebcdic_code_page": "common"})
    expected = [json.loads(line) for line in (data / "test1_expected" / "test1.txt").read_text().splitlines()]

    [result] = ingest(config)

    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (10, 10, 0)
    loaded = rows(config, "SELECT id, company_short_name, metadata_number_of_accts FROM raw.mf__accounts "
                          "ORDER BY _fabric_position")  # fmt: skip
    assert sorted(loaded) == sorted(
        (r["ID"], r["COMPANY"]["SHORT_NAME"], r["METADATA"]["NUMBER_OF_ACCTS"]) for r in expected
    )
    accounts = rows(
        config,
        "SELECT p.id, c._fabric_index, c.account_number FROM raw.mf__accounts__account_detail AS c "
        "JOIN raw.mf__accounts AS p USING (_fabric_partition, _fabric_position) ORDER BY 1, 2",
    )
    assert accounts == sorted(
        (r["ID"], i, d["ACCOUNT_NUMBER"])
        for r in expected
        for i, d in enumerate(r["METADATA"]["ACCOUNT"]["ACCOUNT_DETAIL"], start=1)
    )
    assert rows(config, "SELECT _fabric_position FROM raw.mf__accounts LIMIT 2") == [
        ("record 1 @ byte 0",),
        ("record 2 @ byte 2202",),
    ]


def test_corpus_numeric_types_are_exact(tmp_path: Path) -> None:
    data = corpus()
    copy_corpus_file(tmp_path, data / "test6_data" / "INTEGR.TYPES.NOV28.DATA.dat")
    options = {"floating_point_format": "IEEE754", "strict_sign_overpunching": True}
    config = make_config(tmp_path, data / "test6_copybook.cob", options=options)
    expected = (data / "test6_expected" / "test6.txt").read_text().splitlines()
    first = json.loads(expected[0], parse_float=Decimal)

    [result] = ingest(config)

    assert (result.rows_read, result.rows_loaded) == (100, 100)
    types = dict(rows(config, "SELECT column_name, data_type FROM duckdb_columns() "
                              "WHERE table_name = 'mf__accounts'"))  # fmt: skip
    assert types["num_bcd_dec10"] == "DECIMAL(28,10)"
    assert types["num_str_int14"] == "DECIMAL(37,0)"
    assert (types["float_01"], types["double_01"]) == ("FLOAT", "DOUBLE")
    [(dec10, sdec10, int14, double)] = rows(
        config,
        "SELECT num_bcd_dec10, num_sbin_dec10, num_str_int14, double_01 FROM raw.mf__accounts "
        "WHERE _fabric_position = 'record 1 @ byte 0'",
    )
    assert dec10 == first["NUM_BCD_DEC10"] == Decimal("305039325767626768.7078781717")
    assert sdec10 == first["NUM_SBIN_DEC10"]
    assert int14 == first["NUM_STR_INT14"]
    assert Decimal(repr(double)) == first["DOUBLE_01"]


def test_corpus_nested_occurs_become_nested_child_tables(tmp_path: Path) -> None:
    data = corpus()
    copy_corpus_file(tmp_path, data / "test21_data" / "data.dat")
    options = {"encoding": "ascii", "variable_size_occurs": True, "schema_retention_policy": "keep_original"}
    config = make_config(tmp_path, data / "test21_copybook.cob", options=options)

    [result] = ingest(config)

    assert (result.rows_read, result.rows_loaded) == (5, 5)
    assert rows(config, "SELECT record_count FROM raw.mf__accounts ORDER BY _fabric_position") == [
        (0,),
        (1,),
        (1,),
        (2,),
        (2,),
    ]
    inner = rows(
        config,
        "SELECT p._fabric_position, g._fabric_index, g.inner_count, i._fabric_index, i.field "
        "FROM raw.mf__accounts__group__inner_group AS i "
        "JOIN raw.mf__accounts__group AS g ON g._fabric_position = i._fabric_position "
        "AND g._fabric_index = i._fabric_index_1 "
        "JOIN raw.mf__accounts AS p ON p._fabric_position = g._fabric_position ORDER BY 1, 2, 4",
    )
    assert inner == [
        ("record 3 @ byte 3", 1, 2, 1, "A"),
        ("record 3 @ byte 3", 1, 2, 2, "B"),
        ("record 4 @ byte 7", 1, 1, 1, "A"),
        ("record 4 @ byte 7", 2, 2, 1, "B"),
        ("record 4 @ byte 7", 2, 2, 2, "C"),
        ("record 5 @ byte 13", 1, 1, 1, "A"),
        ("record 5 @ byte 13", 2, 1, 1, "B"),
    ]
    assert rows(config, "SELECT count(*) FROM raw.mf__accounts__group") == [(6,)]


def test_cli_reads_a_corpus_file() -> None:
    data = corpus()
    result = CliRunner().invoke(
        app,
        ["copybook", "read", str(data / "test1_copybook.cob"), str(data / "test1_data"), "--limit", "3",
         "-o", "schema_retention_policy=collapse_root"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    expected = (data / "test1_expected" / "test1.txt").read_text().splitlines()[:3]
    assert result.stdout.splitlines() == expected


def test_occurs_of_an_elementary_item_is_a_one_column_child_table(tmp_path: Path) -> None:
    copybook = """\
       01  SCORES.
           05  PLAYER            PIC X(4).
           05  SCORE             PIC 9(2) OCCURS 3 TIMES.
"""
    config = make_config(tmp_path, copybook, options={"encoding": "ascii"})
    write(tmp_path, b"ANNA102030BOB 405060")
    [result] = ingest(config)

    assert (result.rows_read, result.rows_loaded) == (2, 2)
    assert rows(
        config,
        "SELECT p.player, s._fabric_index, s.score FROM raw.mf__accounts__score AS s "
        "JOIN raw.mf__accounts AS p USING (_fabric_partition, _fabric_position) ORDER BY 1, 2",
    ) == [("ANNA", 1, 10), ("ANNA", 2, 20), ("ANNA", 3, 30), ("BOB", 1, 40), ("BOB", 2, 50), ("BOB", 3, 60)]
