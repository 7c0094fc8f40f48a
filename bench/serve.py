"""Throughput and p50/p99 of ``tfhost serve`` against the floor, measured in one run.

    python bench/serve.py [--only mlp|wide] [--routes v2-rest,tfs-rest,tfs-grpc,v2-grpc]
                          [--concurrency 1,16] [--seconds 2] [--rounds 5] [--quick]
                          [--self-check]

Two TF2 SavedModels, written by the bench with seeded weights (one version ``1/`` each in
one repository): ``mlp``, 784 -> 512 -> 10 with requests of 1 row, and ``wide``,
2048 -> 4096 -> 1000 with requests of 8 rows. Four routes (issue "serve"): KServe V2 REST
(``POST /v2/models/NAME/infer``, JSON), TensorFlow Serving REST (``POST
/v1/models/NAME:predict``, ``instances``), TensorFlow Serving gRPC ``Predict``
(``tensor_content``) and KServe V2 gRPC ``ModelInfer`` (``raw_input_contents``), each at
1 and 16 concurrent clients.

The load comes from its own process: ``wrk -t1 -cN`` with a Lua script for REST, one
grpc.aio client process (N tasks looping over one pre-built request) for gRPC. The
baseline is the floor (``bench/serve_floor.py``): Starlette on uvicorn calling the same
SavedModel inline for REST, a bare grpcio servicer for gRPC. Both servers run for the whole
bench; each point is ``--rounds`` rounds of one floor slice and one tfhost slice (the order
alternating) so drift in the machine hits both alike. Printed per point: the median
requests/s of each, the ratio tfhost / floor (median of the rounds' ratios) and the median
p50/p99 of each, and the lowest and highest ratio of the rounds (how much the machine moved
under the point). Goal: ratio >= 1.0 at every point. ``--self-check`` puts a second floor
where tfhost serve would be: every ratio should come out near 1.0.

On 2 cores the load generator competes with the server for CPU; it does so equally for
both, so the ratio holds, but the absolute figures are those of a shared machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import orjson

GOAL = 1.0
HOST = "127.0.0.1"
INPUT, OUTPUT = "x", "y"
ROUTES = ("v2-rest", "tfs-rest", "tfs-grpc", "v2-grpc")
BENCH = Path(__file__).resolve().parent
WARMUP_S = 1  # one discarded slice per server per point: connections, caches, estimates
READY_TIMEOUT_S = 300
_READY = re.compile(r": ready: (.*)")
_REST = re.compile(r"REST on (http://[^,\s]+)")
_GRPC = re.compile(r"gRPC on ([^,\s]+)")


# -- the models -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    name: str
    layers: tuple[int, ...]  # widths, input first; ReLU between the dense layers
    rows: int  # rows per request
    seed: int

    def params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The weights, the same in every process that asks (the writer, the checker)."""
        rng = np.random.default_rng(self.seed)
        out = []
        for fan_in, fan_out in zip(self.layers, self.layers[1:], strict=False):
            w = rng.standard_normal((fan_in, fan_out), dtype=np.float32) / np.sqrt(fan_in)
            b = rng.standard_normal(fan_out, dtype=np.float32) * 0.1
            out.append((w.astype(np.float32), b))
        return out

    def sample(self) -> np.ndarray:
        rng = np.random.default_rng(1000 + self.seed)
        return rng.standard_normal((self.rows, self.layers[0]), dtype=np.float32)

    def reference(self, x: np.ndarray) -> np.ndarray:
        h = x.astype(np.float64)
        params = self.params()
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i < len(params) - 1:
                h = np.maximum(h, 0)
        return h.astype(np.float32)


MODELS = {
    "mlp": ModelSpec("mlp", (784, 512, 10), rows=1, seed=0),
    "wide": ModelSpec("wide", (2048, 4096, 1000), rows=8, seed=1),
}


def write_model(spec: ModelSpec, path: Path) -> None:
    """A tf.Module with a tf.function serving signature ``x -> {"y": ...}``, saved."""
    import tensorflow as tf

    module = tf.Module()
    params = spec.params()
    module.ws = [tf.Variable(w, name=f"w{i}") for i, (w, _) in enumerate(params)]
    module.bs = [tf.Variable(b, name=f"b{i}") for i, (_, b) in enumerate(params)]

    @tf.function(  # type: ignore[untyped-decorator]  # TensorFlow has no type hints
        autograph=False,
        input_signature=[tf.TensorSpec([None, spec.layers[0]], tf.float32, name=INPUT)],
    )
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        h = x
        for i, (w, b) in enumerate(zip(module.ws, module.bs, strict=True)):
            h = tf.matmul(h, w) + b
            if i < len(module.ws) - 1:
                h = tf.nn.relu(h)
        return {OUTPUT: h}

    module.serve = serve
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})


def write_repository(repo: Path, names: list[str], log: Path) -> None:
    """In a child process, so this one never imports TensorFlow (its logs go to ``log``)."""
    command = [sys.executable, __file__, "--write-models", str(repo), "--only-names"]
    with log.open("w") as err:
        done = subprocess.run([*command, ",".join(names)], stderr=err, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"writing the models failed:\n{log.read_text(errors='replace')}")


# -- servers --------------------------------------------------------------------------------


class Server:
    """A server process that prints ``...: ready: REST on http://H:P, gRPC on H:Q`` (tfhost
    serve's ready line; the floor prints the same) once it listens on the ports it picked."""

    def __init__(self, label: str, command: list[str], log: Path) -> None:
        self.label = label
        self.log = log
        self.started = time.monotonic()
        self.ready_s = 0.0
        self.rest = ""
        self.grpc = ""
        with log.open("w") as err:
            self.process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
            )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        # Read stdout to the end: a server whose pipe fills up would block.
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = self.started + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                self.stop()
                raise RuntimeError(
                    f"{self.label} not ready in {timeout:.0f} s:\n{self.log_tail()}"
                ) from None
            if line is None:
                code = self.process.wait()
                raise RuntimeError(f"{self.label} exited with {code}:\n{self.log_tail()}")
            match = _READY.search(line)
            if match:
                rest, grpc = _REST.search(match.group(1)), _GRPC.search(match.group(1))
                if rest is None or grpc is None:
                    raise RuntimeError(f"{self.label} did not name both ports: {line!r}")
                self.rest, self.grpc = rest.group(1), grpc.group(1)
                self.ready_s = time.monotonic() - self.started
                return

    def describe_exit(self) -> str:
        code = self.process.poll()
        if code is None:
            return f"{self.label}: still running"
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        return f"{self.label}: ended with {how}; its log ends:\n{self.log_tail()}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def floor_command(repo: Path, grpc_mode: str) -> list[str]:
    return [
        sys.executable,
        str(BENCH / "serve_floor.py"),
        str(repo),
        "--rest-port",
        "0",
        "--grpc-port",
        "0",
        "--grpc-mode",
        grpc_mode,
    ]


def tfhost_command(repo: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tfhost.cli",
        "serve",
        str(repo),
        "--host",
        HOST,
        "--rest-port",
        "0",
        "--grpc-port",
        "0",
    ]


# -- one slice of load ----------------------------------------------------------------------


@dataclass(frozen=True)
class Slice:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    error: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


_WRK_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open("{body}", "rb"))
wrk.body = file:read("*a")
file:close()

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%.1f p99_us=%.1f errors=%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""
_WRK_DONE = re.compile(
    r"BENCH requests=(\d+) duration_us=(\d+) p50_us=([\d.]+) p99_us=([\d.]+) errors=(\d+)"
)


def wrk_slice(url: str, script: Path, concurrency: int, seconds: int) -> Slice:
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    match = _WRK_DONE.search(out.stdout)
    if out.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    requests, duration_us, p50, p99, errors = match.groups()
    return Slice(
        requests=int(requests) - int(errors),
        seconds=int(duration_us) / 1e6,
        p50_ms=float(p50) / 1000,
        p99_ms=float(p99) / 1000,
        errors=int(errors),
        error="wrk counted failed requests (non-2xx answers or socket errors)"
        if int(errors)
        else "",
    )


def rest_bodies(spec: ModelSpec, x: np.ndarray) -> dict[str, bytes]:
    """The two REST bodies; float32 values in their shortest form, as a client's
    float32 arrays serialize."""
    v2 = {
        "inputs": [{"name": INPUT, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel()}]
    }
    option = orjson.OPT_SERIALIZE_NUMPY
    return {
        "v2-rest": orjson.dumps(v2, option=option),
        "tfs-rest": orjson.dumps({"instances": x}, option=option),
    }


def rest_path(route: str, model: str) -> str:
    return f"/v2/models/{model}/infer" if route == "v2-rest" else f"/v1/models/{model}:predict"


def rest_answer(base: str, route: str, model: str, body: bytes) -> np.ndarray:
    """One request, the answer's output as an array (http.client: no proxy settings)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request(
            "POST", rest_path(route, model), body, {"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        content = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {content[:500]!r}")
    doc = json.loads(content)
    if route == "v2-rest":
        (output,) = doc["outputs"]
        return np.asarray(output["data"], np.float32).reshape(output["shape"])
    return np.asarray(doc["predictions"], np.float32)


# -- the gRPC load generator: a process of its own ------------------------------------------


class GrpcDriver:
    """``bench/serve.py --driver``: reads one JSON command a line, answers one JSON line.
    One long-lived process, because importing TensorFlow Serving's protos imports
    TensorFlow (seconds) and a process per slice would spend the slices on that."""

    def __init__(self, log: Path) -> None:
        self.log = log
        with log.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, __file__, "--driver"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"the gRPC driver ended:\n{tail}")
        answer: dict[str, Any] = json.loads(line)
        if "crash" in answer:
            raise RuntimeError(f"the gRPC driver failed: {answer['crash']}")
        return answer

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def driver_main() -> None:
    import asyncio
    import traceback

    async def serve_commands() -> None:
        loop = asyncio.get_running_loop()
        client = _GrpcClient()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            command = json.loads(line)
            try:
                answer = await client.handle(command)
            except Exception:
                answer = {"crash": traceback.format_exc()}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
        await client.close()

    asyncio.run(serve_commands())


class _GrpcClient:
    """The driver's side: channels and pre-built requests, kept across slices."""

    def __init__(self) -> None:
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc
        from tritonclient.grpc import service_pb2_grpc

        self._grpc = grpc
        self._tfs_stub = prediction_service_pb2_grpc.PredictionServiceStub
        self._v2_stub = service_pb2_grpc.GRPCInferenceServiceStub
        self._channels: dict[str, Any] = {}
        self._requests: dict[tuple[str, str], Any] = {}

    def _call(self, route: str, target: str) -> Callable[..., Any]:
        channel = self._channels.get(target)
        if channel is None:
            channel = self._grpc.aio.insecure_channel(
                target, options=[("grpc.max_receive_message_length", -1)]
            )
            self._channels[target] = channel
        if route == "tfs-grpc":
            return self._tfs_stub(channel).Predict  # type: ignore[no-any-return]
        return self._v2_stub(channel).ModelInfer  # type: ignore[no-any-return]

    def _request(self, route: str, model: str) -> Any:
        key = (route, model)
        if key not in self._requests:
            x = MODELS[model].sample()
            self._requests[key] = (
                tfs_request(model, x) if route == "tfs-grpc" else v2_request(model, x)
            )
        return self._requests[key]

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        route, model, target = command["route"], command["model"], command["target"]
        call, request = self._call(route, target), self._request(route, model)
        if command["op"] == "check":
            try:
                response = await call(request, timeout=60)
            except self._grpc.aio.AioRpcError as exc:
                return {"error": f"{exc.code().name}: {exc.details()}"}
            y = tfs_output(response) if route == "tfs-grpc" else v2_output(response)
            return {"y": y.ravel().tolist(), "shape": list(y.shape)}
        return await self._load(call, request, command["concurrency"], command["seconds"])

    async def _load(
        self, call: Callable[..., Any], request: Any, concurrency: int, seconds: float
    ) -> dict[str, Any]:
        import asyncio

        latencies: list[float] = []
        errors: list[str] = []
        start = time.perf_counter()
        end = start + seconds

        async def client() -> None:
            while True:
                sent = time.perf_counter()
                if sent >= end:
                    return
                try:
                    await call(request, timeout=30)
                except self._grpc.aio.AioRpcError as exc:
                    errors.append(f"{exc.code().name}: {exc.details()}")
                    continue
                latencies.append(time.perf_counter() - sent)

        await asyncio.gather(*(client() for _ in range(concurrency)))
        # Every request that completed, over the time until the last one did, as wrk counts.
        elapsed = time.perf_counter() - start
        p50, p99 = np.percentile(latencies, [50, 99]) if latencies else (0.0, 0.0)
        return {
            "requests": len(latencies),
            "seconds": elapsed,
            "p50_ms": float(p50) * 1000,
            "p99_ms": float(p99) * 1000,
            "errors": len(errors),
            "error": errors[0] if errors else "",
        }

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()


def tfs_request(model: str, x: np.ndarray) -> Any:
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    tensor = request.inputs[INPUT]
    tensor.dtype = types_pb2.DT_FLOAT
    for size in x.shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = np.ascontiguousarray(x, "<f4").tobytes()
    return request


def tfs_output(response: Any) -> np.ndarray:
    tensor = response.outputs[OUTPUT]
    shape = [d.size for d in tensor.tensor_shape.dim]
    if tensor.tensor_content:
        return np.frombuffer(tensor.tensor_content, "<f4").reshape(shape)
    return np.asarray(tensor.float_val, np.float32).reshape(shape)


def v2_request(model: str, x: np.ndarray) -> Any:
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add()
    tensor.name = INPUT
    tensor.datatype = "FP32"
    tensor.shape.extend(x.shape)
    request.raw_input_contents.append(np.ascontiguousarray(x, "<f4").tobytes())
    return request


def v2_output(response: Any) -> np.ndarray:
    (output,) = response.outputs
    shape = list(output.shape)
    if response.raw_output_contents:
        return np.frombuffer(response.raw_output_contents[0], "<f4").reshape(shape)
    return np.asarray(output.contents.fp32_contents, np.float32).reshape(shape)


# -- the bench ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    model: str
    route: str
    concurrency: int


class Loads:
    """Runs slices of any route against any server; owns the REST scripts and the driver."""

    def __init__(self, root: Path, models: list[str], driver: GrpcDriver) -> None:
        self.driver = driver
        self.scripts: dict[tuple[str, str], Path] = {}
        self.bodies: dict[tuple[str, str], bytes] = {}
        for model in models:
            for route, body in rest_bodies(MODELS[model], MODELS[model].sample()).items():
                path = root / f"{model}-{route}.json"
                path.write_bytes(body)
                script = root / f"{model}-{route}.lua"
                script.write_text(_WRK_LUA.format(body=path))
                self.scripts[model, route] = script
                self.bodies[model, route] = body

    def answer(self, server: Server, model: str, route: str) -> np.ndarray:
        if route.endswith("-rest"):
            return rest_answer(server.rest, route, model, self.bodies[model, route])
        got = self.driver.ask(op="check", route=route, model=model, target=server.grpc)
        if "error" in got:
            raise RuntimeError(got["error"])
        return np.asarray(got["y"], np.float32).reshape(got["shape"])

    def run(self, server: Server, point: Point, seconds: int) -> Slice:
        if point.route.endswith("-rest"):
            url = server.rest + rest_path(point.route, point.model)
            return wrk_slice(
                url, self.scripts[point.model, point.route], point.concurrency, seconds
            )
        got = self.driver.ask(
            op="load",
            route=point.route,
            model=point.model,
            target=server.grpc,
            concurrency=point.concurrency,
            seconds=seconds,
        )
        return Slice(**got)


def check(loads: Loads, server: Server, model: str, route: str) -> str:
    """'' when the server answers what the model must answer; else what went wrong."""
    spec = MODELS[model]
    try:
        y = loads.answer(server, model, route)
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    want = spec.reference(spec.sample())
    if y.shape != want.shape:
        return f"answer of shape {y.shape}, want {want.shape}"
    if not np.allclose(y, want, rtol=1e-3, atol=1e-3):
        return f"wrong answer: max |diff| {np.max(np.abs(y - want)):.3g}"
    return ""


@dataclass
class Result:
    point: Point
    other_label: str
    floor: list[Slice]
    other: list[Slice]
    ratios: list[float]


def measure(loads: Loads, floor: Server, other: Server, point: Point, args: Any) -> Result:
    for server in (floor, other):
        loads.run(server, point, WARMUP_S)
    result = Result(point, other.label, [], [], [])
    for round_ in range(args.rounds):
        # ABBA: the server that goes second in one round goes first in the next, so neither
        # always follows the other's leftovers (warm caches, a TensorFlow pool winding down).
        order = [floor, other] if round_ % 2 == 0 else [other, floor]
        slices = {server.label: loads.run(server, point, args.seconds) for server in order}
        result.floor.append(slices[floor.label])
        result.other.append(slices[other.label])
        f, o = slices[floor.label].rps, slices[other.label].rps
        result.ratios.append(o / f if f else 0.0)
    return result


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def header(other: str) -> str:
    return (
        f"{'model':5} {'route':8} {'conc':>4} | {'floor req/s':>11} {'p50 ms':>7} "
        f"{'p99 ms':>7} | {other + ' req/s':>12} {'p50 ms':>7} {'p99 ms':>7} | "
        f"{'ratio':>5} {'(rounds)':>11}  {'' if other == 'floor B' else f'goal >= {GOAL:g}'}"
    ).rstrip()


def row(result: Result, goal: bool = True) -> str:
    p = result.point
    cells = []
    for slices in (result.floor, result.other):
        cells.append(
            f"{_med([s.rps for s in slices]):11.0f} {_med([s.p50_ms for s in slices]):7.2f} "
            f"{_med([s.p99_ms for s in slices]):7.2f}"
        )
    ratio = _med(result.ratios)
    # The rounds' lowest and highest ratio: how much the machine moved under this point.
    spread = f"{min(result.ratios):.2f}-{max(result.ratios):.2f}"
    verdict = ("met" if ratio >= GOAL else "NOT met") if goal else ""
    for label, slices in (("floor", result.floor), (result.other_label, result.other)):
        errors = sum(s.errors for s in slices)
        if errors:
            first = next(s.error for s in slices if s.errors)
            verdict += f"  ({label}: {errors} failed requests: {first})"
    return (
        f"{p.model:5} {p.route:8} {p.concurrency:4d} | {cells[0]} | {cells[1]:>12} "
        f"| {ratio:5.2f} {spread:>11}  {verdict}"
    ).rstrip()


def other_servers_note() -> str:
    found = [
        name
        for name, present in (
            ("tensorflow_model_server", shutil.which("tensorflow_model_server") is not None),
            ("mlserver", shutil.which("mlserver") is not None),
        )
        if present
    ]
    if found:
        return (
            f"MLServer-style / TF-Serving-style: not run ({', '.join(found)} found, but "
            "this bench does not drive them)"
        )
    return (
        "MLServer-style / TF-Serving-style: not run (neither MLServer nor "
        "tensorflow_model_server is installed here)"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(MODELS), help="one model (default: both)")
    parser.add_argument(
        "--routes", default=",".join(ROUTES), help=f"comma-separated, of {','.join(ROUTES)}"
    )
    parser.add_argument("--concurrency", default="1,16", help="comma-separated client counts")
    # Whole seconds: wrk's -d takes no fractions.
    parser.add_argument("--seconds", type=int, default=2, help="each slice, whole seconds")
    parser.add_argument("--rounds", type=int, default=5, help="[floor, tfhost] pairs per point")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 2 s slices")
    parser.add_argument(
        "--self-check",
        action="store_true",
        help="a second floor in tfhost serve's place: every ratio should be near 1.0",
    )
    parser.add_argument(
        "--floor-grpc",
        choices=("sync", "aio"),
        default="sync",
        help="the floor's gRPC server (sync with a thread pool measured faster here)",
    )
    parser.add_argument("--keep", type=Path, help="write the models here and keep them")
    # Internal: the child processes this bench starts.
    parser.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--write-models", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--only-names", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 2
    args.route_list = [r.strip() for r in args.routes.split(",") if r.strip()]
    unknown = sorted(set(args.route_list) - set(ROUTES))
    if unknown:
        parser.error(f"unknown routes {unknown}; choose from {','.join(ROUTES)}")
    try:
        args.concurrency_list = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--concurrency: not a comma-separated list of integers: {args.concurrency}")
    if args.seconds < 1 or args.rounds < 1 or min(args.concurrency_list, default=0) < 1:
        parser.error("--seconds, --rounds and every concurrency must be at least 1")
    return args


def bench(args: argparse.Namespace, root: Path) -> int:
    started = time.monotonic()
    models = [args.only] if args.only else list(MODELS)
    repo = args.keep or root / "models"
    write_repository(repo, models, root / "write.log")
    other_label = "floor B" if args.self_check else "tfhost"
    servers = [Server("floor", floor_command(repo, args.floor_grpc), root / "floor.log")]
    if args.self_check:
        servers.append(Server(other_label, floor_command(repo, args.floor_grpc), root / "b.log"))
    else:
        servers.append(Server(other_label, tfhost_command(repo), root / "tfhost.log"))
    driver = GrpcDriver(root / "driver.log")
    try:
        for server in servers:
            try:
                server.wait_ready()
            except RuntimeError as exc:
                print(f"{server.label} did not start: {exc}", file=sys.stderr)
                if server.label == "tfhost":
                    print("(bench/serve.py --self-check runs the harness alone)", file=sys.stderr)
                return 1
        floor, other = servers
        print(
            ", ".join(f"{s.label} ready in {s.ready_s:.0f} s ({s.rest}, {s.grpc})" for s in servers)
        )
        loads = Loads(root, models, driver)
        broken: dict[tuple[str, str], str] = {}
        for model in models:
            for route in args.route_list:
                problem = check(loads, floor, model, route)
                if problem:
                    raise RuntimeError(f"the floor is wrong on {model} {route}: {problem}")
                problem = check(loads, other, model, route)
                if problem:
                    broken[model, route] = problem
        print(header(other_label))
        results = []
        for model in models:
            for route in args.route_list:
                if (model, route) in broken:
                    print(
                        f"{model:5} {route:8}  not measured: {other_label} answered "
                        f"wrongly: {broken[model, route]}"
                    )
                    continue
                for concurrency in args.concurrency_list:
                    point = Point(model, route, concurrency)
                    try:
                        result = measure(loads, floor, other, point, args)
                    except RuntimeError as exc:
                        # A load generator that fails usually means a server went away:
                        # say which, and how, rather than only that a connection failed.
                        print(f"{model} {route} {concurrency}: {exc}", file=sys.stderr)
                        for server in servers:
                            print(server.describe_exit(), file=sys.stderr)
                        return 1
                    results.append(result)
                    print(row(result, goal=not args.self_check), flush=True)
        if args.self_check:
            ratios = [_med(r.ratios) for r in results]
            print(
                f"self-check (floor against floor): ratios from {min(ratios):.2f} to "
                f"{max(ratios):.2f}, the noise a tfhost ratio measured now would carry"
            )
        else:
            met = sum(_med(r.ratios) >= GOAL for r in results)
            total = len(results) + len(broken) * len(args.concurrency_list)
            print(
                f"goal: {other_label} / floor >= {GOAL:g} at every point: "
                f"{'met' if met == total and total else 'NOT met'} ({met} of {total} points)"
            )
        print(other_servers_note())
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        took = time.monotonic() - started
        print(f"load average at the end: {load}; the bench took {took / 60:.1f} min")
        return 0
    finally:
        driver.close()
        for server in servers:
            server.stop()


def main() -> None:
    args = parse_args()
    if args.driver:
        driver_main()
        return
    if args.write_models:
        for name in args.only_names.split(","):
            write_model(MODELS[name], args.write_models / name / "1")
        return
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    models = [args.only] if args.only else list(MODELS)
    points = len(models) * len(args.route_list) * len(args.concurrency_list)
    estimate = points * (2 * args.rounds * args.seconds + 2 * WARMUP_S)
    print(
        f"tfhost serve bench: {os.cpu_count()} cores, python {sys.version.split()[0]}, "
        f"load average {load}; {points} points x {args.rounds} rounds of [floor, "
        f"{'floor B' if args.self_check else 'tfhost'}] x {args.seconds} s (~{estimate:.0f} s"
        f" of load); REST: wrk -t1 -cN, gRPC: one grpc.aio client process, N tasks; "
        f"floor gRPC: {args.floor_grpc}"
    )
    print(
        "models: mlp 784->512->10, 1-row requests; wide 2048->4096->1000, 8-row requests "
        "(rows/s = 8 x req/s); p50/p99 and req/s: medians over the rounds"
    )
    with tempfile.TemporaryDirectory(prefix="tfhost-bench-serve-") as tmp:
        code = bench(args, Path(tmp))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
