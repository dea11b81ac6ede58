"""Row-level quarantine: every row failing a row-level expectation, with the expectation named.

GE keeps at most 200 example rows; a team fixing data needs all of them. For each governed
table, when a row-level expectation computed in SQL (not null, in set, between, regex,
lengths, unique, compound unique, column pairs) fails for a validated partition, its
unexpected rows there are copied, uncapped, to `quarantine.<schema>_<table>` (runs of
underscores collapsed to one, e.g. `quarantine.features_customer_features`): the table's own
columns plus

| column | meaning |
| --- | --- |
| `_quality_expectation_id` | the suite expectation's id (as in `meta.validation_results`) |
| `_quality_expectation_type` | e.g. `expect_column_values_to_not_be_null` |
| `_quality_column` | the column(s) it checks, comma-separated |
| `_quality_severity` | `critical`, `warning` or `info` |
| `_quality_run_id` | the run that validated the partition |
| `_quality_quarantined_at` | when (UTC) |

A row failing two expectations appears twice. Rows an expectation tolerates (it passed thanks
to `mostly`) are counted in the results but not quarantined. The names contain no double
underscore, so they can never clash with the ingest quarantine tables
`quarantine.<source>__<entity>`, which always do. Validating a partition again replaces its
quarantined rows: fix the data, re-run the check for the day, and the quarantine shows what is
still wrong. Expectations that run through GE's pandas engine are not quarantined (their
failures are only counted).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

import duckdb

from fabric.identifiers import qualified, quote, split_qualified
from fabric.meta import utcnow
from fabric.quality.results import PartitionValidation
from fabric.quality.sql_engine import as_date, failing_rows_query, partition_filter, table_columns
from fabric.quality.sql_expectations import RowCheck
from fabric.quality.suites import Suite, SuiteError

QUARANTINE_SCHEMA = "quarantine"
_META_COLUMNS = {
    "_quality_expectation_id": "VARCHAR",
    "_quality_expectation_type": "VARCHAR",
    "_quality_column": "VARCHAR",
    "_quality_severity": "VARCHAR",
    "_quality_run_id": "VARCHAR",
    "_quality_quarantined_at": "TIMESTAMP",
}
_MAX_IDENTIFIER = 63


def quarantine_table(table: str) -> str:
    """`quarantine.<schema>_<table>` for a governed `schema.table`; raises if too long."""
    schema, name = split_qualified(table)
    collapsed = re.sub("_+", "_", f"{schema}_{name}")
    if len(collapsed) > _MAX_IDENTIFIER:
        raise SuiteError(
            f"{table}: its quarantine table name {collapsed} is longer than {_MAX_IDENTIFIER} "
            "characters; shorten the schema or table name"
        )
    return f"{QUARANTINE_SCHEMA}.{collapsed}"


def check_quarantine_names(tables: Sequence[str]) -> None:
    """Raise SuiteError if two governed tables would share a quarantine table."""
    seen: dict[str, str] = {}
    for table in tables:
        target = quarantine_table(table)
        if target in seen and seen[target] != table:
            raise SuiteError(
                f"governed tables {seen[target]} and {table} would both quarantine into {target}; "
                "rename one of them"
            )
        seen[target] = table


def quarantined_rows(table: str, expectation_id: str) -> str:
    """A relation of the quarantined rows of one expectation (for reading examples)."""
    literal = "'" + expectation_id.replace("'", "''") + "'"
    return f"(SELECT * FROM {_sql_name(quarantine_table(table))} WHERE _quality_expectation_id = {literal})"


def failed_row_checks(
    checks: Sequence[RowCheck], validations: Sequence[PartitionValidation]
) -> dict[str, list[date]]:
    """Expectation id -> partitions where that row check failed with unexpected rows."""
    ids = {check.spec.expectation_id for check in checks}
    failing: dict[str, list[date]] = {}
    for validation in validations:
        for outcome in validation.outcomes:
            if outcome.expectation_id in ids and not outcome.success and outcome.unexpected_count:
                failing.setdefault(outcome.expectation_id, []).append(validation.partition)
    return failing


def quarantine_failures(
    con: duckdb.DuckDBPyConnection,
    suite: Suite,
    checks: Sequence[RowCheck],
    validations: Sequence[PartitionValidation],
    run_id: str,
) -> dict[date, int]:
    """Replace the validated partitions' quarantine rows with the rows failing `checks` now.

    Returns the rows quarantined per partition (one transaction). Rows failing any
    non-uniqueness check are found in one scan; each failed uniqueness check takes one more.
    """
    target = quarantine_table(suite.table)
    days = [v.partition for v in validations]
    failing = failed_row_checks(checks, validations)
    by_id = {check.spec.expectation_id: check for check in checks}
    exists = table_columns(con, target) is not None
    if not failing and not exists:
        return {}
    counts: dict[date, int] = dict.fromkeys(days, 0)
    partition = quote(suite.partition_column)
    con.execute("BEGIN TRANSACTION")
    try:
        _prepare(con, suite.table, target)
        con.execute(
            f"DELETE FROM {_sql_name(target)} WHERE {partition} IN (SELECT unnest(?::DATE[]))",
            [days],
        )
        failed = [(i, by_id[key], partitions) for i, (key, partitions) in enumerate(failing.items())]
        tagged = [_tagged_rows(suite, [f for f in failed if not f[1].duplicate_keys])]
        tagged += [_tagged_rows(suite, [f]) for f in failed if f[1].duplicate_keys]
        labels = ", ".join(["(?, ?, ?, ?, ?)"] * len(failed))
        details = [
            value
            for index, check, _ in failed
            for value in (
                index,
                check.spec.expectation_id,
                check.spec.type,
                check.spec.column_name,
                check.spec.severity,
            )
        ]
        for rows in filter(None, tagged):
            con.execute(
                f"INSERT INTO {_sql_name(target)} BY NAME "
                "SELECT _f.* EXCLUDE (_quality_check), _m.* EXCLUDE (_quality_check), "
                f"? AS _quality_run_id, ? AS _quality_quarantined_at FROM ({rows}) AS _f "
                f"JOIN (VALUES {labels}) AS _m(_quality_check, _quality_expectation_id, "
                "_quality_expectation_type, _quality_column, _quality_severity) USING (_quality_check)",
                [run_id, utcnow(), *details],
            )
        written = con.execute(
            f"SELECT {partition}, count(*) FROM {_sql_name(target)} "
            f"WHERE {partition} IN (SELECT unnest(?::DATE[])) GROUP BY 1",
            [days],
        ).fetchall()
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    counts.update({as_date(day): int(n) for day, n in written})
    return counts


def _tagged_rows(suite: Suite, failed: Sequence[tuple[int, RowCheck, Sequence[date]]]) -> str | None:
    """The failing rows of the `(tag, check, partitions)` in `failed`, tagged `_quality_check`.

    Plain checks share one scan (a row failing two of them comes out twice); a uniqueness check
    comes alone (it joins the duplicated keys).
    """
    if not failed:
        return None
    if len(failed) == 1 and failed[0][1].duplicate_keys:
        tag, check, partitions = failed[0]
        rows = failing_rows_query(suite.table, suite.partition_column, check, partitions)
        return f"SELECT *, {tag} AS _quality_check FROM ({rows})"
    where = {tag: partition_filter(suite.partition_column, days) for tag, _, days in failed}
    conditions = {
        tag: f"({where[tag]} AND {check.considered} AND ({check.unexpected}))" for tag, check, _ in failed
    }
    tags = ", ".join(f"CASE WHEN {condition} THEN {tag} END" for tag, condition in conditions.items())
    return (
        f"SELECT *, unnest(list_filter([{tags}], _i -> _i IS NOT NULL)) AS _quality_check "
        f"FROM {qualified(*split_qualified(suite.table))} WHERE {' OR '.join(conditions.values())}"
    )


def _prepare(con: duckdb.DuckDBPyConnection, table: str, target: str) -> None:
    """Create the quarantine table from the governed table's shape; add columns it gained."""
    source = qualified(*split_qualified(table))
    meta = ", ".join(f"NULL::{kind} AS {name}" for name, kind in _META_COLUMNS.items())
    con.execute(f"CREATE TABLE IF NOT EXISTS {_sql_name(target)} AS SELECT *, {meta} FROM {source} LIMIT 0")
    schema, name = split_qualified(table)
    current = table_columns(con, target) or {}
    for column, kind in con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, name],
    ).fetchall():
        if column not in current:
            con.execute(f"ALTER TABLE {_sql_name(target)} ADD COLUMN {quote(column)} {kind}")


def _sql_name(target: str) -> str:
    return qualified(*split_qualified(target))
