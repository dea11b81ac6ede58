"""Batch scoring, its drift checks, and the A/B evaluation of champion against challenger."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from assets.lineage import emit_step_start
from assets.partitions import WAREHOUSE_POOL, run_window
from fabric.config import FabricConfig
from fabric.identifiers import split_qualified
from fabric.quality import require_open
from fabric.scoring import score_window
from fabric.scoring.drift import PSI_WARN, DriftReport, measure_drift, plot_drift, reports_dir
from fabric.scoring.evaluation import evaluate_variants, record_evaluation, write_report
from fabric.warehouse import Warehouse

SCORES = dg.AssetKey(["scores", "churn_scores"])
EVALUATION = dg.AssetKey(["scores", "churn_evaluation"])


def scoring_asset(config: FabricConfig, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    tables = config.quality.governed_tables

    @dg.asset(
        key=SCORES,
        group_name="scoring",
        description=(
            f"Churn score per active customer and day from the `{config.scoring.model_name}` "
            "champion (and the challenger for its traffic share or in shadow), resolved once per "
            "run; rules where no model is registered or the model is unavailable. Days whose "
            "quality gate is closed are refused and left unscored."
        ),
        deps=[
            dg.AssetKey(list(split_qualified(config.scoring.features_table))),
            dg.AssetKey(["quality", "gate"]),
        ],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        kinds={"duckdb", "scikit-learn"},
        owners=["team:data-science"],
    )
    def _scores(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        emit_step_start(config, context)
        window = run_window(context)
        warehouse = Warehouse(config.resolve(config.warehouse.path))
        result = score_window(
            config,
            warehouse,
            window,
            context.run.run_id,
            gate=lambda con, day: require_open(con, day, tables),
        )
        for day, reason in result.blocked.items():
            context.log.error(f"not scored {day}: {reason}")
        if result.unavailable_batches:
            context.log.warning(
                f"{result.unavailable_batches} batches were scored by the rules: the model was "
                f"unavailable (backends: {result.backends})"
            )
        return dg.MaterializeResult(metadata=result.metadata())

    return _scores


def drift_checks(config: FabricConfig) -> dg.AssetChecksDefinition:
    """Warning checks: feature and score PSI of each scored day against the training window."""
    specs = [
        dg.AssetCheckSpec(
            "feature_drift",
            asset=SCORES,
            description="Population stability index of every model feature, per scored day, "
            "against the champion's training window (warns above 0.2).",
        ),
        dg.AssetCheckSpec(
            "score_drift",
            asset=SCORES,
            description="Population stability index of the champion's scores against its scores "
            "on the training window (warns above 0.2).",
        ),
    ]

    @dg.multi_asset_check(specs=specs, name="scores_drift", can_subset=True, pool=WAREHOUSE_POOL)
    def _checks(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        warehouse = Warehouse(config.resolve(config.warehouse.path))
        reports = [r for day in run_window(context) if (r := measure_drift(config, warehouse, day))]
        latest = reports[-1] if reports else None
        plot = plot_drift(latest, reports_dir(config)) if latest else None
        by_day = {r.day.isoformat(): r.metadata() for r in reports}
        selected = context.selected_asset_check_keys
        for name, drifted in (
            ("feature_drift", lambda r: bool(r.drifted_features)),
            ("score_drift", lambda r: r.score_psi is not None and r.score_psi > PSI_WARN),
        ):
            if dg.AssetCheckKey(SCORES, name) not in selected:
                continue
            yield dg.AssetCheckResult(
                check_name=name,
                asset_key=SCORES,
                passed=not any(drifted(r) for r in reports),
                severity=dg.AssetCheckSeverity.WARN,
                metadata=_drift_metadata(latest, by_day, plot),
            )

    return _checks


def _drift_metadata(
    latest: DriftReport | None, by_day: dict[str, Any], plot: Path | None
) -> dict[str, dg.MetadataValue]:
    if latest is None:
        return {"note": dg.MetadataValue.text("no day of the run was scored by a model")}
    metadata: dict[str, dg.MetadataValue] = {
        "by_day": dg.MetadataValue.json(by_day),
        "latest_day": dg.MetadataValue.json(latest.metadata()),
    }
    if plot is not None:
        metadata["plot"] = dg.MetadataValue.path(str(plot))
        metadata["plot_preview"] = dg.MetadataValue.md(f"![drift {latest.day}]({plot.as_uri()})")
    return metadata


def evaluation_asset(config: FabricConfig, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=EVALUATION,
        group_name="scoring",
        description=(
            "A/B evaluation: scores of the last `scoring.evaluation_days` joined with the churn "
            "outcomes known by now, per variant and model version: AUC, precision/recall at the "
            "threshold, calibration, lift, with bootstrap intervals. Report and plot in "
            "$FABRIC_HOME/reports."
        ),
        deps=[SCORES, dg.AssetKey(list(split_qualified(config.scoring.labels_table)))],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        kinds={"duckdb", "python"},
        owners=["team:data-science"],
    )
    def _evaluation(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        emit_step_start(config, context)
        window = run_window(context)
        warehouse = Warehouse(config.resolve(config.warehouse.path))
        report = evaluate_variants(config, warehouse, window.end)
        write_report(config, report)
        rows = record_evaluation(warehouse, report, context.run.run_id)
        metadata: dict[str, dg.MetadataValue] = {
            "groups": dg.MetadataValue.int(rows),
            "report": dg.MetadataValue.path(str(report.files["markdown"])),
            "report_json": dg.MetadataValue.path(str(report.files["json"])),
            "summary": dg.MetadataValue.md(report.markdown()),
        }
        if "plot" in report.files:
            metadata["plot"] = dg.MetadataValue.path(str(report.files["plot"]))
            metadata["plot_preview"] = dg.MetadataValue.md(f"![evaluation]({report.files['plot'].as_uri()})")
        if not report.groups:
            context.log.info(f"no scored day up to {window.end} has known outcomes yet")
        return dg.MaterializeResult(metadata=metadata)

    return _evaluation
