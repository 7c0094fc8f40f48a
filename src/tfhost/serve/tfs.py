"""TensorFlow Serving's operations over the plane, shared by its REST and gRPC routes:
predict, classify, regress, multi-inference, metadata and status."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfhost.errors import InputError, NotFound
from tfhost.fleet import PipelineHandle
from tfhost.host import ModelInfo
from tfhost.serve import signature_defs, tfs_methods, workers
from tfhost.serve.codecs import tfs_json, tfs_proto
from tfhost.serve.plane import AnyHandle, Plane, identity
from tfhost.specs import DEFAULT_SIGNATURE, TensorSpec

REST = "tfs_rest"
GRPC = "tfs_grpc"


@dataclass(frozen=True)
class Spec:
    """A TF Serving ModelSpec: a name, and a version or a label (or neither: the latest)."""

    name: str
    version: int | None = None
    label: str | None = None


def model_spec(name: str, version: str | int | None, label: str | None) -> Spec:
    if version is not None and version != "" and label:
        raise InputError(
            f"Both model version ({version}) and model version label ({label}) cannot be supplied."
        )
    number: int | None = None
    if version is not None and version != "":
        try:
            number = int(version)
        except ValueError:
            raise InputError(f"Failed to convert version: {version} to numeric.") from None
        # TensorFlow Serving's absl::SimpleAtoi into an int64: past 2**63 - 1 it fails too.
        if number >= 2**63:
            raise InputError(f"Failed to convert version: {version} to numeric.")
    return Spec(name, number, label or None)


def spec_of(proto: Any) -> Spec:
    """A ``tensorflow.serving.ModelSpec`` proto as a Spec."""
    choice = proto.WhichOneof("version_choice")
    if choice == "version":
        return model_spec(proto.name, proto.version.value, None)
    if choice == "version_label":
        return model_spec(proto.name, None, proto.version_label)
    return Spec(proto.name)


async def _acquire(plane: Plane, spec: Spec) -> AnyHandle:
    """The plane's handle on the servable ``spec`` asks for; one it does not have is
    NOT_FOUND with TensorFlow Serving's text (basic_manager.cc GetUntypedServableHandle:
    "Servable not found for request: Latest(m)" / "Specific(m, 7)"), which clients and
    TF Serving's own test harness (WaitForServerReady) look for."""
    try:
        return await plane.acquire(spec.name, spec.version, spec.label)
    except NotFound:
        version = spec.version
        if version is None and spec.label is not None:
            version = plane.fleet.labels(spec.name).get(spec.label)
        request = f"Latest({spec.name})" if version is None else f"Specific({spec.name}, {version})"
        raise NotFound(f"Servable not found for request: {request}") from None


def _inputs_of(handle: AnyHandle, signature: str) -> Mapping[str, TensorSpec]:
    spec = handle.signatures.get(signature or DEFAULT_SIGNATURE)
    if spec is None:
        # TensorFlow Serving's text (http_rest_api_handler.cc GetInfoMap).
        raise InputError(
            f'Serving signature name: "{signature or DEFAULT_SIGNATURE}" not found in signature def'
        )
    return spec.inputs


# -- predict ----------------------------------------------------------------------------------


async def predict_rest(plane: Plane, spec: Spec, body: bytes) -> bytes:
    with plane.admit(REST, spec.name) as ticket:
        handle = await _acquire(plane, spec)
        try:
            ticket.serves(handle)
            call = tfs_json.decode_predict_request(body, lambda sig: _inputs_of(handle, sig))
            checked = handle.check(call.inputs, call.signature)
            outputs = await plane.run(ticket, handle, checked)
            return tfs_json.encode_predict_response(outputs, call.columnar)
        finally:
            handle.release()


async def predict_grpc(plane: Plane, request: Any) -> Any:
    spec = spec_of(request.model_spec)
    with plane.admit(GRPC, spec.name) as ticket:
        handle = await _acquire(plane, spec)
        try:
            ticket.serves(handle)
            signature, inputs, output_filter = tfs_proto.decode_predict_request(request)
            defs = _defs(plane, handle)
            feeds, aliases = tfs_proto.prepare_predict(
                tfs_proto.find_predict_signature(defs, signature), inputs, output_filter
            )
            checked = handle.check(feeds, signature)
            outputs = await plane.run(ticket, handle, checked)
            name, version = identity(handle)
            return tfs_proto.encode_predict_response(
                {alias: outputs[alias] for alias in aliases}, name, version, signature
            )
        finally:
            handle.release()


# -- classify, regress, multi-inference ---------------------------------------------------------

Run = Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]]
Method = Callable[[Run, Any, Any, int | None], Any]


async def _on_examples(
    plane: Plane, protocol: str, spec: Spec, request: Any, method: Method
) -> Any:
    """Run a classify/regress/multi-inference request: the method runs the model's
    signatures through ``run``, off the event loop (TensorFlow Serving's tf.Example path
    is not the hot path)."""
    with plane.admit(protocol, spec.name) as ticket:
        handle = await _acquire(plane, spec)
        try:
            ticket.serves(handle)
            defs = _defs(plane, handle)

            def run(signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
                return plane.run_here(ticket, handle, handle.check(inputs, signature))

            version = identity(handle)[1]
            return await workers.blocking(method, run, defs, request, version)
        finally:
            handle.release()


async def classify_grpc(plane: Plane, request: Any) -> Any:
    return await _on_examples(
        plane, GRPC, spec_of(request.model_spec), request, tfs_methods.classify
    )


async def regress_grpc(plane: Plane, request: Any) -> Any:
    return await _on_examples(
        plane, GRPC, spec_of(request.model_spec), request, tfs_methods.regress
    )


async def multi_inference_grpc(plane: Plane, request: Any) -> Any:
    tasks = request.tasks
    if not tasks:
        raise InputError("Inference tasks are empty")
    spec = spec_of(tasks[0].model_spec)
    return await _on_examples(plane, GRPC, spec, request, tfs_methods.multi_inference)


async def classify_rest(plane: Plane, spec: Spec, body: bytes) -> bytes:
    from tensorflow_serving.apis import classification_pb2

    request = classification_pb2.ClassificationRequest()
    tfs_json.decode_classification_request(body, request)
    _set_spec(request.model_spec, spec)
    response = await _on_examples(plane, REST, spec, request, tfs_methods.classify)
    return tfs_json.encode_classification_result(response.result)


async def regress_rest(plane: Plane, spec: Spec, body: bytes) -> bytes:
    from tensorflow_serving.apis import regression_pb2

    request = regression_pb2.RegressionRequest()
    tfs_json.decode_regression_request(body, request)
    _set_spec(request.model_spec, spec)
    response = await _on_examples(plane, REST, spec, request, tfs_methods.regress)
    return tfs_json.encode_regression_result(response.result)


def _set_spec(proto: Any, spec: Spec) -> None:
    proto.name = spec.name
    if spec.version is not None:
        proto.version.value = spec.version
    elif spec.label is not None:
        proto.version_label = spec.label


METHODS: dict[str, Callable[[Plane, Spec, bytes], Awaitable[bytes]]] = {
    "predict": predict_rest,
    "classify": classify_rest,
    "regress": regress_rest,
}


# -- metadata and status --------------------------------------------------------------------


async def metadata(plane: Plane, spec: Spec) -> Any:
    """GetModelMetadataResponse (signature_def): loads a lazy model, as TF Serving's
    metadata needs a loaded servable."""
    handle = await _acquire(plane, spec)
    try:
        info = _info(plane, handle)
        defs = signature_defs.signature_defs(info)
        return signature_defs.metadata_response(info.name, info.version, defs)
    finally:
        handle.release()


async def metadata_json(plane: Plane, spec: Spec) -> bytes:
    return signature_defs.metadata_json(await metadata(plane, spec))


def status(plane: Plane, spec: Spec) -> Any:
    """GetModelStatusResponse: the versions the host has of the model, or the one asked
    for by number. A label picks nothing: TensorFlow Serving's status ignores labels."""
    version = spec.version
    # GetModelStatusImpl's NOT_FOUND texts (get_model_status_impl.cc).
    try:
        infos = plane.fleet.host.status(spec.name, version)
    except NotFound:
        infos = []
    if not infos:
        if version is None:
            raise NotFound(f"Could not find any versions of model {spec.name}")
        raise NotFound(f"Could not find version {version} of model {spec.name}")
    return signature_defs.status_response(infos)


async def status_json(plane: Plane, spec: Spec) -> bytes:
    return signature_defs.status_json(status(plane, spec))


# A version's SignatureDefs, by version, with the signatures mapping of the cell they were
# read for: a version reloaded under the same number has a new cell, so it is read again.
_DEFS: dict[tuple[str, int | None], tuple[object, dict[str, Any]]] = {}


def _defs(plane: Plane, handle: AnyHandle) -> dict[str, Any]:
    """``signature_defs`` of the version ``handle`` holds, once per loaded version (the
    gRPC Predict path asks on every request)."""
    key = identity(handle)
    cached = _DEFS.get(key)
    if cached is not None and cached[0] is handle.signatures:
        return cached[1]
    defs = signature_defs.signature_defs(_info(plane, handle))
    _DEFS[key] = (handle.signatures, defs)
    return defs


def _info(plane: Plane, handle: AnyHandle) -> ModelInfo:
    if isinstance(handle, PipelineHandle):
        return signature_defs.pipeline_info(handle)
    (info,) = plane.fleet.host.status(handle.id.model, handle.id.version)
    return info
