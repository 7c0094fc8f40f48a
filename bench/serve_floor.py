"""The floor for ``bench/serve.py``: the barest servers that answer the same four routes.

    python bench/serve_floor.py REPO [--rest-port 0] [--grpc-port 0] [--grpc-mode sync|aio]

Every ``REPO/NAME/VERSION/`` (the highest version) is loaded with ``tf.saved_model.load``
and called through ``signatures["serving_default"]``, inline, with no admission, no
metrics, no checks beyond what the wire needs. Each model takes one input and gives one
output, as the bench's models do; nothing else is supported.

* REST: Starlette on uvicorn (uvloop, httptools), orjson in and out, the TensorFlow call
  inline on the event loop: ``POST /v2/models/NAME/infer`` (KServe V2 JSON) and
  ``POST /v1/models/NAME:predict`` (TensorFlow Serving's row format).
* gRPC: TensorFlow Serving's ``PredictionService.Predict`` and KServe V2's
  ``GRPCInferenceService.ModelInfer``, on grpcio's sync server with a thread pool
  (``--grpc-mode sync``, the faster here: TensorFlow drops the GIL while it computes, so
  two threads use both cores) or grpc.aio with the call inline on its loop.

``--no-model`` answers every request with zeros of the output's shape instead of calling
TensorFlow: the same transports and codecs with no model, the most a server on them could
reach (``bench/serve.py --ceiling``).

Prints ``serve_floor: ready: REST on http://HOST:P, gRPC on HOST:Q`` (tfhost serve's
ready line) once both listen, so the bench reads the ports a port of 0 picked.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import grpc
import numpy as np
import orjson
import tensorflow as tf
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

HOST = "127.0.0.1"
JSON = "application/json"
SIGNATURE = "serving_default"


@dataclass(frozen=True)
class Model:
    name: str
    version: int
    input: str
    output: str
    function: Any  # the concrete function of the serving signature
    owner: Any  # the loaded SavedModel: its variables live as long as it does

    def __call__(self, x: np.ndarray) -> np.ndarray:
        result: np.ndarray = self.function(**{self.input: tf.constant(x)})[self.output].numpy()
        return result


@dataclass(frozen=True)
class NoModel:
    """``--no-model``: the answer's shape and dtype without the call."""

    name: str
    version: int
    input: str
    output: str
    row: np.ndarray  # one row of the real model's answer, zeroed

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.zeros((len(x), *self.row.shape), self.row.dtype)


Models = dict[str, Model | NoModel]


def load_models(repo: Path, no_model: bool = False) -> Models:
    models: Models = {}
    for folder in sorted(p for p in repo.iterdir() if p.is_dir()):
        versions = [int(v.name) for v in folder.iterdir() if v.name.isdigit()]
        if not versions:
            continue
        version = max(versions)
        loaded = tf.saved_model.load(str(folder / str(version)))
        function = loaded.signatures[SIGNATURE]
        (input_name,) = function.structured_input_signature[1]
        (output_name,) = function.structured_outputs
        spec = function.structured_input_signature[1][input_name]
        model = Model(folder.name, version, input_name, output_name, function, loaded)
        # One call before serving: the first one sets up TensorFlow's kernels.
        y = model(np.zeros([1, *spec.shape[1:]], spec.dtype.as_numpy_dtype))
        models[folder.name] = (
            NoModel(model.name, version, input_name, output_name, np.zeros_like(y[0]))
            if no_model
            else model
        )
    return models


# -- REST -----------------------------------------------------------------------------------


def rest_app(models: Models) -> Starlette:
    def not_found(name: str) -> Response:
        return Response(orjson.dumps({"error": f"no model {name!r}"}), 404, media_type=JSON)

    async def v2_infer(request: Request) -> Response:
        name = request.path_params["name"]
        model = models.get(name)
        if model is None:
            return not_found(name)
        doc = orjson.loads(await request.body())
        tensor = doc["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        y = model(x)
        body = {
            "model_name": name,
            "model_version": str(model.version),
            "outputs": [
                {"name": model.output, "datatype": "FP32", "shape": y.shape, "data": y.ravel()}
            ],
        }
        return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON)

    async def tfs_predict(request: Request) -> Response:
        name = request.path_params["name"]
        model = models.get(name)
        if model is None:
            return not_found(name)
        doc = orjson.loads(await request.body())
        y = model(np.asarray(doc["instances"], dtype=np.float32))
        body = orjson.dumps({"predictions": y}, option=orjson.OPT_SERIALIZE_NUMPY)
        return Response(body, media_type=JSON)

    return Starlette(
        routes=[
            Route("/v2/models/{name}/infer", v2_infer, methods=["POST"]),
            Route("/v1/models/{name}:predict", tfs_predict, methods=["POST"]),
        ]
    )


def listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(2048)
    return sock


# -- gRPC -----------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def float_tensor_wire(y: np.ndarray) -> bytes:
    """A DT_FLOAT TensorProto's wire bytes with the values in packed ``float_val``, as
    TensorFlow Serving answers (``AsProtoField``, not ``tensor_content``). Written as bytes
    because upb's repeated-field ``extend`` costs about a microsecond per element."""
    dims = b"".join(_field(2, b"\x08" + _varint(d)) for d in y.shape)
    values = np.ascontiguousarray(y, dtype="<f4").tobytes()
    return b"\x08\x01" + _field(2, dims) + _field(5, values)


def predict(models: Models, request: Any) -> Any | None:
    model = models.get(request.model_spec.name)
    if model is None:
        return None
    tensor = request.inputs[model.input]
    shape = [d.size for d in tensor.tensor_shape.dim]
    y = model(np.frombuffer(tensor.tensor_content, dtype=np.float32).reshape(shape))
    response = predict_pb2.PredictResponse()
    response.model_spec.name = model.name
    response.model_spec.version.value = model.version
    response.model_spec.signature_name = SIGNATURE
    response.outputs[model.output].MergeFromString(float_tensor_wire(y))
    return response


def model_infer(models: Models, request: Any) -> Any | None:
    model = models.get(request.model_name)
    if model is None:
        return None
    x = np.frombuffer(request.raw_input_contents[0], dtype=np.float32)
    y = model(x.reshape(list(request.inputs[0].shape)))
    response = service_pb2.ModelInferResponse(model_name=model.name, model_version="1")
    output = response.outputs.add()
    output.name = model.output
    output.datatype = "FP32"
    output.shape.extend(y.shape)
    response.raw_output_contents.append(y.tobytes())
    return response


class SyncPrediction(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    def __init__(self, models: Models) -> None:
        self.models = models

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        response = predict(self.models, request)
        if response is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such model")
        return response


class SyncInference(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(self, models: Models) -> None:
        self.models = models

    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:
        response = model_infer(self.models, request)
        if response is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such model")
        return response


class AioPrediction(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    def __init__(self, models: Models) -> None:
        self.models = models

    async def Predict(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        response = predict(self.models, request)
        if response is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such model")
        return response


class AioInference(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(self, models: Models) -> None:
        self.models = models

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        response = model_infer(self.models, request)
        if response is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such model")
        return response


def start_sync_grpc(models: Models, port: int, threads: int) -> int:
    server = grpc.server(ThreadPoolExecutor(max_workers=threads))
    _keep.append(server)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        SyncPrediction(models), server
    )
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(SyncInference(models), server)
    bound: int = server.add_insecure_port(f"{HOST}:{port}")
    server.start()
    return bound


def start_aio_grpc(models: Models, port: int) -> int:
    """grpc.aio on a thread of its own with its own loop (how tfhost serve ran gRPC before
    it moved to a thread pool)."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="floor-grpc", daemon=True).start()

    async def start() -> int:
        server = grpc.aio.server()
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            AioPrediction(models), server
        )
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(AioInference(models), server)
        bound: int = server.add_insecure_port(f"{HOST}:{port}")
        await server.start()
        # The loop holds the server only weakly; keep it for the process's life.
        _keep.append(server)
        return bound

    return asyncio.run_coroutine_threadsafe(start(), loop).result()


_keep: list[Any] = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--rest-port", type=int, default=0)
    parser.add_argument("--grpc-port", type=int, default=0)
    parser.add_argument("--grpc-mode", choices=("sync", "aio"), default="sync")
    parser.add_argument("--grpc-threads", type=int, default=16, help="sync mode's pool")
    parser.add_argument(
        "--no-model", action="store_true", help="answer zeros of the output's shape, no TF call"
    )
    args = parser.parse_args()
    models = load_models(args.repo, args.no_model)
    if args.grpc_mode == "sync":
        grpc_port = start_sync_grpc(models, args.grpc_port, args.grpc_threads)
    else:
        grpc_port = start_aio_grpc(models, args.grpc_port)
    sock = listen(args.rest_port)
    rest_port = sock.getsockname()[1]
    config = uvicorn.Config(
        rest_app(models),
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=2048,
    )
    print(
        f"serve_floor: ready: REST on http://{HOST}:{rest_port}, gRPC on {HOST}:{grpc_port}",
        flush=True,
    )
    # uvicorn handles SIGTERM and returns; then gRPC stops too (the sync server's pool
    # would otherwise keep the process alive).
    uvicorn.Server(config).run(sockets=[sock])
    for server in _keep:
        if isinstance(server, grpc.Server):
            server.stop(0)


if __name__ == "__main__":
    main()
