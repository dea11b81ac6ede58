"""DuckDB extensions from the PyPI wheels `duckdb-extension-<name>`, loaded without a network.

DuckDB downloads extensions from its own repository by default, which production machines (and
this project's CI) cannot reach. The wheels, pinned with duckdb in pyproject.toml, carry the
binaries. `LOAD '<path>'` accepts a file only under the extension's internal name
(`sqlite_scanner`, `postgres_scanner`, `mysql_scanner`), so each shipped file is linked under
that name in a private temporary folder, once per process.
"""

from __future__ import annotations

import atexit
import functools
import importlib.resources
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import duckdb

from fabric.errors import SourceError
from fabric.identifiers import literal, quote

Extension = Literal["sqlite", "postgres", "mysql"]


@functools.cache
def _folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fabric-duckdb-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.cache
def extension_file(name: Extension) -> Path:
    """The packaged extension `name`, linked under the file name DuckDB expects."""
    package = importlib.resources.files(f"duckdb_extension_{name}")
    shipped = Path(str(package / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"))
    if not shipped.is_file():
        raise SourceError(
            f"{shipped}: the {name} extension for duckdb {duckdb.__version__} is missing; "
            f"install the duckdb-extension-{name} version that matches duckdb"
        )
    link = _folder() / f"{name}_scanner.duckdb_extension"
    os.symlink(shipped, link)
    return link


def load_extension(con: duckdb.DuckDBPyConnection, name: Extension) -> None:
    """Load extension `name` into `con` from its wheel."""
    con.execute(f"LOAD {literal(str(extension_file(name)))}")


def attach_server(
    con: duckdb.DuckDBPyConnection,
    engine: Literal["postgres", "mysql"],
    alias: str,
    path: str,
    settings: dict[str, str] | None,
    port: int = 0,
    read_only: bool = False,
) -> None:
    """Attach a server database to `con` (its extension loaded) as `alias`.

    `path` is what ATTACH reads: a connection string, or libpq options. With `settings` (HOST,
    USER, DATABASE, PASSWORD; empty ones left out) and `port`, the credentials go through a
    temporary secret, so that no statement's text holds the password."""
    options = [f"TYPE {engine}", *(["READ_ONLY"] if read_only else [])]
    if settings is not None:
        secret = quote(f"{alias}_secret")
        fields = ", ".join(f"{k} {literal(v)}" for k, v in settings.items() if v)
        con.execute(
            f"CREATE OR REPLACE TEMPORARY SECRET {secret} (TYPE {engine}, {fields}, PORT {int(port)})"
        )
        options.append(f"SECRET {secret}")
    con.execute(f"ATTACH {literal(path)} AS {alias} ({', '.join(options)})")
