"""The Open Inference Protocol (KServe V2) REST payloads: parse requests, build responses.

Inference bodies are parsed with orjson and turned into NumPy directly rather than through
pydantic models: a 10,000-row batch of 12 features is 120,000 numbers, and validating each one
as a Python object costs more than the model takes to score it. Every problem with a request is
an `InvalidRequest` (HTTP 400, `{"error": ...}`) naming the input and what was expected.

Two input layouts are accepted, the two that OIP clients send for tabular models:

- one tensor of shape `[n, n_features]` (KServe's sklearn server, tritonclient, the remote
  scorer); its name is free, `features` by convention;
- one tensor per feature, named after the model card's features, each of shape `[n]` or
  `[n, 1]` (MLServer's pandas codec, Seldon).

Tensor data may be flat (row-major) or nested, as the protocol allows. `null` elements become
NaN (a missing value, which the model card's estimators handle). Triton's binary tensor data
extension (tritonclient's default) is supported too: the JSON header is the first
`Inference-Header-Content-Length` bytes of the body, and each input with a `binary_data_size`
parameter takes its little-endian bytes from what follows, in input order; the output is sent
as binary when the request asks for it (`binary_data` on the output, or `binary_data_output`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

OUTPUT_NAME = "predict_proba"
"""The one output: the probability of the positive class, one FP64 per row."""
MATRIX_INPUT_NAME = "features"
BINARY_HEADER = "Inference-Header-Content-Length"
"""Triton's binary tensor data extension: the length of the JSON part of a body."""
BINARY_EXTENSION = "binary_tensor_data"
"""The extension's name in a server's metadata (`GET /v2`)."""
NUMERIC_DATATYPES = {
    "FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8",
    "UINT64", "UINT32", "UINT16", "UINT8",
}  # fmt: skip
"""Accepted input datatypes: every numeric OIP type, converted to float64 for the model."""
_BINARY_DTYPES = {
    "FP64": "<f8", "FP32": "<f4", "FP16": "<f2", "INT64": "<i8", "INT32": "<i4", "INT16": "<i2",
    "INT8": "i1", "UINT64": "<u8", "UINT32": "<u4", "UINT16": "<u2", "UINT8": "u1",
}  # fmt: skip


class InvalidRequest(ValueError):
    """The request does not fit the protocol or the model: answered with 400."""


@dataclass(frozen=True)
class InferenceInput:
    """A parsed inference request: the feature matrix in the model card's column order."""

    features: np.ndarray
    request_id: str | None
    outputs: list[str]
    binary_output: bool = False


def parse_inference_request(
    body: bytes, feature_names: Sequence[str], json_length: int | None = None
) -> InferenceInput:
    """Validate an `$inference_request` body and build its float64 matrix (n x features).

    `json_length` (the `Inference-Header-Content-Length` header) marks a binary-data request: the
    JSON is that many leading bytes, the tensors' bytes follow.
    """
    binary = memoryview(b"")
    if json_length is not None:
        if not 0 < json_length <= len(body):
            raise InvalidRequest(
                f"Inference-Header-Content-Length {json_length} is outside the body ({len(body)} bytes)"
            )
        body, binary = body[:json_length], memoryview(body)[json_length:]
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise InvalidRequest("the body must be a JSON object ($inference_request)")
    request_id = request.get("id")
    if "id" in request and not isinstance(request_id, str):
        raise InvalidRequest("'id' must be a string")
    _check_parameters(request, "'parameters'")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequest("'inputs' must be a non-empty list of tensors")
    tensors, offset = [], 0
    for i, value in enumerate(inputs):
        tensor, offset = _tensor(i, value, binary, offset)
        tensors.append(tensor)
    if offset != len(binary):
        raise InvalidRequest(
            f"the binary data is {len(binary)} bytes but the inputs' binary_data_size add up to {offset}"
        )
    n_features = len(feature_names)
    if len(tensors) == 1 and (len(tensors[0].shape) == 2 or tensors[0].name not in feature_names):
        matrix = _matrix(tensors[0], n_features)
    else:
        matrix = _columns(tensors, feature_names)
    outputs, binary_output = _requested_outputs(request)
    return InferenceInput(matrix, request_id, outputs, binary_output)


@dataclass(frozen=True)
class _Tensor:
    name: str
    shape: list[int]
    data: list[Any] | np.ndarray


def _tensor(index: int, value: Any, binary: memoryview, offset: int) -> tuple[_Tensor, int]:
    """The input at `index`, and the offset in `binary` after its bytes (if it has any)."""
    where = f"inputs[{index}]"
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where} must be an object with name, shape, datatype and data")
    name = value.get("name")
    if not isinstance(name, str):
        raise InvalidRequest(f"{where}.name must be a string")
    where = f"input {name!r}"
    shape = _shape(value.get("shape"))
    if shape is None:
        raise InvalidRequest(
            f"{where}: shape must be a list of non-negative integers, got {value.get('shape')!r}"
        )
    datatype = value.get("datatype")
    if datatype not in NUMERIC_DATATYPES:
        raise InvalidRequest(
            f"{where}: datatype {datatype!r} is not supported; send one of "
            f"{', '.join(sorted(NUMERIC_DATATYPES))} (FP64 preferred)"
        )
    _check_parameters(value, f"{where}: parameters")
    size = value.get("parameters", {}).get("binary_data_size")
    if size is not None:
        return _binary_tensor(where, name, shape, datatype, size, binary, offset)
    data = value.get("data")
    if not isinstance(data, list):
        raise InvalidRequest(f"{where}: data must be a JSON array")
    return _Tensor(name, shape, data), offset


def _binary_tensor(
    where: str, name: str, shape: list[int], datatype: str, size: Any, binary: memoryview, offset: int
) -> tuple[_Tensor, int]:
    dtype = np.dtype(_BINARY_DTYPES[datatype])
    expected = math.prod(shape) * dtype.itemsize
    if isinstance(size, bool) or not isinstance(size, int) or size != expected:
        raise InvalidRequest(f"{where}: binary_data_size {size!r} must be {expected} for {datatype} {shape}")
    if offset + size > len(binary):
        raise InvalidRequest(f"{where}: the body ends before its {size} bytes of binary data")
    values = np.frombuffer(binary[offset : offset + size], dtype=dtype).astype(np.float64)
    return _Tensor(name, shape, values), offset + size


def _shape(shape: Any) -> list[int] | None:
    """The dimensions as ints (JSON Schema counts 3.0 as an integer too), or None if invalid."""
    if not isinstance(shape, list) or not shape:
        return None
    dims = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int | float) or d < 0:
            return None
        if isinstance(d, float) and not d.is_integer():
            return None
        dims.append(int(d))
    return dims


def _check_parameters(owner: dict[str, Any], where: str) -> None:
    """`owner["parameters"]`, if present: an object of strings, numbers or booleans."""
    if "parameters" not in owner:
        return
    parameters = owner["parameters"]
    if not isinstance(parameters, dict):
        raise InvalidRequest(f"{where} must be an object")
    for key, value in parameters.items():
        if not isinstance(value, str | int | float | bool):
            raise InvalidRequest(f"{where}: {key!r} must be a string, number or boolean")


def _values(tensor: _Tensor) -> np.ndarray:
    """The tensor's elements as a flat float64 array, checked against its shape."""
    if isinstance(tensor.data, np.ndarray):
        return tensor.data
    try:
        values = np.asarray(tensor.data, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(
            f"input {tensor.name!r}: data must be numbers (nested lists of one shape): {exc}"
        ) from None
    expected = math.prod(tensor.shape)
    if values.size != expected:
        raise InvalidRequest(
            f"input {tensor.name!r}: shape {tensor.shape} needs {expected} elements, data has {values.size}"
        )
    return values


def _matrix(tensor: _Tensor, n_features: int) -> np.ndarray:
    if len(tensor.shape) != 2 or tensor.shape[1] != n_features:
        raise InvalidRequest(
            f"input {tensor.name!r}: shape {tensor.shape} must be [rows, {n_features}] "
            f"(one column per model feature), or send one [rows] tensor per feature"
        )
    return _values(tensor).reshape(tensor.shape[0], n_features)


def _columns(tensors: list[_Tensor], feature_names: Sequence[str]) -> np.ndarray:
    by_name = {t.name: t for t in tensors}
    unknown = [t.name for t in tensors if t.name not in feature_names]
    missing = [name for name in feature_names if name not in by_name]
    if unknown or missing or len(by_name) != len(tensors):
        raise InvalidRequest(
            "send either one [rows, features] tensor or one tensor per feature; "
            f"unknown inputs: {unknown}, missing features: {missing}"
        )
    rows = {t.shape[0] for t in tensors}
    for t in tensors:
        if len(t.shape) > 2 or (len(t.shape) == 2 and t.shape[1] != 1):
            raise InvalidRequest(f"input {t.name!r}: shape {t.shape} must be [rows] or [rows, 1]")
    if len(rows) != 1:
        raise InvalidRequest(f"the feature tensors have different row counts: {sorted(rows)}")
    return np.column_stack([_values(by_name[name]) for name in feature_names])


def _requested_outputs(request: dict[str, Any]) -> tuple[list[str], bool]:
    """The requested output names, and whether the output goes back as binary data."""
    binary = request.get("parameters", {}).get("binary_data_output") is True
    if "outputs" not in request:
        return [OUTPUT_NAME], binary
    outputs = request["outputs"]
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise InvalidRequest("'outputs' must be a list of objects with a name")
    for i, output in enumerate(outputs):
        _check_parameters(output, f"outputs[{i}].parameters")
    names = [o["name"] for o in outputs]
    unknown = [n for n in names if n != OUTPUT_NAME]
    if unknown:
        raise InvalidRequest(f"unknown outputs {unknown}: this model has one output, {OUTPUT_NAME!r}")
    binary = binary or any(o.get("parameters", {}).get("binary_data") is True for o in outputs)
    return names or [OUTPUT_NAME], binary


def inference_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    probabilities: np.ndarray,
    binary: bool = False,
) -> tuple[bytes, int | None]:
    """An `$inference_response` body with the `predict_proba` output, shape [rows], and the JSON
    header's length when the output is binary (for `Inference-Header-Content-Length`)."""
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        response["id"] = request_id
    values = np.ascontiguousarray(probabilities, dtype="<f8")
    output: dict[str, Any] = {"name": OUTPUT_NAME, "shape": [int(values.shape[0])], "datatype": "FP64"}
    if binary:
        output["parameters"] = {"binary_data_size": values.nbytes}
        response["outputs"] = [output]
        header = orjson.dumps(response)
        return header + values.tobytes(), len(header)
    output["data"] = values
    response["outputs"] = [output]
    return orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY), None


# Schemas of Fabric's own OpenAPI document (/openapi.json). They follow the OIP spec's
# components; a test validates real traffic against the spec's own copy, not these.
_TENSOR_DATA: dict[str, Any] = {
    "type": "array",
    "items": {
        "anyOf": [
            {"$ref": "#/components/schemas/TensorData"},
            {"type": "number"},
            {"type": "string"},
            {"type": "boolean"},
            {"type": "null"},
        ]
    },
}
_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]},
}
_SHAPE: dict[str, Any] = {"type": "array", "items": {"type": "integer", "minimum": 0}}
_METADATA_TENSOR = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["name", "datatype", "shape"],
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    },
    "TensorData": _TENSOR_DATA,
    "Parameters": _PARAMETERS,
    "ServerLive": {
        "type": "object",
        "properties": {"live": {"type": "boolean"}},
        "required": ["live"],
    },
    "ServerReady": {
        "type": "object",
        "properties": {"ready": {"type": "boolean"}, "live": {"type": "boolean"}},
        "required": ["ready"],
    },
    "ModelReady": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
        "required": ["name", "ready"],
    },
    "ServerMetadata": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "version", "extensions"],
    },
    "MetadataTensor": _METADATA_TENSOR,
    "ModelMetadata": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/MetadataTensor"}},
            "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/MetadataTensor"}},
            "properties": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["name", "platform"],
    },
    "RequestInput": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "shape": _SHAPE,
            "datatype": {"type": "string", "enum": sorted(NUMERIC_DATATYPES)},
            "parameters": {"$ref": "#/components/schemas/Parameters"},
            "data": {"$ref": "#/components/schemas/TensorData"},
        },
        "required": ["name", "shape", "datatype", "data"],
    },
    "RequestOutput": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "enum": [OUTPUT_NAME]},
            "parameters": {"$ref": "#/components/schemas/Parameters"},
        },
        "required": ["name"],
    },
    "InferenceRequest": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "parameters": {"$ref": "#/components/schemas/Parameters"},
            "inputs": {
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/components/schemas/RequestInput"},
            },
            "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/RequestOutput"}},
        },
        "required": ["inputs"],
    },
    "ResponseOutput": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "shape": _SHAPE,
            "datatype": {"type": "string"},
            "parameters": {"$ref": "#/components/schemas/Parameters"},
            "data": {"$ref": "#/components/schemas/TensorData"},
        },
        "required": ["name", "shape", "datatype", "data"],
    },
    "InferenceResponse": {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": {"$ref": "#/components/schemas/Parameters"},
            "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/ResponseOutput"}},
        },
        "required": ["model_name", "outputs"],
    },
}
