"""`fabric serve` against the shared Open Inference Protocol spec: every endpoint the spec names
answers, requests and responses validate against the spec's own schemas (not Fabric's document),
scores equal the registered model's, bad input is a 400 with `error`, unknown models a 404, and a
configured bearer token is enforced without ever being logged."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import requests
import yaml
from model_server import OIP_SPEC, FabricServer, home_config, write_config

from fabric.config import ServingConfig
from fabric.errors import ConfigError
from fabric.scoring.registry import ModelRegistry
from fabric.serving import serve

MODEL = "churn"

pytestmark = pytest.mark.timeout(300)

if not OIP_SPEC.is_file():  # ../shared is laid beside every clone, CI's included
    pytest.skip(f"the OIP spec is missing: {OIP_SPEC}", allow_module_level=True)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(OIP_SPEC.read_text(encoding="utf-8"))


def _validator(spec: dict[str, Any], component: str) -> jsonschema.Validator:
    """A validator for `#/components/schemas/<component>` of the spec (refs resolve inside it)."""
    schema = {"$ref": f"#/components/schemas/{component}", "components": spec["components"]}
    return jsonschema.Draft4Validator(schema)


def _spec_path(template: str, model: str, version: str) -> str:
    """The spec's `${MODEL_NAME}`-style path template with real values."""
    values = {"MODEL_NAME": model, "MODEL_VERSION": version}
    return re.sub(r"\$\{([A-Z_]+)\}", lambda m: values[m.group(1)], template)


@pytest.fixture(scope="module")
def server(fabric_server: FabricServer) -> FabricServer:
    return fabric_server


@pytest.fixture(scope="module")
def model(trained_home: Path) -> tuple[Any, list[str]]:
    config = home_config(trained_home)
    estimator, card = ModelRegistry(config.resolve(config.scoring.registry_dir)).load(MODEL)
    return estimator, card.feature_names


def _features(rows: int, n_features: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.poisson(3.0, (rows, n_features)).astype(np.float64)


def _matrix_request(matrix: np.ndarray, datatype: str = "FP64") -> dict[str, Any]:
    data = [None if np.isnan(v) else float(v) for v in matrix.ravel()]
    return {
        "id": "req-1",
        "inputs": [{"name": "features", "shape": list(matrix.shape), "datatype": datatype, "data": data}],
        "outputs": [{"name": "predict_proba"}],
    }


def test_every_spec_endpoint_answers_with_spec_valid_bodies(
    server: FabricServer, spec: dict[str, Any], model: tuple[Any, list[str]]
) -> None:
    estimator, names = model
    matrix = _features(5, len(names))
    request = _matrix_request(matrix)
    _validator(spec, "inference_request").validate(request)
    answered = []
    for template, operations in spec["paths"].items():
        path = _spec_path(template, MODEL, "1")
        for method, operation in operations.items():
            if method == "parameters":
                continue
            response = requests.request(method, server.url + path, json=request, timeout=30)
            assert response.status_code == 200, (method, path, response.text)
            schema = operation["responses"]["200"].get("content", {}).get("application/json")
            if schema:
                ref = schema["schema"]["$ref"].rsplit("/", 1)[1]
                _validator(spec, ref).validate(response.json())
            answered.append((method.upper(), template))
    assert len(answered) == 6

    body = requests.post(f"{server.url}/v2/models/{MODEL}/infer", json=request, timeout=30).json()
    _validator(spec, "inference_response").validate(body)
    assert body["id"] == "req-1" and body["model_name"] == MODEL and body["model_version"] == "1"
    (output,) = body["outputs"]
    assert output["name"] == "predict_proba" and output["shape"] == [5] and output["datatype"] == "FP64"
    expected = estimator.predict_proba(matrix)[:, 1]
    np.testing.assert_allclose(output["data"], expected, rtol=1e-12)


def test_model_metadata_names_the_features(server: FabricServer, spec: dict[str, Any]) -> None:
    for path in (f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/versions/champion"):
        body = requests.get(server.url + path, timeout=10).json()
        _validator(spec, "metadata_model_response").validate(body)
        assert body["versions"] == ["1"]
        (tensor,) = body["inputs"]
        features = body["properties"]["features"].split(",")
        assert tensor == {"name": "features", "datatype": "FP64", "shape": [-1, len(features)]}
        assert "cancel_page_views_30d" in features


def test_one_tensor_per_feature_and_nested_data_score_the_same(
    server: FabricServer, model: tuple[Any, list[str]]
) -> None:
    estimator, names = model
    matrix = _features(4, len(names), seed=11)
    expected = estimator.predict_proba(matrix)[:, 1]
    # one [rows, 1] tensor per feature, in reverse order, mixed numeric datatypes
    per_feature = {
        "inputs": [
            {
                "name": names[i],
                "shape": [4, 1],
                "datatype": "INT64" if i % 2 else "FP32",
                "data": matrix[:, i].tolist(),
            }
            for i in reversed(range(len(names)))
        ]
    }
    nested = {
        "inputs": [{"name": "x", "shape": [4, len(names)], "datatype": "FP32", "data": matrix.tolist()}]
    }
    for request in (per_feature, nested):
        response = requests.post(f"{server.url}/v2/models/{MODEL}/versions/1/infer", json=request, timeout=30)
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["outputs"][0]["data"], expected, rtol=1e-12)


def test_null_elements_are_missing_values(server: FabricServer, model: tuple[Any, list[str]]) -> None:
    """JSON has no NaN and the spec's tensor data no null: Fabric reads null as a missing value
    (an extension; the remote scorer sends NaN that way)."""
    estimator, names = model
    matrix = _features(3, len(names), seed=5)
    matrix[1, 4] = np.nan
    response = requests.post(
        f"{server.url}/v2/models/{MODEL}/infer", json=_matrix_request(matrix), timeout=30
    )
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["outputs"][0]["data"], estimator.predict_proba(matrix)[:, 1])


def _tensor_body(shape: Any, datatype: str = "FP64", data: Any = (), **extra: Any) -> bytes:
    tensor = {"name": extra.pop("name", "features"), "shape": shape, "datatype": datatype, "data": data}
    return json.dumps({"inputs": [tensor], **extra}).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"inputs": []}', "non-empty list"),
        (_tensor_body([1, 3], data=[1, 2, 3]), "must be [rows, 12]"),
        (_tensor_body([2, 12], data=[1, 2]), "needs 24 elements"),
        (_tensor_body([1, 12], "BYTES", ["a"]), "datatype 'BYTES'"),
        (_tensor_body([1, 12], data=[[1], [2, 3]]), "data must be numbers"),
        (_tensor_body([1, 12], data=[{"a": 1}]), "data must be numbers"),
        (_tensor_body([-1, 12]), "non-negative"),
        (_tensor_body([1.5, 12]), "non-negative integers"),
        (_tensor_body([1], data=[1], name="tenure_days"), "missing features"),
        (_tensor_body([0, 12], outputs=[{"name": "label"}]), "unknown outputs"),
        (_tensor_body([0, 12], parameters={"a": [1]}), "string, number or boolean"),
        (_tensor_body([0, 12], id=None), "'id' must be a string"),
    ],
)
def test_bad_requests_get_400_with_an_error(
    server: FabricServer, spec: dict[str, Any], body: bytes, message: str
) -> None:
    response = requests.post(f"{server.url}/v2/models/{MODEL}/infer", data=body, timeout=10)
    assert response.status_code == 400, response.text
    _validator(spec, "inference_error_response").validate(response.json())
    assert message in response.json()["error"]


def test_binary_data_that_does_not_add_up_gets_400(server: FabricServer) -> None:
    values = np.zeros((2, 12)).tobytes()
    header = {"inputs": [{"name": "features", "shape": [2, 12], "datatype": "FP64",
                          "parameters": {"binary_data_size": 2 * 12 * 8}}]}  # fmt: skip
    url = f"{server.url}/v2/models/{MODEL}/infer"
    cases = [
        (values[:-8], "ends before"),
        (values + b"xx", "add up to 192"),
    ]
    for data, message in cases:
        body = json.dumps(header).encode()
        headers = {"Inference-Header-Content-Length": str(len(body))}
        response = requests.post(url, data=body + data, headers=headers, timeout=10)
        assert response.status_code == 400 and message in response.json()["error"], response.text
    response = requests.post(url, data=b"{}", headers={"Inference-Header-Content-Length": "9"}, timeout=10)
    assert response.status_code == 400 and "outside the body" in response.json()["error"]
    bad_size = json.dumps(
        {"inputs": [{**header["inputs"][0], "parameters": {"binary_data_size": 5}}]}
    ).encode()
    response = requests.post(
        url,
        data=bad_size + values,
        headers={"Inference-Header-Content-Length": str(len(bad_size))},
        timeout=10,
    )
    assert response.status_code == 400 and "must be 192" in response.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/unknown",
        "/v2/models/unknown/infer",
        f"/v2/models/{MODEL}/versions/9",
        f"/v2/models/{MODEL}/versions/challenger/ready",
        "/v2/models/..%2F..%2Fetc/ready",
    ],
)
def test_unknown_models_and_versions_get_404(server: FabricServer, path: str) -> None:
    method = "post" if path.endswith("/infer") else "get"
    response = requests.request(method, server.url + path, json={"inputs": []}, timeout=10)
    assert response.status_code == 404, response.text
    assert "error" in response.json() and "/" not in response.json()["error"].replace("..%2F", "")


def test_bearer_token_guards_the_model_endpoints(
    trained_home: Path, tmp_path: Path, model: tuple[Any, list[str]]
) -> None:
    secret = "s3cret-token-value"
    config_file = write_config(tmp_path, {"serving": {"token_env": "FABRIC_TEST_SERVE_TOKEN"}})
    log_file = tmp_path / "serve.log"
    server = FabricServer(
        trained_home, config_file=config_file, env={"FABRIC_TEST_SERVE_TOKEN": secret}, log_file=log_file
    ).start()
    try:
        request = _matrix_request(_features(2, len(model[1])))
        infer = f"{server.url}/v2/models/{MODEL}/infer"
        assert requests.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200
        missing = requests.post(infer, json=request, timeout=10)
        wrong = requests.post(infer, json=request, headers={"Authorization": "Bearer nope"}, timeout=10)
        for response in (missing, wrong, requests.get(f"{server.url}/v2", timeout=10)):
            assert response.status_code == 401 and "bearer token" in response.json()["error"]
            assert response.headers["WWW-Authenticate"] == "Bearer"
        good = requests.post(infer, json=request, headers={"Authorization": f"Bearer {secret}"}, timeout=10)
        assert good.status_code == 200, good.text
        document = requests.get(f"{server.url}/openapi.json", timeout=10).json()
        assert "HTTPBearer" in document["components"]["securitySchemes"]
    finally:
        server.stop()
    assert secret not in log_file.read_text()


def test_refuses_to_start_when_the_token_variable_is_unset(
    trained_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FABRIC_TEST_UNSET_TOKEN", raising=False)
    config = home_config(trained_home).model_copy(
        update={"serving": ServingConfig(token_env="FABRIC_TEST_UNSET_TOKEN")}
    )
    with pytest.raises(ConfigError, match="FABRIC_TEST_UNSET_TOKEN is not set or empty"):
        serve(config)


def test_a_registered_model_that_does_not_load_is_a_500_and_not_ready(
    trained_home: Path, tmp_path: Path
) -> None:
    """A model file changed after registration (its SHA-256 no longer matches the card)."""
    from fastapi.testclient import TestClient

    from fabric.serving.app import create_app
    from fabric.serving.catalog import ModelCatalog

    registry = tmp_path / "models"
    config = home_config(trained_home)
    shutil.copytree(config.resolve(config.scoring.registry_dir), registry)
    with (registry / MODEL / "v1" / "model.joblib").open("ab") as artifact:
        artifact.write(b"tampered")
    with TestClient(create_app(ModelCatalog(registry, 1))) as client:
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503 and ready.json()["ready"] is False
        response = client.get(f"/v2/models/{MODEL}")
    assert response.status_code == 500
    assert response.json() == {"error": f"model '{MODEL}' cannot be loaded; the server log says why"}
