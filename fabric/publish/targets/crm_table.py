"""The score table Fabric keeps in a business database, shared by the SQL targets.

One row per CRM customer: `<key>, churn_score, churn_decision, model_name, model_version,
scored_for (the day the score is for), lineage_id, message_id, published_at`. An update applies
only when the incoming day is at least as new as the stored one (an older partition never
overwrites a newer score) and the content differs (a re-send changes nothing, `published_at`
included). A delete removes the row only while it still holds the deleted day's score.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

VALUE_COLUMNS = (
    "churn_score",
    "churn_decision",
    "model_name",
    "model_version",
    "scored_for",
    "lineage_id",
    "message_id",
)
# The batch column each table column comes from.
SOURCE_COLUMNS = {
    "churn_score": "score",
    "churn_decision": "decision",
    "model_name": "model_name",
    "model_version": "model_version",
    "scored_for": "partition_date",
    "lineage_id": "lineage_id",
    "message_id": "message_id",
}


def staged_rows(batch: pa.Table) -> pa.Table:
    """The batch as the staging table's columns: key, the value columns, operation."""
    columns = {"key": batch.column("crm_customer_id")}
    for column, source in SOURCE_COLUMNS.items():
        columns[column] = batch.column(source)
    columns["operation"] = batch.column("operation")
    return pa.table(columns)


def target_refs(key: str, batch: pa.Table) -> pa.ChunkedArray:
    """`<key>=<value>`: the row of each record at the target."""
    values = pc.cast(batch.column("crm_customer_id"), pa.string())
    return pc.binary_join_element_wise(pa.scalar(f"{key}="), values, "")
