"""`meta.loads` rows for refused loads (merged and streamed loads use `load.record_load` directly).

A refused load (the source table is gone, a merge batch repeats a key) commits no row. Its
`meta.loads` row has status `failed`, the reason as message and zero counts: nothing was read
into the warehouse, so `rows_read = rows_loaded + rows_quarantined` holds for every row.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime

import duckdb

from fabric.errors import SourceError
from fabric.ingest.load import LoadResult, record_load


class LoadRefused(SourceError):
    """A load refused before anything was committed; its `failed` row is in meta.loads."""


def refuse(
    con: duckdb.DuckDBPyConnection,
    source: str,
    entity: str,
    days: Sequence[date],
    source_path: str,
    reason: str,
    run_id: str,
    started_at: datetime,
) -> LoadRefused:
    """Record a `failed` load for each of `days`; return the error to raise.

    Call it outside any transaction: the record must survive the failure it describes.
    """
    for day in days:
        record_load(
            con,
            LoadResult(str(uuid.uuid4()), source, entity, day, source_path, 0, 0, 0, "failed", reason),
            run_id,
            started_at,
        )
    return LoadRefused(reason)
