"""Ingest assets: one daily-partitioned asset per declared source entity, `raw/<source>__<entity>`."""

from collections.abc import Iterator

import dagster as dg

from assets.metadata import table_preview
from assets.partitions import WAREHOUSE_POOL, run_window
from fabric.config import FabricConfig
from fabric.ingest import LoadResult, ingest_entity
from fabric.meta import RunRecord, record_run
from fabric.warehouse import Warehouse

# A load that quarantines more than this share of its rows is flagged (warning, not blocking):
# bad rows are kept and traceable, but a jump usually means the source changed its format.
QUARANTINE_WARN_SHARE = 0.02


def ingest_assets(
    config: FabricConfig, partitions_def: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    """An asset per source entity in `fabric.yaml`, in declaration order."""
    return [
        _ingest_asset(config, partitions_def, source, entity)
        for source, entity in config.source_entities()
    ]


def _ingest_asset(
    config: FabricConfig, partitions_def: dg.PartitionsDefinition, source: str, entity: str
) -> dg.AssetsDefinition:
    table = f"{source}__{entity}"
    key = dg.AssetKey(["raw", table])
    kind = config.sources[source].kind

    @dg.asset(
        key=key,
        group_name="raw",
        description=(
            f"Rows of `{source}.{entity}` ({kind}) for each business day, typed, with load "
            f"metadata. Rows that do not parse go to `quarantine.{table}` with a reason."
        ),
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        kinds={"duckdb", kind},
        owners=["team:data-engineering"],
        tags={"layer": "raw", "source": source},
        check_specs=[
            dg.AssetCheckSpec(
                "rows_accounted_for",
                asset=key,
                description="rows read = rows loaded + rows quarantined, against the tables",
            ),
            dg.AssetCheckSpec(
                "quarantine_rate",
                asset=key,
                description=f"at most {QUARANTINE_WARN_SHARE:.0%} of rows quarantined per day",
            ),
        ],
    )
    def _ingest(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        window = run_window(context)
        warehouse = Warehouse(config.resolve(config.warehouse.path))
        results = ingest_entity(config, source, entity, window, context.run.run_id, warehouse)
        for result in results:
            if result.status == "missing" or result.rows_quarantined:
                context.log.warning(result.message)
        record = RunRecord(context.run.run_id, f"ingest {source}.{entity}", window.start, window.end)
        record.inputs = sorted({r.source_path for r in results})
        record.output(f"raw.{table}", sum(r.rows_loaded for r in results), window.days())
        record.output(f"quarantine.{table}", sum(r.rows_quarantined for r in results), window.days())
        with warehouse.connect() as con:
            record_run(con, record)
        yield dg.MaterializeResult(
            metadata=_load_metadata(config, warehouse, f"raw.{table}", results),
            check_results=[
                _accounted_for(warehouse, table, results),
                _quarantine_rate(results),
            ],
        )

    return _ingest


def _load_metadata(
    config: FabricConfig, warehouse: Warehouse, table: str, results: list[LoadResult]
) -> dict[str, dg.MetadataValue]:
    read = sum(r.rows_read for r in results)
    loaded = sum(r.rows_loaded for r in results)
    quarantined = sum(r.rows_quarantined for r in results)
    missing = [r.partition.isoformat() for r in results if r.status == "missing"]
    per_day = "\n".join(
        ["| partition | read | loaded | quarantined | status |", "|---|---|---|---|---|"]
        + [
            f"| {r.partition} | {r.rows_read} | {r.rows_loaded} | {r.rows_quarantined} | {r.status} |"
            for r in results
        ]
    )
    return {
        "rows_read": dg.MetadataValue.int(read),
        "rows_loaded": dg.MetadataValue.int(loaded),
        "rows_quarantined": dg.MetadataValue.int(quarantined),
        "missing_files": dg.MetadataValue.json(missing),
        "loads": dg.MetadataValue.md(per_day),
        "table": dg.MetadataValue.text(table),
        "preview": dg.MetadataValue.md(
            table_preview(config, warehouse, table, [r.partition for r in results])
        ),
    }


def _accounted_for(
    warehouse: Warehouse, table: str, results: list[LoadResult]
) -> dg.AssetCheckResult:
    """Recount the committed rows per partition and compare with what the loads reported."""
    days = [r.partition for r in results]
    with warehouse.connect(read_only=True) as con:
        counts: dict[str, dict[str, int]] = {}
        for schema in ("raw", "quarantine"):
            exists = con.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = ? AND table_name = ?",
                [schema, table],
            ).fetchone()
            rows = (
                con.execute(
                    f'SELECT _fabric_partition::VARCHAR, count(*) FROM "{schema}"."{table}" '
                    "WHERE _fabric_partition IN (SELECT unnest(?::DATE[])) GROUP BY 1",
                    [days],
                ).fetchall()
                if exists and exists[0]
                else []
            )
            counts[schema] = {day: int(n) for day, n in rows}
    mismatches = []
    for r in results:
        day = r.partition.isoformat()
        loaded, quarantined = counts["raw"].get(day, 0), counts["quarantine"].get(day, 0)
        if (loaded, quarantined) != (r.rows_loaded, r.rows_quarantined) or (
            r.rows_read != loaded + quarantined
        ):
            mismatches.append(
                f"{day}: read {r.rows_read}, tables hold {loaded} loaded + {quarantined} quarantined"
            )
    return dg.AssetCheckResult(
        check_name="rows_accounted_for",
        passed=not mismatches,
        metadata={"mismatches": dg.MetadataValue.json(mismatches), "partitions": len(days)},
    )


def _quarantine_rate(results: list[LoadResult]) -> dg.AssetCheckResult:
    over = {
        r.partition.isoformat(): round(r.rows_quarantined / r.rows_read, 4)
        for r in results
        if r.rows_read and r.rows_quarantined / r.rows_read > QUARANTINE_WARN_SHARE
    }
    return dg.AssetCheckResult(
        check_name="quarantine_rate",
        passed=not over,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"days_over_threshold": dg.MetadataValue.json(over)},
    )
