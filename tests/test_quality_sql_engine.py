"""Fabric's in-database checks against Great Expectations' own pandas engine.

The differential test builds one suite with every expectation type Fabric computes in SQL
(several argument variants each), validates generated partitions holding nulls, NaN and
infinities, integer extremes, unicode (combining marks, non-ASCII digits and whitespace,
emoji, case-folding traps) and a partition with no rows, and requires Fabric's outcome to
equal GE's for every expectation and partition: success, observed value, unexpected count
and percent, and the example values whenever GE lists all of them.
"""

from __future__ import annotations

import json
import math
import random
import re
import sys
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from fabric.quality import load_suite, summarize, validate_partitions
from fabric.quality.ge_engine import GeRunner
from fabric.quality.quarantine import quarantine_table
from fabric.quality.regex import to_re2
from fabric.quality.results import ExpectationOutcome
from fabric.quality.sql_expectations import sql_supported_types
from fabric.quality.suites import Suite, check_suite
from fabric.quality.validate import evaluate, plan_suite
from fabric.warehouse import Warehouse

TABLE = "features.diff"
DAYS = [date(2026, 1, d) for d in range(1, 6)]  # 1-3 mixed, 4 all NULL, 5 no rows at all
TEXT = [
    "a", "b", "ab", "abc", "b'c", "", " ", "\u00a0", "\x1c", "x\n", "ab\n", "é", "e\u0301",
    "😀", "Straße", "٣", "\u212a", "\u017f", "\u0131", "日本", "FC-0123456789ab", "a@b.de", "A@B.DE",
    "crm,erp", "erp", "crm",
]  # fmt: skip
COLUMNS = (
    "p DATE, i INTEGER, b BIGINT, d DOUBLE, dec DECIMAL(10,2), s VARCHAR, s2 VARCHAR, "
    "bo BOOLEAN, dt DATE, f DOUBLE, n BIGINT, m BIGINT"
)


def generated_rows() -> list[tuple[Any, ...]]:
    rng = random.Random(20260101)
    rows: list[tuple[Any, ...]] = []
    for day in DAYS[:3]:
        for _ in range(150):
            n = rng.randrange(0, 6)
            rows.append(
                (
                    day,
                    rng.choice([None, 0, 1, -1, 2, 3, 5, 2_147_483_647, -2_147_483_648]),
                    rng.choice([None, 0, 7, -7, 3, 10**12]),
                    rng.choice([None, math.nan, math.inf, -math.inf, -0.0, 0.0, 1.5, -2.25, 1e300, 3.0, 0.1]),
                    rng.choice([None, "0.10", "-1.25", "99.99", "5.00"]),
                    rng.choice([*TEXT, None]),
                    rng.choice([*TEXT, None]),
                    rng.choice([None, True, False]),
                    rng.choice([None, date(2024, 1, 1), date(2025, 6, 30)]),
                    rng.choice([None, 1.0, 2.0, 5.0, math.nan]),
                    n,  # never NULL: pair expectations on integers (see the test below)
                    n + rng.choice([-1, 0, 0, 1]),
                )
            )
    rows += [(DAYS[3], *([None] * 9), 0, 0) for _ in range(40)]
    return rows


def case(kind: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs}


CASES = [
    case("expect_column_values_to_not_be_null", column="i"),
    case("expect_column_values_to_not_be_null", column="d", mostly=0.5),
    case("expect_column_values_to_not_be_null", column="s"),
    case("expect_column_values_to_not_be_null", column="dt"),
    case("expect_column_values_to_not_be_null", column="dec"),
    case("expect_column_values_to_be_null", column="bo"),
    case("expect_column_values_to_be_null", column="d", mostly=0.1),
    case("expect_column_values_to_be_in_set", column="s", value_set=["a", "b", "é", "日本"]),
    case("expect_column_values_to_be_in_set", column="i", value_set=[0, 1, 2.0, 2.5]),
    case("expect_column_values_to_be_in_set", column="d", value_set=[0, 1.5, 3]),
    case("expect_column_values_to_be_in_set", column="dec", value_set=[0.1, 5]),
    case("expect_column_values_to_be_in_set", column="bo", value_set=[True]),
    case("expect_column_values_to_be_in_set", column="s", value_set=[]),
    case("expect_column_values_to_not_be_in_set", column="s", value_set=["", " ", "\u00a0"], mostly=0.8),
    case("expect_column_values_to_not_be_in_set", column="b", value_set=[0, 7]),
    case("expect_column_values_to_be_between", column="i", min_value=0),
    case("expect_column_values_to_be_between", column="i", min_value=-1, max_value=3, strict_max=True),
    case("expect_column_values_to_be_between", column="d", min_value=-2.25, max_value=1e300, strict_min=True),
    case("expect_column_values_to_be_between", column="dec", min_value=0.1, max_value=99.99),
    case("expect_column_values_to_be_between", column="b", max_value=10**12, mostly=0.9),
    case("expect_column_values_to_match_regex", column="s", regex=r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$"),
    case("expect_column_values_to_match_regex", column="s", regex=r"\s"),
    case("expect_column_values_to_match_regex", column="s", regex=r"^\w+$"),
    case("expect_column_values_to_match_regex", column="s", regex=r"\d"),
    case("expect_column_values_to_match_regex", column="s", regex=r"(?:^|,)crm(?:,|$)"),
    case("expect_column_values_to_match_regex", column="s", regex=r"b$"),
    case("expect_column_values_to_match_regex", column="s", regex=r"(?s)a.b|x."),
    case("expect_column_values_to_match_regex", column="s", regex=r"^.$"),
    case("expect_column_values_to_match_regex", column="s", regex=r"^[a-z]{1,2}\Z"),
    case("expect_column_values_to_match_regex", column="s", regex=r"^FC-[0-9a-f]{12}$", mostly=0.01),
    case("expect_column_values_to_not_match_regex", column="s", regex=r"[^\x00-\x7f]"),
    case("expect_column_values_to_not_match_regex", column="s", regex=r"\W"),
    case("expect_column_values_to_not_match_regex", column="s", regex=r"(?m)^b$"),
    case("expect_column_value_lengths_to_be_between", column="s", min_value=1, max_value=2),
    case("expect_column_value_lengths_to_be_between", column="s", min_value=1, strict_min=True),
    case("expect_column_value_lengths_to_equal", column="s", value=1),
    case("expect_column_values_to_be_unique", column="i"),
    case("expect_column_values_to_be_unique", column="d"),
    case("expect_column_values_to_be_unique", column="s"),
    case("expect_column_values_to_be_unique", column="dt"),
    case("expect_compound_columns_to_be_unique", column_list=["i", "s"]),
    case(
        "expect_compound_columns_to_be_unique", column_list=["d", "bo"], ignore_row_if="any_value_is_missing"
    ),
    case("expect_compound_columns_to_be_unique", column_list=["b", "s2"], ignore_row_if="never"),
    case("expect_column_pair_values_a_to_be_greater_than_b", column_A="d", column_B="f"),
    case(
        "expect_column_pair_values_a_to_be_greater_than_b",
        column_A="d",
        column_B="f",
        or_equal=True,
        ignore_row_if="either_value_is_missing",
    ),
    case(
        "expect_column_pair_values_a_to_be_greater_than_b",
        column_A="s",
        column_B="s2",
        ignore_row_if="neither",
    ),
    case("expect_column_pair_values_a_to_be_greater_than_b", column_A="m", column_B="n", or_equal=True),
    case("expect_column_pair_values_to_be_equal", column_A="d", column_B="f"),
    case("expect_column_pair_values_to_be_equal", column_A="s", column_B="s2", mostly=0.1),
    case("expect_column_pair_values_to_be_equal", column_A="n", column_B="m"),
    case("expect_table_row_count_to_be_between", min_value=1),
    case("expect_table_row_count_to_be_between", min_value=40, max_value=150, strict_max=True),
    case("expect_table_row_count_to_equal", value=150),
    case("expect_column_proportion_of_non_null_values_to_be_between", column="d", min_value=0.5),
    case("expect_column_proportion_of_non_null_values_to_be_between", column="s", max_value=0.99),
    case("expect_column_min_to_be_between", column="i", min_value=0),
    case("expect_column_min_to_be_between", column="d", min_value=-3),
    case("expect_column_max_to_be_between", column="dec", max_value=50),
    case("expect_column_max_to_be_between", column="b", max_value=10),
    case("expect_column_mean_to_be_between", column="i", min_value=0),
    case("expect_column_mean_to_be_between", column="dec", min_value=0),
    case("expect_column_mean_to_be_between", column="f", min_value=0, max_value=3),
    case("expect_column_sum_to_be_between", column="b", max_value=1000),
    case("expect_column_sum_to_be_between", column="f", min_value=0),
    case("expect_column_sum_to_be_between", column="dec", min_value=0),
    case("expect_column_unique_value_count_to_be_between", column="d", max_value=8),
    case("expect_column_unique_value_count_to_be_between", column="s", min_value=3),
    case("expect_column_proportion_of_unique_values_to_be_between", column="i", max_value=0.5),
    case("expect_column_proportion_of_unique_values_to_be_between", column="s", min_value=0.01),
    case("expect_column_to_exist", column="s2"),
    case("expect_table_column_count_to_equal", value=12),
    case("expect_table_column_count_to_be_between", min_value=1, max_value=5),
]


def write_suite(directory: Path, expectations: list[dict[str, Any]], table: str = TABLE) -> Suite:
    path = directory / f"{table}.json"
    binding = {"fabric": {"table": table, "partition_column": "p"}}
    path.write_text(json.dumps({"name": table, "meta": binding, "expectations": expectations}))
    return load_suite(path)


@pytest.fixture(scope="module")
def diff_con(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    path = tmp_path_factory.mktemp("diff") / "warehouse.duckdb"
    with Warehouse(path).connect():
        pass  # creates the layer schemas
    con = duckdb.connect(str(path))
    con.execute(f"CREATE TABLE {TABLE} ({COLUMNS})")
    con.executemany(f"INSERT INTO {TABLE} VALUES ({', '.join('?' * 12)})", generated_rows())
    return con


def same(fabric: ExpectationOutcome, ge: ExpectationOutcome) -> bool:
    """Equal outcomes; floats computed by summing (mean, sum) may differ in the last bits."""
    if (fabric.success, fabric.unexpected_count) != (ge.success, ge.unexpected_count):
        return False
    if not _close(fabric.unexpected_percent, ge.unexpected_percent):
        return False
    ours, theirs = fabric.observed_value, ge.observed_value
    if isinstance(theirs, dict):
        counts = {k: v for k, v in theirs.items() if k != "unexpected_values"}
        if {k: v for k, v in ours.items() if k != "unexpected_values"} != counts:
            return False
        listed = theirs.get("unexpected_values")
        if listed and (ge.unexpected_count or 0) <= 10:  # GE lists them all: same values, counts
            return sorted(map(_key, listed)) == sorted(map(_key, ours.get("unexpected_values", [])))
        return True
    return _close(ours, theirs)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9)
    return bool(a == b)


def _key(entry: Any) -> str:
    return json.dumps(entry, sort_keys=True, default=float)


def test_every_supported_type_matches_great_expectations(
    tmp_path: Path, diff_con: duckdb.DuckDBPyConnection
) -> None:
    suite = write_suite(tmp_path, CASES)
    assert {c["type"] for c in CASES} == sql_supported_types(), "every SQL type needs cases"
    assert len(check_suite(suite)) == len(CASES)  # GE accepts every case as written
    plan = plan_suite(diff_con, suite)
    assert plan.fallback == () and len(plan.sql) == len(CASES)

    fabric = evaluate(diff_con, plan, DAYS, "run-sql")
    runner = GeRunner(suite, suite.expectations)
    mismatches = []
    for validation in fabric:
        ge = runner.validate(diff_con, validation.partition, frozenset())
        for outcome in validation.outcomes:
            theirs = ge[outcome.expectation_id]
            assert outcome.engine == "sql" and theirs.engine == "ge-pandas"
            if not same(outcome, theirs):
                mismatches.append(
                    f"{validation.partition} {outcome.label} {outcome.expectation_id[:8]}\n"
                    f"  fabric: {outcome.success} {outcome.unexpected_count} {outcome.observed_value}\n"
                    f"  ge:     {theirs.success} {theirs.unexpected_count} {theirs.observed_value}"
                )
    assert mismatches == []
    assert [v.row_count for v in fabric] == [150, 150, 150, 40, 0]


def test_pair_expectations_on_nullable_integers_where_ge_cannot_evaluate(
    tmp_path: Path, diff_con: duckdb.DuckDBPyConnection
) -> None:
    """GE's pandas engine raises on pandas' nullable integers with NULLs ("boolean value of NA
    is ambiguous"); Fabric evaluates them, and gets what GE gets for the same values as floats."""
    pair = case("expect_column_pair_values_a_to_be_greater_than_b", column_A="i", column_B="b")
    suite = write_suite(tmp_path, [pair])
    (fabric,) = evaluate(diff_con, plan_suite(diff_con, suite), DAYS[:1], "run-1")[0].outcomes
    ge = GeRunner(suite, suite.expectations).validate(diff_con, DAYS[0], frozenset())
    assert ge[fabric.expectation_id].error is not None

    diff_con.execute(
        f"CREATE OR REPLACE TABLE features.as_floats AS SELECT p, i::DOUBLE AS i, b::DOUBLE AS b FROM {TABLE}"
    )
    floats = write_suite(tmp_path, [pair], table="features.as_floats")
    (reference,) = GeRunner(floats, floats.expectations).validate(diff_con, DAYS[0], frozenset()).values()
    assert reference.error is None and same(fabric, reference)


@pytest.mark.parametrize(
    "pattern",
    [r"\d", r"\D", r"\w", r"\W", r"\s", r"\S", r"[\d\s]", r"[^\w]", r"[^\d\s-]", r".", r"(?s).", r"(?a)\w"],
)
def test_regex_classes_match_python_for_every_code_point(pattern: str) -> None:
    translated = to_re2(pattern)
    assert translated is not None
    points = [c for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    expected = {c for c in points if re.search(pattern, chr(c))}
    matched = duckdb.sql(
        f"SELECT c FROM range({sys.maxunicode + 1}) t(c) "
        "WHERE c NOT BETWEEN 55296 AND 57343 AND regexp_matches(chr(c::INTEGER), ?)",
        params=[translated],
    ).fetchall()
    assert {c for (c,) in matched} == expected


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(?<=a)b", "lookbehind"),
        (r"(\w)\1", "backreference"),
        (r"(?i)straße", "case-insensitive"),
        (r"\bword\b", "unicode word boundary"),
        (r"a$\n", "$ followed by more pattern"),
        (r"a{1001}", "repeat above RE2's limit"),
        (r"a++", "possessive"),
    ],
)
def test_regex_constructs_without_an_exact_re2_equivalent_are_refused(pattern: str, why: str) -> None:
    assert to_re2(pattern) is None, why


def test_unsupported_types_and_arguments_run_through_ge_and_are_labelled(tmp_path: Path) -> None:
    suite = write_suite(
        tmp_path,
        [
            case("expect_column_values_to_not_be_null", column="s"),
            case("expect_column_median_to_be_between", column="i", min_value=0),  # type not in SQL
            case("expect_column_values_to_match_regex", column="s", regex=r"(?<=a)b"),  # lookbehind
            case("expect_column_values_to_be_in_set", column="s", value_set=["a", 1]),  # mixed types
        ],
    )
    with Warehouse(tmp_path / "warehouse.duckdb").connect() as con:
        con.execute(f"CREATE TABLE {TABLE} (p DATE, i INTEGER, s VARCHAR)")
        con.execute(f"INSERT INTO {TABLE} VALUES ('2026-01-01', 1, 'ab'), ('2026-01-01', 3, 'b')")
        (validation,) = validate_partitions(con, suite, DAYS[:1], "run-1")
        stored = con.execute(
            "SELECT expectation_type, engine FROM meta.validation_results ORDER BY expectation_type"
        ).fetchall()
    not_null, median, regex, in_set = validation.outcomes
    assert not_null.engine == "sql" and not_null.engine_note is None
    assert {o.engine for o in (median, regex, in_set)} == {"ge-pandas"}
    assert median.engine_note == "expect_column_median_to_be_between is not computed in SQL"
    assert regex.engine_note is not None and "RE2" in regex.engine_note
    assert in_set.engine_note is not None and "only text" in in_set.engine_note
    assert (median.success, median.observed_value) == (True, 2.0)
    assert (regex.success, regex.unexpected_count) == (False, 1)
    assert validation.engines == {"sql": 1, "ge-pandas": 3}
    assert summarize([validation])["fallbacks"] == {o.label: o.engine_note for o in (median, regex, in_set)}
    assert dict(stored) == {
        "expect_column_median_to_be_between": "ge-pandas",
        "expect_column_values_to_be_in_set": "ge-pandas",
        "expect_column_values_to_match_regex": "ge-pandas",
        "expect_column_values_to_not_be_null": "sql",
    }


def test_row_level_quarantine_holds_every_failing_row(tmp_path: Path) -> None:
    suite = write_suite(
        tmp_path,
        [
            case("expect_column_values_to_not_be_null", column="s"),
            case("expect_column_values_to_be_unique", column="i"),
            case("expect_compound_columns_to_be_unique", column_list=["i", "s"]),
            case("expect_column_values_to_be_between", column="i", min_value=0, mostly=0.5),
            case("expect_column_mean_to_be_between", column="i", max_value=10**9),  # not row-level
        ],
    )
    day, other = DAYS[0], DAYS[1]
    target = quarantine_table(TABLE)
    assert target == "quarantine.features_diff" and "__" not in target  # ingest tables have "__"
    with Warehouse(tmp_path / "warehouse.duckdb").connect() as con:
        con.execute(f"CREATE TABLE {TABLE} AS SELECT * FROM (VALUES (NULL::DATE, 0, 'x')) t(p, i, s) LIMIT 0")
        # day: 1000 rows, 450 NULL texts, ids 0..699 once and 700..999 -> 300 ids twice (600 rows)
        con.execute(
            f"INSERT INTO {TABLE} SELECT DATE '{day}', CASE WHEN r < 700 THEN r ELSE r - 300 END, "
            "CASE WHEN r % 20 < 9 THEN NULL ELSE 'v' || r END FROM range(1000) t(r)"
        )
        con.execute(f"INSERT INTO {TABLE} VALUES ('{other}', -1, NULL)")
        validations = validate_partitions(con, suite, [day, other], "run-1")
        by_expectation = dict(
            con.execute(
                f"SELECT _quality_expectation_type, count(*) FROM {target} WHERE p = ? GROUP BY 1",
                [day],
            ).fetchall()
        )
        first = validations[0]
        outcomes = {o.expectation_type: o for o in first.outcomes}
        assert outcomes["expect_column_values_to_not_be_null"].unexpected_count == 450
        assert by_expectation == {
            "expect_column_values_to_not_be_null": 450,  # well past GE's 200-row sample
            "expect_column_values_to_be_unique": 600,
            "expect_compound_columns_to_be_unique": 270,  # (i, NULL) twice: NULLs compare equal
        }
        assert outcomes["expect_compound_columns_to_be_unique"].unexpected_count == 270
        assert first.quarantined_rows == 1320 and validations[1].quarantined_rows == 2

        # fix the day and validate again: its quarantine empties, the other day's rows stay
        con.execute(f"DELETE FROM {TABLE} WHERE p = ? AND (s IS NULL OR i >= 400)", [day])
        validate_partitions(con, suite, [day], "run-2")
        left = con.execute(f"SELECT p, count(*) FROM {target} GROUP BY 1").fetchall()
    assert left == [(other, 2)]
