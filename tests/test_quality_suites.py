"""Loading and checking expectation suite files (`fabric.quality.suites`)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from fabric.config import FabricConfig, QualityConfig
from fabric.quality import SuiteError, check_suite, load_suite, load_suites
from fabric.quality.suites import known_expectation_types

REPO = Path(__file__).resolve().parents[1]
TABLE = "features.toy"


def suite_document(expectations: list[dict[str, Any]], table: str = TABLE) -> dict[str, Any]:
    return {
        "name": table,
        "meta": {"fabric": {"table": table, "partition_column": "as_of_date"}},
        "expectations": expectations,
    }


def write(directory: Path, document: Any, name: str = f"{TABLE}.json") -> Path:
    path = directory / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


NOT_NULL = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}}


def test_good_suite_loads_with_binding_severity_and_stable_ids(tmp_path: Path) -> None:
    fixed_id = str(uuid.uuid4())
    path = write(
        tmp_path,
        suite_document(
            [
                NOT_NULL,
                {
                    "type": "expect_column_values_to_match_regex",
                    "kwargs": {"column": "email", "regex": "@"},
                    "severity": "warning",
                    "id": fixed_id,
                },
                {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
            ]
        ),
    )
    suite = load_suite(path)
    assert (suite.name, suite.table, suite.partition_column) == (TABLE, TABLE, "as_of_date")
    not_null, regex, rows = suite.expectations
    assert not_null.severity == "critical"  # GE's default severity
    assert regex.severity == "warning"
    assert regex.expectation_id == fixed_id
    assert not_null.label == "expect_column_values_to_not_be_null(customer_id)"
    assert rows.columns == () and rows.column_name is None
    # derived ids are UUIDs, stable across loads, and change with the kwargs
    assert uuid.UUID(not_null.expectation_id)
    assert load_suite(path).expectations[0].expectation_id == not_null.expectation_id
    other = load_suite(
        write(tmp_path, suite_document([{**NOT_NULL, "kwargs": {"column": "email"}}]))
    )
    assert other.expectations[0].expectation_id != not_null.expectation_id


def test_broken_json_names_the_file_and_position(tmp_path: Path) -> None:
    path = write(tmp_path, '{"name": "features.toy",\n "expectations": [}')
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    assert str(path) in str(err.value)
    assert "not valid JSON" in str(err.value) and "line 2" in str(err.value)


def test_unknown_expectation_type_names_file_index_and_type(tmp_path: Path) -> None:
    typo = {"type": "expect_column_values_to_be_uniqe", "kwargs": {"column": "customer_id"}}
    path = write(tmp_path, suite_document([NOT_NULL, typo]))
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    message = str(err.value)
    assert str(path) in message
    assert "expectation #1" in message and "expect_column_values_to_be_uniqe" in message
    assert "did you mean expect_column_values_to_be_unique" in message


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (suite_document([{**NOT_NULL, "severity": "fatal"}]), "severity must be one of"),
        (suite_document([{**NOT_NULL, "severty": "warning"}]), "unknown key(s) ['severty']"),
        (suite_document([{**NOT_NULL, "kwargs": ["customer_id"]}]), "'kwargs' must be"),
        (suite_document([{**NOT_NULL, "id": "not-a-uuid"}]), "'id' must be a UUID"),
        (suite_document([NOT_NULL, dict(NOT_NULL)]), "duplicates expectation #0"),
        (suite_document([]), "'expectations' must be a non-empty list"),
        ({"name": TABLE, "expectations": [NOT_NULL]}, "meta.fabric is missing"),
        (suite_document([NOT_NULL], table="features.other"), "must be named features.other.json"),
        ([NOT_NULL], "expected a JSON object"),
    ],
)
def test_malformed_suites_are_rejected_with_a_reason(
    tmp_path: Path, document: Any, expected: str
) -> None:
    path = write(tmp_path, document)
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_check_suite_reports_kwargs_ge_rejects(tmp_path: Path) -> None:
    no_column = {"type": "expect_column_values_to_be_between", "kwargs": {"min_value": 0}}
    path = write(tmp_path, suite_document([NOT_NULL, no_column]))
    suite = load_suite(path)  # structurally fine; GE itself finds the missing column
    with pytest.raises(SuiteError) as err:
        check_suite(suite)
    assert f"{path}: expectation #1 (expect_column_values_to_be_between)" in str(err.value)
    assert "column" in str(err.value)


def test_load_suites_requires_a_suite_per_governed_table(tmp_path: Path) -> None:
    write(tmp_path, suite_document([NOT_NULL]))
    config = _config(tmp_path, governed=[TABLE, "integrated.customers"])
    with pytest.raises(SuiteError, match=r"no expectation suite for governed table"):
        load_suites(config)
    assert set(load_suites(_config(tmp_path, governed=[TABLE]))) == {TABLE}


def test_loading_does_not_import_great_expectations() -> None:
    code = (
        "import sys; from pathlib import Path; from fabric.quality import load_suite\n"
        f"for p in sorted(Path({str(REPO / 'expectations')!r}).glob('*.json')): load_suite(p)\n"
        "assert not [m for m in sys.modules if m.startswith('great_expectations')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_cheap_type_list_covers_the_ge_registry() -> None:
    """The source-read list must not reject anything GE registers (it may list a deprecated extra)."""
    from great_expectations.expectations.registry import (
        list_registered_expectation_implementations,
    )

    from fabric.quality.suites import _core_expectation_types

    cheap = _core_expectation_types()
    registry = set(list_registered_expectation_implementations())
    assert cheap is not None and registry <= cheap
    assert known_expectation_types() == registry  # GE imported: the registry itself is used


def test_demo_suites_parse_and_every_type_exists_in_ge() -> None:
    from great_expectations.expectations.registry import (
        list_registered_expectation_implementations,
    )

    registry = set(list_registered_expectation_implementations())
    config = FabricConfig.model_construct(base_dir=REPO, quality=QualityConfig())
    suites = load_suites(config)
    assert set(QualityConfig().governed_tables) <= set(suites)
    assert suites["integrated.customers"].partition_column == "updated_partition"
    assert suites["features.customer_features"].partition_column == "as_of_date"
    for suite in suites.values():
        assert {spec.type for spec in suite.expectations} <= registry
        assert {spec.severity for spec in suite.expectations} >= {"critical", "warning"}
        assert len(check_suite(suite)) == len(suite.expectations)


def _config(suites_dir: Path, governed: list[str]) -> FabricConfig:
    return FabricConfig.model_construct(
        base_dir=suites_dir,
        quality=QualityConfig(suites_dir=suites_dir, governed_tables=governed),
    )
