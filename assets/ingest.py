"""Ingest assets: one daily-partitioned asset per declared source entity, `raw/<source>__<entity>`."""

from collections.abc import Iterator

import dagster as dg

from assets.lineage import emit_step_start
from assets.metadata import table_preview
from assets.partitions import WAREHOUSE_POOL, run_window
from fabric.config import FabricConfig
from fabric.identifiers import qualified
from fabric.ingest import LoadResult, ingest_entity
from fabric.ingest import contract as contracts
from fabric.meta import RunRecord, record_run
from fabric.warehouse import Warehouse, table_exists

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
    merge = getattr(config.sources[source].entities[entity], "mode", None) == "merge"

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
            dg.AssetCheckSpec(
                "schema_contract",
                asset=key,
                description=(
                    "the source (files or table) has the contract's columns and types (no column "
                    "added, removed or retyped) and the primary key names one row; drift is handled by the "
                    "source's contract policy (a frozen contract fails the load instead)"
                ),
            ),
        ],
    )
    def _ingest(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        emit_step_start(config, context)
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
        contract_check, contract_metadata = _schema_contract(
            config, warehouse, source, entity, context.run.run_id, results
        )
        yield dg.MaterializeResult(
            metadata={
                **_load_metadata(config, warehouse, f"raw.{table}", results),
                **contract_metadata,
            },
            check_results=[
                _accounted_for(warehouse, table, results, merge),
                _quarantine_rate(results),
                contract_check,
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
    warehouse: Warehouse, table: str, results: list[LoadResult], merge: bool
) -> dg.AssetCheckResult:
    """Recount the committed rows of each load (by load id) and compare with what it reported.

    A `merge` entity keeps current state by key, so a later day's load may replace rows of an
    earlier one in the same window; there only the window's last load is recounted.
    """
    checked = results[-1:] if merge else results
    load_ids = [r.load_id for r in checked]
    with warehouse.connect(read_only=True) as con:
        counts: dict[str, dict[str, int]] = {}
        for schema in ("raw", "quarantine"):
            rows = (
                con.execute(
                    f"SELECT _fabric_load_id, count(*) FROM {qualified(schema, table)} "
                    "WHERE _fabric_load_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY 1",
                    [load_ids],
                ).fetchall()
                if table_exists(con, f"{schema}.{table}")
                else []
            )
            counts[schema] = {str(load_id): int(n) for load_id, n in rows}
    mismatches = []
    for r in checked:
        loaded, quarantined = counts["raw"].get(r.load_id, 0), counts["quarantine"].get(r.load_id, 0)
        if (loaded, quarantined) != (r.rows_loaded, r.rows_quarantined) or (
            r.rows_read != loaded + quarantined
        ):
            mismatches.append(
                f"{r.partition}: read {r.rows_read}, tables hold {loaded} loaded + {quarantined} quarantined"
            )
    return dg.AssetCheckResult(
        check_name="rows_accounted_for",
        passed=not mismatches,
        metadata={"mismatches": dg.MetadataValue.json(mismatches), "loads_checked": len(checked)},
    )


def _schema_contract(
    config: FabricConfig,
    warehouse: Warehouse,
    source: str,
    entity: str,
    run_id: str,
    results: list[LoadResult],
) -> tuple[dg.AssetCheckResult, dict[str, dg.MetadataValue]]:
    """The drift this run found (from `meta.schema_drift`) and primary key duplicates."""
    spec = config.sources[source].entities[entity]
    primary_key = list(getattr(spec, "primary_key", []))
    policy = spec.contract.policy if hasattr(spec, "contract") else "freeze"
    days = [r.partition for r in results]
    with warehouse.connect(read_only=True) as con:
        drift = contracts.drift_of_run(con, source, entity, run_id)
        version = con.execute(
            "SELECT max(version) FROM meta.contracts WHERE source = ? AND entity = ?",
            [source, entity],
        ).fetchone()
        duplicates = (
            contracts.duplicate_keys(con, f"raw.{source}__{entity}", primary_key, days)
            if primary_key and table_exists(con, f"raw.{source}__{entity}")
            else 0
        )
    changes = sorted({f"{d['change']} {d['column_name']}" for d in drift})
    metadata: dict[str, dg.MetadataValue] = {
        "contract_policy": dg.MetadataValue.text(policy),
        "contract_version": dg.MetadataValue.int(int(version[0]) if version and version[0] else 0),
        "schema_drift": dg.MetadataValue.json(drift),
    }
    check = dg.AssetCheckResult(
        check_name="schema_contract",
        passed=not changes and not duplicates,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "changes": dg.MetadataValue.json(changes),
            "policy": dg.MetadataValue.text(policy),
            "duplicate_primary_keys": dg.MetadataValue.int(duplicates),
        },
    )
    return check, metadata


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
