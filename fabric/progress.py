"""Progress lines for long work (scoring a day, delivering an outbox), at most one per interval.

In a Dagster run the `fabric` loggers go to the run's event log (assets/dagster.yaml,
`python_logs`), so an operator watching a long step sees it advance; on the command line they
go wherever logging is configured.
"""

from __future__ import annotations

import time
from collections.abc import Callable

PROGRESS_SECONDS = 10.0
"""The shortest interval between two progress lines of the same work."""


class ProgressClock:
    """`due()` is true when `every` seconds have passed since it last was (or since the start):
    a short job logs only its closing line, a long one a line per interval as well."""

    def __init__(self, every: float = PROGRESS_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._every, self._clock = every, clock
        self._last = clock()

    def due(self) -> bool:
        now = self._clock()
        if now - self._last < self._every:
            return False
        self._last = now
        return True
