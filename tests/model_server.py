"""Test helpers for model serving: a small trained registry and real server processes.

`train_registry` builds a synthetic estate and trains the churn model into a Fabric home (what
`fabric train` does, on 40 days of synthetic history). `FabricServer` runs `fabric serve` as a
real subprocess on a free loopback port and waits until it answers; tests kill it for real.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from fabric.config import FabricConfig, load_config

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
OIP_SPEC = SHARED / "specs" / "open-inference-protocol" / "open_inference_rest.yaml"
END = date(2026, 3, 31)
START = END - timedelta(days=39)
CUSTOMERS = 1500
HORIZON = 7
STARTUP_SECONDS = 60
FABRIC_COMMAND = Path(sys.executable).parent / "fabric"  # the installed console script


def short_history(config: FabricConfig) -> FabricConfig:
    """The demo config with a 7-day label horizon, so 40 days of history can train a model."""
    training = config.scoring.training.model_copy(update={"holdout_days": 7, "sample_every_days": 2})
    scoring = config.scoring.model_copy(update={"churn_horizon_days": HORIZON, "training": training})
    return config.model_copy(update={"scoring": scoring})


def home_config(home: Path, **overrides: Any) -> FabricConfig:
    """The repository's fabric.yaml with FABRIC_HOME = `home` (and top-level `overrides`)."""
    previous = os.environ.get("FABRIC_HOME")
    os.environ["FABRIC_HOME"] = str(home)
    try:
        config = short_history(load_config(REPO / "fabric.yaml"))
    finally:
        if previous is None:
            del os.environ["FABRIC_HOME"]
        else:
            os.environ["FABRIC_HOME"] = previous
    return config.model_copy(update=overrides)


def train_registry(home: Path) -> FabricConfig:
    """A synthetic estate in `home` and a trained champion `churn` v1 in its registry."""
    from fabric.scoring.synthetic import write_synthetic_estate
    from fabric.scoring.train import train
    from fabric.warehouse import Warehouse

    config = home_config(home)
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    write_synthetic_estate(warehouse, CUSTOMERS, START, END, HORIZON, seed=3)
    train(config, warehouse, "run-train")
    return config


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Fabric home with a synthetic estate and a trained `churn` v1 (trained once a session;
    treat it as read-only, copy it to change it)."""
    home = tmp_path_factory.getbasetemp() / "trained-churn-home"
    done = home / ".trained"
    if not done.is_file():
        home.mkdir(exist_ok=True)
        train_registry(home)
        done.touch()
    return home


@pytest.fixture(scope="session")
def fabric_server(trained_home: Path) -> Iterator[FabricServer]:
    """`fabric serve` over `trained_home` for the whole session (never kill this one). Shared
    through tests/conftest.py, so that every module gets this one server."""
    running = FabricServer(trained_home).start()
    yield running
    running.stop()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, extra: dict[str, Any]) -> Path:
    """A copy of the repository's fabric.yaml with top-level sections `extra` merged in."""
    data = yaml.safe_load((REPO / "fabric.yaml").read_text(encoding="utf-8"))
    for key, value in extra.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    data.setdefault("dbt", {})["project_dir"] = str(REPO / "dbt_project")
    data.setdefault("quality", {})["suites_dir"] = str(REPO / "expectations")
    path = directory / "fabric.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class FabricServer:
    """`fabric serve` in a subprocess over the registry of `home`."""

    home: Path
    port: int = field(default_factory=free_port)
    config_file: Path = REPO / "fabric.yaml"
    env: dict[str, str] = field(default_factory=dict)
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FabricServer:
        env = {**os.environ, "FABRIC_HOME": str(self.home), **self.env}
        env.pop("FABRIC_CONFIG", None)
        log_path = self.log_file or self.home / f"serve-{self.port}.log"
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(FABRIC_COMMAND), "serve", "--config", str(self.config_file),
                 "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self._wait_live(log_path)
        return self

    def _wait_live(self, log_path: Path) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"fabric serve exited with {self.process.returncode}:\n{log_path.read_text()}"
                )
            try:
                if requests.get(f"{self.url}/v2/health/live", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"fabric serve did not answer within {STARTUP_SECONDS} s:\n{log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL: the server dies mid-request, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class FaultyProxy:
    """A real HTTP proxy on loopback in front of a model server that fails on demand.

    `fail(n, status)` answers the next `n` requests with `status` (an OIP error body) without
    forwarding them; `delay(n, seconds)` holds the next `n` requests before forwarding. `requests`
    counts every request received, `max_in_flight` the most it was handling at once.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._faults: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with proxy._lock:
                    proxy.requests += 1
                    proxy._in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy._in_flight)
                    fault = proxy._faults.pop(0) if proxy._faults else None
                try:
                    self._handle(body, fault)
                finally:
                    with proxy._lock:
                        proxy._in_flight -= 1

            def _handle(self, body: bytes, fault: tuple[str, float] | None) -> None:
                if fault and fault[0] == "status":
                    self._answer(int(fault[1]), b'{"error": "injected failure"}')
                    return
                if fault and fault[0] == "delay":
                    time.sleep(fault[1])
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")
                }
                upstream = requests.post(proxy.upstream + self.path, data=body, headers=headers, timeout=60)
                self._answer(upstream.status_code, upstream.content)

            def _answer(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail(self, n: int, status: int = 503) -> None:
        with self._lock:
            self._faults.extend([("status", status)] * n)

    def delay(self, n: int, seconds: float) -> None:
        with self._lock:
            self._faults.extend([("delay", seconds)] * n)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
