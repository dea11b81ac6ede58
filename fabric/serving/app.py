"""`fabric serve`: an Open Inference Protocol (KServe V2) REST server over the model registry.

Endpoints (`../shared/specs/open-inference-protocol/open_inference_rest.yaml`):

    GET  /v2/health/live  /v2/health/ready
    GET  /v2                                          server metadata
    GET  /v2/models/{name}[/versions/{version}]       model metadata
    GET  /v2/models/{name}[/versions/{version}]/ready
    POST /v2/models/{name}[/versions/{version}]/infer

Errors are `{"error": "..."}`: 400 for a request that does not fit the protocol or the model, 404
for an unknown model or version, 401 for a missing or wrong bearer token (when one is
configured; the health endpoints stay open for probes). Fabric's own OpenAPI document is at
`/openapi.json`.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at run time, and the
# path parameter types are local to create_app.
import logging
import secrets
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Annotated, Any

import anyio
import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from fabric.errors import ModelError
from fabric.serving.catalog import ModelCatalog, ServedModel, UnknownModel
from fabric.serving.protocol import (
    BINARY_EXTENSION,
    BINARY_HEADER,
    MATRIX_INPUT_NAME,
    OUTPUT_NAME,
    SCHEMAS,
    InvalidRequest,
    inference_response,
    parse_inference_request,
)

log = logging.getLogger(__name__)

SERVER_NAME = "fabric"
PLATFORM = "sklearn_joblib"


class ApiError(Exception):
    """An error answered as `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _fabric_version() -> str:
    try:
        return package_version("fabric-integration")
    except PackageNotFoundError:
        return "0+unknown"


Responses = dict[int | str, dict[str, Any]]


def _ref(name: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
    }


_ERRORS: Responses = {
    "400": _ref("Error", "The request does not fit the protocol or the model"),
    "404": _ref("Error", "No such model or version"),
}


def create_app(catalog: ModelCatalog, token: str | None = None) -> FastAPI:
    """The ASGI app serving `catalog`; with `token`, model endpoints need `Bearer <token>`."""
    app = FastAPI(
        title="Fabric model server (Open Inference Protocol)",
        version=_fabric_version(),
        description=(
            "The Open Inference Protocol (KServe V2) REST API over Fabric's model registry: one "
            "`[rows, features]` FP64 tensor (or one `[rows]` tensor per feature) in, the positive "
            'class\'s probability (`predict_proba`, FP64 `[rows]`) out. Errors are `{"error": ...}`.'
        ),
    )
    _install_error_handlers(app)

    health = APIRouter(tags=["health"])
    dependencies = [Depends(_bearer_check(token))] if token else []
    models = APIRouter(tags=["models"], dependencies=dependencies)
    unauthorized: Responses = {"401": _ref("Error", "Missing or wrong bearer token")} if token else {}

    live_responses: Responses = {"200": _ref("ServerLive", "The server is live")}
    ready_server_responses: Responses = {
        "200": _ref("ServerReady", "Every model can score"),
        "503": _ref("ServerReady", "No model, or a model that cannot be loaded"),
    }

    @health.get("/v2/health/live", responses=live_responses)
    async def server_live() -> JSONResponse:
        return JSONResponse({"live": True})

    @health.get("/v2/health/ready", responses=ready_server_responses)
    async def server_ready() -> JSONResponse:
        problems = await anyio.to_thread.run_sync(catalog.load_defaults)
        ready = bool(catalog.names()) and not problems
        return JSONResponse({"ready": ready, "live": True}, status_code=200 if ready else 503)

    server_metadata_responses: Responses = {"200": _ref("ServerMetadata", "Server metadata"), **unauthorized}

    @models.get("/v2", responses=server_metadata_responses)
    @models.get("/v2/", responses=server_metadata_responses, include_in_schema=False)
    async def server_metadata() -> JSONResponse:
        return JSONResponse(
            {"name": SERVER_NAME, "version": _fabric_version(), "extensions": [BINARY_EXTENSION]}
        )

    async def _served(name: str, version: str | None) -> ServedModel:
        try:
            return await anyio.to_thread.run_sync(catalog.get, name, version)
        except UnknownModel as exc:
            raise ApiError(404, str(exc)) from None
        except (ModelError, OSError, ValueError) as exc:  # registered, but the file does not load
            log.error("model %s (version %s) cannot be loaded: %s", name, version, exc)
            raise ApiError(500, f"model {name!r} cannot be loaded; the server log says why") from None

    metadata_responses: Responses = {
        "200": _ref("ModelMetadata", "Model metadata"),
        **_ERRORS,
        **unauthorized,
    }
    ready_responses: Responses = {"200": _ref("ModelReady", "The model can score"), **_ERRORS, **unauthorized}
    infer_responses: Responses = {
        "200": _ref("InferenceResponse", "predict_proba: the positive class's probability per row"),
        **_ERRORS,
        **unauthorized,
    }
    name_example, version_example, request_example = _examples(catalog)
    infer_body = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/InferenceRequest"},
                    "example": request_example,
                }
            },
        }
    }
    ModelName = Annotated[str, Path(description="a registered model", examples=[name_example])]
    ModelVersion = Annotated[
        str,
        Path(description="a version number or an alias (champion, challenger)", examples=[version_example]),
    ]

    async def metadata(model_name: str, model_version: str | None) -> JSONResponse:
        served = await _served(model_name, model_version)
        return JSONResponse(_model_metadata(catalog, served))

    async def ready(model_name: str, model_version: str | None) -> JSONResponse:
        served = await _served(model_name, model_version)
        return JSONResponse({"name": served.name, "ready": True})

    async def infer(request: Request, model_name: str, model_version: str | None) -> Response:
        served = await _served(model_name, model_version)
        body = await request.body()
        try:
            json_length = _header_length(request.headers.get(BINARY_HEADER))
            content, header_length = await anyio.to_thread.run_sync(_infer, served, body, json_length)
        except InvalidRequest as exc:
            raise ApiError(400, f"model {served.name} v{served.version}: {exc}") from None
        if header_length is None:
            return Response(content=content, media_type="application/json")
        return Response(
            content=content,
            media_type="application/octet-stream",
            headers={BINARY_HEADER: str(header_length)},
        )

    @models.get("/v2/models/{model_name}", responses=metadata_responses)
    async def model_metadata(model_name: ModelName) -> JSONResponse:
        return await metadata(model_name, None)

    @models.get("/v2/models/{model_name}/versions/{model_version}", responses=metadata_responses)
    async def model_version_metadata(model_name: ModelName, model_version: ModelVersion) -> JSONResponse:
        return await metadata(model_name, model_version)

    @models.get("/v2/models/{model_name}/ready", responses=ready_responses)
    async def model_ready(model_name: ModelName) -> JSONResponse:
        return await ready(model_name, None)

    @models.get("/v2/models/{model_name}/versions/{model_version}/ready", responses=ready_responses)
    async def model_version_ready(model_name: ModelName, model_version: ModelVersion) -> JSONResponse:
        return await ready(model_name, model_version)

    @models.post("/v2/models/{model_name}/infer", responses=infer_responses, openapi_extra=infer_body)
    async def model_infer(request: Request, model_name: ModelName) -> Response:
        return await infer(request, model_name, None)

    @models.post(
        "/v2/models/{model_name}/versions/{model_version}/infer",
        responses=infer_responses,
        openapi_extra=infer_body,
    )
    async def model_version_infer(
        request: Request, model_name: ModelName, model_version: ModelVersion
    ) -> Response:
        return await infer(request, model_name, model_version)

    app.include_router(health)
    app.include_router(models)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _examples(catalog: ModelCatalog) -> tuple[str, str, dict[str, Any]]:
    """A served model's name and version and a one-row request for it, for the document."""
    n_features = 12
    name, version = "churn", "1"
    for candidate in catalog.names():
        try:
            served = catalog.get(candidate)
        except (UnknownModel, ModelError, OSError, ValueError):
            continue
        name, version, n_features = served.name, str(served.version), len(served.feature_names)
        break
    tensor = {
        "name": MATRIX_INPUT_NAME,
        "shape": [1, n_features],
        "datatype": "FP64",
        "data": [0.0] * n_features,
    }
    return name, version, {"id": "1", "inputs": [tensor], "outputs": [{"name": OUTPUT_NAME}]}


def _header_length(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit():
        raise InvalidRequest(f"{BINARY_HEADER} must be a byte count, got {value!r}")
    return int(value)


def _infer(served: ServedModel, body: bytes, json_length: int | None) -> tuple[bytes, int | None]:
    parsed = parse_inference_request(body, served.feature_names, json_length)
    try:
        probabilities = served.predict(parsed.features) if len(parsed.features) else np.empty(0)
    except ValueError as exc:  # e.g. values the estimator refuses (NaN where it has no support)
        raise InvalidRequest(f"the model refused the input: {exc}") from None
    return inference_response(
        served.name, str(served.version), parsed.request_id, probabilities, parsed.binary_output
    )


def _model_metadata(catalog: ModelCatalog, served: ServedModel) -> dict[str, Any]:
    card = served.card
    aliases = catalog.registry.aliases(served.name)
    return {
        "name": served.name,
        "versions": [str(v) for v in catalog.versions(served.name)],
        "platform": PLATFORM,
        "inputs": [{"name": MATRIX_INPUT_NAME, "datatype": "FP64", "shape": [-1, len(card.features)]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP64", "shape": [-1]}],
        "properties": {
            "version": str(served.version),
            "features": ",".join(card.feature_names),
            "algorithm": card.algorithm,
            "aliases": ",".join(f"{a}={v}" for a, v in sorted(aliases.items())),
            "created_at": card.created_at.isoformat(),
        },
    }


def _bearer_check(token: str) -> Any:
    bearer = HTTPBearer(auto_error=False, description="the token of serving.token_env")
    expected = token.encode("utf-8")

    async def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        given = credentials.credentials.encode("utf-8") if credentials else b""
        if not secrets.compare_digest(given, expected):
            raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer <token>)")

    return check


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"invalid request: {exc}"}, status_code=400)

    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request")
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with the OIP schemas, without the 422 FastAPI adds (never sent here)."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(SCHEMAS)
    for operations in document["paths"].values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    app.openapi_schema = document
    return document
