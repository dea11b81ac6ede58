"""The remote scorer against real OIP servers: `fabric serve` (directly and behind a proxy that
fails on demand) and MLServer 1.7.1 in its own environment. Scores equal the in-process model's;
5xx and timeouts are retried, 4xx fail at once with the server's error; spent retries feed the
breaker, and an open breaker makes no call at all."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from mlserver_venv import MLServer, start_mlserver
from model_server import REPO, FabricServer, FaultyProxy, home_config
from servers import Endpoint, redis_server

from fabric.config import BreakerConfig, FabricConfig, RemoteScoringConfig, WarehouseConfig, parse_config
from fabric.errors import ConfigError, ModelError
from fabric.scoring.backend import InProcessBackend, ModelUnavailable, open_backend
from fabric.scoring.registry import ModelRegistry
from fabric.scoring.remote import RemoteBackend

_ = redis_server  # a fixture used by name below

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def server(fabric_server: FabricServer) -> FabricServer:
    return fabric_server


@pytest.fixture
def proxy(server: FabricServer) -> Iterator[FaultyProxy]:
    faulty = FaultyProxy(server.url)
    yield faulty
    faulty.close()


@pytest.fixture(scope="module")
def model(trained_home: Path) -> tuple[Any, int]:
    config = home_config(trained_home)
    estimator, card = ModelRegistry(config.resolve(config.scoring.registry_dir)).load("churn")
    return estimator, len(card.features)


def _config(home: Path, tmp_path: Path, breaker: BreakerConfig | None = None, **remote: Any) -> FabricConfig:
    config = home_config(home)
    settings = {"batch_rows": 1000, "timeout_seconds": 5, "backoff_seconds": 0.05, **remote}
    if breaker is None:
        breaker = BreakerConfig(path=tmp_path / "breaker.sqlite")
    scoring = config.scoring.model_copy(update={"remote": RemoteScoringConfig(breaker=breaker, **settings)})
    return config.model_copy(update={"scoring": scoring})


def _features(rows: int, n_features: int) -> np.ndarray:
    rng = np.random.default_rng(rows)
    matrix = rng.poisson(2.5, (rows, n_features)).astype(np.float64)
    matrix[3, 2] = np.nan  # a missing value: null on the wire
    return matrix


def _remote(config: FabricConfig, model: Any, version: int | None = None) -> RemoteBackend:
    backend = open_backend(model, config, version)
    assert isinstance(backend, RemoteBackend)
    return backend


def test_without_remote_config_scoring_stays_in_process(trained_home: Path, model: tuple[Any, int]) -> None:
    assert isinstance(open_backend(model[0], home_config(trained_home)), InProcessBackend)
    assert isinstance(open_backend(model[0]), InProcessBackend)


def test_remote_scores_equal_the_in_process_model(
    trained_home: Path, tmp_path: Path, server: FabricServer, model: tuple[Any, int]
) -> None:
    estimator, n_features = model
    config = _config(trained_home, tmp_path, url=server.url, batch_rows=1000)
    # the default breaker store: a SQLite file beside the warehouse
    config = config.model_copy(
        update={"warehouse": WarehouseConfig(path=tmp_path / "wh" / "warehouse.duckdb")}
    )
    remote = config.scoring.remote
    assert remote is not None
    config = config.model_copy(
        update={
            "scoring": config.scoring.model_copy(
                update={"remote": remote.model_copy(update={"breaker": BreakerConfig()})}
            )
        }
    )
    features = _features(2_500, n_features)
    backend = _remote(config, estimator, version=1)  # the version the run resolved
    try:
        assert remote.concurrency == 2  # the default: two requests of 1000 rows in flight
        assert backend.batch_rows == 2000
        assert backend.endpoint == f"{server.url}/v2/models/churn/versions/1/infer"
        scores = backend.predict(features)
        report = backend.report()
    finally:
        backend.close()
    np.testing.assert_allclose(scores, estimator.predict_proba(features)[:, 1], rtol=1e-12)
    assert report["features_as"] == "binary tensor data"  # `fabric serve` lists the extension
    assert report["batches"] == 3 and report["rows"] == 2_500 and report["retries"] == 0
    assert report["server_model_versions"] == ["1"]
    assert report["breaker"]["state"] == "closed" and report["breaker"]["transitions"] == []
    assert report["breaker"]["store"] == f"sqlite:{tmp_path / 'wh' / 'breaker.sqlite'}"
    assert (tmp_path / "wh" / "breaker.sqlite").is_file()


def test_features_go_as_json_numbers_when_binary_data_is_off(
    trained_home: Path, tmp_path: Path, server: FabricServer, model: tuple[Any, int]
) -> None:
    """`binary_data: false` sends JSON numbers (a NaN as null) to a server that would take binary
    data; the scores are the same bits as the binary requests'."""
    estimator, n_features = model
    features = _features(2_500, n_features)
    scores = {}
    for binary in (False, True):
        config = _config(trained_home, tmp_path, url=server.url, batch_rows=1000, binary_data=binary)
        backend = _remote(config, estimator, version=1)
        try:
            scores[binary] = backend.predict(features)
            assert backend.report()["features_as"] == ("binary tensor data" if binary else "JSON numbers")
        finally:
            backend.close()
    assert np.array_equal(scores[False], scores[True])
    np.testing.assert_allclose(scores[False], estimator.predict_proba(features)[:, 1], rtol=1e-12)


def test_5xx_and_timeouts_are_retried_with_backoff(
    trained_home: Path, tmp_path: Path, proxy: FaultyProxy, model: tuple[Any, int]
) -> None:
    estimator, n_features = model
    config = _config(trained_home, tmp_path, url=proxy.url, retries=2, timeout_seconds=1)
    features = _features(500, n_features)
    backend = _remote(config, estimator)
    try:
        proxy.fail(2, 503)
        np.testing.assert_allclose(backend.predict(features), estimator.predict_proba(features)[:, 1])
        assert proxy.requests == 3 and backend.report()["retries"] == 2
        proxy.delay(1, 3.0)  # longer than the 1 s timeout
        np.testing.assert_allclose(backend.predict(features), estimator.predict_proba(features)[:, 1])
        report = backend.report()
    finally:
        backend.close()
    assert proxy.requests == 5 and report["retries"] == 3 and report["failed_batches"] == 0
    assert report["breaker"]["state"] == "closed"


def test_4xx_fails_at_once_with_the_servers_error(
    trained_home: Path, tmp_path: Path, proxy: FaultyProxy, model: tuple[Any, int]
) -> None:
    estimator, n_features = model
    unknown = _remote(_config(trained_home, tmp_path, url=proxy.url, model="no_such_model"), estimator)
    with pytest.raises(ModelError, match=r"HTTP 404: model 'no_such_model' is not served here"):
        unknown.predict(_features(10, n_features))
    assert proxy.requests == 1  # no retry
    unknown.close()

    backend = _remote(_config(trained_home, tmp_path, url=proxy.url), estimator)
    with pytest.raises(ModelError, match=r"HTTP 400: .*must be \[rows, 12\]"):
        backend.predict(np.ones((5, n_features - 1)))
    assert proxy.requests == 2
    assert backend.report()["breaker"]["state"] == "closed"  # the server answered: not its failure
    backend.close()


def test_spent_retries_open_the_breaker_then_no_call_is_made(
    trained_home: Path, tmp_path: Path, proxy: FaultyProxy, model: tuple[Any, int]
) -> None:
    estimator, n_features = model
    breaker = BreakerConfig(path=tmp_path / "breaker.sqlite", failure_threshold=2, cooldown_seconds=600)
    config = _config(trained_home, tmp_path, breaker, url=proxy.url, retries=1)
    backend = _remote(config, estimator)
    proxy.fail(100, 502)
    for _ in range(2):
        with pytest.raises(ModelUnavailable, match="HTTP 502: injected failure"):
            backend.predict(_features(100, n_features))
    assert proxy.requests == 4
    with pytest.raises(ModelUnavailable, match=r"circuit breaker .* is open"):
        backend.predict(_features(100, n_features))
    assert proxy.requests == 4  # refused without a call
    report = backend.report()
    backend.close()
    assert report["failed_batches"] == 2 and report["rejected_batches"] == 1
    (opened,) = report["breaker"]["transitions"]
    assert (opened["from_state"], opened["to_state"]) == ("closed", "open")
    assert "2 consecutive failures" in opened["reason"]

    # another process (a new backend on the same store) sees it open too
    again = _remote(config, estimator)
    with pytest.raises(ModelUnavailable, match="is open"):
        again.predict(_features(10, n_features))
    assert proxy.requests == 4
    again.close()


def test_a_round_s_requests_are_in_flight_together_and_half_open_sends_only_the_probe(
    trained_home: Path, tmp_path: Path, proxy: FaultyProxy, model: tuple[Any, int]
) -> None:
    estimator, n_features = model
    breaker = BreakerConfig(path=tmp_path / "breaker.sqlite", failure_threshold=1, cooldown_seconds=0.3)
    config = _config(trained_home, tmp_path, breaker, url=proxy.url, retries=0, batch_rows=100, concurrency=2)
    features = _features(200, n_features)
    expected = estimator.predict_proba(features)[:, 1]
    backend = _remote(config, estimator)
    try:
        proxy.delay(2, 0.5)  # both held: the second arrives while the first is still held
        np.testing.assert_allclose(backend.predict(features), expected)
        assert (proxy.requests, proxy.max_in_flight) == (2, 2)

        proxy.fail(2, 502)
        with pytest.raises(ModelUnavailable, match="HTTP 502"):
            backend.predict(features)
        assert proxy.requests == 4 and backend.report()["breaker"]["state"] == "open"

        time.sleep(0.4)  # the cool-down: the next round is a probe, one request only
        proxy.fail(1, 502)
        with pytest.raises(ModelUnavailable, match="HTTP 502"):
            backend.predict(features)
        assert proxy.requests == 5

        time.sleep(0.4)  # a probe that succeeds closes the breaker; the round's other request follows
        np.testing.assert_allclose(backend.predict(features), expected)
        report = backend.report()
    finally:
        backend.close()
    assert proxy.requests == 7 and report["breaker"]["state"] == "closed"
    moves = [(t["from_state"], t["to_state"]) for t in report["breaker"]["transitions"]]
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "open"),
                     ("open", "half_open"), ("half_open", "closed")]  # fmt: skip


def test_breaker_state_in_redis(
    trained_home: Path,
    tmp_path: Path,
    proxy: FaultyProxy,
    model: tuple[Any, int],
    monkeypatch: pytest.MonkeyPatch,
    redis_server: Endpoint,
) -> None:
    import redis

    url = f"redis://{redis_server.host}:{redis_server.port}/15"
    monkeypatch.setenv("FABRIC_TEST_BREAKER_REDIS", url)
    breaker = BreakerConfig(store="redis", redis_url_env="FABRIC_TEST_BREAKER_REDIS", failure_threshold=1)
    estimator, n_features = model
    # a model name of its own, so that runs of this test never share a Redis key
    name = f"churn-{os.getpid()}-{tmp_path.name}"
    backend = _remote(
        _config(trained_home, tmp_path, breaker, url=proxy.url, model=name, retries=0), estimator
    )
    proxy.fail(1, 500)
    with pytest.raises(ModelUnavailable):
        backend.predict(_features(10, n_features))
    report = backend.report()
    backend.close()
    assert report["breaker"]["store"] == f"redis://{redis_server.host}:{redis_server.port}/15"
    assert report["breaker"]["state"] == "open"
    client = redis.Redis.from_url(url)
    key = f"fabric:breaker:{proxy.url}|{name}|"
    assert b'"state": "open"' in client.get(key)
    client.delete(key)


@pytest.fixture(scope="module")
def mlserver(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServer]:
    config = home_config(trained_home)
    model_file = config.resolve(config.scoring.registry_dir) / "churn" / "v1" / "model.joblib"
    yield from start_mlserver(model_file, tmp_path_factory.mktemp("mlserver"), "churn", "1")


def test_remote_scoring_against_mlserver(
    trained_home: Path, tmp_path: Path, mlserver: MLServer, model: tuple[Any, int]
) -> None:
    estimator, n_features = model
    config = _config(trained_home, tmp_path, url=mlserver.url, model=mlserver.model, version=mlserver.version)
    features = _features(2_100, n_features)
    backend = _remote(config, estimator)
    try:
        scores = backend.predict(features)
        report = backend.report()
    finally:
        backend.close()
    # MLServer answers predict_proba as [rows, 2]; the positive class is column 1
    np.testing.assert_allclose(scores, estimator.predict_proba(features)[:, 1], rtol=1e-12)
    assert report["batches"] == 3 and report["server_model_versions"] == ["1"]
    assert report["endpoint"] == f"{mlserver.url}/v2/models/churn/versions/1/infer"
    assert report["features_as"] == "JSON numbers"  # its metadata lists no binary extension


@pytest.mark.parametrize(
    ("remote", "message"),
    [
        ({"url": "ftp://host"}, "scoring.remote.url: Value error, url must be an http"),
        ({"url": "http://user:secret@host:8080"}, "must not hold credentials"),
        ({"url": "http://host", "token_env": "not a name"}, "is not an environment variable name"),
        ({"url": "http://host", "breaker": {"store": "redis"}}, "store 'redis' needs redis_url_env"),
        ({"url": "http://host", "breaker": {"error_rate": 1.5}}, "scoring.remote.breaker.error_rate"),
        ({"url": "http://host", "batch_rows": 0}, "scoring.remote.batch_rows"),
    ],
)
def test_remote_configuration_errors_name_the_key(remote: dict[str, Any], message: str) -> None:
    data = yaml.safe_load((REPO / "fabric.yaml").read_text(encoding="utf-8"))
    data["scoring"]["remote"] = remote
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        parse_config(data, REPO)
    assert "secret" not in str(raised.value)


def test_remote_token_and_redis_url_come_from_the_environment(
    trained_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: tuple[Any, int]
) -> None:
    monkeypatch.delenv("FABRIC_TEST_REMOTE_TOKEN", raising=False)
    config = _config(trained_home, tmp_path, url="http://127.0.0.1:9", token_env="FABRIC_TEST_REMOTE_TOKEN")
    with pytest.raises(ConfigError, match="FABRIC_TEST_REMOTE_TOKEN is not set or empty"):
        open_backend(model[0], config)
    monkeypatch.delenv("FABRIC_TEST_NO_REDIS", raising=False)
    breaker = BreakerConfig(store="redis", redis_url_env="FABRIC_TEST_NO_REDIS")
    with pytest.raises(ConfigError, match="FABRIC_TEST_NO_REDIS is not set or empty"):
        open_backend(model[0], _config(trained_home, tmp_path, breaker, url="http://127.0.0.1:9"))
