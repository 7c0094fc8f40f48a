"""Throughput and p99 of tfhost on Ray Serve, 1 vs 2 replicas, against plain tfhost serve.

    python bench/ray_serve.py [--seconds 10] [--connections 16]

Ray must reach nothing but loopback here: the script runs itself again inside a network
(and PID) namespace whose only interface is ``lo`` (tfhost.ray.loopback) and refuses to
start Ray anywhere else. Inside, for each server -- ``tfhost serve REPO`` (the baseline),
then ``tfhost serve REPO --ray --replicas 1`` and ``--replicas 2`` -- it warms every model
up and runs ``wrk`` against the REST port (Ray Serve's proxy) with two workloads:

- small: TF Serving REST predicts, round robin over four tiny colliding models (a TF1
  SavedModel and a frozen graph, scale 1 and 2): what the hops cost;
- heavy: one model whose call is about half a GFLOP (a [64*b, 2048] x [2048, 2048]
  matmul made from an [b, 8] input): what the replicas' compute adds up to.

It prints requests per second, p50 and p99 for each, and the ratio 2 vs 1 replicas.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tfhost.ray import loopback

SMALL = {
    "tf1_a": ("tf1_saved_model", 1.0),
    "tf1_b": ("tf1_saved_model", 2.0),
    "frozen_a": ("frozen_graph", 1.0),
    "frozen_b": ("frozen_graph", 2.0),
}
SMALL_BODY = json.dumps({"instances": [[1.0, 2.0, 3.0]]})
HEAVY_BODY = json.dumps({"instances": [[0.5] * 8]})
_READY = re.compile(r"REST on (http://[^ ]+)")


def write_repository(root: Path) -> Path:
    import tensorflow as tf

    from tfhost.examples import write_example
    from tfhost.specs import Format

    repo = root / "repo"
    repo.mkdir()
    for name, (fmt, scale) in SMALL.items():
        written = write_example(root / "made" / name, Format(fmt), scale)
        if written.is_dir():
            shutil.copytree(written, repo / name / "1")
        else:
            shutil.copy(written, repo / f"{name}{written.suffix}")

    class Heavy(tf.Module):  # type: ignore[misc]  # TensorFlow has no type hints
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(tf.random.stateless_normal([2048, 2048], [1, 2]) / 45.0)

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([None, 8], tf.float32)]
        )
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            wide = tf.tile(x, [64, 256])  # [64 * b, 2048]
            return {"y": tf.reduce_sum(tf.matmul(wide, self.w), axis=1)[: tf.shape(x)[0]]}

    module = Heavy()
    tf.saved_model.save(
        module, str(repo / "heavy" / "1"), signatures={"serving_default": module.serve}
    )
    return repo


class Server:
    """``tfhost serve ARGS`` in this namespace, up until ``stop``."""

    def __init__(self, args: list[str]) -> None:
        command = [sys.executable, "-m", "tfhost.cli", "serve", *args, "--rest-port", "0"]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            match = _READY.search(line)
            if match:
                self.url = match.group(1).strip().rstrip(",")
                return
        raise SystemExit(f"tfhost serve {' '.join(args)} exited with {self.process.wait()}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def post(url: str, body: str) -> None:
    request = urllib.request.Request(
        url, body.encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()


def wrk(url: str, paths: list[str], body: str, seconds: int, connections: int) -> dict[str, float]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    listed = ", ".join(f'"{p}"' for p in paths)
    script.write_text(
        f"local paths = {{{listed}}}\n"
        "local i = 0\n"
        f"local body = [==[{body}]==]\n"
        "request = function()\n"
        "  i = i % #paths + 1\n"
        '  return wrk.format("POST", paths[i], {["Content-Type"] = "application/json"}, body)\n'
        "end\n"
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("wrk-errors %d\\n", summary.errors.status))\n'
        "end\n"
    )
    done = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    )
    script.unlink()
    if done.stderr.strip():
        raise SystemExit(f"wrk: {done.stderr.strip()}")
    out = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"wrk-errors (\d+)", out)
    return {
        "rps": rps,
        "p50": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "p99": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "errors": float(errors.group(1)) if errors else 0.0,
    }


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def measure(
    repo: Path, args: list[str], seconds: int, connections: int
) -> dict[str, dict[str, float]]:
    started = time.monotonic()
    server = Server([str(repo), "--no-grpc", *args])
    label = " ".join(args) or "tfhost serve"
    print(f"  {label}: ready in {time.monotonic() - started:.0f} s, load {_load()}")
    try:
        small = [f"/v1/models/{name}:predict" for name in SMALL]
        for path in small:
            for _ in range(3):
                post(server.url + path, SMALL_BODY)
        for _ in range(5):
            post(server.url + "/v1/models/heavy:predict", HEAVY_BODY)
        return {
            "small": wrk(server.url, small, SMALL_BODY, seconds, connections),
            "heavy": wrk(
                server.url, ["/v1/models/heavy:predict"], HEAVY_BODY, seconds, connections
            ),
        }
    finally:
        server.stop()


def ray_floor(seconds: int, connections: int) -> dict[str, dict[str, float]]:
    """Ray Serve alone: a deployment that answers 2 bytes, reached in one hop (proxy ->
    it) and in two (proxy -> a forwarder -> it, as tfhost's ingress forwards)."""
    import ray
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import Response

    from tfhost.ray.launch import LOCAL_ENV, free_port

    os.environ.update(LOCAL_ENV)
    quiet = {"enable_access_log": False}
    free = {"num_cpus": 0}  # three replicas on two CPUs: none may wait for one

    @serve.deployment(max_ongoing_requests=256, logging_config=quiet, ray_actor_options=free)
    class Echo:
        async def __call__(self, request: Request) -> Response:
            await request.body()
            return Response(b"ok")

        async def answer(self, body: bytes) -> bytes:
            return b"ok"

    @serve.deployment(max_ongoing_requests=256, logging_config=quiet, ray_actor_options=free)
    class Forward:
        def __init__(self, echo: Any) -> None:
            self.echo = echo

        async def __call__(self, request: Request) -> Response:
            return Response(await self.echo.answer.remote(await request.body()))

    port = free_port("127.0.0.1")
    ray.init(
        address="local",
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        num_cpus=os.cpu_count(),
        log_to_driver=False,
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(Echo.bind(), name="one", route_prefix="/one")
        serve.run(Forward.bind(Echo.bind()), name="two", route_prefix="/two")
        url = f"http://127.0.0.1:{port}"
        return {
            "1 hop": wrk(url, ["/one"], SMALL_BODY, seconds, connections),
            "2 hops": wrk(url, ["/two"], SMALL_BODY, seconds, connections),
        }
    finally:
        serve.shutdown()
        ray.shutdown()


def _load() -> str:
    """The machine's load average over the last minute: what else competed for the CPUs."""
    return f"{os.getloadavg()[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="wrk's duration per run")
    parser.add_argument("--connections", type=int, default=16)
    options = parser.parse_args()
    if not loopback.inside():
        command = loopback.in_namespace([sys.executable, *sys.argv])
        raise SystemExit(subprocess.call(command, env=loopback.namespace_env()))
    loopback.require_namespace()  # Ray starts here only, or not at all
    os.environ.pop("RAY_ADDRESS", None)
    print(f"{os.cpu_count()} CPUs, wrk -c{options.connections} -d{options.seconds}s")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        repo = write_repository(Path(tmp))
        print(f"  models written in {time.monotonic() - started:.0f} s")
        runs = {
            "tfhost serve": [],
            "--ray --replicas 1": ["--ray", "--replicas", "1"],
            "--ray --replicas 2": ["--ray", "--replicas", "2"],
        }
        results = {}
        for label, args in runs.items():
            results[label] = measure(repo, args, options.seconds, options.connections)
            stray = loopback.stray_sockets()
            assert not stray, stray
        results["Ray Serve alone (2-byte answer)"] = ray_floor(options.seconds, options.connections)
        print(f"  Ray Serve alone: measured, load {_load()}")
    print()
    print("| server | workload | requests/s | p50 ms | p99 ms | errors |")
    print("|---|---|---:|---:|---:|---:|")
    for label, workloads in results.items():
        for workload, r in workloads.items():
            print(
                f"| {label} | {workload} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} "
                f"| {r['errors']:.0f} |"
            )
    print()
    one, two = results["--ray --replicas 1"], results["--ray --replicas 2"]
    base = results["tfhost serve"]
    for w in ("small", "heavy"):
        print(
            f"{w}: 2 vs 1 replicas: throughput x{two[w]['rps'] / one[w]['rps']:.2f}, "
            f"p99 x{two[w]['p99'] / one[w]['p99']:.2f}; "
            f"1 replica vs tfhost serve: throughput x{one[w]['rps'] / base[w]['rps']:.2f}"
        )


if __name__ == "__main__":
    main()
