"""Reading mainframe data files with a copybook into Arrow.

`CopybookReader(copybook, options)` parses the copybook once; `iter_batches(data)` streams
the data block by block (about `chunk_bytes` of records each), and `read(data)` returns
everything: the decoded table, each row's position in its file, and the issues table.
`read_copybook_file` is the one-call form returning the table.

Output columns follow Cobrix: generated columns first (File_Id, Record_Id,
Record_Byte_Length, Seg_Id0..n when asked for), then the copybook fields; with
`schema_retention_policy=keep_original` the 01 record stays one struct column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fabric.copybook.assemble import AssemblyOptions, BlockAssembler
from fabric.copybook.codepages import CodePage, ascii_charset, ebcdic_code_page
from fabric.copybook.decode import decode
from fabric.copybook.errors import CopybookError, DecodeError, OptionError
from fabric.copybook.issues import ISSUE_SCHEMA, IssueBuilder
from fabric.copybook.layout import (
    Copybook,
    LayoutOptions,
    Node,
    Primitive,
    VariableLayout,
    walk_variable,
)
from fabric.copybook.options import ReaderOptions
from fabric.copybook.parser import SourceFormat
from fabric.copybook.records import (
    Framing,
    FramingIssue,
    RdwParser,
    RecordBlock,
    RecordHeaderParser,
    Spans,
    fixed_blocks,
    gather,
    header_parser,
    header_spans,
    sized_spans,
    text_spans,
)
from fabric.copybook.segments import SegmentIdGenerator, as_strings, matches, nest_children
from fabric.copybook.settings import DecodeSettings
from fabric.copybook.sources import DataBuffer, DataSource, data_files, open_data

CopybookSource = str | Path | Sequence[str | Path]
Columns = list[tuple[str, pa.Array]]

POSITION_SCHEMA = pa.schema(
    [
        ("file_id", pa.int32()),
        ("record_number", pa.int64()),  # 0-based position of the record in its file
        ("record_offset", pa.int64()),  # byte offset of the record payload in the file
        ("record_length", pa.int64()),  # payload bytes (record header excluded)
    ]
)
DEFAULT_CHUNK_BYTES = 32 * 1024 * 1024


@dataclass
class CopybookBatch:
    """One block: decoded records, their positions, and the issues met since the last."""

    table: pa.Table
    positions: pa.Table
    issues: pa.Table


@dataclass
class CopybookRead:
    """A whole read: `positions` has one row per `table` row; `files[file_id]` is the path."""

    table: pa.Table
    positions: pa.Table
    issues: pa.Table
    files: list[str]


def load_copybook_texts(copybook: CopybookSource | None, options: ReaderOptions) -> list[str]:
    """Copybook text from the argument (text, path or paths) or the copybook options."""
    if copybook is not None and (options.copybook_contents or options.copybook_paths):
        raise OptionError("give the copybook either as an argument or with the copybook options")
    if copybook is None:
        if options.copybook_contents is not None:
            return [options.copybook_contents]
        if not options.copybook_paths:
            raise OptionError("no copybook given (pass one, or the copybook/copybooks options)")
        copybook = list(options.copybook_paths)
    items = [copybook] if isinstance(copybook, str | Path) else list(copybook)
    texts = []
    for item in items:
        if isinstance(item, str) and "\n" in item:
            texts.append(item)
        elif Path(item).is_file():
            texts.append(Path(item).read_text(encoding="utf-8", errors="replace"))
        else:
            raise CopybookError(f"copybook file not found: {item} (copybook text must contain a line break)")
    return texts


class CopybookReader:
    """A copybook plus reader options, ready to decode data files."""

    def __init__(
        self,
        copybook: CopybookSource | None,
        options: Mapping[str, str] | None = None,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        self.options = opts = ReaderOptions.from_mapping(options)
        self.copybook = Copybook.parse(
            load_copybook_texts(copybook, opts),
            LayoutOptions(
                drop_group_fillers=opts.drop_group_fillers,
                drop_value_fillers=opts.drop_value_fillers,
                filler_naming_policy=opts.filler_naming_policy,
                non_terminals=opts.non_terminals,
                strict_integral_precision=opts.strict_integral_precision,
                source_format=SourceFormat(
                    opts.truncate_comments, opts.comments_lbound, opts.comments_ubound
                ),
            ),
        )
        page: CodePage | None
        if opts.ebcdic:
            page = ebcdic_code_page(opts.ebcdic_code_page)
        else:
            page = ascii_charset(opts.ascii_charset) if opts.ascii_charset else None
        self.settings = DecodeSettings(
            ebcdic=opts.ebcdic,
            code_page=page,
            trimming=opts.trimming,
            improved_null_detection=opts.improved_null_detection,
            strict_sign_overpunching=opts.strict_sign_overpunching,
            floating_point_format=opts.floating_point_format,
        )
        self.assembly = AssemblyOptions(self.settings, opts.debug, opts.occurs_mappings)
        self.chunk_bytes = chunk_bytes
        self.variable_occurs = opts.variable_size_occurs and self.copybook.has_depending_on
        self.segment_field = self._field(opts.segment_field, "segment_field")
        self.record_length_field = self._field(opts.record_length_field, "record_length_field")
        if (opts.segment_filter or opts.segment_levels or opts.segment_redefines) and (
            self.segment_field is None
        ):
            raise OptionError("the segment options need segment_field")
        self.segment_redefines = {
            self.copybook.find(name): ids for name, ids in opts.segment_redefines.items()
        }
        if opts.segment_children and (len(self.copybook.roots) != 1 or not opts.segment_redefines):
            raise OptionError("segment-children needs a single 01 record and redefine_segment_id_map")
        self.header_parser: RecordHeaderParser | None = None
        if opts.record_header_parser:
            self.header_parser = header_parser(opts.record_header_parser, opts.rhp_additional_info)

    def _field(self, name: str | None, option: str) -> Primitive | None:
        if not name:
            return None
        node = self.copybook.find(name)
        if not isinstance(node, Primitive) or node.occurs_path:
            raise OptionError(f"{option}={name}: not an elementary field outside OCCURS")
        return node

    # -- public API -----------------------------------------------------------------------

    def read(self, data: DataSource, *, flatten: bool = False) -> CopybookRead:
        """Decode every record of `data` (a file, directory, glob or list of files)."""
        batches = list(self.iter_batches(data, flatten=flatten))
        files = [str(p) for p in data_files(data)]
        if not batches:
            return CopybookRead(
                self.schema(flatten=flatten).empty_table(),
                POSITION_SCHEMA.empty_table(),
                ISSUE_SCHEMA.empty_table(),
                files,
            )
        return CopybookRead(
            table=pa.concat_tables([b.table for b in batches]),
            positions=pa.concat_tables([b.positions for b in batches]),
            issues=pa.concat_tables([b.issues for b in batches]),
            files=files,
        )

    def iter_batches(self, data: DataSource, *, flatten: bool = False) -> Iterator[CopybookBatch]:
        """Stream `data` block by block; File_Id follows the order of `data_files(data)`."""
        for file_id, path in enumerate(data_files(data)):
            for batch in self._file_batches(path, file_id):
                if flatten:
                    batch.table = flatten_table(batch.table)
                yield batch

    def schema(self, *, flatten: bool = False) -> pa.Schema:
        """The schema of the decoded table."""
        width = self.copybook.record_size
        empty = RecordBlock(
            np.zeros((0, width), np.uint8), None, np.zeros(0, np.int64), np.zeros(0, np.int64)
        )
        table, _ = self._decode_block(empty, 0, IssueBuilder(""), self._segment_ids(0), 0)
        return (flatten_table(table) if flatten else table).schema

    # -- per file -------------------------------------------------------------------------

    def _segment_ids(self, file_id: int) -> SegmentIdGenerator:
        opts = self.options
        return SegmentIdGenerator(opts.segment_levels, opts.segment_id_prefix, file_id)

    def _file_batches(self, path: Path, file_id: int) -> Iterator[CopybookBatch]:
        issues = IssueBuilder(str(path))
        seg_ids = self._segment_ids(file_id)
        record_id = 0
        pending: list[RecordBlock] = []
        with open_data(path) as data:
            for item in self._frames(data, str(path)):
                if isinstance(item, FramingIssue):
                    issues.add_framing(item)
                elif self.options.segment_children:
                    pending.append(item)  # a hierarchy may span blocks: decode the file at once
                else:
                    table, kept = self._decode_block(item, file_id, issues, seg_ids, record_id)
                    record_id += len(kept)
                    yield self._batch(table, kept, file_id, issues)
                    issues = IssueBuilder(str(path))
        if pending:
            block = _concat_blocks(pending)
            table, roots = self._decode_hierarchy(block, file_id, issues)
            yield self._batch(table, roots, file_id, issues)
        elif issues:
            empty = POSITION_SCHEMA.empty_table()
            yield CopybookBatch(self.schema().empty_table(), empty, issues.table())

    def _batch(
        self, table: pa.Table, block: RecordBlock, file_id: int, issues: IssueBuilder
    ) -> CopybookBatch:
        """Apply `on_decode_error` to a decoded block."""
        positions = _positions(block, file_id)
        bad = issues.bad_records()
        policy = self.options.on_decode_error
        if policy == "null" or not len(bad):
            return CopybookBatch(table, positions, issues.table())
        if policy == "fail":
            first = issues.table().filter(pc.equal(issues.table()["kind"], "decode"))
            row = first.slice(0, 1).to_pylist()[0]
            raise DecodeError(
                f"{row['file']}: record {row['record_number']} (byte offset "
                f"{row['record_offset']}), field {row['field']} at byte offset {row['offset']}: "
                f"{row['reason']}; bytes {row['data_hex']}"
            )
        keep = pa.array(~np.isin(positions["record_number"].to_numpy(), bad))
        return CopybookBatch(table.filter(keep), positions.filter(keep), issues.table(bad))

    # -- framing --------------------------------------------------------------------------

    def _frames(self, data: DataBuffer, path: str) -> Iterator[RecordBlock | FramingIssue]:
        """Blocks of records (copied out of the file) and framing problems, in file order."""
        for item in self._frames_in(data.view, path):
            yield item
            if isinstance(item, RecordBlock) and len(item):
                data.release_before(int(item.offsets[-1]))

    def _frames_in(self, view: memoryview, path: str) -> Iterator[RecordBlock | FramingIssue]:
        opts = self.options
        end = max(len(view) - opts.file_end_offset, 0)
        base = min(opts.file_start_offset, end)
        region = view[base:end]
        buffer = np.frombuffer(region, dtype=np.uint8)
        width = self.copybook.record_size
        record_bytes = opts.record_start_offset + width + opts.record_end_offset
        chunk = max(1, self.chunk_bytes // max(record_bytes, 1))
        framing = Framing(path, base, chunk, opts.on_framing_error)
        spans: Iterator[Spans | FramingIssue]
        if opts.record_format == "F" and not self.variable_occurs and not self.record_length_field:
            record_length = opts.record_length or record_bytes
            payload_end = record_length - opts.record_end_offset
            yield from fixed_blocks(buffer, framing, record_length, (opts.record_start_offset, payload_end))
            return
        if opts.record_format in ("D", "T"):
            spans = text_spans(buffer, chunk_records=chunk)
        elif opts.record_format == "V":
            parser: RecordHeaderParser = self.header_parser or RdwParser(
                opts.rdw_big_endian, opts.rdw_adjustment
            )
            spans = header_spans(region, parser, framing)
        else:
            sizer = self._size_from_field if self.record_length_field else self._size_from_counters
            spans = sized_spans(region, lambda at: sizer(buffer, at), framing)
        payload = (opts.record_start_offset, opts.record_end_offset)
        for item in spans:
            if isinstance(item, FramingIssue):
                yield item
            else:
                yield gather(buffer, item, base_offset=base, payload=payload, width=width)

    def _scalar(self, node: Primitive, data: np.ndarray, position: int) -> object:
        raw = data[position : position + node.size]
        if len(raw) < node.size:
            raise IndexError(f"the record ends inside {node.name}")
        decoded = decode(node.encoding, node.value_type, raw[None, :], None, self.settings)
        return decoded.array[0].as_py()

    def _size_from_field(self, data: np.ndarray, position: int) -> int:
        node = self.record_length_field
        assert node is not None
        value = self._scalar(node, data, position + node.offset)
        if not isinstance(value, int):
            raise ValueError(f"{node.name} does not hold a valid record length")
        return value + self.options.rdw_adjustment

    def _size_from_counters(self, data: np.ndarray, position: int) -> int:
        return self._variable_layout(data, position).size

    def _variable_layout(self, data: np.ndarray, position: int) -> VariableLayout:
        return walk_variable(self.copybook, lambda table, at: self._count(table, data, position + at))

    def _count(self, table: Node, data: np.ndarray, position: int) -> int:
        counter, occurs = table.counter, table.occurs
        assert counter is not None and occurs is not None
        value = self._scalar(counter, data, position)
        mappings = self.options.occurs_mappings
        mapping = mappings.get(table.name) or mappings.get(table.source_name)
        if mapping is not None:
            count = mapping.get(str(value), -1)
        else:
            count = int(value) if isinstance(value, int | float) else 0
        return min(max(count, occurs.minimum), occurs.maximum)

    # -- decoding -------------------------------------------------------------------------

    def _segment_values(self, block: RecordBlock) -> pa.Array:
        assert self.segment_field is not None
        assembler = BlockAssembler(
            self.copybook, self.assembly, block, self.copybook.fixed_offsets, IssueBuilder("")
        )
        decoded, _, _ = assembler.decoded(self.segment_field)
        return as_strings(decoded.array)

    def _top_columns(
        self, block: RecordBlock, issues: IssueBuilder, active: dict[Node, np.ndarray]
    ) -> Columns:
        if not self.variable_occurs:
            offsets_of: Callable[[Node], np.ndarray] = self.copybook.fixed_offsets
            return BlockAssembler(self.copybook, self.assembly, block, offsets_of, issues, active).columns()
        # Records with different counters have different layouts: decode the rows of each
        # layout together, then restore the file order.
        groups: dict[tuple[int, ...], tuple[VariableLayout, list[int]]] = {}
        for row in range(len(block)):
            layout = self._variable_layout(block.data[row], 0)
            groups.setdefault(layout.counts, (layout, []))[1].append(row)
        parts: list[pa.Table] = []
        order: list[int] = []
        for layout, rows in groups.values():
            index = np.asarray(rows)
            assembler = BlockAssembler(
                self.copybook,
                self.assembly,
                block.take(index),
                layout.offsets.__getitem__,
                issues,
                {node: mask[index] for node, mask in active.items()},
            )
            columns = assembler.columns()
            parts.append(pa.Table.from_arrays([a for _, a in columns], names=[n for n, _ in columns]))
            order.extend(rows)
        if not parts:
            return BlockAssembler(
                self.copybook, self.assembly, block, self.copybook.fixed_offsets, issues, active
            ).columns()
        table = pa.concat_tables(parts).take(pa.array(np.argsort(np.asarray(order))))
        return [(n, c.combine_chunks()) for n, c in zip(table.column_names, table.columns, strict=True)]

    def _decode_block(
        self,
        block: RecordBlock,
        file_id: int,
        issues: IssueBuilder,
        seg_ids: SegmentIdGenerator,
        record_id: int,
    ) -> tuple[pa.Table, RecordBlock]:
        """The decoded table of a block, and the block's records that passed the filter."""
        opts = self.options
        active: dict[Node, np.ndarray] = {}
        segment_columns: Columns = []
        if self.segment_field is not None:
            values = self._segment_values(block)
            if opts.segment_filter:
                keep = matches(values, opts.segment_filter)
                block = block.take(np.flatnonzero(keep))
                values = values.filter(pa.array(keep))
            if opts.segment_levels:
                segment_columns = seg_ids.columns(values, block.numbers)
            active = {node: matches(values, ids) for node, ids in self.segment_redefines.items()}
        columns = self._top_columns(block, issues, active)
        generated: Columns = []
        if opts.generate_record_id:
            n = len(block)
            generated = _record_ids(file_id, np.arange(record_id, record_id + n), block.byte_lengths())
        return self._table([*generated, *segment_columns], columns, len(block)), block

    def _decode_hierarchy(
        self, block: RecordBlock, file_id: int, issues: IssueBuilder
    ) -> tuple[pa.Table, RecordBlock]:
        """One row per root segment, its descendants nested (Cobrix segment-children)."""
        values = self._segment_values(block)
        kinds = np.full(len(block), "", dtype=object)
        active: dict[Node, np.ndarray] = {}
        for node, ids in self.segment_redefines.items():
            active[node] = matches(values, ids)
            kinds[active[node] & (kinds == "")] = node.name
        columns = self._top_columns(block, issues, active)
        children = {
            self.copybook.find(parent).name: tuple(self.copybook.find(c).name for c in kids)
            for parent, kids in self.options.segment_children.items()
        }
        nested, roots, next_root = nest_children(columns, kinds, children)
        generated: Columns = []
        if self.options.generate_record_id:
            totals = np.concatenate(([0], np.cumsum(block.byte_lengths())))
            generated = _record_ids(file_id, next_root, totals[next_root] - totals[roots])
        return self._table(generated, nested, len(roots)), block.take(roots)

    def _table(self, generated: Columns, columns: Columns, n: int) -> pa.Table:
        roots = self.copybook.roots
        if self.options.keep_original_root and len(roots) == 1 and not roots[0].synthetic:
            struct = pa.StructArray.from_arrays([a for _, a in columns], names=[name for name, _ in columns])
            columns = [(roots[0].name, struct)]
        merged = [*generated, *columns]
        if not merged:
            return pa.table({"_empty": pa.nulls(n)}).drop(["_empty"])
        return pa.Table.from_arrays([a for _, a in merged], names=[name for name, _ in merged])


def _record_ids(file_id: int, record_ids: np.ndarray, lengths: np.ndarray) -> Columns:
    n = len(record_ids)
    return [
        ("File_Id", pa.array(np.full(n, file_id, dtype=np.int32))),
        ("Record_Id", pa.array(record_ids.astype(np.int64))),
        ("Record_Byte_Length", pa.array(lengths.astype(np.int32))),
    ]


def _positions(block: RecordBlock, file_id: int) -> pa.Table:
    n = len(block)
    return pa.table(
        {
            "file_id": pa.array(np.full(n, file_id, dtype=np.int32)),
            "record_number": pa.array(block.numbers),
            "record_offset": pa.array(block.offsets),
            "record_length": pa.array(block.byte_lengths()),
        },
        schema=POSITION_SCHEMA,
    )


def _concat_blocks(blocks: list[RecordBlock]) -> RecordBlock:
    width = max(b.data.shape[1] for b in blocks)
    data = np.zeros((sum(len(b) for b in blocks), width), dtype=np.uint8)
    row = 0
    for b in blocks:
        data[row : row + len(b), : b.data.shape[1]] = b.data
        row += len(b)
    return RecordBlock(
        data,
        np.concatenate([b.byte_lengths() for b in blocks]),
        np.concatenate([b.offsets for b in blocks]),
        np.concatenate([b.numbers for b in blocks]),
    )


def flatten_table(table: pa.Table, separator: str = "_") -> pa.Table:
    """Struct columns become one column per leaf (names joined by `separator`); lists stay.

    A leaf of a null struct (an inactive segment redefine) is null.
    """
    names: list[str] = []
    arrays: list[pa.ChunkedArray] = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        _flatten_into(name, column, separator, names, arrays)
    return pa.Table.from_arrays(arrays, names=names)


def _flatten_into(
    name: str,
    column: pa.ChunkedArray,
    separator: str,
    names: list[str],
    arrays: list[pa.ChunkedArray],
) -> None:
    if not pa.types.is_struct(column.type):
        if name in names:
            raise CopybookError(f"flattening gives two columns named {name}; use flatten=False")
        names.append(name)
        arrays.append(column)
        return
    for index in range(column.type.num_fields):
        child = column.type.field(index)
        chunks = [
            pc.if_else(chunk.is_null(), pa.nulls(len(chunk), child.type), chunk.field(index))
            if chunk.null_count
            else chunk.field(index)
            for chunk in column.chunks
        ]
        joined = pa.chunked_array(chunks, type=child.type)
        _flatten_into(f"{name}{separator}{child.name}", joined, separator, names, arrays)


def read_copybook(
    copybook: CopybookSource | None,
    data: DataSource,
    options: Mapping[str, str] | None = None,
    *,
    flatten: bool = True,
) -> CopybookRead:
    """Decode `data` with `copybook`: the table, each row's position, and the issues."""
    return CopybookReader(copybook, options).read(data, flatten=flatten)


def read_copybook_file(
    copybook: CopybookSource | None,
    data: DataSource,
    options: Mapping[str, str] | None = None,
    *,
    flatten: bool = True,
) -> pa.Table:
    """Decode `data` into one Arrow table: struct paths flattened with '_', OCCURS as lists.

    `copybook` is copybook text, a path, or a list of paths (their records then redefine
    each other). Undecodable values are null; `read_copybook` also returns the issues.
    """
    return read_copybook(copybook, data, options, flatten=flatten).table
