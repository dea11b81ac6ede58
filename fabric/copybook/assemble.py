"""From a block of records to Arrow columns: groups become structs, OCCURS become lists.

Each elementary field is decoded once per block for all its occurrences (one matrix of
n records x k occurrences), then grouped back into the nested shape of the copybook.
OCCURS DEPENDING ON lists are cut to their counters (clamped to the declared bounds).

Problems are reported as rows of the issues table (see `issues.py`), except where garbage
is expected: occurrences past an ODO counter, redefines that are not the record's segment,
and items taking part in a REDEFINES (without a segment map only one of the alternatives
can be meaningful, so none of them is reported).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fabric.copybook.decode import decode
from fabric.copybook.encoding import Alphanumeric, Binary, Display, Floating, National, Packed
from fabric.copybook.issues import IssueBuilder
from fabric.copybook.layout import Copybook, Group, Node, Primitive
from fabric.copybook.records import RecordBlock
from fabric.copybook.settings import Decoded, DecodeSettings
from fabric.copybook.text import hex_strings, raw_bytes

OffsetsOf = Callable[[Node], np.ndarray]


@dataclass(frozen=True)
class AssemblyOptions:
    settings: DecodeSettings
    debug: str | None = None  # "hex" or "raw"
    occurs_mappings: dict[str, dict[str, int]] | None = None


def top_fields(copybook: Copybook) -> list[Node]:
    """The fields of a single 01 record, or the 01 records themselves when there are more."""
    roots = copybook.roots
    if len(roots) == 1:
        return roots[0].output_children
    return [r for r in roots if r.kept]


class BlockAssembler:
    """Decodes one block of records laid out by `offsets_of`."""

    def __init__(
        self,
        copybook: Copybook,
        options: AssemblyOptions,
        block: RecordBlock,
        offsets_of: OffsetsOf,
        issues: IssueBuilder,
        active: dict[Node, np.ndarray] | None = None,
    ) -> None:
        self.copybook = copybook
        self.options = options
        self.block = block
        self.n = len(block)
        self.offsets_of = offsets_of
        self.issues = issues
        self.active = active or {}
        self._decoded: dict[Node, tuple[Decoded, np.ndarray, np.ndarray | None]] = {}

    def columns(self) -> list[tuple[str, pa.Array]]:
        present = np.ones(self.n, dtype=bool)
        out: list[tuple[str, pa.Array]] = []
        for node in top_fields(self.copybook):
            out.extend(self._named_fields(node, present, report=True))
        return out

    # -- raw bytes --------------------------------------------------------------------

    def raw(self, node: Primitive | Group) -> tuple[np.ndarray, np.ndarray | None]:
        """(occurrences x size bytes, bytes available per occurrence or None if all)."""
        offsets = self.offsets_of(node)
        size = node.size
        data = self.block.data
        width = data.shape[1]
        count = len(offsets)
        inside = bool((offsets >= 0).all() and offsets.max() + size <= width)
        steps = np.diff(offsets)
        if count == 1 and inside:
            raw = data[:, offsets[0] : offsets[0] + size]
        elif count > 1 and inside and bool((steps == steps[0]).all()) and steps[0] > 0:
            # equally spaced occurrences: a strided view, copied once by the reshape
            row_stride, column_stride = data.strides
            view = np.lib.stride_tricks.as_strided(
                data[:, offsets[0] :],
                shape=(self.n, count, size),
                strides=(row_stride, int(steps[0]) * column_stride, column_stride),
                writeable=False,
            )
            raw = view.reshape(self.n * count, size)
        else:
            index = np.clip(offsets[:, None] + np.arange(size)[None, :], 0, max(width - 1, 0))
            raw = data[:, index].reshape(self.n * count, size)
        if inside and self.block.lengths is None:
            return raw, None
        lengths = self.block.byte_lengths()
        available = np.clip(lengths[:, None] - offsets[None, :], 0, size)
        available[:, offsets < 0] = 0
        available = available.reshape(-1)
        return raw, None if bool((available == size).all()) else available

    def decoded(self, node: Primitive) -> tuple[Decoded, np.ndarray, np.ndarray | None]:
        if node not in self._decoded:
            raw, available = self.raw(node)
            result = decode(node.encoding, node.value_type, raw, available, self.options.settings)
            self._decoded[node] = (result, raw, available)
        return self._decoded[node]

    # -- counts -----------------------------------------------------------------------

    def counts(self, table: Node) -> np.ndarray:
        """Element counts of an OCCURS table, one per occurrence of its parent, clamped to
        the declared bounds."""
        occurs = table.occurs
        assert occurs is not None
        counts, _ = self._counter_values(table)
        return np.clip(counts, occurs.minimum, occurs.maximum)

    def _counter_values(self, table: Node) -> tuple[np.ndarray, np.ndarray]:
        """(counter value per occurrence of the table's parent, and which occurrence of the
        counter field it comes from); -1 marks a value missing from occurs_mappings."""
        parent_dims = table.dims[:-1]
        total = self.n * int(np.prod(parent_dims, dtype=np.int64))
        occurs = table.occurs
        assert occurs is not None
        if table.counter is None:
            return np.full(total, occurs.maximum, dtype=np.int64), np.zeros(total, np.int64)
        counter = table.counter
        decoded, _, _ = self.decoded(counter)
        mappings = self.options.occurs_mappings or {}
        mapping = mappings.get(table.name) or mappings.get(table.source_name)
        values = _count_values(decoded.array, mapping)
        counter_dims = counter.dims
        extra = (1,) * (len(parent_dims) - len(counter_dims))
        source = np.arange(len(values)).reshape((self.n, *counter_dims, *extra))
        source = np.broadcast_to(source, (self.n, *parent_dims)).reshape(-1)
        return values[source], source

    def _check_counter(self, table: Node, present: np.ndarray) -> None:
        """Report DEPENDING ON values outside the declared bounds (they are clamped)."""
        occurs, counter = table.occurs, table.counter
        assert occurs is not None and counter is not None
        values, source = self._counter_values(table)
        wrong = present & ((values < occurs.minimum) | (values > occurs.maximum))
        if not wrong.any():
            return
        decoded, raw, available = self.decoded(counter)
        bad = np.zeros(len(raw), dtype=bool)
        bad[source[wrong]] = True
        if decoded.invalid is not None:
            bad &= ~decoded.invalid  # already reported as undecodable
        if bad.any():
            reason = (
                f"OCCURS DEPENDING ON value outside {occurs.minimum}..{occurs.maximum} "
                f"for {table.name} (clamped)"
            )
            offsets = self.offsets_of(counter)
            self.issues.add_decode(self.block, counter, offsets, bad, raw, available, reason)

    # -- building ---------------------------------------------------------------------

    def _named_fields(self, node: Node, present: np.ndarray, report: bool) -> list[tuple[str, pa.Array]]:
        """The field (and its debug twin) for every occurrence of the parent."""
        out = [(node.name, self.field(node, present, report))]
        if self.options.debug and isinstance(node, Primitive):
            out.append((f"{node.name}_debug", self._debug(node, present)))
        return out

    def field(self, node: Node, present: np.ndarray, report: bool) -> pa.Array:
        if node.occurs is None:
            return self.elements(node, present, report)
        counts, used = self._occurrences(node, present)
        if report and node.counter is not None:
            self._check_counter(node, present)
        return _as_lists(counts, used, self.elements(node, used, report))

    def _occurrences(self, node: Node, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Counts per parent occurrence, and which element slots they use."""
        maximum = node.max_count
        counts = np.where(present, self.counts(node), 0)
        used = np.tile(np.arange(maximum), len(counts)) < np.repeat(counts, maximum)
        return counts, used

    def elements(self, node: Node, present: np.ndarray, report: bool) -> pa.Array:
        """One value per occurrence of `node` (its own OCCURS included)."""
        mask = None
        if node in self.active:
            per_record = self.active[node]
            mask = ~np.repeat(per_record, len(present) // self.n)
            present = present & ~mask
        elif node.redefines is not None or node.redefined:
            report = False
        if isinstance(node, Primitive):
            return self._primitive(node, present, report)
        assert isinstance(node, Group)
        names: list[str] = []
        arrays: list[pa.Array] = []
        for child in node.output_children:
            for name, array in self._named_fields(child, present, report):
                names.append(name)
                arrays.append(array)
        return pa.StructArray.from_arrays(arrays, names=names, mask=None if mask is None else pa.array(mask))

    def _primitive(self, node: Primitive, present: np.ndarray, report: bool) -> pa.Array:
        decoded, raw, available = self.decoded(node)
        if report:
            self._report(node, decoded, raw, available, present)
        return decoded.array

    def _debug(self, node: Primitive, present: np.ndarray) -> pa.Array:
        _, raw, available = self.decoded(node)
        maker = raw_bytes if self.options.debug == "raw" else hex_strings
        values = maker(raw, available)
        if node.occurs is None:
            return values
        counts, used = self._occurrences(node, present)
        return _as_lists(counts, used, values)

    def _report(
        self,
        node: Primitive,
        decoded: Decoded,
        raw: np.ndarray,
        available: np.ndarray | None,
        present: np.ndarray,
    ) -> None:
        for mask, reason in (
            (decoded.invalid, f"invalid {_describe(node)} value"),
            (decoded.overflow, f"value does not fit {node.value_type}"),
        ):
            if mask is None:
                continue
            bad = mask & present
            if bad.any():
                self.issues.add_decode(self.block, node, self.offsets_of(node), bad, raw, available, reason)


def _as_lists(counts: np.ndarray, used: np.ndarray, elements: pa.Array) -> pa.Array:
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), elements.take(pa.array(np.flatnonzero(used))))


def _count_values(array: pa.Array, mapping: dict[str, int] | None) -> np.ndarray:
    if mapping is not None:
        keys = pa.array(list(mapping), type=pa.string())
        index = pc.index_in(pc.cast(array, pa.string()), value_set=keys)
        lookup = np.append(np.array(list(mapping.values()), dtype=np.int64), -1)
        positions = index.fill_null(len(mapping)).to_numpy(zero_copy_only=False)
        return lookup[positions]
    if pa.types.is_decimal(array.type) or pa.types.is_floating(array.type):
        array = pc.cast(array, pa.int64(), safe=False)
    return array.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)


def _describe(node: Primitive) -> str:
    encoding = node.encoding
    if isinstance(encoding, Packed):
        return "packed decimal (COMP-3)"
    if isinstance(encoding, Display):
        return "zoned decimal (DISPLAY)" if not encoding.edited else "edited numeric"
    if isinstance(encoding, Binary):
        return "binary (COMP)"
    if isinstance(encoding, Floating):
        return "floating point"
    if isinstance(encoding, Alphanumeric | National):
        return "text"
    return "field"
