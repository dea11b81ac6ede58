"""Typed casting of source text to the declared column types, with a reason for every failure.

Every reader stages its records as text (one VARCHAR per declared column, NULL for a null) in a
relation with these bookkeeping columns:

    _fabric_partition DATE, _fabric_source VARCHAR, _fabric_position VARCHAR,
    _fabric_seq BIGINT     order of the record within the window (sorts the raw table)
    _fabric_raw VARCHAR    the record as read (kept for quarantined records)
    _fabric_code VARCHAR   a record-level problem found by the reader (e.g. field_count) or NULL
    _fabric_reason VARCHAR its description, without the file/line prefix

`check_records` casts all of it in one DuckDB statement into a table holding the typed columns
plus `_fabric_code` / `_fabric_reason` for every record that must be quarantined: the reader's
own code if it had one, else `null_value` (a non-nullable column is null) or `type_cast` (a value
does not parse), with every failing field named in the reason.

Parsing is deliberately stricter than DuckDB's casts, which accept `12.5` or `1e3` as integers and
`2026-1-5` for `%Y-%m-%d`: integers must be digits, decimals may not have more fraction digits
than the declared scale (no silent rounding), and values parsed with a strftime format made only
of numeric fields (%Y %m %d %H %M %S %y %f) must have exactly the digits the format implies.
Timestamps without a format are ISO 8601; an offset (`Z`, `+02:00`) is converted to UTC.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import duckdb

from fabric.config import Column
from fabric.identifiers import literal, quote

BOOKKEEPING = (
    ("_fabric_partition", "DATE"),
    ("_fabric_source", "VARCHAR"),
    ("_fabric_position", "VARCHAR"),
    ("_fabric_seq", "BIGINT"),
    ("_fabric_raw", "VARCHAR"),
    ("_fabric_code", "VARCHAR"),
    ("_fabric_reason", "VARCHAR"),
)

_FORMAT_DIGITS = {"Y": "[0-9]{4}", "m": "[0-9]{2}", "d": "[0-9]{2}", "H": "[0-9]{2}",
                  "M": "[0-9]{2}", "S": "[0-9]{2}", "y": "[0-9]{2}", "f": "[0-9]{1,6}"}  # fmt: skip
_MESSAGE_VALUE_CHARS = 60


def sql_type(column: Column) -> str:
    """The DuckDB type of a declared column."""
    return {
        "string": "VARCHAR",
        "integer": "INTEGER",
        "bigint": "BIGINT",
        "double": "DOUBLE",
        "decimal": f"DECIMAL({column.precision},{column.scale})",
        "date": "DATE",
        "timestamp": "TIMESTAMP",
        "boolean": "BOOLEAN",
    }[column.type]


def _format_pattern(fmt: str) -> str | None:
    """A regular expression for the exact text `fmt` produces, if it has only numeric fields."""
    parts = []
    for piece in re.split(r"(%.)", fmt):
        if piece.startswith("%") and len(piece) == 2:
            if piece[1] not in _FORMAT_DIGITS:
                return None
            parts.append(_FORMAT_DIGITS[piece[1]])
        else:
            parts.append(re.escape(piece))
    return "".join(parts)


def _type_description(column: Column) -> str:
    if column.type == "decimal":
        return f"decimal({column.precision},{column.scale})"
    if column.type in ("date", "timestamp"):
        return f"{column.type} in format {column.format}" if column.format else column.type
    return column.type


def _padded(pattern: str) -> str:
    """SQL literal of a regular expression matching `pattern` with spaces around it."""
    return literal(f" *({pattern}) *")


def typed_expr(column: Column, text: str) -> str:
    """SQL for the typed value of the SQL text expression `text`: NULL when it does not parse.

    Spaces around a value are allowed. DuckDB's numeric, date and timestamp casts skip them
    themselves, and the patterns allow them, so `trim` is left to the boolean cast and the
    strptime parsers, and to values that have spaces: it makes a new string per value
    (0.14 s per 2M timestamps).
    """
    kind = column.type
    if kind == "string":
        return text
    if kind in ("integer", "bigint"):
        return (
            f"CASE WHEN regexp_full_match({text}, {_padded('[+-]?[0-9]+')}) "
            f"THEN TRY_CAST({text} AS {sql_type(column)}) END"
        )
    if kind == "decimal":
        pattern = "[+-]?[0-9]+"
        if column.scale:
            pattern = f"[+-]?([0-9]+(\\.[0-9]{{0,{column.scale}}})?|\\.[0-9]{{1,{column.scale}}})"
        return (
            f"CASE WHEN regexp_full_match({text}, {_padded(pattern)}) "
            f"THEN TRY_CAST({text} AS {sql_type(column)}) END"
        )
    if kind == "double":
        return f"TRY_CAST({text} AS DOUBLE)"
    if kind == "boolean":
        return f"TRY_CAST(trim({text}) AS BOOLEAN)"
    if column.format:
        spaced = f"starts_with({text}, ' ') OR ends_with({text}, ' ')"
        bare = f"CASE WHEN {spaced} THEN trim({text}) ELSE {text} END"
        parsed = f"try_strptime({bare}, {literal(column.format)})"
        if "%z" in column.format or "%Z" in column.format:
            parsed = f"timezone('UTC', {parsed})"
        exact = _format_pattern(column.format)
        if exact is not None:
            parsed = f"CASE WHEN regexp_full_match({text}, {_padded(exact)}) THEN {parsed} END"
        return f"CAST({parsed} AS {sql_type(column)})"
    if kind == "date":
        return f"TRY_CAST({text} AS DATE)"
    return f"timezone('UTC', TRY_CAST({text} AS TIMESTAMPTZ))"


def _shown(text: str) -> str:
    """SQL rendering a value for a message: quoted, cut to a readable length."""
    return (
        f"'''' || left({text}, {_MESSAGE_VALUE_CHARS}) || "
        f"CASE WHEN length({text}) > {_MESSAGE_VALUE_CHARS} THEN '...''' ELSE '''' END"
    )


def check_records(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    columns: Sequence[Column],
    where: str,
    target: str,
    ordered: bool = False,
) -> None:
    """Create TEMP table `target` from the staged text records of `relation`, sorted by
    `_fabric_seq` (`ordered`: `relation` already is, so the sort is skipped).

    `target` has the bookkeeping columns, with `_fabric_code` / `_fabric_reason` final (NULL for
    a record that loads; the reason prefixed by `where`) and `_fabric_raw` kept only for records
    to quarantine, then the typed declared columns. `where` is a SQL expression naming a record,
    e.g. `'file ' || _fabric_source || ' ' || _fabric_position`.
    """
    typed, codes, messages, outputs = [], [], [], []
    for index, column in enumerate(columns):
        text, value = quote(column.name), f"_fabric_v{index}"
        typed.append(f"{typed_expr(column, text)} AS {value}")
        outputs.append(f"{value} AS {text}")
        if not column.nullable:
            codes.append(f"WHEN {text} IS NULL THEN 'null_value'")
            messages.append(
                f"CASE WHEN {text} IS NULL THEN "
                f"{literal(f'field {column.name}: missing value (the column is not nullable)')} END"
            )
        if column.type != "string":
            failed = f"{text} IS NOT NULL AND {value} IS NULL"
            codes.append(f"WHEN {failed} THEN 'type_cast'")
            messages.append(
                f"CASE WHEN {failed} THEN {literal(f'field {column.name}: ')} || {_shown(text)}"
                f" || {literal(' is not a valid ' + _type_description(column))} END"
            )
    code = f"CASE {' '.join(codes)} END" if codes else "NULL"
    message = f"concat_ws('; ', {', '.join(messages)})" if messages else "''"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {quote(target)} AS
        SELECT _fabric_partition, _fabric_source, _fabric_position, _fabric_seq,
               CASE WHEN _fabric_problem IS NOT NULL
                    THEN rtrim(_fabric_raw, chr(13) || chr(10)) END AS _fabric_raw,
               _fabric_problem AS _fabric_code,
               CASE WHEN _fabric_problem IS NOT NULL
                    THEN {where} || ': ' || COALESCE(_fabric_reason, {message}) END
                   AS _fabric_reason,
               {", ".join(outputs)}
        FROM (
            SELECT *, COALESCE(_fabric_code, {code}) AS _fabric_problem
            FROM (SELECT *, {", ".join(typed)} FROM {relation})
        )
        {"" if ordered else "ORDER BY _fabric_seq"}
        """
    )
