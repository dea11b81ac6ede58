"""A Great Expectations Data Docs site rendered from `meta.validation_results`.

GE's own site builder does the rendering. It needs no data source, only suites and validation
results in its stores, so an ephemeral (in-memory) GE context is filled with the suites and
with GE result objects rebuilt from the stored rows (the latest validation of each governed
table and partition), and GE writes the site to `$FABRIC_HOME/quality_docs`
(`index.html` is the entry page). The site is built next to that folder and swapped in, so a
reader never sees half a site. dbt test results are not GE validations and are left out (see
`fabric quality report`). Suite names are shown with `__` for the dot (`integrated__customers`):
GE's store keys split names on dots.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Mapping, Sequence
from datetime import UTC, date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from fabric.quality.gate import RecordedResult, latest_results
from fabric.quality.suites import DBT_SUITE, Suite, check_suite
from fabric.warehouse import table_exists

if TYPE_CHECKING:
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    from fabric.config import FabricConfig

DOCS_FOLDER = "quality_docs"


def quality_docs_dir(config: FabricConfig) -> Path:
    """`$FABRIC_HOME/quality_docs` (FABRIC_HOME defaults to `.fabric` next to fabric.yaml)."""
    return config.resolve(Path(os.environ.get("FABRIC_HOME", ".fabric"))) / DOCS_FOLDER


def recent_partitions(con: duckdb.DuckDBPyConnection, tables: Sequence[str], count: int) -> list[date]:
    """The `count` latest partitions that have validation results for any of `tables`."""
    if not table_exists(con, "meta.validation_results"):
        return []
    rows = con.execute(
        'SELECT DISTINCT "partition" FROM meta.validation_results '
        "WHERE table_name IN (SELECT unnest(?::VARCHAR[])) AND suite <> ? "
        'ORDER BY "partition" DESC LIMIT ?',
        [list(tables), DBT_SUITE, count],
    ).fetchall()
    return sorted(row[0] for row in rows)


def build_data_docs(
    con: duckdb.DuckDBPyConnection,
    suites: Mapping[str, Suite],
    directory: Path,
    partitions: Sequence[date],
) -> Path:
    """Render the latest validation of each suite's table for each of `partitions`.

    Returns the site's `index.html`. Imports GE.
    """
    building = directory.with_name(directory.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    context = _context(building)
    configurations = {}
    for suite in suites.values():
        built = check_suite(suite)
        configurations[suite.table] = {c.id: c for c in built if c.id}
        _add_suite(context, suite, built)
    groups: dict[tuple[str, date], list[RecordedResult]] = {}
    for row in latest_results(con, partitions, list(suites)):
        if row.suite != DBT_SUITE and row.table in suites:
            groups.setdefault((row.table, row.partition), []).append(row)
    for (table, day), rows in sorted(groups.items()):
        _add_validation(context, suites[table], day, rows, configurations[table])
    context.build_data_docs()
    index = building / "index.html"
    if not index.is_file():  # GE writes it even for an empty site; be explicit if it did not
        raise FileNotFoundError(f"{index}: Great Expectations did not write the Data Docs index")
    retired = directory.with_name(directory.name + ".old")
    shutil.rmtree(retired, ignore_errors=True)
    if directory.exists():
        directory.rename(retired)
    building.rename(directory)
    shutil.rmtree(retired, ignore_errors=True)
    return directory / "index.html"


def docs_name(table: str) -> str:
    """The suite name shown in Data Docs (GE splits store keys on dots)."""
    return table.replace(".", "__")


def _context(directory: Path) -> AbstractDataContext:
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    site = {
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(directory)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    return gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            progress_bars=ProgressBarsConfig(globally=False),
            data_docs_sites={"fabric": site},
            analytics_enabled=False,
        ),
    )


def _add_suite(
    context: AbstractDataContext, suite: Suite, configurations: Sequence[ExpectationConfiguration]
) -> None:
    from great_expectations.core.expectation_suite import ExpectationSuite

    context.suites.add(ExpectationSuite(name=docs_name(suite.table), expectations=list(configurations)))


def _add_validation(
    context: AbstractDataContext,
    suite: Suite,
    day: date,
    rows: Sequence[RecordedResult],
    configurations: Mapping[str, ExpectationConfiguration],
) -> None:
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    results = []
    for row in rows:
        configuration = configurations.get(row.expectation_id)
        if configuration is None:  # the suite changed since: nothing to render it with
            continue
        labelled = copy.deepcopy(configuration)
        labelled.meta = {**(labelled.meta or {}), "fabric_engine": row.engine}
        result, exception = _ge_result(row)
        results.append(
            ExpectationValidationResult(
                success=row.success,
                expectation_config=labelled,
                result=result,
                exception_info=exception,
            )
        )
    if not results:
        return
    passed = sum(bool(r.success) for r in results)
    validated_at = rows[0].validated_at.replace(tzinfo=UTC)
    run_id = RunIdentifier(run_name=rows[0].run_id, run_time=validated_at)
    name = docs_name(suite.table)
    validation = ExpectationSuiteValidationResult(
        success=passed == len(results),
        results=results,
        suite_name=name,
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(results) - passed,
            "success_percent": 100.0 * passed / len(results),
        },
        meta={
            "run_id": run_id,
            "batch_spec": {"data_asset_name": suite.table},
            "validation_time": validated_at.strftime("%Y%m%dT%H%M%S.%fZ"),
            "fabric": {"table": suite.table, "partition": day.isoformat()},
        },
    )
    key = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=name),
        run_id=run_id,
        batch_identifier=day.isoformat(),
    )
    context.validation_results_store.set(key, validation)


def _ge_result(row: RecordedResult) -> tuple[dict[str, Any], dict[str, Any]]:
    """GE's `result` and `exception_info` for a stored row."""
    observed = row.observed_value
    no_exception = {"raised_exception": False, "exception_message": None, "exception_traceback": None}
    if isinstance(observed, Mapping) and "error" in observed:
        error = {"raised_exception": True, "exception_message": str(observed["error"])}
        return {}, {**error, "exception_traceback": None}
    if not isinstance(observed, Mapping):
        return {"observed_value": observed}, no_exception
    result: dict[str, Any] = {
        key: observed[key] for key in ("element_count", "missing_count") if key in observed
    }
    result["unexpected_count"] = row.unexpected_count
    result["unexpected_percent"] = row.unexpected_percent
    examples = observed.get("unexpected_values")
    if isinstance(examples, list):
        result["partial_unexpected_counts"] = examples
        result["partial_unexpected_list"] = [e.get("value") for e in examples]
    return result, no_exception
