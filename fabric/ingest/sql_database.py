"""PostgreSQL and MySQL/MariaDB tables, read with DuckDB's own scanners.

Extraction path: the `postgres_scanner` and `mysql_scanner` extensions (from the pinned
`duckdb-extension-*` wheels) read the server's rows straight into DuckDB vectors, PostgreSQL's
through binary COPY and, for whole tables, in parallel page ranges of one exported snapshot.
Measured against ADBC, connectorx and COPY to CSV (docs/architecture.md, "Relational sources"),
the scanner was the fastest way into the warehouse, exact for numeric(38,10) and microsecond
timestamps (connectorx fails on such decimals) and needs no Python in the row path.

Reading a table: the server's `information_schema` says whether the table exists, its columns
in order with their types, which are NOT NULL and which numerics the scanner cannot read exactly
(PostgreSQL `numeric` without a precision, or wider than 38 digits, arrives as DOUBLE: refused
unless declared `double`). That catalog, each type mapped to the Fabric type holding all its
values (`_table_columns`), is compared with the entity's contract before any row is read
(`table_contract`: inferred from the catalog when no columns are declared; added, removed and
retyped columns recorded in `meta.schema_drift` and handled by the contract policy). Each
contract column is read from its source type: the same type passes through; text is parsed like
every other source (`casting.typed_expr`); another type is cast and kept only if it converts
back to the source value unchanged (no silent rounding or truncation); a column the table no
longer has is NULL. A value that fails, a NULL in a column declared not nullable or (policy
`quarantine`) a value in a column the contract does not have sends the row to quarantine with
the raw text of the whole row (a JSON object), its key and the reason.

Modes (`SqliteEntity`): `partitioned` sends `date_column >= start AND date_column < end + 1 day`
to the server, `merge` sends `cursor_column >= <stored cursor - lookback>` (PostgreSQL then reads
without page ranges, so that an index on the column serves the query); `snapshot` reads the whole
table. Both filter columns must be typed in the server (dates, timestamps, numbers).

Committing: when no row can be quarantined (every contract column has a type that cannot fail,
and the ones declared not nullable are NOT NULL in the server) and the read is one load (a
snapshot, or a one-day partition), rows stream from the scanner into the raw table inside the
commit transaction: no staging copy, memory bounded by DuckDB's vector pipeline. Otherwise the
window is read once into a TEMP table with each row's problem, committed day by day by
`load.commit_days`, or as one batch by `merge.commit_merge`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import duckdb

from fabric.config import Column, ColumnType, MysqlSource, PostgresSource, SqliteEntity
from fabric.errors import SourceError
from fabric.identifiers import literal, quote
from fabric.ingest import contract as contracts
from fabric.ingest import cursors, outcomes, table_contract
from fabric.ingest.casting import sql_type, typed_expr
from fabric.ingest.connections import ALIAS, Server
from fabric.ingest.load import (
    DayRead,
    EntityTables,
    LoadResult,
    commit_days,
    log_committed,
    record_load,
    single_threaded,
)
from fabric.ingest.merge import commit_merge
from fabric.meta import utcnow
from fabric.partitions import Window
from fabric.warehouse import Warehouse

_CHECKED = "_fabric_checked"
_TEMPORAL = ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE")
_INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT")
_UNSIGNED = ("UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
_NUMERIC = (*_INTEGERS, *_UNSIGNED)
_INTEGER_DIGITS = {"TINYINT": 3, "SMALLINT": 5, "INTEGER": 10, "BIGINT": 19}
_VALUE_CHARS = 60
_FABRIC_TYPES: dict[str, ColumnType] = {
    "BOOLEAN": "boolean", "TINYINT": "integer", "SMALLINT": "integer", "INTEGER": "integer",
    "UTINYINT": "integer", "USMALLINT": "integer", "BIGINT": "bigint", "UINTEGER": "bigint",
    "FLOAT": "double", "DOUBLE": "double", "DATE": "date",
}  # fmt: skip


@dataclass(frozen=True)
class _SourceColumn:
    """A column as the server declares it and as the scanner reads it."""

    type: str  # DuckDB's type for it, through the scanner
    server_type: str  # information_schema.columns.data_type
    nullable: bool
    exact: bool  # False: a numeric the scanner can only read as DOUBLE


@dataclass(frozen=True)
class _Check:
    code: str
    condition: str  # SQL over the source column and the typed value
    message: str  # SQL text of the reason (without the row's name)


@dataclass(frozen=True)
class _ColumnRead:
    """How one declared column is read: its typed value and what a value must pass."""

    column: Column
    alias: str  # of the typed value in the staged SELECT
    value: str
    checks: tuple[_Check, ...]
    present: bool = True  # False: a contract column the table no longer has (read as NULL)
    kept: bool = True  # False: an added column, read only to quarantine rows holding a value


def ingest_server_table(
    declared: PostgresSource | MysqlSource,
    source: str,
    entity: str,
    window: Window,
    run_id: str,
    warehouse: Warehouse,
    progress: Callable[[int, int], None] | None = None,
) -> list[LoadResult]:
    """Load `source.entity` from its server for `window` in the entity's mode.

    One `LoadResult` per day (`partitioned`) or one for the window's last day (`snapshot`,
    `merge`). A source that cannot be read (server unreachable, table or column missing) or a
    merge batch that repeats a key is refused: a `failed` row in `meta.loads`, a SourceError
    naming the table, and nothing else changes; a table that does not match a frozen contract
    likewise, with a ContractError (`table_contract`).
    """
    spec: SqliteEntity = declared.entities[entity]
    server = Server.from_config(source, declared)
    schema, table = _schema_and_table(spec.table, server)
    relation = f"{ALIAS}.{quote(schema)}.{quote(table)}"
    label = f"{server.label}#{schema}.{table}"
    days = window.days() if spec.mode == "partitioned" else [window.end]
    started_at = utcnow()
    with warehouse.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        # Raw rows of a table have no order to keep: inserts may write in parallel as they come.
        con.execute("SET preserve_insertion_order = false")
        try:
            server.attach(con)
            found = _introspect(con, server, schema, table, label)
            plan = table_contract.govern_table(
                con, source, entity, spec, _table_columns(found, label), label, days[-1], run_id
            )
            spec = plan.spec  # the contract's columns
            reads = [
                _column_read(c, f"_fabric_v{i}", found.get(c.name), label) for i, c in enumerate(spec.columns)
            ]
            reads += [_drift_read(c) for c in plan.added]
            tables = EntityTables(source, entity, tuple((c.name, sql_type(c)) for c in spec.columns))
            previous = cursors.stored(con, source, entity, spec) if spec.mode == "merge" else None
            where, day = _filter(spec, found, window, previous, label)
            contracts.record_drift(con, plan.contract, plan.drift, plan.action, run_id)
            if plan.contract.origin == "evolved":
                contracts.alter_raw(con, f"raw.{tables.name}", spec.columns)
            one_stream = where != "true" and server.engine == "postgres"
            if one_stream:
                # One query instead of parallel page ranges, so that an index on the column serves it.
                con.execute("SET pg_use_ctid_scan = false")
            select = _select(spec, reads, found, day)
            if spec.mode != "merge" and len(days) == 1 and not any(r.checks for r in reads):
                result = _stream(
                    con, server, tables, reads, f"{select} FROM {relation} WHERE {where}", label,
                    days[0], run_id, started_at,
                )  # fmt: skip
                if progress is not None:
                    progress(1, 1)
                return [result]
            with (
                server.reading(f"reading {schema}.{table}"),
                single_threaded(con) if one_stream else nullcontext(),
            ):
                _stage(con, spec, reads, f"{select} FROM {relation} WHERE {where}", label)
            if spec.mode == "merge":
                read = DayRead(days[0], label, _count_rows(con))
                merged = commit_merge(con, tables, _CHECKED, spec, read, previous, run_id, started_at)
                if progress is not None:
                    progress(1, 1)
                return [merged]
        except outcomes.LoadRefused:
            raise
        except SourceError as exc:
            refused = outcomes.refuse(con, source, entity, days, label, str(exc), run_id, started_at)
            raise (exc if isinstance(exc, contracts.ContractError) else refused) from None
        counts = dict(
            con.execute(f"SELECT _fabric_partition, count(*) FROM {_CHECKED} GROUP BY ALL").fetchall()
        )
        day_reads = [DayRead(d, label, int(counts.get(d, 0))) for d in days]
        return commit_days(con, tables, _CHECKED, day_reads, run_id, started_at, progress)


def _schema_and_table(name: str, server: Server) -> tuple[str, str]:
    schema, _, table = name.rpartition(".")
    schema = schema or server.default_schema
    if not schema:
        raise SourceError(
            f"{server.label}: table {name!r} needs its database (`database.table`): the "
            "connection string names none"
        )
    return schema, table


def _introspect(
    con: duckdb.DuckDBPyConnection, server: Server, schema: str, table: str, label: str
) -> dict[str, _SourceColumn]:
    """The table's columns; SourceError when the table is missing."""
    with server.reading(f"reading the columns of {schema}.{table}"):
        rows = con.execute(
            f"""SELECT column_name, data_type, is_nullable, numeric_precision
                FROM {ALIAS}.information_schema.columns
                WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position""",
            [schema, table],
        ).fetchall()
        if not rows:
            others = [
                str(name)
                for (name,) in con.execute(
                    f"SELECT table_name FROM {ALIAS}.information_schema.tables "
                    "WHERE table_schema = ? ORDER BY table_name LIMIT 20",
                    [schema],
                ).fetchall()
            ]
            raise SourceError(
                f"{label}: table {schema}.{table} not found: it was dropped or renamed, or the "
                f"user cannot see it ({schema} has: {', '.join(others) or 'no tables'})"
            )
        scanned = {
            str(name): str(kind)
            for name, kind, *_ in con.execute(
                f"DESCRIBE SELECT * FROM {ALIAS}.{quote(schema)}.{quote(table)}"
            ).fetchall()
        }
    columns = {}
    for name, server_type, nullable, precision in rows:
        wide = str(server_type).lower() in ("numeric", "decimal") and (
            precision is None or int(precision) > 38
        )
        columns[str(name)] = _SourceColumn(
            scanned.get(str(name), "VARCHAR"), str(server_type), nullable == "YES", not wide
        )
    return columns


def _table_columns(found: dict[str, _SourceColumn], label: str) -> list[table_contract.TableColumn]:
    """The table's catalog for its contract: each column with the Fabric type holding every value
    the scanner reads from it exactly (text for types Fabric has no column type for)."""
    columns = []
    for name, column in found.items():
        kind, precision, scale = _FABRIC_TYPES.get(column.type, "string"), 18, 0
        if column.type.startswith("DECIMAL("):
            precision, scale = (int(p) for p in column.type[8:-1].split(","))
            kind = "decimal" if scale <= 18 else "string"
        elif column.type == "UBIGINT":
            kind, precision = "decimal", 20
        elif column.type.startswith("TIMESTAMP"):  # with time zone: read in UTC; _S/_MS/_NS
            kind = "timestamp"
        columns.append(
            table_contract.table_column(
                label, name, kind, column.nullable, column.server_type, precision, scale, column.exact
            )
        )
    return columns


def _described(column: Column) -> str:
    if column.type == "decimal":
        return f"decimal({column.precision},{column.scale})"
    return column.type


def _shown(sql: str) -> str:
    """SQL quoting a value for a message, cut to a readable length."""
    text = f"CAST({sql} AS VARCHAR)"
    return (
        f"'''' || left({text}, {_VALUE_CHARS}) || "
        f"CASE WHEN length({text}) > {_VALUE_CHARS} THEN '...''' ELSE '''' END"
    )


def _widens(source: str, target: str) -> bool:
    """Whether every value of DuckDB type `source` converts exactly to `target`."""
    if source in _INTEGERS and target in _INTEGERS:
        return _INTEGERS.index(source) <= _INTEGERS.index(target)
    if source in _INTEGERS and target.startswith("DECIMAL("):
        precision, scale = (int(p) for p in target[8:-1].split(","))
        return precision - scale >= _INTEGER_DIGITS[source]
    if source.startswith("DECIMAL(") and target.startswith("DECIMAL("):
        p1, s1 = (int(p) for p in source[8:-1].split(","))
        p2, s2 = (int(p) for p in target[8:-1].split(","))
        return s2 >= s1 and p2 - s2 >= p1 - s1
    return (source, target) in (
        ("DATE", "TIMESTAMP"),
        ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP"),  # in UTC, the session's time zone
    )


def _column_read(column: Column, alias: str, found: _SourceColumn | None, label: str) -> _ColumnRead:
    source, target, typed = quote(column.name), sql_type(column), []
    if found is not None and not found.exact and column.type != "double":
        raise SourceError(
            f"{label}: column {column.name} is {found.server_type} without a precision of at "
            "most 38 digits, which the scanner reads as DOUBLE (rounded). Declare it "
            "type: double to accept that, or read a view casting it to numeric(p,s) or text."
        )
    checks = []
    if not column.nullable and (found is None or found.nullable):
        checks.append(
            _Check(
                "null_value",
                f"{source} IS NULL",
                literal(f"field {column.name}: missing value (the column is not nullable)"),
            )
        )
    if found is None:  # a contract column the table no longer has (policy evolve or quarantine)
        return _ColumnRead(column, alias, f"NULL::{target}", tuple(checks), present=False)
    if found.type == target or _widens(found.type, target):
        expression = source if found.type == target else f"CAST({source} AS {target})"
    elif column.type == "string":
        expression = f"CAST({source} AS VARCHAR)"
    elif found.type == "VARCHAR":
        expression = typed_expr(column, source)
        typed.append(f"{alias} IS NULL")
    else:
        expression = f"TRY_CAST({source} AS {target})"
        typed.append(f"{alias} IS NULL")
        if column.type != "double":  # a double is approximate by declaration
            typed.append(f"TRY_CAST({alias} AS {found.type}) IS DISTINCT FROM {source}")
    if typed:
        checks.append(
            _Check(
                "type_cast",
                f"{source} IS NOT NULL AND ({' OR '.join(typed)})",
                f"{literal(f'field {column.name}: ')} || {_shown(source)} || "
                f"{literal(f' is not a valid {_described(column)}')}",
            )
        )
    return _ColumnRead(column, alias, expression, tuple(checks))


def _drift_read(column: table_contract.TableColumn) -> _ColumnRead:
    """A column the contract does not have, under policy quarantine: a row holding a value in it
    is quarantined (`schema_drift`); it is part of the raw record, not of the raw table."""
    reason = literal(f"field {column.name}: not in the contract (policy quarantine)")
    check = _Check("schema_drift", f"{quote(column.name)} IS NOT NULL", reason)
    return _ColumnRead(column.observed, "", "NULL", (check,), kept=False)


def _filter(
    spec: SqliteEntity,
    found: dict[str, _SourceColumn],
    window: Window,
    previous: cursors.Cursor | None,
    label: str,
) -> tuple[str, str]:
    """The row filter sent to the server and the SQL of a row's partition day."""
    end = literal(window.end.isoformat())
    if spec.mode == "snapshot":
        return "true", f"DATE {end}"
    column = str(spec.date_column if spec.mode == "partitioned" else spec.cursor_column)
    kind = found[column].type
    allowed = _TEMPORAL if spec.mode == "partitioned" else (*_TEMPORAL, *_NUMERIC)
    if kind not in allowed and not (spec.mode == "merge" and kind.startswith("DECIMAL(")):
        raise SourceError(
            f"{label}: column {column} is {found[column].server_type} in the server; "
            f"{spec.mode} mode filters it in the server, so it must be a date or timestamp"
            f"{' or a number' if spec.mode == 'merge' else ''} there (read a view that "
            "converts it, or use snapshot mode)"
        )
    if spec.mode == "partitioned":
        start, after = window.start.isoformat(), (window.end + timedelta(days=1)).isoformat()
        where = (
            f"{quote(column)} >= CAST({literal(start)} AS {kind}) "
            f"AND {quote(column)} < CAST({literal(after)} AS {kind})"
        )
        day = f"CAST({quote(column)} AS DATE)"
    else:
        since = cursors.lower_bound(previous, spec.lookback_amount)
        if since is None:  # the first load of a merge: the whole table
            return "true", f"DATE {end}"
        where, day = f"{quote(column)} >= CAST({literal(since)} AS {kind})", f"DATE {end}"
    return where, day


def _position(spec: SqliteEntity, found: dict[str, _SourceColumn]) -> str:
    """SQL of `<key>=<value>[,...]` from the source's key values."""
    parts = []
    for key in spec.primary_key:
        text = f"CAST({quote(key)} AS VARCHAR)"
        if found[key].nullable:
            text = f"coalesce({text}, 'NULL')"
        parts.append(f"{literal(key + '=')} || {text}")
    return " || ',' || ".join(parts)


def _select(spec: SqliteEntity, reads: list[_ColumnRead], found: dict[str, _SourceColumn], day: str) -> str:
    """SELECT (without FROM) of the source columns, their typed values, day and position."""
    return (
        "SELECT "
        + ", ".join(
            quote(r.column.name) if r.present else f"NULL::VARCHAR AS {quote(r.column.name)}" for r in reads
        )
        + ", "
        + ", ".join(f"{r.value} AS {r.alias}" for r in reads if r.kept)
        + f", {day} AS _fabric_partition, {_position(spec, found)} AS _fabric_position"
    )


def _stage(
    con: duckdb.DuckDBPyConnection,
    spec: SqliteEntity,
    reads: list[_ColumnRead],
    query: str,
    label: str,
) -> None:
    """Create TEMP table `_CHECKED` (the shape `load.commit_days` takes) from `query`."""
    checks = [c for r in sorted(reads, key=lambda r: r.kept) for c in r.checks]  # schema_drift first
    whens = " ".join(f"WHEN {c.condition} THEN '{c.code}'" for c in checks)
    code = f"CASE {whens} END" if checks else "NULL::VARCHAR"
    reasons = ", ".join(f"CASE WHEN {c.condition} THEN {c.message} END" for c in checks)
    reason = f"concat_ws('; ', {reasons})" if checks else "NULL"
    names = [quote(r.column.name) for r in reads]
    raw = "to_json(struct_pack(" + ", ".join(f"{n} := CAST({n} AS VARCHAR)" for n in names) + "))::VARCHAR"
    typed = ", ".join(f"{r.alias} AS {quote(r.column.name)}" for r in reads if r.kept)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {_CHECKED} AS
            SELECT _fabric_partition, {literal(label)} AS _fabric_source, _fabric_position,
                   0::BIGINT AS _fabric_seq,
                   CASE WHEN _fabric_code IS NOT NULL THEN {raw} END AS _fabric_raw,
                   _fabric_code,
                   CASE WHEN _fabric_code IS NOT NULL
                        THEN {literal(label + " ")} || _fabric_position || ': ' || {reason}
                   END AS _fabric_reason,
                   {typed}
            FROM (SELECT *, {code} AS _fabric_code FROM ({query}))"""
    )


def _count_rows(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute(f"SELECT count(*) FROM {_CHECKED}").fetchone()
    return int(row[0]) if row else 0


def _stream(
    con: duckdb.DuckDBPyConnection,
    server: Server,
    tables: EntityTables,
    reads: list[_ColumnRead],
    query: str,
    label: str,
    day: date,
    run_id: str,
    started_at: datetime,
) -> LoadResult:
    """Replace partition `day` with the rows of `query`, read straight into the raw table."""
    tables.ensure(con)
    load_id, loaded_at = str(uuid.uuid4()), utcnow()
    typed = ", ".join(f"{r.alias} AS {quote(r.column.name)}" for r in reads if r.kept)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM {tables.raw} WHERE _fabric_partition = ?", [day])
        con.execute(f"DELETE FROM {tables.quarantine} WHERE _fabric_partition = ?", [day])
        with server.reading(f"reading {label}"):
            row = con.execute(
                f"""INSERT INTO {tables.raw} BY NAME
                    SELECT {typed}, ? AS _fabric_load_id, _fabric_partition,
                           {literal(label)} AS _fabric_source, _fabric_position,
                           ? AS _fabric_loaded_at
                    FROM ({query})""",
                [load_id, loaded_at],
            ).fetchone()
        loaded = int(row[0]) if row else 0
        result = LoadResult(
            load_id, tables.source, tables.entity, day, label, loaded, loaded, 0, "ok",
            f"{loaded} rows loaded from {label}" if loaded else f"no records in {label}",
        )  # fmt: skip
        record_load(con, result, run_id, started_at)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    log_committed(result, 1, 1)
    return result
