"""Ingest one source entity over a window of partition days.

Stage the whole window with one read of the source (one DuckDB scan over all the day files, or
one scan of the table), cast it once, then commit day by day (`load.commit_days`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from fabric.config import (
    Column,
    CopybookSource,
    CsvSource,
    ExcelEntity,
    ExcelSource,
    FabricConfig,
    FileEntity,
    FixedWidthSource,
    JsonEntity,
    JsonSource,
    MysqlSource,
    PostgresSource,
    Source,
    SqliteEntity,
    SqliteSource,
)
from fabric.errors import ConfigError, SourceError
from fabric.identifiers import quote
from fabric.ingest import contract as contracts
from fabric.ingest import cursors, excel, fixed_width, jsonl, outcomes, table_contract
from fabric.ingest import json as json_reader
from fabric.ingest import sqlite as sqlite_reader
from fabric.ingest.casting import sql_type
from fabric.ingest.copybook import ingest_copybook
from fabric.ingest.csv import CsvStage
from fabric.ingest.files import FILE_WHERE, DayFile, check_encoding, day_files, stage_lines
from fabric.ingest.load import ChildTable, DayRead, EntityTables, LoadResult, commit_days
from fabric.ingest.merge import commit_merge
from fabric.ingest.sql_database import ingest_server_table
from fabric.meta import utcnow
from fabric.partitions import Window
from fabric.warehouse import Warehouse

log = logging.getLogger(__name__)

_LINES = "_fabric_lines_staged"
_STAGED = "_fabric_staged"
_CHECKED = "_fabric_checked"
_RESERVED_PREFIX = "_fabric_"


def ingest_entity(
    config: FabricConfig,
    source: str,
    entity: str,
    window: Window,
    run_id: str,
    warehouse: Warehouse,
    progress: Callable[[int, int], None] | None = None,
) -> list[LoadResult]:
    """Load `source.entity` for every day of `window`; one `LoadResult` per day, in order.

    Each day's raw and quarantine partitions and its `meta.loads` row are replaced in one
    transaction. A day without a file is a `missing` load that clears the partition. Raises
    ConfigError for a bad declaration and SourceError when the source cannot be read at all.
    `progress(done, total)` is called after each committed day.
    """
    if source not in config.sources:
        raise ConfigError(f"unknown source {source!r} (declared: {', '.join(config.sources)})")
    declared = config.sources[source]
    if entity not in declared.entities:
        raise ConfigError(f"unknown entity {source}.{entity} (declared: {', '.join(declared.entities)})")
    if isinstance(declared, CopybookSource):  # typed records: no text staging or casting
        return ingest_copybook(config, declared, source, entity, window, run_id, warehouse, progress)
    key = f"sources.{source}.entities.{entity}"
    _check_names(list(declared.entities[entity].columns), key)
    if isinstance(declared, PostgresSource | MysqlSource):  # typed tables, read in the server
        return ingest_server_table(declared, source, entity, window, run_id, warehouse, progress)
    started_at = utcnow()
    with warehouse.connect() as con, tempfile.TemporaryDirectory(prefix="fabric-ingest-") as tmp:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET checkpoint_threshold = '1GB'")
        con.execute(f"SET memory_limit = '{config.warehouse.ingest_memory_limit}'")  # validated
        plan: contracts.Plan | None = None
        ordered = False  # whether the staged rows are already in `_fabric_seq` order
        children_of: Callable[[Sequence[Column]], tuple[ChildTable, ...]] | None = None
        table: _TableStaged | None = None
        clock = time.perf_counter()
        if isinstance(declared, SqliteSource):
            table = _stage_sqlite(con, config, declared, source, entity, window, run_id, started_at)
            plan, reads = table.plan, table.reads
            where = sqlite_reader.TABLE_WHERE
            finish: Callable[[str], None] | None = None
        else:
            spec = declared.entities[entity]
            if spec.partition_column is not None:
                raise ConfigError(
                    f"{key}.partition_column: partitioning files by a column is not supported "
                    "yet; each file is the partition of the date in its name"
                )
            files = day_files(config, declared.root, spec.pattern, window)
            present = [f for f in files if f.exists]
            where = FILE_WHERE
            if isinstance(declared, CsvSource | JsonSource | ExcelSource):
                stage = _stage_named(con, declared, spec, source, entity, present, Path(tmp))
                counts, finish = stage.counts, stage.finish
                plan, children_of, ordered = stage.plan, stage.children, stage.ordered
            else:
                columns, counts = _stage_fixed_width(con, config, declared, spec, source, entity, present)
                finish = None
            reads = [_day_read(f, counts) for f in files]
        files_read = len(reads) - sum(r.missing for r in reads)
        origin = "the SQLite table" if table is not None else f"{files_read} file(s)"
        log.info("ingest %s.%s: %s records read from %s in %.1f s", source, entity,
                 f"{sum(r.rows_read for r in reads):,}", origin, time.perf_counter() - clock)  # fmt: skip
        clock = time.perf_counter()
        if plan is None:  # the columns come from fabric.yaml or a layout: no names to compare
            policy = declared.entities[entity].contract.policy
            plan = contracts.Plan(
                contracts.resolve(con, source, entity, columns, _primary_key(declared, entity),
                                  policy),
                columns, [], contracts.Drift(), {},
            )  # fmt: skip
        contract = plan.contract or contracts.infer(
            con, source, entity, _STAGED, plan.columns, _primary_key(declared, entity),
            declared.entities[entity].contract.policy, run_id,
        )  # fmt: skip
        try:
            contract = contracts.govern(
                con, contract, _STAGED, plan.added, plan.drift, plan.present, where, _CHECKED, run_id,
                ordered,
            ).contract  # fmt: skip
        except contracts.ContractError as exc:  # a refusal is a failed load of each day, as for servers
            if table is not None:
                outcomes.refuse(con, source, entity, window.days(), reads[0].source_path, str(exc), run_id,
                                started_at)  # fmt: skip
            for read in reads if table is None else ():
                outcomes.refuse(
                    con, source, entity, [read.day], read.source_path, str(exc), run_id, started_at
                )
            raise
        if finish is not None:
            finish(_CHECKED)
        _release_staged(con)
        log.info("ingest %s.%s: records checked against the contract and cast in %.1f s", source, entity,
                 time.perf_counter() - clock)  # fmt: skip
        children = children_of(contract.columns) if children_of is not None else ()
        tables = EntityTables(
            source, entity, tuple((c.name, sql_type(c)) for c in contract.columns), children
        )
        if contract.origin == "evolved":
            contracts.alter_raw(con, f"raw.{tables.name}", contract.columns)
        # The TEMP tables and views go with the connection, closed right after.
        if table is not None and table.spec.mode == "merge":
            merged = commit_merge(
                con, tables, _CHECKED, table.spec, reads[0], table.previous, run_id, started_at
            )
            return [merged]
        return commit_days(con, tables, _CHECKED, reads, run_id, started_at, progress)


@dataclass
class _Staged:
    plan: contracts.Plan
    counts: dict[int, int]  # records per file index
    finish: Callable[[str], None] | None  # fills the raw text of quarantined records
    children: Callable[[Sequence[Column]], tuple[ChildTable, ...]] | None = None  # JSON arrays
    ordered: bool = False  # staged in `_fabric_seq` order already (no sort when casting)


@dataclass
class _TableStaged:
    spec: SqliteEntity  # the entity with its contract's columns
    plan: contracts.Plan
    reads: list[DayRead]
    previous: cursors.Cursor | None  # merge mode: where the last load stopped


def _primary_key(declared: Source, entity: str) -> list[str]:
    return list(getattr(declared.entities[entity], "primary_key", []))


def _stage_named(
    con: duckdb.DuckDBPyConnection,
    declared: CsvSource | JsonSource | ExcelSource,
    spec: FileEntity,
    source: str,
    entity: str,
    present: list[DayFile],
    workdir: Path,
) -> _Staged:
    """Stage files whose columns have names in the file (a CSV header, JSON paths, an Excel
    header row), after comparing the names with the contract (`contract.plan`)."""
    key = f"sources.{source}.entities.{entity}"

    def planned(
        names: dict[int, tuple[str, ...] | None], detail: str, sparse: bool = False
    ) -> contracts.Plan:
        observed = [contracts.Observed(f.day, str(f.path), names.get(f.index)) for f in present]
        return contracts.plan(
            con, source, entity, spec.columns, spec.primary_key, spec.contract.policy, observed,
            detail, sparse,
        )  # fmt: skip

    if isinstance(declared, CsvSource):
        reader = CsvStage(con, declared, spec, key, workdir)
        plan = planned(reader.scan(present), "the header names columns")
        reader.stage(present, _STAGED, columns=plan.columns)
        counts = {f.index: reader.rows_read(f) for f in present}
        return _Staged(plan, counts, reader.fill_raw, ordered=reader.ordered)
    if isinstance(declared, ExcelSource):
        assert isinstance(spec, ExcelEntity)
        sheets = excel.read_sheets(present, spec, key)
        plan = planned(sheets.names, "the header row names columns")
        sheets.stage(con, plan.columns, declared.null_markers, _STAGED)
        return _Staged(plan, sheets.counts, None)
    counts = json_reader.stage_documents(con, declared, present, _LINES)
    arrays = [c.path for c in spec.child_tables.values()] if isinstance(spec, JsonEntity) else []
    found = jsonl.observed_paths(con, _LINES, [*spec.columns, *(Column(name="_", path=a) for a in arrays)])
    paths: dict[int, tuple[str, ...] | None] = {
        index: tuple(p for p in names if not any(p == a or p.startswith(a + ".") for a in arrays))
        for index, names in found.items()
    }  # the child tables' arrays belong to them, not to the entity's contract
    plan = planned(paths, "the objects have fields", sparse=True)
    jsonl.stage_view(con, plan.columns, key, _LINES, _STAGED)
    if not isinstance(spec, JsonEntity) or not spec.child_tables:
        return _Staged(plan, counts, None)
    json_spec = spec

    def children(parent_columns: Sequence[Column]) -> tuple[ChildTable, ...]:
        return json_reader.stage_children(con, source, entity, json_spec, parent_columns, _LINES, _CHECKED)

    return _Staged(plan, counts, None, children)


def _release_staged(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the TEMP views and tables of the staged text (named `_STAGED...`) once it is cast
    into `_CHECKED`: the commit reads only that, and with the text gone DuckDB's memory limit is
    left to the commit (at 5M CSV rows the staged text made the commit spill to disk)."""
    for kind, catalog in (("VIEW", "duckdb_views()"), ("TABLE", "duckdb_tables()")):
        name = f"{kind.lower()}_name"
        for (found,) in con.execute(
            f"SELECT {name} FROM {catalog} WHERE temporary AND starts_with({name}, ?)", [_STAGED]
        ).fetchall():
            con.execute(f"DROP {kind} IF EXISTS {quote(str(found))}")


def _check_names(columns: list[Column], key: str) -> None:
    names = [c.name for c in columns]
    for name in names:
        if name.startswith(_RESERVED_PREFIX):
            raise ConfigError(f"{key}: column {name}: names starting with _fabric_ are reserved")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{key}: duplicate columns {duplicates}")


def _day_read(file: DayFile, counts: dict[int, int]) -> DayRead:
    if not file.exists:
        return DayRead(file.day, str(file.path), 0, missing=True)
    return DayRead(file.day, str(file.path), counts.get(file.index, 0))


def _stage_sqlite(
    con: duckdb.DuckDBPyConnection,
    config: FabricConfig,
    declared: SqliteSource,
    source: str,
    entity: str,
    window: Window,
    run_id: str,
    started_at: datetime,
) -> _TableStaged:
    """Compare the table's catalog with the contract (`table_contract`), then stage the rows as
    text. A refusal (no file or table, a frozen contract) is a failed load for each day."""
    spec = declared.entities[entity]
    path = config.resolve(declared.path)
    label = sqlite_reader.source_label(path, spec.table)
    days = window.days() if spec.mode == "partitioned" else [window.end]
    try:
        governed = table_contract.govern_table(
            con, source, entity, spec, sqlite_reader.catalog(path, spec.table), label, days[-1], run_id
        )
        spec = governed.spec
        previous = cursors.stored(con, source, entity, spec) if spec.mode == "merge" else None
        since = cursors.lower_bound(previous, spec.lookback_amount) if spec.mode == "merge" else None
        added = [c.name for c in governed.added]
        sqlite_reader.stage(con, path, spec, window, _STAGED, since, added, governed.removed)
    except SourceError as exc:  # nothing staged: record why, as the server sources do
        refused = outcomes.refuse(con, source, entity, window.days(), label, str(exc), run_id, started_at)
        raise (exc if isinstance(exc, contracts.ContractError) else refused) from None
    counts = dict(con.execute(f"SELECT _fabric_partition, count(*) FROM {_STAGED} GROUP BY ALL").fetchall())
    text = [Column(name=name) for name in added]  # quarantined when they hold a value
    plan = contracts.Plan(governed.contract, [*spec.columns, *text], text, governed.drift, {})
    reads = [DayRead(day, label, int(counts.get(day, 0))) for day in days]
    return _TableStaged(spec, plan, reads, previous)


def _stage_fixed_width(
    con: duckdb.DuckDBPyConnection,
    config: FabricConfig,
    declared: FixedWidthSource,
    spec: FileEntity,
    source: str,
    entity: str,
    present: list[DayFile],
) -> tuple[list[Column], dict[int, int]]:
    """Stage fixed-width files; returns the columns and records per file index."""
    key = f"sources.{source}.entities.{entity}"
    encoding = check_encoding(declared.encoding, f"sources.{source}.encoding")
    layout = spec.layout or entity
    fields = fixed_width.load_layout(config.resolve(declared.layout), layout)
    columns = fixed_width.layout_columns(fields)
    _check_names(columns, f"{declared.layout}: layout {layout}")
    counts = stage_lines(con, present, encoding, fixed_width.BLANK, _LINES)
    fixed_width.stage_view(con, fields, spec, key, _LINES, _STAGED)
    return columns, counts
