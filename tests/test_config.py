"""fabric.yaml validation: errors name the file, the key path and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fabric.config import load_config, parse_config
from fabric.errors import ConfigError
from fabric.identifiers import qualified

REPO = Path(__file__).resolve().parents[1]


def _demo() -> dict:
    return yaml.safe_load((REPO / "fabric.yaml").read_text())


def test_demo_config_loads(config) -> None:
    assert config.project == "brightwave"
    assert ("support", "tickets") in config.source_entities()
    assert config.resolve(config.warehouse.path).name == "warehouse.duckdb"


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: configuration file not found"):
        load_config(tmp_path / "nope.yaml")


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "fabric.yaml"
    bad.write_text("project: [unclosed\n")
    with pytest.raises(ConfigError, match=r"fabric\.yaml: not valid YAML"):
        load_config(bad)


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    data = _demo()
    data["partitions"]["trailing_window_days"] = "three"
    with pytest.raises(ConfigError, match=r"partitions\.trailing_window_days: .*integer"):
        parse_config(data, tmp_path, "fabric.yaml")


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    data = _demo()
    data["sources"]["crm"]["entities"]["customers"]["primary_kye"] = ["crm_id"]
    with pytest.raises(ConfigError, match=r"sources\.crm\.entities\.customers\.primary_kye"):
        parse_config(data, tmp_path, "fabric.yaml")


def test_partitioned_sqlite_needs_a_date_column(tmp_path: Path) -> None:
    data = _demo()
    del data["sources"]["crm"]["entities"]["contacts"]["date_column"]
    with pytest.raises(ConfigError, match="needs date_column"):
        parse_config(data, tmp_path, "fabric.yaml")


def test_unknown_source_kind(tmp_path: Path) -> None:
    data = _demo()
    data["sources"]["crm"]["kind"] = "oracle"
    with pytest.raises(ConfigError, match=r"sources\.crm"):
        parse_config(data, tmp_path, "fabric.yaml")


def test_identifiers_from_config_are_validated(tmp_path: Path) -> None:
    data = _demo()
    data["sources"]["crm"]["entities"]["customers"]["table"] = "customers; DROP TABLE x"
    with pytest.raises(ConfigError, match="invalid table name"):
        parse_config(data, tmp_path, "fabric.yaml")
    assert qualified("raw", "crm__customers") == '"raw"."crm__customers"'


def test_environment_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _demo()
    data["publishers"]["crm"]["path"] = "${CRM_DB_PATH}"
    monkeypatch.delenv("CRM_DB_PATH", raising=False)
    with pytest.raises(ConfigError, match=r"publishers\.crm\.path: environment variable CRM_DB_PATH"):
        parse_config(data, tmp_path, "fabric.yaml")
    monkeypatch.setenv("CRM_DB_PATH", "/srv/crm.sqlite")
    cfg = parse_config(data, tmp_path, "fabric.yaml")
    assert str(cfg.publishers["crm"].path) == "/srv/crm.sqlite"  # type: ignore[union-attr]


def test_pattern_must_stay_inside_the_root(tmp_path: Path) -> None:
    data = _demo()
    data["sources"]["web"]["entities"]["events"]["pattern"] = "../../etc/{date:%Y%m%d}.jsonl"
    with pytest.raises(ConfigError, match="relative path inside the source root"):
        parse_config(data, tmp_path, "fabric.yaml")
