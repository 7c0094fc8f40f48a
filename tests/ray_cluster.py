"""tfhost on Ray Serve, the cluster tests: collected only by
``tests/test_ray.py::test_the_cluster_in_a_loopback_only_namespace``, which runs this file
inside a network (and PID) namespace whose only interface is ``lo``. Anywhere else it
refuses to start (``loopback.require_namespace``), never starting Ray on the host's network.
One test joins a cluster ``ray start`` began; then one ``tfhost serve REPO --ray
--replicas 2`` serves the rest of the module; after each test no socket may be bound or
connected off loopback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from tfhost.ray import loopback

pytestmark = pytest.mark.ray

if not loopback.inside():  # never start Ray on the host's network
    raise RuntimeError(
        "tests/ray_cluster.py runs only inside a loopback-only namespace: run "
        "tests/test_ray.py, which starts it there"
    )

ROOT = Path(__file__).resolve().parent.parent
BUDGET = "48MiB"  # each replica's; one large model (32 MiB) fits, two do not
LARGE_MIB = 32
SMALL = {  # model -> (format, scale): three colliding pairs
    "tf1_a": ("tf1_saved_model", 1.0),
    "tf1_b": ("tf1_saved_model", 2.0),
    "frozen_a": ("frozen_graph", 1.0),
    "frozen_b": ("frozen_graph", 2.0),
    "keras_a": ("keras", 1.0),
    "keras_b": ("keras", 2.0),
}
LARGE = {"large_1": 3.0, "large_2": 5.0, "large_3": 7.0}  # model -> its factor
TOML = "[host]\nlazy = true\n"  # tfhost serve as the replicas serve: every model lazy
OPTIONS = ["--memory-budget", BUDGET, "--poll-seconds", "0.5"]


def test_a_bad_start_stops_before_ray_starts(tmp_path: Path) -> None:
    """A missing repository or --no-rest: tfhost serve's own error, and no Ray started."""
    for args in ([str(tmp_path / "missing")], [str(tmp_path), "--no-rest"]):
        command = [sys.executable, "-m", "tfhost.cli", "serve", *args, "--ray"]
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        started = []
        while process.poll() is None:
            with contextlib.suppress(psutil.Error):  # it ended meanwhile
                started += [" ".join(c.cmdline()) for c in psutil.Process(process.pid).children()]
            time.sleep(0.05)
        _, error = process.communicate(timeout=120)
        assert process.returncode == 2, error
        assert "no model repository" in error or "drop --no-rest" in error, error
        assert not [c for c in started if "ray" in c], started


# -- inside: a cluster someone else started ------------------------------------------------


def _ray(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        ["ray", *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, f"ray {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def _answers(url: str, deadline_s: float = 180) -> Any:
    """half_plus_two's answer at ``url`` once the application there is up."""
    import httpx

    deadline = time.monotonic() + deadline_s
    while True:
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.post(url, json={"instances": [1.0, 2.0, 5.0]}, timeout=30)
            if answer.status_code == 200:
                return answer.json()
        assert time.monotonic() < deadline, f"no answer at {url} in {deadline_s} s"
        time.sleep(1)


def test_joins_a_running_cluster_and_serve_run_deploys_the_documented_config(
    tmp_path: Path,
) -> None:
    """``ray start --head`` with token authentication (Ray's default where a token is
    found); ``tfhost serve --ray`` joins it through RAY_ADDRESS and, on SIGTERM, removes
    its application and leaves the cluster up; ``serve run`` deploys
    deploy/ray/tfhost.yaml (its repository, port and sizes made this machine's) there."""
    import secrets

    import httpx
    import yaml

    from tests.serve_support import TF_SERVING_DATA, ServerProcess
    from tfhost.ray.launch import LOCAL_ENV, free_port

    loopback.require_namespace()
    repo = tmp_path / "repo"
    shutil.copytree(TF_SERVING_DATA / "saved_model_half_plus_two_cpu", repo / "half_plus_two")
    gcs, port = free_port("127.0.0.1"), free_port("127.0.0.1")
    env = {
        **os.environ,
        **LOCAL_ENV,
        "RAY_AUTH_MODE": "token",  # every client of a token cluster says so, as Ray asks
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    _ray(
        env,
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs}",
        "--include-dashboard=false",
        "--num-cpus=2",
    )
    joined = {**env, "RAY_ADDRESS": f"127.0.0.1:{gcs}"}
    url = f"http://127.0.0.1:{port}/v1/models/half_plus_two:predict"
    expected = {"predictions": [2.5, 3.0, 4.5]}
    try:
        args = [str(repo), "--ray", "--no-grpc", "--rest-port", str(port)]
        with ServerProcess(args, env=joined, timeout=300) as server:
            assert server.rest == f"http://127.0.0.1:{port}"
            assert _answers(url) == expected
            assert server.terminate(90) == 0, server.log()
        assert "Active:" in _ray(joined, "status")  # the cluster is still up
        gone = httpx.post(url, json={"instances": [1.0]}, timeout=30)
        assert gone.status_code == 404, gone.text  # the proxy stays, the application went

        config = yaml.safe_load((ROOT / "deploy" / "ray" / "tfhost.yaml").read_text())
        config["proxy_location"] = "HeadOnly"
        config["http_options"] = {"host": "127.0.0.1", "port": port}
        (application,) = config["applications"]
        application["args"].update(
            repository=str(repo), memory_budget="1GiB", replicas=1, replica_cpus=0.5
        )
        written = tmp_path / "tfhost.yaml"
        written.write_text(yaml.safe_dump(config))
        run = subprocess.Popen(
            ["serve", "run", str(written)],
            env=joined,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert _answers(url) == expected
            ready = httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=30)
            assert ready.status_code == 200
        finally:
            run.send_signal(signal.SIGINT)  # serve run deletes its application on Ctrl-C
            try:
                run.wait(90)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()
    finally:
        _ray(env, "stop", "--force")


# -- inside: one cluster for the rest of the module ------------------------------------------


def write_large(path: Path, factor: float) -> Path:
    """A TF2 SavedModel holding LARGE_MIB MiB of weights; y = x * factor."""
    import tensorflow as tf

    class Large(tf.Module):  # type: ignore[misc]  # TensorFlow has no type hints
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(tf.fill([LARGE_MIB << 18], np.float32(factor)), name="w")

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([None, 3], tf.float32)]
        )
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": x * self.w[0]}

    module = Large()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tfhost.examples import write_example
    from tfhost.specs import Format

    loopback.require_namespace()
    root = tmp_path_factory.mktemp("ray")
    made = root / "made"
    repo = root / "repo"
    repo.mkdir()
    for name, (fmt, scale) in SMALL.items():
        written = write_example(made / name, Format(fmt), scale)
        if written.is_dir():  # a SavedModel: version 1 of its model
            shutil.copytree(written, repo / name / "1")
        else:
            shutil.copy(written, repo / f"{name}{written.suffix}")
    for name, factor in LARGE.items():
        write_large(repo / name / "1", factor)
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    (repo / "tfhost.toml").write_text(TOML)
    return repo


@dataclass
class Cluster:
    process: subprocess.Popen[str]
    rest: str
    log: list[str]


@pytest.fixture(scope="module")
def cluster(repo: Path) -> Iterator[Cluster]:
    """``tfhost serve REPO --ray --replicas 2`` in this namespace, for the whole module."""
    from tests.serve_support import ServerProcess

    loopback.require_namespace()
    assert not os.environ.get("RAY_ADDRESS")  # a local cluster, never one elsewhere
    with ServerProcess(
        [str(repo), "--ray", "--replicas", "2", "--no-grpc", *OPTIONS], timeout=300
    ) as server:
        assert server.rest is not None
        yield Cluster(server.process, server.rest, server.stderr)


class Reference:
    """``tfhost serve``'s own app called in this process through httpx's ASGI transport,
    on an event loop of its own: ``request`` as on ``httpx.Client``."""

    def __init__(self, app: Any) -> None:
        import asyncio

        import httpx

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        transport = httpx.ASGITransport(app=app)
        self._client = httpx.AsyncClient(transport=transport, base_url="http://tfhost")

    def request(self, method: str, path: str, **kw: Any) -> Any:
        import asyncio

        call = self._client.request(method, path, **kw)
        return asyncio.run_coroutine_threadsafe(call, self._loop).result(120)

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def close(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()


@pytest.fixture(scope="module")
def reference(repo: Path) -> Iterator[Reference]:
    """``tfhost serve``'s own app over the same repository and options, in this process."""
    from tfhost.serve.command import ServeOptions, build_fleet, serve_settings
    from tfhost.serve.plane import Plane
    from tfhost.serve.rest import build_app

    options = ServeOptions(repository=repo, memory_budget=BUDGET, poll_seconds=0.5)
    fleet = build_fleet(options, lazy=True)
    fleet.start(wait=True)
    client = Reference(build_app(Plane(fleet, serve_settings(options))))
    try:
        yield client
    finally:
        client.close()
        fleet.close()


@pytest.fixture
def http(cluster: Cluster) -> Iterator[Any]:
    import httpx

    with httpx.Client(base_url=cluster.rest, timeout=60) as client:
        yield client


@pytest.fixture(autouse=True)
def loopback_only(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each cluster test: nothing bound or connected off loopback, lo alone."""
    yield
    assert loopback.namespace_problems() == []
    assert loopback.stray_sockets() == []


def replica_of(response: Any) -> dict[str, str]:
    """The x-tfhost-replica header: id, pid, node, reports."""
    header = response.headers["x-tfhost-replica"]
    return dict(part.strip().split("=", 1) for part in header.split(";"))


def predict(http: Any, model: str, x: list[list[float]] | None = None) -> Any:
    return http.post(f"/v1/models/{model}:predict", json={"instances": x or SAMPLE})


SAMPLE = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


def expected(model: str) -> np.ndarray:
    from tfhost.examples import expected_y

    x = np.asarray(SAMPLE, np.float32)
    if model in LARGE:
        return x * np.float32(LARGE[model])
    return expected_y(x, SMALL[model][1])


def assert_right(response: Any, model: str) -> None:
    assert response.status_code == 200, (model, response.text)
    got = np.asarray(response.json()["predictions"], np.float32)
    np.testing.assert_allclose(got, expected(model), rtol=1e-6)


def same_as_tfhost_serve(http: Any, reference: Any, method: str, path: str, **kw: Any) -> Any:
    """The cluster's answer, checked equal to tfhost serve's: status, type, body bytes."""
    ours = http.request(method, path, **kw)
    theirs = reference.request(method, path, **kw)
    assert ours.status_code == theirs.status_code, (path, ours.text, theirs.text)
    assert ours.headers["content-type"] == theirs.headers["content-type"], path
    assert ours.content == theirs.content, path
    return ours


def test_six_colliding_models_spread_over_the_replicas(http: Any, reference: Any) -> None:
    replicas = {}
    for model in SMALL:
        response = same_as_tfhost_serve(
            http, reference, "POST", f"/v1/models/{model}:predict", json={"instances": SAMPLE}
        )
        assert_right(response, model)
        replicas[model] = replica_of(response)["id"]
    assert len(set(replicas.values())) == 2, replicas  # both replicas serve
    for model in SMALL:  # again: each goes where it is loaded, and answers the same
        response = predict(http, model)
        assert_right(response, model)
        assert replica_of(response)["id"] == replicas[model], model
    for model in SMALL:
        for path in (f"/v1/models/{model}", f"/v1/models/{model}/metadata", f"/v2/models/{model}"):
            same_as_tfhost_serve(http, reference, "GET", path)
        infer = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": SAMPLE}]}
        same_as_tfhost_serve(http, reference, "POST", f"/v2/models/{model}/infer", json=infer)


def test_errors_health_and_limits_answer_as_tfhost_serve(
    http: Any, reference: Any, cluster: Cluster
) -> None:
    for method, path, kw in [
        ("POST", "/v1/models/tf1_a:predict", {"json": {"instances": [[1.0, 2.0]]}}),  # shape
        ("POST", "/v1/models/tf1_a:predict", {"content": b"{not json"}),
        ("POST", "/v1/models/nope:predict", {"json": {"instances": SAMPLE}}),
        ("GET", "/v1/models/nope", {}),
        ("GET", "/v1/models", {}),
        ("GET", "/v2/models/tf1_a/versions/9", {}),
        ("GET", "/v2/health/live", {}),
        ("GET", "/v2/health/ready", {}),
        ("GET", "/v2/nothing-here", {}),
    ]:
        same_as_tfhost_serve(http, reference, method, path, **kw)
    same_as_tfhost_serve(http, reference, "GET", "/v2")
    # The same status; the words list the models of the replica that answered.
    ours = http.post("/v2/models/nope/infer", json={"inputs": []})
    theirs = reference.post("/v2/models/nope/infer", json={"inputs": []})
    assert ours.status_code == theirs.status_code == 404
    assert "'nope' is not loaded" in ours.json()["error"]
    # A body over --max-body (64 MiB): refused by its Content-Length, never carried.
    host, port = cluster.rest.removeprefix("http://").split(":")
    connection = HTTPConnection(host, int(port), timeout=60)
    connection.putrequest("POST", "/v1/models/tf1_a:predict")
    connection.putheader("Content-Length", str(100 << 20))
    connection.putheader("Content-Type", "application/json")
    connection.endheaders()
    ours = connection.getresponse()
    theirs = reference.post(
        "/v1/models/tf1_a:predict", headers={"Content-Length": str(100 << 20)}, content=b""
    )
    assert ours.status == theirs.status_code == 413
    assert ours.read() == theirs.content
    connection.close()


def test_a_model_that_fails_to_load_fails_with_the_loads_error(http: Any, reference: Any) -> None:
    started = time.monotonic()
    response = same_as_tfhost_serve(
        http, reference, "POST", "/v1/models/broken:predict", json={"instances": SAMPLE}
    )
    assert response.status_code >= 400 and "broken" in response.json()["error"]
    v2 = http.post("/v2/models/broken/infer", json={"inputs": []})
    assert v2.status_code >= 400 and "error" in v2.json()
    assert time.monotonic() - started < 30  # an answer, not a hang
    assert_right(predict(http, "tf1_a"), "tf1_a")  # the others keep serving


def reports_after(http: Any, model: str, replica: str, count: int) -> None:
    """Wait until ``replica`` (holding ``model``) has reported its budget to the router
    ``count`` more times: then the router has seen what it holds now."""
    first = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = predict(http, model)
        assert_right(response, model)
        seen = replica_of(response)
        assert seen["id"] == replica, (model, seen, replica)
        first = int(seen["reports"]) if first is None else first
        if int(seen["reports"]) >= first + count:
            return
        time.sleep(0.1)
    raise AssertionError(f"replica {replica} did not report its budget within 30 s")


def metrics_of(http: Any, replica: str) -> str:
    """/metrics as ``replica`` answers it (a request that names no model goes to any)."""
    for _ in range(100):
        response = http.get("/metrics")
        if replica_of(response)["id"] == replica:
            return str(response.text)
    raise AssertionError(f"/metrics never reached replica {replica}")


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        named = line.startswith((name + "{", name + " "))
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_large_model_goes_where_the_budget_has_room_or_evicts_the_lru(http: Any) -> None:
    """Each replica's budget holds one large model: the second goes to the other replica,
    the third to one of them, which evicts its least recently used models to fit it."""
    first = predict(http, "large_1")
    assert_right(first, "large_1")
    a = replica_of(first)["id"]
    reports_after(http, "large_1", a, 2)
    second = predict(http, "large_2")
    assert_right(second, "large_2")
    b = replica_of(second)["id"]
    assert b != a, "large_2 went to the replica whose budget large_1 fills"
    reports_after(http, "large_2", b, 2)
    third = predict(http, "large_3")
    assert_right(third, "large_3")
    c = replica_of(third)["id"]
    assert c in (a, b)
    displaced = "large_1" if c == a else "large_2"
    text = metrics_of(http, c)
    assert metric(text, "tfhost_evictions_total") >= 1
    assert metric(text, "tfhost_model_state", model=displaced, state="AVAILABLE") == 0
    assert metric(text, "tfhost_model_state", model="large_3", state="AVAILABLE") == 1
    used = metric(text, "tfhost_memory_used_bytes")
    assert 0 < used <= metric(text, "tfhost_memory_budget_bytes") == 48 << 20
    # Evicted is not gone: it comes back, wherever there is room now.
    assert_right(predict(http, displaced), displaced)
    for model in [*SMALL, *LARGE]:
        assert_right(predict(http, model), model)


def replica_pids() -> set[int]:
    found = set()
    for process in psutil.process_iter(["cmdline"]):
        argv = process.info["cmdline"] or []
        if argv and argv[0].startswith("ray::ServeReplica:tfhost:Replica"):
            found.add(process.pid)
    return found


def test_a_replica_killed_mid_stream_is_replaced(http: Any, cluster: Cluster) -> None:
    import httpx

    before = replica_pids()
    assert len(before) == 2
    victim = int(replica_of(predict(http, "tf1_a"))["pid"])
    assert victim in before
    answers: list[tuple[float, int, float]] = []  # (sent, status or -1, seconds)
    wrong: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=cluster.rest, timeout=60) as client:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    response = predict(client, "tf1_a")
                    status = response.status_code
                    if status == 200:
                        got = np.asarray(response.json()["predictions"], np.float32)
                        if not np.allclose(got, expected("tf1_a")):
                            wrong.append(str(got))
                except httpx.HTTPError as exc:  # a timeout: counted as a hang below
                    status = -1
                    wrong.append(repr(exc))
                answers.append((sent, status, time.monotonic() - sent))

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(answers) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)  # a replica this module's cluster started
        deadline = killed + 120
        while time.monotonic() < deadline:
            pids = replica_pids()
            recovered = [a for a in answers if a[0] > killed + 0.5 and a[1] == 200]
            if len(pids) == 2 and victim not in pids and len(recovered) >= 5:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"not replaced in 120 s: {replica_pids()}, {answers[-5:]}")
    finally:
        stop.set()
        for thread in threads:
            thread.join(90)
    assert not wrong, wrong[:5]
    statuses = {status for _, status, _ in answers}
    assert statuses <= {200, 503}, statuses  # the replica went away: 503, try again
    assert max(took for _, _, took in answers) < 60  # every request answered, none hung
    assert all(status == 200 for sent, status, took in answers if sent + took < killed)
    for model in SMALL:
        assert_right(predict(http, model), model)


def test_sigterm_stops_the_cluster_and_every_ray_process(cluster: Cluster) -> None:
    process = psutil.Process(cluster.process.pid)
    children = process.children(recursive=True)
    assert any("raylet" in " ".join(c.cmdline()) for c in children)
    cluster.process.send_signal(signal.SIGTERM)
    assert cluster.process.wait(90) == 0, "".join(cluster.log[-50:])
    _, alive = psutil.wait_procs(children, timeout=60)
    for left in alive:
        left.kill()  # ours: the cluster this module started
    assert not alive, [p.pid for p in alive]
