"""JSON lines day files: one object per line, flattened by each column's dotted `path`.

Lines are split and checked for UTF-8 in Python (`files.stage_lines`, zero-copy into Arrow) and
parsed by DuckDB's JSON functions in one pass over all the window's files. A line that is not
valid JSON, or is valid JSON but not an object, is quarantined as `json_parse`. A value that is an
object or array is kept as its JSON text (e.g. `props`); a missing key or JSON null is null.

Blank (whitespace-only) lines are skipped: they are not records, so they are counted nowhere
(neither read, loaded nor quarantined). DuckDB's JSON parser is slightly lenient: it accepts
trailing commas and NaN/Infinity literals.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from fabric.config import Column
from fabric.errors import ConfigError
from fabric.identifiers import literal, quote


def json_path(column: Column, key: str) -> str:
    """The JSONPath of a column: `user.email` -> `$."user"."email"`."""
    path = column.path or column.name
    parts = path.split(".")
    if any(not part or '"' in part for part in parts):
        raise ConfigError(f"{key}: column {column.name}: invalid path {path!r}")
    return "$." + ".".join(f'"{part}"' for part in parts)


BLANK = b" \t"
"""Bytes that make a line blank (not a record) when it holds nothing else: JSON whitespace."""


def stage_view(
    con: duckdb.DuckDBPyConnection, columns: Sequence[Column], key: str, lines: str, relation: str
) -> None:
    """Create TEMP view `relation` of text records (the `columns`) over the line relation
    `lines` (see `files.stage_lines`)."""
    if not columns:
        raise ConfigError(f"{key}.columns: no columns declared and no JSON object found to infer them from")
    paths = "[" + ", ".join(literal(json_path(c, key)) for c in columns) + "]"
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW {quote(relation)} AS
            SELECT _fabric_partition, _fabric_source, 'line ' || _fabric_line AS _fabric_position,
                   _fabric_seq, _fabric_text AS _fabric_raw,
                   CASE WHEN _fabric_code IS NOT NULL THEN _fabric_code
                        WHEN _fabric_problem IS NOT NULL THEN 'json_parse' END AS _fabric_code,
                   coalesce(_fabric_reason, _fabric_problem) AS _fabric_reason,
                   {_values(columns)}
            FROM (
                SELECT *, CASE
                    WHEN _fabric_code IS NOT NULL THEN NULL
                    WHEN _fabric_doc IS NULL THEN 'not valid JSON'
                    WHEN list_count(_fabric_doc) = 0 AND json_type(_fabric_text) <> 'OBJECT'
                        THEN 'valid JSON but not an object (' || json_type(_fabric_text) || ')'
                    END AS _fabric_problem
                FROM (
                    SELECT *, CASE WHEN _fabric_code IS NULL AND json_valid(_fabric_text)
                                   THEN json_extract_string(_fabric_text, {paths}) END
                               AS _fabric_doc
                    FROM {quote(lines)}
                )
            )"""
    )


def observed_paths(
    con: duckdb.DuckDBPyConnection, lines: str, declared: Sequence[Column]
) -> dict[int, tuple[str, ...]]:
    """The dotted paths of the values in each file's objects (by file index), nested objects
    flattened: a declared path is a leaf even when it holds an object (kept as JSON text), and
    so is an array, in order of first appearance (line, then position in it). One query per
    level of nesting; it parses each document twice (its keys, and all its values at once with
    `$.*`, in the same order), not once per key."""
    known = [c.path or c.name for c in declared]
    found: dict[int, list[str]] = {}
    level = [("", "")]  # (JSON pointer, dotted path) of the objects to list the keys of
    while level:
        deeper = []
        for pointer, dotted in level:
            doc = f"json_extract(_fabric_text, {literal(pointer)})" if pointer else "_fabric_text"
            rows = con.execute(
                f"""SELECT file, key, bool_or(is_object)
                    FROM (SELECT seq, seq >> 32 AS file, unnest(keys) AS key,
                                 unnest(list_transform(json_extract(doc, '$.*'),
                                                       v -> json_type(v) = 'OBJECT')) AS is_object,
                                 unnest(range(len(keys))) AS position
                          FROM (SELECT seq, doc, json_keys(doc) AS keys
                                FROM (SELECT _fabric_seq AS seq, {doc} AS doc FROM {quote(lines)}
                                      WHERE _fabric_code IS NULL AND json_valid(_fabric_text))
                                WHERE json_type(doc) = 'OBJECT'))
                    GROUP BY file, key ORDER BY file, min(seq), min(position)"""
            ).fetchall()
            for file, key, is_object in rows:
                path = f"{dotted}.{key}" if dotted else str(key)
                escaped = str(key).replace("~", "~0").replace("/", "~1")
                if is_object and path not in known:
                    if (pointer + "/" + escaped, path) not in deeper:
                        deeper.append((pointer + "/" + escaped, path))
                    continue
                if path not in found.setdefault(int(file), []):
                    found[int(file)].append(path)
        level = deeper
    return {file: tuple(paths) for file, paths in found.items()}


def _values(columns: Sequence[Column]) -> str:
    return ", ".join(
        f"CASE WHEN _fabric_code IS NULL AND _fabric_problem IS NULL "
        f"THEN _fabric_doc[{i}] END AS {quote(c.name)}"
        for i, c in enumerate(columns, start=1)
    )
