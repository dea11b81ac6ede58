"""Record-level lineage: from one published record back to the source rows it came from.

A score row carries a `lineage_id` to every system it is published to. From it (or from a target
and the target's key) the trace reads, all from the warehouse:

1. the record at the target: `publish.published` / `publish.sync_log` (message id, target ref,
   the publishing runs), or for a SQLite target without them its own table;
2. the score row (`scores.churn_scores`): model name and version, variant, scorer, run;
3. the quality gate of its partition (`meta.quality_gate`) and the latest validation of each
   governed table for that day (`meta.validation_results`);
4. the dbt build that produced the features of that day (`meta.runs`, step `dbt_build`) and the
   models it built;
5. the raw rows of every system record of the customer (`integrated.customer_xref`, retired ids
   from `integrated.customer_id_aliases`) up to that day, with their file and line or table and
   key (`_fabric_source`, `_fabric_position`).

A system of `customer_xref` is the source of the same name in fabric.yaml; its raw tables are
`raw.<source>__<entity>` of the entities that declare `customer_key` (the raw column holding the
system's key, e.g. `crm_id`). A system whose raw rows cannot be read that way is named in the
trace with the reason, never left out silently.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb

from fabric.config import FabricConfig, SqlitePublisher
from fabric.errors import FabricError
from fabric.identifiers import qualified, quote
from fabric.warehouse import table_exists


def system_tables(config: FabricConfig) -> dict[str, list[tuple[str, str]]]:
    """System -> (raw table, customer key column) of each entity declaring `customer_key`."""
    tables: dict[str, list[tuple[str, str]]] = {}
    for source, spec in config.sources.items():
        for entity, settings in spec.entities.items():
            if settings.customer_key is not None:
                tables.setdefault(source, []).append((f"{source}__{entity}", settings.customer_key))
    return tables


class TraceError(FabricError):
    """The record to trace is not in the warehouse."""


@dataclass
class RawRow:
    table: str
    system: str
    key: str
    partition: date
    source: str
    position: str
    load_id: str


@dataclass
class Trace:
    lineage_id: str
    publications: list[dict[str, Any]] = field(default_factory=list)
    score: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] | None = None
    validations: list[dict[str, Any]] = field(default_factory=list)
    dbt_run: dict[str, Any] | None = None
    members: list[tuple[str, str, str]] = field(default_factory=list)  # system, key, match rule
    raw_rows: list[RawRow] = field(default_factory=list)
    untraced: list[str] = field(default_factory=list)  # why some raw rows could not be looked up


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    schema, name = table.split(".")
    return {
        c
        for (c,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
            [schema, name],
        ).fetchall()
    }


def lineage_id_at_target(config: FabricConfig, con: duckdb.DuckDBPyConnection, target: str, key: str) -> str:
    """The lineage id of the record `key` last delivered to publisher `target`."""
    if target not in config.publishers:
        known = ", ".join(config.publishers) or "none"
        raise TraceError(f"fabric.yaml: publishers.{target} is not defined (publishers: {known})")
    if table_exists(con, "publish.published") and "lineage_id" in _columns(con, "publish.published"):
        row = con.execute(
            "SELECT lineage_id FROM publish.published WHERE target = ? AND entity_key = ?", [target, key]
        ).fetchone()
        if row and row[0]:
            return str(row[0])
    publisher = config.publishers[target]
    if isinstance(publisher, SqlitePublisher):
        path = config.resolve(publisher.path)
        target_db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = target_db.execute(
                f"SELECT lineage_id FROM {quote(publisher.table)} "
                f"WHERE CAST({quote(publisher.key)} AS TEXT) = ?",
                [key],
            ).fetchone()
        except sqlite3.Error as exc:
            raise TraceError(f"{path}: cannot read {publisher.table}: {exc}") from None
        finally:
            target_db.close()
        if row and row[0]:
            return str(row[0])
    raise TraceError(f"no record with key {key!r} was published to {target}")


def trace_record(config: FabricConfig, con: duckdb.DuckDBPyConnection, lineage_id: str) -> Trace:
    """The whole chain of the score row `lineage_id` (see the module docstring)."""
    trace = Trace(lineage_id)
    scores = (
        _rows(con, "SELECT * FROM scores.churn_scores WHERE lineage_id = ?", [lineage_id])
        if table_exists(con, "scores.churn_scores")
        else []
    )
    if not scores:
        raise TraceError(f"lineage id {lineage_id}: no score row in scores.churn_scores carries it")
    trace.score = scores[0]
    day: date = trace.score["partition_date"]
    customer = str(trace.score["fabric_customer_id"])
    trace.publications = _publications(con, lineage_id)
    _quality(con, config, trace, day)
    runs = _rows(
        con,
        "SELECT run_id, partition_start, partition_end, outputs, status, finished_at FROM meta.runs "
        "WHERE step = 'dbt_build' AND partition_start <= ? AND partition_end >= ? "
        "AND finished_at <= ? ORDER BY finished_at DESC LIMIT 1",
        [day, day, trace.score["scored_at"]],
    )
    if runs:
        run = runs[0]
        outputs = json.loads(run["outputs"]) if isinstance(run["outputs"], str) else run["outputs"]
        run["models"] = [o["table"] for o in outputs or []]
        trace.dbt_run = run
    _raw_rows(config, con, trace, customer, day)
    return trace


def _publications(con: duckdb.DuckDBPyConnection, lineage_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for table in ("publish.published", "publish.sync_log"):
        if table_exists(con, table) and "lineage_id" in _columns(con, table):
            for row in _rows(con, f"SELECT * FROM {table} WHERE lineage_id = ?", [lineage_id]):
                row["table"] = table
                row.pop("payload", None)
                found.append(row)
    return found


def _quality(con: duckdb.DuckDBPyConnection, config: FabricConfig, trace: Trace, day: date) -> None:
    if table_exists(con, "meta.quality_gate"):
        gates = _rows(
            con,
            'SELECT run_id, is_open, reason, decided_at FROM meta.quality_gate WHERE "partition" = ? '
            "AND decided_at <= ? ORDER BY decided_at DESC LIMIT 1",
            [day, trace.score["scored_at"]],
        )
        trace.gate = gates[0] if gates else None
    if table_exists(con, "meta.validation_results"):
        trace.validations = _rows(
            con,
            "WITH latest AS (SELECT table_name, suite, max(validated_at) AS at FROM meta.validation_results "
            '  WHERE "partition" = ? AND validated_at <= ? AND table_name IN (SELECT unnest(?::VARCHAR[])) '
            "  GROUP BY ALL) "
            "SELECT v.table_name, v.suite, v.run_id, v.engine, count(*) AS expectations, "
            "  count(*) FILTER (WHERE v.success) AS passed, "
            "  count(*) FILTER (WHERE NOT v.success AND v.severity = 'critical') AS critical_failed "
            "FROM meta.validation_results v JOIN latest l ON v.table_name = l.table_name "
            '  AND v.suite = l.suite AND v.validated_at = l.at WHERE v."partition" = ? '
            "GROUP BY ALL ORDER BY v.table_name",
            [day, trace.score["scored_at"], list(config.quality.governed_tables), day],
        )


def _raw_rows(
    config: FabricConfig, con: duckdb.DuckDBPyConnection, trace: Trace, customer: str, day: date
) -> None:
    if not table_exists(con, "integrated.customer_xref"):
        return
    ids = [customer]
    if table_exists(con, "integrated.customer_id_aliases"):
        ids += [
            str(a)
            for (a,) in con.execute(
                "SELECT alias_id FROM integrated.customer_id_aliases WHERE fabric_customer_id = ?", [customer]
            ).fetchall()
        ]
    trace.members = [
        (str(s), str(k), str(r))
        for s, k, r in con.execute(
            "SELECT system, source_key, match_rule FROM integrated.customer_xref "
            "WHERE fabric_customer_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY system, source_key",
            [ids],
        ).fetchall()
    ]
    mapping = system_tables(config)
    for system in sorted({s for s, _, _ in trace.members} - set(mapping)):
        trace.untraced.append(
            f"system {system}: no entity of source {system} declares customer_key in fabric.yaml"
            if system in config.sources
            else f"system {system}: fabric.yaml has no source named {system}"
        )
    readable: dict[str, list[tuple[str, str]]] = {}
    for system in sorted({s for s, _, _ in trace.members} & set(mapping)):
        for table, column in mapping[system]:
            if not table_exists(con, f"raw.{table}"):
                trace.untraced.append(f"system {system}: raw.{table} does not exist (not loaded yet)")
            elif column not in _columns(con, f"raw.{table}"):
                trace.untraced.append(
                    f"system {system}: raw.{table} has no column {column} (its customer_key in fabric.yaml)"
                )
            else:
                readable.setdefault(system, []).append((table, column))
    for system, key, _ in trace.members:
        for table, column in readable.get(system, []):
            rows = con.execute(
                f"SELECT _fabric_partition, _fabric_source, _fabric_position, _fabric_load_id "
                f"FROM {qualified('raw', table)} WHERE trim(CAST({quote(column)} AS VARCHAR)) = ? "
                "AND _fabric_partition <= ? ORDER BY _fabric_partition, _fabric_source, _fabric_position",
                [key, day],
            ).fetchall()
            trace.raw_rows.extend(
                RawRow(f"raw.{table}", system, key, p, str(s), str(pos), str(load))
                for p, s, pos, load in rows
            )


def render_trace(trace: Trace) -> list[str]:
    """The chain as lines of text, target first, source rows last."""
    score = trace.score
    lines = [f"lineage id {trace.lineage_id}"]
    if trace.publications:
        for pub in trace.publications:
            details = ", ".join(
                f"{k}={pub[k]}"
                for k in ("target", "entity_key", "status", "message_id", "target_ref", "run_id",
                          "published_at", "logged_at")
                if pub.get(k) is not None
            )  # fmt: skip
            lines.append(f"  published ({pub['table']}): {details}")
    else:
        lines.append("  published: no record of this lineage id in publish.published / publish.sync_log")
    lines.append(
        f"  score: {score['score']:.4f} (decision {score['decision']}) for {score['fabric_customer_id']} "
        f"(CRM {score['crm_customer_id']}) on {score['partition_date']} by {score['scorer']} "
        f"{score['model_name']} v{score['model_version']}, variant {score['variant']}, "
        f"run {score['run_id']}, scored at {score['scored_at']}"
    )
    if trace.gate is not None:
        state = "open" if trace.gate["is_open"] else "CLOSED"
        lines.append(f"  quality gate {state}: {trace.gate['reason']} (run {trace.gate['run_id']})")
    for v in trace.validations:
        lines.append(
            f"  validation {v['table_name']} ({v['suite']}, {v['engine']}, run {v['run_id']}): "
            f"{v['passed']}/{v['expectations']} expectations passed, {v['critical_failed']} critical failed"
        )
    if trace.dbt_run is not None:
        lines.append(
            f"  dbt build run {trace.dbt_run['run_id']} ({trace.dbt_run['partition_start']}.."
            f"{trace.dbt_run['partition_end']}, {trace.dbt_run['status']}): "
            + ", ".join(trace.dbt_run["models"])
        )
    for system, key, rule in trace.members:
        lines.append(f"  system record {system}:{key} (matched by {rule})")
    for row in trace.raw_rows:
        lines.append(f"    {row.table} [{row.partition}] {row.source} {row.position} (load {row.load_id})")
    for reason in trace.untraced:
        lines.append(f"  raw rows not traced: {reason}")
    return lines
