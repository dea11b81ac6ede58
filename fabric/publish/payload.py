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


def expanded(payload_column: str = "payload") -> str:
    """SQL select-list items turning the JSON payload into typed columns (one per field)."""
    structure = "{" + ", ".join(f'"{n}": "{t}"' for n, t in PAYLOAD_FIELDS.items()) + "}"
    return f"unnest(json_transform({payload_column}, '{structure}'))"
