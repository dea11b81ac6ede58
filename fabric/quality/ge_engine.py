"""The fallback: expectations Fabric does not compute in SQL, run by GE's pandas engine.

Each partition slice (`partition_column = D`, only the columns those expectations read) is
read from DuckDB into pandas and validated in an ephemeral GE context (nothing written to
disk). GE's SQL engine is no option: its DuckDB path fails in `resolve_metric_bundle`.
Outcomes are labelled `ge-pandas`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

import duckdb

from fabric.identifiers import qualified, quote, split_qualified
from fabric.quality.results import GE_PANDAS, WITHHELD, ExpectationOutcome, finite, jsonable
from fabric.quality.suites import ExpectationSpec, Suite, check_suite

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.core.expectation_validation_result import (
        ExpectationValidationResult,
    )
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

# SUMMARY gives counts plus a few example values, enough to say what went wrong.
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 10}


class GeRunner:
    """An ephemeral GE context with one pandas dataframe asset, reused for every partition."""

    def __init__(self, suite: Suite, specs: Sequence[ExpectationSpec]) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        self.suite = suite
        self.specs = tuple(specs)
        self._configurations: dict[str, ExpectationConfiguration] = {
            spec.expectation_id: built
            for spec, built in zip(self.specs, check_suite(suite, self.specs), strict=True)
        }
        context = gx.get_context(
            mode="ephemeral",
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                progress_bars=ProgressBarsConfig(globally=False),
                analytics_enabled=False,
            ),
        )
        asset = context.data_sources.add_pandas("fabric").add_dataframe_asset(suite.table)
        self._batch_definition: BatchDefinition = asset.add_batch_definition_whole_dataframe("partition")
        needed = {c for spec in self.specs for c in spec.columns}
        self._whole_rows = any(not spec.columns for spec in self.specs)  # table-level types
        self._columns = sorted(needed)

    def validate(
        self, con: duckdb.DuckDBPyConnection, partition: date, pii: frozenset[str]
    ) -> dict[str, ExpectationOutcome]:
        """Outcomes by expectation id for one partition (the columns exist: checked before)."""
        from great_expectations.core.expectation_suite import ExpectationSuite

        frame = self._read(con, partition)
        ge_suite = ExpectationSuite(
            name=self.suite.name,
            expectations=[self._configurations[s.expectation_id] for s in self.specs],
        )
        batch = self._batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(ge_suite, result_format=RESULT_FORMAT)
        by_id = {str(r.expectation_config.id): r for r in result.results if r.expectation_config}
        outcomes: dict[str, ExpectationOutcome] = {}
        for spec in self.specs:
            found = by_id.get(spec.expectation_id)
            outcomes[spec.expectation_id] = (
                outcome(spec, found, bool(pii & set(spec.columns)))
                if found is not None
                else ExpectationOutcome(
                    expectation_id=spec.expectation_id,
                    expectation_type=spec.type,
                    label=spec.label,
                    column_name=spec.column_name,
                    severity=spec.severity,
                    success=False,
                    observed_value={"error": "Great Expectations returned no result for it"},
                    engine=GE_PANDAS,
                )
            )
        return outcomes

    def _read(self, con: duckdb.DuckDBPyConnection, partition: date) -> pd.DataFrame:
        source = qualified(*split_qualified(self.suite.table))
        selected = "*" if self._whole_rows else ", ".join(quote(c) for c in self._columns)
        sql = f"SELECT {selected} FROM {source} WHERE {quote(self.suite.partition_column)} = ?"
        return con.execute(sql, [partition]).df()


def outcome(spec: ExpectationSpec, result: ExpectationValidationResult, pii: bool) -> ExpectationOutcome:
    """An outcome from GE's validation result (values of PII columns withheld)."""
    details: Mapping[str, Any] = result.result or {}
    error = _exception_message(result.exception_info)
    unexpected = details.get("unexpected_count")
    percent = details.get("unexpected_percent")
    observed: Any
    if error is not None:
        observed = {"error": f"Great Expectations could not evaluate it: {error}"}
    elif "observed_value" in details:
        value = jsonable(details["observed_value"])
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        observed = WITHHELD if pii and not numeric else value  # a ratio or count is no PII
    else:
        observed = {
            key: jsonable(details[key])
            for key in ("element_count", "unexpected_count", "missing_count")
            if key in details
        }
        examples = [  # (value, count) of up to 10 offenders; nulls say nothing more
            e
            for e in jsonable(details.get("partial_unexpected_counts") or [])
            if isinstance(e, dict) and e.get("value") is not None
        ]
        if examples:
            observed["unexpected_values"] = WITHHELD if pii else examples
    return ExpectationOutcome(
        expectation_id=spec.expectation_id,
        expectation_type=spec.type,
        label=spec.label,
        column_name=spec.column_name,
        severity=spec.severity,
        success=bool(result.success) and error is None,
        observed_value=observed,
        unexpected_count=int(unexpected) if unexpected is not None else None,
        unexpected_percent=finite(percent),
        engine=GE_PANDAS,
    )


def _exception_message(info: Any) -> str | None:
    """GE's exception_info is either one record or a dict of records keyed by metric."""
    if not isinstance(info, dict):
        return None
    records = [info] if "raised_exception" in info else list(info.values())
    for record in records:
        if isinstance(record, dict) and (record.get("raised_exception") or record.get("exception_message")):
            return str(record.get("exception_message") or "unknown error").splitlines()[0]
    return None
