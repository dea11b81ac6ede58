"""What each Fabric asset reads and writes, as OpenLineage datasets with their facets.

Assets are named by their key path (`raw/crm__customers`, `integrated/customers`,
`publish/crm`, ...). Inputs and outputs come from the configuration, the dbt manifest and what
the run recorded in the warehouse (`meta.loads` names the very files and tables a load read),
so the events name real files, tables and targets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from fabric.config import FabricConfig
from fabric.identifiers import split_qualified
from fabric.lineage.columns import ModelColumnLineage, Relation, model_column_lineage
from fabric.lineage.events import Dataset, facet, schema_facet
from fabric.lineage.naming import (
    DatasetName,
    duckdb_table,
    publisher_dataset,
    source_label_dataset,
    warehouse_table,
)
from fabric.warehouse import table_exists

log = logging.getLogger(__name__)

AssetPath = tuple[str, ...]


@dataclass
class DbtArtifacts:
    """The manifest of a dbt invocation and the compiled SQL of the models it ran."""

    manifest: Mapping[str, Any]
    compiled: dict[str, str] = field(default_factory=dict)  # unique id -> compiled SQL

    @classmethod
    def load(cls, manifest_file: Path, run_results_file: Path | None = None) -> DbtArtifacts:
        manifest = json.loads(manifest_file.read_text())
        compiled: dict[str, str] = {}
        if run_results_file is not None and run_results_file.is_file():
            for result in json.loads(run_results_file.read_text()).get("results", []):
                if result.get("compiled_code"):
                    compiled[result["unique_id"]] = result["compiled_code"]
        for unique_id, node in manifest.get("nodes", {}).items():
            if node.get("compiled_code") and unique_id not in compiled:
                compiled[unique_id] = node["compiled_code"]
        return cls(manifest, compiled)

    def node_for(self, relation: Relation) -> tuple[str, Mapping[str, Any]] | None:
        for unique_id, node in self.manifest.get("nodes", {}).items():
            if node.get("resource_type") not in ("model", "seed", "snapshot"):
                continue
            if (node["schema"], node.get("alias") or node["name"]) == relation:
                return unique_id, node
        return None

    def relation_of(self, unique_id: str) -> Relation | None:
        node = self.manifest.get("nodes", {}).get(unique_id) or self.manifest.get("sources", {}).get(
            unique_id
        )
        if node is None:
            return None
        if node.get("resource_type") == "source":
            return node["schema"], node.get("identifier") or node["name"]
        return node["schema"], node.get("alias") or node["name"]


class Catalogue:
    """Columns of the warehouse's tables, read once (empty without a warehouse)."""

    def __init__(self, con: duckdb.DuckDBPyConnection | None) -> None:
        self.columns: dict[Relation, dict[str, str]] = {}
        if con is None:
            return
        rows = con.execute(
            "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_catalog = current_database() ORDER BY table_schema, table_name, ordinal_position"
        ).fetchall()
        for schema, table, column, type_ in rows:
            self.columns.setdefault((schema, table), {})[column] = type_

    def facets(self, relation: Relation) -> dict[str, Any]:
        columns = self.columns.get(relation)
        return {"schema": schema_facet(list(columns.items()))} if columns else {}


@dataclass
class AssetLineage:
    inputs: list[Dataset] = field(default_factory=list)
    outputs: list[Dataset] = field(default_factory=list)
    job_facets: dict[str, Any] = field(default_factory=dict)


class AssetDatasets:
    """Builds the datasets of each asset of one orchestrator run."""

    def __init__(
        self,
        config: FabricConfig,
        run_id: str,
        con: duckdb.DuckDBPyConnection | None,
        dbt: DbtArtifacts | None = None,
    ) -> None:
        self.config = config
        self.run_id = run_id
        self.con = con
        self.dbt = dbt
        self.catalogue = Catalogue(con)
        self.warehouse_catalog = config.resolve(config.warehouse.path).stem
        self._column_lineage: dict[Relation, ModelColumnLineage] = {}

    def table(self, relation: Relation, **io_facets: Any) -> Dataset:
        name = warehouse_table(self.config, ".".join(relation))
        return Dataset(name, self.catalogue.facets(relation), dict(io_facets))

    def _exists(self, relation: Relation) -> bool:
        return relation in self.catalogue.columns

    def for_asset(self, asset: AssetPath) -> AssetLineage:
        if len(asset) == 2 and asset[0] == "raw":
            return self._ingest(asset[1])
        if len(asset) == 2 and self.dbt is not None and self.dbt.node_for((asset[0], asset[1])):
            return self._dbt_model((asset[0], asset[1]))
        if asset == ("quality", "gate"):
            governed = [split_qualified(t) for t in self.config.quality.governed_tables]
            return AssetLineage(
                inputs=[self.table(r) for r in [*governed, ("meta", "validation_results")]],
                outputs=[self.table(("meta", "quality_gate"))],
            )
        if len(asset) == 2 and asset[0] == "scores":
            features = split_qualified(self.config.scoring.features_table)
            return AssetLineage(
                inputs=[self.table(features), self.table(("meta", "quality_gate"))],
                outputs=[self.table((asset[0], asset[1]))],
            )
        if len(asset) == 2 and asset[0] == "publish" and asset[1] in self.config.publishers:
            return self._publish(asset[1])
        if asset == ("analytics", "snapshot"):
            return self._analytics()
        if len(asset) == 2:
            return AssetLineage(outputs=[self.table((asset[0], asset[1]))])
        return AssetLineage()

    def _ingest(self, table: str) -> AssetLineage:
        source, _, entity = table.partition("__")
        inputs: dict[DatasetName, Dataset] = {}
        loaded = 0
        if self.con is not None and table_exists(self.con, "meta.loads"):
            rows = self.con.execute(
                "SELECT source_path, sum(rows_loaded), sum(rows_read) FROM meta.loads WHERE run_id = ? "
                "AND source = ? AND entity = ? AND status <> 'missing' GROUP BY 1 ORDER BY 1",
                [self.run_id, source, entity],
            ).fetchall()
            for path, rows_loaded, rows_read in rows:
                if not path:
                    continue
                name = source_label_dataset(str(path))
                inputs[name] = Dataset(
                    name,
                    io_facets={"inputStatistics": facet("inputStatistics", rowCount=int(rows_read or 0))},
                )
                loaded += int(rows_loaded or 0)
        outputs = [self.table(("raw", table), outputStatistics=facet("outputStatistics", rowCount=loaded))]
        if self._exists(("quarantine", table)):
            outputs.append(self.table(("quarantine", table)))
        return AssetLineage(inputs=list(inputs.values()), outputs=outputs)

    def column_lineage(self, relation: Relation) -> ModelColumnLineage | None:
        """Column lineage of the dbt model building `relation` (cached), or None without SQL."""
        if relation in self._column_lineage:
            return self._column_lineage[relation]
        assert self.dbt is not None
        found = self.dbt.node_for(relation)
        if found is None or found[0] not in self.dbt.compiled or relation not in self.catalogue.columns:
            return None
        unique_id, node = found
        upstream = [self.dbt.relation_of(u) for u in node.get("depends_on", {}).get("nodes", [])]
        catalogue = {
            r: self.catalogue.columns[r] for r in [relation, *upstream] if r and r in self.catalogue.columns
        }
        lineage = model_column_lineage(
            relation, self.dbt.compiled[unique_id], self.warehouse_catalog, catalogue
        )
        for column, error in lineage.errors.items():
            log.warning("column lineage of %s.%s: %s", *relation, f"{column}: {error}")
        self._column_lineage[relation] = lineage
        return lineage

    def _dbt_model(self, relation: Relation) -> AssetLineage:
        assert self.dbt is not None
        found = self.dbt.node_for(relation)
        assert found is not None
        unique_id, node = found
        upstream = sorted(
            {r for r in (self.dbt.relation_of(u) for u in node.get("depends_on", {}).get("nodes", [])) if r}
        )
        output = self.table(relation)
        lineage = self.column_lineage(relation)
        if lineage is not None and lineage.columns:
            fields = {
                column: {
                    "inputFields": [
                        {
                            "namespace": warehouse_table(self.config, f"{s}.{t}").namespace,
                            "name": warehouse_table(self.config, f"{s}.{t}").name,
                            "field": c,
                        }
                        for s, t, c in refs
                    ]
                }
                for column, refs in lineage.columns.items()
            }
            output.facets["columnLineage"] = facet("columnLineage", fields=fields)
        if node.get("description"):
            output.facets["documentation"] = facet("documentation", description=node["description"])
        job_facets: dict[str, Any] = {}
        sql = self.dbt.compiled.get(unique_id)
        if sql:
            job_facets["sql"] = facet("sql", query=sql, dialect="duckdb")
        return AssetLineage(inputs=[self.table(r) for r in upstream], outputs=[output], job_facets=job_facets)

    def _publish(self, name: str) -> AssetLineage:
        outputs = [Dataset(publisher_dataset(self.config, name))]
        for relation in (("publish", "outbox"), ("publish", "published"), ("publish", "sync_log")):
            if self._exists(relation):
                outputs.append(self.table(relation))
        return AssetLineage(inputs=[self.table(("scores", "churn_scores"))], outputs=outputs)

    def _analytics(self) -> AssetLineage:
        path = self.config.resolve(self.config.warehouse.analytics_path)
        tables: Sequence[str] = []
        if path.is_file():
            try:
                with duckdb.connect(str(path), read_only=True) as snapshot:
                    tables = [
                        f"{s}.{t}"
                        for s, t in snapshot.execute(
                            "SELECT table_schema, table_name FROM information_schema.tables "
                            "WHERE table_catalog = current_database() ORDER BY ALL"
                        ).fetchall()
                    ]
            except duckdb.Error as exc:  # replaced while we looked: name the file only
                log.warning("analytics snapshot %s not readable for lineage: %s", path, exc)
        features = split_qualified(self.config.scoring.features_table)
        return AssetLineage(
            inputs=[
                self.table(r) for r in (("scores", "churn_scores"), ("integrated", "customers"), features)
            ],
            outputs=[Dataset(duckdb_table(path, t)) for t in tables],
        )
