"""The quality gate: Great Expectations suites as blocking checks, and the per-day gate asset.

Also volume (row count against a trailing window) and freshness checks, non-blocking: per raw
source entity (one multi-check step after ingest) and volume for the scoring features table.
The suite check renders the GE Data Docs site and puts its path in the check's metadata.

Two layers, on purpose:
- each governed table has a blocking asset check running its GE suite for every day of the run.
  If every day fails a critical expectation the check fails with ERROR severity and Dagster does
  not start scoring at all. If only some days fail, it fails with WARN severity (red in the UI,
  alerting) so the good days still flow, and
- the scoring and publishing steps themselves re-read the stored results per day and refuse a
  day whose latest validation failed. A run started separately (UI, schedule, sensor, a
  re-run of one asset) therefore cannot bypass the gate, and one bad day blocks only that day.
"""

from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from pathlib import Path

import dagster as dg

from assets.lineage import emit_step_start
from assets.partitions import WAREHOUSE_POOL, run_window
from fabric.config import FabricConfig
from fabric.errors import FabricError
from fabric.identifiers import split_qualified
from fabric.meta import RunRecord, record_run
from fabric.quality import (
    GateDecision,
    gate_decisions,
    load_suites,
    record_gate,
    summarize,
    validate_window,
)
from fabric.quality.docs import build_data_docs, quality_docs_dir, recent_partitions
from fabric.quality.freshness import source_freshness
from fabric.quality.quarantine import check_quarantine_names, quarantine_table
from fabric.quality.suites import Suite
from fabric.quality.volume import VolumeCheck, volume_anomalies
from fabric.warehouse import Warehouse

# Data Docs show the latest validation of this many recent days (plus the run's own days).
DOCS_RECENT_DAYS = 14


def quality_checks(config: FabricConfig) -> list[dg.AssetChecksDefinition]:
    """A blocking GE check per governed table, plus the volume and freshness checks.

    Suites are loaded here, so a suite file that does not parse fails definitions loading with
    the file and the expectation named.
    """
    suites = load_suites(config)
    governed = {t: suites[t] for t in config.quality.governed_tables}
    check_quarantine_names(list(governed))
    checks = [_suite_check(config, table, governed) for table in governed]
    features = suites.get(config.scoring.features_table)
    if features is not None:
        checks.append(_volume_check(config, features.table, features.partition_column))
    checks.append(_source_checks(config))
    return checks


def _suite_check(
    config: FabricConfig, table: str, governed: Mapping[str, Suite]
) -> dg.AssetChecksDefinition:
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
        summary = summarize(results)
        for label, reason in summary["fallbacks"].items():
            context.log.info(f"{label} ran on GE's pandas engine: {reason}")
        metadata: dict[str, dg.MetadataValue] = {
            "failed_days": dg.MetadataValue.json([d.isoformat() for d in failed_days]),
            "summary": dg.MetadataValue.json(summary),
            "engines": dg.MetadataValue.json(summary["engines"]),
            "quarantined_rows": dg.MetadataValue.int(sum(r.quarantined_rows for r in results)),
            "quarantine_table": dg.MetadataValue.text(quarantine_table(table)),
        }
        docs = _data_docs(config, warehouse, governed, window.days(), context.log)
        if docs is not None:
            metadata["data_docs"] = dg.MetadataValue.path(str(docs))
        return dg.AssetCheckResult(
            passed=not failed_days,
            severity=dg.AssetCheckSeverity.ERROR if everything_failed else dg.AssetCheckSeverity.WARN,
            metadata=metadata,
        )

    return _check


def _data_docs(
    config: FabricConfig,
    warehouse: Warehouse,
    governed: Mapping[str, Suite],
    days: Sequence[date],
    log: dg.DagsterLogManager,
) -> Path | None:
    """Rebuild the Data Docs site (recent days and the run's); a failure only warns."""
    try:
        with warehouse.connect(read_only=True) as con:
            recent = recent_partitions(con, list(governed), DOCS_RECENT_DAYS)
            index = build_data_docs(con, governed, quality_docs_dir(config), sorted({*recent, *days}))
    except (FabricError, OSError) as exc:
        log.warning(f"Data Docs not rebuilt: {exc}")
        return None
    log.info(f"Data Docs: {index.as_uri()}")
    return index


def _volume_check(config: FabricConfig, table: str, partition_column: str) -> dg.AssetChecksDefinition:
    schema, name = split_qualified(table)

    @dg.asset_check(
        asset=dg.AssetKey([schema, name]),
        name="volume",
        description=(
            "Row count of each day against the trailing 14 days (median +/- max(30%, 5 robust "
            "standard deviations)); a spike or drop warns, it does not block."
        ),
        pool=WAREHOUSE_POOL,
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        window = run_window(context)
        warehouse = Warehouse(config.resolve(config.warehouse.path))
        with warehouse.connect(read_only=True) as con:
            judged = volume_anomalies(con, table, partition_column, window.days())
        return _volume_result(judged)

    return _check


def _volume_result(
    judged: Sequence[VolumeCheck], asset_key: dg.AssetKey | None = None
) -> dg.AssetCheckResult:
    anomalies = [v.describe() for v in judged if not v.passed]
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name="volume",
        passed=not anomalies,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "anomalies": dg.MetadataValue.json(anomalies),
            "by_partition": dg.MetadataValue.json({v.partition.isoformat(): v.metadata() for v in judged}),
        },
    )


def _source_checks(config: FabricConfig) -> dg.AssetChecksDefinition:
    """`volume` and `freshness` for every raw source entity, in one step after ingest."""
    entities = config.source_entities()
    specs = [
        dg.AssetCheckSpec(check, asset=dg.AssetKey(["raw", f"{source}__{entity}"]), description=text)
        for source, entity in entities
        for check, text in (
            ("volume", "rows per day against the trailing 14 days; warns on a spike or drop"),
            ("freshness", "latest day with data (meta.loads) at most 1 day behind the run's last day"),
        )
    ]

    @dg.multi_asset_check(specs=specs, name="raw_volume_and_freshness", can_subset=True, pool=WAREHOUSE_POOL)
    def _checks(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        window = run_window(context)
        selected = context.selected_asset_check_keys
        warehouse = Warehouse(config.resolve(config.warehouse.path))
        with warehouse.connect(read_only=True) as con:
            fresh = {(f.source, f.entity): f for f in source_freshness(con, entities, window.end)}
            for source, entity in entities:
                key = dg.AssetKey(["raw", f"{source}__{entity}"])
                if dg.AssetCheckKey(key, "volume") in selected:
                    table = f"raw.{source}__{entity}"
                    judged = volume_anomalies(con, table, "_fabric_partition", window.days())
                    yield _volume_result(judged, key)
                if dg.AssetCheckKey(key, "freshness") in selected:
                    found = fresh[(source, entity)]
                    yield dg.AssetCheckResult(
                        asset_key=key,
                        check_name="freshness",
                        passed=found.passed,
                        severity=dg.AssetCheckSeverity.WARN,
                        description=found.describe(),
                        metadata={"freshness": dg.MetadataValue.json(found.metadata())},
                    )

    return _checks


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
            "table passed all critical expectations and no recorded critical dbt test (on a model "
            "scoring depends on) failed. Scoring and publishing enforce it."
        ),
        deps=[dg.AssetKey(list(split_qualified(t))) for t in tables],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        kinds={"duckdb", "great_expectations"},
        owners=["team:data-engineering"],
    )
    def _gate(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        emit_step_start(config, context)
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
        docs = quality_docs_dir(config) / "index.html"
        return dg.MaterializeResult(
            metadata={
                **({"data_docs": dg.MetadataValue.path(str(docs))} if docs.is_file() else {}),
                "open_days": dg.MetadataValue.int(len(decisions) - len(closed)),
                "closed_days": dg.MetadataValue.json(closed),
                "decisions": dg.MetadataValue.json(
                    {d.isoformat(): dec.reason for d, dec in sorted(decisions.items())}
                ),
            }
        )

    return _gate


def _closed(decisions: Mapping[date, GateDecision]) -> Sequence[str]:
    return [d.isoformat() for d, dec in sorted(decisions.items()) if not dec.open]
