"""Daily business-date partitions and inclusive partition windows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from fabric.errors import FabricError


@dataclass(frozen=True)
class Window:
    """An inclusive range of daily partitions; one partition is `Window(d, d)`."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise FabricError(f"partition window ends ({self.end}) before it starts ({self.start})")

    @classmethod
    def parse(cls, start: str, end: str | None = None) -> Window:
        """From partition keys `YYYY-MM-DD` (end defaults to start)."""
        try:
            first = date.fromisoformat(start)
            last = date.fromisoformat(end) if end else first
        except ValueError as exc:
            raise FabricError(f"partition keys must be YYYY-MM-DD: {exc}") from None
        return cls(first, last)

    def days(self) -> list[date]:
        """Every partition date in the window, in order."""
        return list(self)

    def __iter__(self) -> Iterator[date]:
        day = self.start
        while day <= self.end:
            yield day
            day += timedelta(days=1)

    def __len__(self) -> int:
        return (self.end - self.start).days + 1

    def __str__(self) -> str:
        return self.start.isoformat() if self.start == self.end else f"{self.start}..{self.end}"
