"""The payload every target receives: the fields of a published score, in a fixed order."""

from __future__ import annotations

PAYLOAD_FIELDS: dict[str, str] = {
    "crm_customer_id": "BIGINT",
    "fabric_customer_id": "VARCHAR",
    "score": "DOUBLE",
    "decision": "BOOLEAN",
    "model_name": "VARCHAR",
    "model_version": "INTEGER",
    "variant": "VARCHAR",
    "scorer": "VARCHAR",
    "partition_date": "DATE",
}
"""Payload fields and their types; `partition_date` is the day the score is for."""


def as_json(columns: dict[str, str] | None = None) -> str:
    """SQL for the payload's JSON text (fixed key order) from its typed columns; `columns` maps
    a field to another SQL expression (e.g. `partition_date` to `"partition"`). Built the same
    way wherever it is needed, so the text (and the message id hashed from it) never differs."""
    items = ", ".join(f"'{n}': {(columns or {}).get(n, n)}" for n in PAYLOAD_FIELDS)
    return f"to_json({{{items}}})::VARCHAR"


def expanded(payload_column: str = "payload") -> str:
    """SQL select-list items turning the JSON payload into typed columns (one per field)."""
    structure = "{" + ", ".join(f'"{n}": "{t}"' for n, t in PAYLOAD_FIELDS.items()) + "}"
    return f"unnest(json_transform({payload_column}, '{structure}'))"
