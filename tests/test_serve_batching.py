"""Dynamic batching through ``tfhost serve``: a real server in a subprocess, real clients
(httpx, the TF Serving gRPC stubs, tritonclient), 16 requests at once.

One server batches ``batchy`` by its tfhost.toml and is started with ``--enable_batching``
(the default of the models whose table says nothing); another serves a repository without
tfhost.toml, batched by ``--enable_batching --batching_parameters_file``. Both start
together, in the background, from the first test on.
"""

from __future__ import annotations

import html.parser
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.serve_support import ServerProcess

CONCURRENCY = 16
GRPC_RUNNING = 2  # gRPC calls running at once on the batching server; waiting ones aside
MAX_BATCH = 16
FILE_MAX_BATCH = 8

# batchy's table batches it; plain is never batched (its answers are the reference);
# flagged says nothing, so --enable_batching's defaults batch it; auto measures its size.
TOML = f"""
[models.batchy]
batching = {{ max_batch_size = {MAX_BATCH}, batch_timeout_micros = 5000 }}

[models.plain]
batching = false

[models.auto]
batching = {{ max_batch_size = "auto" }}
"""

PARAMETERS = f"""
max_batch_size {{ value: {FILE_MAX_BATCH} }}
batch_timeout_micros {{ value: 5000 }}
thread_pool_name {{ value: "model_server_batch_threads" }}
"""

# Batched and unbatched float32 answers differ within what oneDNN's batch-dependent kernels
# allow (see docs/batching.md).
RTOL, ATOL = 1e-5, 1e-6

ROWS = np.random.default_rng(16).normal(size=(CONCURRENCY, 1, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def starts(
    batchy: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[ServerProcess]]]:
    root = tmp_path_factory.mktemp("serve_batching")
    repo = root / "toml"
    for name in ("batchy", "plain", "flagged", "auto"):
        shutil.copytree(batchy, repo / name / "1")
    (repo / "tfhost.toml").write_text(TOML)
    bare = root / "bare"
    shutil.copytree(batchy, bare / "batchy" / "1")
    parameters = root / "batching_parameters.txt"
    parameters.write_text(PARAMETERS)
    commands = {
        "toml": [str(repo), "--enable_batching=true", f"--grpc-running-calls={GRPC_RUNNING}"],
        "file": [str(bare), "--enable_batching", f"--batching_parameters_file={parameters}"],
    }
    pool = ThreadPoolExecutor(len(commands), thread_name_prefix="server-start")
    futures = {key: pool.submit(ServerProcess, args) for key, args in commands.items()}
    yield futures
    pool.shutdown(wait=True)
    servers = [f.result() for f in futures.values() if f.exception() is None]
    for server in servers:  # both drain at once, each on one SIGTERM (a second one, sent
        server.process.send_signal(signal.SIGTERM)  # while it closes, ends it at once)
    for server in servers:
        assert server.process.wait(120) == 0, server.log()


@pytest.fixture(scope="module")
def server(starts: dict[str, Future[ServerProcess]]) -> ServerProcess:
    return starts["toml"].result()


@pytest.fixture(scope="module")
def file_server(starts: dict[str, Future[ServerProcess]]) -> ServerProcess:
    return starts["file"].result()


@pytest.fixture(scope="module")
def rest(server: ServerProcess) -> Iterator[httpx.Client]:
    assert server.rest is not None
    with httpx.Client(base_url=server.rest, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def reference(rest: httpx.Client) -> np.ndarray:
    """Each row's answer from the unbatched copy, one request at a time."""
    answers = []
    for row in ROWS:
        response = rest.post("/v1/models/plain:predict", json={"instances": row.tolist()})
        assert response.status_code == 200, response.text
        answers.append(np.asarray(response.json()["predictions"], np.float32))
    return np.stack(answers)


def _together(send: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``send(row)`` for every row, from CONCURRENCY threads released at once."""
    barrier = threading.Barrier(CONCURRENCY)

    def one(row: np.ndarray) -> np.ndarray:
        barrier.wait(timeout=60)
        return send(row)

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        return np.stack(list(pool.map(one, ROWS)))


def _tfs_rest(server: ServerProcess, model: str = "batchy") -> Callable[[np.ndarray], np.ndarray]:
    assert server.rest is not None
    client = httpx.Client(base_url=server.rest, timeout=60)

    def send(row: np.ndarray) -> np.ndarray:
        response = client.post(f"/v1/models/{model}:predict", json={"instances": row.tolist()})
        assert response.status_code == 200, response.text
        return np.asarray(response.json()["predictions"], np.float32)

    return send


def _tfs_grpc(server: ServerProcess) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf

    assert server.grpc is not None
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server.grpc))

    def send(row: np.ndarray) -> np.ndarray:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "batchy"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(row))
        return np.asarray(tf.make_ndarray(stub.Predict(request, timeout=60).outputs["y"]))

    return send


def _v2_http(server: ServerProcess) -> Callable[[np.ndarray], np.ndarray]:
    assert server.rest is not None
    url = server.rest.removeprefix("http://")
    local = threading.local()  # tritonclient.http's client is one per thread

    def send(row: np.ndarray) -> np.ndarray:
        if not hasattr(local, "client"):
            local.client = triton_http.InferenceServerClient(url, network_timeout=60)
        x = triton_http.InferInput("x", list(row.shape), "FP32")
        x.set_data_from_numpy(row, binary_data=True)
        return np.asarray(local.client.infer("batchy", [x]).as_numpy("y"))

    return send


def _v2_grpc(server: ServerProcess) -> Callable[[np.ndarray], np.ndarray]:
    assert server.grpc is not None
    client = triton_grpc.InferenceServerClient(server.grpc)

    def send(row: np.ndarray) -> np.ndarray:
        x = triton_grpc.InferInput("x", list(row.shape), "FP32")
        x.set_data_from_numpy(row)
        return np.asarray(client.infer("batchy", [x], client_timeout=60).as_numpy("y"))

    return send


PROTOCOLS = {"tfs_rest": _tfs_rest, "tfs_grpc": _tfs_grpc, "v2_http": _v2_http, "v2_grpc": _v2_grpc}


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_concurrent_requests_get_their_unbatched_answers(
    server: ServerProcess, reference: np.ndarray, protocol: str
) -> None:
    send = PROTOCOLS[protocol](server)
    for _ in range(2):
        answers = _together(send)
        assert answers.shape == reference.shape
        np.testing.assert_allclose(answers, reference, rtol=RTOL, atol=ATOL)


def _samples(server: ServerProcess) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``/metrics`` read by prometheus_client's own parser: sample name -> labels -> value."""
    assert server.rest is not None
    text = httpx.get(f"{server.rest}/metrics", timeout=60).text
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def _of(
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str
) -> float | None:
    return samples.get(name, {}).get(tuple(sorted(labels.items())))


def test_metrics_show_the_batches_formed(server: ServerProcess, reference: np.ndarray) -> None:
    send = _tfs_grpc(server)
    batchy = {"model": "batchy", "version": "1"}
    for _ in range(10):  # a batch of more than one row forms in the first burst, nearly always
        np.testing.assert_allclose(_together(send), reference, rtol=RTOL, atol=ATOL)
        samples = _samples(server)
        calls = _of(samples, "tfhost_batch_size_count", **batchy)
        ones = _of(samples, "tfhost_batch_size_bucket", **batchy, le="1.0")
        assert calls is not None and ones is not None
        if calls > ones:
            break
    assert calls > ones, "no model call of batchy took more than one row"
    rows = _of(samples, "tfhost_batch_size_sum", **batchy)
    assert rows is not None and rows > calls  # some call had more than one row
    assert _of(samples, "tfhost_batch_size_bucket", **batchy, le="+Inf") == calls
    assert _of(samples, "tfhost_batch_size_bucket", **batchy, le="16.0") == calls
    assert _of(samples, "tfhost_batch_max_size", **batchy) == MAX_BATCH
    assert _of(samples, "tfhost_batch_queue_depth", **batchy) == 0
    queued = _of(samples, "tfhost_batch_queue_seconds_count", **batchy)
    assert queued is not None and queued >= 1
    assert _of(samples, "tfhost_batch_queue_seconds_bucket", **batchy, le="+Inf") == queued
    # tfhost.toml's batching = false wins over --enable_batching; a model whose table says
    # nothing takes --enable_batching's defaults (TF Serving's max_batch_size, 1000).
    assert _of(samples, "tfhost_batch_max_size", model="plain", version="1") is None
    assert _of(samples, "tfhost_batch_max_size", model="flagged", version="1") == 1000
    # What "auto" chose is the size in use: a power of two it measured.
    chosen = _of(samples, "tfhost_batch_max_size", model="auto", version="1")
    assert chosen is not None and chosen in {float(1 << i) for i in range(11)}


@pytest.mark.parametrize("protocol", ["tfs_rest", "tfs_grpc"])
def test_requests_to_a_warm_model_still_meet_in_a_batch(
    server: ServerProcess, reference: np.ndarray, protocol: str
) -> None:
    # A lone quick request runs on the event loop (tfhost serve's fast path); were a batched
    # model's requests run there too, the loop would read each only after the one before
    # answered, and no batch would ever form. On gRPC each call has a pool thread, where a
    # quick model's request runs: a batched one's must still wait there for its batch.
    send = PROTOCOLS[protocol](server)
    for row in ROWS[:3]:
        send(row)  # the plane now knows batchy is quick
    assert _a_burst_batches_more_than(server, send, reference, 1), (
        "16 requests at once to a warm model never met in a batch"
    )


def test_a_grpc_batch_holds_more_calls_than_run_at_once(
    server: ServerProcess, reference: np.ndarray
) -> None:
    # Two gRPC calls run at once; a call waiting in its batch gives its place to the next,
    # or no batch would ever hold more than two.
    send = _tfs_grpc(server)
    assert _a_burst_batches_more_than(server, send, reference, GRPC_RUNNING), (
        f"no batch of batchy held more than {GRPC_RUNNING} gRPC calls"
    )


def _a_burst_batches_more_than(
    server: ServerProcess,
    send: Callable[[np.ndarray], np.ndarray],
    reference: np.ndarray,
    rows: int,
) -> bool:
    """Whether, in one of up to five bursts of CONCURRENCY requests (each answered as the
    unbatched model answers), some model call of batchy took more than ``rows`` rows."""
    batchy = {"model": "batchy", "version": "1"}
    bound = {"le": str(float(rows))}
    for _ in range(5):
        before = _samples(server)
        np.testing.assert_allclose(_together(send), reference, rtol=RTOL, atol=ATOL)
        after = _samples(server)
        calls, within = (
            (_of(after, name, **batchy, **extra) or 0) - (_of(before, name, **batchy, **extra) or 0)
            for name, extra in (
                ("tfhost_batch_size_count", {}),
                ("tfhost_batch_size_bucket", bound),
            )
        )
        if calls > within:
            return True
    return False


class _Cells(html.parser.HTMLParser):
    """The status page's models table: header names and each row's cells."""

    def __init__(self) -> None:
        super().__init__()
        self.header: list[str] = []
        self.rows: list[list[str]] = []
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("td", "th"):
            self._cell = tag
            (self.header if tag == "th" else self.rows[-1]).append("")
        elif tag == "tr":
            self.rows.append([])
        elif tag == "br" and self._cell == "td":
            self.rows[-1][-1] += "\n"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell == "th":
            self.header[-1] += data
        elif self._cell == "td":
            self.rows[-1][-1] += data

    def table(self) -> dict[str, dict[str, str]]:
        """model/version -> column -> text."""
        rows = [dict(zip(self.header, row, strict=True)) for row in self.rows if row]
        return {f"{row['model']}/{row['version']}": row for row in rows}


def test_status_page_shows_the_batching(server: ServerProcess, rest: httpx.Client) -> None:
    # totals' output "total" is not batch-major: batching is turned off for it (and TF
    # Serving's row form cannot answer it), and its columnar answer is still right.
    x = ROWS[0:2, 0]
    columnar = rest.post(
        "/v1/models/batchy:predict", json={"signature_name": "totals", "inputs": {"x": x.tolist()}}
    )
    assert columnar.status_code == 200, columnar.text
    outputs = columnar.json()["outputs"]
    np.testing.assert_allclose(outputs["total"], x.sum(axis=0), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(outputs["y"], x * 2, rtol=RTOL, atol=ATOL)

    page = _Cells()
    page.feed(rest.get("/").text)
    table = page.table()
    batching = table["batchy/1"]["batching"]
    assert f"max {MAX_BATCH}" in batching
    assert "queue 0" in batching
    assert "mean batch " in batching
    assert "unbatched totals: output 'total'" in batching
    assert table["flagged/1"]["batching"].startswith("max 1000")
    assert table["plain/1"]["batching"] == ""
    auto = table["auto/1"]["batching"]
    assert auto.startswith("max ")
    assert "\nchosen: auto: measured 'serving_default'" in auto


def test_batching_parameters_file_batches_a_repository_without_tfhost_toml(
    file_server: ServerProcess,
) -> None:
    send = _tfs_rest(file_server)
    answers = _together(send)
    weights = np.arange(12, dtype=np.float32).reshape(4, 3) / 10  # batchy's dense layer
    np.testing.assert_allclose(answers, ROWS @ weights + 1.0, rtol=RTOL, atol=ATOL)
    samples = _samples(file_server)
    batchy = {"model": "batchy", "version": "1"}
    assert _of(samples, "tfhost_batch_max_size", **batchy) == FILE_MAX_BATCH
    calls = _of(samples, "tfhost_batch_size_count", **batchy)
    assert calls is not None and calls >= 1
    # No call took more rows than the file's max_batch_size.
    assert _of(samples, "tfhost_batch_size_bucket", **batchy, le=f"{FILE_MAX_BATCH}.0") == calls


def _start_fails(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tfhost.cli", "serve", *args, "--port=0", "--rest_api_port=0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "400"},
    )


def test_bad_batching_flags_stop_the_server_before_it_starts(batchy: Path, tmp_path: Path) -> None:
    shutil.copytree(batchy, tmp_path / "repo" / "batchy" / "1")
    repo = str(tmp_path / "repo")
    bad = tmp_path / "bad.txt"
    bad.write_text("max_batch_size { value: 8 }\nmax_batch_sise { value: 8 }\n")
    split = tmp_path / "split.txt"
    split.write_text("enable_large_batch_splitting { value: true }\n")
    cases = {
        f"--batching_parameters_file {bad}: line 2, column 1: ": [
            repo,
            "--enable_batching",
            f"--batching_parameters_file={bad}",
        ],
        "enable_large_batch_splitting is not supported": [
            repo,
            "--enable_batching=true",
            f"--batching_parameters_file={split}",
        ],
        "is given without --enable_batching: add --enable_batching": [
            repo,
            f"--batching_parameters_file={split}",
        ],
    }
    with ThreadPoolExecutor(2) as pool:
        done = dict(zip(cases, pool.map(_start_fails, cases.values()), strict=True))
    for expected, result in done.items():
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr, result.stderr
        assert "ready" not in result.stdout
