"""Score rows -> publish records: one per entity and target, with a deterministic message id.

The payload is the JSON object of `PAYLOAD_FIELDS`, rendered by DuckDB with that key order. The
message id is `md5(target | entity_key | payload)`, 32 hex digits: an identifier, not a security
measure; md5 because hashing every candidate is most of a re-publish's time and DuckDB's md5 is
about twice as fast as its sha256. Lineage id, run ids and timestamps are left out, so the same
content keeps its id (a re-send, or a re-score that changed nothing) and a corrected score gets
a new one. The lineage id travels beside the payload.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from fabric.config import FabricConfig
from fabric.publish.outbox import CANDIDATES
from fabric.publish.payload import PAYLOAD_FIELDS
from fabric.scoring.score import publishable_scores

_SCORES = "publish_scores"


def build_candidates(
    con: duckdb.DuckDBPyConnection,
    config: FabricConfig,
    target: str,
    days: Sequence[date],
    per_partition: bool,
) -> set[date]:
    """Fill the TEMP table `publish_candidates` from the publishable scores of `days`: entity key,
    partition, lineage id, `content_hash` (DuckDB `hash` of the key and the payload fields: the
    diff's cheap pre-filter) and the payload fields, typed. JSON text and message ids are built
    by the diff, only for records whose content hash differs from the snapshot's.

    `per_partition` (file drops): one record per customer and day, entity key `<day>/<crm id>`;
    otherwise one record per customer, the newest of `days`, entity key `<crm id>`. Rows without
    a CRM id are left out (no business system could take them). Returns the days with scores.
    """
    tables = [publishable_scores(con, config, day) for day in days]
    scores = pa.concat_tables(tables) if tables else None
    if scores is None or scores.num_columns == 0:
        typed = ", ".join(f"{name} {kind}" for name, kind in PAYLOAD_FIELDS.items())
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {CANDIDATES} (entity_key VARCHAR, "partition" DATE,
                lineage_id VARCHAR, content_hash UBIGINT, {typed})"""
        )
        return set()
    key = (
        "strftime(partition_date, '%Y-%m-%d') || '/' || crm_customer_id::VARCHAR"
        if per_partition
        else "crm_customer_id::VARCHAR"
    )
    # One record per customer: the newest day. A window sort only when there is more than one day.
    newest = (
        ""
        if per_partition or len(tables) == 1
        else "QUALIFY row_number() OVER (PARTITION BY crm_customer_id ORDER BY partition_date DESC) = 1"
    )
    fields = ", ".join(PAYLOAD_FIELDS)
    con.register(_SCORES, scores)
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {CANDIDATES} AS
                SELECT {key} AS entity_key, partition_date AS "partition", lineage_id,
                       hash({key}, {fields}) AS content_hash, {fields}
                FROM {_SCORES} WHERE crm_customer_id IS NOT NULL {newest}"""
        )
    finally:
        con.unregister(_SCORES)
    return set(pc.unique(scores.column("partition_date")).to_pylist())
