"""The features table as a model sees it: which columns are features, and the signature check."""

from __future__ import annotations

import re
from collections.abc import Sequence

import duckdb

from fabric.config import ScoringConfig
from fabric.errors import ModelError, WarehouseError
from fabric.identifiers import qualified, quote, split_qualified
from fabric.scoring.registry import FeatureSpec

AS_OF_COLUMN = "as_of_date"
CRM_KEY_COLUMN = "crm_customer_id"
LABEL_COLUMN = "churned_within_horizon"
_NUMERIC = re.compile(
    r"^(U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|FLOAT|DOUBLE|DECIMAL\(\d+,\d+\)|BOOLEAN)$"
)


def key_columns(scoring: ScoringConfig) -> tuple[str, ...]:
    """Columns of the features table that identify a row rather than describe a customer."""
    return (AS_OF_COLUMN, scoring.entity_key, CRM_KEY_COLUMN)


def relation(table: str) -> str:
    """`schema.table` from configuration, validated and quoted for SQL text."""
    return qualified(*split_qualified(table))


def is_numeric(dtype: str) -> bool:
    return bool(_NUMERIC.match(dtype.upper()))


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Column -> DuckDB type of `schema.table`, in table order; WarehouseError if missing."""
    schema, name = split_qualified(table)
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, name],
    ).fetchall()
    if not rows:
        raise WarehouseError(f"{table} does not exist in the warehouse (run the dbt models first)")
    return {str(column): str(dtype) for column, dtype in rows}


def feature_specs(columns: dict[str, str], scoring: ScoringConfig) -> list[FeatureSpec]:
    """The model inputs: every numeric non-key column, in table order."""
    keys = set(key_columns(scoring))
    return [FeatureSpec(name=c, dtype=t) for c, t in columns.items() if c not in keys and is_numeric(t)]


def check_signature(expected: Sequence[FeatureSpec], columns: dict[str, str], what: str, table: str) -> None:
    """Raise ModelError listing every difference that stops `what` from scoring `table`.

    A type change within numeric types (INTEGER -> BIGINT, DECIMAL -> DOUBLE) is accepted:
    features are read as DOUBLE. Extra columns in the table are ignored.
    """
    missing = [f"{f.name} ({f.dtype})" for f in expected if f.name not in columns]
    changed = [
        f"{f.name}: {f.dtype} -> {columns[f.name]}"
        for f in expected
        if f.name in columns
        and columns[f.name] != f.dtype
        and not (is_numeric(columns[f.name]) and is_numeric(f.dtype))
    ]
    if not missing and not changed:
        return
    lines = [f"{what} does not match {table}:"]
    if missing:
        lines.append(f"  missing columns: {', '.join(missing)}")
    if changed:
        lines.append(f"  incompatible types: {', '.join(changed)}")
    lines.append("  Restore the columns in the dbt model or retrain (`fabric train`).")
    raise ModelError("\n".join(lines))


def double_columns(names: Sequence[str]) -> str:
    """`CAST(x AS DOUBLE) AS x, ...` for a SELECT list (NULL stays NULL, i.e. NaN later)."""
    return ", ".join(f"CAST({quote(n)} AS DOUBLE) AS {quote(n)}" for n in names)
