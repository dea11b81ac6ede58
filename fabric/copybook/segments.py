"""Multisegment files: segment filters, segment redefines, segment ids and hierarchies.

A segment field (Cobrix `segment_field`) tells each record's type. With it:

* `segment_filter` keeps only records of the listed types;
* `redefine_segment_id_map` fills only the REDEFINES group that belongs to the record's
  type (the other groups are null);
* `segment_id_level<N>` generates `Seg_Id0..n`: '<prefix>_<file id>_<root record index>'
  for roots and '<Seg_Id0>_L<level>_<counter>' below; each level's counter restarts at a
  new root;
* `segment-children` nests child segments as lists inside their parent's group, one
  output row per root.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fabric.copybook.errors import OptionError

WILDCARDS = frozenset({"_", "*"})


def as_strings(array: pa.Array) -> pa.Array:
    """Segment values as strings ('1' for a PIC 9 field)."""
    return array if pa.types.is_string(array.type) else pc.cast(array, pa.string())


def matches(values: pa.Array, ids: tuple[str, ...]) -> np.ndarray:
    found = pc.is_in(values, value_set=pa.array(list(ids), type=pa.string()))
    return found.fill_null(False).to_numpy(zero_copy_only=False)


@dataclass
class SegmentIdGenerator:
    """Seg_Id columns for consecutive blocks of one file."""

    levels: tuple[tuple[str, ...], ...]
    prefix: str
    file_id: int
    root_id: str | None = None
    counters: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.counters = [0] * len(self.levels)

    def levels_of(self, values: pa.Array) -> np.ndarray:
        level = np.full(len(values), -1, dtype=np.int64)
        wildcard = None
        for k, ids in enumerate(self.levels):
            explicit = tuple(i for i in ids if i not in WILDCARDS)
            if len(explicit) < len(ids) and wildcard is None:
                wildcard = k
            level[(level < 0) & matches(values, explicit)] = k
        if wildcard is not None:
            level[(level < 0) & ~pc.is_null(values).to_numpy(zero_copy_only=False)] = wildcard
        return level

    def columns(self, values: pa.Array, numbers: np.ndarray) -> list[tuple[str, pa.Array]]:
        n = len(values)
        level = self.levels_of(values)
        positions = np.arange(n)
        is_root = level == 0
        last_root = np.maximum.accumulate(np.where(is_root, positions, -1)) if n else positions
        root_labels = pc.binary_join_element_wise(
            pa.scalar(f"{self.prefix}_{self.file_id}"),
            pc.cast(pa.array(numbers), pa.string()),
            "_",
        )
        seg0 = root_labels.take(pa.array(np.maximum(last_root, 0)))
        before_first = last_root < 0
        if before_first.any():
            carried = pa.array([self.root_id] * n, type=pa.string())
            seg0 = pc.if_else(pa.array(before_first), carried, seg0)
        # Records of no listed level still belong to the current root.
        known = level >= 0
        out = [("Seg_Id0", seg0)]
        for k in range(1, len(self.levels)):
            cumulative = np.cumsum(level == k)
            at_root = np.where(last_root >= 0, cumulative[np.maximum(last_root, 0)], 0)
            counter = np.where(before_first, self.counters[k] + cumulative, cumulative - at_root)
            label = pc.binary_join_element_wise(seg0, pc.cast(pa.array(counter), pa.string()), f"_L{k}_")
            show = known & (level >= k)
            out.append((f"Seg_Id{k}", pc.if_else(pa.array(show), label, pa.scalar(None, pa.string()))))
            if n:
                self.counters[k] = int(counter[-1])
        if n:
            self.root_id = seg0[n - 1].as_py()
        return out


def nest_children(
    columns: list[tuple[str, pa.Array]],
    segment_types: np.ndarray,
    children: dict[str, tuple[str, ...]],
) -> tuple[list[tuple[str, pa.Array]], np.ndarray, np.ndarray]:
    """Fold child segment records into lists inside their parent's group.

    `columns` are the top-level fields of every record (segment groups among them, as
    structs), `segment_types` the name of each record's segment group ('' if none).
    Returns the columns of the root records (child groups removed), the row index of each
    root record, and the index of the row where the next root begins.
    """
    names = [name for name, _ in columns]
    by_name = dict(columns)
    parent_of: dict[str, str] = {}
    for parent, kids in children.items():
        for kid in kids:
            if kid in parent_of:
                raise OptionError(f"segment-children: {kid} has two parents")
            parent_of[kid] = parent
    for name in (*children, *parent_of):
        if name not in by_name:
            raise OptionError(f"segment-children: {name} is not a top-level group")
    n = len(segment_types)
    positions = np.arange(n)

    def nested(kind: str) -> pa.Array:
        """The groups of records of `kind`, each with its children lists appended."""
        rows = np.flatnonzero(segment_types == kind)
        struct = by_name[kind].take(pa.array(rows))
        fields = [struct.type.field(i) for i in range(struct.type.num_fields)]
        arrays = [struct.field(i) for i in range(struct.type.num_fields)]
        for kid in children.get(kind, ()):
            kid_rows = np.flatnonzero(segment_types == kid)
            latest_parent = np.maximum.accumulate(np.where(segment_types == kind, positions, -1))
            owner = latest_parent[kid_rows]
            kept = owner >= 0
            slot = np.searchsorted(rows, owner[kept])
            counts = np.bincount(slot, minlength=len(rows))
            offsets = np.zeros(len(rows) + 1, dtype=np.int32)
            np.cumsum(counts, out=offsets[1:])
            values = nested(kid).filter(pa.array(kept))
            arrays.append(pa.ListArray.from_arrays(pa.array(offsets), values))
            fields.append(pa.field(kid, arrays[-1].type))
        return pa.StructArray.from_arrays(arrays, fields=fields)

    roots = [name for name in children if name not in parent_of]
    is_root = np.isin(segment_types, roots)
    root_rows = np.flatnonzero(is_root)
    next_root = np.append(root_rows[1:], n)
    nested_roots = {name: nested(name) for name in roots}
    out: list[tuple[str, pa.Array]] = []
    for name in names:
        if name in parent_of:
            continue
        if name in nested_roots:
            kind_rows = np.flatnonzero(segment_types == name)
            where = np.searchsorted(kind_rows, root_rows)
            is_kind = segment_types[root_rows] == name
            values = nested_roots[name].take(pa.array(np.minimum(where, max(len(kind_rows) - 1, 0))))
            out.append((name, pc.if_else(pa.array(is_kind), values, pa.nulls(len(root_rows), values.type))))
        else:
            out.append((name, by_name[name].take(pa.array(root_rows))))
    return out, root_rows, next_root
