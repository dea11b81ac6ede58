"""Source contracts and schema drift: infer once, compare on every load, apply the policy.

A source entity's contract is its columns (names, types, source names or JSON paths) and its
primary key. It is declared in `fabric.yaml`; an entity declared without columns gets one
inferred from its first load (each column the narrowest type all its values parse as), stored in
`meta.contracts` and used from then on (`Contract.as_yaml` prints it to freeze in the config).

On every load the reader reports what each file holds (`Observed`: CSV/Excel header names, JSON
object paths), and the typed cast tells which values do not parse. Compared with the contract:

- `added`: a column (header name, JSON leaf path) the contract does not have;
- `removed`: a contract column the file does not have at all;
- `retyped`: a column none of whose values parse as its contract type (or, under `evolve`, whose
  failing values all parse as a wider type of the same family: integer < bigint < decimal <
  double, date < timestamp).

Each change is written to `meta.schema_drift` with what the policy did (`action`):

- `freeze`: nothing of the window is committed; the load fails with the diff (`ContractError`).
- `evolve`: added columns join the contract with their inferred type, retyped columns widen
  (never to a variant column: a column that fits no wider type of its family becomes `string`,
  which is reported like any change), the raw table is altered and the new contract version is
  kept in `meta.contracts`. A removed column stays and is null.
- `quarantine`: rows holding a value in an added column go to quarantine (`schema_drift`);
  values that do not parse go there as usual (`type_cast`); a removed column is null.

Database tables (SQLite, PostgreSQL, MySQL/MariaDB) are compared through their catalog instead
(names and source types, before any row is read) by `table_contract`, which uses the same
contracts, changes and `meta.schema_drift` rows; SQLite rows then go through `govern` like files.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Literal

import duckdb
import yaml

from fabric.config import Column, ColumnType
from fabric.errors import SourceError
from fabric.identifiers import literal, qualified, quote
from fabric.ingest.casting import check_records, sql_type, typed_expr
from fabric.meta import utcnow

Policy = Literal["evolve", "freeze", "quarantine"]
_FAMILIES = (("integer", "bigint", "decimal", "double"), ("date", "timestamp"))
_INFERRED_ORDER: tuple[ColumnType, ...] = (
    "boolean", "integer", "bigint", "decimal", "date", "timestamp", "double"
)  # fmt: skip
_MAX_INFERRED_SCALE = 9
_NOT_IDENTIFIER = re.compile(r"[^a-z0-9_]+")


class ContractError(SourceError):
    """A load refused because its files do not match a frozen contract."""


@dataclass(frozen=True)
class Change:
    """One difference between a file and the contract."""

    change: Literal["added", "removed", "retyped"]
    column: str
    expected: str | None = None  # the contract's type
    observed: str | None = None  # the type the file's values have

    def text(self) -> str:
        if self.change == "added":
            return f"added column {self.column} ({self.observed or 'string'})"
        if self.change == "removed":
            return f"removed column {self.column} (was {self.expected})"
        return f"column {self.column} retyped from {self.expected} to {self.observed}"


@dataclass(frozen=True)
class Observed:
    """What one file holds: the source names of its columns (None: the format has no names)."""

    day: date
    source_path: str
    names: tuple[str, ...] | None


@dataclass(frozen=True)
class Contract:
    """The columns a source entity promises, and what a load does when a file differs."""

    source: str
    entity: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    policy: Policy
    version: int  # 0: as declared in fabric.yaml
    origin: Literal["declared", "inferred", "evolved"]
    declared_hash: str

    def source_name(self, column: Column) -> str:
        """The column's name in the files (its `path`, else its name)."""
        return column.path or column.name

    def as_yaml(self) -> str:
        """The contract as the entity's `columns:` (and `primary_key:`) YAML, to freeze it."""
        columns = [column_mapping(c) for c in self.columns]
        document: dict[str, object] = {"columns": columns}
        if self.primary_key:
            document["primary_key"] = list(self.primary_key)
        return yaml.safe_dump(document, sort_keys=False, default_flow_style=None)


@dataclass
class DayDrift:
    """The changes found in one load's file."""

    source_path: str
    changes: list[Change] = field(default_factory=list)
    detail: str = ""  # what the file shows, e.g. "the header names columns ['id', 'x']"


@dataclass
class Drift:
    """The changes found for each load (day) of a window."""

    by_day: dict[date, DayDrift] = field(default_factory=dict)

    def add(self, day: date, source_path: str, changes: Sequence[Change], detail: str = "") -> None:
        found = self.by_day.setdefault(day, DayDrift(source_path))
        found.changes.extend(c for c in changes if c not in found.changes)
        found.detail = found.detail or detail

    def changes(self) -> list[Change]:
        seen: list[Change] = []
        for day in self.by_day.values():
            seen.extend(c for c in day.changes if c not in seen)
        return seen

    def diff(self) -> str:
        return "; ".join(
            f"file {day.source_path}: "
            + (f"{day.detail}: " if day.detail else "")
            + ", ".join(c.text() for c in day.changes)
            for _, day in sorted(self.by_day.items())
            if day.changes
        )


def column_mapping(column: Column) -> dict[str, object]:
    """A column as a compact fabric.yaml mapping (defaults left out)."""
    data = column.model_dump(exclude_defaults=True)
    data["name"] = column.name
    if column.type == "decimal":
        data.update(precision=column.precision, scale=column.scale)
    return {k: data[k] for k in ("name", *sorted(set(data) - {"name"}))}


def declared_hash(columns: Sequence[Column], primary_key: Sequence[str]) -> str:
    """Fingerprint of a declaration: a stored contract only applies while it is unchanged."""
    text = json.dumps(
        {"columns": [c.model_dump() for c in columns], "primary_key": list(primary_key)},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve(
    con: duckdb.DuckDBPyConnection,
    source: str,
    entity: str,
    declared: Sequence[Column],
    primary_key: Sequence[str],
    policy: Policy,
) -> Contract | None:
    """The contract in force: the latest stored version made from the same declaration (an
    inferred or evolved one), else the declaration; None when nothing is declared or stored
    (the first load infers it)."""
    fingerprint = declared_hash(declared, primary_key)
    row = con.execute(
        "SELECT version, origin, columns, primary_key FROM meta.contracts WHERE source = ? "
        "AND entity = ? AND declared_hash = ? ORDER BY version DESC LIMIT 1",
        [source, entity, fingerprint],
    ).fetchone()
    if row is not None:
        return Contract(
            source, entity,
            tuple(Column.model_validate(c) for c in json.loads(row[2])),
            tuple(json.loads(row[3])), policy, int(row[0]), row[1], fingerprint,
        )  # fmt: skip
    if not declared:
        return None
    return Contract(source, entity, tuple(declared), tuple(primary_key), policy, 0, "declared", fingerprint)


def store(con: duckdb.DuckDBPyConnection, contract: Contract, run_id: str) -> None:
    """Append `contract` to `meta.contracts` as its source entity's newest version."""
    con.execute(
        "INSERT INTO meta.contracts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            contract.source, contract.entity, contract.version, contract.origin,
            contract.policy, json.dumps([c.model_dump() for c in contract.columns]),
            json.dumps(list(contract.primary_key)), contract.declared_hash, run_id, utcnow(),
        ],
    )  # fmt: skip


def column_name(source_name: str) -> str:
    """A column name for a source name: `Customer Name` -> `customer_name`, `user.id` ->
    `user_id`."""
    name = _NOT_IDENTIFIER.sub("_", source_name.strip().lower()).strip("_")[:63] or "column"
    if name[0].isdigit() or name.startswith("_fabric_"):
        name = "c_" + name
    return name[:63]


def new_columns(source_names: Sequence[str], taken: Sequence[str] = ()) -> list[Column]:
    """String columns for source names, named by `column_name` (made unique)."""
    used = set(taken)
    columns = []
    for source_name in source_names:
        name, n = column_name(source_name), 2
        while name in used:
            name, n = f"{column_name(source_name)[:60]}_{n}", n + 1
        used.add(name)
        columns.append(Column(name=name, path=None if name == source_name else source_name))
    return columns


def name_changes(
    contract: Contract, names: Sequence[str], sparse: bool = False
) -> tuple[list[str], list[Change]]:
    """The source names a file has that the contract lacks, and the added/removed changes.

    In a `sparse` format (JSON, where an object may leave out a null field) a nullable column
    absent from the file is not removed."""
    known = {contract.source_name(c) for c in contract.columns}
    added = [n for n in names if n not in known and not _under(n, known)]
    changes: list[Change] = [Change("added", column_name(n)) for n in added]
    changes += [
        Change("removed", c.name, expected=describe(c))
        for c in contract.columns
        if not _has(names, contract.source_name(c)) and not (sparse and c.nullable)
    ]
    return added, changes


def _under(name: str, known: set[str]) -> bool:
    """Whether a JSON path lies inside a declared path (kept whole as JSON text)."""
    return any(name.startswith(k + ".") for k in known)


def describe(column: Column) -> str:
    if column.type == "decimal":
        return f"decimal({column.precision},{column.scale})"
    return column.type


def infer_types(
    con: duckdb.DuckDBPyConnection, relation: str, columns: Sequence[Column], where: str = "true"
) -> list[Column]:
    """`columns` (text in `relation`) each typed as the narrowest type all its non-null values
    parse as (Fabric's own casts, see `casting`); string when none fits or no value is set."""
    if not columns:
        return []
    probes = []
    for i, column in enumerate(columns):
        text = quote(column.name)
        probes.append(f"count({text}) AS n{i}")
        probes.append(f"max(length(regexp_extract(trim({text}), '\\.([0-9]+)$', 1))) AS s{i}")
        for kind in _INFERRED_ORDER:
            probe = Column(name=column.name, type=kind, precision=38, scale=_MAX_INFERRED_SCALE)
            if kind == "boolean":
                expr = f"lower(trim({text})) IN ('true', 'false')"
                probes.append(f"count(*) FILTER ({expr}) AS {kind}{i}")
            else:
                probes.append(f"count({typed_expr(probe, text)}) AS {kind}{i}")
    row = con.execute(f"SELECT {', '.join(probes)} FROM {quote(relation)} WHERE {where}").fetchone()
    assert row is not None
    found = dict(zip([p.rsplit(" AS ", 1)[1] for p in probes], row, strict=True))
    typed = []
    for i, column in enumerate(columns):
        count = found[f"n{i}"]
        kind = next((k for k in _INFERRED_ORDER if count and found[f"{k}{i}"] == count), "string")
        scale = int(found[f"s{i}"] or 0)
        if kind == "decimal" and scale > _MAX_INFERRED_SCALE:
            kind = "double"
        if kind == "decimal":
            typed.append(column.model_copy(update={"type": kind, "precision": 18, "scale": scale}))
        else:
            typed.append(column.model_copy(update={"type": kind}))
    return typed


def widen(expected: Column, observed: Column) -> Column:
    """The narrowest column both types fit in: the wider of one family, else string."""
    for family in _FAMILIES:
        if expected.type in family and observed.type in family:
            if family.index(observed.type) <= family.index(expected.type) and (
                expected.type != "decimal" or observed.scale <= expected.scale
            ):
                return expected
            kind = max(expected.type, observed.type, key=family.index)
            if kind == "decimal":
                scale = max(expected.scale if expected.type == "decimal" else 0, observed.scale)
                return expected.model_copy(update={"type": kind, "precision": 18, "scale": scale})
            return expected.model_copy(update={"type": kind, "format": None})
    return expected.model_copy(update={"type": "string", "format": None})


def retyped(
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    staged: str,
    checked: str,
    present: Mapping[str, Sequence[date]],
) -> dict[date, list[tuple[Column, Column]]]:
    """Per day, the (contract column, column typed as the day's values) that are retyped.

    Only looked at when some value failed its cast that day (a cheap count of `type_cast`
    codes); `present` lists, per column name, the days whose files have that column at all.
    """
    days = [
        d
        for (d,) in con.execute(
            f"SELECT DISTINCT _fabric_partition FROM {quote(checked)} WHERE _fabric_code = 'type_cast'"
        ).fetchall()
    ]
    found: dict[date, list[tuple[Column, Column]]] = {}
    candidates = [c for c in contract.columns if c.type != "string"]
    for day in days:
        where = f"_fabric_partition = DATE {literal(day.isoformat())} AND _fabric_code IS NULL"
        counts = con.execute(
            "SELECT "
            + ", ".join(f"count({quote(c.name)}), count({typed_expr(c, quote(c.name))})" for c in candidates)
            + f" FROM {quote(staged)} WHERE {where}"
        ).fetchone()
        assert counts is not None
        for i, column in enumerate(candidates):
            values, fitting = counts[2 * i], counts[2 * i + 1]
            if values == fitting or day not in present.get(column.name, [day]):
                continue
            [observed] = infer_types(con, staged, [column.model_copy(update={"type": "string"})],
                                     where)  # fmt: skip
            wider = widen(column, observed)
            if fitting == 0 or (contract.policy == "evolve" and wider.type != "string"):
                found.setdefault(day, []).append((column, observed if fitting == 0 else wider))
    return found


def drift_view(con: duckdb.DuckDBPyConnection, staged: str, added: Sequence[Column], target: str) -> None:
    """TEMP view `target` over `staged` where a value in an added column quarantines the row
    (`schema_drift`), unless the reader already found a problem with it."""
    if not added:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {quote(target)} AS SELECT * FROM {quote(staged)}")
        return
    hit = " OR ".join(f"{quote(c.name)} IS NOT NULL" for c in added)
    reasons = ", ".join(
        f"CASE WHEN {quote(c.name)} IS NOT NULL THEN "
        f"{literal(f'field {c.path or c.name}: not in the contract (policy quarantine)')} END"
        for c in added
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW {quote(target)} AS
            SELECT * REPLACE (
                coalesce(_fabric_code, CASE WHEN {hit} THEN 'schema_drift' END) AS _fabric_code,
                CASE WHEN _fabric_code IS NOT NULL THEN _fabric_reason
                     WHEN {hit} THEN concat_ws('; ', {reasons}) END AS _fabric_reason)
            FROM {quote(staged)}"""
    )


def record_drift(
    con: duckdb.DuckDBPyConnection, contract: Contract, drift: Drift, action: str, run_id: str
) -> None:
    """Write every change of `drift` to `meta.schema_drift`, with what the policy did."""
    rows = [
        [run_id, contract.source, contract.entity, day, found.source_path, c.change, c.column,
         c.expected, c.observed, contract.policy, action, utcnow()]
        for day, found in sorted(drift.by_day.items())
        for c in found.changes
    ]  # fmt: skip
    if rows:
        con.executemany("INSERT INTO meta.schema_drift VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


@dataclass
class Governed:
    """The outcome of `govern`: the contract the load commits with, and the drift found."""

    contract: Contract
    drift: Drift


def govern(
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    staged: str,
    added: Sequence[Column],
    drift: Drift,
    present: Mapping[str, Sequence[date]],
    where: str,
    checked: str,
    run_id: str,
    ordered: bool = False,
) -> Governed:
    """Cast the staged records of a window against `contract` into `checked` and apply its policy.

    `staged` holds the contract's columns and the `added` ones (text); `drift` already holds
    the added/removed changes per day; `ordered`: `staged` is in `_fabric_seq` order already.
    Raises ContractError (policy freeze) after recording the drift; otherwise the returned
    contract is the one to create or alter the tables with.
    """
    fitted = f"{staged}_fitted"
    if contract.policy == "quarantine":
        drift_view(con, staged, added, fitted)
    else:
        drift_view(con, staged, (), fitted)
    columns = list(contract.columns)
    if contract.policy == "evolve" and added:
        columns += infer_types(con, staged, added)
    check_records(con, fitted, columns, where, checked, ordered)
    changed = retyped(con, contract, staged, checked, present)
    for day, pairs in changed.items():
        path = drift.by_day[day].source_path if day in drift.by_day else ""
        drift.add(day, path, [Change("retyped", c.name, describe(c), describe(o)) for c, o in pairs])
    if contract.policy == "freeze" and drift.changes():
        record_drift(con, contract, drift, "refused", run_id)
        raise ContractError(
            f"{contract.source}.{contract.entity}: the files do not match the frozen contract "
            f"(policy freeze), nothing was loaded: {drift.diff()}. Update the columns in "
            "fabric.yaml, fix the files, or set contract.policy to evolve or quarantine."
        )
    if contract.policy != "evolve":
        record_drift(con, contract, drift, "quarantined" if drift.changes() else "", run_id)
        return Governed(contract, drift)
    widened = {c.name: o for pairs in changed.values() for c, o in pairs}
    if widened:
        columns = [widen(c, widened[c.name]) if c.name in widened else c for c in columns]
        check_records(con, fitted, columns, where, checked, ordered)
    if columns != list(contract.columns):
        contract = replace(contract, columns=tuple(columns), version=contract.version + 1, origin="evolved")
        store(con, contract, run_id)
    record_drift(con, contract, drift, "evolved", run_id)
    return Governed(contract, drift)


def alter_raw(con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[Column]) -> None:
    """Bring an existing raw table to an evolved contract: add the new columns, widen the
    retyped ones, and rebuild it in contract order (DuckDB only appends columns) so that the
    metadata columns stay last."""
    schema, name = table.split(".")
    query = (
        "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = ? "
        "AND table_name = ? AND database_name = current_database() ORDER BY column_index"
    )
    found = dict(con.execute(query, [schema, name]).fetchall())
    if not found:
        return
    target = qualified(schema, name)
    for column in columns:
        kind = sql_type(column)
        if column.name not in found:
            con.execute(f"ALTER TABLE {target} ADD COLUMN {quote(column.name)} {kind}")
        elif found[column.name] != kind:
            con.execute(f"ALTER TABLE {target} ALTER {quote(column.name)} TYPE {kind}")
    current = [str(n) for n, _ in con.execute(query, [schema, name]).fetchall()]
    declared = [c.name for c in columns]
    wanted = declared + [n for n in current if n not in declared]
    if current != wanted:
        listed = ", ".join(quote(n) for n in wanted)
        con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT {listed} FROM {target}")


@dataclass
class Plan:
    """What to stage for a window, from the contract and what its files hold (`plan`)."""

    contract: Contract | None  # None: nothing declared or stored yet, inferred from this load
    columns: list[Column]  # to stage as text: the contract's, then the added ones
    added: list[Column]
    drift: Drift
    present: dict[str, list[date]]  # contract column -> days whose files have it


def plan(
    con: duckdb.DuckDBPyConnection,
    source: str,
    entity: str,
    declared: Sequence[Column],
    primary_key: Sequence[str],
    policy: Policy,
    observed: Sequence[Observed],
    detail: str,
    sparse: bool = False,
) -> Plan:
    """Compare each file's names with the contract in force. `detail` says what the names
    are, for messages (e.g. "the header names columns"); `sparse`: see `name_changes`."""
    contract = resolve(con, source, entity, declared, primary_key, policy)
    drift = Drift()
    names: list[str] = []
    for found in observed:
        names += [n for n in found.names or () if n not in names]
    if contract is None:
        return Plan(None, new_columns(names), [], drift, {})
    added_names: list[str] = []
    present: dict[str, list[date]] = {}
    for found in observed:
        if found.names is None:
            continue
        new, changes = name_changes(contract, found.names, sparse)
        shown = f"{detail} {list(found.names)}, the contract has " + str(
            [contract.source_name(c) for c in contract.columns]
        )
        drift.add(found.day, found.source_path, changes, shown if changes else "")
        added_names += [n for n in new if n not in added_names]
        for column in contract.columns:
            if _has(found.names, contract.source_name(column)):
                present.setdefault(column.name, []).append(found.day)
    added = new_columns(added_names, taken=[c.name for c in contract.columns])
    return Plan(contract, [*contract.columns, *added], added, drift, present)


def _has(names: Sequence[str], source_name: str) -> bool:
    """Whether a file has a column: its name, or (JSON) a path inside it."""
    return source_name in names or any(n.startswith(source_name + ".") for n in names)


def infer(
    con: duckdb.DuckDBPyConnection,
    source: str,
    entity: str,
    staged: str,
    columns: Sequence[Column],
    primary_key: Sequence[str],
    policy: Policy,
    run_id: str,
) -> Contract:
    """The contract of an entity declared without columns, from its first load; stored."""
    contract = Contract(
        source, entity, tuple(infer_types(con, staged, columns)), tuple(primary_key), policy, 1,
        "inferred", declared_hash((), primary_key),
    )  # fmt: skip
    store(con, contract, run_id)
    return contract


def drift_of_run(
    con: duckdb.DuckDBPyConnection, source: str, entity: str, run_id: str
) -> list[dict[str, object]]:
    """The `meta.schema_drift` rows a run wrote for a source entity."""
    cursor = con.execute(
        """SELECT "partition"::VARCHAR AS partition, source_path, change, column_name,
                  expected_type, observed_type, policy, action
           FROM meta.schema_drift WHERE source = ? AND entity = ? AND run_id = ?
           ORDER BY "partition", change, column_name""",
        [source, entity, run_id],
    )
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def duplicate_keys(
    con: duckdb.DuckDBPyConnection, table: str, primary_key: Sequence[str], days: Sequence[date]
) -> int:
    """Primary key values held by more than one row of a raw table's partitions (or null)."""
    if not primary_key:
        return 0
    keys = ", ".join(quote(k) for k in primary_key)
    nulls = " OR ".join(f"{quote(k)} IS NULL" for k in primary_key)
    schema, name = table.split(".")
    row = con.execute(
        f"""SELECT count(*) FROM (
                SELECT {keys} FROM {qualified(schema, name)}
                WHERE _fabric_partition IN (SELECT unnest(?::DATE[]))
                GROUP BY ALL HAVING count(*) > 1 OR bool_or({nulls}))""",
        [list(days)],
    ).fetchone()
    return int(row[0]) if row else 0
