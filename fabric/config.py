"""`fabric.yaml`: one validated description of sources, warehouse, models and publishers.

Configuration is data. Adding a source or a business system means editing `fabric.yaml`, not
writing Python. The file is validated on load; an error names the file, the key path and what
was expected. Secrets are never written in the file: a value may reference an environment
variable as `${NAME}` or `${NAME:-default}`, substituted at load time.

Relative paths are resolved against the directory holding `fabric.yaml`.
"""

from __future__ import annotations

import json
import os
import re
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

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


class ContractConfig(_Model):
    """What a load does when a file differs from the entity's contract (its columns and types).

    `freeze`: refuse the load with the diff; `evolve`: add new columns and widen types, kept in
    `meta.contracts`; `quarantine`: load what fits, quarantine the rows that do not. See
    `fabric.ingest.contract`.
    """

    policy: Literal["evolve", "freeze", "quarantine"] = "freeze"


_DURATION = re.compile(
    r"^(\d+(?:\.\d+)?)\s*(microsecond|millisecond|second|minute|hour|day)s?$", re.IGNORECASE
)
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")


def _lookback(value: str | int | float, cursor: ColumnType) -> timedelta | Decimal:
    """A merge look-back as a duration (date/timestamp cursors) or an amount (numeric cursors)."""
    text = str(value).strip()
    if cursor in ("date", "timestamp"):
        if _NUMBER.match(text) and Decimal(text) == 0:
            return timedelta(0)
        found = _DURATION.match(text)
        if not found:
            raise ValueError(
                f"lookback {value!r}: a {cursor} cursor needs a duration such as '10 minutes', "
                "'2 hours' or '1 day'"
            )
        return timedelta(**{found.group(2).lower() + "s": float(found.group(1))})
    if not _NUMBER.match(text):
        raise ValueError(f"lookback {value!r}: a {cursor} cursor needs a non-negative number")
    return Decimal(text)


class _Entity(_Model):
    """What an entity of every source kind may declare."""

    customer_key: str | None = Field(
        default=None,
        description=(
            "record trace: the raw column holding this source's customer key, as the source's "
            "system keys its records in integrated.customer_xref"
        ),
    )

    @field_validator("customer_key")
    @classmethod
    def _customer_key_identifier(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                validate_identifier(v, "customer_key column")
            except ConfigError as exc:  # as a ValueError, so that the error names the key path
                raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _customer_key_is_declared(self) -> Self:
        declared = [c.name for c in getattr(self, "columns", [])]
        if self.customer_key is not None and declared and self.customer_key not in declared:
            raise ValueError(f"customer_key {self.customer_key!r} is not one of the declared columns")
        return self


class SqliteEntity(_Entity):
    """A table of a relational source (SQLite, PostgreSQL, MySQL/MariaDB) and how it is read.

    `partitioned`: the rows whose `date_column` falls in the partition; `snapshot`: the whole
    table, as the partition; `merge`: the rows changed since the stored cursor (the largest
    `cursor_column` value loaded so far, less `lookback`), upserted by `primary_key` into a
    current-state raw table.
    """

    table: str
    mode: Literal["partitioned", "snapshot", "merge"] = "partitioned"
    date_column: str | None = Field(
        default=None, description="partitioned mode: column whose date() is the business date"
    )
    primary_key: list[str] = Field(min_length=1)
    cursor_column: str | None = Field(
        default=None, description="merge mode: a timestamp or number that grows when a row changes"
    )
    lookback: str | int | float = Field(
        default=0,
        description="merge mode: re-read rows this far behind the cursor ('10 minutes', or a number)",
    )
    columns: list[Column] = Field(
        default_factory=list,
        description="none: the contract is inferred from the table's catalog on the first load",
    )
    contract: ContractConfig = ContractConfig()

    _table = field_validator("table")(lambda v: validate_identifier(v, "table name"))

    @model_validator(mode="after")
    def _partitioned_needs_date(self) -> SqliteEntity:
        if self.mode == "partitioned" and not self.date_column:
            raise ValueError("mode 'partitioned' needs date_column")
        if self.mode == "merge" and not self.cursor_column:
            raise ValueError("mode 'merge' needs cursor_column")
        if not self.columns:  # checked against the inferred contract when it is made
            return self
        names = {c.name: c for c in self.columns}
        for key in [*self.primary_key, *filter(None, [self.date_column, self.cursor_column])]:
            if key not in names:
                raise ValueError(f"{key!r} is not one of the declared columns")
        if self.mode == "merge":
            cursor = names[str(self.cursor_column)]
            if cursor.type not in ("integer", "bigint", "decimal", "date", "timestamp"):
                raise ValueError(
                    f"cursor_column {cursor.name!r} is a {cursor.type}: a merge cursor must be "
                    "an integer, bigint, decimal, date or timestamp column"
                )
            nullable_keys = [k for k in self.primary_key if names[k].nullable]
            if nullable_keys:
                raise ValueError(
                    f"mode 'merge' keys rows by primary_key: declare {nullable_keys} "
                    "with nullable: false"
                )
            _lookback(self.lookback, cursor.type)
        return self

    @property
    def lookback_amount(self) -> timedelta | Decimal:
        """`lookback` parsed for the cursor column's type (merge mode)."""
        cursor = next(c for c in self.columns if c.name == self.cursor_column)
        return _lookback(self.lookback, cursor.type)


class FileEntity(_Entity):
    pattern: str = Field(description="path under the source root; {date:%Y%m%d} is the partition")
    columns: list[Column] = Field(default_factory=list)
    layout: str | None = Field(default=None, description="fixed width: entity name in the layout")
    partition_column: str | None = Field(
        default=None, description="column holding the business date (default: the file's date)"
    )
    primary_key: list[str] = Field(default_factory=list, description="columns naming a record")
    contract: ContractConfig = ContractConfig()

    @field_validator("pattern")
    @classmethod
    def _pattern_has_date(cls, v: str) -> str:
        if "{date" not in v:
            raise ValueError("pattern needs a {date:...} placeholder, e.g. x_{date:%Y%m%d}.csv")
        if v.startswith("/") or ".." in Path(v).parts:
            raise ValueError("pattern must be a relative path inside the source root")
        return v


class JsonChildTable(_Model):
    """A JSON array inside each record, loaded as rows of `raw.<source>__<entity>__<name>`,
    keyed to the parent record by the entity's primary key and the element's index."""

    path: str = Field(description="dotted path of the array in the parent object")
    columns: list[Column] = Field(min_length=1, description="paths relative to each element")


class JsonEntity(FileEntity):
    child_tables: dict[str, JsonChildTable] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _children_need_a_key(self) -> JsonEntity:
        if self.child_tables and not self.primary_key:
            raise ValueError("child_tables need the entity's primary_key to key their rows")
        return self


class ExcelEntity(FileEntity):
    sheet: str | None = Field(default=None, description="sheet name (default: the first sheet)")
    header_row: int = Field(default=1, ge=1, description="1-based row holding the column names")


class LandingConfig(_Model):
    """A folder where files are dropped; a Dagster sensor ingests each new file once.

    A dropped file whose name matches an entity's pattern is moved into the source root under
    that name (where the ingest reads it) and its day is ingested; failed, duplicate and
    unrecognised files are moved aside with the reason (`fabric.ingest.landing`).
    """

    folder: Path
    failed: Path | None = Field(default=None, description="default: <folder>/failed")
    duplicates: Path | None = Field(default=None, description="default: <folder>/duplicates")
    interval_seconds: int = Field(default=30, ge=5, description="how often the sensor looks")


class SqliteSource(_Model):
    kind: Literal["sqlite"]
    path: Path
    entities: dict[str, SqliteEntity] = Field(min_length=1)


def _table_name(value: str) -> str:
    """`table` or `schema.table` (MySQL: `database.table`)."""
    for part in value.split(".", 1):
        validate_identifier(part, "table name")
    return value


class DatabaseEntity(SqliteEntity):
    """A table of a PostgreSQL or MySQL/MariaDB source. `table` may name its schema
    (`sales.orders`); without one it is in `public` (PostgreSQL) or the source's database."""

    _table = field_validator("table")(_table_name)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_env_names(*names: str | None) -> None:
    for name in names:
        if name is not None and not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not an environment variable name")


class _ServerConnection(_Model):
    """How to reach a database server, for sources and targets alike. Credentials are never
    written in fabric.yaml: `dsn_env` names an environment variable holding a whole connection
    string, or `password_env` one holding the password for `host`/`port`/`user`/`database`."""

    dsn_env: str | None = Field(
        default=None, description="environment variable holding a connection string (key=value or URI)"
    )
    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=1, le=65535, description="default: the engine's")
    user: str | None = None
    database: str | None = None
    password_env: str | None = Field(default=None, description="environment variable, not a value")

    @model_validator(mode="after")
    def _one_way_to_connect(self) -> Self:
        _check_env_names(self.dsn_env, self.password_env)
        if self.dsn_env is None and not (self.database and self.user):
            raise ValueError("give dsn_env, or database and user (with password_env if needed)")
        if self.dsn_env is not None and (self.database or self.user or self.password_env):
            raise ValueError("give either dsn_env or database/user/password_env, not both")
        return self


class _ServerSource(_ServerConnection):
    """A database server's tables as source entities."""

    entities: dict[str, DatabaseEntity] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        # Before field validation, so that the value never reaches an error message.
        if isinstance(data, dict):
            for key in ("password", "dsn", "connection_string", "url"):
                if key in data:
                    raise ValueError(
                        f"{key}: secrets are never written in fabric.yaml; put it in an "
                        "environment variable and name that with password_env or dsn_env"
                    )
        return data


class PostgresSource(_ServerSource):
    kind: Literal["postgres"]


class MysqlSource(_ServerSource):
    """MySQL or MariaDB."""

    kind: Literal["mysql"]


class FixedWidthSource(_Model):
    kind: Literal["fixed_width"]
    root: Path
    layout: Path = Field(description="YAML file: entity -> list of fields")
    encoding: str = "ascii"
    entities: dict[str, FileEntity] = Field(min_length=1)
    landing: LandingConfig | None = None


class CsvSource(_Model):
    kind: Literal["csv"]
    root: Path
    encoding: str = "utf-8"
    delimiter: str = ","
    quote: str = '"'
    header: bool = True
    skip_rows: int = Field(default=0, ge=0, description="lines before the header (or the data)")
    decimal_separator: Literal[".", ","] = "."
    null_markers: list[str] = Field(default_factory=lambda: [""])
    entities: dict[str, FileEntity] = Field(min_length=1)
    landing: LandingConfig | None = None


class JsonSource(_Model):
    """JSON day files: `lines` (one object per line), `array` (one top-level array of objects)
    or `auto` (decided per file by its first character). Kind `jsonl` means `format: lines`."""

    kind: Literal["json", "jsonl"]
    root: Path
    format: Literal["lines", "array", "auto"] | None = Field(
        default=None, description="default: lines for kind jsonl, auto for kind json"
    )
    entities: dict[str, JsonEntity] = Field(min_length=1)
    landing: LandingConfig | None = None

    @property
    def file_format(self) -> Literal["lines", "array", "auto"]:
        return self.format or ("lines" if self.kind == "jsonl" else "auto")



class ExcelSource(_Model):
    """Excel `.xlsx` day files: one sheet per entity, a header row naming the columns."""

    kind: Literal["excel"]
    root: Path
    null_markers: list[str] = Field(default_factory=lambda: [""])
    entities: dict[str, ExcelEntity] = Field(min_length=1)
    landing: LandingConfig | None = None


class CopybookEntity(_Entity):
    """Mainframe day files of one record layout; the columns come from the source's copybook."""

    pattern: str = Field(description="path under the source root; {date:%Y%m%d} is the partition")

    _pattern = field_validator("pattern")(lambda v: FileEntity._pattern_has_date(v))


_COPYBOOK_KEYS = {"copybook", "copybooks", "copybook_contents"}


def _option_text(value: Any) -> Any:
    """A YAML option value as the string the copybook reader expects (mappings as JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return json.dumps(value)
    return value


class CopybookSource(_Model):
    """Mainframe data files (EBCDIC or ASCII) decoded with a COBOL copybook (`fabric.copybook`)."""

    kind: Literal["copybook"]
    root: Path
    copybook: Path = Field(description="the COBOL copybook file")
    options: dict[str, str] = Field(
        default_factory=dict,
        description="reader options by their Cobrix names, e.g. ebcdic_code_page: cp037",
    )
    occurs: Literal["child_tables", "arrays"] = Field(
        default="child_tables",
        description="OCCURS as child tables raw.<source>__<entity>__<field>, or as array columns",
    )
    entities: dict[str, CopybookEntity] = Field(min_length=1)

    @field_validator("options", mode="before")
    @classmethod
    def _options_as_text(cls, v: Any) -> Any:
        return {k: _option_text(value) for k, value in v.items()} if isinstance(v, dict) else v

    @field_validator("options")
    @classmethod
    def _known_options(cls, v: dict[str, str]) -> dict[str, str]:
        # Imported here so that only configurations with a copybook source load the reader.
        from fabric.copybook import OptionError
        from fabric.copybook.options import ReaderOptions

        for key in v:
            if key.strip().lower().replace("-", "_") in _COPYBOOK_KEYS:
                raise ValueError(f"{key}: name the copybook file with the source's copybook key")
        try:
            ReaderOptions.from_mapping(v)
        except OptionError as exc:
            raise ValueError(str(exc)) from None
        return v


Source = Annotated[
    SqliteSource
    | PostgresSource
    | MysqlSource
    | FixedWidthSource
    | CsvSource
    | JsonSource
    | ExcelSource
    | CopybookSource,
    Field(discriminator="kind"),
]


class WarehouseConfig(_Model):
    path: Path = Path(".fabric/warehouse.duckdb")
    analytics_path: Path = Path(".fabric/analytics.duckdb")
    ingest_memory_limit: str = Field(
        default="1GB",  # a 3 GB CSV file then ingests in 1.4 GB peak RSS (docs/benchmarks.md)
        pattern=r"^[0-9]+(\.[0-9]+)? ?(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="DuckDB's memory limit while ingesting; staged data beyond it spills to disk",
    )
    scoring_memory_limit: str = Field(
        # DuckDB caches the blocks a run writes up to its limit: with 256MB peak RSS still grew
        # from 438 MB at 1M rows to 658 MB at 10M; with 64MB it stays at ~470 MB from 3M rows
        # on, at the same speed (docs/benchmarks.md).
        default="64MB",
        pattern=r"^[0-9]+(\.[0-9]+)? ?(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="DuckDB's memory limit while scoring (reading features, writing score rows)",
    )


class PartitionsConfig(_Model):
    start_date: date
    trailing_window_days: int = Field(
        default=3, ge=0, le=60, description="the nightly run also re-materializes this many days"
    )
    schedule: str = Field(default="0 2 * * *", description="cron, UTC")


class DbtConfig(_Model):
    project_dir: Path = Path("dbt_project")
    target_path: Path = Path("target")
    keep_invocations_days: int = Field(
        default=14,
        ge=1,
        description="each dbt run's own target folder (manifest, compiled SQL, run results) is "
        "deleted this many days after it was written",
    )


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
    invalid_input: Literal["impute", "rules"] = Field(
        default="impute",
        description=(
            "recorded in the model card: a NULL or out-of-training-range feature value is imputed "
            "(NULL -> training median, out of range -> clipped to the training range) or sends "
            "the row to the rules"
        ),
    )


class BreakerConfig(_Model):
    """The circuit breaker in front of a remote model server (`fabric.scoring.breaker`).

    Closed -> open after `failure_threshold` consecutive failed batches, or when at least
    `min_calls` batches in the last `window_seconds` failed at a rate of `error_rate` or more;
    open -> half-open after `cooldown_seconds`; one probe batch then closes or re-opens it. The
    state is shared between processes: a SQLite file (default: `breaker.sqlite` beside the
    warehouse) or Redis (`store: redis`, URL from the environment variable `redis_url_env`).
    """

    failure_threshold: int = Field(default=3, ge=1)
    error_rate: float = Field(default=0.5, gt=0, le=1)
    min_calls: int = Field(default=10, ge=1, description="batches in the window before the rate counts")
    window_seconds: float = Field(default=60.0, gt=0)
    cooldown_seconds: float = Field(default=30.0, ge=0)
    store: Literal["sqlite", "redis"] = "sqlite"
    path: Path | None = Field(default=None, description="SQLite store (default: beside the warehouse)")
    redis_url_env: str | None = Field(
        default=None, description="environment variable holding the Redis URL (store: redis)"
    )

    @model_validator(mode="after")
    def _store_settings(self) -> BreakerConfig:
        if self.redis_url_env is not None and not _ENV_NAME.match(self.redis_url_env):
            raise ValueError(f"redis_url_env {self.redis_url_env!r} is not an environment variable name")
        if self.store == "redis" and self.redis_url_env is None:
            raise ValueError("store 'redis' needs redis_url_env (the variable holding the Redis URL)")
        if self.store == "redis" and self.path is not None:
            raise ValueError("path is the SQLite store's file; store 'redis' does not use it")
        return self


class RemoteScoringConfig(_Model):
    """Score on an Open Inference Protocol server instead of in this process (`fabric.scoring.remote`).

    Batches of `batch_rows` rows go to `<url>/v2/models/<model>/versions/<version>/infer`, the
    version being the registry's version of the model the run resolved (champion or challenger)
    unless `version` pins one: the server must serve the registry's versions under the same
    numbers (`fabric serve` does; for MLServer set its model's `version`). A timeout, a
    connection error or a 5xx response is retried `retries` times with exponential backoff
    (`backoff_seconds`, doubling); a 4xx fails the run at once with the server's error.
    Up to `concurrency` requests are in flight at once, so a server with more than one core
    predicts them in parallel; a group of them that the server cannot answer is rule-scored
    whole.
    """

    url: str = Field(description="the server's base URL, e.g. http://127.0.0.1:8080")
    model: str | None = Field(default=None, description="model name on the server (default: model_name)")
    version: str | None = Field(
        default=None,
        description="pin a server version (default: the registry version the run resolved)",
    )
    batch_rows: int = Field(default=10_000, ge=1, le=1_000_000, description="rows per request")
    concurrency: int = Field(
        default=2, ge=1, le=16,
        description="requests in flight at once: the server predicts them in parallel",
    )  # fmt: skip
    binary_data: bool | None = Field(
        default=None,
        description=(
            "send the features as binary tensor data (the binary tensor data extension of Triton "
            "and `fabric serve`) instead of JSON numbers; default: when the server's metadata "
            "(`GET <url>/v2`) lists `binary_tensor_data`"
        ),
    )
    timeout_seconds: float = Field(default=10.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    backoff_seconds: float = Field(default=0.2, ge=0)
    token_env: str | None = Field(
        default=None, description="environment variable holding a bearer token (never logged)"
    )
    breaker: BreakerConfig = BreakerConfig()

    @model_validator(mode="before")
    @classmethod
    def _no_credentials_in_url(cls, data: Any) -> Any:
        # Before field validation, so that the URL (and its password) never reaches an error message.
        if isinstance(data, dict) and isinstance(data.get("url"), str):
            from urllib.parse import urlsplit

            parts = urlsplit(data["url"])
            if parts.username or parts.password:
                raise ValueError("url must not hold credentials; name a bearer token with token_env")
        return data

    @field_validator("url")
    @classmethod
    def _plain_http_url(cls, v: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http:// or https:// URL with a host")
        return v.rstrip("/")

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError(f"{v!r} is not an environment variable name")
        return v


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
    challenger_percent: int = Field(
        default=0, ge=0, le=100, description="share of entities (stable hash) the challenger scores"
    )
    shadow: bool = Field(
        default=False, description="the challenger also scores every champion row, never published"
    )
    publish_rule_scored: Literal["send", "hold"] = Field(
        default="send", description="rule-scored rows: send them (scorer = rules) or hold them back"
    )
    evaluation_days: int = Field(
        default=90, ge=1, description="scored days (with known outcomes) the A/B evaluation looks back"
    )
    remote: RemoteScoringConfig | None = Field(
        default=None, description="score on an OIP model server through a circuit breaker"
    )


class RetryPolicy(_Model):
    """Retries of a batch that failed for a reason that may pass (connection refused, timeout,
    5xx, 429): `attempts` tries in all, waiting `initial_seconds` and doubling up to `max_seconds`
    (an HTTP `Retry-After` replaces the wait). Rejections (4xx, broker nacks) are not retried."""

    attempts: int = Field(default=4, ge=1, le=20)
    initial_seconds: float = Field(default=0.5, ge=0)
    max_seconds: float = Field(default=30.0, gt=0)


def _refuse_inline_secrets(data: Any, keys: tuple[str, ...]) -> Any:
    # Runs before field validation, so that the value never reaches an error message.
    if isinstance(data, dict):
        for key in keys:
            if key in data:
                raise ValueError(
                    f"{key}: secrets are never written in fabric.yaml; put it in an environment "
                    "variable and name that variable with the matching *_env key"
                )
    return data


def _env_name_field(name: str | None) -> str | None:
    """A field validator: `name` must be an environment variable name (or absent)."""
    _check_env_names(name)
    return name


class _Target(_Model):
    """What every publisher shares: batching, retries and opt-in deletes (`fabric.publish`)."""

    batch_size: int = Field(default=100_000, ge=1, le=1_000_000, description="records per delivery")
    retry: RetryPolicy = RetryPolicy()
    deletes: bool = Field(
        default=False,
        description="delete records at the target whose open day in the window has no score any more",
    )
    log_unchanged: bool = Field(
        default=False,
        description="also log a publish.sync_log row per unchanged record (counts: publish.sync_runs)",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        return _refuse_inline_secrets(data, ("password", "dsn", "secret", "token"))


class SqlitePublisher(_Target):
    kind: Literal["sqlite"]
    path: Path
    table: str = "crm_scores"
    key: str = "crm_id"

    _table = field_validator("table", "key")(lambda v: validate_identifier(v))


class _DatabaseTarget(_Target, _ServerConnection):
    """A table on a database server, upserted by `key`; connected to as sources are."""

    table: str = Field(default="crm_scores", description="table, or schema.table (MySQL: database.table)")
    key: str = "crm_id"

    _table = field_validator("table")(_table_name)
    _key = field_validator("key")(lambda v: validate_identifier(v))


class PostgresPublisher(_DatabaseTarget):
    kind: Literal["postgres"]


class MysqlPublisher(_DatabaseTarget):
    """MySQL or MariaDB."""

    kind: Literal["mysql"]


class RabbitmqPublisher(_Target):
    """CloudEvents to a durable topic exchange with publisher confirms; messages the broker cannot
    route are dead-lettered. `queue` (optional) is declared durable, bound with `routing_key` and
    given `dead_letter_exchange`, where messages its consumers reject end up."""

    kind: Literal["rabbitmq"]
    host: str = "127.0.0.1"
    port: int = Field(default=5672, ge=1, le=65535)
    virtual_host: str = "/"
    user: str = "guest"
    password_env: str | None = Field(
        default=None, description="environment variable; without it only the `guest` account works"
    )
    exchange: str = "fabric.scores"
    routing_key: str = "churn_scores"
    queue: str | None = None
    dead_letter_exchange: str = "fabric.scores.dlx"
    timeout_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _credentials(self) -> RabbitmqPublisher:
        _check_env_names(self.password_env)
        if self.password_env is None and self.user != "guest":
            raise ValueError(f"user {self.user!r} needs password_env")
        return self


class NatsPublisher(_Target):
    """CloudEvents to a JetStream stream; `Nats-Msg-Id` = message id, so the stream drops a
    re-send within its duplicate window (`duplicate_window_seconds`, set when Fabric creates it)."""

    kind: Literal["nats"]
    servers: list[str] = Field(default_factory=lambda: ["nats://127.0.0.1:4222"], min_length=1)
    stream: str = "FABRIC_SCORES"
    subject: str = "fabric.scores.churn"
    duplicate_window_seconds: float = Field(default=86_400.0, gt=0)
    token_env: str | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)

    _env = field_validator("token_env")(_env_name_field)


class RedisStreamPublisher(_Target):
    """CloudEvents appended to a Redis stream (XADD). A per-message key `<stream>:sent:<id>`
    (kept `dedup_seconds`) makes a re-send return the first entry instead of adding another."""

    kind: Literal["redis_stream"]
    host: str = "127.0.0.1"
    port: int = Field(default=6379, ge=1, le=65535)
    db: int = Field(default=0, ge=0)
    password_env: str | None = None
    stream: str = "fabric:scores:churn"
    dedup_seconds: int = Field(default=7 * 86_400, ge=1)
    timeout_seconds: float = Field(default=10.0, gt=0)

    _env = field_validator("password_env")(_env_name_field)


class WebhookPublisher(_Target):
    """Batches of CloudEvents POSTed as `application/cloudevents-batch+json`, signed with
    HMAC-SHA256 of the body under the secret in `secret_env` (header `signature_header`,
    value `sha256=<hex>`)."""

    kind: Literal["webhook"]
    url: str
    secret_env: str
    signature_header: str = "X-Fabric-Signature"
    timeout_seconds: float = Field(default=10.0, gt=0)
    batch_size: int = Field(default=500, ge=1, le=100_000, description="records per request")

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("url must not hold credentials")
        return v

    _env = field_validator("secret_env")(_env_name_field)


class CsvDropPublisher(_Target):
    """One file per day (`churn_scores_<day>.csv` or `.parquet`) replaced atomically, with a
    manifest `churn_scores_<day>.manifest.json` (rows, sha256, message ids)."""

    kind: Literal["csv_drop", "parquet_drop"]
    directory: Path


Publisher = Annotated[
    SqlitePublisher
    | PostgresPublisher
    | MysqlPublisher
    | RabbitmqPublisher
    | NatsPublisher
    | RedisStreamPublisher
    | WebhookPublisher
    | CsvDropPublisher,
    Field(discriminator="kind"),
]


class DemoConfig(_Model):
    root: Path = Path(".fabric/demo")
    customers: int = Field(default=20_000, ge=100)
    days: int = Field(default=7, ge=1)
    seed: int = 42


class ServingConfig(_Model):
    """`fabric serve`: the Open Inference Protocol server over the model registry."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    token_env: str | None = Field(
        default=None,
        description="environment variable holding the bearer token clients must send (never logged)",
    )
    model_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "OpenMP threads per inference request; 1 keeps 10k-row batches fast on a busy machine "
            "and leaves the other cores to concurrent requests"
        ),
    )

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError(f"{v!r} is not an environment variable name")
        return v


class LineageHttpConfig(_Model):
    """A Marquez-compatible OpenLineage endpoint: events are POSTed to `<url>/<endpoint>`."""

    url: str = Field(description="the server's base URL, e.g. http://127.0.0.1:5000")
    endpoint: str = "api/v1/lineage"
    api_key_env: str | None = Field(
        default=None, description="environment variable holding a bearer key (never logged)"
    )
    timeout_seconds: float = Field(default=5.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("url must not hold credentials; name a bearer key with api_key_env")
        return v.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError(f"{v!r} is not an environment variable name")
        return v


class LineageConfig(_Model):
    """OpenLineage run events for every asset materialization (`fabric.lineage`).

    `transport: file` appends JSON lines to `directory` (one file per UTC day); `http` POSTs each
    event to a Marquez-compatible endpoint. `namespace` is the OpenLineage job namespace
    (default: the project name).
    """

    enabled: bool = True
    namespace: str | None = None
    transport: Literal["file", "http"] = "file"
    directory: Path = Path(".fabric/lineage")
    http: LineageHttpConfig | None = None

    @model_validator(mode="after")
    def _http_needs_url(self) -> LineageConfig:
        if self.transport == "http" and self.http is None:
            raise ValueError("transport 'http' needs an http section with url")
        return self


class _SourceEvents(_Model):
    """What every `source_events` broker shares: how often the sensor looks and how much it takes."""

    interval_seconds: int = Field(default=30, ge=1)
    max_events: int = Field(default=100, ge=1, le=10_000, description="events handled per tick")

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        return _refuse_inline_secrets(data, ("password", "token", "secret"))


class RabbitmqSourceEvents(_SourceEvents):
    """A RabbitMQ queue of "source exported" CloudEvents that triggers ingestion (`fabric.ingest.events`).

    Invalid events are moved to `dead_letter_queue` with the reason. Credentials only from the
    environment (`user_env`, `password_env`; RabbitMQ's guest account when neither is set).
    """

    kind: Literal["rabbitmq"] = "rabbitmq"
    host: str = "127.0.0.1"
    port: int = Field(default=5672, ge=1, le=65535)
    virtual_host: str = "/"
    queue: str = Field(default="fabric.source_exported", description="the queue consumed")
    dead_letter_queue: str | None = Field(
        default=None, description="where invalid events go (default <queue>.invalid)"
    )
    user_env: str | None = Field(default=None, description="environment variable holding the user")
    password_env: str | None = Field(
        default=None, description="environment variable holding the password (never logged)"
    )

    @model_validator(mode="after")
    def _settings(self) -> RabbitmqSourceEvents:
        _check_env_names(self.user_env, self.password_env)
        return self

    @property
    def label(self) -> str:
        """What the sensor consumes, for its description and log lines."""
        return f"RabbitMQ queue {self.queue}"


_NATS_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # stream and consumer names: no '.', wildcard or space


def _check_nats_subject(subject: str, *, wildcards: bool) -> None:
    tokens = subject.split(".")
    if any(not t or any(c.isspace() for c in t) for t in tokens):
        raise ValueError(f"{subject!r} is not a NATS subject (dot-separated tokens, no spaces)")
    for i, token in enumerate(tokens):
        if "*" in token or ">" in token:
            if not wildcards:
                raise ValueError(f"{subject!r}: a subject to publish to cannot hold wildcards")
            if token not in ("*", ">") or (token == ">" and i != len(tokens) - 1):
                raise ValueError(f"{subject!r}: '*' must be a whole token and '>' the last one")


def nats_subject_covers(pattern: str, subject: str) -> bool:
    """Whether every subject matched by `subject` (itself possibly holding wildcards) is matched by
    `pattern`: `a.>` covers `a.b` and `a.*`; `a.*` covers `a.b` but not `a.b.c` nor `a.>`."""
    wanted, offered = subject.split("."), pattern.split(".")
    for i, token in enumerate(offered):
        if token == ">":
            return len(wanted) > i
        if i >= len(wanted) or wanted[i] == ">" or (token != "*" and token != wanted[i]):
            return False
    return len(wanted) == len(offered)


class NatsSourceEvents(_SourceEvents):
    """A NATS JetStream subject of "source exported" CloudEvents that triggers ingestion.

    Fabric reads it with the durable pull consumer `durable` (explicit ack) of `stream`, creating
    the stream (work-queue retention, file storage, subjects `subject` and `dead_letter_subject`)
    and the consumer when they do not exist. Invalid events are published to
    `dead_letter_subject` with the reason; a message taken but not acknowledged (a crash) is
    redelivered after `ack_wait_seconds`. Credentials only from the environment: `token_env`,
    or `user_env` with `password_env`.
    """

    kind: Literal["nats"]
    servers: list[str] = Field(default_factory=lambda: ["nats://127.0.0.1:4222"], min_length=1)
    stream: str = "FABRIC_SOURCE_EXPORTED"
    subject: str = Field(default="fabric.source_exported", description="the subject consumed")
    durable: str = Field(default="fabric_ingest", description="the durable consumer's name")
    dead_letter_subject: str | None = Field(
        default=None, description="where invalid events go (default <subject>.invalid)"
    )
    ack_wait_seconds: float = Field(
        default=60.0, gt=0, description="an event taken but not acknowledged comes back after this"
    )
    token_env: str | None = Field(default=None, description="environment variable holding a token")
    user_env: str | None = Field(default=None, description="environment variable holding the user")
    password_env: str | None = Field(
        default=None, description="environment variable holding the password (never logged)"
    )
    timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("servers")
    @classmethod
    def _server_urls(cls, v: list[str]) -> list[str]:
        from urllib.parse import urlsplit

        for url in v:
            parts = urlsplit(url)
            if parts.scheme not in ("nats", "tls") or not parts.hostname:
                raise ValueError(f"{url!r} is not a nats:// or tls:// URL with a host")
            if parts.username or parts.password:
                raise ValueError("servers must not hold credentials; name them with token_env or user_env")
        return v

    @field_validator("stream", "durable")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NATS_NAME.match(v):
            raise ValueError(f"{v!r}: use letters, digits, '_' and '-' only")
        return v

    @model_validator(mode="after")
    def _settings(self) -> NatsSourceEvents:
        _check_env_names(self.token_env, self.user_env, self.password_env)
        if self.token_env is not None and (self.user_env or self.password_env):
            raise ValueError("give token_env, or user_env with password_env, not both")
        if (self.user_env is None) != (self.password_env is None):
            raise ValueError("user_env and password_env go together")
        _check_nats_subject(self.subject, wildcards=True)
        if self.dead_letter_subject is None and ("*" in self.subject or ">" in self.subject):
            raise ValueError("a subject with wildcards needs an explicit dead_letter_subject")
        _check_nats_subject(self.dead_letters, wildcards=False)
        if nats_subject_covers(self.subject, self.dead_letters):
            raise ValueError(
                f"dead_letter_subject {self.dead_letters!r} is matched by subject {self.subject!r}: "
                "invalid events would be consumed again"
            )
        return self

    @property
    def dead_letters(self) -> str:
        """The dead letter subject: `dead_letter_subject`, or `<subject>.invalid`."""
        return self.dead_letter_subject or f"{self.subject}.invalid"

    @property
    def label(self) -> str:
        """What the sensor consumes, for its description and log lines."""
        return f"NATS subject {self.subject} (stream {self.stream})"


def _source_events_kind(value: Any) -> str:
    """The broker of a `source_events` section; `rabbitmq` when `kind` is absent (the only broker
    before NATS, so existing fabric.yaml files still load)."""
    kind = value.get("kind", "rabbitmq") if isinstance(value, dict) else getattr(value, "kind", "rabbitmq")
    return str(kind)


SourceEventsConfig = Annotated[
    Annotated[RabbitmqSourceEvents, Tag("rabbitmq")] | Annotated[NatsSourceEvents, Tag("nats")],
    Discriminator(
        _source_events_kind,
        custom_error_type="source_events_kind",
        custom_error_message="kind must be rabbitmq (the default) or nats",
    ),
]


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
    serving: ServingConfig = ServingConfig()
    lineage: LineageConfig = LineageConfig()
    source_events: SourceEventsConfig | None = None
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
    """pydantic's error location as a key path, leaving out the discriminator tags.

    The tag of a source or publisher follows its name (`sources.<name>.<kind>...`); only that
    position is dropped, since a tag may also be a key (a copybook source's `copybook`).
    """
    tags = ("sqlite", "postgres", "mysql", "fixed_width", "csv", "json", "jsonl", "excel",
            "copybook", "csv_drop", "parquet_drop", "rabbitmq", "nats", "redis_stream",
            "webhook")  # fmt: skip
    # `source_events.<kind>...`: there the tag is the second position.
    parts = [
        str(p) for i, p in enumerate(loc)
        if not (i == 2 and p in tags) and not (i == 1 and loc[0] == "source_events" and p in tags)
    ]  # fmt: skip
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
