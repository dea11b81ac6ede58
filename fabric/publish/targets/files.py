"""File drops: one CSV or Parquet file per day, replaced atomically, with a manifest.

A batch is one whole day (`per_partition`): the file is rewritten from the day's snapshot
records (`keep`) with the batch applied, under a hidden temporary name in the directory, fsynced
and renamed over `churn_scores_<day>.<csv|parquet>`, so a consumer sees the previous complete file
or the new one, never a part. Then the manifest `churn_scores_<day>.manifest.json` (file name,
rows, sha256 of the file, message ids in row order) is replaced the same way: a consumer that
reads the manifest first and checks the hash knows it has the matching file. Rows are ordered by
CRM id: the same records give the same bytes."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from fabric.errors import PublishError
from fabric.publish.outbox import BatchOutcome
from fabric.publish.payload import PAYLOAD_FIELDS
from fabric.publish.targets.base import confirm_all

FILE_COLUMNS = (*PAYLOAD_FIELDS, "lineage_id", "message_id")


def file_name(day: date, fmt: Literal["csv", "parquet"]) -> str:
    return f"churn_scores_{day.isoformat()}.{fmt}"


def manifest_name(day: date) -> str:
    return f"churn_scores_{day.isoformat()}.manifest.json"


def write_atomically(target: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write `target` through a temporary file in its directory, fsync, rename, fsync the dir."""
    directory = target.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise PublishError(f"{directory}: cannot write the file drop: {exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException as exc:
        Path(temp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise PublishError(f"{target}: writing the file failed: {exc}") from None
        raise
    if os.name == "posix":  # make the rename durable
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class FileDropTarget:
    per_partition = True

    def __init__(self, directory: Path, fmt: Literal["csv", "parquet"]) -> None:
        self.directory, self.format = directory, fmt
        self.label = str(directory)

    def __enter__(self) -> FileDropTarget:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def send(self, batch: pa.Table, keep: pa.Table | None) -> BatchOutcome:
        days = set(batch.column("partition").to_pylist())
        if len(days) != 1:
            raise PublishError(f"{self.label}: a file-drop batch must be one day, got {sorted(days)}")
        day = days.pop()
        columns = list(FILE_COLUMNS)
        rows = batch.filter(pc.not_equal(batch.column("operation"), "delete")).select(columns)
        if keep is not None and keep.num_rows:
            kept = keep.filter(pc.invert(pc.is_in(keep.column("entity_key"), batch.column("entity_key"))))
            rows = pa.concat_tables([kept.select(columns), rows])
        rows = rows.sort_by("crm_customer_id")
        target = self.directory / file_name(day, self.format)
        if self.format == "csv":
            write_atomically(target, lambda handle: pacsv.write_csv(rows, handle))
        else:
            write_atomically(target, lambda handle: pq.write_table(rows, handle))
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        manifest = {
            "file": target.name,
            "partition": day.isoformat(),
            "format": self.format,
            "rows": rows.num_rows,
            "sha256": digest,
            "message_ids": rows.column("message_id").to_pylist(),
        }
        text = json.dumps(manifest, indent=1).encode()
        write_atomically(self.directory / manifest_name(day), lambda handle: handle.write(text))
        position = {m: i + 1 for i, m in enumerate(manifest["message_ids"])}
        refs = [
            f"{target.name}#{position[m]}" if m in position else f"{target.name}#deleted"
            for m in batch.column("message_id").to_pylist()
        ]
        return confirm_all(batch, refs)
