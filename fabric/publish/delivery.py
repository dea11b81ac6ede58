"""The per-day loop every publisher shares: gate, read the day's scores, deliver, log.

A closed gate or a day without scores is logged and skipped; a failed delivery is logged and
stops the run (later days would only pile up behind a broken target). Whatever happened, the
days handled so far are written to `publish.sync_log` and the run to `meta.runs`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

import pyarrow as pa

from fabric.config import FabricConfig
from fabric.errors import ConfigError, QualityGateClosed
from fabric.meta import RunRecord, record_run
from fabric.partitions import Window
from fabric.publish.sync_log import SYNC_LOG_TABLE, SyncEntry, SyncStatus, record_sync
from fabric.scoring.score import SCORES_TABLE, Gate, read_scores
from fabric.warehouse import Warehouse

_P = TypeVar("_P")


def publisher_config(config: FabricConfig, name: str, kind: type[_P]) -> _P:
    """The publisher `name` from `fabric.yaml`, which must be of type `kind`."""
    publisher = config.publishers.get(name)
    if publisher is None:
        known = ", ".join(config.publishers) or "none"
        raise ConfigError(f"fabric.yaml: publishers.{name} is not defined (publishers: {known})")
    if not isinstance(publisher, kind):
        raise ConfigError(
            f"fabric.yaml: publishers.{name} is of kind {publisher.kind!r}, not what this "
            f"publisher writes ({kind.__name__})"
        )
    return publisher


@dataclass(frozen=True)
class Delivered:
    """What a target accepted for one partition."""

    rows: int
    message: str


Deliver = Callable[[date, pa.Table], Delivered]
"""Sends one day's score rows (ordered by Fabric customer id) to a target."""


@dataclass
class PublishResult:
    """What one publish run did, per day."""

    target: str
    run_id: str
    window: Window
    published: dict[date, int] = field(default_factory=dict)
    blocked: dict[date, str] = field(default_factory=dict)
    empty: list[date] = field(default_factory=list)
    entries: list[SyncEntry] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(self.published.values())

    def metadata(self) -> dict[str, Any]:
        """Plain values for Dagster asset metadata."""
        return {
            "target": self.target,
            "rows": self.rows,
            "rows_by_day": {d.isoformat(): n for d, n in self.published.items()},
            "blocked_days": {d.isoformat(): reason for d, reason in self.blocked.items()},
            "days_without_scores": [d.isoformat() for d in self.empty],
            "messages": {e.partition.isoformat(): e.message for e in self.entries},
            "seconds": round(self.seconds, 3),
        }


def deliver_window(
    warehouse: Warehouse,
    target: str,
    window: Window,
    run_id: str,
    gate: Gate,
    deliver: Deliver,
) -> PublishResult:
    """Publish each open day of `window` to `target` with `deliver`."""
    started = time.perf_counter()
    result = PublishResult(target=target, run_id=run_id, window=window)
    record = RunRecord(
        run_id=run_id,
        step=f"publish:{target}",
        partition_start=window.start,
        partition_end=window.end,
        inputs=[SCORES_TABLE],
    )

    def log(day: date, rows: int, status: SyncStatus, message: str) -> None:
        result.entries.append(SyncEntry(run_id, target, day, rows, status, message))

    try:
        for day in window:
            with warehouse.connect() as con:
                try:
                    gate(con, day)
                except QualityGateClosed as exc:
                    result.blocked[day] = str(exc)
                    log(day, 0, SyncStatus.BLOCKED, str(exc))
                    continue
                scores = read_scores(con, day)
            if scores.num_rows == 0:
                result.empty.append(day)
                log(day, 0, SyncStatus.EMPTY, f"no rows in {SCORES_TABLE} for {day}")
                continue
            try:
                delivered = deliver(day, scores)
            except Exception as exc:
                log(day, 0, SyncStatus.FAILED, str(exc))
                raise
            result.published[day] = delivered.rows
            log(day, delivered.rows, SyncStatus.OK, delivered.message)
    except Exception as exc:
        record.status, record.message = "failed", str(exc)
        raise
    finally:
        result.seconds = time.perf_counter() - started
        record.output(f"target:{target}", result.rows, list(result.published))
        record.output(SYNC_LOG_TABLE, len(result.entries))
        if record.status == "ok" and (result.blocked or result.empty):
            skipped = sorted([*result.blocked, *result.empty])
            record.status = "warning"
            record.message = "not published: " + ", ".join(d.isoformat() for d in skipped)
        with warehouse.connect() as con:
            record_sync(con, result.entries)
            record_run(con, record)
    return result
