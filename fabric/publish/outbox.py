"""The publish outbox: stage what changed since the last confirmed delivery, then deliver it.

Tables (contract in docs/architecture.md, "Publish tables"): `publish.outbox` (pending records),
`publish.published` (what each target last confirmed: the snapshot the diff runs against),
`publish.sync_log` (one row per record and outcome) and `publish.dead_letter` (rejected records).

Staging runs in one warehouse transaction: the candidates (one record per entity, built by
`fabric.publish.records`) whose content hash is not in the snapshot are compared with it by
message id; changed records replace any pending outbox row of the same entity, unchanged ones are
only counted (or logged). The outbox keeps the payload typed, one column per field: writing a
million JSON texts was the largest part of a full publish; the JSON is built when a batch is
read, only for targets that send it. Delivery (in `fabric.publish.delivery`) reads a batch (a
range of `seq`), sends it and then calls `record_batch`, which in one transaction removes the
confirmed rows from the outbox, advances the snapshot and logs them, each with one statement over
the batch's outbox rows. None of these tables has a declared key: DuckDB's index maintenance on a
million-row upsert costs more than the delete + insert used here.

High-entropy text columns (keys, ids, target refs) are stored uncompressed: DuckDB otherwise tries
dictionary and FSST compression on every segment of them, which was most of the time of writing
a million outbox, snapshot and sync log rows; plain, a column of them took a fifth to a half of
the CPU time (1M rows: keys 0.89 -> 0.17 s, message ids 0.76 -> 0.23 s, lineage ids 0.57 ->
0.26 s), for about twice the disk space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from fabric.identifiers import literal
from fabric.meta import utcnow
from fabric.publish.payload import PAYLOAD_FIELDS, as_json, expanded
from fabric.scoring.scores_table import LINEAGE_ID_SQL

OUTBOX_TABLE = "publish.outbox"
PUBLISHED_TABLE = "publish.published"
SYNC_LOG_TABLE = "publish.sync_log"
DEAD_LETTER_TABLE = "publish.dead_letter"
SYNC_RUNS_TABLE = "publish.sync_runs"
OUTBOX_SEQUENCE = "publish.outbox_seq"
"""Numbers outbox rows (`seq`) as they are staged: never reused, so a batch is a range of it."""

_PLAIN = "VARCHAR USING COMPRESSION uncompressed"
# The payload fields the outbox stores; `partition_date` is the record's "partition".
_TYPED = {
    name: _PLAIN if name == "fabric_customer_id" else kind
    for name, kind in PAYLOAD_FIELDS.items()
    if name != "partition_date"
}
_TYPED_NAMES = ", ".join(_TYPED)
_OUTBOX_DDL = f"""CREATE TABLE IF NOT EXISTS publish.outbox (
        seq BIGINT, target VARCHAR, entity_key {_PLAIN}, message_id {_PLAIN}, operation VARCHAR,
        "partition" DATE, lineage_id {_PLAIN}, run_id VARCHAR, enqueued_at TIMESTAMP,
        attempts INTEGER, last_error VARCHAR, content_hash UBIGINT,
        {", ".join(f"{name} {kind}" for name, kind in _TYPED.items())})"""

PUBLISH_DDL = (
    _OUTBOX_DDL,
    f"""CREATE TABLE IF NOT EXISTS publish.published (
        target VARCHAR, entity_key {_PLAIN}, message_id {_PLAIN}, "partition" DATE, payload VARCHAR,
        lineage_id {_PLAIN}, target_ref {_PLAIN}, run_id VARCHAR, published_at TIMESTAMP,
        content_hash UBIGINT)""",
    f"""CREATE TABLE IF NOT EXISTS publish.sync_log (
        run_id VARCHAR, target VARCHAR, entity_key {_PLAIN}, message_id {_PLAIN}, "partition" DATE,
        lineage_id {_PLAIN}, status VARCHAR, target_ref {_PLAIN}, attempts INTEGER,
        message VARCHAR, enqueued_at TIMESTAMP, logged_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS publish.dead_letter (
        target VARCHAR, entity_key VARCHAR, message_id VARCHAR, operation VARCHAR,
        "partition" DATE, payload VARCHAR, lineage_id VARCHAR, error VARCHAR, attempts INTEGER,
        run_id VARCHAR, failed_at TIMESTAMP, replayed_at TIMESTAMP)""",
    f"CREATE SEQUENCE IF NOT EXISTS {OUTBOX_SEQUENCE}",
    """CREATE TABLE IF NOT EXISTS publish.sync_runs (
        run_id VARCHAR, target VARCHAR, "partition" DATE, staged INTEGER, unchanged INTEGER,
        older INTEGER, held_dead_lettered INTEGER, staged_at TIMESTAMP)""",
)

CANDIDATES = "publish_candidates"
"""The TEMP view (or table) `fabric.publish.records` defines: entity_key, partition, run_id (of the scoring),
content_hash and the payload fields (one row per entity)."""

# A candidate's lineage id is computed (`LINEAGE_ID_SQL`) only for the records the diff stages:
# the view computes it for every row read, most of a re-publish's time.

# A batch read from the outbox: these columns, then the payload fields (typed) and, for targets
# that send it, `payload` (the JSON text).
BATCH_COLUMNS = (
    "seq",
    "entity_key",
    "message_id",
    "operation",
    "partition",
    "lineage_id",
    "enqueued_at",
    "attempts",
    "content_hash",
)
# The payload JSON of an outbox row. A delete carries only the key and the day.
_PAYLOAD_JSON = (
    "CASE WHEN operation = 'delete' THEN "
    """to_json({'crm_customer_id': crm_customer_id, 'partition_date': "partition"})::VARCHAR """
    f"""ELSE {as_json({"partition_date": '"partition"'})} END"""
)
_BATCH_SELECT = (
    ", ".join(f'"{c}"' for c in BATCH_COLUMNS) + f', {_TYPED_NAMES}, "partition" AS partition_date'
)


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the publish tables; a `publish.sync_log` of the earlier per-day shape is renamed
    to `publish.sync_log_v1` (kept, not converted)."""
    old = con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'publish' "
        "AND table_name = 'sync_log' AND column_name = 'rows'"
    ).fetchone()
    if old and old[0]:
        con.execute("ALTER TABLE publish.sync_log RENAME TO sync_log_v1")
    json_outbox = con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'publish' "
        "AND table_name = 'outbox' AND column_name = 'payload'"
    ).fetchone()
    if json_outbox and json_outbox[0]:
        _convert_outbox(con)
    for ddl in PUBLISH_DDL:
        con.execute(ddl)


def _convert_outbox(con: duckdb.DuckDBPyConnection) -> None:
    """Rewrite an outbox of the earlier shape (payload as JSON text, no `seq`) typed, in one
    transaction; its pending records keep their message ids, attempts and errors."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("ALTER TABLE publish.outbox RENAME TO outbox_json")
        con.execute(_OUTBOX_DDL)
        con.execute(f"CREATE SEQUENCE IF NOT EXISTS {OUTBOX_SEQUENCE}")
        con.execute(
            f"""INSERT INTO {OUTBOX_TABLE}
                SELECT nextval('{OUTBOX_SEQUENCE}'), target, entity_key, message_id, operation, "partition",
                       lineage_id, run_id, enqueued_at, attempts, last_error, content_hash, {_TYPED_NAMES}
                FROM (SELECT *, {expanded()} FROM publish.outbox_json)"""
        )
        con.execute("DROP TABLE publish.outbox_json")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


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
WITH changed AS (
    SELECT c.* FROM {CANDIDATES} c
    ANTI JOIN (SELECT content_hash FROM {PUBLISHED_TABLE} WHERE target = $1 AND NOT $2) p
      ON p.content_hash = c.content_hash
), joined AS (
    -- the snapshot probes the (few) changed candidates, which the hash table is built from
    SELECT c.*, p.message_id AS published_id,
           p."partition" IS NOT NULL AND c."partition" < p."partition" AS is_older
    FROM (SELECT entity_key, message_id, "partition" FROM {PUBLISHED_TABLE} WHERE target = $1) p
    RIGHT JOIN changed c ON p.entity_key = c.entity_key
), built AS (
    -- an older record keeps the snapshot's id (it is not sent)
    SELECT *, CASE WHEN is_older THEN published_id
                   ELSE md5($1 || '|' || entity_key || '|' || {as_json()}) END AS message_id
    FROM joined
)
SELECT b.* EXCLUDE (published_id, is_older, run_id), {LINEAGE_ID_SQL} AS lineage_id,
       CASE
         WHEN b.is_older THEN 'older'
         WHEN d.message_id IS NOT NULL THEN 'dead'
         WHEN b.published_id IS NULL THEN 'create'
         WHEN b.published_id = b.message_id THEN 'same'
         ELSE 'update'
       END AS verdict
FROM built b
LEFT JOIN (SELECT DISTINCT message_id FROM {DEAD_LETTER_TABLE}
           WHERE target = $1 AND replayed_at IS NULL) d ON d.message_id = b.message_id
"""
# A candidate whose content hash is in the target's snapshot is unchanged (the hash covers the
# entity key) and is not in publish_diff: on a re-publish that is nearly all of them. An
# anti-join on the 64-bit hash finds them; only the rest are joined by entity key.


# Snapshot records of the window's open days that no candidate covers: deletes (opt-in). The
# snapshot keeps payloads of file drops only; otherwise a delete knows the key and the day.
_SNAPSHOT_PAYLOAD = """coalesce(p.payload, to_json({'crm_customer_id': TRY_CAST(p.entity_key AS BIGINT),
                                          'partition_date': p."partition"})::VARCHAR)"""
_DELETES = f"""
CREATE OR REPLACE TEMP TABLE publish_deletes AS
SELECT p.entity_key, md5($1 || '|' || p.entity_key || '|delete|' || p.message_id) AS message_id,
       p."partition", p.lineage_id, NULL::UBIGINT AS content_hash,
       {expanded(_SNAPSHOT_PAYLOAD)}
FROM {PUBLISHED_TABLE} p
WHERE p.target = $1 AND p."partition" IN (SELECT unnest($2::DATE[]))
  AND NOT EXISTS (SELECT 1 FROM {CANDIDATES} c WHERE c.entity_key = p.entity_key) AND $3
"""


def _plan(counts: dict[str, int], candidates: int, full_resync: bool) -> StagePlan:
    """The plan from the count per verdict (`create`, `update`, `same`, `dead`, `older`,
    `delete`) of the candidates the diff kept (those unchanged by content hash it left out)."""
    kept = sum(n for verdict, n in counts.items() if verdict != "delete")
    same = counts.get("same", 0) + candidates - kept
    return StagePlan(
        creates=counts.get("create", 0),
        updates=counts.get("update", 0) + (same if full_resync else 0),
        deletes=counts.get("delete", 0),
        unchanged=0 if full_resync else same,
        held_dead=counts.get("dead", 0),
        older=counts.get("older", 0),
    )


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def diff(
    con: duckdb.DuckDBPyConnection,
    target: str,
    open_days: Sequence[date],
    deletes: bool,
    full_resync: bool = False,
) -> StagePlan:
    """Compare the candidates with the snapshot into TEMP tables; count what would happen."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE publish_diff AS {_DIFF}", [target, full_resync])
    con.execute(_DELETES, [target, list(open_days), deletes])
    counts = {
        str(verdict): int(n)
        for verdict, n in con.execute(
            "SELECT verdict, count(*) FROM publish_diff GROUP BY verdict"
        ).fetchall()
    }
    counts["delete"] = _count(con, "SELECT count(*) FROM publish_deletes")
    return _plan(counts, _count(con, f"SELECT count(*) FROM {CANDIDATES}"), full_resync)


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

    The diff goes straight into the outbox (a million-row TEMP table of it cost as much as the
    insert): every record it kept, those not to be sent (`same`, `dead`, `older`) under that
    verdict as their operation, counted and then removed again, all before the commit. A
    pending outbox row of the same entity is replaced (its attempts kept when the content is the
    same): only the newest content of an entity is worth sending.
    """
    now = utcnow()
    send = "('create', 'update', 'same')" if full_resync else "('create', 'update')"
    operation = (
        f"CASE WHEN verdict NOT IN {send} THEN verdict "
        "WHEN verdict = 'create' THEN 'create' ELSE 'update' END"
    )
    fixed = f"{literal(target)}, entity_key, message_id"
    columns = f"\"partition\", lineage_id, {literal(run_id)}, TIMESTAMP '{now.isoformat(' ')}', 0, NULL"
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(_DELETES, [target, list(open_days), deletes])
        earlier = pending(con, target)
        first = _count(con, f"SELECT nextval('{OUTBOX_SEQUENCE}')")  # this stage's rows come after it
        con.execute(
            f"""INSERT INTO {OUTBOX_TABLE}
                SELECT nextval('{OUTBOX_SEQUENCE}'), {fixed}, {operation}, {columns}, content_hash,
                       {_TYPED_NAMES}
                FROM ({_DIFF})""",
            [target, full_resync],
        )
        con.execute(
            f"""INSERT INTO {OUTBOX_TABLE}
                SELECT nextval('{OUTBOX_SEQUENCE}'), {fixed}, 'delete', {columns}, content_hash,
                       {_TYPED_NAMES}
                FROM publish_deletes"""
        )
        last = _count(con, f"SELECT currval('{OUTBOX_SEQUENCE}')")
        staged = f"target = {literal(target)} AND seq > {first:d} AND seq <= {last:d}"
        by_partition = con.execute(
            f'SELECT "partition", operation, count(*) FROM {OUTBOX_TABLE} WHERE {staged} GROUP BY ALL'
        ).fetchall()
        counts: dict[str, int] = {}
        for _, verdict, n in by_partition:
            counts[verdict] = counts.get(verdict, 0) + int(n)
        plan = _plan(counts, _count(con, f"SELECT count(*) FROM {CANDIDATES}"), full_resync)
        if log_unchanged and not full_resync:
            # unchanged: the candidates the diff left out (by hash) and those found `same`
            con.execute(
                f"""INSERT INTO {SYNC_LOG_TABLE}
                    SELECT $1, $2, c.entity_key, p.message_id, c."partition", c.lineage_id,
                           'unchanged', NULL, 0, NULL, NULL, $3
                    FROM (SELECT *, {LINEAGE_ID_SQL} AS lineage_id FROM {CANDIDATES}) c
                    JOIN (SELECT entity_key, message_id FROM {PUBLISHED_TABLE} WHERE target = $2) p
                      ON p.entity_key = c.entity_key
                    LEFT JOIN (SELECT entity_key, operation FROM {OUTBOX_TABLE} WHERE {staged}) s
                      ON s.entity_key = c.entity_key
                    WHERE s.entity_key IS NULL OR s.operation = 'same'""",
                [run_id, target, now],
            )
        if counts.keys() - {"create", "update", "delete"}:  # verdicts that are not sent
            con.execute(
                f"""DELETE FROM {OUTBOX_TABLE}
                    WHERE {staged} AND operation NOT IN ('create', 'update', 'delete')"""
            )
        if earlier:  # pending rows of entities staged again are replaced
            con.execute(
                f"""UPDATE {OUTBOX_TABLE} n
                    SET attempts = o.attempts, enqueued_at = o.enqueued_at, last_error = o.last_error
                    FROM {OUTBOX_TABLE} o
                    WHERE n.target = o.target AND n.seq > {first:d} AND n.seq <= {last:d}
                      AND o.target = {literal(target)} AND o.seq <= {first:d}
                      AND o.entity_key = n.entity_key AND o.message_id = n.message_id"""
            )
            con.execute(
                f"""DELETE FROM {OUTBOX_TABLE} o
                    WHERE o.target = {literal(target)} AND o.seq <= {first:d}
                      AND o.entity_key IN (SELECT entity_key FROM {OUTBOX_TABLE} WHERE {staged})"""
            )
        totals = dict(con.execute(f'SELECT "partition", count(*) FROM {CANDIDATES} GROUP BY ALL').fetchall())
        rows = []
        for day, total in totals.items():
            of_day = {verdict: int(n) for d, verdict, n in by_partition if d == day}
            kept = sum(n for verdict, n in of_day.items() if verdict != "delete")
            unchanged = 0 if full_resync else int(total) - kept + of_day.get("same", 0)
            staged_n = of_day.get("create", 0) + of_day.get("update", 0)
            rows.append(
                (run_id, target, day, staged_n, unchanged, of_day.get("older", 0), of_day.get("dead", 0), now)
            )
        if rows:
            con.executemany(f"INSERT INTO {SYNC_RUNS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return plan


def has_snapshot(con: duckdb.DuckDBPyConnection, target: str) -> bool:
    """Whether `target` has been published to before (its snapshot holds records)."""
    row = con.execute(f"SELECT EXISTS (FROM {PUBLISHED_TABLE} WHERE target = ?)", [target]).fetchone()
    return bool(row and row[0])


def pending(con: duckdb.DuckDBPyConnection, target: str) -> int:
    """Records of `target` waiting in the outbox."""
    row = con.execute(f"SELECT count(*) FROM {OUTBOX_TABLE} WHERE target = ?", [target]).fetchone()
    return int(row[0]) if row else 0


ROW_GROUP_ROWS = 122_880
"""DuckDB's rows per row group (its default, which the warehouse uses)."""


def batch_rows(batch_size: int) -> int:
    """Records per delivery batch: `batch_size`, rounded down to whole DuckDB row groups when it
    is larger than one. Then each batch's snapshot and sync log rows are whole row groups, which
    DuckDB writes as they are; a batch ending in part of one left a part-filled row group in
    both tables, which the next checkpoint rewrote (measured: ~0.4 s per table and 250k-record
    batch, about a third of recording it)."""
    return batch_size - batch_size % ROW_GROUP_ROWS if batch_size > ROW_GROUP_ROWS else batch_size


def read_batch(
    con: duckdb.DuckDBPyConnection,
    target: str,
    limit: int | None,
    partition: date | None = None,
    after: int | None = None,
    payload: bool = False,
) -> pa.Table:
    """Pending records of `target`: those of the next `limit` values of `seq` above `after`
    (at most `limit` records: fewer where replaced records left gaps), or (`limit` None) all of
    them, or all of one `partition` if given; with the payload JSON as column `payload` if asked.

    Reading above the previous batch's last `seq` lets the next batch be read while that one is
    still on its way (its rows leave the outbox only once it is confirmed). A range of `seq`, not
    ORDER BY + LIMIT: sorting a million-row outbox for every batch would cost more than the batch.
    """
    where = "target = $1"
    params: list[object] = [target]
    if partition is not None:
        where += ' AND "partition" = $2'
        params.append(partition)
    if limit is not None:
        row = con.execute(
            f"SELECT min(seq) FROM {OUTBOX_TABLE} WHERE target = $1 AND seq > $2",
            [target, -1 if after is None else after],
        ).fetchone()
        lowest = row[0] if row and row[0] is not None else None
        where += " AND false" if lowest is None else f" AND seq >= {lowest:d} AND seq < {lowest + limit:d}"
    json = f", {_PAYLOAD_JSON} AS payload" if payload else ""
    return con.execute(
        f"SELECT {_BATCH_SELECT}{json} FROM {OUTBOX_TABLE} WHERE {where}", params
    ).to_arrow_table()


def pending_after(con: duckdb.DuckDBPyConnection, target: str, seq: int) -> bool:
    """Whether records of `target` are pending above `seq`."""
    row = con.execute(
        f"SELECT EXISTS (SELECT 1 FROM {OUTBOX_TABLE} WHERE target = ? AND seq > ?)", [target, seq]
    ).fetchone()
    return bool(row and row[0])


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
    it) or rejected (with the reason); records in neither were not confirmed and stay pending.

    A target that confirmed every record may give `refs` instead: the target refs in the batch's
    order (no per-record dictionaries for a million records)."""

    confirmed: dict[str, str] = field(default_factory=dict)  # message id -> target_ref
    rejected: dict[str, str] = field(default_factory=dict)  # message id -> error
    refs: pa.Array | pa.ChunkedArray | None = None  # every record confirmed, with these refs

    @property
    def settled(self) -> int:
        """Records confirmed or rejected."""
        return len(self.refs) if self.refs is not None else len(self.confirmed) + len(self.rejected)


def record_batch(
    con: duckdb.DuckDBPyConnection,
    target: str,
    run_id: str,
    batch: pa.Table,
    outcome: BatchOutcome,
    attempts: int,
    keep_payload: bool = False,
) -> dict[str, int]:
    """In one transaction: confirmed records leave the outbox and advance the snapshot, rejected
    ones move to the dead letter table; both are logged. Returns the count per logged status
    (`created`, `updated`, `deleted`, `dead_lettered`).

    Each table gets one `INSERT ... SELECT` over the batch's outbox rows (found by `seq`; only
    each record's target ref or error comes from Python). The snapshot keeps the payload only
    with `keep_payload` (file drops, which rewrite a day's file from it); other targets need
    only the message id and content hash to diff.
    """
    now = utcnow()
    seqs = batch.column("seq")
    if outcome.refs is not None:
        refs, errors = outcome.refs, pa.nulls(batch.num_rows, pa.string())
    else:
        ids = batch.column("message_id").to_pylist()
        refs = pa.array([outcome.confirmed.get(i) for i in ids], pa.string())
        errors = pa.array([outcome.rejected.get(i) for i in ids], pa.string())
    lowest, highest = (pc.min_max(seqs)[k].as_py() for k in ("min", "max"))
    payload = _PAYLOAD_JSON if keep_payload else "NULL"
    target_sql, run_sql, now_sql = literal(target), literal(run_id), f"TIMESTAMP '{now.isoformat(' ')}'"
    # The batch's outbox rows (found by seq, within its range), with each one's outcome; read by
    # each statement below rather than copied once (a copy cost more than the reads).
    done = f"""(SELECT o.* EXCLUDE (run_id), d.target_ref, d.error
                FROM {OUTBOX_TABLE} o JOIN publish_done_t d USING (seq)
                WHERE o.target = {target_sql} AND o.seq BETWEEN {lowest:d} AND {highest:d}
                  AND (d.target_ref IS NOT NULL OR d.error IS NOT NULL))"""
    status = """CASE WHEN error IS NOT NULL THEN 'dead_lettered'
                     WHEN operation = 'create' THEN 'created'
                     WHEN operation = 'delete' THEN 'deleted' ELSE 'updated' END"""
    logged = _logged(batch.column("operation"), refs, errors)
    con.register("publish_done_t", pa.table({"seq": seqs, "target_ref": refs, "error": errors}))
    con.execute("BEGIN TRANSACTION")
    try:
        if logged.get("updated") or logged.get("deleted"):
            # (a `create` was staged because the snapshot had no row for the entity: none to replace)
            con.execute(
                f"""DELETE FROM {PUBLISHED_TABLE} p USING {done} d
                    WHERE p.target = {target_sql} AND p.entity_key = d.entity_key
                      AND d.target_ref IS NOT NULL AND d.operation <> 'create'"""
            )
        con.execute(
            f"""INSERT INTO {PUBLISHED_TABLE}
                SELECT target, entity_key, message_id, "partition", {payload}, lineage_id, target_ref,
                       {run_sql}, {now_sql}, content_hash
                FROM {done} WHERE target_ref IS NOT NULL AND operation <> 'delete'"""
        )
        if logged.get("dead_lettered"):
            con.execute(
                f"""INSERT INTO {DEAD_LETTER_TABLE}
                    SELECT target, entity_key, message_id, operation, "partition", {_PAYLOAD_JSON},
                           lineage_id, error, attempts + {attempts:d}, {run_sql}, {now_sql}, NULL
                    FROM {done} WHERE error IS NOT NULL"""
            )
        con.execute(
            f"""INSERT INTO {SYNC_LOG_TABLE}
                SELECT {run_sql}, target, entity_key, message_id, "partition", lineage_id, {status},
                       target_ref, attempts + {attempts:d}, error, enqueued_at, {now_sql}
                FROM {done}"""
        )
        # last: the statements above read these rows
        con.execute(
            f"""DELETE FROM {OUTBOX_TABLE}
                WHERE target = {target_sql} AND seq BETWEEN {lowest:d} AND {highest:d}
                  AND seq IN (SELECT seq FROM publish_done_t
                              WHERE target_ref IS NOT NULL OR error IS NOT NULL)"""
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("publish_done_t")
    return logged


def _logged(
    operations: pa.ChunkedArray, refs: pa.Array | pa.ChunkedArray, errors: pa.Array
) -> dict[str, int]:
    """The count per sync log status of a batch's outcome (records neither confirmed nor
    rejected are not logged)."""
    rejected = pc.is_valid(errors)
    confirmed = pc.and_(pc.is_valid(refs), pc.invert(rejected))
    logged = {"dead_lettered": pc.sum(rejected).as_py() or 0}
    for operation, status in (("create", "created"), ("update", "updated"), ("delete", "deleted")):
        logged[status] = pc.sum(pc.and_(confirmed, pc.equal(operations, operation))).as_py() or 0
    return logged


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
    con.register("publish_failed", batch.select(BATCH_COLUMNS))
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"""UPDATE {OUTBOX_TABLE} o SET attempts = o.attempts + $2, last_error = $3
                FROM publish_failed f
                WHERE o.target = $1 AND o.seq = f.seq AND o.message_id = f.message_id""",
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
                SELECT nextval('{OUTBOX_SEQUENCE}'), target, entity_key, message_id, operation,
                       "partition", lineage_id, $1, $2, 0, error, NULL, {_TYPED_NAMES}
                FROM (SELECT *, {expanded()} FROM publish_replay)""",
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
