"""`fabric models list|show|promote|rollback|history` and `fabric train --window` on a real registry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from scoring_support import (  # noqa: F401 (one_openmp_thread: an autouse fixture)
    CHALLENGER_WINDOW,
    REPO,
    one_openmp_thread,
    trained_estate,
)
from typer.testing import CliRunner

from fabric.cli import app
from fabric.config import FabricConfig
from fabric.errors import ModelError
from fabric.scoring import cli as models_cli
from fabric.scoring.registry import CHALLENGER, CHAMPION, ModelRegistry

runner = CliRunner()


trained_home = trained_estate()


@pytest.fixture
def registry(
    trained_home: Path, fabric_home: Path, config: FabricConfig, monkeypatch: pytest.MonkeyPatch
) -> ModelRegistry:
    shutil.copytree(trained_home, fabric_home, dirs_exist_ok=True)
    monkeypatch.setattr(models_cli.console, "width", 200)  # no wrapped table cells
    return ModelRegistry(config.resolve(config.scoring.registry_dir))


def _invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False, terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_list_and_show(registry: ModelRegistry) -> None:
    listing = _invoke("models", "list")
    assert "v2" in listing and "challenger" in listing and "v1" in listing and "champion" in listing
    assert listing.index("v2") < listing.index("v1")  # newest first

    shown = _invoke("models", "show", "challenger")
    assert "churn v2 challenger" in shown
    assert f"{CHALLENGER_WINDOW.start}" in shown and "logins_7d" in shown and "invalid input: impute" in shown
    card = json.loads(_invoke("models", "show", "v1", "--json"))
    assert card["version"] == 1 and card["training_window_end"] and card["feature_reference"]
    assert {f["name"] for f in card["features"]} >= {"tenure_days", "cancel_page_views_30d"}


def test_promote_then_rollback_twice(registry: ModelRegistry) -> None:
    assert _invoke("models", "promote").strip() == "churn: champion is now v2 (was v1)"
    assert registry.aliases("churn") == {CHAMPION: 2}
    with pytest.raises(ModelError, match="no challenger"):
        runner.invoke(app, ["models", "promote"], catch_exceptions=False)

    registry.set_alias("churn", CHALLENGER, 1)
    registry.promote("churn")  # champion history: 1, 2, 1
    assert _invoke("models", "rollback").strip() == "churn: champion rolled back to v2 (was v1)"
    assert _invoke("models", "rollback").strip() == "churn: champion rolled back to v1 (was v2)"
    with pytest.raises(ModelError, match="no earlier champion"):
        registry.rollback("churn")
    actions = [(h["alias"], h["action"], h["version"]) for h in registry.history("churn")]
    assert actions[-2:] == [(CHAMPION, "rollback", 2), (CHAMPION, "rollback", 1)]
    assert (CHALLENGER, "promote", None) in actions  # promoting clears the challenger
    assert "cli-rollback-" in _invoke("models", "history")


def test_train_window_registers_a_challenger(registry: ModelRegistry, tmp_path: Path) -> None:
    # the estate's 40 days need the short label horizon of `short_history`
    text = (REPO / "fabric.yaml").read_text()
    for old, new in (
        ("churn_horizon_days: 30", "churn_horizon_days: 7"),
        ("sample_every_days: 7", "sample_every_days: 2"),
        ("holdout_days: 14", "holdout_days: 7"),
    ):
        assert old in text
        text = text.replace(old, new)
    (tmp_path / "fabric.yaml").write_text(text)
    output = _invoke("train", "--window", "2026-02-20..2026-03-10", "--config", str(tmp_path / "fabric.yaml"))
    card = json.loads(output)
    assert card["version"] == 3 and card["training_window_start"] >= "2026-02-20"
    assert card["training_window_end"] <= "2026-03-10"
    assert registry.aliases("churn") == {CHAMPION: 1, CHALLENGER: 3}
    bad = runner.invoke(app, ["train", "--window", "2026-02-20"])
    assert bad.exit_code != 0 and "expected A..B" in bad.output
