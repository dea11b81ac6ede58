"""Fabric's Dagster code location: the whole graph, in the order the data flows.

    sources --ingest--> raw --dbt--> staging/integrated --> features
        --GE checks--> quality/gate --> scores --> publish --> business systems
                                                          \\--> analytics snapshot

`dagster dev` (from the repository root) loads `defs` via `[tool.dagster]` in pyproject.toml.
The configuration comes from `$FABRIC_CONFIG` or `./fabric.yaml`; tests call
`build_definitions(config)` with their own.
"""

from __future__ import annotations

import logging
import warnings

import dagster as dg

from assets.events import source_events_sensors
from assets.ingest import ingest_assets
from assets.integrate import dbt_model_assets, dbt_resource
from assets.lineage import catch_up_sensors, lineage_hooks
from assets.partitions import daily_partitions
from assets.publish import analytics_asset, publish_assets
from assets.quality import quality_checks, quality_gate_asset
from assets.schedules import DAILY_JOB, INTEGRATE_JOB, nightly_schedule
from assets.scoring import drift_checks, evaluation_asset, scoring_asset
from assets.sensors import landing_sensors
from fabric.config import FabricConfig, load_config

# Single-run backfill policies and partitioned checks are marked beta/preview by Dagster; Fabric
# depends on them deliberately (every partitioned asset must handle a range), so do not warn
# operators about them on every load.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

# The `fabric` loggers reach each run's event log (dagster.yaml, `python_logs`); their INFO lines
# (progress of long steps) with them. Not `python_log_level: INFO` in dagster.yaml: that also
# drops the DEBUG lines steps write with `context.log.debug`.
if logging.getLogger("fabric").level == logging.NOTSET:
    logging.getLogger("fabric").setLevel(logging.INFO)


def build_definitions(config: FabricConfig) -> dg.Definitions:
    """Every asset, check, job and schedule for one `fabric.yaml`."""
    partitions = daily_partitions(config)
    assets = [
        *ingest_assets(config, partitions),
        dbt_model_assets(config, partitions),
        quality_gate_asset(config, partitions),
        scoring_asset(config, partitions),
        evaluation_asset(config, partitions),
        *publish_assets(config, partitions),
        analytics_asset(config, partitions),
    ]
    daily_job = dg.define_asset_job(
        DAILY_JOB,
        selection=dg.AssetSelection.all() - dg.AssetSelection.groups("business_systems"),
        description="Every Fabric asset for a day or a range of days, in one run.",
        hooks=lineage_hooks(config),
    )
    integrate_job = dg.define_asset_job(
        INTEGRATE_JOB,
        selection=dg.AssetSelection.groups("raw", "integrated", "features"),
        description="Ingest and integration only (raw -> features), e.g. to backfill history.",
        hooks=lineage_hooks(config),
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=[*quality_checks(config), drift_checks(config)],
        jobs=[daily_job, integrate_job],
        schedules=[nightly_schedule(config)],
        sensors=[
            *landing_sensors(config),
            *source_events_sensors(config),
            *catch_up_sensors(config, [DAILY_JOB, INTEGRATE_JOB]),
        ],
        resources={"dbt": dbt_resource(config)},
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_config())
