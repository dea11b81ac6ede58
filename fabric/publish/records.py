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

from fabric.config import FabricConfig
from fabric.publish.outbox import CANDIDATES
from fabric.publish.payload import PAYLOAD_FIELDS
from fabric.scoring.score import SCORES_TABLE, publishable_filter
from fabric.warehouse import table_exists


def build_candidates(
    con: duckdb.DuckDBPyConnection,
    config: FabricConfig,
    target: str,
    days: Sequence[date],
    per_partition: bool,
) -> set[date]:
    """Define `publish_candidates` (a TEMP view, or table) over the publishable scores of `days`: entity key,
    partition, scoring run id, `content_hash` (DuckDB `hash` of the key and the payload fields:
    the diff's cheap pre-filter) and the payload fields, typed. JSON text, message ids and lineage
    ids are built by the diff, only for records whose content hash differs from the snapshot's.

    Publishable are the rows `fabric.scoring.score.publishable_filter` selects (no shadow rows;
    no rule-scored rows when `scoring.publish_rule_scored` is `hold`), read here in one SQL
    statement: no Arrow round trip and no sort, which were most of a re-publish's time.

    `per_partition` (file drops): one record per customer and day, entity key `<day>/<crm id>`;
    otherwise one record per customer, the newest of `days`, entity key `<crm id>`. Rows without
    a CRM id are left out (no business system could take them). Returns the days with scores.
    """
    fields = ", ".join(PAYLOAD_FIELDS)
    con.execute(f"DROP VIEW IF EXISTS {CANDIDATES}")
    con.execute(f"DROP TABLE IF EXISTS {CANDIDATES}")
    if not days or not table_exists(con, SCORES_TABLE):
        typed = ", ".join(f"{name} {kind}" for name, kind in PAYLOAD_FIELDS.items())
        con.execute(
            f"""CREATE TEMP TABLE {CANDIDATES} (entity_key VARCHAR, "partition" DATE,
                run_id VARCHAR, content_hash UBIGINT, {typed})"""
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
        if per_partition or len(days) == 1
        else "QUALIFY row_number() OVER (PARTITION BY crm_customer_id ORDER BY partition_date DESC) = 1"
    )
    publishable = publishable_filter(config, days)
    # Without the window the candidates are a view: the diff then reads the scores once and keeps
    # only the changed ones (writing a million candidates to a table cost about as much as the
    # diff). The window is computed once, into a table.
    kind = "TABLE" if newest else "VIEW"
    con.execute(
        f"""CREATE TEMP {kind} {CANDIDATES} AS
            SELECT {key} AS entity_key, partition_date AS "partition", run_id,
                   hash({key}, {fields}) AS content_hash, {fields}
            FROM {SCORES_TABLE} WHERE {publishable} AND crm_customer_id IS NOT NULL {newest}"""
    )
    scored = con.execute(f"SELECT DISTINCT partition_date FROM {SCORES_TABLE} WHERE {publishable}")
    return {day for (day,) in scored.fetchall()}
