"""Publishing scores back to business systems, and the analytics snapshot for analysts.

Each publisher in `fabric.yaml` is an asset in group `publish`; the business system it writes is
an external asset downstream of it, so the UI's lineage ends where people work.
"""

import dagster as dg

from assets.lineage import emit_step_start
from assets.partitions import WAREHOUSE_POOL, run_window
from fabric.analytics import refresh_snapshot
from fabric.config import (
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
from fabric.meta import RunRecord, record_run
from fabric.publish import publish
from fabric.quality import require_open
from fabric.warehouse import Warehouse

SCORES = dg.AssetKey(["scores", "churn_scores"])


def publish_assets(
    config: FabricConfig, partitions_def: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition | dg.AssetSpec]:
    """A publish asset per configured publisher plus the external asset it feeds."""
    built: list[dg.AssetsDefinition | dg.AssetSpec] = []
    for name, publisher in config.publishers.items():
        built.append(_publish_asset(config, partitions_def, name, publisher))
        built.append(_business_system(name, publisher))
    return built


def _describe(publisher: Publisher) -> tuple[str, str, list[str]]:
    """(kind, where the records land, the external asset key's tail) of a publisher."""
    if isinstance(publisher, SqlitePublisher):
        return "sqlite", f"the `{publisher.table}` table of {publisher.path.name}", [publisher.table]
    if isinstance(publisher, PostgresPublisher | MysqlPublisher):
        where = f"{publisher.host}/{publisher.database}" if publisher.dsn_env is None else "the server"
        return (
            publisher.kind,
            f"the `{publisher.table}` table on {where}",
            [publisher.table.replace(".", "__")],
        )
    if isinstance(publisher, RabbitmqPublisher):
        return (
            "rabbitmq",
            f"the RabbitMQ exchange `{publisher.exchange}`",
            [publisher.exchange.replace(".", "_")],
        )
    if isinstance(publisher, NatsPublisher):
        return "nats", f"the JetStream stream `{publisher.stream}` ({publisher.subject})", [publisher.stream]
    if isinstance(publisher, RedisStreamPublisher):
        return "redis", f"the Redis stream `{publisher.stream}`", []
    if isinstance(publisher, WebhookPublisher):
        return "webhook", f"the webhook {publisher.url}", []
    fmt = "csv" if publisher.kind == "csv_drop" else "parquet"
    return fmt, f"one {fmt} file per day (with a manifest) in {publisher.directory}", []


def _business_system(name: str, publisher: Publisher) -> dg.AssetSpec:
    kind, where, tail = _describe(publisher)
    return dg.AssetSpec(
        key=["business_systems", name, *tail],
        deps=[dg.AssetKey(["publish", name])],
        group_name="business_systems",
        description=f"Published churn scores in {where}.",
        kinds={kind},
    )


def _publish_asset(
    config: FabricConfig,
    partitions_def: dg.PartitionsDefinition,
    name: str,
    publisher: Publisher,
) -> dg.AssetsDefinition:
    tables = config.quality.governed_tables
    kind, where, _ = _describe(publisher)

    @dg.asset(
        key=["publish", name],
        group_name="publish",
        description=(
            f"Stages each open day's changed scores for {where} in `publish.outbox` and delivers "
            "them (at-least-once, deterministic message ids); per-record log in `publish.sync_log`."
        ),
        deps=[SCORES],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        kinds={kind},
        owners=["team:data-engineering"],
    )
    def _publish(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        emit_step_start(config, context)
        window = run_window(context)
        warehouse = Warehouse(config.resolve(config.warehouse.path))
        result = publish(
            config,
            warehouse,
            name,
            window,
            context.run.run_id,
            gate=lambda con, day: require_open(con, day, tables),
        )
        for day, reason in result.blocked.items():
            context.log.error(f"not published {day}: {reason}")
        if result.delivery.dead_lettered:
            context.log.warning(
                f"{result.delivery.dead_lettered} record(s) rejected by {name}: see publish.dead_letter "
                f"and `fabric publish replay {name}`"
            )
        return dg.MaterializeResult(metadata=result.metadata())

    return _publish


def analytics_asset(config: FabricConfig, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """`analytics/snapshot`: the read-only, PII-masked copy analysts query."""

    @dg.asset(
        key=["analytics", "snapshot"],
        group_name="analytics",
        description=(
            "Scores, integrated customers (PII masked) and features copied to "
            f"{config.warehouse.analytics_path} and swapped in atomically; open it read-only "
            "(`fabric sql`) while the next run writes the warehouse."
        ),
        deps=[dg.AssetKey(["publish", n]) for n in config.publishers]
        + [SCORES, dg.AssetKey(["integrated", "customers"])],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        kinds={"duckdb"},
        owners=["team:analytics"],
    )
    def _snapshot(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        emit_step_start(config, context)
        warehouse = Warehouse(config.resolve(config.warehouse.path))
        record = RunRecord(context.run.run_id, "analytics_snapshot")
        info = refresh_snapshot(config, warehouse)
        record.inputs = sorted(info.tables)
        for table, rows in info.tables.items():
            record.output(f"{info.path}:{table}", rows)
        with warehouse.connect() as con:
            record_run(con, record)
        return dg.MaterializeResult(metadata=info.metadata())

    return _snapshot
