"""The publish outbox: stage what changed since the last confirmed delivery, then deliver it.

Tables (contract in docs/architecture.md, "Publish tables"): `publish.outbox` (pending records),
`publish.published` (what each target last confirmed: the snapshot the diff runs against),
`publish.sync_log` (one row per record and outcome) and `publish.dead_letter` (rejected records).

Staging runs in one warehouse transaction: the candidates (one record per entity, built by
`fabric.publish.records`) are compared with the snapshot by message id; changed records replace
any pending outbox row of the same entity, unchanged ones are only logged. Delivery (in
`fabric.publish.delivery`) reads a batch, sends it with no warehouse connection open and then
calls `record_batch`, which in one transaction removes the confirmed rows from the outbox,
advances the snapshot and logs them. None of these tables has a declared key: DuckDB's index
maintenance on a million-row upsert costs more than the delete + insert used here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import duckdb
import pyarrow as pa

from fabric.meta import utcnow
from fabric.publish.payload import PAYLOAD_FIELDS, expanded

OUTBOX_TABLE = "publish.outbox"
PUBLISHED_TABLE = "publish.published"
SYNC_LOG_TABLE = "publish.sync_log"
DEAD_LETTER_TABLE = "publish.dead_letter"
SYNC_RUNS_TABLE = "publish.sync_runs"

PUBLISH_DDL = (
    """CREATE TABLE IF NOT EXISTS publish.outbox (
        target VARCHAR, entity_key VARCHAR, message_id VARCHAR, operation VARCHAR,
        "partition" DATE, payload VARCHAR, lineage_id VARCHAR, run_id VARCHAR,
        enqueued_at TIMESTAMP, attempts INTEGER, last_error VARCHAR, content_hash UBIGINT)""",
    """CREATE TABLE IF NOT EXISTS publish.published (
        target VARCHAR, entity_key VARCHAR, message_id VARCHAR, "partition" DATE, payload VARCHAR,
        lineage_id VARCHAR, target_ref VARCHAR, run_id VARCHAR, published_at TIMESTAMP,
        content_hash UBIGINT)""",
    """CREATE TABLE IF NOT EXISTS publish.sync_log (
        run_id VARCHAR, target VARCHAR, entity_key VARCHAR, message_id VARCHAR, "partition" DATE,
        lineage_id VARCHAR, status VARCHAR, target_ref VARCHAR, attempts INTEGER,
        message VARCHAR, enqueued_at TIMESTAMP, logged_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS publish.dead_letter (
        target VARCHAR, entity_key VARCHAR, message_id VARCHAR, operation VARCHAR,
        "partition" DATE, payload VARCHAR, lineage_id VARCHAR, error VARCHAR, attempts INTEGER,
        run_id VARCHAR, failed_at TIMESTAMP, replayed_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS publish.sync_runs (
        run_id VARCHAR, target VARCHAR, "partition" DATE, staged INTEGER, unchanged INTEGER,
        older INTEGER, held_dead_lettered INTEGER, staged_at TIMESTAMP)""",
)

CANDIDATES = "publish_candidates"
"""The TEMP table `fabric.publish.records` builds: entity_key, partition, payload, lineage_id,
message_id (one row per entity)."""

# Columns of a batch read from the outbox, in this order; then the payload's fields, typed.
BATCH_COLUMNS = (
    "entity_key",
    "message_id",
    "operation",
    "partition",
    "lineage_id",
    "enqueued_at",
    "attempts",
    "content_hash",
)
_BATCH_SELECT = ", ".join(f'"{c}"' for c in BATCH_COLUMNS) + f", payload, {expanded()}"


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the publish tables; a `publish.sync_log` of the earlier per-day shape is renamed
    to `publish.sync_log_v1` (kept, not converted)."""
    old = con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'publish' "
        "AND table_name = 'sync_log' AND column_name = 'rows'"
    ).fetchone()
    if old and old[0]:
        con.execute("ALTER TABLE publish.sync_log RENAME TO sync_log_v1")
    for ddl in PUBLISH_DDL:
        con.execute(ddl)


@dataclass(frozen=True)
class StagePlan:
    """What staging found for one target: records to create, update, delete, and the rest."""

    creates: int = 0
    updates: int = 0
    deletes: int = 0
    unchanged: int = 0
    held_dead: int = 0  # changed, but this content is dead-lettered (until replayed)
    older: int = 0  # the target already has a newer partition of the entity

    @property
    def changed(self) -> int:
        return self.creates + self.updates + self.deletes


# The diff of the candidates against the snapshot (and the dead letters). Parameters: target,
# full resync. `older`: the snapshot holds a newer partition than the candidate. A candidate
# whose content hash equals the snapshot's is `same` without building its JSON or message id
# (most of a re-publish); the others get both, and their message id decides.
_DIFF = f"""
CREATE OR REPLACE TEMP TABLE publish_diff AS
WITH joined AS (
    SELECT c.*, p.message_id AS published_id,
           p."partition" IS NOT NULL AND c."partition" < p."partition" AS is_older,
           p.message_id IS NOT NULL AND p.content_hash = c.content_hash AS is_same
    FROM {CANDIDATES} c
    LEFT JOIN (SELECT * FROM {PUBLISHED_TABLE} WHERE target = $1) p ON p.entity_key = c.entity_key
), built AS (
    SELECT *, md5($1 || '|' || entity_key || '|' || payload) AS message_id
    FROM (SELECT *, to_json({{{", ".join(f"'{n}': {n}" for n in PAYLOAD_FIELDS)}}})::VARCHAR AS payload
          FROM joined WHERE NOT is_older AND (NOT is_same OR $2))
)
SELECT b.entity_key, b.message_id, b."partition", b.payload, b.lineage_id, b.content_hash,
       CASE
         WHEN d.message_id IS NOT NULL THEN 'dead'
         WHEN b.published_id IS NULL THEN 'create'
         WHEN b.published_id = b.message_id THEN 'same'
         ELSE 'update'
       END AS verdict
FROM built b
LEFT JOIN (SELECT DISTINCT message_id FROM {DEAD_LETTER_TABLE}
           WHERE target = $1 AND replayed_at IS NULL) d ON d.message_id = b.message_id
UNION ALL
SELECT entity_key, published_id, "partition", NULL, lineage_id, content_hash, 'older'
FROM joined WHERE is_older
"""
# Candidates found unchanged by their content hash are not in publish_diff (on a re-publish
# that is nearly all of them; copying them is most of the diff's time): they are the
# candidates without a publish_diff row.

# Snapshot records of the window's open days that no candidate covers: deletes (opt-in).
_DELETES = f"""
CREATE OR REPLACE TEMP TABLE publish_deletes AS
SELECT p.entity_key, md5($1 || '|' || p.entity_key || '|delete|' || p.message_id) AS message_id,
       p."partition",
       -- the snapshot keeps payloads of file drops only; a delete needs the key and the day
       coalesce(p.payload, to_json({{'crm_customer_id': TRY_CAST(p.entity_key AS BIGINT),
                                     'partition_date': p."partition"}})::VARCHAR) AS payload,
       p.lineage_id, NULL::UBIGINT AS content_hash
FROM {PUBLISHED_TABLE} p
WHERE p.target = $1 AND p."partition" IN (SELECT unnest($2::DATE[]))
  AND NOT EXISTS (SELECT 1 FROM {CANDIDATES} c WHERE c.entity_key = p.entity_key) AND $3
"""


def diff(
    con: duckdb.DuckDBPyConnection,
    target: str,
    open_days: Sequence[date],
    deletes: bool,
    full_resync: bool = False,
) -> StagePlan:
    """Compare the candidates with the snapshot into TEMP tables; count what would happen."""
    con.execute(_DIFF, [target, full_resync])
    con.execute(_DELETES, [target, list(open_days), deletes])
    counts = dict(con.execute("SELECT verdict, count(*) FROM publish_diff GROUP BY verdict").fetchall())
    deleted = con.execute("SELECT count(*) FROM publish_deletes").fetchone()
    candidates = con.execute(f"SELECT count(*) FROM {CANDIDATES}").fetchone()
    unseen = (int(candidates[0]) if candidates else 0) - sum(int(n) for n in counts.values())
    same = int(counts.get("same", 0)) + unseen
    return StagePlan(
        creates=int(counts.get("create", 0)),
        updates=int(counts.get("update", 0)) + (same if full_resync else 0),
        deletes=int(deleted[0]) if deleted else 0,
        unchanged=0 if full_resync else same,
        held_dead=int(counts.get("dead", 0)),
        older=int(counts.get("older", 0)),
    )


def stage(
    con: duckdb.DuckDBPyConnection,
    target: str,
    run_id: str,
    open_days: Sequence[date],
    deletes: bool,
    full_resync: bool = False,
    log_unchanged: bool = False,
) -> StagePlan:
    """Write the changed candidates to the outbox, in one transaction with the run's counts per
    partition (`publish.sync_runs`) and, with `log_unchanged`, a `sync_log` row per unchanged
    record (off by default: on a re-publish those are nearly all records).

    A pending outbox row of the same entity is replaced (its attempts kept when the content is
    the same): only the newest content of an entity is worth sending.
    """
    now = utcnow()
    con.execute("BEGIN TRANSACTION")
    try:
        plan = diff(con, target, open_days, deletes, full_resync)
        send = "('create', 'update', 'same')" if full_resync else "('create', 'update')"
        staged = f"""SELECT entity_key, message_id,
                       CASE verdict WHEN 'create' THEN 'create' ELSE 'update' END AS operation,
                       "partition", payload, lineage_id, content_hash
                FROM publish_diff WHERE verdict IN {send}
                UNION ALL
                SELECT entity_key, message_id, 'delete', "partition", payload, lineage_id, content_hash
                FROM publish_deletes"""
        if pending(con, target) == 0:  # the usual case: nothing pending to replace or keep
            con.execute(
                f"""INSERT INTO {OUTBOX_TABLE}
                    SELECT $1, entity_key, message_id, operation, "partition", payload, lineage_id,
                           $2, $3, 0, NULL, content_hash
                    FROM ({staged})""",
                [target, run_id, now],
            )
        else:
            con.execute(f"CREATE OR REPLACE TEMP TABLE publish_staged AS {staged}")
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE publish_kept AS
                    SELECT s.entity_key, o.attempts, o.enqueued_at, o.last_error
                    FROM publish_staged s JOIN {OUTBOX_TABLE} o
                      ON o.target = $1 AND o.entity_key = s.entity_key AND o.message_id = s.message_id""",
                [target],
            )
            con.execute(
                f"""DELETE FROM {OUTBOX_TABLE} o USING publish_staged s
                    WHERE o.target = $1 AND o.entity_key = s.entity_key""",
                [target],
            )
            con.execute(
                f"""INSERT INTO {OUTBOX_TABLE}
                    SELECT $1, s.entity_key, s.message_id, s.operation, s."partition", s.payload,
                           s.lineage_id, $2, coalesce(k.enqueued_at, $3), coalesce(k.attempts, 0),
                           k.last_error, s.content_hash
                    FROM publish_staged s LEFT JOIN publish_kept k USING (entity_key)""",
                [target, run_id, now],
            )
        # every candidate with its verdict; those not in publish_diff were unchanged by hash
        verdicts = f"""SELECT c.entity_key, c."partition", c.lineage_id,
                              coalesce(d.message_id, p.message_id) AS message_id,
                              coalesce(d.verdict, 'same') AS verdict
                       FROM {CANDIDATES} c
                       LEFT JOIN publish_diff d ON d.entity_key = c.entity_key
                       LEFT JOIN (SELECT entity_key, message_id FROM {PUBLISHED_TABLE}
                                  WHERE target = $2) p
                         ON d.entity_key IS NULL AND p.entity_key = c.entity_key"""
        if log_unchanged and not full_resync:
            con.execute(
                f"""INSERT INTO {SYNC_LOG_TABLE}
                    SELECT $1, $2, entity_key, message_id, "partition", lineage_id, 'unchanged',
                           NULL, 0, NULL, NULL, $3
                    FROM ({verdicts}) WHERE verdict = 'same'""",
                [run_id, target, now],
            )
        con.execute(
            f"""INSERT INTO {SYNC_RUNS_TABLE}
                SELECT $1, $2, "partition",
                       count(*) FILTER (WHERE verdict IN {send}),
                       count(*) FILTER (WHERE verdict = 'same' AND NOT $4),
                       count(*) FILTER (WHERE verdict = 'older'),
                       count(*) FILTER (WHERE verdict = 'dead'), $3
                FROM (SELECT c."partition", coalesce(d.verdict, 'same') AS verdict
                      FROM {CANDIDATES} c LEFT JOIN publish_diff d ON d.entity_key = c.entity_key)
                GROUP BY ALL""",
            [run_id, target, now, full_resync],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return plan


def pending(con: duckdb.DuckDBPyConnection, target: str) -> int:
    """Records of `target` waiting in the outbox."""
    row = con.execute(f"SELECT count(*) FROM {OUTBOX_TABLE} WHERE target = ?", [target]).fetchone()
    return int(row[0]) if row else 0


def read_batch(
    con: duckdb.DuckDBPyConnection, target: str, limit: int, partition: date | None = None
) -> pa.Table:
    """Up to `limit` pending records of `target` (all of one partition if given).

    Which records make up a batch does not matter (each entity has one pending record), so no
    ORDER BY: sorting a million-row outbox for every batch would cost more than the batch.
    """
    where = "target = $1" + (' AND "partition" = $3' if partition is not None else "")
    params: list[object] = [target, limit]
    if partition is not None:
        params.append(partition)
    return con.execute(
        f"SELECT {_BATCH_SELECT} FROM {OUTBOX_TABLE} WHERE {where} LIMIT $2", params
    ).to_arrow_table()


def pending_partitions(con: duckdb.DuckDBPyConnection, target: str) -> list[date]:
    """The partitions with pending records of `target`, oldest first."""
    return [
        d
        for (d,) in con.execute(
            f'SELECT DISTINCT "partition" FROM {OUTBOX_TABLE} WHERE target = ? ORDER BY 1',
            [target],
        ).fetchall()
    ]


def published_rows(con: duckdb.DuckDBPyConnection, target: str, partition: date) -> pa.Table:
    """The snapshot records of `target` for one partition (what a file drop must keep)."""
    return con.execute(
        f"""SELECT entity_key, message_id, "partition", lineage_id, payload,
                   {expanded()} FROM {PUBLISHED_TABLE}
            WHERE target = ? AND "partition" = ? ORDER BY entity_key""",
        [target, partition],
    ).to_arrow_table()


@dataclass
class BatchOutcome:
    """What a target did with one batch: per record, confirmed (with the target's own id of
    it) or rejected (with the reason); records in neither were not confirmed and stay pending."""

    confirmed: dict[str, str] = field(default_factory=dict)  # message id -> target_ref
    rejected: dict[str, str] = field(default_factory=dict)  # message id -> error


def record_batch(
    con: duckdb.DuckDBPyConnection,
    target: str,
    run_id: str,
    batch: pa.Table,
    outcome: BatchOutcome,
    attempts: int,
    keep_payload: bool = False,
) -> None:
    """In one transaction: confirmed records leave the outbox and advance the snapshot, rejected
    ones move to the dead letter table; both are logged.

    The snapshot keeps the payload only with `keep_payload` (file drops, which rewrite a day's
    file from it); other targets need only the message id to diff, and writing a million JSON
    texts twice is a large share of a full publish.
    """
    now = utcnow()
    ids = batch.column("message_id").to_pylist()
    refs = [outcome.confirmed.get(i) for i in ids]
    errors = [outcome.rejected.get(i) for i in ids]
    done = batch.append_column("target_ref", pa.array(refs, pa.string())).append_column(
        "error", pa.array(errors, pa.string())
    )
    keep = [c for c in done.column_names if c in (*BATCH_COLUMNS, "payload", "target_ref", "error")]
    con.register("publish_done_t", done.select(keep))
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"""DELETE FROM {OUTBOX_TABLE} o USING publish_done_t d
                WHERE o.target = $1 AND o.entity_key = d.entity_key AND o.message_id = d.message_id
                  AND (d.target_ref IS NOT NULL OR d.error IS NOT NULL)""",
            [target],
        )
        con.execute(
            # a `create` was staged because the snapshot had no row for the entity: nothing to replace
            f"""DELETE FROM {PUBLISHED_TABLE} p USING publish_done_t d
                WHERE p.target = $1 AND p.entity_key = d.entity_key AND d.target_ref IS NOT NULL
                  AND d.operation <> 'create'""",
            [target],
        )
        con.execute(
            f"""INSERT INTO {PUBLISHED_TABLE}
                SELECT $1, entity_key, message_id, "partition", CASE WHEN $4 THEN payload END,
                       lineage_id, target_ref, $2, $3, content_hash
                FROM publish_done_t WHERE target_ref IS NOT NULL AND operation <> 'delete'""",
            [target, run_id, now, keep_payload],
        )
        con.execute(
            f"""INSERT INTO {DEAD_LETTER_TABLE}
                SELECT $1, entity_key, message_id, operation, "partition", payload, lineage_id,
                       error, attempts + $4, $2, $3, NULL
                FROM publish_done_t WHERE error IS NOT NULL""",
            [target, run_id, now, attempts],
        )
        con.execute(
            f"""INSERT INTO {SYNC_LOG_TABLE}
                SELECT $1, $2, entity_key, message_id, "partition", lineage_id,
                       CASE WHEN error IS NOT NULL THEN 'dead_lettered'
                            WHEN operation = 'create' THEN 'created'
                            WHEN operation = 'delete' THEN 'deleted' ELSE 'updated' END,
                       target_ref, attempts + $4, error, enqueued_at, $3
                FROM publish_done_t WHERE target_ref IS NOT NULL OR error IS NOT NULL""",
            [run_id, target, now, attempts],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("publish_done_t")


def record_failure(
    con: duckdb.DuckDBPyConnection,
    target: str,
    run_id: str,
    batch: pa.Table,
    error: str,
    attempts: int,
) -> None:
    """A batch the target could not take after all retries: it stays in the outbox, with its
    attempts counted and the error kept; each record is logged as `failed`."""
    now = utcnow()
    con.register("publish_failed", batch)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"""UPDATE {OUTBOX_TABLE} o SET attempts = o.attempts + $2, last_error = $3
                FROM publish_failed f
                WHERE o.target = $1 AND o.entity_key = f.entity_key AND o.message_id = f.message_id""",
            [target, attempts, error],
        )
        con.execute(
            f"""INSERT INTO {SYNC_LOG_TABLE}
                SELECT $1, $2, entity_key, message_id, "partition", lineage_id, 'failed', NULL,
                       attempts + $4, $5, enqueued_at, $3
                FROM publish_failed""",
            [run_id, target, now, attempts, error],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("publish_failed")


def replay(con: duckdb.DuckDBPyConnection, target: str, run_id: str) -> int:
    """Move `target`'s dead letters back into the outbox (where no newer content of the entity
    is pending); returns how many. They are sent by the next delivery."""
    now = utcnow()
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE publish_replay AS
                SELECT * FROM {DEAD_LETTER_TABLE} d
                WHERE d.target = $1 AND d.replayed_at IS NULL
                  AND NOT EXISTS (SELECT 1 FROM {OUTBOX_TABLE} o
                                  WHERE o.target = $1 AND o.entity_key = d.entity_key)
                QUALIFY row_number() OVER (PARTITION BY entity_key ORDER BY failed_at DESC) = 1""",
            [target],
        )
        con.execute(
            f"""INSERT INTO {OUTBOX_TABLE}
                SELECT target, entity_key, message_id, operation, "partition", payload,
                       lineage_id, $1, $2, 0, error, NULL FROM publish_replay""",
            [run_id, now],
        )
        con.execute(
            f"""INSERT INTO {SYNC_LOG_TABLE}
                SELECT $1, target, entity_key, message_id, "partition", lineage_id, 'replayed',
                       NULL, attempts, error, NULL, $2 FROM publish_replay""",
            [run_id, now],
        )
        con.execute(
            f"""UPDATE {DEAD_LETTER_TABLE} d SET replayed_at = $2
                WHERE d.target = $1 AND d.replayed_at IS NULL""",
            [target, now],
        )
        row = con.execute("SELECT count(*) FROM publish_replay").fetchone()
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return int(row[0]) if row else 0
