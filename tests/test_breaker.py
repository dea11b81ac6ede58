"""The circuit breaker's rules on both of its stores (a SQLite file, the local Redis server), and
its state shared by real processes: no lost updates, exactly one probe."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import Endpoint, redis_server

from fabric.config import BreakerConfig
from fabric.scoring.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerStore,
    BreakerStoreError,
    CircuitBreaker,
    RedisBreakerStore,
    SqliteBreakerStore,
)

_ = redis_server  # a fixture, requested by name
REDIS_DB = 15  # a database of its own on the local server; keys are per test anyway


class Clock:
    """A hand-moved clock: the cool-down and the window without sleeping."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BreakerStore]:
    if request.param == "sqlite":
        yield SqliteBreakerStore(tmp_path / "breaker.sqlite")
        return
    redis: Endpoint = request.getfixturevalue("redis_server")
    url = f"redis://{redis.host}:{redis.port}/{REDIS_DB}"
    yield RedisBreakerStore(url, prefix=f"fabric-test:{uuid.uuid4().hex}:")


def _breaker(store: BreakerStore, clock: Clock, **settings: float) -> CircuitBreaker:
    config = BreakerConfig(
        **{"failure_threshold": 3, "cooldown_seconds": 30, "min_calls": 10, **settings}  # type: ignore[arg-type]
    )
    return CircuitBreaker("http://model|churn|", config, store, probe_timeout_seconds=60, clock=clock)


def test_consecutive_failures_open_then_one_probe_closes(store: BreakerStore) -> None:
    clock = Clock()
    here, elsewhere = _breaker(store, clock), _breaker(store, clock)  # two processes' views
    for _ in range(2):
        assert here.allow()
        here.record_failure("connection refused")
    assert here.allow()
    here.record_success()  # a success resets the consecutive count
    for _ in range(3):
        assert here.allow()
        here.record_failure("connection refused")
    assert here.state == OPEN and not here.allow() and not elsewhere.allow()
    (opened,) = here.transitions
    assert (opened.from_state, opened.to_state) == (CLOSED, OPEN)
    assert "3 consecutive failures" in opened.reason and "connection refused" in opened.reason

    clock.now += 29
    assert not elsewhere.allow()
    clock.now += 1
    assert elsewhere.allow()  # the probe
    assert not here.allow()  # only one
    assert here.state == HALF_OPEN
    elsewhere.record_success()
    assert here.state == CLOSED and here.allow()
    assert [(t.from_state, t.to_state) for t in elsewhere.transitions] == [
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]
    assert elsewhere.transitions[-1].reason == "probe succeeded"


def test_failed_probe_reopens_for_another_cooldown(store: BreakerStore) -> None:
    clock = Clock()
    breaker = _breaker(store, clock, failure_threshold=1)
    assert breaker.allow()
    breaker.record_failure("HTTP 503")
    clock.now += 30
    assert breaker.allow()
    breaker.record_failure("timeout")
    assert breaker.state == OPEN and not breaker.allow()
    assert "probe failed: timeout" in breaker.transitions[-1].reason
    clock.now += 30
    assert breaker.allow() and breaker.state == HALF_OPEN


def test_error_rate_over_the_window_opens(store: BreakerStore) -> None:
    clock = Clock()
    breaker = _breaker(store, clock, failure_threshold=100, error_rate=0.5, min_calls=10, window_seconds=60)
    for i in range(9):  # 5 failures of 9 calls: not enough calls yet
        assert breaker.allow()
        breaker.record_failure("HTTP 500") if i % 2 == 0 else breaker.record_success()
        clock.now += 1
    assert breaker.state == CLOSED
    clock.now += 55  # the first calls leave the 60 s window
    for i in range(9):
        assert breaker.allow()
        breaker.record_failure("HTTP 500") if i % 2 else breaker.record_success()
        clock.now += 1
    assert breaker.state == CLOSED  # only 4 of the recent 10 calls failed
    assert breaker.allow()
    breaker.record_failure("HTTP 500")
    assert breaker.state == OPEN
    assert "error rate 5/10" in breaker.transitions[-1].reason


def test_vanished_prober_is_replaced(store: BreakerStore) -> None:
    clock = Clock()
    prober, other = _breaker(store, clock, failure_threshold=1), _breaker(store, clock, failure_threshold=1)
    prober.allow()
    prober.record_failure("down")
    clock.now += 30
    assert prober.allow()  # ... and its process dies before it reports
    clock.now += 59
    assert not other.allow()
    clock.now += 2
    assert other.allow()
    other.record_success()
    assert other.state == CLOSED


def _fail_many(path: str, times: int) -> None:
    breaker = CircuitBreaker(
        "shared", BreakerConfig(failure_threshold=10_000, min_calls=10_000), SqliteBreakerStore(Path(path))
    )
    for _ in range(times):
        breaker.record_failure("boom")


def _try_probe(
    path: str, barrier: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    breaker = CircuitBreaker("probe", BreakerConfig(cooldown_seconds=0), SqliteBreakerStore(Path(path)))
    barrier.wait()
    results.put(breaker.allow())


def test_processes_share_the_sqlite_state_without_lost_updates(tmp_path: Path) -> None:
    path = str(tmp_path / "breaker.sqlite")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_fail_many, args=(path, 40)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    record = SqliteBreakerStore(Path(path)).read("shared")
    assert record.state == CLOSED and record.consecutive_failures == 160

    # open breaker, cool-down over: of four processes asking at once, exactly one probes
    opener = CircuitBreaker(
        "probe", BreakerConfig(failure_threshold=1, cooldown_seconds=0), SqliteBreakerStore(Path(path))
    )
    opener.record_failure("down")
    barrier, results = context.Barrier(4), context.Queue()
    probers = [context.Process(target=_try_probe, args=(path, barrier, results)) for _ in range(4)]
    for prober in probers:
        prober.start()
    answers = [results.get(timeout=120) for _ in probers]
    for prober in probers:
        prober.join(timeout=60)
    assert sorted(answers) == [False, False, False, True]


def test_an_unusable_store_is_a_clear_error_without_secrets(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    with pytest.raises(BreakerStoreError, match=r"circuit breaker store .*file/breaker\.sqlite"):
        SqliteBreakerStore(not_a_directory / "breaker.sqlite")

    store = RedisBreakerStore("redis://:hunter2@127.0.0.1:1/0")  # nothing listens on port 1
    assert store.description == "redis://127.0.0.1:1/0"
    breaker = CircuitBreaker("b", BreakerConfig(), store)
    with pytest.raises(BreakerStoreError, match=r"circuit breaker store redis://127\.0\.0\.1:1/0") as raised:
        breaker.allow()
    assert "hunter2" not in str(raised.value)
