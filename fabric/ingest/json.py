"""JSON day files: JSON lines or one top-level array of objects, as records for `jsonl`.

A source's `format` is `lines`, `array` or `auto`; with `auto` each file is read as an array when
its first character (after a BOM and whitespace) is `[`, as JSON lines when it is `{`, and any
other file is refused with a message naming it, its first line and what it starts with (so a CSV
dropped into a JSON folder fails loudly instead of quarantining every line).

An array's elements become records exactly like lines do (`files.stage_lines` columns, the text
being the element's JSON text and the line the one where the element starts), so flattening,
casting and quarantine are the same for both formats. The array is split with Python's JSON
decoder, element by element; where it stops parsing (a malformed or truncated element), the rest
of the file cannot be split reliably and becomes one `json_parse` record naming the line and
column, so that nothing is dropped. An array that is not closed is reported the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import duckdb
import numpy as np
import pyarrow as pa

from fabric.config import Column, JsonEntity, JsonSource
from fabric.errors import SourceError
from fabric.identifiers import literal, quote
from fabric.ingest import jsonl
from fabric.ingest.casting import sql_type, typed_expr
from fabric.ingest.files import FILE_WHERE, DayFile, line_of, stage_lines, transcode
from fabric.ingest.load import ChildTable

_BOM = "\ufeff"
_WHITESPACE = " \t\r\n"
_DECODER = json.JSONDecoder()


def file_format(file: DayFile, declared: str) -> str:
    """`lines` or `array` for one file of a source with format `declared`."""
    if declared == "lines":
        return "lines"
    with file.path.open("rb") as handle:
        head = handle.read(4096).decode("utf-8", errors="replace").lstrip(_BOM + _WHITESPACE)
    if not head or head[0] == "{":
        found = "lines"
    elif head[0] == "[":
        found = "array"
    else:
        raise SourceError(
            f"file {file.path} line 1: neither a JSON array nor JSON lines (it starts with "
            f"{head[:20]!r}); check that the right file was delivered"
        )
    if declared == "array" and found != "array":
        raise SourceError(f"file {file.path} line 1: not a JSON array (it does not start with '[')")
    return found


def stage_documents(
    con: duckdb.DuckDBPyConnection, source: JsonSource, files: Sequence[DayFile], relation: str
) -> dict[int, int]:
    """Create TEMP view `relation` of records (one per line or array element) over `files`, with
    the columns of `files.stage_lines`; returns the number of records per file index."""
    formats = {f.index: file_format(f, source.file_format) for f in files}
    lines = [f for f in files if formats[f.index] == "lines"]
    arrays = [f for f in files if formats[f.index] == "array"]
    counts = stage_lines(con, lines, "utf-8", jsonl.BLANK, f"{relation}_l")
    if not arrays:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {quote(relation)} AS FROM {relation}_l")
        return counts
    parts = [_array_records(f) for f in arrays]
    con.register(f"{relation}_elements", pa.concat_tables(parts))
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW {quote(relation)} AS
            FROM {relation}_l UNION ALL BY NAME FROM {relation}_elements"""
    )
    counts.update({f.index: p.num_rows for f, p in zip(arrays, parts, strict=True)})
    return counts


def _array_records(file: DayFile) -> pa.Table:
    """One record per element of the file's top-level array (see the module docstring)."""
    data = file.path.read_bytes()
    out, bad = transcode(data, "utf-8")
    text = out.decode("utf-8")
    bad_lines = {line + 1: f"{b.description} at column {column + 1}"
                 for (line, column), b in zip(line_of(data, [b.offset for b in bad]), bad,
                                              strict=True)}  # fmt: skip
    records: list[tuple[int, str, str | None, str | None]] = []  # line, text, code, reason
    position = len(text) - len(text.lstrip(_BOM + _WHITESPACE)) + 1  # after the '['
    line, counted = 1, 0

    def line_at(offset: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, offset)
        counted = offset
        return line

    def rest(offset: int, problem: str) -> None:
        at = line_at(offset)
        column = offset - text.rfind("\n", 0, offset)
        records.append((at, text[offset:].strip(), "json_parse",
                        f"{problem} at line {at} column {column}"))  # fmt: skip

    while True:
        position = _skip_whitespace(text, position)
        if position >= len(text):
            rest(position, "the array is not closed (truncated file?)")
            break
        if text[position] == "]" and not records:
            position = _skip_whitespace(text, position + 1)
            if position < len(text):
                rest(position, "text after the end of the array")
            break
        try:
            _, end = _DECODER.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            rest(position, f"not valid JSON ({exc.msg})")
            break
        at = line_at(position)
        element_lines = range(at, at + text.count("\n", position, end) + 1)
        problem = next((bad_lines[n] for n in element_lines if n in bad_lines), None)
        records.append((at, text[position:end], "encoding" if problem else None, problem))
        position = _skip_whitespace(text, end)
        if position < len(text) and text[position] == ",":
            position += 1
        elif position < len(text) and text[position] == "]":
            position = _skip_whitespace(text, position + 1)
            if position < len(text):
                rest(position, "text after the end of the array")
            break
        elif position < len(text):
            rest(position, "expected ',' or ']' after an array element")
            break
    lines = np.array([r[0] for r in records], dtype=np.int64)
    return pa.table(
        {
            "_fabric_partition": pa.array([file.day] * len(records), pa.date32()),
            "_fabric_source": pa.array([str(file.path)] * len(records), pa.string()),
            "_fabric_seq": pa.array((file.index << 32) + lines, pa.int64()),
            "_fabric_line": pa.array(lines, pa.int64()),
            "_fabric_text": pa.array([r[1] for r in records], pa.large_string()),
            "_fabric_code": pa.array([r[2] for r in records], pa.string()),
            "_fabric_reason": pa.array([r[3] for r in records], pa.string()),
        }
    )


def _skip_whitespace(text: str, position: int) -> int:
    while position < len(text) and text[position] in _WHITESPACE:
        position += 1
    return position


def stage_children(
    con: duckdb.DuckDBPyConnection,
    source: str,
    entity: str,
    spec: JsonEntity,
    parent_columns: Sequence[Column],
    lines: str,
    checked: str,
) -> tuple[ChildTable, ...]:
    """Stage each declared child table: one row per element of the array at its `path` in every
    loaded record, keyed by the parent's primary key and `_fabric_index` (1-based position in
    the array), with the parent's partition, source and position.

    A record whose child elements do not fit (an element that is not an object, a value that
    does not parse, a missing non-nullable value, a `path` holding something else than an
    array) is quarantined as a whole, so that a parent is never loaded without all its
    children; `checked` (see `casting.check_records`) is updated accordingly.
    """
    keys = [c for c in parent_columns if c.name in spec.primary_key]
    children = []
    for name, child in spec.child_tables.items():
        key = f"sources.{source}.entities.{entity}.child_tables.{name}"
        array = jsonl.json_path(Column(name=name, path=child.path), key)
        elements = f"_fabric_child_{name}"
        texts = ", ".join(
            f"json_extract_string(element, {literal(jsonl.json_path(c, key))}) AS {quote(c.name)}"
            for c in child.columns
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {quote(elements)} AS
                SELECT _fabric_seq, idx, element, {texts}
                FROM (SELECT _fabric_seq, unnest(items) AS element,
                             generate_subscripts(items, 1) AS idx
                      FROM (SELECT c._fabric_seq, json_extract(l._fabric_text,
                                       {literal(array + "[*]")}) AS items
                            FROM {quote(checked)} AS c JOIN {quote(lines)} AS l USING (_fabric_seq)
                            WHERE c._fabric_code IS NULL))"""
        )
        problems = [
            f"CASE WHEN json_type(element) <> 'OBJECT' THEN {literal(f'{child.path}[')} || idx "
            "|| '] is not an object' END"
        ]
        for column in child.columns:
            text = quote(column.name)
            field = literal(f"].{column.path or column.name}: ")
            where = f"{literal(child.path + '[')} || idx || {field}"
            if not column.nullable:
                problems.append(f"CASE WHEN {text} IS NULL THEN {where} || 'missing value' END")
            if column.type != "string":
                invalid = literal(f"' is not a valid {column.type}")
                opening = literal("'")
                problems.append(
                    f"CASE WHEN {text} IS NOT NULL AND {typed_expr(column, text)} IS NULL THEN "
                    f"{where} || {opening} || {text} || {invalid} END"
                )
        con.execute(
            f"""UPDATE {quote(checked)} SET _fabric_code = 'child_record',
                    _fabric_reason = {FILE_WHERE} || ': ' || p.reason, _fabric_raw = p.raw
                FROM (SELECT p._fabric_seq, p.reason, rtrim(l._fabric_text, chr(13) || chr(10)) AS raw
                      FROM (SELECT _fabric_seq, first(reason ORDER BY idx) AS reason
                            FROM (SELECT _fabric_seq, idx,
                                         concat_ws('; ', {", ".join(problems)}) AS reason
                                  FROM {quote(elements)})
                            WHERE reason <> '' GROUP BY ALL
                            UNION ALL
                            SELECT c._fabric_seq, {literal(child.path + " is not an array")}
                            FROM {quote(checked)} AS c JOIN {quote(lines)} AS l USING (_fabric_seq)
                            WHERE c._fabric_code IS NULL
                              AND json_type(l._fabric_text, {literal(array)})
                                  NOT IN ('ARRAY', 'NULL')) AS p
                      JOIN {quote(lines)} AS l USING (_fabric_seq)) AS p
                WHERE {quote(checked)}._fabric_seq = p._fabric_seq"""
        )
        staged = f"_fabric_child_{name}_staged"
        values = ", ".join(f"{typed_expr(c, 'e.' + quote(c.name))} AS {quote(c.name)}" for c in child.columns)
        parent_keys = ", ".join(f"c.{quote(k.name)}" for k in keys)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {quote(staged)} AS
                SELECT c._fabric_partition, c._fabric_source, c._fabric_position, {parent_keys},
                       e.idx::INTEGER AS _fabric_index, {values}
                FROM {quote(elements)} AS e JOIN {quote(checked)} AS c USING (_fabric_seq)
                WHERE c._fabric_code IS NULL
                ORDER BY e._fabric_seq, e.idx"""
        )
        columns = (
            *((k.name, sql_type(k)) for k in keys),
            ("_fabric_index", "INTEGER"),
            *((c.name, sql_type(c)) for c in child.columns),
        )
        children.append(ChildTable(f"{source}__{entity}__{name}", columns, staged))
    return tuple(children)
