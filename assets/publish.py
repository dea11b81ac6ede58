"""Publishing scores back to business systems, and the analytics snapshot for analysts.

Each publisher in `fabric.yaml` is an asset in group `publish`; the business system it writes is
an external asset downstream of it, so the UI's lineage ends where people work.
"""

import dagster as dg

from assets.partitions import WAREHOUSE_POOL, run_window
from fabric.analytics import refresh_snapshot
from fabric.config import CsvDropPublisher, FabricConfig, SqlitePublisher
from fabric.meta import RunRecord, record_run
from fabric.publish import publish_crm, publish_files
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


def _business_system(name: str, publisher: SqlitePublisher | CsvDropPublisher) -> dg.AssetSpec:
    if isinstance(publisher, SqlitePublisher):
        return dg.AssetSpec(
            key=["business_systems", name, publisher.table],
            deps=[dg.AssetKey(["publish", name])],
            group_name="business_systems",
            description=f"`{publisher.table}` in the {name} database ({publisher.path.name}).",
            kinds={"sqlite"},
        )
    return dg.AssetSpec(
        key=["business_systems", name],
        deps=[dg.AssetKey(["publish", name])],
        group_name="business_systems",
        description=f"CSV files dropped in {publisher.directory} for downstream systems.",
        kinds={"csv"},
    )


def _publish_asset(
    config: FabricConfig,
    partitions_def: dg.PartitionsDefinition,
    name: str,
    publisher: SqlitePublisher | CsvDropPublisher,
) -> dg.AssetsDefinition:
    tables = config.quality.governed_tables
    target = (
        f"the `{publisher.table}` table of {publisher.path.name} (upsert by {publisher.key})"
        if isinstance(publisher, SqlitePublisher)
        else f"one CSV file per day in {publisher.directory}"
    )

    @dg.asset(
        key=["publish", name],
        group_name="publish",
        description=f"Writes each open day's scores to {target}; logged in `publish.sync_log`.",
        deps=[SCORES],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        kinds={"sqlite" if isinstance(publisher, SqlitePublisher) else "csv"},
        owners=["team:data-engineering"],
    )
    def _publish(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        window = run_window(context)
        warehouse = Warehouse(config.resolve(config.warehouse.path))
        publish = publish_crm if isinstance(publisher, SqlitePublisher) else publish_files
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
        return dg.MaterializeResult(metadata=result.metadata())

    return _publish


def analytics_asset(
    config: FabricConfig, partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
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
