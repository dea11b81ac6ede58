"""A circuit breaker whose state is shared between processes, in SQLite or Redis.

States: `closed` (calls go through) -> `open` after `failure_threshold` consecutive failures, or
when at least `min_calls` calls in the last `window_seconds` failed at a rate of `error_rate` or
more; `open` (calls are refused at once) -> `half_open` once `cooldown_seconds` have passed; in
`half_open` exactly one caller, in any process, makes a probe call: success closes the breaker,
failure re-opens it for another cool-down. A probe whose process died is taken over after
`probe_timeout_seconds`.

A Dagster run's steps are separate processes, so the state lives in a store of its own (never in
the single-writer warehouse): one SQLite row per breaker (WAL, one short IMMEDIATE transaction per
update) or one Redis key (WATCH/MULTI). Every update is a read-modify-write of one record, so
two processes can never both take the probe or lose each other's failures.

Why not pybreaker: it counts consecutive failures only (no error rate over a window), its
half-open state lets every caller through rather than one probe, and its storage interface
updates each counter separately (`increment_counter`, then `state = ...`), which across processes
is a race without a transaction around the whole transition.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from fabric.config import BreakerConfig
from fabric.errors import ConfigError, FabricError

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
_MAX_OUTCOMES = 2_000


class BreakerStoreError(FabricError):
    """The breaker's shared store cannot be read or written: the run stops rather than score
    without knowing the breaker's state."""


@dataclass
class BreakerRecord:
    """The shared state of one breaker (JSON in the store)."""

    state: str = CLOSED
    consecutive_failures: int = 0
    opened_at: float | None = None
    probe_started_at: float | None = None
    outcomes: list[tuple[float, bool]] = field(default_factory=list)  # (time, ok) in the window

    @classmethod
    def from_json(cls, text: str | bytes | None) -> BreakerRecord:
        if not text:
            return cls()
        data = json.loads(text)
        data["outcomes"] = [(float(t), bool(ok)) for t, ok in data.get("outcomes", [])]
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass(frozen=True)
class Transition:
    """One state change, as logged and reported in run metadata."""

    breaker: str
    from_state: str
    to_state: str
    reason: str
    at: str
    pid: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Update = Callable[[BreakerRecord], BreakerRecord]


class BreakerStore(Protocol):
    """Where breaker records live; `update` applies `change` atomically and returns its result."""

    description: str

    def update(self, name: str, change: Update) -> BreakerRecord: ...

    def read(self, name: str) -> BreakerRecord: ...


class SqliteBreakerStore:
    """Breaker records in a small SQLite file (WAL): safe across processes on one machine."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.description = f"sqlite:{self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = self._connect()
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute(
                    "CREATE TABLE IF NOT EXISTS breakers (name TEXT PRIMARY KEY, record TEXT NOT NULL)"
                )
            finally:
                con.close()
        except (OSError, sqlite3.Error) as exc:
            raise BreakerStoreError(f"circuit breaker store {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10, isolation_level=None)

    def update(self, name: str, change: Update) -> BreakerRecord:
        try:
            return self._update(name, change)
        except sqlite3.Error as exc:
            raise BreakerStoreError(f"circuit breaker store {self.path}: {exc}") from exc

    def _update(self, name: str, change: Update) -> BreakerRecord:
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")  # the write lock first: no lost updates between processes
            row = con.execute("SELECT record FROM breakers WHERE name = ?", [name]).fetchone()
            record = change(BreakerRecord.from_json(row[0] if row else None))
            if row is not None and row[0] == record.to_json():
                con.execute("COMMIT")  # unchanged: nothing to write
                return record
            con.execute(
                "INSERT INTO breakers (name, record) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET record = excluded.record",
                [name, record.to_json()],
            )
            con.execute("COMMIT")
            return record
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def read(self, name: str) -> BreakerRecord:
        try:
            con = self._connect()
            try:
                row = con.execute("SELECT record FROM breakers WHERE name = ?", [name]).fetchone()
            finally:
                con.close()
        except sqlite3.Error as exc:
            raise BreakerStoreError(f"circuit breaker store {self.path}: {exc}") from exc
        return BreakerRecord.from_json(row[0] if row else None)


class RedisBreakerStore:
    """Breaker records as Redis keys, updated optimistically with WATCH/MULTI."""

    def __init__(self, url: str, prefix: str = "fabric:breaker:") -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._prefix = prefix
        # The URL may hold a password: describe the store by host and database only.
        kwargs = self._client.connection_pool.connection_kwargs
        self.description = (
            f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        )

    def update(self, name: str, change: Update) -> BreakerRecord:
        import redis

        try:
            return self._update(name, change)
        except redis.RedisError as exc:
            raise BreakerStoreError(f"circuit breaker store {self.description}: {exc}") from exc

    def _update(self, name: str, change: Update) -> BreakerRecord:
        import redis

        key = self._prefix + name
        with self._client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    record = change(BreakerRecord.from_json(pipe.get(key)))
                    pipe.multi()
                    pipe.set(key, record.to_json())
                    pipe.execute()
                    return record
                except redis.WatchError:  # another process changed it: read again
                    continue

    def read(self, name: str) -> BreakerRecord:
        import redis

        try:
            return BreakerRecord.from_json(self._client.get(self._prefix + name))
        except redis.RedisError as exc:
            raise BreakerStoreError(f"circuit breaker store {self.description}: {exc}") from exc


def open_store(config: BreakerConfig, default_dir: Path) -> BreakerStore:
    """The configured store: SQLite (default `default_dir/breaker.sqlite`) or Redis."""
    if config.store == "redis":
        assert config.redis_url_env is not None  # the config validator requires it
        url = os.environ.get(config.redis_url_env, "")
        if not url:
            raise ConfigError(
                f"scoring.remote.breaker.redis_url_env: environment variable {config.redis_url_env} "
                "is not set or empty (it must hold the Redis URL, e.g. redis://127.0.0.1:6379/0)"
            )
        return RedisBreakerStore(url)
    return SqliteBreakerStore(config.path or default_dir / "breaker.sqlite")


class CircuitBreaker:
    """One named breaker over a shared store; see the module docstring.

    `allow()` before a call (False: the breaker is open, do not call), then `record_success()`
    or `record_failure(reason)` after it. Transitions this process made are in `transitions`.
    """

    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        store: BreakerStore,
        probe_timeout_seconds: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.config = config
        self.store = store
        self.probe_timeout_seconds = probe_timeout_seconds
        self._clock = clock
        self._probing = False
        self.transitions: list[Transition] = []
        self._pending: list[Transition] = []

    @property
    def state(self) -> str:
        return self.store.read(self.name).state

    @property
    def probing(self) -> bool:
        """Whether the last `allow()` made this caller the half-open breaker's one prober."""
        return self._probing

    def allow(self) -> bool:
        """Whether to make the call now; in half-open, True only for the one prober."""
        now = self._clock()
        self._probing = False
        if self.store.read(self.name).state == CLOSED:
            return True  # nothing can change in closed: no write

        def change(record: BreakerRecord) -> BreakerRecord:
            self._probing = False
            if record.state == OPEN and now - (record.opened_at or 0) >= self.config.cooldown_seconds:
                self._move(
                    record, HALF_OPEN, f"cool-down of {self.config.cooldown_seconds:g} s over: probing"
                )
                record.probe_started_at, self._probing = now, True
            elif (
                record.state == HALF_OPEN
                and now - (record.probe_started_at or 0) > self.probe_timeout_seconds
            ):
                record.probe_started_at, self._probing = now, True  # the previous prober vanished
            return record

        record = self._update(change)
        return record.state == CLOSED or self._probing

    def record_success(self) -> None:
        now = self._clock()
        probing = self._probing

        def change(record: BreakerRecord) -> BreakerRecord:
            if record.state == HALF_OPEN and probing:
                self._move(record, CLOSED, "probe succeeded")
                record.outcomes, record.probe_started_at = [], None
            elif record.state == CLOSED:
                record.consecutive_failures = 0
                self._remember(record, now, ok=True)
            return record

        self._update(change)
        self._probing = False

    def record_failure(self, reason: str) -> None:
        now = self._clock()
        probing = self._probing

        def change(record: BreakerRecord) -> BreakerRecord:
            if record.state == HALF_OPEN and probing:
                self._move(record, OPEN, f"probe failed: {reason}")
                record.opened_at, record.probe_started_at = now, None
            elif record.state == CLOSED:
                record.consecutive_failures += 1
                self._remember(record, now, ok=False)
                why = self._why_open(record)
                if why:
                    self._move(record, OPEN, f"{why}; last error: {reason}")
                    record.opened_at = now
            return record

        self._update(change)
        self._probing = False

    def _why_open(self, record: BreakerRecord) -> str | None:
        config = self.config
        if record.consecutive_failures >= config.failure_threshold:
            return f"{record.consecutive_failures} consecutive failures"
        calls = len(record.outcomes)
        failures = sum(1 for _, ok in record.outcomes if not ok)
        if calls >= config.min_calls and failures / calls >= config.error_rate:
            return (
                f"error rate {failures}/{calls} in the last {config.window_seconds:g} s "
                f">= {config.error_rate:g}"
            )
        return None

    def _remember(self, record: BreakerRecord, now: float, ok: bool) -> None:
        horizon = now - self.config.window_seconds
        record.outcomes = [o for o in record.outcomes if o[0] >= horizon][-_MAX_OUTCOMES:]
        record.outcomes.append((now, ok))

    def _move(self, record: BreakerRecord, to_state: str, reason: str) -> None:
        transition = Transition(
            breaker=self.name,
            from_state=record.state,
            to_state=to_state,
            reason=reason,
            at=datetime.fromtimestamp(self._clock(), UTC).isoformat(),
            pid=os.getpid(),
        )
        record.state = to_state
        record.consecutive_failures = 0
        self._pending.append(transition)

    def _update(self, change: Update) -> BreakerRecord:
        # `change` may run more than once (Redis retries after a concurrent write): only the
        # transitions of the run that was stored count.
        def tracked(record: BreakerRecord) -> BreakerRecord:
            self._pending = []
            return change(record)

        self._pending = []
        record = self.store.update(self.name, tracked)
        for transition in self._pending:
            log.warning(
                "circuit breaker %s: %s -> %s (%s)",
                transition.breaker, transition.from_state, transition.to_state, transition.reason,
            )  # fmt: skip
        self.transitions.extend(self._pending)
        return record
