"""Contracts and schema drift for database tables (SQLite, PostgreSQL, MySQL/MariaDB).

What a table holds is known before a row is read: its catalog, each column's name and its
type in the source, which the reader maps to the Fabric type that holds every value of it
(`TableColumn`; `sql_database._table_columns`, `sqlite.catalog`). `govern_table` compares the
catalog with the entity's contract (`contract.resolve`) before the load reads anything:

- an entity declared without columns gets its contract inferred from the catalog (primary key
  columns not nullable), checked like a declaration (keys, date and cursor columns) and stored
  in `meta.contracts` (`Contract.as_yaml` prints it to freeze in fabric.yaml);
- `added`: a table column the contract does not have; `removed`: a contract column the table
  does not have; `retyped`: a contract column whose source type changed since the contract
  version was first checked against the table (`meta.contract_catalogs`) to one whose values
  do not all read exactly as the contract type (a declaration may deliberately differ from the
  source type, e.g. text parsed as timestamps: only a change of the source type is drift);
- `freeze` refuses the load with the diff (`ContractError` naming the table and the columns;
  the changes are recorded as `refused`); `evolve` adds the columns with their source type,
  widens retyped ones (integer < bigint < decimal < double, date < timestamp; a column that
  fits no wider type of its family becomes string) and makes removed ones nullable, as a new
  contract version whose catalog is stored; `quarantine` keeps the contract: rows with a value in
  an added column go to quarantine (`schema_drift`), retyped values that do not fit as
  `type_cast`. A removed column is read as NULL. Whatever the policy, the load is refused when
  a removed column is a primary key, date or cursor column, when a column that would enter the
  contract can only be read rounded (PostgreSQL `numeric` without a precision), or when its
  name is not a plain identifier.

The caller records the returned drift in `meta.schema_drift` (`contract.record_drift`) with the
returned action, as the file sources do, so the ingest assets report it the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date

import duckdb
from pydantic import ValidationError

from fabric.config import Column, ColumnType, SqliteEntity
from fabric.errors import SourceError
from fabric.ingest import contract as contracts
from fabric.ingest.contract import Change, Contract, ContractError, Drift, describe
from fabric.meta import utcnow

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_EXACT_NUMBERS: tuple[ColumnType, ...] = ("integer", "bigint", "decimal")
_INTEGER_DIGITS = {"integer": 10, "bigint": 19}
_MAX_PRECISION, _MAX_SCALE = 38, 18


@dataclass(frozen=True)
class TableColumn:
    """A column of the source table, as its catalog describes it."""

    observed: Column  # the Fabric type holding every value of the source type; nullable as the source
    source_type: str  # as the source's catalog names it, for messages
    exact: bool = True  # False: the reader can only give rounded values (PostgreSQL `numeric`)

    @property
    def name(self) -> str:
        return self.observed.name


def table_column(
    label: str,
    name: str,
    kind: ColumnType,
    nullable: bool,
    source_type: str,
    precision: int = 18,
    scale: int = 0,
    exact: bool = True,
) -> TableColumn:
    """A catalog column; SourceError when its name cannot be a Fabric column name."""
    if not _IDENTIFIER.match(name) or name.startswith("_fabric_"):
        raise SourceError(
            f"{label}: column {name!r} cannot be read: a column name must be a plain identifier "
            "(letters, digits, underscores) not starting with _fabric_; read a view that renames it"
        )
    if kind == "decimal":
        observed = Column(name=name, type=kind, precision=precision, scale=scale, nullable=nullable)
    else:
        observed = Column(name=name, type=kind, nullable=nullable)
    return TableColumn(observed, source_type, exact)


@dataclass(frozen=True)
class TablePlan:
    """What a load of a table reads, after its catalog was compared with the contract."""

    contract: Contract  # in force for this load (inferred or evolved ones are stored)
    spec: SqliteEntity  # the entity with the contract's columns
    added: tuple[TableColumn, ...]  # policy quarantine: read to quarantine the rows holding a value
    removed: frozenset[str]  # contract columns the table no longer has: read as NULL
    drift: Drift  # the changes, under the load's day
    action: str  # for `meta.schema_drift`: 'evolved', 'quarantined' or '' (no change)


def govern_table(
    con: duckdb.DuckDBPyConnection,
    source: str,
    entity: str,
    spec: SqliteEntity,
    catalog: Sequence[TableColumn],
    label: str,
    day: date,
    run_id: str,
) -> TablePlan:
    """Compare `catalog` with the contract of `source.entity` and apply its policy (see the
    module docstring). Raises ContractError (changes recorded as refused) or SourceError."""
    policy = spec.contract.policy
    found = {c.name: c for c in catalog}
    contract = contracts.resolve(con, source, entity, spec.columns, spec.primary_key, policy)
    if contract is None:  # nothing declared or stored: inferred, checked like a declaration, stored
        contract = _inferred(source, entity, spec, catalog, label)
        checked = _with_columns(spec, contract, label)
        contracts.store(con, contract, run_id)
        _store_catalog(con, contract, catalog, run_id)
        return TablePlan(contract, checked, (), frozenset(), Drift(), "")
    baseline = _stored_catalog(con, contract)
    if baseline is None:  # the first load of this declaration: the types it was made against
        _store_catalog(con, contract, catalog, run_id)
        baseline = {c.name: describe(c.observed) for c in catalog}
    known = {c.name for c in contract.columns}
    added = [c for c in catalog if c.name not in known]
    removed = [c for c in contract.columns if c.name not in found]
    retyped = [
        (c, found[c.name])
        for c in contract.columns
        if c.name in found
        and baseline.get(c.name) != describe(found[c.name].observed)
        and not fits(found[c.name].observed, c)
    ]
    changes = [Change("added", c.name, observed=describe(c.observed)) for c in added]
    changes += [Change("removed", c.name, expected=describe(c)) for c in removed]
    changes += [Change("retyped", c.name, describe(c), describe(t.observed)) for c, t in retyped]
    drift = Drift()
    drift.add(day, label, changes)
    if not changes:
        return TablePlan(contract, _with_columns(spec, contract, label), (), frozenset(), drift, "")
    needed = [c.name for c in removed if c.name in _filter_columns(spec)]
    if policy == "freeze" or needed:
        contracts.record_drift(con, contract, drift, "refused", run_id)
        diff = ", ".join(c.text() for c in changes)
        if needed:
            raise ContractError(
                f"{label}: {source}.{entity}: columns {needed} were removed from the table but the "
                f"entity reads by them (primary key, date or cursor column); nothing was loaded: {diff}"
            )
        raise ContractError(
            f"{label}: the table does not match the frozen contract of {source}.{entity} (policy "
            f"freeze), nothing was loaded: {diff}. Update the columns in fabric.yaml, change the "
            "table back, or set contract.policy to evolve or quarantine."
        )
    if policy == "evolve":
        contract = _evolve(con, contract, catalog, added, removed, retyped, label, run_id)
    return TablePlan(
        contract,
        _with_columns(spec, contract, label),
        tuple(added) if policy == "quarantine" else (),
        frozenset(c.name for c in removed),
        drift,
        "evolved" if policy == "evolve" else "quarantined",
    )


def fits(observed: Column, expected: Column) -> bool:
    """Whether every value of type `observed` reads exactly as type `expected` (a double is
    approximate by declaration)."""
    if expected.type == "string" or describe(observed) == describe(expected):
        return True
    if expected.type == "double":
        return observed.type in (*_EXACT_NUMBERS, "double")
    if expected.type == "timestamp":
        return observed.type == "date"
    if observed.type in _EXACT_NUMBERS and expected.type in ("bigint", "decimal"):
        return _digits(observed) <= _digits(expected) and _scale(observed) <= _scale(expected)
    return False


def widened(expected: Column, observed: Column) -> Column:
    """The narrowest column holding every value of both types: the wider of one family (for
    decimals, the larger integer part and scale), else string."""
    if fits(observed, expected):
        return expected
    if fits(expected, observed):
        update: dict[str, object] = {"type": observed.type, "precision": observed.precision,
                                     "scale": observed.scale}  # fmt: skip
        if observed.type != expected.type:
            update["format"] = None
        return expected.model_copy(update=update)
    if expected.type in _EXACT_NUMBERS and observed.type in _EXACT_NUMBERS:
        scale = max(_scale(expected), _scale(observed))
        precision = max(_digits(expected), _digits(observed)) + scale
        if precision <= _MAX_PRECISION and scale <= _MAX_SCALE:
            return expected.model_copy(update={"type": "decimal", "precision": precision, "scale": scale})
    return expected.model_copy(update={"type": "string", "format": None})


def _digits(column: Column) -> int:
    """Digits before the point of an exact number type."""
    return _INTEGER_DIGITS.get(column.type, column.precision - column.scale)


def _scale(column: Column) -> int:
    return column.scale if column.type == "decimal" else 0


def _filter_columns(spec: SqliteEntity) -> set[str]:
    """Columns a load cannot do without: the primary key, the date and cursor columns."""
    return {*spec.primary_key, *filter(None, [spec.date_column, spec.cursor_column])}


def _rounded(columns: Sequence[TableColumn], label: str, what: str) -> None:
    """SourceError when a column entering a contract can only be read rounded."""
    for column in columns:
        if not column.exact:
            raise SourceError(
                f"{label}: column {column.name} is {column.source_type} without a precision of at "
                f"most 38 digits, which the scanner reads as DOUBLE (rounded), so it cannot {what}. "
                f"Declare the entity's columns with {column.name} as type: double to accept that, "
                "or read a view casting it to numeric(p,s) or text."
            )


def _inferred(
    source: str, entity: str, spec: SqliteEntity, catalog: Sequence[TableColumn], label: str
) -> Contract:
    """The contract of an entity declared without columns, from the table's catalog."""
    _rounded(catalog, label, "be inferred exactly")
    columns = tuple(
        c.observed.model_copy(update={"nullable": False}) if c.name in spec.primary_key else c.observed
        for c in catalog
    )
    return Contract(
        source, entity, columns, tuple(spec.primary_key), spec.contract.policy, 1, "inferred",
        contracts.declared_hash((), spec.primary_key),
    )  # fmt: skip


def _evolve(
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    catalog: Sequence[TableColumn],
    added: Sequence[TableColumn],
    removed: Sequence[Column],
    retyped: Sequence[tuple[Column, TableColumn]],
    label: str,
    run_id: str,
) -> Contract:
    """The contract with the added columns (nullable: earlier rows have no value), retyped ones
    widened and removed ones nullable; stored with the catalog as a new version if it changed."""
    _rounded([*added, *(t for _, t in retyped)], label, "join the contract exactly")
    wider = {c.name: widened(c, t.observed) for c, t in retyped}
    gone = {c.name for c in removed}
    columns = [
        wider.get(c.name, c).model_copy(update={"nullable": True}) if c.name in gone else wider.get(c.name, c)
        for c in contract.columns
    ]
    columns += [c.observed.model_copy(update={"nullable": True}) for c in added]
    if tuple(columns) == contract.columns:
        return contract
    evolved = replace(contract, columns=tuple(columns), version=contract.version + 1, origin="evolved")
    contracts.store(con, evolved, run_id)
    _store_catalog(con, evolved, catalog, run_id)
    return evolved


def _with_columns(spec: SqliteEntity, contract: Contract, label: str) -> SqliteEntity:
    """`spec` with the contract's columns, validated like a declaration (SourceError if not)."""
    if tuple(spec.columns) == contract.columns:
        return spec
    data = {**spec.model_dump(), "columns": [c.model_dump() for c in contract.columns]}
    try:
        return type(spec).model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise SourceError(
            f"{label}: the contract of {contract.source}.{contract.entity} (columns "
            f"{[c.name for c in contract.columns]}) does not fit the entity: {problems}"
        ) from None


def _stored_catalog(con: duckdb.DuckDBPyConnection, contract: Contract) -> dict[str, str] | None:
    row = con.execute(
        "SELECT columns FROM meta.contract_catalogs WHERE source = ? AND entity = ? "
        "AND declared_hash = ? AND version = ? ORDER BY observed_at DESC LIMIT 1",
        [contract.source, contract.entity, contract.declared_hash, contract.version],
    ).fetchone()
    return {str(k): str(v) for k, v in json.loads(row[0]).items()} if row else None


def _store_catalog(
    con: duckdb.DuckDBPyConnection, contract: Contract, catalog: Sequence[TableColumn], run_id: str
) -> None:
    """Record the source types `contract` (this version of it) was checked against."""
    con.execute(
        "INSERT INTO meta.contract_catalogs VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            contract.source, contract.entity, contract.declared_hash, contract.version,
            json.dumps({c.name: describe(c.observed) for c in catalog}), run_id, utcnow(),
        ],
    )  # fmt: skip
