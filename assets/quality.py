"""The quality gate: Great Expectations suites as blocking checks, and the per-day gate asset.

Two layers, on purpose:
- each governed table has a blocking asset check running its GE suite for every day of the run.
  If every day fails a critical expectation the check fails with ERROR severity and Dagster does
  not start scoring at all. If only some days fail, it fails with WARN severity (red in the UI,
  alerting) so the good days still flow, and
- the scoring and publishing steps themselves re-read the stored results per day and refuse a
  day whose latest validation failed. A run started separately (UI, schedule, sensor, a
  re-run of one asset) therefore cannot bypass the gate, and one bad day blocks only that day.
"""

from collections.abc import Sequence
from datetime import date

import dagster as dg

from assets.partitions import WAREHOUSE_POOL, run_window
from fabric.config import FabricConfig
from fabric.identifiers import split_qualified
from fabric.meta import RunRecord, record_run
from fabric.quality import gate_decisions, record_gate, summarize, validate_window
from fabric.warehouse import Warehouse


def quality_checks(config: FabricConfig) -> list[dg.AssetChecksDefinition]:
    """A blocking GE check per governed table (tables come from `quality.governed_tables`)."""
    return [_suite_check(config, table) for table in config.quality.governed_tables]


def _suite_check(config: FabricConfig, table: str) -> dg.AssetChecksDefinition:
    schema, name = split_qualified(table)

    @dg.asset_check(
        asset=dg.AssetKey([schema, name]),
        name="great_expectations",
        description=(
            f"Runs the Great Expectations suite `expectations/{table}.json` on each day of the "
            "run; critical failures block scoring and publishing for that day."
        ),
        blocking=True,
        pool=WAREHOUSE_POOL,
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        window = run_window(context)
        warehouse = Warehouse(config.resolve(config.warehouse.path))
        results = validate_window(config, warehouse, table, window, context.run.run_id)
        failed_days = [r.partition for r in results if not r.success_critical]
        for day in failed_days:
            context.log.error(f"{table} failed critical expectations for {day}")
        everything_failed = bool(results) and len(failed_days) == len(results)
        return dg.AssetCheckResult(
            passed=not failed_days,
            severity=dg.AssetCheckSeverity.ERROR if everything_failed else dg.AssetCheckSeverity.WARN,
            metadata={
                "failed_days": dg.MetadataValue.json([d.isoformat() for d in failed_days]),
                "summary": dg.MetadataValue.json(summarize(results)),
            },
        )

    return _check


def quality_gate_asset(
    config: FabricConfig, partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    """`quality/gate`: the gate decision per day, stored in `meta.quality_gate` for operators."""
    tables = config.quality.governed_tables

    @dg.asset(
        key=["quality", "gate"],
        group_name="quality",
        description=(
            "Open or closed, per day: open only when the latest validation of every governed "
            "table passed all critical expectations. Scoring and publishing enforce it."
        ),
        deps=[dg.AssetKey(list(split_qualified(t))) for t in tables],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        kinds={"duckdb", "great_expectations"},
        owners=["team:data-engineering"],
    )
    def _gate(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        window = run_window(context)
        warehouse = Warehouse(config.resolve(config.warehouse.path))
        with warehouse.connect() as con:
            decisions = gate_decisions(con, window.days(), tables)
            record_gate(con, decisions, context.run.run_id)
            record = RunRecord(context.run.run_id, "quality_gate", window.start, window.end)
            record.inputs = ["meta.validation_results"]
            record.output("meta.quality_gate", len(decisions), window.days())
            record_run(con, record)
        closed = _closed(decisions)
        if closed:
            context.log.warning(f"quality gate closed for {', '.join(closed)}")
        return dg.MaterializeResult(
            metadata={
                "open_days": dg.MetadataValue.int(len(decisions) - len(closed)),
                "closed_days": dg.MetadataValue.json(closed),
                "decisions": dg.MetadataValue.json(
                    {d.isoformat(): dec.reason for d, dec in sorted(decisions.items())}
                ),
            }
        )

    return _gate


def _closed(decisions: dict[date, object]) -> Sequence[str]:
    return [d.isoformat() for d, dec in sorted(decisions.items()) if not dec.open]
