"""Fixed-width day files: fields cut from each line by the layout YAML.

The layout file maps entity -> ordered fields `{name, start (1-based), length, type, scale,
format}`. A record is exactly as long as the end of its last field; a line of another length is
quarantined (`line_length`) rather than cut, since a shifted record would load wrong values.

Field text: strings are right-trimmed, other types trimmed; an all-blank field is null. Decimals
have implied decimals (`000004999` with scale 2 is 49.99) and an optional leading sign inside the
field; dates default to format `%Y%m%d`. One CR before the LF is tolerated; empty lines are
skipped and counted nowhere.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import yaml
from pydantic import TypeAdapter, ValidationError

from fabric.config import Column, FileEntity, FixedWidthField
from fabric.errors import ConfigError
from fabric.identifiers import quote

_FIELDS = TypeAdapter(list[FixedWidthField])
BLANK = b""
"""Only an empty line is blank (not a record): spaces are field content."""


def load_layout(path: Path, name: str) -> list[FixedWidthField]:
    """The fields of layout `name` in the layout YAML at `path`."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the fixed-width layout ({exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(document, dict) or name not in document:
        raise ConfigError(f"{path}: no layout named {name!r}")
    try:
        fields = _FIELDS.validate_python(document[name])
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: layout {name}: {problems}") from None
    if not fields:
        raise ConfigError(f"{path}: layout {name} has no fields")
    return fields


def layout_columns(fields: list[FixedWidthField]) -> list[Column]:
    """The declared columns of a layout (fixed-width decimals have 18 digits of precision)."""
    return [
        Column(
            name=f.name,
            type=f.type,
            scale=f.scale,
            precision=18,
            format=f.format or ("%Y%m%d" if f.type == "date" else None),
        )
        for f in fields
    ]


def _field_text(field: FixedWidthField) -> str:
    cut = f"substr(_fabric_line_text, {field.start}, {field.length})"
    if field.type == "string":
        return f"nullif(rtrim({cut}), '')"
    value = f"nullif(trim({cut}), '')"
    if field.type != "decimal" or not field.scale:
        return value
    digits = f"repeat('0', {field.scale}) || ltrim({value}, '+-')"  # at least one integer digit
    return (
        f"CASE WHEN regexp_full_match({value}, '[+-]?[0-9]+') THEN "
        f"regexp_extract({value}, '^[+-]?') || left({digits}, -{field.scale}) || '.' || "
        f"right({digits}, {field.scale}) ELSE {value} END"
    )


def stage_view(
    con: duckdb.DuckDBPyConnection,
    fields: list[FixedWidthField],
    entity: FileEntity,
    key: str,
    lines: str,
    relation: str,
) -> None:
    """Create TEMP view `relation` of text records over the line table `lines`."""
    if entity.columns:
        raise ConfigError(f"{key}.columns: fixed-width columns come from the layout file")
    width = max(f.start + f.length - 1 for f in fields)
    values = ", ".join(
        f"CASE WHEN _fabric_length = {width} THEN {_field_text(f)} END AS {quote(f.name)}" for f in fields
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW {quote(relation)} AS
            SELECT _fabric_partition, _fabric_source, 'line ' || _fabric_line AS _fabric_position,
                   _fabric_seq, _fabric_line_text AS _fabric_raw,
                   coalesce(_fabric_code,
                       CASE WHEN _fabric_length <> {width} THEN 'line_length' END) AS _fabric_code,
                   coalesce(_fabric_reason, CASE WHEN _fabric_length <> {width} THEN
                       'expected {width} characters, got ' || _fabric_length END)
                       AS _fabric_reason,
                   {values}
            FROM (
                SELECT *, length(_fabric_line_text) AS _fabric_length
                FROM (
                    SELECT *, regexp_replace(_fabric_text, '\\r?\\n$', '') AS _fabric_line_text
                    FROM {quote(lines)}
                )
            )"""
    )
