"""Batch scoring: the champion model scores each open day's features into `scores.churn_scores`."""

import dagster as dg

from assets.partitions import WAREHOUSE_POOL, run_window
from fabric.config import FabricConfig
from fabric.identifiers import split_qualified
from fabric.quality import require_open
from fabric.scoring import score_window
from fabric.warehouse import Warehouse


def scoring_asset(
    config: FabricConfig, partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    tables = config.quality.governed_tables

    @dg.asset(
        key=["scores", "churn_scores"],
        group_name="scoring",
        description=(
            f"Churn score per active customer and day from the `{config.scoring.model_name}` "
            "champion model (rules when no model is registered). Days whose quality gate is "
            "closed are refused and left unscored."
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
        return dg.MaterializeResult(metadata=result.metadata())

    return _scores
