"""Throughput and p50/p99 of ``tfhost serve`` against the floor, measured in one run.

    python bench/serve.py [--only mlp|wide] [--routes v2-rest,tfs-rest,tfs-grpc,v2-grpc]
                          [--concurrency 1,16] [--seconds 2] [--rounds 8] [--quick]
                          [--self-check | --ceiling] [--batching [--max-batch-size 128]
                          [--batch-timeout-micros 0] [--num-batch-threads 1]] [--jit-compile]

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
alternating) so drift in the machine hits both alike; 8 by default (6 with ``--batching``),
a whole number of order cycles. A point where the two servers make the same TensorFlow call
and little else (``wide`` at one client) sits within a few percent of 1.0, and 5 rounds'
median moved by as much from run to run here (0.99 in one run, 1.02-1.03 over 15 rounds).
Printed per point: the median requests/s of each, the ratio tfhost / floor (median of the
rounds' ratios) and the median p50/p99 of each, and the lowest and highest ratio of the
rounds (how much the machine moved under the point). Goal: ratio >= 1.0 at every point.
``--self-check`` puts a second floor where tfhost serve would be: every ratio should come
out near 1.0.

``--batching`` (issue "dynamic batching") adds a third server, ``batched``: tfhost serve
on the same model files with a tfhost.toml of its own, ``[host] batching = {...}``. Every
round has one slice of each of the three servers, in an order that rotates (each server
takes each place equally often). Printed per point: each server's req/s, p50 and p99; t/f
(tfhost / floor, the goal above); b/f (batched / floor) with the rounds' spread; b/t
(batched / tfhost) for req/s and for p50; and under it, the batch sizes the batched server
formed in the measured slices: the difference of its ``tfhost_batch_size`` histogram on
``/metrics`` before and after each slice (mean rows per model call, calls per bucket).
Goals: b/f >= 3 for mlp and >= 2 for wide at 16 clients; at 1 client, b/t within 10 %
for req/s and for p50. ``--self-check --batching`` runs three floors.

The batched server's settings, chosen by measuring (wrk, v2-rest, 16 clients, the two
settings' servers side by side, 6 interleaved rounds of 3 s):

- ``max_batch_size 128``: 16 clients of wide send 16 x 8 = 128 rows; with 32 a call takes 4
  of them, and 128 was ahead in 5 of 6 rounds (about 40 %). For mlp (at most 16 rows
  queued) the size makes no difference. ``"auto"`` chose 4 for mlp on this loaded machine
  (its one-row call is slow and noisy) and lost to 128 (b/f 1.8 against 2.1).
- ``num_batch_threads 1``: 2 was behind in 6 of 6 rounds on mlp (about 20 %: TensorFlow
  already spreads one call over both cores, and the event loop needs the second); even on
  wide.
- ``batch_timeout_micros 0``: 300 filled the batches (mlp 16 rows per call instead of 10)
  without more throughput (5 % behind on mlp, even on wide), and 0 never makes a request
  wait for company.

These were measured with batches forming at 16 clients. tfhost serve runs a request alone on
its event loop when it is the only one in flight and its model is quick
(``ServeSettings.inline_under_s``), and under a closed loop of clients each request is the
only one admitted while the previous one runs, so the batch sizes line can show 1 row per
call at 16 clients: then the settings do not matter, and the line says why b/f is low.

``--ceiling`` puts ``bench/serve_floor.py --no-model`` where tfhost serve would be: the
floor's transports and codecs answering zeros without calling TensorFlow. Its ratio over
the floor is the most a server could reach at that point with these transports and codecs,
this load generator and this machine, batching or not (every request still pays its wire
and its decoding): where it is below a goal, the goal is out of reach here.

``--jit-compile``: tfhost serve (and the batched server) compile every model with XLA
(``[host] jit_compile = true``, docs/fleet.md); the floor does not. Off by default, as in
tfhost: the ratio then says what the opt-in buys over TensorFlow's own kernels.

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
from dataclasses import dataclass, field
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


def floor_command(repo: Path, grpc_mode: str, no_model: bool = False) -> list[str]:
    command = [
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
    return [*command, "--no-model"] if no_model else command


def tfhost_command(repo: Path, config: Path | None = None) -> list[str]:
    """``tfhost serve REPO``; with ``config``, that tfhost.toml instead of the repository's
    (the same model files, other settings)."""
    command = [
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
    return command if config is None else [*command, "--model-config-file", str(config)]


@dataclass(frozen=True)
class Batching:
    """The batched server's settings, written as its tfhost.toml's ``[host] batching``."""

    max_batch_size: int | str  # an int, or "auto"
    batch_timeout_micros: int
    num_batch_threads: int

    def toml(self) -> str:
        size = f'"{self.max_batch_size}"' if self.max_batch_size == "auto" else self.max_batch_size
        return (
            "[host]\n"
            f"batching = {{ max_batch_size = {size}, batch_timeout_micros = "
            f"{self.batch_timeout_micros}, num_batch_threads = {self.num_batch_threads} }}\n"
        )

    def describe(self) -> str:
        return (
            f"max_batch_size {self.max_batch_size}, batch_timeout_micros "
            f"{self.batch_timeout_micros}, num_batch_threads {self.num_batch_threads}"
        )


# What the batched server runs unless told otherwise (see the module's docstring).
DEFAULT_BATCHING = Batching(max_batch_size=128, batch_timeout_micros=0, num_batch_threads=1)


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


# -- the batch sizes a server formed: tfhost_batch_size on /metrics ----------------------------

_BATCH_SAMPLE = re.compile(
    r"^tfhost_batch_size_(bucket|count|sum)\{([^}]*)\}\s+(\S+)", re.MULTILINE
)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass
class Batches:
    """One model's ``tfhost_batch_size`` histogram (rows per model call) as scraped, or
    the difference of two scrapes: ``buckets`` maps each upper bound to its cumulative
    count, as Prometheus writes them."""

    calls: float = 0.0
    rows: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)

    def __sub__(self, before: Batches) -> Batches:
        return Batches(
            self.calls - before.calls,
            self.rows - before.rows,
            {le: n - before.buckets.get(le, 0.0) for le, n in self.buckets.items()},
        )

    def __add__(self, other: Batches) -> Batches:
        les = set(self.buckets) | set(other.buckets)
        return Batches(
            self.calls + other.calls,
            self.rows + other.rows,
            {le: self.buckets.get(le, 0.0) + other.buckets.get(le, 0.0) for le in les},
        )

    def describe(self) -> str:
        """``mean rows/call (calls); calls by rows: 1: n, 2: n, 3-4: n, ...`` (the
        buckets' own bounds, empty ones left out)."""
        if self.calls <= 0:
            return "no model calls counted"
        parts = []
        low, below = 0.0, 0.0  # the previous bound, and the calls at or under it
        for le in sorted(self.buckets):
            count = self.buckets[le] - below
            if count > 0:
                parts.append(f"{_bucket_name(low, le)}: {count:.0f}")
            low, below = le, self.buckets[le]
        return (
            f"{self.rows / self.calls:.1f} rows/call ({self.calls:.0f} calls); calls by rows: "
            + ", ".join(parts)
        )


def _bucket_name(low: float, high: float) -> str:
    """Rows in (low, high]: ``3-4`` where both bounds are whole numbers."""
    if high == float("inf"):
        return f">{low:g}"
    if low.is_integer() and high.is_integer():
        first, last = int(low) + 1, int(high)
        return f"{last}" if first >= last else f"{first}-{last}"
    return f"<={high:g}"


def read_batches(base: str, model: str) -> Batches | None:
    """``model``'s tfhost_batch_size from ``base``/metrics; None where the server has no
    such metric (or no /metrics at all: the floor)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        text = response.read().decode(errors="replace")
    except OSError:
        return None
    finally:
        connection.close()
    if response.status != 200:
        return None
    found = None
    for kind, labels, value in _BATCH_SAMPLE.findall(text):
        names = dict(_LABEL.findall(labels))
        if names.get("model") != model:
            continue
        found = found or Batches()
        number = float(value)
        if kind == "count":
            found.calls += number
        elif kind == "sum":
            found.rows += number
        elif "le" in names:
            le = float(names["le"])  # "+Inf" reads as inf
            found.buckets[le] = found.buckets.get(le, 0.0) + number
    return found


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
    """One point's slices, by server (the floor first), and the batch sizes the batched
    server formed over its measured slices (None without one, or without the metric)."""

    point: Point
    labels: tuple[str, ...]
    slices: dict[str, list[Slice]]
    batches: Batches | None = None

    def ratios(self, label: str, base: str = "floor") -> list[float]:
        """Each round's requests/s of ``label`` over ``base``'s (the same round)."""
        return [
            o.rps / b.rps if b.rps else 0.0
            for o, b in zip(self.slices[label], self.slices[base], strict=True)
        ]

    def p50_ratios(self, label: str, base: str) -> list[float]:
        return [
            o.p50_ms / b.p50_ms if b.p50_ms else 0.0
            for o, b in zip(self.slices[label], self.slices[base], strict=True)
        ]


def orders(servers: int, rounds: int) -> list[list[int]]:
    """Each round's order of the servers. Two: alternating (ABBA), so neither always
    follows the other's leftovers (warm caches, a TensorFlow pool winding down). More: the
    rotations, then the rotations reversed, so over every 2N rounds each server takes each
    place equally often and goes before each other server as often as after it."""
    if servers <= 2:
        cycle = [list(range(servers)), list(reversed(range(servers)))]
    else:
        rotations = [[(first + i) % servers for i in range(servers)] for first in range(servers)]
        cycle = rotations + [list(reversed(r)) for r in rotations]
    return [cycle[r % len(cycle)] for r in range(rounds)]


def measure(
    loads: Loads,
    servers: list[Server],
    point: Point,
    args: Any,
    batched: Server | None = None,
    warm: bool = True,
) -> Result:
    """``args.rounds`` rounds of one slice per server; ``batched``'s tfhost_batch_size is
    read before and after each of its slices, so only the measured calls count."""
    if warm:
        for server in servers:
            loads.run(server, point, WARMUP_S)
    result = Result(point, tuple(s.label for s in servers), {s.label: [] for s in servers})
    for order in orders(len(servers), args.rounds):
        for server in (servers[i] for i in order):
            before = read_batches(server.rest, point.model) if server is batched else None
            result.slices[server.label].append(loads.run(server, point, args.seconds))
            after = read_batches(server.rest, point.model) if before is not None else None
            if before is not None and after is not None:
                delta = after - before
                result.batches = delta if result.batches is None else result.batches + delta
    return result


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _spread(ratios: list[float]) -> str:
    """The rounds' lowest and highest ratio: how much the machine moved under a point."""
    return f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else ""


def _cells(slices: list[Slice], width: int) -> str:
    return (
        f"{_med([s.rps for s in slices]):{width}.0f} {_med([s.p50_ms for s in slices]):7.2f} "
        f"{_med([s.p99_ms for s in slices]):7.2f}"
    )


def _failures(result: Result) -> str:
    out = ""
    for label in result.labels:
        slices = result.slices[label]
        errors = sum(s.errors for s in slices)
        if errors:
            first = next(s.error for s in slices if s.errors)
            out += f"  ({label}: {errors} failed requests: {first})"
    return out


# The servers in tfhost serve's place whose ratio has no goal.
UNJUDGED = ("floor B", "ceiling")


def header(other: str) -> str:
    return (
        f"{'model':5} {'route':8} {'conc':>4} | {'floor req/s':>11} {'p50 ms':>7} "
        f"{'p99 ms':>7} | {other + ' req/s':>12} {'p50 ms':>7} {'p99 ms':>7} | "
        f"{'ratio':>5} {'(rounds)':>11}  {'' if other in UNJUDGED else f'goal >= {GOAL:g}'}"
    ).rstrip()


def row(result: Result, goal: bool = True) -> str:
    p = result.point
    other = result.labels[1]
    ratios = result.ratios(other)
    ratio = _med(ratios)
    verdict = ("met" if ratio >= GOAL else "NOT met") if goal else ""
    return (
        f"{p.model:5} {p.route:8} {p.concurrency:4d} | {_cells(result.slices['floor'], 11)} | "
        f"{_cells(result.slices[other], 11)} | {ratio:5.2f} {_spread(ratios):>11}  "
        f"{verdict}{_failures(result)}"
    ).rstrip()


# -- the --batching table -------------------------------------------------------------------

# Batched / floor requests/s at BATCH_CONCURRENCY clients, per model (the issue's goals).
FLOOR_GOALS = {"mlp": 3.0, "wide": 2.0}
BATCH_CONCURRENCY = 16
# At one client, batched against unbatched tfhost: requests/s and p50 within this.
ALONE_TOLERANCE = 0.10


def batch_header(labels: tuple[str, ...]) -> str:
    blocks = " | ".join(f"{label + ' req/s':>13} {'p50 ms':>7} {'p99 ms':>7}" for label in labels)
    t, b = _short(labels[1]), _short(labels[2])
    return (
        f"{'model':5} {'route':8} {'conc':>4} | {blocks} | {t + '/f':>5} | "
        f"{b + '/f':>5} {'(rounds)':>11} | {b + '/' + t + ' req/s':>9} {'p50':>5} | goal"
    )


def _short(label: str) -> str:
    """A ratio's name for a server: t(fhost), b(atched), or B and C (the self-check's)."""
    return label.removeprefix("floor ") if label.startswith("floor ") else label[0]


def batch_goal(result: Result) -> tuple[bool, str] | None:
    """(met, what) for the points the issue sets a goal at; None elsewhere."""
    p = result.point
    tfhost, batched = result.labels[1], result.labels[2]
    if p.concurrency == BATCH_CONCURRENCY and p.model in FLOOR_GOALS:
        want = FLOOR_GOALS[p.model]
        met = _med(result.ratios(batched)) >= want
        return met, f"{_short(batched)}/f >= {want:g}: {'met' if met else 'NOT met'}"
    if p.concurrency == 1:
        rps = _med(result.ratios(batched, tfhost))
        p50 = _med(result.p50_ratios(batched, tfhost))
        met = rps >= 1 - ALONE_TOLERANCE and p50 <= 1 + ALONE_TOLERANCE
        what = f"{_short(batched)}/{_short(tfhost)} within {ALONE_TOLERANCE:.0%}"
        return met, f"{what}: {'met' if met else 'NOT met'}"
    return None


def batch_row(result: Result, goal: bool = True) -> str:
    p = result.point
    tfhost, batched = result.labels[1], result.labels[2]
    blocks = " | ".join(_cells(result.slices[label], 13) for label in result.labels)
    vs_floor = result.ratios(batched)
    rps, p50 = _med(result.ratios(batched, tfhost)), _med(result.p50_ratios(batched, tfhost))
    judged = batch_goal(result) if goal else None
    verdict = judged[1] if judged else ""
    return (
        f"{p.model:5} {p.route:8} {p.concurrency:4d} | {blocks} | "
        f"{_med(result.ratios(tfhost)):5.2f} | {_med(vs_floor):5.2f} {_spread(vs_floor):>11} | "
        f"{rps:9.2f} {p50:5.2f} | {verdict}{_failures(result)}"
    ).rstrip()


def batch_sizes_line(result: Result, batched: Server | None) -> str:
    if batched is None:
        return ""
    if result.batches is None:
        what = "tfhost_batch_size is not on its /metrics (yet): batch sizes not counted"
    else:
        what = result.batches.describe()
    return f"{'':19} | {batched.label}: {what}"


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
    parser.add_argument("--seconds", type=int, help="each slice, whole seconds (default 2)")
    parser.add_argument(
        "--rounds", type=int, help="slices of each server per point (default 8; 6 with --batching)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 round of 2 s slices (with --batching: 1 s slices and one warm-up "
        "per model)",
    )
    parser.add_argument(
        "--self-check",
        action="store_true",
        help="a second floor in tfhost serve's place (and a third in the batched one's): "
        "every ratio should be near 1.0",
    )
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="the floor without its model call in tfhost serve's place: the most a server "
        "on the same transports could reach over the floor here",
    )
    parser.add_argument(
        "--batching",
        action="store_true",
        help="a third server: tfhost serve with batching on the same model files",
    )
    parser.add_argument(
        "--max-batch-size",
        default=str(DEFAULT_BATCHING.max_batch_size),
        help=f'--batching: rows per model call, or "auto" '
        f"(default {DEFAULT_BATCHING.max_batch_size})",
    )
    parser.add_argument(
        "--batch-timeout-micros",
        type=int,
        default=DEFAULT_BATCHING.batch_timeout_micros,
        help=f"--batching (default {DEFAULT_BATCHING.batch_timeout_micros})",
    )
    parser.add_argument(
        "--num-batch-threads",
        type=int,
        default=DEFAULT_BATCHING.num_batch_threads,
        help=f"--batching (default {DEFAULT_BATCHING.num_batch_threads})",
    )
    parser.add_argument(
        "--floor-grpc",
        choices=("sync", "aio"),
        default="sync",
        help="the floor's gRPC server (sync with a thread pool measured faster here)",
    )
    parser.add_argument(
        "--jit-compile",
        action="store_true",
        help="tfhost serve compiles the models with XLA ([host] jit_compile = true); the floor "
        "does not",
    )
    parser.add_argument("--keep", type=Path, help="write the models here and keep them")
    # Internal: the child processes this bench starts.
    parser.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--write-models", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--only-names", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ceiling and (args.self_check or args.batching or args.jit_compile):
        parser.error("--ceiling runs alone: not with --self-check, --batching or --jit-compile")
    if args.self_check and args.jit_compile:
        parser.error("--self-check runs floors only: not with --jit-compile")
    # --quick sets what was not given; --quick --rounds 3 keeps the 3.
    quick_seconds = 1 if args.batching else 2
    if args.seconds is None:
        args.seconds = quick_seconds if args.quick else 2
    if args.rounds is None:
        args.rounds = 1 if args.quick else 6 if args.batching else 8
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
    size = args.max_batch_size
    if size != "auto" and not (size.isdigit() and int(size) >= 1):
        parser.error(f'--max-batch-size: a positive integer or "auto", got {size!r}')
    if args.batch_timeout_micros < 0 or args.num_batch_threads < 1:
        parser.error("--batch-timeout-micros must be >= 0 and --num-batch-threads >= 1")
    args.batching_settings = Batching(
        size if size == "auto" else int(size), args.batch_timeout_micros, args.num_batch_threads
    )
    return args


def bench(args: argparse.Namespace, root: Path) -> int:
    started = time.monotonic()
    models = [args.only] if args.only else list(MODELS)
    repo = args.keep or root / "models"
    write_repository(repo, models, root / "write.log")
    servers = [Server("floor", floor_command(repo, args.floor_grpc), root / "floor.log")]
    if args.ceiling:
        command = floor_command(repo, args.floor_grpc, no_model=True)
        servers.append(Server("ceiling", command, root / "ceiling.log"))
    elif args.self_check:
        servers.append(Server("floor B", floor_command(repo, args.floor_grpc), root / "b.log"))
        if args.batching:
            servers.append(Server("floor C", floor_command(repo, args.floor_grpc), root / "c.log"))
    else:
        jit = "[host]\njit_compile = true\n" if args.jit_compile else ""
        plain: Path | None = None
        if jit:
            plain = root / "tfhost.toml"
            plain.write_text(jit)
        servers.append(Server("tfhost", tfhost_command(repo, plain), root / "tfhost.log"))
        if args.batching:
            config = root / "batched.toml"
            config.write_text(args.batching_settings.toml() + jit.removeprefix("[host]\n"))
            servers.append(Server("batched", tfhost_command(repo, config), root / "batched.log"))
    # The server whose tfhost_batch_size is read around its slices.
    batched = servers[2] if args.batching and not args.self_check else None
    labels = tuple(s.label for s in servers)
    driver = GrpcDriver(root / "driver.log")
    try:
        for server in servers:
            try:
                server.wait_ready()
            except RuntimeError as exc:
                print(f"{server.label} did not start: {exc}", file=sys.stderr)
                if not server.label.startswith("floor"):
                    print("(bench/serve.py --self-check runs the harness alone)", file=sys.stderr)
                return 1
        print(
            ", ".join(f"{s.label} ready in {s.ready_s:.0f} s ({s.rest}, {s.grpc})" for s in servers)
        )
        if batched is not None:
            print(f"batched: [host] batching = {{ {args.batching_settings.describe()} }}")
        if args.jit_compile:
            print("tfhost: [host] jit_compile = true (XLA); the floor runs TensorFlow's kernels")
        loads = Loads(root, models, driver)
        broken: dict[tuple[str, str], str] = {}
        for model in models:
            for route in args.route_list:
                problem = check(loads, servers[0], model, route)
                if problem:
                    raise RuntimeError(f"the floor is wrong on {model} {route}: {problem}")
                # The ceiling answers zeros by design: nothing to check.
                for server in [] if args.ceiling else servers[1:]:
                    problem = check(loads, server, model, route)
                    if problem:
                        broken[model, route] = f"{server.label} answered wrongly: {problem}"
                        break
        print(batch_header(labels) if args.batching else header(labels[1]))
        results = []
        for model in models:
            for route in args.route_list:
                if (model, route) in broken:
                    print(f"{model:5} {route:8}  not measured: {broken[model, route]}")
                    continue
                for i, concurrency in enumerate(args.concurrency_list):
                    point = Point(model, route, concurrency)
                    # --quick --batching: one warm-up per model, to stay short.
                    first = i == 0 and route == args.route_list[0]
                    warm = first or not (args.quick and args.batching)
                    try:
                        result = measure(loads, servers, point, args, batched, warm)
                    except RuntimeError as exc:
                        # A load generator that fails usually means a server went away:
                        # say which, and how, rather than only that a connection failed.
                        print(f"{model} {route} {concurrency}: {exc}", file=sys.stderr)
                        for server in servers:
                            print(server.describe_exit(), file=sys.stderr)
                        return 1
                    results.append(result)
                    if args.batching:
                        print(batch_row(result, goal=not args.self_check))
                        line = batch_sizes_line(result, batched)
                        if line:
                            print(line)
                    else:
                        goal = not (args.self_check or args.ceiling)
                        print(row(result, goal=goal), flush=True)
                    sys.stdout.flush()
        summarize(args, results, broken, labels)
        print(other_servers_note())
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        took = time.monotonic() - started
        print(f"load average at the end: {load}; the bench took {took / 60:.1f} min")
        return 0
    finally:
        driver.close()
        for server in servers:
            server.stop()


def summarize(
    args: argparse.Namespace,
    results: list[Result],
    broken: dict[tuple[str, str], str],
    labels: tuple[str, ...],
) -> None:
    if args.ceiling:
        for r in results:
            if r.point.concurrency != BATCH_CONCURRENCY or r.point.model not in FLOOR_GOALS:
                continue
            ceiling, want = _med(r.ratios("ceiling")), FLOOR_GOALS[r.point.model]
            reach = "not ruled out" if ceiling >= want else "OUT OF REACH here"
            print(
                f"ceiling: {r.point.model} {r.point.route} at {BATCH_CONCURRENCY} clients: "
                f"{ceiling:.2f} x the floor; the batching goal of {want:g} x is {reach}"
            )
        return
    if args.self_check:
        for label in labels[1:]:
            ratios = [_med(r.ratios(label)) for r in results]
            print(
                f"self-check ({label} against floor): ratios from {min(ratios):.2f} to "
                f"{max(ratios):.2f}, the noise a ratio measured now would carry"
            )
        return
    missing = len(broken) * len(args.concurrency_list)  # points not measured: missed
    if args.batching:
        measured = {r.point.model for r in results} | {model for model, _ in broken}
        floor_goals = ", ".join(f"{v:g} ({k})" for k, v in FLOOR_GOALS.items() if k in measured)
        for concurrency, what in (
            (BATCH_CONCURRENCY, f"batched / floor req/s >= {floor_goals}"),
            (1, f"batched within {ALONE_TOLERANCE:.0%} of tfhost (req/s and p50)"),
        ):
            if concurrency not in args.concurrency_list:
                continue
            judged = [batch_goal(r) for r in results if r.point.concurrency == concurrency]
            met = sum(1 for g in judged if g is not None and g[0])
            total = len(judged) + len(broken)
            print(
                f"goal: {what} at concurrency {concurrency}: "
                f"{'met' if met == total and total else 'NOT met'} ({met} of {total} points)"
            )
    met = sum(_med(r.ratios(labels[1])) >= GOAL for r in results)
    total = len(results) + missing
    print(
        f"goal: {labels[1]} / floor >= {GOAL:g} at every point: "
        f"{'met' if met == total and total else 'NOT met'} ({met} of {total} points)"
    )


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
    labels = ["floor", "ceiling" if args.ceiling else "floor B" if args.self_check else "tfhost"]
    if args.batching:
        labels.append("floor C" if args.self_check else "batched")
    points = len(models) * len(args.route_list) * len(args.concurrency_list)
    warmups = len(models) if args.quick and args.batching else points
    estimate = len(labels) * (points * args.rounds * args.seconds + warmups * WARMUP_S)
    print(
        f"tfhost serve bench: {os.cpu_count()} cores, python {sys.version.split()[0]}, "
        f"load average {load}; {points} points x {args.rounds} rounds of [{', '.join(labels)}]"
        f" x {args.seconds} s (~{estimate:.0f} s of load); REST: wrk -t1 -cN, gRPC: one "
        f"grpc.aio client process, N tasks; floor gRPC: {args.floor_grpc}"
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
