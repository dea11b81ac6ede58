"""Publish a window to one target: gate the days, stage the changes, deliver the outbox.

`publish` = `stage_window` (one warehouse transaction) + `deliver` (batches; no warehouse
connection is open while a batch is on the network, except one closing, whose checkpoint then
overlaps the send). Staging and reading the first batch share
a connection, and so do recording the last batch and recording the run (`meta.runs`): a
re-publish of one batch opens two connections, not four (each open and closing checkpoint
cost ~0.05 s of a ~0.7 s re-publish). A batch that keeps failing after the
retry policy's attempts stops the run with a `PublishError` naming the target, the error and how
many records wait in the outbox; the next run delivers them. `plan` is the dry run (nothing
written, nothing sent); `replay` moves dead letters back into the outbox and delivers them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from fabric.config import FabricConfig, RetryPolicy
from fabric.errors import ConfigError, PublishError, QualityGateClosed
from fabric.meta import RunRecord, record_run
from fabric.partitions import Window
from fabric.progress import ProgressClock
from fabric.publish import outbox
from fabric.publish.outbox import BatchOutcome, StagePlan
from fabric.publish.records import build_candidates
from fabric.publish.targets import Target, TransientError, build_target, sends_cloudevents
from fabric.scoring.score import SCORES_TABLE, Gate, quality_gate
from fabric.warehouse import Warehouse

log = logging.getLogger(__name__)

Sleep = Callable[[float], None]


@dataclass
class DeliveryResult:
    """What `deliver` did: records confirmed per operation, dead-lettered, batches sent."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    dead_lettered: int = 0
    batches: int = 0
    retries: int = 0

    def add(self, logged: dict[str, int], attempts: int) -> None:
        """One recorded batch: its count per sync log status (`outbox.record_batch`)."""
        self.created += logged.get("created", 0)
        self.updated += logged.get("updated", 0)
        self.deleted += logged.get("deleted", 0)
        self.dead_lettered += logged.get("dead_lettered", 0)
        self.retries += attempts - 1
        self.batches += 1


@dataclass
class PublishResult:
    """What one publish run did for one target."""

    target: str
    run_id: str
    window: Window
    plan: StagePlan = field(default_factory=StagePlan)
    delivery: DeliveryResult = field(default_factory=DeliveryResult)
    open_days: list[date] = field(default_factory=list)
    blocked: dict[date, str] = field(default_factory=dict)
    empty: list[date] = field(default_factory=list)
    pending: int = 0
    seconds: float = 0.0

    @property
    def delivered(self) -> int:
        d = self.delivery
        return d.created + d.updated + d.deleted

    def metadata(self) -> dict[str, Any]:
        """Plain values for Dagster asset metadata."""
        d = self.delivery
        return {
            "target": self.target,
            "open_days": [day.isoformat() for day in self.open_days],
            "blocked_days": {day.isoformat(): reason for day, reason in self.blocked.items()},
            "days_without_scores": [day.isoformat() for day in self.empty],
            "staged": {
                "creates": self.plan.creates,
                "updates": self.plan.updates,
                "deletes": self.plan.deletes,
                "unchanged": self.plan.unchanged,
                "held_dead_lettered": self.plan.held_dead,
                "older_than_target": self.plan.older,
            },
            "delivered": {"created": d.created, "updated": d.updated, "deleted": d.deleted},
            "dead_lettered": d.dead_lettered,
            "batches": d.batches,
            "retries": d.retries,
            "still_pending": self.pending,
            "seconds": round(self.seconds, 3),
        }


def _declared(config: FabricConfig, name: str) -> Any:
    declared = config.publishers.get(name)
    if declared is None:
        known = ", ".join(config.publishers) or "none"
        raise ConfigError(f"fabric.yaml: publishers.{name} is not defined (publishers: {known})")
    return declared


def stage_window(
    con: duckdb.DuckDBPyConnection,
    config: FabricConfig,
    name: str,
    result: PublishResult,
    gate: Gate,
    per_partition: bool,
    full_resync: bool = False,
    dry_run: bool = False,
) -> None:
    """Gate each day of the result's window, diff the open days' publishable scores against the
    snapshot and, unless `dry_run`, write the changes to the outbox.

    A first publish runs on one DuckDB thread from here on (the caller's connection)."""
    declared = _declared(config, name)
    outbox.ensure_tables(con)
    if not outbox.has_snapshot(con, name):
        # A first publish stages every record on one DuckDB thread: on two busy cores a
        # second one cost more CPU than it saved time, and the outbox rows then lie in `seq`
        # order, so a batch's rows fill whole row groups. A re-publish's diff is a large join
        # with a small result, which all threads share (1M candidates, 1% changed: 0.23 s
        # on one thread, 0.14 s on two).
        con.execute("SET threads = 1")
    for day in result.window:
        try:
            gate(con, day)
        except QualityGateClosed as exc:
            result.blocked[day] = str(exc)
            continue
        result.open_days.append(day)
    scored = build_candidates(con, config, name, result.open_days, per_partition)
    result.empty = [d for d in result.open_days if d not in scored]
    if dry_run:
        result.plan = outbox.diff(con, name, result.open_days, declared.deletes, full_resync)
        result.pending = outbox.pending(con, name)
    else:
        result.plan = outbox.stage(
            con, name, result.run_id, result.open_days, declared.deletes, full_resync,
            declared.log_unchanged,
        )  # fmt: skip


@dataclass(frozen=True)
class FirstBatch:
    """The first batch to deliver, read on the connection that staged it (one connection less)."""

    batch: pa.Table
    keep: pa.Table | None  # a file drop's snapshot rows of the batch's day
    more: bool  # records pending after it


def _next_batch(
    con: duckdb.DuckDBPyConnection,
    name: str,
    batch_size: int,
    per_partition: bool,
    payload: bool,
    after: int | None,
) -> tuple[pa.Table, pa.Table | None]:
    """The pending records after `seq` `after`, or a file drop's oldest pending day with what the
    snapshot keeps of it."""
    if not per_partition:
        return outbox.read_batch(con, name, outbox.batch_rows(batch_size), after=after, payload=payload), None
    days = outbox.pending_partitions(con, name)
    if not days:
        return outbox.read_batch(con, name, 0), None
    batch = outbox.read_batch(con, name, None, days[0], payload=payload)
    return batch, outbox.published_rows(con, name, days[0])


def first_batch(
    con: duckdb.DuckDBPyConnection, config: FabricConfig, name: str, per_partition: bool
) -> FirstBatch:
    """What `deliver` sends first (see `FirstBatch`)."""
    declared = _declared(config, name)
    batch, keep = _next_batch(
        con, name, declared.batch_size, per_partition, sends_cloudevents(declared), None
    )
    more = not per_partition and batch.num_rows > 0 and outbox.pending_after(con, name, _last_seq(batch))
    return FirstBatch(batch, keep, more)


def _last_seq(batch: pa.Table) -> int:
    """The highest `seq` of a batch read from the outbox."""
    return int(pc.max(batch.column("seq")).as_py())


def _send_with_retry(
    target: Target, batch: pa.Table, keep: pa.Table | None, policy: RetryPolicy, sleep: Sleep
) -> tuple[BatchOutcome, int]:
    """Send `batch`, retrying transient failures; returns the outcome and the attempts used."""
    wait = policy.initial_seconds
    for attempt in range(1, policy.attempts + 1):
        try:
            return target.send(batch, keep), attempt
        except TransientError as exc:
            if attempt == policy.attempts:
                raise _Exhausted(str(exc), attempt) from None
            delay = min(exc.retry_after if exc.retry_after is not None else wait, policy.max_seconds)
            log.warning("%s: attempt %d failed (%s); retrying in %.2f s", target.label, attempt, exc, delay)
            sleep(delay)
            wait = min(wait * 2, policy.max_seconds)
    raise AssertionError("unreachable: the loop returns or raises")


class _Exhausted(Exception):
    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


@contextmanager
def _opened(pool: ThreadPoolExecutor, target: Target) -> Iterator[Target]:
    """`with target:`, entered and exited on the pool's one thread, where its sends run too: some
    clients may only be used from the thread that made them (sqlite3, asyncio loops). The exit
    waits for a send still running (it queues behind it)."""
    sender = pool.submit(target.__enter__).result()
    try:
        yield sender
    except BaseException as exc:
        pool.submit(sender.__exit__, type(exc), exc, exc.__traceback__).result()
        raise
    pool.submit(sender.__exit__, None, None, None).result()


def deliver(
    config: FabricConfig,
    warehouse: Warehouse,
    name: str,
    run_id: str,
    sleep: Sleep = time.sleep,
    target: Target | None = None,
    first: FirstBatch | None = None,
    finish: Callable[[duckdb.DuckDBPyConnection, DeliveryResult], None] | None = None,
    staging: ExitStack | None = None,
) -> DeliveryResult:
    """Send every pending outbox record of target `name`, batch by batch, recording each batch.

    Batches are sent from a worker thread. For targets that take any batch (all but file drops)
    the warehouse work overlaps the network: while batch k is sent, batch k-1 is recorded and
    batch k+1 read on one connection, which is closed before waiting for batch k; if k is already
    confirmed by then, k+1 is sent before the close (DuckDB's checkpoint on close overlaps it). A
    batch is recorded only once its send has returned, so a crash re-sends at most the two newest
    batches (at-least-once, same message ids). File drops go one day after the other (a day's
    file is rewritten from the snapshot, which the previous day's record must have advanced).

    `first`, if given, was read by the caller (`first_batch`); `finish` runs on the connection
    that records the last batch, once every batch is recorded (the caller's own bookkeeping,
    one connection less); it is not called when no batch was sent. `staging`, if given, holds the
    connection that staged and read `first`: it is closed once the first batch is on its way, so
    that its closing checkpoint overlaps the send.
    """
    declared = _declared(config, name)
    result = DeliveryResult()
    payload = sends_cloudevents(declared)

    def next_batch(con: duckdb.DuckDBPyConnection, after: int | None) -> tuple[pa.Table, pa.Table | None]:
        return _next_batch(con, name, declared.batch_size, sender.per_partition, payload, after)

    def record(con: duckdb.DuckDBPyConnection, batch: pa.Table, outcome: BatchOutcome, attempts: int) -> None:
        logged = outbox.record_batch(con, name, run_id, batch, outcome, attempts, sender.per_partition)
        result.add(logged, attempts)
        if progress.due():
            log.info("publishers.%s (%s): %s", name, sender.label, so_far())
        missing = batch.num_rows - outcome.settled
        if missing:
            raise PublishError(
                f"publishers.{name} ({sender.label}): the target neither confirmed nor "
                f"rejected {missing} record(s) of a batch; they stay in {outbox.OUTBOX_TABLE}"
            )

    def sent(
        batch: pa.Table,
        sending: Future[tuple[BatchOutcome, int]],
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> tuple[BatchOutcome, int]:
        """The outcome of a batch's send; a send that failed for good is recorded (on `con` if
        open), then raised."""
        try:
            return sending.result()
        except (_Exhausted, PublishError) as exc:
            attempts = exc.attempts if isinstance(exc, _Exhausted) else 1
            error = " ".join(str(exc).split())  # drivers' messages span lines
            with nullcontext(con) if con is not None else warehouse.connect() as failed:
                outbox.record_failure(failed, name, run_id, batch, error, attempts)
                waiting = outbox.pending(failed, name)
            raise PublishError(
                f"publishers.{name} ({sender.label}): delivery failed after {attempts} attempt(s): "
                f"{error}. {waiting} record(s) stay in {outbox.OUTBOX_TABLE}; the next publish "
                "run delivers them"
            ) from None

    def send(batch: pa.Table, keep: pa.Table | None = None) -> Future[tuple[BatchOutcome, int]] | None:
        sending = (
            pool.submit(_send_with_retry, sender, batch, keep, declared.retry, sleep)
            if batch.num_rows
            else None
        )
        if staging is not None:
            staging.close()  # (after the first send only: closing twice does nothing)
        return sending

    def so_far() -> str:
        confirmed = result.created + result.updated + result.deleted
        return (
            f"{result.batches} batch(es) recorded, {confirmed:,} records confirmed, "
            f"{result.dead_lettered:,} dead-lettered"
        )

    target = target or build_target(config, name)
    progress = ProgressClock()
    more = False  # records pending after the batch on its way
    with ThreadPoolExecutor(1, "fabric-publish") as pool, _opened(pool, target) as sender:
        if first is None:
            with warehouse.connect() as con:
                outbox.ensure_tables(con)
                first = first_batch(con, config, name, sender.per_partition)
        batch, keep, more = first.batch, first.keep, first.more
        if sender.per_partition:
            while (day := send(batch, keep)) is not None:
                outcome, attempts = sent(batch, day)
                with warehouse.connect() as con:
                    record(con, batch, outcome, attempts)
                    batch, keep = next_batch(con, None)
                    if finish is not None and not batch.num_rows:
                        finish(con, result)
            log.info("publishers.%s (%s) delivered: %s", name, sender.label, so_far())
            return result
        unrecorded: tuple[pa.Table, BatchOutcome, int] | None = None  # sent, not yet recorded
        sending = send(batch)
        while sending is not None or unrecorded is not None:
            # the batch after the one on its way: read below, or none when nothing is left after it
            upcoming = None if more else batch.slice(0, 0)
            if unrecorded is not None or (sending is not None and more):
                # While a batch is on its way, one connection records the one before and reads the next.
                # (On all threads: one thread left each batch's rows to be compressed and written
                # by its COMMIT, 0.25 s per 245,760 records against 0.13 s on two, and the send of
                # a batch of new keys leaves the client little to do.)
                with warehouse.connect() as con:
                    if unrecorded is not None:
                        record(con, *unrecorded)
                        unrecorded = None
                    if sending is not None and upcoming is None:
                        upcoming, _ = next_batch(con, _last_seq(batch))
                        more = bool(upcoming.num_rows) and outbox.pending_after(
                            con, name, _last_seq(upcoming)
                        )
                    if sending is not None and upcoming is not None and sending.done():
                        # send the next before closing: the close (a checkpoint) overlaps it
                        unrecorded = (batch, *sent(batch, sending, con))
                        sending, batch, upcoming = send(upcoming), upcoming, None
                    if finish is not None and sending is None and unrecorded is None:
                        finish(con, result)  # the last batch is recorded
            if sending is not None and upcoming is not None:  # wait for it with the warehouse closed
                unrecorded = (batch, *sent(batch, sending))
                sending, batch = send(upcoming), upcoming
        log.info("publishers.%s (%s) delivered: %s", name, sender.label, so_far())
    return result


def publish(
    config: FabricConfig,
    warehouse: Warehouse,
    name: str,
    window: Window,
    run_id: str,
    gate: Gate | None = None,
    full_resync: bool = False,
    sleep: Sleep = time.sleep,
) -> PublishResult:
    """Stage the open days of `window` for target `name` and deliver its outbox.

    Whatever happens, the run is written to `meta.runs` (step `publish:<name>`).
    """
    started = time.perf_counter()
    result = PublishResult(target=name, run_id=run_id, window=window)
    record = RunRecord(
        run_id=run_id,
        step=f"publish:{name}",
        partition_start=window.start,
        partition_end=window.end,
        inputs=[SCORES_TABLE],
    )
    recorded = False

    def finish(con: duckdb.DuckDBPyConnection, delivery: DeliveryResult) -> None:
        nonlocal recorded
        recorded = True  # once: an error here propagates rather than being recorded twice
        result.delivery = delivery
        result.seconds = time.perf_counter() - started
        outbox.ensure_tables(con)
        result.pending = outbox.pending(con, name)
        record.output(f"target:{name}", result.delivered, result.open_days)
        record.output(outbox.OUTBOX_TABLE, result.plan.changed)
        skipped = sorted([*result.blocked, *result.empty])
        if record.status == "ok" and skipped:
            record.status = "warning"
            record.message = "not published: " + ", ".join(d.isoformat() for d in skipped)
        record_run(con, record)

    try:
        target = build_target(config, name)
        with ExitStack() as staging:  # staging and the first batch's read share a connection
            con = staging.enter_context(warehouse.connect())
            per_partition = target.per_partition
            stage_window(con, config, name, result, gate or quality_gate(config), per_partition, full_resync)
            first = first_batch(con, config, name, per_partition)
            result.delivery = deliver(config, warehouse, name, run_id, sleep, target, first, finish, staging)
    except Exception as exc:
        record.status, record.message = "failed", str(exc)
        raise
    finally:
        if not recorded:  # failed, or nothing was sent: a connection of its own
            with warehouse.connect() as con:
                finish(con, result.delivery)
    return result


def plan(
    config: FabricConfig,
    warehouse: Warehouse,
    name: str,
    window: Window,
    gate: Gate | None = None,
    full_resync: bool = False,
) -> PublishResult:
    """The dry run: what `publish` would stage for `name` (nothing is written or sent)."""
    result = PublishResult(target=name, run_id="plan", window=window)
    per_partition = build_target(config, name).per_partition
    with warehouse.connect() as con:
        gate = gate or quality_gate(config)
        stage_window(con, config, name, result, gate, per_partition, full_resync, dry_run=True)
    return result


def replay(
    config: FabricConfig, warehouse: Warehouse, name: str, run_id: str, sleep: Sleep = time.sleep
) -> tuple[int, DeliveryResult]:
    """Move target `name`'s dead letters back to the outbox and deliver; returns how many were
    moved and what the delivery did."""
    _declared(config, name)
    with warehouse.connect() as con:
        outbox.ensure_tables(con)
        moved = outbox.replay(con, name, run_id)
    return moved, deliver(config, warehouse, name, run_id, sleep)
