"""The issues table: every undecodable value and every unframeable span of bytes.

One row per problem, with the data file, the record's position and byte offset, the field
(with OCCURS indices), the byte offset and hex of the bad bytes, the whole record in hex,
and the reason. `quarantined` says whether the record was taken out of the decoded table
(`on_decode_error=quarantine`; framing problems are always quarantined spans).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fabric.copybook.layout import Node
from fabric.copybook.records import FramingIssue, RecordBlock
from fabric.copybook.text import hex_strings

ISSUE_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),  # "decode" or "framing"
        ("file", pa.string()),
        ("record_number", pa.int64()),  # 0-based position in the file; null for framing
        ("record_offset", pa.int64()),  # byte offset of the record payload in the file
        ("field", pa.string()),  # e.g. METADATA.ACCOUNT_DETAIL[3].ACCOUNT_TYPE_N
        ("offset", pa.int64()),  # byte offset of the bad bytes in the file
        ("reason", pa.string()),
        ("data_hex", pa.string()),
        ("record_hex", pa.string()),
        ("quarantined", pa.bool_()),
    ]
)
_FRAMING_HEX_LIMIT = 256  # bytes of an unframeable tail shown in the table


def occurrence_paths(node: Node) -> list[str]:
    """The field path of every occurrence of `node`, with OCCURS indices."""
    chain: list[Node] = []
    current: Node | None = node
    while current is not None:
        chain.append(current)
        current = current.parent
    chain.reverse()
    dims = node.dims
    paths = []
    for flat in range(int(np.prod(dims, dtype=np.int64))):
        index = iter(np.unravel_index(flat, dims) if dims else ())
        parts = [
            f"{n.name}[{next(index)}]" if n.occurs is not None else n.name
            for n in chain
            if not getattr(n, "synthetic", False)
        ]
        paths.append(".".join(parts))
    return paths


class IssueBuilder:
    """Collects issues of one data file as Arrow columns."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._parts: list[pa.Table] = []
        self._bad_records: list[np.ndarray] = []
        self._paths: dict[Node, list[str]] = {}

    def add_decode(
        self,
        block: RecordBlock,
        node: Node,
        offsets: np.ndarray,
        bad: np.ndarray,
        raw: np.ndarray,
        available: np.ndarray | None,
        reason: str,
    ) -> None:
        flat = np.flatnonzero(bad)
        per_record = len(offsets)
        rows = flat // per_record
        occurrence = flat % per_record
        if node not in self._paths:
            self._paths[node] = occurrence_paths(node)
        paths = pa.array(self._paths[node]).take(pa.array(occurrence))
        lengths = block.byte_lengths()[rows]
        record_hex = hex_strings(block.data[rows], lengths)
        data_hex = hex_strings(raw[flat], None if available is None else available[flat])
        count = len(flat)
        self._bad_records.append(block.numbers[rows])
        self._parts.append(
            pa.table(
                {
                    "kind": pa.array(["decode"] * count),
                    "file": pa.array([self.path] * count),
                    "record_number": pa.array(block.numbers[rows]),
                    "record_offset": pa.array(block.offsets[rows]),
                    "field": paths,
                    "offset": pa.array(block.offsets[rows] + offsets[occurrence]),
                    "reason": pa.array([reason] * count),
                    "data_hex": data_hex,
                    "record_hex": record_hex,
                    "quarantined": pa.array([False] * count),
                },
                schema=ISSUE_SCHEMA,
            )
        )

    def add_framing(self, issue: FramingIssue) -> None:
        shown = np.frombuffer(issue.data[:_FRAMING_HEX_LIMIT], dtype=np.uint8)[None, :]
        hex_value = hex_strings(shown, None)[0].as_py() if shown.size else ""
        row = {
            "kind": "framing",
            "file": issue.path,
            "record_number": None,
            "record_offset": issue.offset,
            "field": None,
            "offset": issue.offset,
            "reason": f"{issue.reason} ({issue.length} bytes)",
            "data_hex": hex_value,
            "record_hex": hex_value,
            "quarantined": True,
        }
        self._parts.append(pa.Table.from_pylist([row], schema=ISSUE_SCHEMA))

    def __bool__(self) -> bool:
        return bool(self._parts)

    def bad_records(self) -> np.ndarray:
        """Record numbers with at least one decode issue."""
        if not self._bad_records:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate(self._bad_records))

    def table(self, quarantined_records: np.ndarray | None = None) -> pa.Table:
        if not self._parts:
            return ISSUE_SCHEMA.empty_table()
        table = pa.concat_tables(self._parts)
        if quarantined_records is not None and len(quarantined_records):
            hit = np.isin(table["record_number"].to_numpy(zero_copy_only=False), quarantined_records)
            flags = np.asarray(table["quarantined"].to_numpy(zero_copy_only=False)) | hit
            table = table.set_column(
                table.schema.get_field_index("quarantined"), "quarantined", pa.array(flags)
            )
        return table
