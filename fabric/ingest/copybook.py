"""Mainframe day files: a COBOL copybook + data files -> raw, child and quarantine tables.

A `kind: copybook` source decodes each day's file with `fabric.copybook.CopybookReader` (the
source's `options` are the reader's Cobrix options) and stages the typed Arrow blocks as they
come, so a large file is never held whole in memory. Columns are the copybook's fields with
groups flattened by `_` and names lower-cased (`COMPANY.SHORT-NAME` -> `company_short_name`);
types are the reader's: DECIMAL(p,s) for V/P/explicit-point numbers (exact, never through
floats), INTEGER/BIGINT/DECIMAL(p,0) for integers, FLOAT for COMP-1, DOUBLE for COMP-2.

`_fabric_position` is `record N @ byte B`: N the 1-based record number in the file, B the byte
offset of the record's data (after its RDW, if any).

OCCURS (the source's `occurs` setting):

* `child_tables` (default): each OCCURS is the table `raw.<source>__<entity>__<occurs field>`
  (nested ones `...__<outer>__<inner>`), one row per occurrence: the element's fields, the
  1-based occurrence `_fabric_index` and, for an OCCURS inside another, the enclosing
  occurrences `_fabric_index_1` (outermost) .. `_fabric_index_<depth-1>`, then the metadata
  columns of the parent record (join on `_fabric_partition, _fabric_position`). Only the
  active occurrences of an OCCURS DEPENDING ON are rows.
* `arrays`: OCCURS stay list columns of the entity's table (lists of structs for groups).

Problems: `on_decode_error` defaults to `quarantine` here, so a record holding an undecodable
value (invalid packed nibble or sign, invalid zoned digit, ...) is quarantined with reason_code
`decode`, its bytes as hex and a reason naming every bad field and its byte offset; the rest of
the file loads. `null` loads such values as NULL (as Cobrix does), `fail` fails the load. With
`on_framing_error: quarantine`, bytes that cannot be cut into records (a truncated record, a bad
RDW) are one `framing` row (N is the number the record would have had, B where the bytes start;
at most 256 bytes shown); by default they fail the load. A copybook or option error is a
ConfigError naming the file (and line), raised before anything is read or written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from fabric.config import CopybookSource, FabricConfig
from fabric.copybook import CopybookBatch, CopybookError, CopybookReader, OptionError, flatten_table
from fabric.errors import ConfigError, SourceError
from fabric.identifiers import quote, validate_identifier
from fabric.ingest.casting import BOOKKEEPING
from fabric.ingest.files import DayFile, day_files
from fabric.ingest.load import ChildTable, DayRead, EntityTables, LoadResult, commit_days
from fabric.meta import utcnow
from fabric.partitions import Window
from fabric.warehouse import Warehouse

INDEX = "_fabric_index"
DEFAULT_OPTIONS = {"on_decode_error": "quarantine"}
"""Reader options Fabric sets unless the source names them (Cobrix keys, normalised)."""

_CHECKED = "_fabric_copybook_checked"
_BATCH = "_fabric_copybook_batch"
_ISSUES = "_fabric_copybook_issues"
_NUMBER, _OFFSET = "_fabric_record_number", "_fabric_record_offset"
_POSITION = f"'record ' || ({_NUMBER} + 1) || ' @ byte ' || {_OFFSET}"
_SEQ_SHIFT = 40
"""`_fabric_seq` is (day index << 40) + byte offset: source order for files up to 1 TiB."""

Rows = npt.NDArray[np.int64]
_NO_ROWS: Rows = np.zeros(0, dtype=np.int64)


def ingest_copybook(
    config: FabricConfig,
    declared: CopybookSource,
    source: str,
    entity: str,
    window: Window,
    run_id: str,
    warehouse: Warehouse,
    progress: Callable[[int, int], None] | None = None,
) -> list[LoadResult]:
    """Load `source.entity` (a copybook source) for every day of `window`, like `ingest_entity`.

    Raises ConfigError for a copybook that does not parse, an unknown code page or option, and
    SourceError when a file cannot be read (`on_decode_error` / `on_framing_error` = fail).
    """
    name = f"{source}__{entity}"
    explode = declared.occurs == "child_tables"
    reader, schema = open_reader(config, declared, source, name, explode=explode)
    files = day_files(config, declared.root, declared.entities[entity].pattern, window)
    started_at = utcnow()
    with warehouse.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET checkpoint_threshold = '1GB'")
        con.execute(f"SET memory_limit = '{config.warehouse.ingest_memory_limit}'")  # validated
        stage = _Stage(con, reader, schema, name, explode=explode)
        counts: dict[int, int] = {}
        for file in files:
            if file.exists:
                try:
                    counts[file.index] = stage.add(file)
                except CopybookError as exc:
                    raise SourceError(f"{source}.{entity}: {exc}") from None
        reads = [
            DayRead(f.day, str(f.path), counts.get(f.index, 0), missing=f.index not in counts) for f in files
        ]
        tables = EntityTables(source, entity, stage.columns, tuple(stage.children.values()))
        # The TEMP tables go with the connection, closed right after.
        return commit_days(con, tables, _CHECKED, reads, run_id, started_at, progress)


def open_reader(
    config: FabricConfig, declared: CopybookSource, source: str, name: str, *, explode: bool
) -> tuple[CopybookReader, pa.Schema]:
    """The source's copybook parsed with its options, and the (nested) schema of its records.

    Checks everything the copybook decides before any data is read: the options, the layout,
    and the table and column names it gives (`name` is `<source>__<entity>`).
    """
    path = config.resolve(declared.copybook)
    if not path.is_file():
        raise ConfigError(f"sources.{source}.copybook: copybook file not found: {path}")
    options = dict(declared.options)
    named = {key.strip().lower().replace("-", "_") for key in options}
    options.update({k: v for k, v in DEFAULT_OPTIONS.items() if k not in named})
    try:
        reader = CopybookReader(path, options)
        schema = _lowered(reader.schema().empty_table()).schema
        parent, children = _shape(schema.empty_table(), _NO_ROWS, explode=explode)
    except OptionError as exc:  # includes an unknown code page
        raise ConfigError(f"sources.{source}.options: {exc}") from None
    except CopybookError as exc:  # syntax (names the line and column), layout, name clashes
        raise ConfigError(f"{path}: {exc}") from None
    for table, columns in [(name, parent), *((f"{name}__{k}", c.table) for k, c in children.items())]:
        validate_identifier(table, f"table name (from copybook {path})")
        for column in columns.column_names:
            validate_identifier(column, f"column name of {table} (from copybook {path})")
    return reader, schema


@dataclass
class _Child:
    """The occurrences of one OCCURS in a block: element fields + index columns, and for each
    row the row of its record in the block."""

    table: pa.Table
    records: Rows


def _lowered_type(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name.lower(), _lowered_type(f.type)) for f in kind])
    if pa.types.is_list(kind):
        return pa.list_(_lowered_type(kind.value_type))
    return kind


def _lowered(table: pa.Table) -> pa.Table:
    """Column and struct field names in lower case (COBOL names are case-insensitive)."""
    columns = []
    for column in table.columns:
        kind = _lowered_type(column.type)
        columns.append(pa.chunked_array([chunk.view(kind) for chunk in column.chunks], type=kind))
    return pa.Table.from_arrays(columns, names=[n.lower() for n in table.column_names])


def _occurs_names(fields: Iterable[pa.Field], prefix: str = "") -> dict[str, str]:
    """Flattened column name -> the OCCURS field's own name, for the lists among `fields`."""
    found: dict[str, str] = {}
    for field in fields:
        if pa.types.is_struct(field.type):
            found |= _occurs_names(field.type, f"{prefix}{field.name}_")
        elif pa.types.is_list(field.type):
            found[prefix + field.name] = field.name
    return found


def _shape(nested: pa.Table, records: Rows, *, explode: bool) -> tuple[pa.Table, dict[str, _Child]]:
    """A block's (nested) records as the entity's rows and, when `explode`, its child tables."""
    if not explode:
        return flatten_table(nested), {}
    children: dict[str, _Child] = {}
    return _split(nested, records, [], "", children), children


def _split(
    nested: pa.Table, records: Rows, keys: list[Rows], prefix: str, out: dict[str, _Child]
) -> pa.Table:
    """`nested` flattened without its OCCURS columns, each of which goes to `out` (recursively).

    `records` maps each row of `nested` to its record's row in the block; `keys` are the row's
    occurrence numbers in the enclosing OCCURS (none for a record). A child's key is
    `prefix + <OCCURS name>`, or its flattened name when two OCCURS at one level share a name.
    """
    names = _occurs_names(nested.schema)
    repeated = {n for n, count in Counter(names.values()).items() if count > 1}
    flat = flatten_table(nested)
    for column_name, occurs_name in names.items():
        lists = flat[column_name].combine_chunks()
        parents = pc.list_parent_indices(lists).to_numpy().astype(np.int64)
        values = pc.list_flatten(lists)
        # parents ascend: an occurrence's number is its distance from its parent's first one
        own = np.arange(len(parents), dtype=np.int64) - np.searchsorted(parents, parents) + 1
        if pa.types.is_struct(values.type):
            element = pa.Table.from_arrays(values.flatten(), names=[f.name for f in values.type])
        else:
            element = pa.table({occurs_name: values})
        child = prefix + (column_name if occurs_name in repeated else occurs_name)
        child_keys = [*(key[parents] for key in keys), own]
        table = _split(element, records[parents], child_keys, f"{child}__", out)
        for depth, key in enumerate(child_keys, start=1):
            index = INDEX if depth == len(child_keys) else f"{INDEX}_{depth}"
            table = table.append_column(index, pa.array(key.astype(np.int32)))
        out[child] = _Child(table, records[parents])
    return flat.drop_columns(list(names))


class _Stage:
    """TEMP tables of the window's records: `_CHECKED` (rows and quarantine rows as
    `commit_days` reads them, see `casting.BOOKKEEPING`) and one per child table."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        reader: CopybookReader,
        schema: pa.Schema,
        name: str,
        *,
        explode: bool,
    ) -> None:
        self.con = con
        self.reader = reader
        self.explode = explode
        parent, children = _shape(schema.empty_table(), _NO_ROWS, explode=explode)
        self.columns = self._declare(_CHECKED, BOOKKEEPING, parent)
        self.children = {
            key: ChildTable(
                f"{name}__{key}",
                self._declare(f"_fabric_copybook_child{i}", BOOKKEEPING[:4], child.table),
                f"_fabric_copybook_child{i}",
            )
            for i, (key, child) in enumerate(children.items())
        }

    def _declare(
        self, relation: str, bookkeeping: tuple[tuple[str, str], ...], table: pa.Table
    ) -> tuple[tuple[str, str], ...]:
        """Create TEMP table `relation`; returns the (name, DuckDB type) of `table`'s columns."""
        columns: tuple[tuple[str, str], ...] = ()
        if table.num_columns:
            self.con.register(_BATCH, table)
            described = self.con.execute(f"DESCRIBE SELECT * FROM {_BATCH}").fetchall()
            self.con.unregister(_BATCH)
            columns = tuple((str(row[0]), str(row[1])) for row in described)
        ddl = ", ".join(f"{quote(n)} {kind}" for n, kind in (*bookkeeping, *columns))
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {quote(relation)} ({ddl})")
        return columns

    def add(self, file: DayFile) -> int:
        """Stage one day file; returns its records read (loaded + quarantined)."""
        read = 0
        framing: list[pa.Table] = []
        for batch in self.reader.iter_batches(file.path):
            read += self._add_batch(file, batch)
            spans = batch.issues.filter(pc.equal(batch.issues["kind"], "framing"))
            if spans.num_rows:
                framing.append(spans)
        if framing:  # last: the number of a span counts all the file's records before it
            read += self._add_framing(file, pa.concat_tables(framing))
        return read

    def _params(self, file: DayFile) -> list[object]:
        return [file.day, str(file.path), file.index << _SEQ_SHIFT]

    def _insert(self, relation: str, table: pa.Table, file: DayFile) -> None:
        """Insert decoded rows carrying `_NUMBER` / `_OFFSET` with their bookkeeping."""
        self.con.register(_BATCH, table)
        self.con.execute(
            f"""INSERT INTO {quote(relation)} BY NAME
                SELECT * EXCLUDE ({_NUMBER}, {_OFFSET}), ? AS _fabric_partition,
                       ? AS _fabric_source, {_POSITION} AS _fabric_position,
                       ? + {_OFFSET} AS _fabric_seq
                FROM {_BATCH}""",
            self._params(file),
        )
        self.con.unregister(_BATCH)

    def _add_batch(self, file: DayFile, batch: CopybookBatch) -> int:
        positions = batch.positions
        number, offset = positions["record_number"], positions["record_offset"]
        records = np.arange(len(positions), dtype=np.int64)
        parent, children = _shape(_lowered(batch.table), records, explode=self.explode)
        self._insert(_CHECKED, parent.append_column(_NUMBER, number).append_column(_OFFSET, offset), file)
        for key, child in children.items():
            rows = pa.array(child.records)
            table = child.table.append_column(_NUMBER, number.take(rows))
            self._insert(self.children[key].staged, table.append_column(_OFFSET, offset.take(rows)), file)
        return positions.num_rows + self._add_decode_issues(file, batch.issues)

    def _add_decode_issues(self, file: DayFile, issues: pa.Table) -> int:
        """One quarantine row per record taken out for undecodable values; returns how many."""
        self.con.register(_ISSUES, issues)
        cursor = self.con.execute(
            f"""INSERT INTO {_CHECKED} BY NAME
                SELECT ? AS _fabric_partition, ? AS _fabric_source,
                       {_POSITION} AS _fabric_position, ? + {_OFFSET} AS _fabric_seq,
                       'decode' AS _fabric_code,
                       'file ' || ? || ' ' || {_POSITION} || ': ' || string_agg(
                           'field ' || field || ' at byte ' || "offset" || ': ' || reason
                           || ' (bytes ' || data_hex || ')', '; ' ORDER BY "offset") AS _fabric_reason,
                       any_value(record_hex) AS _fabric_raw
                FROM (SELECT *, record_number AS {_NUMBER}, record_offset AS {_OFFSET}
                      FROM {_ISSUES} WHERE kind = 'decode' AND quarantined)
                GROUP BY {_NUMBER}, {_OFFSET} ORDER BY {_OFFSET}""",
            [*self._params(file), str(file.path)],
        )
        self.con.unregister(_ISSUES)
        row = cursor.fetchone()
        return int(row[0]) if row else 0

    def _add_framing(self, file: DayFile, issues: pa.Table) -> int:
        """One quarantine row per unframeable span; its N counts the file's records before it."""
        first = file.index << _SEQ_SHIFT
        self.con.register(_ISSUES, issues)
        self.con.execute(
            f"""INSERT INTO {_CHECKED} BY NAME
                SELECT ? AS _fabric_partition, ? AS _fabric_source,
                       {_POSITION} AS _fabric_position, ? + {_OFFSET} AS _fabric_seq,
                       'framing' AS _fabric_code,
                       'file ' || ? || ' ' || {_POSITION} || ': ' || reason AS _fabric_reason,
                       data_hex AS _fabric_raw
                FROM (SELECT *, record_offset AS {_OFFSET},
                             (SELECT count(*) FROM {_CHECKED} AS c
                              WHERE c._fabric_seq >= {first} AND c._fabric_seq < {first} + i.record_offset
                                AND c._fabric_code IS DISTINCT FROM 'framing') AS {_NUMBER}
                      FROM {_ISSUES} AS i)
                ORDER BY {_OFFSET}""",
            [*self._params(file), str(file.path)],
        )
        self.con.unregister(_ISSUES)
        return issues.num_rows
