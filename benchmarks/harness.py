"""What the benchmark scripts share: measuring a side in a fresh interpreter, peak RSS, labels.

Each timed side runs as `python <script> --measure ...` in its own process, so that one side's
imports, caches and memory do not count for the other; the child prints one JSON object as its
last line.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def measure(script: str, args: list[str], what: str) -> dict[str, Any]:
    """Run `script` with `args` in a fresh interpreter; the JSON object it printed last."""
    completed = subprocess.run(
        [sys.executable, script, *args],
        cwd=REPO, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    if completed.returncode != 0:
        raise SystemExit(f"{what} failed:\n{completed.stderr[-3000:]}")
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def peak_rss_mb() -> int:
    """This process's peak resident set size in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def cpu_seconds() -> float:
    """CPU time of this process (all threads): steadier than wall time on a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rows_label(rows: int) -> str:
    """`1m`, `250k`: the row count in a case name."""
    return f"{rows // 1_000_000}m" if rows % 1_000_000 == 0 else f"{rows // 1000}k"
