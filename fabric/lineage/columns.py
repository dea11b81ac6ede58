"""Column lineage of dbt models: which upstream columns each model column is computed from.

From the compiled SQL of each model (dbt's `run_results.json` / `manifest.json` of the build that
ran it) and the warehouse's column catalogue, sqlglot resolves every output column through the
CTEs, `select *` and joins down to columns of the tables the model reads. One hop per model
(the OpenLineage `columnLineage` facet names the job's own inputs); `trace_to_sources` follows
the hops down to the raw tables.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.lineage import Node, lineage
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import build_scope

log = logging.getLogger(__name__)

Relation = tuple[str, str]  # (schema, table) in the warehouse
ColumnRef = tuple[str, str, str]  # (schema, table, column)
Catalogue = Mapping[Relation, Mapping[str, str]]  # relation -> column -> type, in table order


@dataclass
class ModelColumnLineage:
    """For one model: output column -> the upstream columns it is computed from."""

    relation: Relation
    columns: dict[str, list[ColumnRef]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def _sqlglot_schema(catalog: str, catalogue: Catalogue) -> dict[str, Any]:
    nested: dict[str, Any] = {catalog: {}}
    for (schema, table), columns in catalogue.items():
        nested[catalog].setdefault(schema, {})[table] = dict(columns)
    return nested


def _leaves(node: Node) -> Iterable[Node]:
    for child in node.walk():
        if not child.downstream:
            yield child


def _union_branches(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.Union) and node.args.get("by_name"):
        return [*_union_branches(node.this), *_union_branches(node.expression)]
    return [node]


def _positional_unions(tree: Any) -> None:
    """Rewrite `UNION [ALL] BY NAME` as a positional union (missing columns as NULL), in place.

    sqlglot's lineage matches union branches by position; DuckDB's BY NAME matches by name.
    """
    for union in list(tree.find_all(exp.Union)):
        parent = union.parent
        if not union.args.get("by_name") or (isinstance(parent, exp.Union) and parent.args.get("by_name")):
            continue
        branches = [b for b in _union_branches(union) if isinstance(b, exp.Select)]
        if len(branches) != len(_union_branches(union)):
            continue
        names: list[str] = []
        for branch in branches:
            names.extend(n for n in branch.named_selects if n not in names)
        for branch in branches:
            by_name = {e.alias_or_name: e for e in branch.expressions}
            branch.set(
                "expressions",
                [by_name.get(n) or exp.alias_(exp.Null(), n, quoted=True) for n in names],
            )
        for node in [union, *union.find_all(exp.Union)]:
            node.set("by_name", None)


def _column_name(leaf: Node) -> str:
    column = leaf.expression
    if isinstance(column, exp.Column):
        return column.name
    return leaf.name.split(".")[-1].strip('"')


def model_column_lineage(
    relation: Relation, compiled_sql: str, catalog: str, catalogue: Catalogue
) -> ModelColumnLineage:
    """Column lineage of one model whose compiled SQL builds `relation`.

    `catalog` is the warehouse's catalog name (the DuckDB file's stem) that compiled dbt SQL
    qualifies relations with; `catalogue` must hold the model's upstream relations and the model
    itself (its columns are the ones resolved).
    """
    result = ModelColumnLineage(relation)
    outputs = list(catalogue.get(relation, {}))
    schema = _sqlglot_schema(catalog, catalogue)
    try:
        parsed = sqlglot.parse_one(compiled_sql, dialect="duckdb")
        qualified = qualify(parsed, schema=schema, dialect="duckdb", validate_qualify_columns=False)
        _positional_unions(qualified)
        scope = build_scope(qualified)
    except sqlglot.errors.SqlglotError as exc:
        result.errors["*"] = f"cannot parse the compiled SQL: {exc}"
        return result
    if scope is None:
        result.errors["*"] = "the compiled SQL is not a query"
        return result
    for column in outputs:
        try:
            root = lineage(column, qualified, schema=schema, dialect="duckdb", scope=scope, copy=False)
        except (sqlglot.errors.SqlglotError, ValueError, KeyError) as exc:
            result.errors[column] = str(exc)
            continue
        found: set[ColumnRef] = set()
        for leaf in _leaves(root):
            source = leaf.source
            if isinstance(source, exp.Table) and source.name and source.db:
                found.add((source.db, source.name, _column_name(leaf)))
        result.columns[column] = sorted(found)
    return result


def trace_to_sources(
    models: Mapping[Relation, ModelColumnLineage], column: ColumnRef, stop_schemas: Iterable[str] = ("raw",)
) -> set[ColumnRef]:
    """The columns of `stop_schemas` tables (default: raw) that `column` is ultimately computed
    from, following model-to-model column lineage (seeds and sources end a path)."""
    stop = set(stop_schemas)
    found: set[ColumnRef] = set()
    pending = [column]
    seen: set[ColumnRef] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        schema, table, name = current
        model = models.get((schema, table))
        if schema in stop or model is None:
            if schema in stop:
                found.add(current)
            continue
        pending.extend(model.columns.get(name, []))
    return found
