"""The publish targets, one module per kind of business system; `open_target` builds one from
its `fabric.yaml` declaration (secrets from the environment)."""

from __future__ import annotations

import os

from fabric.config import (
    CsvDropPublisher,
    FabricConfig,
    MysqlPublisher,
    NatsPublisher,
    PostgresPublisher,
    Publisher,
    RabbitmqPublisher,
    RedisStreamPublisher,
    SqlitePublisher,
    WebhookPublisher,
)
from fabric.errors import ConfigError
from fabric.publish.cloudevents import event_source
from fabric.publish.targets.base import Target, TransientError

__all__ = ["Target", "TransientError", "build_target", "sends_cloudevents"]


def sends_cloudevents(declared: Publisher) -> bool:
    """Whether the publisher's target sends CloudEvents, so reads each record's payload as JSON
    text (`payload`); the others take the typed payload fields."""
    return isinstance(declared, RabbitmqPublisher | NatsPublisher | RedisStreamPublisher | WebhookPublisher)


def _secret(where: str, variable: str | None) -> str | None:
    if variable is None:
        return None
    value = os.environ.get(variable)
    if value is None:
        raise ConfigError(f"{where}: environment variable {variable} is not set")
    return value


def build_target(config: FabricConfig, name: str) -> Target:
    """The target of publisher `name` (not connected yet: connections open on first send)."""
    declared = config.publishers.get(name)
    if declared is None:
        known = ", ".join(config.publishers) or "none"
        raise ConfigError(f"fabric.yaml: publishers.{name} is not defined (publishers: {known})")
    where = f"publishers.{name}"
    source = event_source(config.project, name)
    if isinstance(declared, SqlitePublisher):
        from fabric.publish.targets.sqlite import SqliteTarget

        return SqliteTarget(config.resolve(declared.path), declared.table, declared.key)
    if isinstance(declared, PostgresPublisher | MysqlPublisher):
        from fabric.publish.targets.server import ServerTarget

        server = ServerTarget.from_config(name, declared)
        if isinstance(declared, PostgresPublisher):
            from fabric.publish.targets.postgres import PostgresTarget

            return PostgresTarget(server, declared.table, declared.key)
        from fabric.publish.targets.mysql import MysqlTarget

        if declared.dsn_env is not None:
            raise ConfigError(f"{where}.dsn_env: not supported for MySQL targets; use host/user/password_env")

        return MysqlTarget(server, declared.table, declared.key)
    if isinstance(declared, RabbitmqPublisher):
        from fabric.publish.targets.rabbitmq import RabbitmqTarget

        password = _secret(f"{where}.password_env", declared.password_env)
        return RabbitmqTarget(declared, "guest" if password is None else password, source)
    if isinstance(declared, NatsPublisher):
        from fabric.publish.targets.nats import NatsTarget

        return NatsTarget(declared, _secret(f"{where}.token_env", declared.token_env), source)
    if isinstance(declared, RedisStreamPublisher):
        from fabric.publish.targets.redis_stream import RedisStreamTarget

        return RedisStreamTarget(declared, _secret(f"{where}.password_env", declared.password_env), source)
    if isinstance(declared, WebhookPublisher):
        from fabric.publish.targets.webhook import WebhookTarget

        secret = _secret(f"{where}.secret_env", declared.secret_env)
        assert secret is not None  # secret_env is required
        return WebhookTarget(declared, secret, source)
    assert isinstance(declared, CsvDropPublisher)
    from fabric.publish.targets.files import FileDropTarget

    return FileDropTarget(
        config.resolve(declared.directory), "csv" if declared.kind == "csv_drop" else "parquet"
    )
