"""Publish a window to one target: gate the days, stage the changes, deliver the outbox.

`publish` = `stage_window` (one warehouse transaction) + `deliver` (batches; no warehouse
connection is open while a batch is on the network). A batch that keeps failing after the
retry policy's attempts stops the run with a `PublishError` naming the target, the error and how
many records wait in the outbox; the next run delivers them. `plan` is the dry run (nothing
written, nothing sent); `replay` moves dead letters back into the outbox and delivers them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb
import pyarrow as pa

from fabric.config import FabricConfig, RetryPolicy
from fabric.errors import ConfigError, PublishError, QualityGateClosed
from fabric.meta import RunRecord, record_run
from fabric.partitions import Window
from fabric.publish import outbox
from fabric.publish.outbox import BatchOutcome, StagePlan
from fabric.publish.records import build_candidates
from fabric.publish.targets import Target, TransientError, build_target
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

    def add(self, batch: pa.Table, outcome: BatchOutcome) -> None:
        for message_id, operation in zip(
            batch.column("message_id").to_pylist(), batch.column("operation").to_pylist(), strict=True
        ):
            if message_id in outcome.rejected:
                self.dead_lettered += 1
            elif message_id not in outcome.confirmed:
                continue  # neither: still pending (deliver raises)
            elif operation == "create":
                self.created += 1
            elif operation == "delete":
                self.deleted += 1
            else:
                self.updated += 1
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
    config: FabricConfig,
    warehouse: Warehouse,
    name: str,
    result: PublishResult,
    gate: Gate,
    per_partition: bool,
    full_resync: bool = False,
    dry_run: bool = False,
) -> None:
    """Gate each day of the result's window, diff the open days' publishable scores against the
    snapshot and, unless `dry_run`, write the changes to the outbox (one connection)."""
    declared = _declared(config, name)
    with warehouse.connect() as con:
        outbox.ensure_tables(con)
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


def deliver(
    config: FabricConfig,
    warehouse: Warehouse,
    name: str,
    run_id: str,
    sleep: Sleep = time.sleep,
    target: Target | None = None,
) -> DeliveryResult:
    """Send every pending outbox record of target `name`, batch by batch, recording each batch."""
    declared = _declared(config, name)
    result = DeliveryResult()

    def next_batch(con: duckdb.DuckDBPyConnection) -> tuple[pa.Table, pa.Table | None]:
        if not sender.per_partition:
            return outbox.read_batch(con, name, declared.batch_size), None
        days = outbox.pending_partitions(con, name)
        if not days:
            return outbox.read_batch(con, name, 0), None
        return outbox.read_batch(con, name, 2**62, days[0]), outbox.published_rows(con, name, days[0])

    with target or build_target(config, name) as sender:
        with warehouse.connect() as con:
            outbox.ensure_tables(con)
            batch, keep = next_batch(con)
        while batch.num_rows:
            try:
                outcome, attempts = _send_with_retry(sender, batch, keep, declared.retry, sleep)
            except (_Exhausted, PublishError) as exc:
                attempts = exc.attempts if isinstance(exc, _Exhausted) else 1
                error = " ".join(str(exc).split())  # drivers' messages span lines
                with warehouse.connect() as con:
                    outbox.record_failure(con, name, run_id, batch, error, attempts)
                    waiting = outbox.pending(con, name)
                raise PublishError(
                    f"publishers.{name} ({sender.label}): delivery failed after {attempts} attempt(s): "
                    f"{error}. {waiting} record(s) stay in {outbox.OUTBOX_TABLE}; the next publish "
                    "run delivers them"
                ) from None
            result.retries += attempts - 1
            result.add(batch, outcome)
            missing = batch.num_rows - len(outcome.confirmed) - len(outcome.rejected)
            # One connection records this batch and reads the next: the file is opened once per batch.
            with warehouse.connect() as con:
                outbox.record_batch(con, name, run_id, batch, outcome, attempts, sender.per_partition)
                if missing:
                    raise PublishError(
                        f"publishers.{name} ({sender.label}): the target neither confirmed nor "
                        f"rejected {missing} record(s) of a batch; they stay in {outbox.OUTBOX_TABLE}"
                    )
                batch, keep = next_batch(con)
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
    try:
        target = build_target(config, name)
        stage_window(
            config, warehouse, name, result, gate or quality_gate(config), target.per_partition, full_resync
        )
        result.delivery = deliver(config, warehouse, name, run_id, sleep, target)
    except Exception as exc:
        record.status, record.message = "failed", str(exc)
        raise
    finally:
        result.seconds = time.perf_counter() - started
        with warehouse.connect() as con:
            outbox.ensure_tables(con)
            result.pending = outbox.pending(con, name)
            record.output(f"target:{name}", result.delivered, result.open_days)
            record.output(outbox.OUTBOX_TABLE, result.plan.changed)
            skipped = sorted([*result.blocked, *result.empty])
            if record.status == "ok" and skipped:
                record.status = "warning"
                record.message = "not published: " + ", ".join(d.isoformat() for d in skipped)
            record_run(con, record)
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
    gate = gate or quality_gate(config)
    stage_window(config, warehouse, name, result, gate, per_partition, full_resync, dry_run=True)
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
