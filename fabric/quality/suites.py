"""Expectation suites: GE 1.x `ExpectationSuite` JSON files, one per governed table.

A suite file is `expectations/<schema>.<table>.json` in Great Expectations' own format, plus a
binding in the suite's `meta` that says which table it governs and how to cut one partition:

    {"name": "features.customer_features",
     "meta": {"fabric": {"table": "features.customer_features", "partition_column": "as_of_date"}},
     "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "fabric_customer_id"},
         "severity": "critical"}, ...]}

`severity` is GE's own expectation field (`critical`, `warning`, `info`; GE's default, and so
Fabric's, is `critical`). Critical failures close the quality gate for that partition.

Loading is cheap on purpose: Dagster calls it when definitions load, and importing Great
Expectations costs about five seconds. `load_suite` parses and checks the JSON without importing
GE; expectation types are checked against the list of GE's core expectations read from the
installed package's source (or GE's registry when GE is already imported). The full check, GE
building each expectation and validating its kwargs, runs in `check_suite`, which validation
calls before touching any data.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from fabric.errors import ConfigError, FabricError
from fabric.identifiers import split_qualified, validate_identifier

if TYPE_CHECKING:
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    from fabric.config import FabricConfig

Severity = Literal["critical", "warning", "info"]
DBT_SUITE = "dbt"  # the suite name of dbt test results in meta.validation_results (reserved)
SEVERITIES: tuple[Severity, ...] = ("critical", "warning", "info")

# The keys GE's ExpectationConfigurationSchema accepts on an expectation; anything else is a typo.
_EXPECTATION_KEYS = frozenset(
    {
        "type",
        "kwargs",
        "meta",
        "notes",
        "id",
        "description",
        "severity",
        "rendered_content",
        "expectation_context",
    }
)
_SUITE_KEYS = frozenset({"name", "id", "expectations", "suite_parameters", "meta", "notes"})
# Derived expectation ids are uuid5 in this namespace, so they look like GE's own (UUID) ids.
_ID_NAMESPACE = uuid.UUID("8f5b7a36-0c8e-4f0a-9d0e-6a1c3f2b9e41")


class SuiteError(FabricError):
    """A suite file is missing, is not valid JSON, or holds an expectation GE cannot run."""


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation of a suite, as written in the file (position `index`, 0-based)."""

    index: int
    type: str
    kwargs: Mapping[str, Any]
    severity: Severity
    expectation_id: str
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns this expectation reads (empty for table-level expectations)."""
        names: list[str] = []
        for key in ("column", "column_A", "column_B"):
            if isinstance(self.kwargs.get(key), str):
                names.append(self.kwargs[key])
        column_list = self.kwargs.get("column_list")
        if isinstance(column_list, list):
            names.extend(c for c in column_list if isinstance(c, str))
        return tuple(names)

    @property
    def column_name(self) -> str | None:
        """The column(s) as stored in `meta.validation_results.column_name`."""
        return ",".join(self.columns) or None

    @property
    def label(self) -> str:
        """Short human name, e.g. `expect_column_values_to_be_in_set(country_code)`."""
        return f"{self.type}({', '.join(self.columns)})" if self.columns else self.type


@dataclass(frozen=True)
class Suite:
    """A parsed suite file bound to the table it governs."""

    name: str
    path: Path
    table: str
    partition_column: str
    expectations: tuple[ExpectationSpec, ...]

    def where(self, index: int) -> str:
        """`file: expectation #i (type)`, the prefix of every error about one expectation."""
        spec = self.expectations[index]
        return f"{self.path}: expectation #{index} ({spec.type})"


def load_suite(path: Path) -> Suite:
    """Parse and check one suite file; raise SuiteError naming the file and expectation."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read suite file ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SuiteError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    return parse_suite(data, path)


def parse_suite(data: Any, path: Path) -> Suite:
    """Check an already-parsed suite document (`path` is used in messages and the name check)."""
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: expected a JSON object (a GE ExpectationSuite) at the top level")
    unknown = sorted(set(data) - _SUITE_KEYS)
    if unknown:
        raise SuiteError(f"{path}: unknown suite key(s) {unknown}; allowed: {sorted(_SUITE_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise SuiteError(f"{path}: 'name' must be a non-empty string")
    if name == DBT_SUITE:
        raise SuiteError(f"{path}: the suite name {DBT_SUITE!r} is reserved for dbt test results")
    table, partition_column = _binding(data.get("meta"), path)
    items = data.get("expectations")
    if not isinstance(items, list) or not items:
        raise SuiteError(f"{path}: 'expectations' must be a non-empty list")
    specs = tuple(_expectation(item, index, path) for index, item in enumerate(items))
    seen: dict[str, int] = {}
    for spec in specs:
        if spec.expectation_id in seen:
            raise SuiteError(
                f"{path}: expectation #{spec.index} ({spec.type}) duplicates expectation "
                f"#{seen[spec.expectation_id]} (same id, or same type and kwargs)"
            )
        seen[spec.expectation_id] = spec.index
    return Suite(name, path, table, partition_column, specs)


def load_suites(config: FabricConfig) -> dict[str, Suite]:
    """Every suite in `quality.suites_dir`, by table; each governed table must have one."""
    directory = config.resolve(config.quality.suites_dir)
    suites: dict[str, Suite] = {}
    for path in sorted(directory.glob("*.json")):
        suite = load_suite(path)
        suites[suite.table] = suite
    missing = [t for t in config.quality.governed_tables if t not in suites]
    if missing:
        expected = ", ".join(str(directory / f"{t}.json") for t in missing)
        raise SuiteError(f"no expectation suite for governed table(s) {missing}: expected {expected}")
    return suites


def suite_for(config: FabricConfig, table: str) -> Suite:
    """The suite governing `table` (`<suites_dir>/<table>.json`)."""
    path = config.resolve(config.quality.suites_dir) / f"{table}.json"
    if not path.is_file():
        raise SuiteError(f"{path}: no expectation suite for table {table}")
    return load_suite(path)


def check_suite(
    suite: Suite, specs: Sequence[ExpectationSpec] | None = None
) -> list[ExpectationConfiguration]:
    """Build every expectation (or only `specs`) with GE: unknown types and bad kwargs raise.

    Imports GE. Returns GE expectation configurations in suite order, each carrying the spec's
    id and severity (GE's ExpectationSuite refuses ready-built Expectation objects with an id).
    """
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )
    from great_expectations.expectations.metadata_types import FailureSeverity

    built: list[ExpectationConfiguration] = []
    for spec in suite.expectations if specs is None else specs:
        raw = spec.raw
        try:
            configuration = ExpectationConfiguration(
                type=spec.type,
                kwargs=dict(spec.kwargs),
                meta=raw.get("meta"),
                notes=raw.get("notes"),
                description=raw.get("description"),
                severity=FailureSeverity(spec.severity),
                id=spec.expectation_id,
            )
            configuration.to_domain_obj()  # resolves the type, validates kwargs
            built.append(configuration)
        except Exception as exc:  # GE raises registry, pydantic and its own errors here
            raise SuiteError(f"{suite.where(spec.index)}: {_first_line(exc)}") from None
    return built


def known_expectation_types() -> frozenset[str] | None:
    """Names of the expectation types GE can run, or None when they cannot be determined cheaply.

    If GE is already imported its registry is used. Otherwise the relative imports of
    `great_expectations/expectations/core/__init__.py` are read from source: GE registers the
    expectations that module imports (1.24 imports one deprecated type it does not register,
    which `check_suite` then rejects). A test keeps this list covering the registry.
    """
    if "great_expectations.expectations.registry" in sys.modules:
        from great_expectations.expectations.registry import (
            list_registered_expectation_implementations,
        )

        return frozenset(list_registered_expectation_implementations())
    return _core_expectation_types()


@cache
def _core_expectation_types() -> frozenset[str] | None:
    spec = importlib.util.find_spec("great_expectations")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations)))
    try:
        tree = ast.parse((package / "expectations" / "core" / "__init__.py").read_text("utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    names = frozenset(
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
    )
    return names or None


def _binding(meta: Any, path: Path) -> tuple[str, str]:
    fabric = meta.get("fabric") if isinstance(meta, dict) else None
    if not isinstance(fabric, dict):
        raise SuiteError(
            f"{path}: meta.fabric is missing; add "
            '"meta": {"fabric": {"table": "<schema>.<table>", "partition_column": "<column>"}}'
        )
    table, partition_column = fabric.get("table"), fabric.get("partition_column")
    if not isinstance(table, str) or not isinstance(partition_column, str):
        raise SuiteError(
            f"{path}: meta.fabric needs 'table' (schema.table) and 'partition_column' strings"
        )
    try:
        split_qualified(table)
        validate_identifier(partition_column, "partition column")
    except ConfigError as exc:
        raise SuiteError(f"{path}: meta.fabric: {exc}") from None
    if path.name != f"{table}.json":
        raise SuiteError(
            f"{path}: suite for table {table} must be named {table}.json (one suite per table)"
        )
    return table, partition_column


def _expectation(item: Any, index: int, path: Path) -> ExpectationSpec:
    where = f"{path}: expectation #{index}"
    if not isinstance(item, dict):
        raise SuiteError(f"{where}: expected a JSON object with 'type' and 'kwargs'")
    kind = item.get("type")
    if not isinstance(kind, str) or not kind:
        raise SuiteError(f"{where}: 'type' must be the name of a GE expectation")
    where = f"{where} ({kind})"
    unknown = sorted(set(item) - _EXPECTATION_KEYS)
    if unknown:
        raise SuiteError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_EXPECTATION_KEYS)}")
    known = known_expectation_types()
    if known is not None and kind not in known:
        close = difflib.get_close_matches(kind, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise SuiteError(f"{where}: unknown expectation type {kind!r}{hint}")
    kwargs = item.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise SuiteError(f"{where}: 'kwargs' must be a JSON object")
    severity = item.get("severity", "critical")
    if severity not in SEVERITIES:
        raise SuiteError(f"{where}: severity must be one of {list(SEVERITIES)}, got {severity!r}")
    return ExpectationSpec(
        index=index,
        type=kind,
        kwargs=kwargs,
        severity=cast(Severity, severity),
        expectation_id=_expectation_id(item, where),
        raw=item,
    )


def _expectation_id(item: Mapping[str, Any], where: str) -> str:
    """GE's `id` when the file has one (it must be a UUID), else uuid5 of type and kwargs."""
    given = item.get("id")
    if given is not None:
        try:
            return str(uuid.UUID(str(given)))
        except ValueError:
            raise SuiteError(f"{where}: 'id' must be a UUID, got {given!r}") from None
    canonical = json.dumps(
        {"type": item["type"], "kwargs": item.get("kwargs", {})}, sort_keys=True, default=str
    )
    return str(uuid.uuid5(_ID_NAMESPACE, canonical))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[:4])
