"""The real database servers of this machine, for tests: a throwaway database per test session.

`postgres_database` and `mysql_database` (session fixtures; import them into a test module)
create a database with a unique name on the local PostgreSQL or MariaDB/MySQL server (loopback)
and drop it when the session ends. Where the servers are: FABRIC_TEST_PG_HOST / _PORT / _USER
(default 127.0.0.1, 5432, postgres) and FABRIC_TEST_MYSQL_HOST / _PORT / _USER (127.0.0.1,
3306, root); both trust the loopback user, as the servers of the development machines do.

`redis_server`, `rabbitmq_server` and `nats_server` (session fixtures) check that Redis, RabbitMQ
(guest/guest) and NATS with JetStream answer on loopback (FABRIC_TEST_REDIS_/RABBITMQ_/NATS_HOST
and _PORT; defaults 6379, 5672, 4222) and return where they are (`Endpoint`).
`private_nats_server` starts a NATS server of its own (the machine's `nats-server` binary, or
FABRIC_TEST_NATS_SERVER) with JetStream and the given options, e.g. authentication, which the
shared server does not require.

A server that does not answer skips its tests with the reason, except when CI=true: CI starts
the servers (.ci/run), so there a missing server fails the tests instead of hiding them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CONNECT_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class Server:
    engine: str  # 'postgres' | 'mysql', the Fabric source kind
    host: str
    port: int
    user: str

    @classmethod
    def from_environment(cls, engine: str) -> Server:
        prefix, port, user = {
            "postgres": ("FABRIC_TEST_PG", 5432, "postgres"),
            "mysql": ("FABRIC_TEST_MYSQL", 3306, "root"),
        }[engine]
        return cls(
            engine,
            os.environ.get(f"{prefix}_HOST", "127.0.0.1"),
            int(os.environ.get(f"{prefix}_PORT", port)),
            os.environ.get(f"{prefix}_USER", user),
        )

    def connect(self, database: str | None = None) -> Any:
        """A DB-API connection in autocommit mode."""
        if self.engine == "postgres":
            import psycopg

            return psycopg.connect(
                host=self.host, port=self.port, user=self.user, dbname=database or "postgres",
                autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS,
            )  # fmt: skip
        import pymysql

        return pymysql.connect(
            host=self.host, port=self.port, user=self.user, database=database,
            autocommit=True, charset="utf8mb4", connect_timeout=CONNECT_TIMEOUT_SECONDS,
        )  # fmt: skip


def require(server: Server) -> Any:
    """A connection to `server`; skips (or, with CI=true, fails) the test when it is down."""
    try:
        return server.connect()
    except Exception as exc:  # the drivers raise their own types; all mean "not reachable"
        reason = (
            f"{server.engine} server not reachable at {server.host}:{server.port} as "
            f"{server.user} ({type(exc).__name__}: {exc})".replace("\n", " ")
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true needs it (.ci/run starts it)", pytrace=False)
        pytest.skip(f"{reason}; start it to run these tests")


@dataclass(frozen=True)
class Database:
    """A throwaway database: run SQL in it, and describe it as a Fabric source."""

    server: Server
    name: str
    connection: Any

    @property
    def engine(self) -> str:
        return self.server.engine

    def execute(self, sql: str, rows: Sequence[Sequence[Any]] | None = None) -> None:
        """Run `sql` once, or once per row of parameters (placeholders: %s)."""
        with self.connection.cursor() as cursor:
            if rows is None:
                cursor.execute(sql)
            else:
                cursor.executemany(sql, rows)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())

    def source(self, entities: dict[str, Any], **settings: Any) -> dict[str, Any]:
        """A `sources.<name>` block of fabric.yaml reading this database (`settings` override
        the connection; None removes one)."""
        connection = {
            "host": self.server.host,
            "port": self.server.port,
            "user": self.server.user,
            "database": self.name,
        }
        merged = {k: v for k, v in {**connection, **settings}.items() if v is not None}
        return {"kind": self.engine, **merged, "entities": entities}


def _database(engine: str) -> Iterator[Database]:
    server = Server.from_environment(engine)
    admin = require(server)
    name = f"fabric_test_{uuid.uuid4().hex[:12]}"
    charset = " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" if engine == "mysql" else ""
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}{charset}")
    connection = server.connect(name)
    try:
        yield Database(server, name, connection)
    finally:
        connection.close()
        with admin.cursor() as cursor:
            force = " WITH (FORCE)" if engine == "postgres" else ""
            cursor.execute(f"DROP DATABASE IF EXISTS {name}{force}")
        admin.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[Database]:
    """A throwaway database on the local PostgreSQL server."""
    yield from _database("postgres")


@pytest.fixture(scope="session")
def mysql_database() -> Iterator[Database]:
    """A throwaway database on the local MariaDB/MySQL server."""
    yield from _database("mysql")


@dataclass(frozen=True)
class Endpoint:
    """A message server on loopback (Redis, RabbitMQ, NATS) that answered its protocol's hello."""

    name: str
    host: str
    port: int


def _unreachable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true needs it (.ci/run starts it)", pytrace=False)
    pytest.skip(f"{reason}; start it to run these tests")


def _endpoint(name: str, variable: str, port: int, hello: bytes, expect: bytes) -> Endpoint:
    """Connect to FABRIC_TEST_<variable>_HOST/_PORT, send `hello`, expect a reply starting with
    `expect` (so a port held by something else does not count as the server)."""
    host = os.environ.get(f"FABRIC_TEST_{variable}_HOST", "127.0.0.1")
    port = int(os.environ.get(f"FABRIC_TEST_{variable}_PORT", port))
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_SECONDS) as sock:
            sock.settimeout(CONNECT_TIMEOUT_SECONDS)
            if hello:
                sock.sendall(hello)
            reply = sock.recv(64)
    except OSError as exc:
        _unreachable(f"{name} not reachable at {host}:{port} ({type(exc).__name__}: {exc})")
    if not reply.startswith(expect):
        _unreachable(f"{name} expected at {host}:{port}, but the reply was {reply[:20]!r}")
    return Endpoint(name, host, port)


@pytest.fixture(scope="session")
def redis_server() -> Endpoint:
    """The local Redis server (FABRIC_TEST_REDIS_HOST/_PORT, default 127.0.0.1:6379)."""
    return _endpoint("Redis", "REDIS", 6379, b"PING\r\n", b"+PONG")


@pytest.fixture(scope="session")
def rabbitmq_server() -> Endpoint:
    """The local RabbitMQ server, guest/guest (FABRIC_TEST_RABBITMQ_HOST/_PORT, default :5672)."""
    # An AMQP 0-9-1 server answers the protocol header with Connection.Start (a method frame).
    return _endpoint("RabbitMQ", "RABBITMQ", 5672, b"AMQP\x00\x00\x09\x01", b"\x01\x00\x00")


@pytest.fixture(scope="session")
def nats_server() -> Endpoint:
    """The local NATS server with JetStream (FABRIC_TEST_NATS_HOST/_PORT, default :4222)."""
    return _endpoint("NATS", "NATS", 4222, b"", b"INFO ")


@contextmanager
def private_nats_server(directory: Path, *options: str) -> Iterator[Endpoint]:
    """A NATS server with JetStream (store under `directory`) on a free loopback port, started
    with `options` (e.g. `--auth <token>`) and stopped on exit."""
    binary = os.environ.get("FABRIC_TEST_NATS_SERVER") or shutil.which("nats-server")
    binary = binary or "/usr/sbin/nats-server"  # Debian's package; /usr/sbin is not on every PATH
    if not Path(binary).is_file():
        _unreachable(f"no nats-server binary at {binary}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    command = [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(directory), *options]
    with (directory / "nats-server.log").open("wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    if sock.recv(5) == b"INFO ":
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log_text = (directory / "nats-server.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"nats-server did not start: {log_text}", pytrace=False)
            time.sleep(0.1)
        yield Endpoint("NATS (private)", "127.0.0.1", port)
    finally:
        server.terminate()
        server.wait(timeout=10)
