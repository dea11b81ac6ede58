"""Run compiled SQL checks in DuckDB: one aggregate scan for every partition of a window.

All row and aggregate checks of a suite become columns of a single `GROUP BY partition` query;
each uniqueness check adds a `GROUP BY partition, key` subquery to the same statement. Results
are GE-compatible `ExpectationOutcome`s. Example unexpected values (the ten most frequent per
partition, with their exact counts) are added afterwards by `add_examples`, only for checks
that found unexpected rows, and read from the quarantine table when it holds those rows.

Nothing is copied out of the database but one row of numbers per partition, so memory does not
grow with the table.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any

import duckdb

from fabric.identifiers import qualified, quote, split_qualified
from fabric.quality.results import WITHHELD, ExpectationOutcome, finite, jsonable
from fabric.quality.sql_expectations import (
    AggregateCheck,
    Column,
    RowCheck,
    SqlCheck,
    column_kind,
)

EXAMPLES = 10  # unexpected values kept per failed expectation and partition, like GE's SUMMARY


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, Column] | None:
    """The columns of `schema.table` in table order, or None if the table does not exist."""
    schema, name = split_qualified(table)
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, name],
    ).fetchall()
    if not rows:
        return None
    return {str(n): Column(str(n), column_kind(str(t))) for n, t in rows}


def partition_filter(partition_column: str, partitions: Sequence[date]) -> str:
    """A WHERE condition selecting `partitions`; a range when they are contiguous (zone maps)."""
    days = sorted(set(partitions))
    column = quote(partition_column)
    condition = f"{column} BETWEEN DATE '{days[0]}' AND DATE '{days[-1]}'"
    if (days[-1] - days[0]).days + 1 != len(days):
        condition += f" AND {column} IN ({', '.join(f'DATE {d.isoformat()!r}' for d in days)})"
    return condition


def run_checks(
    con: duckdb.DuckDBPyConnection,
    table: str,
    partition_column: str,
    checks: Sequence[SqlCheck],
    partitions: Sequence[date],
    pii: frozenset[str] = frozenset(),
) -> tuple[dict[date, int], dict[date, list[ExpectationOutcome]]]:
    """Row counts and outcomes (in `checks` order) for every partition; zero-row ones included.

    The outcomes carry no example values yet (see `add_examples`).
    """
    query = _ScanQuery(table, partition_column, checks, partitions)
    values = query.run(con)
    rows: dict[date, int] = {}
    outcomes: dict[date, list[ExpectationOutcome]] = {}
    for day in partitions:
        row = values[day]
        rows[day] = int(row["_rows"])
        outcomes[day] = [
            _outcome(check, query.values_for(index, row), rows[day], pii)
            for index, check in enumerate(checks)
        ]
    return rows, outcomes


def add_examples(
    con: duckdb.DuckDBPyConnection,
    table: str,
    partition_column: str,
    checks: Sequence[SqlCheck],
    outcomes: Mapping[date, Sequence[ExpectationOutcome]],
    pii: frozenset[str] = frozenset(),
    quarantined: Mapping[str, tuple[str, Collection[date]]] | None = None,
) -> dict[date, list[ExpectationOutcome]]:
    """`outcomes` with the most frequent unexpected values of each row check that found any.

    `quarantined` maps an expectation id to a relation holding exactly its unexpected rows for
    some partitions (the quarantine table, filtered), and those partitions: reading those few
    rows spares a scan of the table.
    """
    by_id = {c.spec.expectation_id: c for c in checks if isinstance(c, RowCheck) and c.example}
    wanted: dict[str, list[date]] = {}
    for day, found in outcomes.items():
        for outcome in found:
            if outcome.expectation_id in by_id and outcome.unexpected_count:
                wanted.setdefault(outcome.expectation_id, []).append(day)
    examples: dict[tuple[date, str], Any] = {}
    table_source = qualified(*split_qualified(table))
    for expectation_id, days in wanted.items():
        check = by_id[expectation_id]
        held, covered = (quarantined or {}).get(expectation_id, (table_source, ()))
        for source, some in (
            (held, [d for d in days if d in covered]),
            (table_source, [d for d in days if d not in covered]),
        ):
            if not some:
                continue
            for day, listed in _examples(con, source, partition_column, check, some).items():
                examples[(day, expectation_id)] = WITHHELD if pii & set(check.spec.columns) else listed
    return {
        day: [
            replace(
                o, observed_value={**o.observed_value, "unexpected_values": examples[(day, o.expectation_id)]}
            )
            if (day, o.expectation_id) in examples
            else o
            for o in found
        ]
        for day, found in outcomes.items()
    }


class _ScanQuery:
    """The single statement computing every check's numbers, grouped by partition."""

    def __init__(
        self, table: str, partition_column: str, checks: Sequence[SqlCheck], partitions: Sequence[date]
    ) -> None:
        self.source = qualified(*split_qualified(table))
        self.partition = quote(partition_column)
        self.where = partition_filter(partition_column, partitions)
        self.partitions = list(partitions)
        self.aggregates: dict[str, str] = {}  # SQL -> alias, shared between checks
        self.duplicates: dict[tuple[str, tuple[str, ...]], str] = {}  # (considered, keys) -> alias
        self.columns: list[list[str]] = []  # per check: aliases of its values, in order
        for check in checks:
            self.columns.append(self._plan(check))

    def _plan(self, check: SqlCheck) -> list[str]:
        if isinstance(check, RowCheck):
            missing = self._aggregate(f"count(*) FILTER (WHERE {check.missing})") if check.missing else ""
            if check.duplicate_keys:
                key = (check.considered, check.duplicate_keys)
                unexpected = self.duplicates.setdefault(key, f"_d{len(self.duplicates)}")
            else:
                condition = (
                    check.unexpected
                    if check.missing is None
                    else f"{check.considered} AND ({check.unexpected})"
                )
                unexpected = self._aggregate(f"count(*) FILTER (WHERE {condition})")
            return [missing, unexpected]
        if isinstance(check, AggregateCheck):
            return [self._aggregate(sql) for sql in check.aggregates]
        return []

    def _aggregate(self, sql: str) -> str:
        return self.aggregates.setdefault(sql, f"_a{len(self.aggregates)}")

    def sql(self) -> str:
        selected = "".join(f", {sql} AS {alias}" for sql, alias in self.aggregates.items())
        ctes = [
            f"_main AS (SELECT {self.partition} AS _partition, count(*) AS _rows{selected} "
            f"FROM {self.source} WHERE {self.where} GROUP BY ALL)"
        ]
        joins = ""
        for (considered, keys), alias in self.duplicates.items():
            ctes.append(
                f"{alias} AS (SELECT _partition, sum(_k) FILTER (WHERE _k > 1) AS {alias} FROM "
                f"(SELECT {self.partition} AS _partition, count(*) AS _k FROM {self.source} "
                f"WHERE {self.where} AND {considered} GROUP BY {self.partition}, {', '.join(keys)}) "
                "GROUP BY ALL)"
            )
            joins += f" LEFT JOIN {alias} USING (_partition)"
        dups = "".join(f", coalesce({alias}, 0) AS {alias}" for alias in self.duplicates.values())
        return f"WITH {', '.join(ctes)} SELECT _main.*{dups} FROM _main{joins}"

    def run(self, con: duckdb.DuckDBPyConnection) -> dict[date, dict[str, Any]]:
        cursor = con.execute(self.sql())
        names = [d[0] for d in cursor.description]
        found = {as_date(row[0]): dict(zip(names, row, strict=True)) for row in cursor.fetchall()}
        if len(found) < len(set(self.partitions)):
            empty = self._empty_row(con)
            for day in self.partitions:
                found.setdefault(day, empty)
        return found

    def _empty_row(self, con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        """The values of a partition without rows: what every aggregate gives on no input."""
        selected = "".join(f", {sql} AS {alias}" for sql, alias in self.aggregates.items())
        cursor = con.execute(f"SELECT count(*) AS _rows{selected} FROM {self.source} WHERE false")
        names = [d[0] for d in cursor.description]
        row = cursor.fetchone()
        assert row is not None
        values = dict(zip(names, row, strict=True))
        values.update({alias: 0 for alias in self.duplicates.values()})
        return values

    def values_for(self, index: int, row: Mapping[str, Any]) -> list[Any]:
        return [row[alias] if alias else 0 for alias in self.columns[index]]


def as_date(value: Any) -> date:
    """A DATE (or midnight TIMESTAMP) partition value as a date."""
    return value.date() if isinstance(value, datetime) else value


def _outcome(check: SqlCheck, values: Sequence[Any], rows: int, pii: frozenset[str]) -> ExpectationOutcome:
    spec = check.spec
    unexpected: int | None = None
    percent: float | None = None
    observed: Any
    if isinstance(check, RowCheck):
        missing, unexpected = int(values[0] or 0), int(values[1] or 0)
        success, raw_percent, observed = check.result(rows, missing, unexpected)
        percent = finite(raw_percent)
    elif isinstance(check, AggregateCheck):
        success, value = check.evaluate(values, rows)
        observed = jsonable(value)
        numeric = isinstance(observed, int | float) and not isinstance(observed, bool)
        if pii & set(spec.columns) and not numeric and observed is not None:
            observed = WITHHELD
    else:
        success, observed = check.success, check.observed
    return ExpectationOutcome(
        expectation_id=spec.expectation_id,
        expectation_type=spec.type,
        label=spec.label,
        column_name=spec.column_name,
        severity=spec.severity,
        success=success,
        observed_value=observed,
        unexpected_count=unexpected,
        unexpected_percent=percent,
    )


def failing_rows_query(table: str, partition_column: str, check: RowCheck, partitions: Sequence[date]) -> str:
    """`SELECT _t.* ...`: every row of `partitions` that `check` finds unexpected, uncapped.

    For uniqueness checks that is every row whose key occurs more than once in its partition
    (the rows GE counts); keys compare NULL-equal, like pandas' `duplicated`.
    """
    source = qualified(*split_qualified(table))
    partition = quote(partition_column)
    where = partition_filter(partition_column, partitions)
    if not check.duplicate_keys:
        return (
            f"SELECT _t.* FROM {source} AS _t WHERE {where} AND {check.considered} AND ({check.unexpected})"
        )
    keys = ", ".join(f"{key} AS _k{i}" for i, key in enumerate(check.duplicate_keys))
    duplicated = (
        f"SELECT {partition} AS _p, {keys} FROM {source} WHERE {where} AND {check.considered} "
        "GROUP BY ALL HAVING count(*) > 1"
    )
    matches = " AND ".join(
        f"{key} IS NOT DISTINCT FROM _d._k{i}" for i, key in enumerate(check.duplicate_keys)
    )
    return (
        f"SELECT _t.* FROM {source} AS _t SEMI JOIN ({duplicated}) AS _d "
        f"ON {partition} = _d._p AND {matches} WHERE {where} AND {check.considered}"
    )


def _examples(
    con: duckdb.DuckDBPyConnection,
    source: str,
    partition_column: str,
    check: RowCheck,
    partitions: Sequence[date],
) -> dict[date, list[dict[str, Any]]]:
    """The most frequent unexpected values per partition with their counts, read from `source`."""
    partition = quote(partition_column)
    where = partition_filter(partition_column, partitions)
    if check.duplicate_keys:
        grouped = (
            f"SELECT {partition} AS _partition, {check.example} AS _value, count(*) AS _n "
            f"FROM {source} WHERE {where} AND {check.considered} "
            f"GROUP BY {partition}, {', '.join(check.duplicate_keys)} HAVING count(*) > 1"
        )
    else:
        grouped = (
            f"SELECT {partition} AS _partition, {check.example} AS _value, count(*) AS _n "
            f"FROM {source} WHERE {where} AND {check.considered} AND ({check.unexpected}) GROUP BY ALL"
        )
    rows = con.execute(
        f"SELECT _partition, _value, _n FROM ({grouped}) "
        f"QUALIFY row_number() OVER (PARTITION BY _partition ORDER BY _n DESC, _value) <= {EXAMPLES} "
        "ORDER BY _partition, _n DESC, _value"
    ).fetchall()
    examples: dict[date, list[dict[str, Any]]] = {}
    for day, value, count in rows:
        shown = jsonable(list(value.values()) if isinstance(value, dict) else value)
        if shown is not None:
            examples.setdefault(as_date(day), []).append({"value": shown, "count": int(count)})
    return examples
