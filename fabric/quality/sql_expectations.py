"""Great Expectations expectation types as DuckDB SQL, with GE's pandas-engine semantics.

`compile_expectation` turns one suite expectation into a check Fabric computes in the database,
or into `Unsupported` with the reason it has to run through GE instead. Three shapes:

- `RowCheck` (GE's map expectations: not null, in set, between, regex, unique, pairs, ...): a
  per-row SQL condition for "unexpected", one for "missing" (rows GE ignores), or for
  uniqueness the key whose duplicates are unexpected. The same conditions select the failing
  rows for quarantine.
- `AggregateCheck` (row count, min, max, mean, sum, proportions, distinct counts): SQL
  aggregates and the comparison GE applies to the observed value.
- `SchemaCheck` (column exists, column count): decided from the table's columns, no scan.

Semantics follow what GE's pandas engine sees after DuckDB hands it a dataframe: NaN in a
floating column is missing (pandas treats it as null), DECIMAL becomes float64, strings compare
by code point, regexes are Python's (see `fabric.quality.regex`). Anything outside what is
mirrored exactly (other column types, suite parameters, row conditions, mixed-type value sets,
case-insensitive regexes, ...) is `Unsupported` and runs through GE, labelled `ge-pandas`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fabric.identifiers import quote
from fabric.quality.regex import to_re2, untranslatable_reason
from fabric.quality.suites import ExpectationSpec

Kind = Literal["integer", "float", "decimal", "string", "boolean", "date", "timestamp", "other"]
NUMERIC: frozenset[Kind] = frozenset({"integer", "float", "decimal"})
# Types pandas receives as plain hashable scalars, so equality and uniqueness mean the same.
PLAIN: frozenset[Kind] = NUMERIC | {"string", "boolean", "date", "timestamp"}
ANY_KIND: frozenset[Kind] = PLAIN | {"other"}

_INTEGER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
)
_KINDS: dict[str, Kind] = {
    "FLOAT": "float",
    "DOUBLE": "float",
    "VARCHAR": "string",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
}
_MAP_KWARGS = frozenset({"column", "mostly"})
_BETWEEN_KWARGS = frozenset({"min_value", "max_value", "strict_min", "strict_max"})


@dataclass(frozen=True)
class Column:
    """A column of the validated table and how pandas would see its values."""

    name: str
    kind: Kind

    @property
    def value(self) -> str:
        """The SQL expression of the value GE's pandas engine compares."""
        ref = quote(self.name)
        if self.kind == "float":
            return f"(CASE WHEN isnan({ref}) THEN NULL ELSE {ref} END)"  # pandas: NaN is missing
        if self.kind == "decimal":
            return f"CAST({ref} AS DOUBLE)"  # DuckDB hands DECIMAL to pandas as float64
        return ref


def column_kind(duckdb_type: str) -> Kind:
    """The kind of a DuckDB column type (`information_schema.columns.data_type`)."""
    name = duckdb_type.upper()
    if name in _INTEGER_TYPES:
        return "integer"
    if name.startswith("DECIMAL"):
        return "decimal"
    return _KINDS.get(name, "other")


@dataclass(frozen=True)
class Unsupported:
    """Why an expectation is not computed in SQL (it runs through GE's pandas engine)."""

    reason: str


@dataclass(frozen=True)
class RowCheck:
    """A map expectation: each row is expected, unexpected, or missing (ignored).

    Exactly one of `unexpected` (a SQL condition on a non-missing row) and `duplicate_keys`
    (SQL expressions whose repeated combinations are unexpected) is set. `missing` is None for
    not-null/null expectations, which count over every row, like GE.
    """

    spec: ExpectationSpec
    missing: str | None
    unexpected: str | None = None
    duplicate_keys: tuple[str, ...] = ()
    example: str | None = None  # SQL expression of an unexpected value shown in results
    mostly: float = 1.0

    @property
    def considered(self) -> str:
        """The condition of rows GE evaluates (not missing)."""
        return f"NOT ({self.missing})" if self.missing else "true"

    def result(
        self, element_count: int, missing_count: int, unexpected_count: int
    ) -> tuple[bool, float | None, dict[str, Any]]:
        """GE's success, unexpected percent and count summary for one partition."""
        summary: dict[str, Any] = {"element_count": element_count, "unexpected_count": unexpected_count}
        if self.missing is None:  # GE's not-null/null: percentages of all rows
            percent = unexpected_count / element_count * 100 if element_count > 0 else None
            success = element_count == 0 or (
                (element_count - unexpected_count) / element_count >= self.mostly
            )
            return success, percent, summary
        summary["missing_count"] = missing_count
        considered = element_count - missing_count
        percent = unexpected_count / considered * 100 if element_count > 0 and considered > 0 else None
        success = element_count == 0 or considered == 0 or _mostly(considered, unexpected_count, self.mostly)
        return success, percent, summary


@dataclass(frozen=True)
class AggregateCheck:
    """An aggregate expectation: SQL aggregates, then GE's comparison on the observed value.

    `evaluate` receives the aggregates' values (in order) and the partition's row count and
    returns `(success, observed_value)`.
    """

    spec: ExpectationSpec
    aggregates: tuple[str, ...]
    evaluate: Callable[[Sequence[Any], int], tuple[bool, Any]]


@dataclass(frozen=True)
class SchemaCheck:
    """Decided from the table's columns alone."""

    spec: ExpectationSpec
    success: bool
    observed: Any


SqlCheck = RowCheck | AggregateCheck | SchemaCheck


def compile_expectation(spec: ExpectationSpec, columns: Mapping[str, Column]) -> SqlCheck | Unsupported:
    """The SQL check for `spec` on a table with `columns`, or why there is none.

    Columns the expectation names must exist (the caller fails missing ones on its own).
    """
    compiler = _COMPILERS.get(spec.type)
    if compiler is None:
        return Unsupported(f"{spec.type} is not computed in SQL")
    kwargs = dict(spec.kwargs)
    if kwargs.get("row_condition") is not None or kwargs.get("condition_parser") is not None:
        return Unsupported("row_condition is evaluated by GE")
    kwargs.pop("row_condition", None)
    kwargs.pop("condition_parser", None)
    allowed = _ALLOWED_KWARGS[spec.type]
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        return Unsupported(f"argument(s) {unknown} are evaluated by GE")
    try:
        return compiler(spec, kwargs, columns)
    except _NotTranslatable as exc:
        return Unsupported(str(exc))


def sql_supported_types() -> frozenset[str]:
    """Expectation types Fabric can compute in SQL (given supported column types and kwargs)."""
    return frozenset(_COMPILERS)


class _NotTranslatable(Exception):
    pass


def _mostly(considered: int, unexpected: int, mostly: float) -> bool:
    """GE's `mostly` rule, with its float arithmetic."""
    return (float(considered) - float(unexpected)) / float(considered) >= mostly


def _column(
    kwargs: Mapping[str, Any], columns: Mapping[str, Column], key: str, kinds: frozenset[Kind]
) -> Column:
    name = kwargs.get(key)
    if not isinstance(name, str) or name not in columns:
        raise _NotTranslatable(f"{key} must name a column of the table")
    column = columns[name]
    if column.kind not in kinds:
        raise _NotTranslatable(f"column {name} has a type Fabric does not compare in SQL ({column.kind})")
    return column


def _mostly_kwarg(kwargs: Mapping[str, Any]) -> float:
    mostly = kwargs.get("mostly", 1.0)
    if not _is_number(mostly) or not 0 <= mostly <= 1:
        raise _NotTranslatable("mostly must be a number between 0 and 1")
    return float(mostly)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _flag(kwargs: Mapping[str, Any], key: str) -> bool:
    value = kwargs.get(key) or False
    if not isinstance(value, bool):
        raise _NotTranslatable(f"{key} must be true or false")
    return value


def _bounds(kwargs: Mapping[str, Any], *, required: bool) -> tuple[Any, Any, bool, bool]:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    for value in (low, high):
        if value is not None and not _is_number(value):
            raise _NotTranslatable("bounds must be numbers (suite parameters and dates go to GE)")
    if required and low is None and high is None:
        raise _NotTranslatable("min_value and max_value cannot both be None")
    if low is not None and high is not None and low > high:
        raise _NotTranslatable("min_value is greater than max_value")
    return low, high, _flag(kwargs, "strict_min"), _flag(kwargs, "strict_max")


def _literal(value: Any, kind: Kind) -> str:
    if kind == "string":
        return "'" + str(value).replace("'", "''") + "'"
    if isinstance(value, int) or (kind == "integer" and float(value).is_integer()):
        return str(int(value))
    return f"CAST('{float(value)!r}' AS DOUBLE)"


def _range_condition(expr: str, kind: Kind, low: Any, high: Any, strict_min: bool, strict_max: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{expr} {'>' if strict_min else '>='} {_literal(low, kind)}")
    if high is not None:
        parts.append(f"{expr} {'<' if strict_max else '<='} {_literal(high, kind)}")
    return " AND ".join(parts)


def _between_python(value: Any, low: Any, high: Any, strict_min: bool, strict_max: bool) -> bool:
    above = low is None or (value > low if strict_min else value >= low)
    below = high is None or (value < high if strict_max else value <= high)
    return bool(above and below)


# --- row (map) expectations -------------------------------------------------------------------


def _not_null(spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]) -> SqlCheck:
    value = _column(kwargs, columns, "column", ANY_KIND).value  # NULL is NULL whatever the type
    return RowCheck(spec, missing=None, unexpected=f"{value} IS NULL", mostly=_mostly_kwarg(kwargs))


def _null(spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]) -> SqlCheck:
    value = _column(kwargs, columns, "column", ANY_KIND).value
    return RowCheck(
        spec, missing=None, unexpected=f"{value} IS NOT NULL", example=value, mostly=_mostly_kwarg(kwargs)
    )


def _in_set(negated: bool) -> Callable[[ExpectationSpec, Mapping[str, Any], Mapping[str, Column]], SqlCheck]:
    def compile_in_set(
        spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]
    ) -> SqlCheck:
        column = _column(kwargs, columns, "column", NUMERIC | {"string", "boolean"})
        members = _set_literals(kwargs.get("value_set"), column.kind)
        inside = f"{column.value} IN ({', '.join(members)})" if members else "false"
        return RowCheck(
            spec,
            missing=f"{column.value} IS NULL",
            unexpected=inside if negated else f"NOT ({inside})",
            example=column.value,
            mostly=_mostly_kwarg(kwargs),
        )

    return compile_in_set


def _set_literals(value_set: Any, kind: Kind) -> list[str]:
    """SQL literals of the members that can equal a value of `kind`, as pandas' isin decides."""
    if not isinstance(value_set, list):
        raise _NotTranslatable("value_set must be a list")
    literals: list[str] = []
    for member in value_set:
        if kind == "string":
            if not isinstance(member, str):
                raise _NotTranslatable("value_set of a text column must hold only text")
            literals.append(_literal(member, kind))
        elif kind == "boolean":
            if not isinstance(member, bool):
                raise _NotTranslatable("value_set of a boolean column must hold only booleans")
            literals.append("true" if member else "false")
        else:
            if not _is_number(member) or member in (float("inf"), float("-inf")):
                raise _NotTranslatable("value_set of a numeric column must hold only finite numbers")
            if kind == "integer" and not float(member).is_integer():
                continue  # can never equal an integer
            literals.append(_literal(member, kind))
    return literals


def _between(spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]) -> SqlCheck:
    column = _column(kwargs, columns, "column", NUMERIC)
    bounds = _bounds(kwargs, required=True)
    condition = _range_condition(column.value, column.kind, *bounds)
    return RowCheck(
        spec,
        missing=f"{column.value} IS NULL",
        unexpected=f"NOT ({condition})",
        example=column.value,
        mostly=_mostly_kwarg(kwargs),
    )


def _regex(negated: bool) -> Callable[[ExpectationSpec, Mapping[str, Any], Mapping[str, Column]], SqlCheck]:
    def compile_regex(
        spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]
    ) -> SqlCheck:
        column = _column(kwargs, columns, "column", frozenset({"string"}))
        pattern = kwargs.get("regex", "(?s).*")
        if not isinstance(pattern, str):
            raise _NotTranslatable("regex must be a string")
        translated = to_re2(pattern)
        if translated is None:
            raise _NotTranslatable(f"regex {pattern!r} {untranslatable_reason(pattern)}")
        matches = f"regexp_matches({column.value}, {_literal(translated, 'string')})"
        return RowCheck(
            spec,
            missing=f"{column.value} IS NULL",
            unexpected=matches if negated else f"NOT {matches}",
            example=column.value,
            mostly=_mostly_kwarg(kwargs),
        )

    return compile_regex


def _lengths_between(
    spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]
) -> SqlCheck:
    column = _column(kwargs, columns, "column", frozenset({"string"}))
    bounds = _bounds(kwargs, required=True)
    condition = _range_condition(f"length({column.value})", "integer", *bounds)
    return RowCheck(
        spec,
        missing=f"{column.value} IS NULL",
        unexpected=f"NOT ({condition})",
        example=column.value,
        mostly=_mostly_kwarg(kwargs),
    )


def _lengths_equal(
    spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]
) -> SqlCheck:
    column = _column(kwargs, columns, "column", frozenset({"string"}))
    length = kwargs.get("value")
    if not _is_number(length):
        raise _NotTranslatable("value must be a number")
    return RowCheck(
        spec,
        missing=f"{column.value} IS NULL",
        unexpected=f"length({column.value}) <> {_literal(length, 'integer')}",
        example=column.value,
        mostly=_mostly_kwarg(kwargs),
    )


def _unique(spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]) -> SqlCheck:
    value = _column(kwargs, columns, "column", PLAIN).value
    return RowCheck(
        spec,
        missing=f"{value} IS NULL",
        duplicate_keys=(value,),
        example=value,
        mostly=_mostly_kwarg(kwargs),
    )


def _compound_unique(
    spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]
) -> SqlCheck:
    names = kwargs.get("column_list")
    if not isinstance(names, list) or not names or len(set(names)) != len(names):
        raise _NotTranslatable("column_list must list distinct columns")
    values = [_column({"column": n}, columns, "column", PLAIN).value for n in names]
    nulls = [f"{v} IS NULL" for v in values]
    ignore = kwargs.get("ignore_row_if", "all_values_are_missing")
    missing = {
        "all_values_are_missing": " AND ".join(nulls),
        "any_value_is_missing": " OR ".join(nulls),
        "never": "false",
    }.get(ignore)
    if missing is None:
        raise _NotTranslatable(f"ignore_row_if {ignore!r} is evaluated by GE")
    return RowCheck(
        spec,
        missing=missing,
        duplicate_keys=tuple(values),
        example=_struct(values),
        mostly=_mostly_kwarg(kwargs),
    )


def _pair(
    operator: str | None,
) -> Callable[[ExpectationSpec, Mapping[str, Any], Mapping[str, Column]], SqlCheck]:
    """Pair expectations; `operator` None means `>` or `>=` from `or_equal`."""

    def compile_pair(
        spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]
    ) -> SqlCheck:
        a = _column(kwargs, columns, "column_A", NUMERIC | {"string"})
        b = _column(kwargs, columns, "column_B", NUMERIC | {"string"})
        if (a.kind == "string") != (b.kind == "string"):
            raise _NotTranslatable("column_A and column_B must both be numeric or both be text")
        op = operator or (">=" if _flag(kwargs, "or_equal") else ">")
        ignore = kwargs.get("ignore_row_if", "both_values_are_missing")
        missing = {
            "both_values_are_missing": f"{a.value} IS NULL AND {b.value} IS NULL",
            "either_value_is_missing": f"{a.value} IS NULL OR {b.value} IS NULL",
            "neither": "false",
        }.get(ignore)
        if missing is None:
            raise _NotTranslatable(f"ignore_row_if {ignore!r} is evaluated by GE")
        return RowCheck(
            spec,
            missing=missing,
            # a comparison with a missing value is false in pandas, so the row is unexpected
            unexpected=f"NOT coalesce({a.value} {op} {b.value}, false)",
            example=_struct([a.value, b.value]),
            mostly=_mostly_kwarg(kwargs),
        )

    return compile_pair


def _struct(values: Sequence[str]) -> str:
    return "struct_pack(" + ", ".join(f"v{i} := {v}" for i, v in enumerate(values)) + ")"


# --- aggregate expectations -------------------------------------------------------------------


def _row_count_between(
    spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]
) -> SqlCheck:
    low, high, strict_min, strict_max = _bounds(kwargs, required=False)
    return AggregateCheck(
        spec,
        (),
        lambda _values, rows: (_between_python(rows, low, high, strict_min, strict_max), rows),
    )


def _row_count_equal(
    spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]
) -> SqlCheck:
    expected = kwargs.get("value")
    if not _is_number(expected):
        raise _NotTranslatable("value must be a number")
    return AggregateCheck(spec, (), lambda _values, rows: (rows == expected, rows))


def _observed_between(
    kwargs: Mapping[str, Any], aggregates: tuple[str, ...], observe: Callable[[Sequence[Any], int], Any]
) -> Callable[[ExpectationSpec], AggregateCheck]:
    """An aggregate check comparing `observe(values, rows)` with the bounds, like GE does."""
    low, high, strict_min, strict_max = _bounds(kwargs, required=False)

    def evaluate(values: Sequence[Any], rows: int) -> tuple[bool, Any]:
        observed = observe(values, rows)
        if observed is None or observed != observed:  # GE: no value (or NaN) fails
            return False, None
        return _between_python(observed, low, high, strict_min, strict_max), observed

    return lambda spec: AggregateCheck(spec, aggregates, evaluate)


def _proportion_non_null(
    spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]
) -> SqlCheck:
    value = _column(kwargs, columns, "column", ANY_KIND).value
    return _observed_between(kwargs, (f"count({value})",), lambda v, rows: v[0] / rows if rows else 0)(spec)


def _column_statistic(
    function: str,
) -> Callable[[ExpectationSpec, Mapping[str, Any], Mapping[str, Column]], SqlCheck]:
    def compile_statistic(
        spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]
    ) -> SqlCheck:
        column = _column(kwargs, columns, "column", NUMERIC)
        expression = f"{function}({column.value})"
        if function == "sum":  # pandas sums an empty or all-missing column to 0
            expression = f"coalesce({expression}, 0)"
        return _observed_between(kwargs, (expression,), lambda v, _rows: _number(v[0]))(spec)

    return compile_statistic


def _number(value: Any) -> Any:
    """DuckDB's HUGEINT sums arrive as int, averages as float; keep them plain numbers."""
    return value if value is None or isinstance(value, int | float) else float(value)


def _distinct_count(
    spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]
) -> SqlCheck:
    value = _column(kwargs, columns, "column", PLAIN).value
    return _observed_between(kwargs, (f"count(DISTINCT {value})",), lambda v, _rows: v[0])(spec)


def _proportion_unique(
    spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]
) -> SqlCheck:
    value = _column(kwargs, columns, "column", PLAIN).value
    return _observed_between(
        kwargs,
        (f"count(DISTINCT {value})", f"count({value})"),
        lambda v, _rows: v[0] / v[1] if v[1] else 0,
    )(spec)


# --- schema expectations ----------------------------------------------------------------------


def _column_exists(
    spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]
) -> SqlCheck:
    if kwargs.get("column_index") is not None:
        raise _NotTranslatable("column_index is evaluated by GE")
    _column(kwargs, columns, "column", ANY_KIND)
    return SchemaCheck(spec, True, {})


def _column_count_equal(
    spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]
) -> SqlCheck:
    expected = kwargs.get("value")
    if not _is_number(expected):
        raise _NotTranslatable("value must be a number")
    return SchemaCheck(spec, len(columns) == expected, len(columns))


def _column_count_between(
    spec: ExpectationSpec, kwargs: Mapping[str, Any], columns: Mapping[str, Column]
) -> SqlCheck:
    low, high, strict_min, strict_max = _bounds(kwargs, required=False)
    count = len(columns)
    return SchemaCheck(spec, _between_python(count, low, high, strict_min, strict_max), count)


_Compiler = Callable[[ExpectationSpec, Mapping[str, Any], Mapping[str, Column]], SqlCheck]
_COMPILERS: dict[str, _Compiler] = {
    "expect_column_values_to_not_be_null": _not_null,
    "expect_column_values_to_be_null": _null,
    "expect_column_values_to_be_in_set": _in_set(negated=False),
    "expect_column_values_to_not_be_in_set": _in_set(negated=True),
    "expect_column_values_to_be_between": _between,
    "expect_column_values_to_match_regex": _regex(negated=False),
    "expect_column_values_to_not_match_regex": _regex(negated=True),
    "expect_column_value_lengths_to_be_between": _lengths_between,
    "expect_column_value_lengths_to_equal": _lengths_equal,
    "expect_column_values_to_be_unique": _unique,
    "expect_compound_columns_to_be_unique": _compound_unique,
    "expect_column_pair_values_a_to_be_greater_than_b": _pair(None),
    "expect_column_pair_values_to_be_equal": _pair("="),
    "expect_table_row_count_to_be_between": _row_count_between,
    "expect_table_row_count_to_equal": _row_count_equal,
    "expect_column_proportion_of_non_null_values_to_be_between": _proportion_non_null,
    "expect_column_min_to_be_between": _column_statistic("min"),
    "expect_column_max_to_be_between": _column_statistic("max"),
    "expect_column_mean_to_be_between": _column_statistic("avg"),
    "expect_column_sum_to_be_between": _column_statistic("sum"),
    "expect_column_unique_value_count_to_be_between": _distinct_count,
    "expect_column_proportion_of_unique_values_to_be_between": _proportion_unique,
    "expect_column_to_exist": _column_exists,
    "expect_table_column_count_to_equal": _column_count_equal,
    "expect_table_column_count_to_be_between": _column_count_between,
}
_ALLOWED_KWARGS: dict[str, frozenset[str]] = {
    "expect_column_values_to_not_be_null": _MAP_KWARGS,
    "expect_column_values_to_be_null": _MAP_KWARGS,
    "expect_column_values_to_be_in_set": _MAP_KWARGS | {"value_set"},
    "expect_column_values_to_not_be_in_set": _MAP_KWARGS | {"value_set"},
    "expect_column_values_to_be_between": _MAP_KWARGS | _BETWEEN_KWARGS,
    "expect_column_values_to_match_regex": _MAP_KWARGS | {"regex"},
    "expect_column_values_to_not_match_regex": _MAP_KWARGS | {"regex"},
    "expect_column_value_lengths_to_be_between": _MAP_KWARGS | _BETWEEN_KWARGS,
    "expect_column_value_lengths_to_equal": _MAP_KWARGS | {"value"},
    "expect_column_values_to_be_unique": _MAP_KWARGS,
    "expect_compound_columns_to_be_unique": frozenset({"column_list", "mostly", "ignore_row_if"}),
    "expect_column_pair_values_a_to_be_greater_than_b": frozenset(
        {"column_A", "column_B", "mostly", "or_equal", "ignore_row_if"}
    ),
    "expect_column_pair_values_to_be_equal": frozenset({"column_A", "column_B", "mostly", "ignore_row_if"}),
    "expect_table_row_count_to_be_between": _BETWEEN_KWARGS,
    "expect_table_row_count_to_equal": frozenset({"value"}),
    "expect_column_proportion_of_non_null_values_to_be_between": _BETWEEN_KWARGS | {"column"},
    "expect_column_min_to_be_between": _BETWEEN_KWARGS | {"column"},
    "expect_column_max_to_be_between": _BETWEEN_KWARGS | {"column"},
    "expect_column_mean_to_be_between": _BETWEEN_KWARGS | {"column"},
    "expect_column_sum_to_be_between": _BETWEEN_KWARGS | {"column"},
    "expect_column_unique_value_count_to_be_between": _BETWEEN_KWARGS | {"column"},
    "expect_column_proportion_of_unique_values_to_be_between": _BETWEEN_KWARGS | {"column"},
    "expect_column_to_exist": frozenset({"column", "column_index"}),
    "expect_table_column_count_to_equal": frozenset({"value"}),
    "expect_table_column_count_to_be_between": frozenset({"min_value", "max_value"}),
}
