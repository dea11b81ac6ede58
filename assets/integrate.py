"""The dbt project as Dagster assets: staging -> integrated -> features, with dbt tests as checks."""

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)

from assets.lineage import emit_step_start
from assets.partitions import WAREHOUSE_POOL, run_window
from fabric.config import FabricConfig
from fabric.errors import ConfigError
from fabric.identifiers import qualified
from fabric.integrate.dbt import dbt_build_args, dbt_env, dbt_executable, prune_invocations
from fabric.meta import RunRecord, record_run
from fabric.quality.dbt import record_dbt_results
from fabric.warehouse import Warehouse, table_exists

# dbt's schema (layer) -> Dagster group. Staging is an implementation detail of integration.
_GROUPS = {"staging": "integrated", "integrated": "integrated", "features": "features"}


class FabricDbtTranslator(DagsterDbtTranslator):
    """Asset keys `<schema>/<table>` (e.g. `integrated/customers`), matching the warehouse.

    dbt sources keep dagster-dbt's default `<source>/<table>` keys, which for the `raw` source
    are exactly the ingest assets' keys, so the graph connects ingest to dbt without glue.
    """

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] in ("model", "seed", "snapshot"):
            schema = dbt_resource_props["config"].get("schema") or dbt_resource_props["schema"]
            table = dbt_resource_props.get("alias") or dbt_resource_props["name"]
            return dg.AssetKey([schema, table])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        schema = dbt_resource_props["config"].get("schema")
        return _GROUPS.get(schema or "", "integrated")

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return ["team:analytics-engineering"]

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        schema = dbt_resource_props["config"].get("schema")
        return {"layer": schema} if schema else {}


def manifest_path(config: FabricConfig) -> Path:
    """Where `fabric dbt prepare` (run by `make`) leaves the parsed dbt manifest."""
    return config.resolve(config.dbt.project_dir) / config.dbt.target_path / "manifest.json"


def dbt_resource(config: FabricConfig) -> DbtCliResource:
    project_dir = config.resolve(config.dbt.project_dir)
    return DbtCliResource(
        project_dir=str(project_dir), profiles_dir=str(project_dir), dbt_executable=dbt_executable()
    )


def dbt_model_assets(
    config: FabricConfig, partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    """One multi-asset for the whole dbt project; `dbt build` for the run's partition window."""
    manifest = manifest_path(config)
    if not manifest.is_file():
        raise ConfigError(
            f"{manifest}: the dbt manifest is missing. Run `fabric dbt prepare` (or `make demo`) "
            "to parse the dbt project before loading the Dagster definitions."
        )
    horizon = config.scoring.churn_horizon_days

    @dbt_assets(
        manifest=manifest,
        name="dbt_models",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        dagster_dbt_translator=FabricDbtTranslator(
            settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)
        ),
    )
    def _dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
        emit_step_start(config, context)  # one START per selected model
        window = run_window(context)
        pruned = prune_invocations(config)
        if pruned.folders:
            context.log.info(
                f"deleted {pruned.folders} dbt target folder(s) older than "
                f"{config.dbt.keep_invocations_days} days ({pruned.bytes / 1e6:.1f} MB)"
            )
        # dbt runs as a subprocess that inherits this environment; the profile reads the
        # warehouse path from it.
        os.environ.update(dbt_env(config))
        record = RunRecord(context.run.run_id, "dbt_build", window.start, window.end)
        record.inputs = [f"raw.{s}__{e}" for s, e in config.source_entities()]
        # raise_on_error=False: the results (failed tests included) are recorded first, then the
        # step fails as dbt did. The gate reads them, so a failed dbt test on a model scoring
        # depends on closes that day for scoring and publishing.
        invocation = dbt.cli(dbt_build_args(window, horizon), context=context, raise_on_error=False)
        yield from invocation.stream()
        with Warehouse(config.resolve(config.warehouse.path)).connect() as con:
            record_dbt_results(
                con,
                invocation.get_artifact("run_results.json"),
                window,
                context.run.run_id,
                manifest=invocation.manifest,
                scoring_inputs=[config.scoring.features_table],
            )
            for key in sorted(context.selected_asset_keys):
                table = ".".join(key.path)
                if len(key.path) == 2 and table_exists(con, table):
                    row = con.execute(f"SELECT count(*) FROM {qualified(*key.path)}").fetchone()
                    record.output(table, int(row[0]) if row else 0)
            record.status = "ok" if invocation.is_successful() else "failed"
            record_run(con, record)
        if not invocation.is_successful():
            error = invocation.get_error()
            if error is not None:
                raise error

    return _dbt_models
