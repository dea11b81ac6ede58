"""OpenLineage dataset names for everything Fabric reads and writes.

The OpenLineage naming spec (https://openlineage.io/docs/spec/naming) gives a dataset a
`namespace` (the data source, `scheme://authority`) and a `name` (the path inside it):

| data store | namespace | name |
| --- | --- | --- |
| PostgreSQL | `postgres://{host}:{port}` | `{database}.{schema}.{table}` |
| MySQL / MariaDB | `mysql://{host}:{port}` | `{database}.{table}` |
| local file | `file` | `{absolute path}` |
| DuckDB file (not in the spec) | `duckdb://{absolute path of the file}` | `{catalog}.{schema}.{table}` |
| SQLite file (not in the spec) | `sqlite://{absolute path of the file}` | `{table}` |
| RabbitMQ / NATS / Redis | `rabbitmq|nats|redis://{host}:{port}` | exchange / subject / stream |
| webhook | `{scheme}://{host}:{port}` | `{path}` |

The spec has no entry for embedded database files; Fabric follows its database pattern with the
file as the authority, so one warehouse file is one namespace and its catalog name (DuckDB's
name for the attached file, its stem) starts each table name, like a server's database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fabric.config import FabricConfig

FILE_NAMESPACE = "file"
_SERVER_LABEL = re.compile(r"^(postgres|mysql)://([^/:]+):(\d+)/([^#]*)#(.+)$")
_SQLITE_LABEL = re.compile(r"^sqlite:(.+)#(.+)$")
_DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306, "rabbitmq": 5672, "nats": 4222, "redis_stream": 6379}


@dataclass(frozen=True, order=True)
class DatasetName:
    namespace: str
    name: str


def duckdb_table(path: Path, table: str) -> DatasetName:
    """A `schema.table` of the DuckDB file at `path`."""
    resolved = path.resolve()
    return DatasetName(f"duckdb://{resolved}", f"{resolved.stem}.{table}")


def warehouse_table(config: FabricConfig, table: str) -> DatasetName:
    """A `schema.table` of the warehouse."""
    return duckdb_table(config.resolve(config.warehouse.path), table)


def file_dataset(path: Path | str) -> DatasetName:
    return DatasetName(FILE_NAMESPACE, str(Path(path).resolve()))


def source_label_dataset(label: str) -> DatasetName:
    """The dataset of a raw row's `_fabric_source` / `meta.loads.source_path` label.

    Labels are a file path, `sqlite:<path>#<table>`, or `postgres://host:port/db#schema.table`
    (`mysql://host:port/db#db.table`), never with credentials (see `fabric.ingest`).
    """
    server = _SERVER_LABEL.match(label)
    if server:
        engine, host, port, database, table = server.groups()
        if engine == "postgres":
            schema_table = table if "." in table else f"public.{table}"
            return DatasetName(f"postgres://{host}:{port}", f"{database}.{schema_table}")
        return DatasetName(f"mysql://{host}:{port}", table if "." in table else f"{database}.{table}")
    sqlite = _SQLITE_LABEL.match(label)
    if sqlite:
        path, table = sqlite.groups()
        return DatasetName(f"sqlite://{Path(path).resolve()}", table)
    return file_dataset(label)


def publisher_dataset(config: FabricConfig, name: str) -> DatasetName:
    """Where publisher `name` delivers: a table, a broker exchange/subject/stream, a URL, a folder."""
    publisher: Any = config.publishers[name]
    kind = str(publisher.kind)
    host = getattr(publisher, "host", "127.0.0.1")
    port = getattr(publisher, "port", None) or _DEFAULT_PORTS.get(kind)
    if kind == "sqlite":
        return DatasetName(f"sqlite://{config.resolve(publisher.path)}", str(publisher.table))
    if kind == "postgres":
        table = publisher.table if "." in publisher.table else f"public.{publisher.table}"
        return DatasetName(f"postgres://{host}:{port}", f"{publisher.database or ''}.{table}")
    if kind == "mysql":
        table = publisher.table if "." in publisher.table else f"{publisher.database or ''}.{publisher.table}"
        return DatasetName(f"mysql://{host}:{port}", table)
    if kind == "rabbitmq":
        return DatasetName(f"rabbitmq://{host}:{port}", str(publisher.exchange))
    if kind == "nats":
        server = urlsplit(str(publisher.servers[0]))
        return DatasetName(f"nats://{server.hostname}:{server.port or 4222}", str(publisher.subject))
    if kind == "redis_stream":
        return DatasetName(f"redis://{host}:{port}", str(publisher.stream))
    if kind == "webhook":
        url = urlsplit(str(publisher.url))
        return DatasetName(f"{url.scheme}://{url.netloc}", url.path or "/")
    if hasattr(publisher, "directory"):
        return file_dataset(config.resolve(Path(publisher.directory)))
    return DatasetName(f"fabric://{config.project}", f"publishers.{name}")
