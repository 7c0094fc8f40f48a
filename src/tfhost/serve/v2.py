"""KServe V2 / Open Inference Protocol operations over the plane (with Triton's repository,
model configuration and statistics extensions), and their REST routes. The gRPC service
(``grpc_v2``) calls the same operations."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response

from tfhost.errors import InputError, NotFound, Unavailable
from tfhost.fleet import PipelineHandle
from tfhost.serve.codecs import v2 as codec
from tfhost.serve.plane import Plane, VersionStats, identity
from tfhost.specs import DEFAULT_SIGNATURE, Format, SignatureSpec
from tfhost.state import State

REST = "v2_rest"
GRPC = "v2_grpc"
JSON = "application/json"

# What ``signature_name`` in a request's parameters picks; V2 itself has no signatures.
SIGNATURE_PARAMETER = "signature_name"

# Triton's platform names, by the format tfhost opened.
_PLATFORMS = {
    Format.TF1_SAVED_MODEL: "tensorflow_savedmodel",
    Format.TF2_SAVED_MODEL: "tensorflow_savedmodel",
    Format.KERAS_SAVED_MODEL: "tensorflow_savedmodel",
    Format.KERAS_EXPORT: "tensorflow_savedmodel",
    Format.FROZEN_GRAPH: "tensorflow_graphdef",
    Format.KERAS: "keras",
    Format.KERAS_H5: "keras",
}


# Triton's model states, by tfhost's.
_TRITON_STATES = {
    State.START: "LOADING",
    State.LOADING: "LOADING",
    State.AVAILABLE: "READY",
    State.FAILED: "UNAVAILABLE",
    State.UNLOADING: "UNLOADING",
    State.END: "UNAVAILABLE",
}


@dataclass(frozen=True)
class ModelView:
    """What the metadata and config routes say of one model."""

    name: str
    versions: tuple[str, ...]
    platform: str
    signature: SignatureSpec
    jit_compile: bool = False


def parse_version(version: str | None) -> int | None:
    if version is None or version == "":
        return None
    if not (version.isascii() and version.isdigit()):  # not "²": int() refuses it
        raise NotFound(f"version {version!r} is not a version number")
    return int(version)


# -- operations -------------------------------------------------------------------------------


def ready(plane: Plane) -> bool:
    return plane.fleet.settled()


def model_ready(plane: Plane, name: str, version: int | None) -> bool:
    infos = plane.fleet.host.status(name, version)
    return any(info.state is State.AVAILABLE for info in infos)


async def model_view(plane: Plane, name: str, version: int | None) -> ModelView:
    handle = await plane.acquire(name, version)
    try:
        signature = handle.signatures.get(DEFAULT_SIGNATURE)
        if signature is None:
            raise NotFound(
                f"model {name!r} has no {DEFAULT_SIGNATURE!r} signature (it has "
                f"{sorted(handle.signatures)}); V2 serves a model's {DEFAULT_SIGNATURE}"
            )
        if isinstance(handle, PipelineHandle):
            return ModelView(name, (), "tfhost_pipeline", signature)
        infos = plane.fleet.host.status(name)
        versions = tuple(str(i.version) for i in infos if i.state is State.AVAILABLE)
        if version is not None:
            versions = (str(version),)
        (info,) = plane.fleet.host.status(name, handle.id.version)
        platform = _PLATFORMS.get(info.format, "tensorflow") if info.format else "tensorflow"
        return ModelView(name, versions, platform, signature, info.jit_compile)
    finally:
        handle.release()


async def infer(
    plane: Plane, protocol: str, name: str, version: int | None, call: codec.InferCall
) -> tuple[str, Mapping[str, np.ndarray]]:
    """Run an inference request; the version that answered (as a string) and the outputs
    asked for (all of them when none were named)."""
    with plane.admit(protocol, name) as ticket:
        handle = await plane.acquire(name, version)
        try:
            ticket.serves(handle)
            signature = call.parameters.get(SIGNATURE_PARAMETER, DEFAULT_SIGNATURE)
            if not isinstance(signature, str):
                raise InputError(f"parameter {SIGNATURE_PARAMETER!r} must be a string")
            checked = handle.check(call.inputs, signature)
            # Refused before the model runs (and counts an inference) for nothing.
            declared = handle.signatures[checked.signature].outputs
            missing = [o for o in call.outputs if o not in declared]
            if missing:
                raise InputError(
                    f"model {name!r} has no output {missing[0]!r}; it has {sorted(declared)}"
                )
            outputs = await plane.run(ticket, handle, checked)
            if call.outputs:
                outputs = {o: outputs[o] for o in call.outputs}
            number = identity(handle)[1]
            return "" if number is None else str(number), outputs
        finally:
            handle.release()


def statistics(plane: Plane, name: str | None, version: int | None) -> list[codec.Statistics]:
    stats = plane.stats()
    if name is not None:
        plane.fleet.host.status(name, version)  # NotFound for an unknown model
    chosen = []
    for (model, number), record in sorted(stats.items()):
        if name is not None and model != name:
            continue
        if version is not None and number != version:
            continue
        chosen.append(_statistics(model, number, record))
    if name is not None and not chosen:
        for info in plane.fleet.host.status(name, version):
            chosen.append(_statistics(info.name, info.version, VersionStats()))
    return chosen


def _statistics(model: str, version: int, record: VersionStats) -> codec.Statistics:
    return codec.Statistics(model=model, version=str(version), **vars(record))


def repository_index(plane: Plane, ready_only: bool) -> list[codec.RepositoryEntry]:
    fleet = plane.fleet
    entries = []
    seen = set()
    for info in fleet.models():
        seen.add(info.name)
        if ready_only and info.state is not State.AVAILABLE:
            continue
        entries.append(
            codec.RepositoryEntry(
                name=info.name,
                version=str(info.version),
                state=_TRITON_STATES[info.state],
                reason=info.error or "",
            )
        )
    if not ready_only:
        held = fleet.held()
        for name in fleet.configured():
            if name in seen:
                continue
            if name not in held:
                entries.append(codec.RepositoryEntry(name, "", "UNAVAILABLE", "not loaded"))
                continue
            for version in held[name] or ("",):  # as Triton: the versions it served
                entries.append(codec.RepositoryEntry(name, str(version), "UNAVAILABLE", "unloaded"))
    return entries


# -- REST -------------------------------------------------------------------------------------


def _json(value: object, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status, media_type=JSON)


def _name_version(request: Request) -> tuple[str, int | None]:
    return request.path_params["name"], parse_version(request.path_params.get("version"))


async def server_metadata(plane: Plane, request: Request) -> Response:
    return _json(codec.server_metadata())


async def live(plane: Plane, request: Request) -> Response:
    return _json({"live": True})


async def ready_route(plane: Plane, request: Request) -> Response:
    if ready(plane):
        return _json({"ready": True})
    return _json({"ready": False, "error": "models are still loading"}, 503)


async def model_metadata(plane: Plane, request: Request) -> Response:
    name, version = _name_version(request)
    view = await model_view(plane, name, version)
    return _json(codec.model_metadata(view.name, view.versions, view.platform, view.signature))


async def model_ready_route(plane: Plane, request: Request) -> Response:
    name, version = _name_version(request)
    if model_ready(plane, name, version):
        return _json({"name": name, "ready": True})
    raise Unavailable(f"model {name!r} is not ready")


async def model_config(plane: Plane, request: Request) -> Response:
    name, version = _name_version(request)
    view = await model_view(plane, name, version)
    return _json(
        codec.model_config(
            view.name, view.signature, platform=view.platform, jit_compile=view.jit_compile
        )
    )


async def stats(plane: Plane, request: Request) -> Response:
    name = request.path_params.get("name")
    version = parse_version(request.path_params.get("version"))
    return _json(codec.model_statistics(statistics(plane, name, version)))


async def infer_rest(
    plane: Plane, name: str, version: int | None, body: bytes, header: str | None
) -> tuple[bytes, int | None]:
    """A REST inference request's answer, and its ``Inference-Header-Content-Length``
    (None: all JSON); ``header`` is the request's."""
    header_length = None
    if header is not None:
        try:
            header_length = int(header)
        except ValueError:
            raise InputError(
                f"Inference-Header-Content-Length is not a number: {header!r}"
            ) from None
    call = codec.decode_infer_request(body, header_length)
    answered, outputs = await infer(plane, REST, name, version, call)
    return codec.encode_infer_response(name, answered, call, outputs)


async def repository_index_route(plane: Plane, request: Request) -> Response:
    parsed = await _optional_json(plane, request)
    ready_only = False
    if parsed is not None:
        if not isinstance(parsed, dict):
            raise InputError("the repository index request must be a JSON object")
        ready_only = bool(parsed.get("ready", False))
    return _json(codec.repository_index(repository_index(plane, ready_only)))


async def repository_load(plane: Plane, request: Request) -> Response:
    await _repository_request(plane, request, "load")
    await asyncio.to_thread(plane.fleet.load_model, request.path_params["name"])
    return _json({})


async def repository_unload(plane: Plane, request: Request) -> Response:
    await _repository_request(plane, request, "unload")
    await asyncio.to_thread(plane.fleet.unload_model, request.path_params["name"])
    return _json({})


async def _repository_request(plane: Plane, request: Request, action: str) -> None:
    parsed = await _optional_json(plane, request)
    if parsed is not None:
        codec.check_repository_request(action, parsed)


async def _optional_json(plane: Plane, request: Request) -> Any:
    """A repository request's JSON body, parsed; None when it has none (a body is
    optional on every repository route)."""
    from tfhost.serve.rest import json_body, read_body

    body = await read_body(request.scope, request.receive, plane.settings)
    return json_body(body) if body.strip() else None
