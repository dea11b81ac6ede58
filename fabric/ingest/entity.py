"""Ingest one source entity over a window of partition days.

Stage the whole window with one read of the source (one DuckDB scan over all the day files, or
one scan of the table), cast it once, then commit day by day (`load.commit_days`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import duckdb

from fabric.config import (
    Column,
    CsvSource,
    FabricConfig,
    FileEntity,
    FixedWidthSource,
    JsonlSource,
    SqliteEntity,
    SqliteSource,
)
from fabric.errors import ConfigError
from fabric.ingest import fixed_width, jsonl
from fabric.ingest import sqlite as sqlite_reader
from fabric.ingest.casting import check_records, sql_type
from fabric.ingest.csv import CsvStage
from fabric.ingest.files import FILE_WHERE, DayFile, check_encoding, day_files, stage_lines
from fabric.ingest.load import DayRead, EntityTables, LoadResult, commit_days
from fabric.meta import utcnow
from fabric.partitions import Window
from fabric.warehouse import Warehouse

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
        raise ConfigError(
            f"unknown entity {source}.{entity} (declared: {', '.join(declared.entities)})"
        )
    key = f"sources.{source}.entities.{entity}"
    _check_names(list(declared.entities[entity].columns), key)
    started_at = utcnow()
    with warehouse.connect() as con, tempfile.TemporaryDirectory(prefix="fabric-ingest-") as tmp:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET checkpoint_threshold = '1GB'")
        if isinstance(declared, SqliteSource):
            table = declared.entities[entity]
            columns, reads = _stage_sqlite(con, config, declared, table, window)
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
            if isinstance(declared, CsvSource):
                reader = CsvStage(con, declared, spec, key, Path(tmp))
                reader.stage(present, _STAGED)
                columns = reader.columns
                counts = {f.index: reader.rows_read(f) for f in present}
                finish = reader.fill_raw
            else:
                columns, counts = _stage_lines(con, config, declared, spec, source, entity, present)
                finish = None
            reads = [_day_read(f, counts) for f in files]
        check_records(con, _STAGED, columns, where, _CHECKED)
        if finish is not None:
            finish(_CHECKED)
        tables = EntityTables(source, entity, tuple((c.name, sql_type(c)) for c in columns))
        # The TEMP tables and views go with the connection, closed right after.
        return commit_days(con, tables, _CHECKED, reads, run_id, started_at, progress)


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
    spec: SqliteEntity,
    window: Window,
) -> tuple[list[Column], list[DayRead]]:
    path = config.resolve(declared.path)
    sqlite_reader.stage(con, path, spec, window, _STAGED)
    counts = dict(
        con.execute(f"SELECT _fabric_partition, count(*) FROM {_STAGED} GROUP BY ALL").fetchall()
    )
    label = sqlite_reader.source_label(path, spec.table)
    days = window.days() if spec.mode == "partitioned" else [window.end]
    return list(spec.columns), [DayRead(day, label, int(counts.get(day, 0))) for day in days]


def _stage_lines(
    con: duckdb.DuckDBPyConnection,
    config: FabricConfig,
    declared: FixedWidthSource | JsonlSource,
    spec: FileEntity,
    source: str,
    entity: str,
    present: list[DayFile],
) -> tuple[list[Column], dict[int, int]]:
    """Stage JSON lines or fixed-width files; returns the columns and records per file index."""
    key = f"sources.{source}.entities.{entity}"
    if isinstance(declared, JsonlSource):
        counts = stage_lines(con, present, "utf-8", jsonl.BLANK, _LINES)
        columns = jsonl.stage_view(con, spec, key, _LINES, _STAGED)
    else:
        encoding = check_encoding(declared.encoding, f"sources.{source}.encoding")
        layout = spec.layout or entity
        fields = fixed_width.load_layout(config.resolve(declared.layout), layout)
        columns = fixed_width.layout_columns(fields)
        _check_names(columns, f"{declared.layout}: layout {layout}")
        counts = stage_lines(con, present, encoding, fixed_width.BLANK, _LINES)
        fixed_width.stage_view(con, fields, spec, key, _LINES, _STAGED)
    return columns, counts
