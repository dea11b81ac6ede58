"""Landing zone: files dropped into a folder, each ingested once, none skipped silently.

A file source with `landing:` has an inbox folder. `scan` looks at every file in it:

- a name that resolves outside the folder (a symlink, `..`) is refused and moved aside (the link
  itself, never its target), as is a name that matches no entity pattern;
- a file is identified by its name and the SHA-256 of its content. One already recorded as
  `queued` or `processed` is a duplicate: recorded as such and moved to the duplicates folder;
- any other file is moved into the source root under its own name, which is the name the
  entity's pattern gives its day (so the ingest, and any later re-run of that day, reads it
  there), recorded as `queued` with a run key (name + hash), and its day is ingested.

`settle` closes queued files once their run has finished: `processed`, or `failed` and moved
aside. Every outcome is a row of `meta.landing_files` (status, reason); a file moved aside gets a
`<name>.reason.txt` next to it. This module is plain Python (the Dagster sensor in
`assets/sensors.py` only calls it), so it is tested without Dagster.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb

from fabric.config import (
    CsvSource,
    ExcelSource,
    FabricConfig,
    FileEntity,
    FixedWidthSource,
    JsonSource,
)
from fabric.errors import ConfigError
from fabric.meta import utcnow

LandingSource = CsvSource | ExcelSource | FixedWidthSource | JsonSource
_FORMAT_FIELDS = {"Y": r"\d{4}", "m": r"\d{2}", "d": r"\d{2}", "y": r"\d{2}", "j": r"\d{3}"}
_IGNORED_SUFFIXES = (".part", ".tmp", ".reason.txt")


@dataclass(frozen=True)
class Landed:
    """What happened to one dropped file."""

    name: str
    status: str  # queued | duplicate | refused
    reason: str
    entity: str | None = None
    day: date | None = None
    sha256: str | None = None
    run_key: str | None = None
    stored_path: str | None = None


@dataclass(frozen=True)
class Folders:
    inbox: Path
    root: Path
    failed: Path
    duplicates: Path


def folders(config: FabricConfig, source: str) -> Folders:
    declared = config.sources[source]
    landing = getattr(declared, "landing", None)
    if landing is None:
        raise ConfigError(f"sources.{source}: no landing folder configured")
    inbox = config.resolve(landing.folder).resolve()
    return Folders(
        inbox=inbox,
        root=config.resolve(declared.root).resolve(),  # type: ignore[union-attr]
        failed=config.resolve(landing.failed).resolve() if landing.failed else inbox / "failed",
        duplicates=(
            config.resolve(landing.duplicates).resolve() if landing.duplicates else inbox / "duplicates"
        ),
    )


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A regular expression matching the names an entity pattern renders (numeric date
    fields only: %Y %m %d %y %j), with the date text as group `date`."""
    match = re.fullmatch(r"(.*)\{date:([^}]*)\}(.*)", pattern)
    if match is None:
        raise ConfigError(f"file pattern {pattern!r}: expected one {{date:<format>}} placeholder")
    before, fmt, after = match.groups()
    parts = []
    for piece in re.split(r"(%.)", fmt):
        if piece.startswith("%") and len(piece) == 2:
            if piece[1] not in _FORMAT_FIELDS:
                raise ConfigError(f"file pattern {pattern!r}: %{piece[1]} cannot be matched")
            parts.append(_FORMAT_FIELDS[piece[1]])
        else:
            parts.append(re.escape(piece))
    return re.compile(f"{re.escape(before)}(?P<date>{''.join(parts)}){re.escape(after)}")


def match_entity(config: FabricConfig, source: str, name: str) -> tuple[str, date] | None:
    """The entity and day a dropped file name stands for, if any."""
    for entity, spec in config.sources[source].entities.items():
        if not isinstance(spec, FileEntity):
            continue
        pattern = spec.pattern
        if "/" in pattern:  # landing files are flat: only the file name part is matched
            continue
        found = pattern_regex(pattern).fullmatch(name)
        if found is None:
            continue
        fmt = re.fullmatch(r".*\{date:([^}]*)\}.*", pattern)
        assert fmt is not None
        try:
            return entity, datetime.strptime(found.group("date"), fmt.group(1)).date()
        except ValueError:
            continue
    return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inside(folder: Path, path: Path) -> bool:
    """Whether `path` is a regular file of `folder` itself: not a symlink, and resolving
    inside it (so `..` or a link to elsewhere is refused)."""
    return (
        not path.is_symlink()
        and path.resolve().parent == folder.resolve()
        and path.resolve().is_relative_to(folder.resolve())
    )


def _move_aside(path: Path, folder: Path, reason: str) -> Path:
    """Move `path` (a link stays a link) into `folder`, with its reason in a sidecar file."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{utcnow():%Y%m%dT%H%M%S%f}_{path.name}"
    os.replace(path, target)
    target.with_name(target.name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")
    return target


def _record(con: duckdb.DuckDBPyConnection, source: str, landed: Landed, size: int | None) -> None:
    now = utcnow()
    con.execute(
        "INSERT INTO meta.landing_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
        [source, landed.entity, landed.name, landed.sha256, size, landed.day, landed.status,
         landed.reason, landed.run_key, landed.stored_path, now, now],
    )  # fmt: skip


def scan(con: duckdb.DuckDBPyConnection, config: FabricConfig, source: str) -> list[Landed]:
    """Handle every file in the source's landing folder (see the module docstring)."""
    where = folders(config, source)
    where.inbox.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for path in sorted(where.inbox.iterdir(), key=lambda p: p.name):
        if path.name.startswith(".") or path.name.endswith(_IGNORED_SUFFIXES):
            continue  # hidden, still being written, or our own reason files
        if path.is_dir() and not path.is_symlink():
            continue
        outcome, size = _land(con, config, source, where, path)
        _record(con, source, outcome, size)
        outcomes.append(outcome)
    return outcomes


def _land(
    con: duckdb.DuckDBPyConnection, config: FabricConfig, source: str, where: Folders, path: Path
) -> tuple[Landed, int | None]:
    name = path.name
    if not inside(where.inbox, path):
        reason = f"{path} resolves to {path.resolve()}, outside the landing folder: refused"
        stored = _move_aside(path, where.failed, reason)
        return Landed(name, "refused", reason, stored_path=str(stored)), None
    found = match_entity(config, source, name)
    if found is None:
        patterns = ", ".join(
            s.pattern for s in config.sources[source].entities.values() if isinstance(s, FileEntity)
        )
        reason = f"{name} matches no entity pattern of source {source} ({patterns})"
        stored = _move_aside(path, where.failed, reason)
        return Landed(name, "refused", reason, stored_path=str(stored)), None
    entity, day = found
    digest, size = sha256_of(path), path.stat().st_size
    earlier = con.execute(
        "SELECT status, updated_at, count(*) OVER () FROM meta.landing_files "
        "WHERE source = ? AND file_name = ? AND sha256 = ? AND status IN ('queued', 'processed') "
        "ORDER BY updated_at LIMIT 1",
        [source, name, digest],
    ).fetchone()
    if earlier is not None:
        reason = f"identical to {name} ({earlier[0]} since {earlier[1]:%Y-%m-%d %H:%M:%S} UTC)"
        stored = _move_aside(path, where.duplicates, reason)
        landed = Landed(name, "duplicate", reason, entity, day, digest, stored_path=str(stored))
        return landed, size
    attempts = con.execute(
        "SELECT count(*) FROM meta.landing_files WHERE source = ? AND file_name = ? "
        "AND sha256 = ? AND status = 'failed'",
        [source, name, digest],
    ).fetchone()  # a file that failed may be dropped again: its new run needs a new key
    run_key = f"{name}:{digest[:16]}" + (f":{attempts[0] + 1}" if attempts and attempts[0] else "")
    target = where.root / name
    where.root.mkdir(parents=True, exist_ok=True)
    replaced = target.exists()
    os.replace(path, target)
    reason = f"moved to {target} for {entity} {day}" + (" (replacing the earlier file)" if replaced else "")
    return Landed(name, "queued", reason, entity, day, digest, run_key, str(target)), size


def queued(con: duckdb.DuckDBPyConnection, source: str) -> list[tuple[str, str, str]]:
    """(run key, file name, stored path) of the files waiting for their run to finish."""
    return [
        (str(k), str(n), str(p))
        for k, n, p in con.execute(
            "SELECT run_key, file_name, stored_path FROM meta.landing_files "
            "WHERE source = ? AND status = 'queued' ORDER BY detected_at",
            [source],
        ).fetchall()
    ]


def settle(
    con: duckdb.DuckDBPyConnection,
    config: FabricConfig,
    source: str,
    run_key: str,
    run_id: str,
    succeeded: bool,
    reason: str,
) -> None:
    """Close a queued file: `processed`, or `failed` and moved aside with `reason`."""
    row = con.execute(
        "SELECT stored_path FROM meta.landing_files WHERE source = ? AND run_key = ? AND status = 'queued'",
        [source, run_key],
    ).fetchone()
    if row is None:
        return
    stored = str(row[0])
    if not succeeded and Path(stored).is_file():
        stored = str(_move_aside(Path(stored), folders(config, source).failed, reason))
    con.execute(
        "UPDATE meta.landing_files SET status = ?, reason = ?, run_id = ?, stored_path = ?, "
        "updated_at = ? WHERE source = ? AND run_key = ? AND status = 'queued'",
        ["processed" if succeeded else "failed", reason, run_id, stored, utcnow(), source,
         run_key],
    )  # fmt: skip
