"""Fabric's model server: the Open Inference Protocol over the model registry (`fabric serve`)."""

from __future__ import annotations

import logging
import os

from fabric.config import FabricConfig
from fabric.errors import ConfigError

log = logging.getLogger(__name__)


def serving_token(config: FabricConfig) -> str | None:
    """The bearer token clients must send: the value of `serving.token_env`, if configured."""
    name = config.serving.token_env
    if name is None:
        return None
    token = os.environ.get(name, "")
    if not token:
        raise ConfigError(
            f"serving.token_env: environment variable {name} is not set or empty; set it to the "
            "token clients must send, or remove serving.token_env to serve without authentication"
        )
    return token


def serve(config: FabricConfig, host: str | None = None, port: int | None = None) -> None:
    """Run the OIP server over `scoring.registry_dir` until interrupted (blocks)."""
    import uvicorn

    from fabric.serving.app import create_app
    from fabric.serving.catalog import ModelCatalog

    token = serving_token(config)  # before anything slow: a missing token fails at once
    catalog = ModelCatalog(config.resolve(config.scoring.registry_dir), config.serving.model_threads)
    problems = catalog.load_defaults()
    if not catalog.names():
        log.warning("no models in %s yet: the server answers 404 until one is trained", catalog.registry.root)
    for name, problem in problems.items():
        log.error("model %s is not servable: %s", name, problem)
    app = create_app(catalog, token)
    uvicorn.run(
        app,
        host=host or config.serving.host,
        port=port or config.serving.port,
        log_level="info",
    )
