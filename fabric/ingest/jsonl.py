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

from fabric.config import Column, FileEntity
from fabric.errors import ConfigError
from fabric.identifiers import quote
from fabric.ingest.casting import literal


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
    con: duckdb.DuckDBPyConnection, entity: FileEntity, key: str, lines: str, relation: str
) -> list[Column]:
    """Create TEMP view `relation` of text records over the line relation `lines`."""
    columns = list(entity.columns)
    if not columns:
        raise ConfigError(f"{key}.columns: a JSON lines entity needs its columns declared")
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
    return columns


def _values(columns: Sequence[Column]) -> str:
    return ", ".join(
        f"CASE WHEN _fabric_code IS NULL AND _fabric_problem IS NULL "
        f"THEN _fabric_doc[{i}] END AS {quote(c.name)}"
        for i, c in enumerate(columns, start=1)
    )
