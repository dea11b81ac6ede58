"""A file-based model registry: numbered versions with model cards, and aliases.

Layout under `scoring.registry_dir`:

    <model_name>/v<N>/model.joblib       the fitted estimator (joblib)
    <model_name>/v<N>/model_card.json    what it is, what it was trained on, how well it does
    <model_name>/aliases.json            {"aliases": {"champion": N, ...}, "history": [...]}

A version directory is written under a temporary name and renamed into place, so a reader never
sees half a version, and two trainers racing for the same number both end up with their own.
Versions are immutable; the aliases `champion` and `challenger` point at them. Every alias change
is appended to `history` with its action (`set`, `promote`, `rollback`, `remove`), so a rollback
knows which champion came before: replaying the champion changes as a stack (set and promote
push, rollback pops) gives the previous champion even after several rollbacks. Alias changes
hold an exclusive lock on `<model_name>/.aliases.lock`, so concurrent promotions serialise.

`model.joblib` is a pickle: loading it runs code. The card stores the artifact's SHA-256 and
`load` refuses a file that does not match, so a swapped or truncated file is caught; the registry
directory itself must still be writable only by the pipeline.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import joblib
from pydantic import BaseModel, ConfigDict

from fabric.errors import ModelError
from fabric.meta import utcnow

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES = (CHAMPION, CHALLENGER)
_VERSION_DIR = re.compile(r"^v([1-9][0-9]*)$")
_MODEL_FILE = "model.joblib"
_CARD_FILE = "model_card.json"
_ALIASES_FILE = "aliases.json"
_LOCK_FILE = ".aliases.lock"


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureSpec(_Card):
    """One input column of a model: its name, warehouse type and the values it was trained on.

    `impute` (the training median) replaces a NULL; `min`/`max` is the training range. Cards
    written before these were recorded have them unset: NULLs then reach the model as NaN.
    """

    name: str
    dtype: str
    impute: float | None = None
    min: float | None = None
    max: float | None = None


class Histogram(_Card):
    """A reference distribution for drift: bin edges and the share of rows in each bin.

    Bins are `(-inf, e0], (e0, e1], ..., (e_last, inf)` (len(edges) + 1 shares); `null_share` is
    the share of NULLs, kept apart from the bins.
    """

    edges: list[float]
    shares: list[float]
    null_share: float = 0.0


class EvaluationMetrics(_Card):
    """A scorer's quality on the held-out window, at the configured decision threshold."""

    auc: float
    pr_auc: float
    precision: float
    recall: float
    threshold: float
    rows: int
    positives: int


class ModelCard(_Card):
    """Everything needed to trust, reproduce and safely apply one model version.

    `features` is the model's signature: scoring refuses a features table that does not match
    it. `metrics` holds the held-out metrics of the model (`model`) and of the rule baseline
    (`rules`, absent when no rules are configured) on the same rows. `invalid_input` says what
    scoring does with a NULL or out-of-range feature value (see `fabric.scoring.inputs`).
    `feature_reference` and `score_reference` are the training window's distributions that the
    drift checks compare each scored day against.
    """

    name: str
    version: int = 0
    algorithm: str
    params: dict[str, Any]
    features: list[FeatureSpec]
    label: str
    horizon_days: int
    training_as_of_dates: list[date]
    training_window_start: date | None = None
    training_window_end: date | None = None
    holdout_start: date
    holdout_end: date
    training_rows: int
    training_positives: int
    training_data_sha256: str
    metrics: dict[str, EvaluationMetrics]
    created_at: datetime
    created_by_run: str
    sklearn_version: str
    artifact_sha256: str = ""
    invalid_input: Literal["impute", "rules"] = "impute"
    feature_reference: dict[str, Histogram] = {}
    score_reference: Histogram | None = None

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-compatible data (as stored in `model_card.json`)."""
        return self.model_dump(mode="json")


def _champion_stack(history: list[dict[str, Any]]) -> list[int]:
    """The champions in force, oldest first: set/promote push, rollback pops, remove clears."""
    stack: list[int] = []
    for change in history:
        if change.get("alias") != CHAMPION:
            continue
        action = change.get("action", "set")
        if action == "rollback":
            stack.pop()
        elif action == "remove":
            stack.clear()
        elif not stack or stack[-1] != int(change["version"]):
            stack.append(int(change["version"]))
    return stack


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json_atomically(path: Path, data: object) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class ModelRegistry:
    """The models under one registry directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    def _model_dir(self, name: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
            raise ModelError(f"invalid model name {name!r}: use letters, digits, _ . -")
        return self.root / name

    def list_versions(self, name: str) -> list[int]:
        """Registered versions of `name`, oldest first (empty if none)."""
        model_dir = self._model_dir(name)
        if not model_dir.is_dir():
            return []
        found = (_VERSION_DIR.match(p.name) for p in model_dir.iterdir() if p.is_dir())
        return sorted(int(m.group(1)) for m in found if m)

    def register(self, model: object, card: ModelCard) -> int:
        """Store `model` with `card` as the next version of `card.name`; return the version.

        The stored card gets the version number and the artifact's SHA-256 filled in.
        """
        model_dir = self._model_dir(card.name)
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=".staging-"))
        try:
            joblib.dump(model, staging / _MODEL_FILE)
            artifact_sha256 = _sha256(staging / _MODEL_FILE)
            version = max(self.list_versions(card.name), default=0) + 1
            while True:
                stored = card.model_copy(update={"version": version, "artifact_sha256": artifact_sha256})
                (staging / _CARD_FILE).write_text(
                    json.dumps(stored.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
                )
                try:
                    # rename() of a directory fails if the target exists and is not empty: a
                    # concurrent trainer took this number, so take the next one.
                    os.rename(staging, model_dir / f"v{version}")
                    return version
                except OSError:
                    if not (model_dir / f"v{version}").exists():
                        raise
                    version += 1
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _read_aliases(self, name: str) -> dict[str, Any]:
        path = self._model_dir(name) / _ALIASES_FILE
        if not path.is_file():
            return {"aliases": {}, "history": []}
        try:
            data = json.loads(path.read_text("utf-8"))
            return {"aliases": dict(data["aliases"]), "history": list(data["history"])}
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path}: not a Fabric alias file ({exc}); restore it from backup") from None

    @contextmanager
    def _alias_transaction(self, name: str) -> Iterator[dict[str, Any]]:
        """The alias file's data under an exclusive lock, written back if the block succeeds."""
        model_dir = self._model_dir(name)
        model_dir.mkdir(parents=True, exist_ok=True)
        with (model_dir / _LOCK_FILE).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read_aliases(name)
            yield data
            _write_json_atomically(model_dir / _ALIASES_FILE, data)

    @staticmethod
    def _change(
        data: dict[str, Any], alias: str, version: int | None, action: str, run_id: str | None
    ) -> None:
        data["history"].append(
            {
                "alias": alias,
                "action": action,
                "version": version,
                "previous": data["aliases"].get(alias),
                "set_at": utcnow().isoformat(),
                "run_id": run_id,
            }
        )
        if version is None:
            data["aliases"].pop(alias, None)
        else:
            data["aliases"][alias] = version

    def aliases(self, name: str) -> dict[str, int]:
        """Alias -> version for model `name`."""
        return {k: int(v) for k, v in self._read_aliases(name)["aliases"].items()}

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every alias change of `name`, oldest first (entries before actions were recorded
        have no `action`; they were `set`)."""
        return list(self._read_aliases(name)["history"])

    def has_alias(self, name: str, alias: str) -> bool:
        return alias in self.aliases(name)

    def set_alias(self, name: str, alias: str, version: int, run_id: str | None = None) -> None:
        """Point `alias` at `version` (which must exist) and log the change."""
        if version not in self.list_versions(name):
            raise ModelError(f"model {name!r} has no version {version} in {self.root}")
        with self._alias_transaction(name) as data:
            self._change(data, alias, version, "set", run_id)

    def remove_alias(self, name: str, alias: str, run_id: str | None = None) -> None:
        """Drop `alias` (no-op if unset), logging the change."""
        with self._alias_transaction(name) as data:
            if alias in data["aliases"]:
                self._change(data, alias, None, "remove", run_id)

    def promote(self, name: str, run_id: str | None = None) -> int:
        """Make the challenger the champion and clear the challenger; return the new champion."""
        with self._alias_transaction(name) as data:
            challenger = data["aliases"].get(CHALLENGER)
            if challenger is None:
                raise ModelError(
                    f"model {name!r} has no challenger in {self.root} to promote; train one with "
                    "`fabric train --window A..B`"
                )
            self._change(data, CHAMPION, int(challenger), "promote", run_id)
            self._change(data, CHALLENGER, None, "promote", run_id)
        return int(challenger)

    def rollback(self, name: str, run_id: str | None = None) -> int:
        """Point the champion back at the champion before it; return that version."""
        with self._alias_transaction(name) as data:
            stack = _champion_stack(data["history"])
            if len(stack) < 2:
                raise ModelError(
                    f"model {name!r} has no earlier champion to roll back to in "
                    f"{self._model_dir(name) / _ALIASES_FILE}"
                )
            previous = stack[-2]
            self._change(data, CHAMPION, previous, "rollback", run_id)
        return previous

    def resolve(self, name: str, alias_or_version: str | int = CHAMPION) -> int:
        """The version number an alias (or `"v3"`, `"3"`, `3`) refers to."""
        text = str(alias_or_version)
        number = re.fullmatch(r"v?([1-9][0-9]*)", text)
        if number:
            version = int(number.group(1))
            if version not in self.list_versions(name):
                raise ModelError(f"model {name!r} has no version {version} in {self.root}")
            return version
        aliases = self.aliases(name)
        if text not in aliases:
            known = ", ".join(sorted(aliases)) or "none"
            raise ModelError(
                f"model {name!r} has no alias {text!r} in {self.root} (aliases: {known}); "
                "train one with `fabric train`"
            )
        return aliases[text]

    def load_card(self, name: str, alias_or_version: str | int = CHAMPION) -> ModelCard:
        version = self.resolve(name, alias_or_version)
        path = self._model_dir(name) / f"v{version}" / _CARD_FILE
        return ModelCard.model_validate_json(path.read_text("utf-8"))

    def load(self, name: str, alias_or_version: str | int = CHAMPION) -> tuple[Any, ModelCard]:
        """The fitted model and its card; refuses an artifact whose hash differs from the card."""
        card = self.load_card(name, alias_or_version)
        path = self._model_dir(name) / f"v{card.version}" / _MODEL_FILE
        if _sha256(path) != card.artifact_sha256:
            raise ModelError(
                f"{path}: SHA-256 does not match its model card; the file was changed after "
                "registration. Re-register the model rather than loading it."
            )
        return joblib.load(path), card
