"""Connections to PostgreSQL and MySQL/MariaDB servers, attached to DuckDB through its scanners.

Secrets come only from the environment variables that fabric.yaml names (`dsn_env`,
`password_env`) and go only to DuckDB: a password given with `password_env` travels in a
temporary DuckDB secret, not in the connection string. DuckDB's own error messages quote the
connection string they were given (`Unable to connect to Postgres at "host=... password=..."`),
so every message that may come from a server connection goes through `Server.redact`, and the
label written to the warehouse (`_fabric_source`, `meta.loads.source_path`) names the engine,
host, port and database only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

import duckdb

from fabric.config import MysqlSource, PostgresSource
from fabric.errors import REDACTED, ConfigError, SourceError, redact
from fabric.extensions import attach_server, load_extension

Engine = Literal["postgres", "mysql"]
ALIAS = "fabric_source_db"
"""The name the source database is attached under in the ingest's DuckDB connection."""

_DEFAULT_PORT = {"postgres": 5432, "mysql": 3306}
_KEY_VALUE = re.compile(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)")
_PASSWORD_SETTING = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_URI_CREDENTIALS = re.compile(r"(\w+://[^:/@\s\"']*:)[^@\s\"']*@")


def _dsn_fields(dsn: str) -> dict[str, str]:
    """The settings of a connection string, `key=value ...` or a URI (`postgresql://u:p@h:1/db`)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        found = {
            "host": parts.hostname or "",
            "port": str(parts.port or ""),
            "database": unquote(parts.path.lstrip("/")),
            "password": unquote(parts.password or ""),
        }
        for pair in parts.query.split("&"):
            key, _, value = pair.partition("=")
            found[key] = unquote(value)
        return {k: v for k, v in found.items() if v}
    fields = {}
    for key, value in _KEY_VALUE.findall(dsn):
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        fields[key.lower()] = value
    if "dbname" in fields:
        fields.setdefault("database", fields["dbname"])
    fields.setdefault("database", fields.get("db", ""))
    return {k: v for k, v in fields.items() if v}


@dataclass(frozen=True)
class Server:
    """How to reach one source's server; `redact` cleans any text that may quote a secret."""

    engine: Engine
    name: str  # the source's name in fabric.yaml
    host: str
    port: int
    database: str
    _dsn: str = field(repr=False)  # handed to ATTACH; may hold the password
    _user: str = field(repr=False)
    _password: str = field(repr=False)

    @classmethod
    def from_config(cls, name: str, declared: PostgresSource | MysqlSource) -> Server:
        """Read the connection settings, taking secrets from the environment."""
        engine: Engine = declared.kind
        where = f"sources.{name}"
        if declared.dsn_env is not None:
            dsn = os.environ.get(declared.dsn_env)
            if not dsn:
                raise ConfigError(
                    f"{where}.dsn_env: environment variable {declared.dsn_env} is not set "
                    "(it should hold the connection string)"
                )
            fields = _dsn_fields(dsn)
            return cls(
                engine,
                name,
                fields.get("host", "localhost"),
                int(fields.get("port") or _DEFAULT_PORT[engine]),
                fields.get("database", ""),
                dsn,
                "",
                fields.get("password", ""),
            )
        password = ""
        if declared.password_env is not None:
            found = os.environ.get(declared.password_env)
            if found is None:
                raise ConfigError(
                    f"{where}.password_env: environment variable {declared.password_env} is not set"
                )
            password = found
        return cls(
            engine,
            name,
            declared.host,
            declared.port or _DEFAULT_PORT[engine],
            str(declared.database),
            "",
            str(declared.user),
            password,
        )

    @property
    def label(self) -> str:
        """The server without credentials: `postgres://host:port/database`."""
        return f"{self.engine}://{self.host}:{self.port}/{self.database}"

    @property
    def default_schema(self) -> str:
        """Where an unqualified table is: `public`, or (MySQL) the database."""
        return "public" if self.engine == "postgres" else self.database

    def redact(self, text: str) -> str:
        """`text` without the connection string, the password or anything shaped like one."""
        text = redact(text, (self._dsn, self._password))
        text = _PASSWORD_SETTING.sub(rf"\g<1>{REDACTED}", text)
        return _URI_CREDENTIALS.sub(rf"\g<1>{REDACTED}@", text)

    @contextmanager
    def reading(self, what: str) -> Iterator[None]:
        """Turn a DuckDB error raised while `what` into a SourceError naming the server, redacted."""
        try:
            yield
        except (duckdb.ParserException, duckdb.InternalException):
            raise  # Fabric's own SQL, not the source: a bug to see as it is
        except duckdb.Error as exc:
            raise SourceError(f"{self.label}: {what} failed: {self.redact(str(exc))}") from None

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        """Load the engine's scanner into `con` and attach the database read-only as `ALIAS`."""
        load_extension(con, self.engine)
        if self.engine == "mysql":
            # TIMESTAMP columns in UTC, like every timestamp in the warehouse. tinyint(1) as the
            # number it holds: as BOOLEAN the scanner would read 7 as true; declared boolean,
            # 0 and 1 load and anything else is quarantined. The scanner's aggregate pushdown
            # fails to bind some plans (duckdb 1.5.5); Fabric never aggregates in the server.
            con.execute("SET mysql_session_time_zone = '+00:00'")
            con.execute("SET mysql_tinyint1_as_boolean = false")
            con.execute("SET mysql_aggregate_pushdown_enabled = false")
        settings = {
            "HOST": self.host, "USER": self._user, "DATABASE": self.database, "PASSWORD": self._password,
        }  # fmt: skip
        with self.reading("connecting"):
            attach_server(
                con, self.engine, ALIAS, self._dsn, None if self._dsn else settings, self.port, read_only=True
            )
