"""Deterministic masking of personal data that leaves the warehouse.

`fabric.yaml` lists the PII columns per table (`pii:`). Wherever their values leave the
warehouse for people (the analytics snapshot, previews in Dagster metadata) they are masked here,
the same way in SQL and in Python, so analysts can still group and count by masked value:

| kind  | chosen when the column name contains | `Jane.Doe@Example.DE` style input -> |
| ----- | ------------------------------------ | ------------------------------------ |
| email | `email`                              | `j***@***.de` (first char, top-level domain) |
| phone | `phone`                              | `***67` (last two digits)            |
| name  | `name`                               | `J***` (first letter, ASCII upper-cased) |
| text  | anything else (street, description)  | `***`                                |

NULL stays NULL and a blank value becomes `''`, so missing data stays countable. Case folding is
ASCII-only on purpose: it is the one folding that DuckDB's `translate` and Python's
`str.translate` do identically, which keeps `masked_select` and `mask_value` interchangeable.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Sequence
from enum import StrEnum

import pandas as pd
import pyarrow as pa

from fabric.errors import REDACTED
from fabric.identifiers import quote, validate_identifier

_WHITESPACE = " \t\r\n"
_TO_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_TO_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)
_NON_DIGITS = re.compile(r"[^0-9]")


class MaskKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    NAME = "name"
    TEXT = "text"


def mask_kind(column: str) -> MaskKind:
    """How a PII column is masked, from its name (see the module docstring)."""
    lowered = column.lower()
    for kind in (MaskKind.EMAIL, MaskKind.PHONE, MaskKind.NAME):
        if kind.value in lowered:
            return kind
    return MaskKind.TEXT


def mask_value(column: str, value: object) -> str | None:
    """Mask one value of PII column `column`; equal to what `masked_select` computes in SQL."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip(_WHITESPACE)
    if not text:
        return ""
    kind = mask_kind(column)
    if kind is MaskKind.EMAIL:
        if "@" not in text:
            return REDACTED
        local, _, domain = text.rpartition("@")
        tld = domain.rpartition(".")[2] if "." in domain else ""
        masked = f"{local[:1].translate(_TO_LOWER)}{REDACTED}@{REDACTED}"
        return masked + (f".{tld.translate(_TO_LOWER)}" if tld else "")
    if kind is MaskKind.PHONE:
        return REDACTED + _NON_DIGITS.sub("", text)[-2:]
    if kind is MaskKind.NAME:
        return text[:1].translate(_TO_UPPER) + REDACTED
    return REDACTED


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def mask_expression(column: str) -> str:
    """A DuckDB SQL expression (VARCHAR) masking `column` like `mask_value` does."""
    value = f"trim(CAST({quote(column)} AS VARCHAR), {_sql_string(_WHITESPACE)})"
    kind = mask_kind(column)
    redacted = _sql_string(REDACTED)
    if kind is MaskKind.EMAIL:
        lower = f"{_sql_string(string.ascii_uppercase)}, {_sql_string(string.ascii_lowercase)}"
        local = f"regexp_extract({value}, '^(.*)@[^@]*$', 1)"
        tld = f"regexp_extract(regexp_extract({value}, '@([^@]*)$', 1), '\\.([^.]*)$', 1)"
        masked = (
            f"translate(left({local}, 1), {lower}) || '***@***' || "
            f"CASE WHEN {tld} = '' THEN '' ELSE '.' || translate({tld}, {lower}) END"
        )
        masked = f"CASE WHEN NOT contains({value}, '@') THEN {redacted} ELSE {masked} END"
    elif kind is MaskKind.PHONE:
        masked = f"{redacted} || right(regexp_replace({value}, '[^0-9]', '', 'g'), 2)"
    elif kind is MaskKind.NAME:
        upper = f"{_sql_string(string.ascii_lowercase)}, {_sql_string(string.ascii_uppercase)}"
        masked = f"translate(left({value}, 1), {upper}) || {redacted}"
    else:
        masked = redacted
    return f"CASE WHEN {value} IS NULL THEN NULL WHEN {value} = '' THEN '' ELSE {masked} END"


def masked_select(table: str, columns: Sequence[str], pii_columns: Collection[str]) -> str:
    """`SELECT` of `columns` from `table` with the PII columns masked (names kept).

    `table` is a dotted name (`schema.table` or `catalog.schema.table`); every part is
    validated and quoted. PII columns the table does not have are ignored: nothing to leak.
    """
    relation = ".".join(quote(validate_identifier(part, "table name")) for part in table.split("."))
    pii = {c.lower() for c in pii_columns}
    selected = [
        f"{mask_expression(c)} AS {quote(c)}" if c.lower() in pii else quote(c) for c in columns
    ]
    return f"SELECT {', '.join(selected)} FROM {relation}"


def mask_frame(
    frame: pd.DataFrame | pa.Table, pii_columns: Collection[str]
) -> pd.DataFrame | pa.Table:
    """A copy of a (small) preview, pandas or Arrow, with its PII columns masked.

    For previews in Dagster metadata and logs; the result has the type of `frame`.
    """
    pii = {c.lower() for c in pii_columns}
    if isinstance(frame, pa.Table):
        for index, name in enumerate(frame.column_names):
            if name.lower() in pii:
                values = [mask_value(name, v) for v in frame.column(index).to_pylist()]
                frame = frame.set_column(index, name, pa.array(values, pa.string()))
        return frame
    masked = frame.copy()
    for name in masked.columns:
        if str(name).lower() in pii:
            masked[name] = pd.Series(
                [mask_value(str(name), v) for v in masked[name]], index=masked.index, dtype=object
            )
    return masked
