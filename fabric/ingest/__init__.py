"""Ingest: source entities -> typed `raw.<source>__<entity>` + `quarantine.<source>__<entity>`.

One module per source format (`sqlite`, `fixed_width`, `csv`, `jsonl`) stages a window of
records as text; `casting` types them and finds the rows to quarantine; `load` commits each
partition day atomically with its `meta.loads` row. `copybook` (mainframe files) stages records
already typed by `fabric.copybook`. `sql_database` reads PostgreSQL and MySQL/MariaDB tables
typed, through DuckDB's scanners, in `snapshot`, `partitioned` or `merge` mode (`merge`,
`cursors`). See docs/architecture.md for the contract.
"""

from fabric.ingest.entity import ingest_entity
from fabric.ingest.load import METADATA_COLUMNS, QUARANTINE_COLUMNS, LoadResult

__all__ = ["METADATA_COLUMNS", "QUARANTINE_COLUMNS", "LoadResult", "ingest_entity"]
