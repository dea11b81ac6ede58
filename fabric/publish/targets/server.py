"""Connection settings of a database-server target; the password only from the environment.

Every message that may quote a connection string goes through `redact`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from fabric.config import MysqlPublisher, PostgresPublisher
from fabric.errors import ConfigError, redact

_DEFAULT_PORT = {"postgres": 5432, "mysql": 3306}


@dataclass(frozen=True)
class ServerTarget:
    engine: Literal["postgres", "mysql"]
    host: str
    port: int
    database: str
    user: str = field(repr=False)
    password: str = field(repr=False)
    dsn: str = field(repr=False)

    @classmethod
    def from_config(cls, name: str, declared: PostgresPublisher | MysqlPublisher) -> ServerTarget:
        where = f"publishers.{name}"
        engine: Literal["postgres", "mysql"] = declared.kind
        if declared.dsn_env is not None:
            dsn = os.environ.get(declared.dsn_env)
            if not dsn:
                raise ConfigError(f"{where}.dsn_env: environment variable {declared.dsn_env} is not set")
            return cls(engine, "(dsn)", 0, "(dsn)", "", "", dsn)
        password = ""
        if declared.password_env is not None:
            found = os.environ.get(declared.password_env)
            if found is None:
                raise ConfigError(
                    f"{where}.password_env: environment variable {declared.password_env} is not set"
                )
            password = found
        port = declared.port or _DEFAULT_PORT[engine]
        return cls(engine, declared.host, port, str(declared.database), str(declared.user), password, "")

    @property
    def label(self) -> str:
        if self.dsn:
            return f"{self.engine} (dsn_env)"
        return f"{self.engine}://{self.host}:{self.port}/{self.database}"

    def redact(self, text: str) -> str:
        return redact(text, (self.dsn, self.password))
