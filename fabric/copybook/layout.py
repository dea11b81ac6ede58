"""The resolved record layout: fields with names, encodings, sizes and byte offsets.

`Copybook.parse` turns copybook text into a tree of `Group` and `Primitive` fields. Offsets
follow COBOL storage rules: REDEFINES items share the offset of the item they redefine and
the block takes the size of its largest member; OCCURS items repeat their element; an
OCCURS DEPENDING ON table takes its maximum size (the fixed layout). Several 01-level
records all start at offset 0. With `variable_size_occurs` a record's actual layout depends
on its counters; `walk_variable` computes it for one record.

Output names replace '-' with '_' and drop ':' and quotes. FILLER items are dropped or
renamed according to the filler options, and groups left without fields are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from fabric.copybook.encoding import Alphanumeric, Encoding, arrow_type, make_encoding
from fabric.copybook.encoding import Usage as _Usage
from fabric.copybook.errors import CopybookLayoutError, CopybookSyntaxError
from fabric.copybook.parser import Item, Occurs, SourceFormat, parse_copybook


def output_name(name: str) -> str:
    """Copybook name to output column name: '-' becomes '_', ':' and quotes are dropped."""
    return name.replace("-", "_").translate({ord(c): None for c in ":'\""})


@dataclass(eq=False, kw_only=True)
class Node:
    name: str
    source_name: str
    line: int
    parent: Group | None
    offset: int = 0  # from the record start, every enclosing OCCURS index at 0
    size: int = 0  # bytes of one occurrence
    occurs: Occurs | None = None
    counter: Primitive | None = None  # the resolved DEPENDING ON field
    redefines: Node | None = None
    redefined: bool = False  # another item redefines this one
    is_filler: bool = False
    kept: bool = True  # part of the output

    @property
    def max_count(self) -> int:
        return self.occurs.maximum if self.occurs else 1

    @property
    def total_size(self) -> int:
        return self.size * self.max_count

    @property
    def occurs_path(self) -> tuple[Node, ...]:
        """The OCCURS items enclosing this one, outermost first (itself included)."""
        path: list[Node] = []
        node: Node | None = self
        while node is not None:
            if node.occurs is not None:
                path.append(node)
            node = node.parent
        return tuple(reversed(path))

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(n.max_count for n in self.occurs_path)

    @property
    def path(self) -> str:
        names: list[str] = []
        node: Node | None = self
        while node is not None:
            names.append(node.name)
            node = node.parent
        return ".".join(reversed(names))


@dataclass(eq=False, kw_only=True)
class Group(Node):
    children: list[Node] = field(default_factory=list)
    synthetic: bool = False

    @property
    def output_children(self) -> list[Node]:
        return [c for c in self.children if c.kept]


@dataclass(eq=False, kw_only=True)
class Primitive(Node):
    encoding: Encoding
    value_type: pa.DataType


@dataclass(frozen=True)
class LayoutOptions:
    drop_group_fillers: bool = False
    drop_value_fillers: bool = True
    filler_naming_policy: str = "sequence_numbers"  # or "previous_field_name"
    non_terminals: tuple[str, ...] = ()
    strict_integral_precision: bool = False
    source_format: SourceFormat = field(default_factory=SourceFormat)


class Copybook:
    """A parsed and laid-out copybook (one or more 01-level records)."""

    def __init__(self, roots: list[Group]) -> None:
        self.roots = roots
        self.record_size = max(r.total_size for r in roots)

    @classmethod
    def parse(cls, texts: str | list[str], options: LayoutOptions | None = None) -> Copybook:
        """Parse one copybook, or several whose records then redefine each other."""
        opts = options or LayoutOptions()
        items: list[Item] = []
        for text in [texts] if isinstance(texts, str) else texts:
            items.extend(parse_copybook(text, opts.source_format))
        roots = [_build(item, None, opts) for item in items]
        groups = [r if isinstance(r, Group) else _wrap(r) for r in roots]
        for root in groups:
            _assign_offsets(root, 0)
        for root in groups:
            _resolve_counters(root, groups)
            _apply_filler_policy(root, opts)
            _add_non_terminals(root, {output_name(n).upper() for n in opts.non_terminals}, opts)
        return cls(groups)

    def nodes(self) -> Iterator[Node]:
        for root in self.roots:
            yield from _walk(root)

    def primitives(self) -> Iterator[Primitive]:
        return (n for n in self.nodes() if isinstance(n, Primitive))

    def find(self, name: str) -> Node:
        """The first field named `name` (copybook or output spelling, any case)."""
        wanted = output_name(name).upper()
        for node in self.nodes():
            if node.name.upper() == wanted or output_name(node.source_name).upper() == wanted:
                return node
        raise CopybookLayoutError(f"the copybook has no field named {name!r}")

    @property
    def has_depending_on(self) -> bool:
        return any(n.counter is not None for n in self.nodes())

    def fixed_offsets(self, field_: Node) -> np.ndarray:
        """Offsets of every occurrence of `field_` in the fixed layout, in C order."""
        offsets = np.array([field_.offset], dtype=np.int64)
        for occ in field_.occurs_path:
            steps = np.arange(occ.max_count, dtype=np.int64) * occ.size
            offsets = (offsets[:, None] + steps[None, :]).ravel()
        return offsets


def _walk(node: Node) -> Iterator[Node]:
    yield node
    if isinstance(node, Group):
        for child in node.children:
            yield from _walk(child)


def _wrap(primitive: Primitive) -> Group:
    group = Group(name=primitive.name, source_name=primitive.source_name, line=primitive.line,
                  parent=None, synthetic=True, children=[primitive])  # fmt: skip
    primitive.parent = group
    return group


def _build(item: Item, parent: Group | None, opts: LayoutOptions) -> Group | Primitive:
    name = output_name(item.name)
    if item.is_elementary:
        try:
            encoding = make_encoding(item.picture, item.usage or _Usage.DISPLAY, item.sign)
        except ValueError as exc:
            raise CopybookSyntaxError(str(exc), line=item.line, column=1, token=item.name) from None
        return Primitive(
            name=name,
            source_name=item.name,
            line=item.line,
            parent=parent,
            occurs=item.occurs,
            is_filler=item.is_filler,
            encoding=encoding,
            value_type=arrow_type(encoding, strict_integral_precision=opts.strict_integral_precision),
            size=encoding.size,
        )
    group = Group(
        name=name,
        source_name=item.name,
        line=item.line,
        parent=parent,
        occurs=item.occurs,
        is_filler=item.is_filler,
        synthetic=item.synthetic,
    )
    siblings: list[Node] = []
    for child_item in item.children:
        child = _build(child_item, group, opts)
        if child_item.redefines is not None:
            target = _redefined_sibling(child_item, siblings)
            child.redefines = target
            target.redefined = True
        siblings.append(child)
    group.children = siblings
    return group


def _redefined_sibling(item: Item, siblings: list[Node]) -> Node:
    wanted = (item.redefines or "").upper()
    for sibling in reversed(siblings):
        if sibling.source_name.upper() == wanted:
            return sibling
    raise CopybookSyntaxError(
        f"{item.name} REDEFINES {item.redefines}, which is not an earlier item at the same level",
        line=item.line,
        column=1,
        token=item.redefines or "",
    )


def _assign_offsets(node: Node, offset: int) -> None:
    """Set offsets and sizes of `node` and its descendants (fixed layout)."""
    node.offset = offset
    if not isinstance(node, Group):
        return
    cursor = block_end = offset
    for child in node.children:
        if child.redefines is not None:
            _assign_offsets(child, child.redefines.offset)
            block_end = max(block_end, child.offset + child.total_size)
        else:
            _assign_offsets(child, cursor)
            block_end = cursor + child.total_size
        cursor = block_end
    node.size = cursor - offset


def _resolve_counters(root: Group, roots: list[Group]) -> None:
    for node in _walk(root):
        if node.occurs is None or node.occurs.depending_on is None:
            continue
        node.counter = _find_counter(node, node.occurs.depending_on, roots)


def _find_counter(node: Node, name: str, roots: list[Group]) -> Primitive:
    wanted = name.upper()
    scope: Node | None = node.parent
    while scope is not None:
        for candidate in _walk(scope):
            if isinstance(candidate, Primitive) and candidate.source_name.upper() == wanted:
                return candidate
        scope = scope.parent
    for root in roots:
        for candidate in _walk(root):
            if isinstance(candidate, Primitive) and candidate.source_name.upper() == wanted:
                return candidate
    raise CopybookLayoutError(
        f"copybook line {node.line}: {node.source_name} OCCURS DEPENDING ON {name}, "
        f"but no elementary item is named {name}"
    )


def _apply_filler_policy(root: Group, opts: LayoutOptions) -> None:
    group_seq = value_seq = 0
    for node in _walk(root):
        if not node.is_filler:
            continue
        is_group = isinstance(node, Group)
        if (is_group and opts.drop_group_fillers) or (not is_group and opts.drop_value_fillers):
            node.kept = False
        elif opts.filler_naming_policy == "previous_field_name":
            node.name = f"FILLER_AFTER_{_previous_name(node)}"
        elif is_group:
            group_seq += 1
            node.name = f"FILLER_{group_seq}"
        else:
            value_seq += 1
            node.name = f"FILLER_P{value_seq}"
    _drop_empty_groups(root)
    _drop_descendants_of_dropped(root, kept=True)


def _drop_descendants_of_dropped(node: Node, kept: bool) -> None:
    node.kept = node.kept and kept
    if isinstance(node, Group):
        for child in node.children:
            _drop_descendants_of_dropped(child, node.kept)


def _previous_name(node: Node) -> str:
    parent = node.parent
    if parent is None:
        return node.name
    index = parent.children.index(node)
    return parent.children[index - 1].name if index > 0 else parent.name


def _drop_empty_groups(node: Node) -> bool:
    """Mark groups without any kept field as dropped; returns whether `node` is kept."""
    if isinstance(node, Group):
        kept_children = [_drop_empty_groups(child) for child in node.children]
        if not any(kept_children):
            node.kept = False
    return node.kept


def _add_non_terminals(root: Group, names: set[str], opts: LayoutOptions) -> None:
    """Cobrix `non_terminals`: a group also appears as one string field `<NAME>_NT`."""
    if not names:
        return
    for node in list(_walk(root)):
        if not isinstance(node, Group) or node.parent is None or node.name.upper() not in names:
            continue
        encoding = Alphanumeric(node.size)
        text = Primitive(
            name=f"{node.name}_NT",
            source_name=f"{node.source_name}_NT",
            line=node.line,
            parent=node.parent,
            offset=node.offset,
            size=node.size,
            occurs=node.occurs,
            counter=node.counter,
            encoding=encoding,
            value_type=arrow_type(encoding, strict_integral_precision=opts.strict_integral_precision),
        )
        siblings = node.parent.children
        siblings.insert(siblings.index(node) + 1, text)


CountOracle = Callable[["Node", int], int]


@dataclass
class VariableLayout:
    """Where each occurrence of each field sits in one record with variable-size OCCURS.

    `offsets[field]` has one entry per occurrence in the fixed-layout grid (C order); -1
    marks occurrences beyond the record's counters. `counts` lists the counter values in
    the order the walk consumed them: records with equal counts share a layout.
    """

    size: int
    counts: tuple[int, ...]
    offsets: dict[Node, np.ndarray]


def walk_variable(copybook: Copybook, count_of: CountOracle) -> VariableLayout:
    """Lay out one record whose OCCURS DEPENDING ON tables take only their actual size.

    `count_of(table, counter_offset)` returns the element count of `table` given the byte
    offset of its counter occurrence in this record (already placed by the walk).
    """
    walker = _VariableWalker(copybook, count_of)
    size = max(walker.place_all(root, 0, ()) for root in copybook.roots)
    return VariableLayout(size=size, counts=tuple(walker.counts), offsets=walker.grids)


class _VariableWalker:
    def __init__(self, copybook: Copybook, count_of: CountOracle) -> None:
        self.count_of = count_of
        self.grids = {node: np.full(int(np.prod(node.dims)), -1, dtype=np.int64) for node in copybook.nodes()}
        self.counts: list[int] = []

    def place(self, node: Node, offset: int, index: tuple[int, ...]) -> int:
        """Lay out one occurrence of `node` at `offset`; returns its size."""
        grid_index = int(np.ravel_multi_index(index, node.dims)) if index else 0
        self.grids[node][grid_index] = offset
        if not isinstance(node, Group):
            return node.size
        cursor = block_end = offset
        starts: dict[Node, int] = {}
        for child in node.children:
            start = starts[child.redefines] if child.redefines is not None else cursor
            starts[child] = start
            end = start + self.place_all(child, start, index)
            block_end = end if child.redefines is None else max(block_end, end)
            cursor = block_end
        return cursor - offset

    def place_all(self, node: Node, offset: int, index: tuple[int, ...]) -> int:
        """Lay out every occurrence of `node` from `offset`; returns their total size."""
        if node.occurs is None:
            return self.place(node, offset, index)
        count = node.max_count
        if node.counter is not None:
            counter = node.counter
            counter_index = index[: len(counter.occurs_path)]
            position = int(np.ravel_multi_index(counter_index, counter.dims)) if counter_index else 0
            count = self.count_of(node, int(self.grids[counter][position]))
            self.counts.append(count)
        cursor = offset
        for k in range(count):
            cursor += self.place(node, cursor, (*index, k))
        return cursor - offset
