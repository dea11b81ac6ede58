"""`fabric.yaml`: one validated description of sources, warehouse, models and publishers.

Configuration is data. Adding a source or a business system means editing `fabric.yaml`, not
writing Python. The file is validated on load; an error names the file, the key path and what
was expected. Secrets are never written in the file: a value may reference an environment
variable as `${NAME}` or `${NAME:-default}`, substituted at load time.

Relative paths are resolved against the directory holding `fabric.yaml`.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fabric.errors import ConfigError
from fabric.identifiers import split_qualified, validate_identifier

DEFAULT_CONFIG_FILE = "fabric.yaml"
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ColumnType = Literal[
    "string", "integer", "bigint", "double", "decimal", "date", "timestamp", "boolean"
]


class Column(_Model):
    """One typed column of a source entity. Values that do not parse are quarantined."""

    name: str
    type: ColumnType = "string"
    scale: int = Field(default=2, ge=0, le=18, description="digits after the point (decimal)")
    precision: int = Field(default=18, ge=1, le=38, description="total digits (decimal)")
    format: str | None = Field(default=None, description="strptime format for date/timestamp")
    path: str | None = Field(
        default=None, description="JSON sources: dotted path in the object, e.g. user.email"
    )
    nullable: bool = True

    _name = field_validator("name")(lambda v: validate_identifier(v, "column name"))


class FixedWidthField(_Model):
    """A field of a fixed-width layout: 1-based start position and length in characters."""

    name: str
    start: int = Field(ge=1)
    length: int = Field(ge=1)
    type: ColumnType = "string"
    scale: int = Field(default=0, ge=0, le=18, description="implied decimals (decimal)")
    format: str | None = None

    _name = field_validator("name")(lambda v: validate_identifier(v, "field name"))


class SqliteEntity(_Model):
    table: str
    mode: Literal["partitioned", "snapshot"] = "partitioned"
    date_column: str | None = Field(
        default=None, description="partitioned mode: column whose date() is the business date"
    )
    primary_key: list[str] = Field(min_length=1)
    columns: list[Column] = Field(min_length=1)

    _table = field_validator("table")(lambda v: validate_identifier(v, "table name"))

    @model_validator(mode="after")
    def _partitioned_needs_date(self) -> SqliteEntity:
        if self.mode == "partitioned" and not self.date_column:
            raise ValueError("mode 'partitioned' needs date_column")
        names = {c.name for c in self.columns}
        for key in [*self.primary_key, *([self.date_column] if self.date_column else [])]:
            if key not in names:
                raise ValueError(f"{key!r} is not one of the declared columns")
        return self


class FileEntity(_Model):
    pattern: str = Field(description="path under the source root; {date:%Y%m%d} is the partition")
    columns: list[Column] = Field(default_factory=list)
    layout: str | None = Field(default=None, description="fixed width: entity name in the layout")
    partition_column: str | None = Field(
        default=None, description="column holding the business date (default: the file's date)"
    )

    @field_validator("pattern")
    @classmethod
    def _pattern_has_date(cls, v: str) -> str:
        if "{date" not in v:
            raise ValueError("pattern needs a {date:...} placeholder, e.g. x_{date:%Y%m%d}.csv")
        if v.startswith("/") or ".." in Path(v).parts:
            raise ValueError("pattern must be a relative path inside the source root")
        return v


class SqliteSource(_Model):
    kind: Literal["sqlite"]
    path: Path
    entities: dict[str, SqliteEntity] = Field(min_length=1)


class FixedWidthSource(_Model):
    kind: Literal["fixed_width"]
    root: Path
    layout: Path = Field(description="YAML file: entity -> list of fields")
    encoding: str = "ascii"
    entities: dict[str, FileEntity] = Field(min_length=1)


class CsvSource(_Model):
    kind: Literal["csv"]
    root: Path
    encoding: str = "utf-8"
    delimiter: str = ","
    quote: str = '"'
    header: bool = True
    null_markers: list[str] = Field(default_factory=lambda: [""])
    entities: dict[str, FileEntity] = Field(min_length=1)


class JsonlSource(_Model):
    kind: Literal["jsonl"]
    root: Path
    entities: dict[str, FileEntity] = Field(min_length=1)


Source = Annotated[
    SqliteSource | FixedWidthSource | CsvSource | JsonlSource, Field(discriminator="kind")
]


class WarehouseConfig(_Model):
    path: Path = Path(".fabric/warehouse.duckdb")
    analytics_path: Path = Path(".fabric/analytics.duckdb")


class PartitionsConfig(_Model):
    start_date: date
    trailing_window_days: int = Field(
        default=3, ge=0, le=60, description="the nightly run also re-materializes this many days"
    )
    schedule: str = Field(default="0 2 * * *", description="cron, UTC")


class DbtConfig(_Model):
    project_dir: Path = Path("dbt_project")
    target_path: Path = Path("target")


class QualityConfig(_Model):
    suites_dir: Path = Path("expectations")
    governed_tables: list[str] = Field(
        default_factory=lambda: ["integrated.customers", "features.customer_features"]
    )

    @field_validator("governed_tables")
    @classmethod
    def _qualified(cls, v: list[str]) -> list[str]:
        for name in v:
            split_qualified(name)
        return v


class Rule(_Model):
    """A declarative scoring rule: when `feature op value` holds, add `weight` to the score."""

    feature: str
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    value: float
    weight: float = Field(gt=0)


class TrainingConfig(_Model):
    history_days: int = Field(default=120, ge=14)
    sample_every_days: int = Field(default=7, ge=1, description="as-of dates used for training")
    holdout_days: int = Field(default=14, ge=1, description="latest labelled days held out")


class ScoringConfig(_Model):
    model_name: str = "churn"
    registry_dir: Path = Path(".fabric/models")
    features_table: str = "features.customer_features"
    labels_table: str = "features.churn_labels"
    entity_key: str = "fabric_customer_id"
    decision_threshold: float = Field(default=0.5, gt=0, lt=1)
    churn_horizon_days: int = Field(default=30, ge=1)
    training: TrainingConfig = TrainingConfig()
    rules: list[Rule] = Field(default_factory=list)


class SqlitePublisher(_Model):
    kind: Literal["sqlite"]
    path: Path
    table: str = "crm_scores"
    key: str = "crm_id"

    _table = field_validator("table", "key")(lambda v: validate_identifier(v))


class CsvDropPublisher(_Model):
    kind: Literal["csv_drop"]
    directory: Path


Publisher = Annotated[SqlitePublisher | CsvDropPublisher, Field(discriminator="kind")]


class DemoConfig(_Model):
    root: Path = Path(".fabric/demo")
    customers: int = Field(default=20_000, ge=100)
    days: int = Field(default=7, ge=1)
    seed: int = 42


class FabricConfig(_Model):
    """The whole of `fabric.yaml`."""

    project: str
    base_dir: Path = Field(default=Path("."), exclude=True)
    warehouse: WarehouseConfig = WarehouseConfig()
    partitions: PartitionsConfig
    sources: dict[str, Source] = Field(min_length=1)
    dbt: DbtConfig = DbtConfig()
    quality: QualityConfig = QualityConfig()
    scoring: ScoringConfig = ScoringConfig()
    publishers: dict[str, Publisher] = Field(default_factory=dict)
    pii: dict[str, list[str]] = Field(
        default_factory=dict, description="table -> PII columns, masked outside the warehouse"
    )
    demo: DemoConfig | None = None

    @field_validator("sources", "publishers")
    @classmethod
    def _names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            validate_identifier(name, "name")
        return v

    @model_validator(mode="after")
    def _entity_names(self) -> FabricConfig:
        for source in self.sources.values():
            for entity in source.entities:
                validate_identifier(entity, "entity name")
        return self

    def resolve(self, path: Path) -> Path:
        """A config path made absolute against the directory of `fabric.yaml`."""
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    def source_entities(self) -> list[tuple[str, str]]:
        """All (source, entity) pairs in declaration order."""
        return [(s, e) for s, src in self.sources.items() for e in src.entities]


def _substitute_env(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return {k: _substitute_env(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found is not None:
            return found
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set (used as ${{{name}}})")

    return _ENV_REFERENCE.sub(replace, value)


def _location(loc: tuple[Any, ...]) -> str:
    """pydantic's error location as a key path, leaving out the discriminator tags."""
    parts = [str(p) for p in loc if p not in ("sqlite", "fixed_width", "csv", "jsonl", "csv_drop")]
    return ".".join(parts) or "(top level)"


def parse_config(data: Any, base_dir: Path, file_name: str = DEFAULT_CONFIG_FILE) -> FabricConfig:
    """Validate an already-loaded YAML document."""
    if not isinstance(data, dict):
        raise ConfigError(f"{file_name}: expected a mapping at the top level")
    data = _substitute_env(data, "")
    try:
        return FabricConfig.model_validate({**data, "base_dir": base_dir.resolve()})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            line = f"{file_name}: {_location(tuple(err['loc']))}: {err['msg']}"
            if err["type"] != "missing" and not isinstance(err["input"], dict | list):
                line += f" (got {err['input']!r})"
            lines.append(line)
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def load_config(path: Path | str | None = None) -> FabricConfig:
    """Load and validate `fabric.yaml` (default: `$FABRIC_CONFIG` or `./fabric.yaml`)."""
    path = Path(path or os.environ.get("FABRIC_CONFIG", DEFAULT_CONFIG_FILE))
    if not path.is_file():
        raise ConfigError(
            f"{path}: configuration file not found (set FABRIC_CONFIG or run from the project root)"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, path.parent, str(path))
