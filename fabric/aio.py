"""A private event loop for the asyncio broker clients (NATS publish target, NATS event queue),
so their callers keep a synchronous interface. Neutral ground: ingest and publish both use it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


class LoopOwner:
    """Runs coroutines on one event loop kept for the target's lifetime (its connection lives
    on that loop); `close_loop` ends it."""

    def __init__(self) -> None:
        self._runner: asyncio.Runner | None = None

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(coroutine)

    def close_loop(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None
