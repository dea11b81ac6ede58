"""A real third-party OIP server for tests: Seldon's MLServer 1.7.1 with its sklearn runtime.

MLServer's dependencies clash with Fabric's, so it lives in its own virtual environment under
`.fabric/test-venvs/` (gitignored), created on first use with `uv` (falling back to venv + pip)
and reused while its requirements stay the same. The model's scikit-learn and NumPy are pinned
to this environment's versions, since a joblib file is only safe to load with the versions that
wrote it. Creating it from scratch took 11 s here with an empty package cache (2 cores).

MLServer runs with `"parallel_workers": 0` (inference in the server process): its worker
processes crash with this machine's uvloop.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy
import pytest
import requests
import sklearn
from model_server import REPO, free_port

MLSERVER_VERSION = "1.7.1"
VENV = REPO / ".fabric" / "test-venvs" / f"mlserver-{MLSERVER_VERSION}"
REQUIREMENTS = [
    f"mlserver=={MLSERVER_VERSION}",
    f"mlserver-sklearn=={MLSERVER_VERSION}",
    f"scikit-learn=={sklearn.__version__}",
    f"numpy=={numpy.__version__}",
]
STARTUP_SECONDS = 180


def mlserver_venv() -> Path:
    """The MLServer virtual environment (created or updated when needed); returns its `mlserver`."""
    marker = VENV / "fabric-requirements.json"
    command = VENV / "bin" / "mlserver"
    if command.is_file() and marker.is_file() and json.loads(marker.read_text()) == REQUIREMENTS:
        return command
    shutil.rmtree(VENV, ignore_errors=True)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    uv = Path(sys.executable).parent / "uv"
    python = str(Path(sys.executable).resolve())
    if uv.is_file():
        steps = [
            [str(uv), "venv", "--quiet", "--python", python, str(VENV)],
            [str(uv), "pip", "install", "--quiet", "--python", str(VENV / "bin" / "python"), *REQUIREMENTS],
        ]
    else:
        steps = [
            [python, "-m", "venv", str(VENV)],
            [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
        ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"creating the MLServer environment failed: {' '.join(step)}\n{done.stderr}")
    marker.write_text(json.dumps(REQUIREMENTS))
    print(f"MLServer environment created in {time.perf_counter() - started:.1f} s at {VENV}")
    return command


@dataclass
class MLServer:
    url: str
    model: str
    version: str


def start_mlserver(model_file: Path, directory: Path, model: str, version: str) -> Iterator[MLServer]:
    """Serve `model_file` (a joblib sklearn model) with MLServer until the generator is closed."""
    command = mlserver_venv()
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_file, directory / "model.joblib")
    port = free_port()
    settings = {
        "parallel_workers": 0,
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
    }
    (directory / "settings.json").write_text(json.dumps(settings))
    (directory / "model-settings.json").write_text(
        json.dumps(
            {
                "name": model,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": version},
            }
        )
    )
    log_path = directory / "mlserver.log"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(command), "start", str(directory)],
            cwd=directory,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"MLServer exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                if requests.get(f"{url}/v2/models/{model}/ready", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"MLServer not ready after {STARTUP_SECONDS} s:\n{log_path.read_text()}")
            time.sleep(0.5)
        yield MLServer(url, model, version)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
