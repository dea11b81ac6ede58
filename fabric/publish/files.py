"""The CSV file drop: one file per partition, replaced atomically.

The file is written under a hidden temporary name in the target directory and renamed over
`churn_scores_<YYYY-MM-DD>.csv`, so a consumer polling the directory sees either the previous
complete file or the new complete file, never a partial one, and no temporary file matches the
`churn_scores_*.csv` pattern. Rows are ordered by Fabric customer id: the same scores give the
same bytes.
"""

from __future__ import annotations

import os
import tempfile
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from fabric.config import CsvDropPublisher, FabricConfig
from fabric.errors import PublishError
from fabric.partitions import Window
from fabric.publish.delivery import Delivered, PublishResult, deliver_window, publisher_config
from fabric.scoring.score import Gate, quality_gate
from fabric.warehouse import Warehouse

CSV_COLUMNS = (
    "partition_date",
    "crm_customer_id",
    "fabric_customer_id",
    "score",
    "decision",
    "model_name",
    "model_version",
    "variant",
    "scorer",
    "scored_at",
    "lineage_id",
)


def file_name(day: date) -> str:
    return f"churn_scores_{day.isoformat()}.csv"


def drop_file(directory: Path, day: date, scores: pa.Table) -> Delivered:
    """Write one partition's scores to `directory` atomically."""
    target = directory / file_name(day)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise PublishError(f"{directory}: cannot write the score file drop: {exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            pacsv.write_csv(scores.select(list(CSV_COLUMNS)), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException as exc:
        Path(temp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise PublishError(f"{target}: writing the score file failed: {exc}") from None
        raise
    _fsync_directory(directory)
    return Delivered(rows=scores.num_rows, message=str(target))


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (a crash right after it must not bring the old file back)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_files(
    config: FabricConfig,
    warehouse: Warehouse,
    publisher_name: str,
    window: Window,
    run_id: str,
    gate: Gate | None = None,
) -> PublishResult:
    """Drop one CSV per open day of `window` into the publisher's directory."""
    publisher = publisher_config(config, publisher_name, CsvDropPublisher)
    directory = config.resolve(publisher.directory)
    return deliver_window(
        warehouse,
        publisher_name,
        window,
        run_id,
        gate or quality_gate(config),
        lambda day, scores: drop_file(directory, day, scores),
    )
