"""Validation and quoting of SQL identifiers that come from configuration, and SQL string literals.

Table and column names in `fabric.yaml` end up in SQL text; they are validated against a strict
pattern and always double-quoted, so a typo fails early and a crafted name cannot inject SQL.
"""

from __future__ import annotations

import re

from fabric.errors import ConfigError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def validate_identifier(name: str, what: str = "identifier") -> str:
    """Return `name` unchanged if it is a plain SQL identifier, else raise ConfigError."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ConfigError(
            f"invalid {what} {name!r}: use letters, digits and underscores, "
            "starting with a letter or underscore (at most 63 characters)"
        )
    return name


def quote(name: str) -> str:
    """Validate and double-quote one identifier."""
    return '"' + validate_identifier(name) + '"'


def qualified(schema: str, table: str) -> str:
    """Validate and quote `schema.table`."""
    return f"{quote(schema)}.{quote(table)}"


def split_qualified(name: str) -> tuple[str, str]:
    """Split and validate a `schema.table` name."""
    parts = name.split(".")
    if len(parts) != 2:
        raise ConfigError(f"expected a table name of the form schema.table, got {name!r}")
    return validate_identifier(parts[0], "schema name"), validate_identifier(parts[1], "table name")


def literal(value: str) -> str:
    """A SQL string literal. (Bulk inserts take constants as literals: DuckDB writes a literal's
    column faster than a parameter's.)"""
    return "'" + value.replace("'", "''") + "'"
