"""``tfhost serve`` under bad input and pressure: tokens, body and concurrency limits,
timeouts, SIGTERM drains, TF Serving's one-model command line, broken models."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.serve_support import TF_SERVING_DATA, ServerProcess
from tfhost import InputError
from tfhost.serve.command import ServeOptions, serve_settings

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, toolbox: Path) -> Iterator[ServerProcess]:
    """A server with a token, a 1 KiB body limit, a 1 KiB answer limit, 2 requests in
    flight and 1 s timeouts (request and body)."""
    repo = tmp_path_factory.mktemp("guarded") / "models"
    shutil.copytree(toolbox, repo / "toolbox" / "1")
    shutil.copytree(TF_SERVING_DATA / "saved_model_half_plus_two_cpu", repo / "half_plus_two")
    # A corrupt model beside them: its load fails, the others serve.
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "saved_model.pb").write_bytes(b"not a protobuf")
    args = [str(repo), "--token", TOKEN, "--max-body", "1KiB", "--max-response", "1KiB"]
    args += ["--max-in-flight", "2", "--body-timeout", "1"]
    with ServerProcess([*args, "--rest_api_timeout_in_ms=1000"]) as process:
        yield process
        assert process.terminate() == 0, process.log()


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def test_every_endpoint_but_health_needs_the_token(guarded: ServerProcess) -> None:
    with httpx.Client(base_url=guarded.rest, timeout=30) as client:
        for path in ("/v1/models/half_plus_two", "/v2/models/toolbox", "/metrics", "/"):
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert "bearer token" in refused.json()["error"]
            assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert client.get(path, headers=_auth()).status_code == 200, path
        # The scheme in any case (RFC 7235); another scheme, or none, is refused.
        for value, code in (
            (f"bearer {TOKEN}", 200),
            (f"BEARER  {TOKEN}", 200),
            (f"Basic {TOKEN}", 401),
            (TOKEN, 401),
            (f"Bearer{TOKEN}", 401),
        ):
            answer = client.get("/v2/models/toolbox", headers={"Authorization": value})
            assert answer.status_code == code, value
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        infer = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
        for path, body in (
            ("/v1/models/half_plus_two:predict", {"instances": [1.0]}),
            ("/v2/models/half_plus_two/infer", infer),
        ):
            refused = client.post(path, json=body)
            assert refused.status_code == 401, path
            assert "bearer token" in refused.json()["error"]
            assert client.post(path, json=body, headers=_auth()).status_code == 200, path
    triton = triton_grpc.InferenceServerClient(guarded.grpc)
    assert triton.is_server_live()
    with pytest.raises(InferenceServerException, match="bearer token"):
        triton.get_model_metadata("toolbox")
    # gRPC metadata keys are lowercase.
    metadata = triton.get_model_metadata("toolbox", headers={"authorization": f"Bearer {TOKEN}"})
    assert metadata.name == "toolbox"
    metadata = triton.get_model_metadata("toolbox", headers={"authorization": f"bearer {TOKEN}"})
    assert metadata.name == "toolbox"
    with pytest.raises(InferenceServerException, match="bearer token"):
        triton.get_model_metadata("toolbox", headers={"authorization": f"Basic {TOKEN}"})


def test_a_huge_body_is_413_and_the_server_keeps_serving(guarded: ServerProcess) -> None:
    with httpx.Client(base_url=guarded.rest, timeout=30, headers=_auth()) as client:
        huge = {"instances": [1.0] * 1000}
        answer = client.post("/v1/models/half_plus_two:predict", json=huge)
        assert answer.status_code == 413
        assert "over the limit of 1024" in answer.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"instances": ['
            for _ in range(500):
                yield b"1.0, "
            yield b"1.0]}"

        for path in ("/v1/models/half_plus_two:predict", "/v2/models/half_plus_two/infer"):
            answer = client.post(path, content=chunks())
            assert answer.status_code == 413, path
            assert "over the limit of 1024 bytes" in answer.json()["error"], path
        infer = {"inputs": [{"name": "x", "shape": [300], "datatype": "FP32", "data": [1.0] * 300}]}
        answer = client.post("/v2/models/half_plus_two/infer", json=infer)
        assert answer.status_code == 413
        assert "over the limit of 1024" in answer.json()["error"]
        ok = client.post("/v1/models/half_plus_two:predict", json={"instances": [1.0]})
        assert ok.json() == {"predictions": [2.5]}


def test_a_body_that_stops_arriving_is_refused_and_the_server_keeps_serving(
    guarded: ServerProcess,
) -> None:
    """A Content-Length of 100 and 9 bytes sent: 408 with a JSON error, closing the
    connection, once the body has stopped for --body-timeout (1 s), on every route that
    reads a body."""
    assert guarded.rest is not None
    host, port = guarded.rest.removeprefix("http://").split(":")
    for path in (
        "/v1/models/half_plus_two:predict",
        "/v2/models/toolbox/infer",
        "/v2/repository/index",
    ):
        with socket.create_connection((host, int(port)), timeout=30) as conn:
            conn.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n".encode()
                + b'{"instanc'
            )
            started = time.monotonic()
            head, _, body = _read_response(conn).partition(b"\r\n\r\n")
            waited = time.monotonic() - started
        assert head.startswith(b"HTTP/1.1 408"), (path, head)
        # The rest of that body may still come: the connection is not reused for it.
        assert b"\r\nconnection: close" in head.lower(), head
        assert b"stopped arriving" in body and b"after 9 bytes of the 100" in body, body
        assert waited < 20, waited  # refused by the server's timer, not by this socket's
    # The pause between reads is timed, not the whole body: three chunks 0.6 s apart
    # (1.8 s in all, over the 1 s timeout) are one good request.
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(
            f"POST /v1/models/half_plus_two:predict HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        for part in (b'{"instances"', b": [1.0]", b"}"):
            time.sleep(0.6)
            conn.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        conn.sendall(b"0\r\n\r\n")
        head, _, body = _read_response(conn).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert json.loads(body) == {"predictions": [2.5]}


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_a_body_timeout_that_is_not_positive_is_refused_by_its_flag(bad: float) -> None:
    with pytest.raises(InputError, match=f"--body-timeout must be a positive number .* {bad}"):
        serve_settings(ServeOptions(None, body_timeout_s=bad))
    assert serve_settings(ServeOptions(None, body_timeout_s=2.5)).body_timeout_s == 2.5


def _read_response(conn: socket.socket) -> bytes:
    """One HTTP response, headers and Content-Length body, as far as ``conn`` gives it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_an_answer_over_the_limit_is_refused_and_the_server_keeps_serving(
    guarded: ServerProcess,
) -> None:
    """400 values in 800 bytes of JSON, or one value filling a shape of 400 over gRPC, ask
    for 1,600 bytes of answer: over the 1 KiB limit, refused before it is encoded."""
    with httpx.Client(base_url=guarded.rest, timeout=30, headers=_auth()) as client:
        answer = client.post("/v1/models/half_plus_two:predict", json={"instances": [1] * 400})
        assert answer.status_code == 500, answer.text
        error = answer.json()["error"]
        assert "answered 1.6 KiB, over this server's limit of 1.0 KiB" in error
        assert "model 'half_plus_two'" in error and "--max-response" in error
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    tensor = request.inputs["x"]
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add(size=400)
    tensor.float_val.append(1.0)
    with grpc.insecure_channel(guarded.grpc) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        auth = (("authorization", f"Bearer {TOKEN}"),)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(request, timeout=30, metadata=auth)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-response" in caught.value.details()
        del tensor.tensor_shape.dim[:]
        tensor.tensor_shape.dim.add(size=2)
        tensor.ClearField("float_val")
        tensor.float_val.extend([1.0, 2.0])
        answer = stub.Predict(request, timeout=30, metadata=auth)
        assert list(answer.outputs["y"].float_val) == [2.5, 3.0]


def test_past_max_in_flight_requests_are_refused_at_once(guarded: ServerProcess) -> None:
    # The toolbox's sleep takes twice its argument, and its calls take turns.
    body = {"signature_name": "sleep", "inputs": 0.1}

    together = threading.Barrier(6)  # all six sent at once, however slow threads start

    def call(_: int) -> int:
        with httpx.Client(base_url=guarded.rest, timeout=30, headers=_auth()) as client:
            client.get("/v2/health/live")  # connected before the barrier
            together.wait(timeout=30)
            return client.post("/v1/models/toolbox:predict", json=body).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(call, range(6)))
    assert codes.count(200) >= 2
    assert codes.count(503) >= 1
    assert set(codes) <= {200, 503}


def test_a_slow_call_answers_504_at_the_timeout(guarded: ServerProcess) -> None:
    with httpx.Client(base_url=guarded.rest, timeout=30, headers=_auth()) as client:
        started = time.monotonic()
        body = {"signature_name": "sleep", "inputs": 2.0}  # sleeps 4 s
        answer = client.post("/v1/models/toolbox:predict", json=body)
        took = time.monotonic() - started
        assert answer.status_code == 504, answer.text
        assert took < 3
        assert "timeout" in answer.json()["error"]


def test_a_broken_model_fails_alone(guarded: ServerProcess) -> None:
    with httpx.Client(base_url=guarded.rest, timeout=30, headers=_auth()) as client:
        status = client.get("/v1/models/broken").json()
        (version,) = status["model_version_status"]
        assert version["status"]["error_code"] != "OK"
        assert version["status"]["error_message"]
        answer = client.post("/v1/models/broken:predict", json={"instances": [1.0]})
        assert answer.status_code in (400, 503), answer.text
        escape = client.post("/v1/models/..%2F..%2Fetc:predict", json={"instances": [1.0]})
        assert escape.status_code in (400, 404)
        assert "error" in escape.json()
        ok = client.post("/v1/models/half_plus_two:predict", json={"instances": [1.0]})
        assert ok.json() == {"predictions": [2.5]}


def test_tf_servings_own_command_line(tmp_path: Path) -> None:
    """``tensorflow_model_server --port --rest_api_port --model_name --model_base_path``
    with only the binary's name changed (ports 0: the OS picks)."""
    base = tmp_path / "hp3"
    shutil.copytree(TF_SERVING_DATA / "saved_model_half_plus_three", base)
    args = [
        "--port=0",
        "--rest_api_port=0",
        "--model_name=hp3",
        f"--model_base_path={base}",
        "--enable_model_warmup=true",
        "--file_system_poll_wait_seconds=1",
        "--grpc_max_threads=4",
    ]
    with ServerProcess(args) as process:
        with httpx.Client(base_url=process.rest, timeout=30) as client:
            answer = client.post("/v1/models/hp3:predict", json={"instances": [1.0, 2.0]})
            assert answer.json() == {"predictions": [3.5, 4.0]}
        with grpc.insecure_channel(process.grpc) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        assert process.terminate() == 0


def test_an_unsupported_tf_serving_flag_is_refused_by_name(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tfhost.cli", "serve", str(tmp_path), "--ssl_config_file=x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "--ssl_config_file" in done.stderr
    assert "TLS" in done.stderr


def test_a_missing_model_config_file_is_said_before_anything_starts(tmp_path: Path) -> None:
    missing = tmp_path / "models.config"
    done = subprocess.run(
        [sys.executable, "-m", "tfhost.cli", "serve", f"--model_config_file={missing}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    said = " ".join(done.stderr.split())  # rich wraps long lines
    assert f"--model_config_file: no such file: '{missing}'" in said
    assert "tfhost fleet" not in done.stdout + done.stderr  # no start-up table first


def test_a_bad_config_at_start_is_an_error_on_its_own_line(tmp_path: Path, toolbox: Path) -> None:
    repo = tmp_path / "models"
    shutil.copytree(toolbox, repo / "toolbox" / "1")
    (repo / "tfhost.toml").write_text('[models.toolbox]\njit_compile = "yes"\n')
    done = subprocess.run(
        [sys.executable, "-m", "tfhost.cli", "serve", str(repo), "--rest-port", "0"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 2, done.stderr
    # The start-up table's last line ends before the error begins.
    assert "\nerror: " in done.stderr, done.stderr
    said = " ".join(done.stderr.split())
    assert "models.toolbox.jit_compile: expected true or false, got a string 'yes'" in said


@pytest.mark.parametrize("protocol", ["REST", "gRPC"])
def test_a_port_in_use_is_a_clear_error(tmp_path: Path, protocol: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        flag = "--rest-port" if protocol == "REST" else "--grpc-port"
        other = "--grpc-port" if protocol == "REST" else "--rest-port"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tfhost.cli",
                "serve",
                str(tmp_path),
                flag,
                str(port),
                other,
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert done.returncode == 2, done.stderr
    assert f"cannot listen for {protocol} on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_sigterm_drains_requests_in_flight(tmp_path: Path, toolbox: Path) -> None:
    repo = tmp_path / "models"
    shutil.copytree(toolbox, repo / "toolbox" / "1")
    with ServerProcess([str(repo)]) as process:
        codes: list[int] = []

        def slow() -> None:
            with httpx.Client(base_url=process.rest, timeout=30) as client:
                body = {"signature_name": "sleep", "inputs": 1.0}  # sleeps 2 s
                codes.append(client.post("/v1/models/toolbox:predict", json=body).status_code)

        caller = threading.Thread(target=slow)
        caller.start()
        time.sleep(0.5)
        assert process.terminate() == 0, process.log()
        caller.join()
        assert codes == [200]
        with pytest.raises(httpx.ConnectError), httpx.Client(base_url=process.rest) as client:
            client.get("/v2/health/live")


def test_sigterm_the_moment_it_is_ready_exits_cleanly(tmp_path: Path, toolbox: Path) -> None:
    # The ready line comes after the signal handlers are in place: a SIGTERM sent the
    # moment it is read drains and exits 0 (it once killed the process, exit -15).
    repo = tmp_path / "models"
    shutil.copytree(toolbox, repo / "toolbox" / "1")
    process = ServerProcess([str(repo)])
    assert process.terminate() == 0, process.log()


def test_concurrent_requests_get_their_own_answers(guarded: ServerProcess) -> None:
    x = np.arange(6, dtype=np.float32)

    def call(i: int) -> tuple[int, list[float]]:
        with httpx.Client(base_url=guarded.rest, timeout=30, headers=_auth()) as client:
            for _ in range(20):
                answer = client.post(
                    "/v1/models/half_plus_two:predict", json={"instances": (x + i).tolist()}
                )
                if answer.status_code == 503:  # over max_in_flight: try again
                    continue
                return i, answer.json()["predictions"]
        raise AssertionError("never admitted")

    with ThreadPoolExecutor(4) as pool:
        for i, predictions in pool.map(call, range(8)):
            np.testing.assert_allclose(predictions, (x + i) / 2 + 2)
