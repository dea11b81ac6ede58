"""Conformance of the copybook reader with Cobrix, on the corpus in ../shared.

Every case of `shared/conformance/cobrix/MANIFEST.json` is read with its copybook, data
and options (and every `alt_options` / `alt_copybook` variant), printed as Spark-style JSON
lines, parsed back and compared with the expected records by value: decimals by value,
COMP-1 to 7 and COMP-2 to 15 significant digits, formatting ignored. `core` cases must all
pass; `advanced` cases are tested one by one (and all pass today).

Two advanced cases name test-only Scala classes (a custom code page and a custom record
header parser); this module registers Python equivalents of them under the same names.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from fabric.copybook import CopybookReader, register_code_page, register_record_header_parser
from fabric.copybook.jsonlines import json_lines

SHARED = Path(__file__).resolve().parents[2] / "shared"
COBRIX = SHARED / "conformance" / "cobrix"
MANIFEST = COBRIX / "MANIFEST.json"
CORE_CASES = 26
GENERATED = ("File_Id", "Record_Id", "Record_Byte_Length")


def _require_shared() -> None:
    if MANIFEST.exists():
        return
    message = f"the Cobrix conformance corpus is missing: {MANIFEST}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@cache
def _entries() -> dict[str, dict[str, Any]]:
    if not MANIFEST.exists():
        return {}
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    return {entry["id"]: entry for entry in manifest["entries"]}


def _ids(tier: str) -> list[str]:
    return [case_id for case_id, e in _entries().items() if e["tier"] == tier]


# --- test-only plugins equivalent to the Scala test classes some cases name -------------


def _custom_code_page() -> str:
    """Like Cobrix's test CustomCodePage: letters with inverted case, digits and the
    punctuation marks it maps (as the expected output shows), every other byte a space."""
    chars = [" "] * 256
    for lower, upper in ((0x81, 0xC1), (0x91, 0xD1), (0xA2, 0xE2)):
        for i in range(9 if lower != 0xA2 else 8):
            chars[lower + i] = chr(ord("A" if lower == 0x81 else "J" if lower == 0x91 else "S") + i)
            chars[upper + i] = chars[lower + i].lower()
    for i in range(10):
        chars[0xF0 + i] = str(i)
    punctuation = ".<(+|&!$);-/|,%_>?`:#@=~^[]{}-"
    positions = (0x4B, 0x4C, 0x4D, 0x4E, 0x4F, 0x50, 0x5A, 0x5B, 0x5D, 0x5E, 0x60, 0x61, 0x6A,
                 0x6B, 0x6C, 0x6D, 0x6E, 0x6F, 0x79, 0x7A, 0x7B, 0x7C, 0x7E, 0xA1, 0xB0, 0xBA,
                 0xBB, 0xC0, 0xD0, 0xCA)  # fmt: skip
    for byte, c in zip(positions, punctuation, strict=True):
        chars[byte] = c
    return "".join(chars)


@dataclass(frozen=True)
class _FiveByteHeader:
    """Like Cobrix's test Test10CustomRDWParser: 5-byte headers, a record is valid when
    byte 0 is 1, its length is byte 3 + 256 * byte 4."""

    header_size: int = 5

    def parse(self, header: bytes, offset: int) -> tuple[int, bool]:
        return header[3] + 256 * header[4], header[0] == 1


register_code_page("za.co.absa.cobrix.spark.cobol.source.utils.CustomCodePage", _custom_code_page())
register_record_header_parser(
    "za.co.absa.cobrix.spark.cobol.source.utils.Test10CustomRDWParser",
    lambda info: _FiveByteHeader(),
)


# --- running a case -------------------------------------------------------------------


def _spark_path(value: str) -> Path:
    """A path as the Scala tests give it (relative to spark-cobol/) inside the corpus."""
    return COBRIX / value.removeprefix("file://").removeprefix("../")


def _variants(entry: dict[str, Any]) -> list[tuple[str, Any, list[Path], dict[str, str]]]:
    """(label, copybook, data files, options) for the case and each of its variants."""
    data = entry["data"]
    data_sets = [[COBRIX / d] for d in data] if isinstance(data, list) else [[COBRIX / data]]
    if entry["id"] == "test15":  # a glob over two files read together
        data_sets = [[COBRIX / d for d in data]]
    variants = []
    option_sets = [entry["options"], *entry.get("alt_options", [])]
    for n, raw_options in enumerate(option_sets):
        options = {k: v for k, v in raw_options.items() if not k.startswith("_")}
        copybook: Any = COBRIX / entry["copybook"]
        if "copybooks" in options:
            copybook = [_spark_path(p.strip()) for p in options.pop("copybooks").split(",")]
        files = data_sets
        if "_data" in raw_options:
            files = [[COBRIX / raw_options["_data"]]]
        for files_ in files:
            variants.append((f"options[{n}] {files_[0].name}", copybook, files_, options))
    if "alt_copybook" in entry:
        options = {k: v for k, v in entry["options"].items() if k != "copybooks"}
        copybooks = [COBRIX / p for p in entry["alt_copybook"]]
        variants.append(("alt_copybook", copybooks, data_sets[0], options))
    return variants


def _parse(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def _expected(entry: dict[str, Any]) -> list[dict[str, Any]]:
    path = COBRIX / entry["expected"]
    encoding = "iso-8859-1" if "ISO-8859-1" in entry["how_compared"].get("notes", "") else "utf-8"
    text = path.read_text(encoding=encoding)
    fmt = entry["how_compared"]["format"]
    if fmt == "pretty_json_array":
        return _parse(text)
    if fmt == "pretty_json_per_record":
        decoder = json.JSONDecoder(parse_float=Decimal)
        records, position = [], 0
        while position < len(text.rstrip()):
            while text[position].isspace():
                position += 1
            record, position = decoder.raw_decode(text, position)
            records.append(record)
        return records
    return [_parse(line) for line in text.split("\n") if line.strip()]


def _float_fields(schema: pa.Schema) -> dict[str, int]:
    """Leaf names of float/double fields -> significant digits compared."""
    found: dict[str, int] = {}

    def visit(field: pa.Field) -> None:
        dtype = field.type
        if pa.types.is_struct(dtype):
            for child in dtype:
                visit(child)
        elif pa.types.is_list(dtype):
            visit(pa.field(field.name, dtype.value_type))
        elif pa.types.is_floating(dtype):
            found[field.name] = 7 if dtype == pa.float32() else 15

    for field in schema:
        visit(field)
    return found


def _actual(
    entry: dict[str, Any], copybook: Any, files: list[Path], options: dict[str, str]
) -> tuple[list[dict[str, Any]], pa.Schema]:
    reader = CopybookReader(copybook, options)
    table = reader.read(files).table
    records = [_parse(line) for line in json_lines(table)]
    notes = entry["how_compared"].get("notes", "")
    if "na.fill(0)" in notes:
        numeric = [
            f.name
            for f in table.schema
            if pa.types.is_integer(f.type) or pa.types.is_decimal(f.type) or pa.types.is_floating(f.type)
        ]
        for record in records:
            for name in numeric:
                record.setdefault(name, 0)
    return records, table.schema


def _order_key(order: str) -> list[str] | None:
    if not order.startswith("sorted by"):
        return None
    keys = re.sub(r"\(.*?\)", "", order.removeprefix("sorted by"))
    return [k.strip() for k in re.split(r",|\bthen\b", keys) if k.strip()]


def _lookup(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _sorted(records: list[dict[str, Any]], keys: list[str] | None) -> list[dict[str, Any]]:
    if keys is None:
        return records

    def key(record: dict[str, Any]) -> tuple[Any, ...]:
        values = tuple(_lookup(record, k) for k in keys)
        return (*((v is None, v if v is not None else 0) for v in values), _canonical(record))

    return sorted(records, key=key)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _same(expected: Any, actual: Any, floats: dict[str, int], name: str = "") -> str | None:
    """None when equal by value, else where they differ."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        if list(expected) != list(actual):
            return f"{name}: keys {list(expected)} != {list(actual)}"
        for key in expected:
            diff = _same(expected[key], actual[key], floats, key)
            if diff:
                return f"{name}.{diff}" if name else diff
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return f"{name}: {len(expected)} elements != {len(actual)}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            diff = _same(e, a, floats, name)
            if diff:
                return f"[{i}]{diff}"
        return None
    if name in floats and isinstance(expected, Decimal | int) and isinstance(actual, Decimal | int):
        e, a = float(expected), float(actual)
        if e == a or math.isclose(e, a, rel_tol=10 ** -floats[name]):
            return None
        return f"{name}: {expected} != {actual}"
    if type(expected) is not type(actual) and not (
        isinstance(expected, Decimal | int) and isinstance(actual, Decimal | int)
    ):
        return f"{name}: {expected!r} != {actual!r}"
    return None if expected == actual else f"{name}: {expected!r} != {actual!r}"


def compare_case(case_id: str) -> list[str]:
    """Differences between the reader and the expected output (empty: conformant)."""
    entry = _entries()[case_id]
    expected = _expected(entry)
    problems: list[str] = []
    keys = _order_key(entry["how_compared"]["order"])
    limit = entry["how_compared"]["limit"]
    for label, copybook, files, options in _variants(entry):
        try:
            actual, schema = _actual(entry, copybook, files, options)
        except Exception as exc:  # report and go on with the other variants
            problems.append(f"{label}: {type(exc).__name__}: {exc}")
            continue
        absent = [g for g in GENERATED if expected and all(g not in r for r in expected)]
        for record in actual:
            for name in absent:
                record.pop(name, None)
        wanted = _sorted(expected, keys)[:limit]
        got = _sorted(actual, keys)[:limit]
        if len(wanted) != len(got):
            problems.append(f"{label}: {len(wanted)} expected records, got {len(got)}")
            continue
        floats = _float_fields(schema)
        for index, (e, a) in enumerate(zip(wanted, got, strict=True)):
            diff = _same(e, a, floats)
            if diff:
                problems.append(f"{label}: record {index}: {diff}")
                break
    return problems


@cache
def _results(tier: str) -> dict[str, list[str]]:
    return {case_id: compare_case(case_id) for case_id in _ids(tier)}


# --- tests ------------------------------------------------------------------------------


def test_all_core_cases_compared_and_equal() -> None:
    _require_shared()
    results = _results("core")
    assert len(results) == CORE_CASES, f"expected {CORE_CASES} core cases, found {len(results)}"
    failing = {case_id: problems for case_id, problems in results.items() if problems}
    assert not failing, f"{len(failing)} of {CORE_CASES} core cases differ: {failing}"


@pytest.mark.parametrize("case_id", _ids("core") or ["corpus-missing"])
def test_core_case(case_id: str) -> None:
    _require_shared()
    assert _results("core")[case_id] == []


@pytest.mark.parametrize("case_id", _ids("advanced") or ["corpus-missing"])
def test_advanced_case(case_id: str) -> None:
    _require_shared()
    assert _results("advanced")[case_id] == []
