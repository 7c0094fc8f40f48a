"""Process isolation: models in worker processes, behind the same Host API.

Real TensorFlow in real worker processes; the special models (one that sleeps, fails or
aborts on demand, one with 64 MiB of weights) are built by the fixtures below. Worker
starts cost seconds of CPU each, so hosts are module-scoped where no test kills workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import keras
import numpy as np
import psutil
import pytest

from tfhost import (
    DeadlineExceeded,
    Event,
    Format,
    FormatError,
    Host,
    HostSettings,
    InputError,
    Isolation,
    LoadError,
    ModelError,
    NotFound,
    State,
    Unavailable,
    WorkerDied,
    WorkerSettings,
)
from tfhost.cells import open_cell
from tfhost.cells.process import Groups, ProcessCell
from tfhost.examples import SAMPLE_X, expected_y
from tfhost.specs import LoadOptions

from .conftest import ArtifactMap
from .support import Events, gone, wait_until, worker_pid, workers


@keras.saving.register_keras_serializable(package="tfhost_process_tests")
class Triple(keras.layers.Layer):  # type: ignore[misc]  # Keras has no type hints
    """A custom layer: a worker rebuilds it by importing this module."""

    def call(self, x: Any) -> Any:
        return x * 3.0


BIG_SIDE = 4096  # a 4096 x 4096 float32 weight: 64 MiB
FAST_RESTARTS = WorkerSettings(restart_backoff_s=0.05)


# -- helpers ---------------------------------------------------------------------------


def private_memory(processes: list[psutil.Process]) -> int:
    """USS: the memory only these processes hold, which the system gets back when they
    end (shared library pages, counted in RSS, stay cached whatever happens)."""
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):  # it ended meanwhile
            total += process.memory_full_info().uss
    return total


# -- artifacts -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF2 SavedModel with 64 MiB of weights: y = x @ W with W = 1 / 4096 everywhere."""
    import tensorflow as tf

    class Big(tf.Module):  # type: ignore[misc]  # TensorFlow has no type hints
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(tf.fill([BIG_SIDE, BIG_SIDE], 1.0 / BIG_SIDE), name="w")

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([None, BIG_SIDE], tf.float32)]
        )
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": tf.matmul(x, self.w)}

    module = Big()
    path = tmp_path_factory.mktemp("big") / "big"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


# -- a host shared by the tests that kill nothing --------------------------------------------


@pytest.fixture(scope="module")
def shared(artifacts: ArtifactMap, toolbox: Path) -> Iterator[Host]:
    """Three workers, loaded in parallel: "linear" and "toolbox" alone, and group "pack"
    with three colliding models; plus inline twins for comparisons."""
    host = Host()
    loads: list[tuple[str, Path, dict[str, str]]] = [
        ("linear", artifacts[Format.TF2_SAVED_MODEL, 1.0], {}),
        ("toolbox", toolbox, {}),
        ("tf1-1", artifacts[Format.TF1_SAVED_MODEL, 1.0], {"group": "pack"}),
        ("tf1-2", artifacts[Format.TF1_SAVED_MODEL, 2.0], {"group": "pack"}),
        ("keras-2", artifacts[Format.KERAS, 2.0], {"group": "pack"}),
    ]
    with ThreadPoolExecutor(len(loads)) as pool:
        for info in pool.map(
            lambda load: host.load(load[0], load[1], isolation="process", **load[2]), loads
        ):
            assert info.state is State.AVAILABLE
    host.load("toolbox-inline", toolbox, isolation="inline")
    host.load("tf1-inline", artifacts[Format.TF1_SAVED_MODEL, 1.0], isolation="inline")
    yield host
    host.close()


def test_models_in_workers_answer_like_inline(shared: Host) -> None:
    for name, scale in (("linear", 1.0), ("tf1-1", 1.0), ("tf1-2", 2.0), ("keras-2", 2.0)):
        (info,) = shared.status(name)
        assert info.isolation is Isolation.PROCESS
        y = shared.predict(name, {"x": SAMPLE_X})["y"]
        np.testing.assert_allclose(y, expected_y(SAMPLE_X, scale), rtol=1e-6)
    # Metadata is the same whichever side of the process boundary the model runs on.
    process, inline = shared.metadata("toolbox"), shared.metadata("toolbox-inline")
    assert process["signatures"] == inline["signatures"]
    assert process["format"] == inline["format"] == Format.TF2_SAVED_MODEL.value
    assert process["isolation"] == "process" and inline["isolation"] == "inline"


def test_a_group_packs_its_models_into_one_worker(shared: Host, tmp_path: Path) -> None:
    pack = workers("group:pack")
    assert len(pack) == 1
    assert pack[0].pid not in {worker_pid("linear"), worker_pid("toolbox")}
    # A load that fails in the group's worker leaves the worker serving the others.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    with pytest.raises(FormatError, match="model 'broken'"):
        shared.load("broken", broken, isolation="process", group="pack")
    shared.unload("broken")
    assert [p.pid for p in workers("group:pack")] == [pack[0].pid]
    y = shared.predict("tf1-2", {"x": SAMPLE_X})["y"]
    np.testing.assert_allclose(y, expected_y(SAMPLE_X, 2.0), rtol=1e-6)


def test_large_tensors_travel_through_shared_memory(shared: Host) -> None:
    rng = np.random.default_rng(0)
    results = []
    # Small (in the message), 224x224 (shared memory), then bigger (the region grows).
    for shape in ((1, 2, 2, 3), (1, 224, 224, 3), (4, 224, 224, 3), (1, 224, 224, 3)):
        x = rng.standard_normal(shape, dtype=np.float32)
        results.append((x, shared.predict("toolbox", {"x": x})["y"]))
    # Checked after every call: an output must not be a view of a reused buffer.
    for x, y in results:
        np.testing.assert_array_equal(y, x * 2)
    assert shared.predict("toolbox", {"text": np.array([b"a", "b"])}, signature="echo")[
        "text"
    ].tolist() == [b"a!", b"b!"]


def test_concurrent_predicts_across_workers(shared: Host) -> None:
    rng = np.random.default_rng(1)
    scales = {"linear": 1.0, "tf1-1": 1.0, "tf1-2": 2.0, "keras-2": 2.0}

    def client(seed: int) -> int:
        local = np.random.default_rng(seed)
        for step in range(30):
            name = list(scales)[(seed + step) % len(scales)]
            x = local.standard_normal((seed % 4 + 1, 3)).astype(np.float32)
            y = shared.predict(name, {"x": x})["y"]
            np.testing.assert_allclose(y, expected_y(x, scales[name]), rtol=1e-5, atol=1e-5)
            image = local.standard_normal((1, 128, 128, 3)).astype(np.float32)  # shared memory
            np.testing.assert_array_equal(shared.predict("toolbox", {"x": image})["y"], image * 2)
        return seed

    seeds = [int(s) for s in rng.integers(0, 1000, 8)]
    with ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(client, seeds)) == sorted(seeds)


def test_errors_cross_the_boundary_as_inline_raises_them(shared: Host) -> None:
    missing = {"path": np.array(b"/nonexistent/tfhost-file")}
    with pytest.raises(ModelError) as process:
        shared.predict("toolbox", missing, signature="fail")
    with pytest.raises(ModelError) as inline:
        shared.predict("toolbox-inline", missing, signature="fail")
    assert process.value.type_name == inline.value.type_name == "NotFoundError"
    assert "/nonexistent/tfhost-file" in process.value.message  # the cause, not a preamble
    assert process.value.message == inline.value.message.replace("toolbox-inline", "toolbox")
    # A graph-mode model leaves shapes to TensorFlow, so this InputError is the worker's.
    wrong = {"x": np.ones((2, 4), np.float32)}
    with pytest.raises(InputError) as process_input:
        shared.predict("tf1-1", wrong)
    with pytest.raises(InputError) as inline_input:
        shared.predict("tf1-inline", wrong)
    assert process_input.value.message == inline_input.value.message.replace("tf1-inline", "tf1-1")
    # The worker still serves after both.
    np.testing.assert_array_equal(
        shared.predict("toolbox", {"x": np.ones((1, 1, 1, 3), np.float32)})["y"],
        np.full((1, 1, 1, 3), 2.0, np.float32),
    )


def test_unpicklable_custom_objects_are_refused_before_any_worker_starts(
    shared: Host, artifacts: ArtifactMap
) -> None:
    before = {p.pid for p in workers()}
    with pytest.raises(LoadError, match="picklable"):
        shared.load(
            "lambda",
            artifacts[Format.KERAS, 1.0],
            isolation="process",
            custom_objects={"act": lambda x: x},
        )
    assert {p.pid for p in workers()} == before
    shared.unload("lambda")


def test_custom_objects_cross_by_module_path(shared: Host, tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((3,), name="x"), Triple(name="y")])
    path = tmp_path / "triple.keras"
    model.save(path)
    # The group's worker never imported this module: without the object it cannot load.
    with pytest.raises(LoadError, match="Triple"):
        shared.load("triple", path, isolation="process", group="pack")
    shared.load(
        "triple", path, isolation="process", group="pack", custom_objects={"Triple": Triple}
    )
    np.testing.assert_allclose(shared.predict("triple", {"x": SAMPLE_X})["y"], SAMPLE_X * 3)
    shared.unload("triple")


# -- settings --------------------------------------------------------------------------------


def test_worker_settings_reach_tensorflow_in_the_worker(artifacts: ArtifactMap) -> None:
    settings = WorkerSettings(
        intra_op_threads=2,
        inter_op_threads=3,
        cuda_visible_devices="",
        gpu_memory_limit_mib=2048,
        spin_us=0,  # lanes that sleep at once: the other shared tests poll (the default)
    )
    cell = open_cell(
        Isolation.PROCESS,
        "settings",
        artifacts[Format.TF2_SAVED_MODEL, 1.0],
        None,
        LoadOptions(),
        settings,
        Groups(),
    )
    assert isinstance(cell, ProcessCell)
    try:
        info = cell.worker_info
        assert info.pid == cell.pid != os.getpid()
        assert info.settings == settings
        # Set through TensorFlow before it initialised: it would refuse them after.
        assert (info.intra_op_threads, info.inter_op_threads) == (2, 3)
        assert info.cuda_visible_devices == ""
        assert info.gpus == ()  # no GPU visible, so no memory limit could apply
        assert info.gpu_memory_limit_mib is None
        y = cell.run("serving_default", {"x": SAMPLE_X})["y"]
        np.testing.assert_allclose(y, expected_y(SAMPLE_X, 1.0), rtol=1e-6)
    finally:
        cell.close()
    assert gone(info.pid)
    # Checked when made, not when a worker starts.
    with pytest.raises(InputError, match="exclude each other"):
        WorkerSettings(gpu_memory_growth=True, gpu_memory_limit_mib=512)
    with pytest.raises(InputError, match="spin_us must be a non-negative int"):
        WorkerSettings(spin_us=-1)


# -- crashes, deadlines, restarts ------------------------------------------------------------


def test_sigkill_mid_stream_fails_fast_spares_the_neighbour_and_restarts(
    artifacts: ArtifactMap,
) -> None:
    host = Host(HostSettings(worker=FAST_RESTARTS))
    events = Events(host)
    path = artifacts[Format.TF2_SAVED_MODEL, 1.0]
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda load: host.load(load[0], path, isolation="process", group=load[1]),
                [("victim", None), ("neighbour", None), ("duo-a", "duo"), ("duo-b", "duo")],
            )
        )
    seen = {worker_pid(label) for label in ("victim", "neighbour", "group:duo")}
    stop = threading.Event()
    failures: queue.Queue[tuple[float, BaseException]] = queue.Queue()
    neighbour_errors: list[BaseException] = []
    neighbour_calls = 0

    def stream_victim() -> None:
        while not stop.is_set():
            try:
                host.predict("victim", {"x": SAMPLE_X})
            except WorkerDied as exc:
                failures.put((time.monotonic(), exc))
                return

    def stream_neighbour() -> None:
        nonlocal neighbour_calls
        while not stop.is_set():
            try:
                y = host.predict("neighbour", {"x": SAMPLE_X})["y"]
                np.testing.assert_allclose(y, expected_y(SAMPLE_X, 1.0), rtol=1e-6)
                neighbour_calls += 1
            except BaseException as exc:
                neighbour_errors.append(exc)
                return

    threads = [threading.Thread(target=f) for f in (stream_victim, stream_neighbour)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)  # let both streams run a while before the kill
        victim = worker_pid("victim")
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        died_at, error = failures.get(timeout=5)
        assert died_at - killed_at < 1.0
        assert "'victim'" in str(error) and "SIGKILL" in str(error)
        assert isinstance(error, WorkerDied) and error.exitcode == -signal.SIGKILL
        failed = events.next("victim", State.FAILED)
        assert isinstance(failed.error, WorkerDied) and "SIGKILL" in str(failed.error)
        # Until the restart, the model answers WorkerDied at once, never hangs.
        try:
            host.predict("victim", {"x": SAMPLE_X})
        except WorkerDied as exc:
            assert "'victim'" in str(exc)
        events.next("victim", State.AVAILABLE)
        y = host.predict("victim", {"x": SAMPLE_X})["y"]
        np.testing.assert_allclose(y, expected_y(SAMPLE_X, 1.0), rtol=1e-6)
        restarted = worker_pid("victim")
        assert restarted != victim and gone(victim)
        seen.add(restarted)
        calls_at_kill = neighbour_calls
        wait_until(lambda: neighbour_calls > calls_at_kill + 10, 10, "neighbour keeps serving")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert neighbour_errors == []

    # A group's worker dying fails every model in it; both come back in one new worker.
    duo = worker_pid("group:duo")
    os.kill(duo, signal.SIGKILL)
    for name in ("duo-a", "duo-b"):
        assert "(group 'duo')" in str(events.next(name, State.FAILED).error)
    for name in ("duo-a", "duo-b"):
        events.next(name, State.AVAILABLE)
        np.testing.assert_allclose(
            host.predict(name, {"x": SAMPLE_X})["y"], expected_y(SAMPLE_X, 1.0), rtol=1e-6
        )
    seen.add(worker_pid("group:duo"))
    assert len(seen) == 5

    host.close()  # no worker outlives close
    assert all(gone(pid) for pid in seen)
    assert workers("victim") == workers("neighbour") == workers("group:duo") == []


def test_restarts_are_bounded_and_a_failed_restart_uses_up_a_try(
    artifacts: ArtifactMap, tmp_path: Path
) -> None:
    path = shutil.copytree(artifacts[Format.TF2_SAVED_MODEL, 1.0], tmp_path / "flaky")
    host = Host(HostSettings(worker=WorkerSettings(max_restarts=2, restart_backoff_s=0.05)))
    events = Events(host)
    host.load("flaky", path, isolation="process")
    shutil.rmtree(path)  # from now on every restart fails to load
    os.kill(worker_pid("flaky"), signal.SIGKILL)
    assert isinstance(events.next("flaky", State.FAILED).error, WorkerDied)
    for _ in range(2):
        events.next("flaky", State.LOADING)
        assert isinstance(events.next("flaky", State.FAILED).error, NotFound)
    # Out of tries: no third restart (it would come 0.2 s after the second failure).
    with pytest.raises(queue.Empty):
        events.next("flaky", State.LOADING, timeout=2.0)
    with pytest.raises(Unavailable, match="failed"):
        host.predict("flaky", {"x": SAMPLE_X})
    assert workers("flaky") == []
    host.close()


def test_a_worker_that_served_a_while_gets_a_fresh_count_of_restarts(
    artifacts: ArtifactMap,
) -> None:
    settings = WorkerSettings(max_restarts=1, restart_backoff_s=0.05, restart_window_s=0.5)
    host = Host(HostSettings(worker=settings))
    events = Events(host)
    host.load("steady", artifacts[Format.TF2_SAVED_MODEL, 1.0], isolation="process")
    for _ in range(2):  # with max_restarts=1, the second death restarts only by the window
        time.sleep(0.6)  # serve longer than restart_window_s
        os.kill(worker_pid("steady"), signal.SIGKILL)
        assert isinstance(events.next("steady", State.FAILED).error, WorkerDied)
        events.next("steady", State.LOADING)
        events.next("steady", State.AVAILABLE)
    np.testing.assert_allclose(
        host.predict("steady", {"x": SAMPLE_X})["y"], expected_y(SAMPLE_X, 1.0), rtol=1e-6
    )
    # A death right after a restart is part of a crash loop: out of tries, no restart.
    os.kill(worker_pid("steady"), signal.SIGKILL)
    events.next("steady", State.FAILED)
    with pytest.raises(queue.Empty):
        events.next("steady", State.LOADING, timeout=2.0)
    host.close()


@pytest.fixture(scope="module")
def trouble(toolbox: Path) -> Iterator[tuple[Host, Events]]:
    host = Host(HostSettings(worker=FAST_RESTARTS))
    events = Events(host)
    host.load("trouble", toolbox, isolation="process")
    yield host, events
    host.close()


def test_a_stuck_request_hits_its_deadline_and_the_worker_is_recycled(
    trouble: tuple[Host, Events],
) -> None:
    host, events = trouble
    stuck = worker_pid("trouble")
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"'trouble'.*within 1 s"):
        host.predict("trouble", {"seconds": np.float32(60)}, signature="sleep", timeout=1.0)
    assert time.monotonic() - started < 5.0  # 1 s of deadline, then the kill is recorded
    assert gone(stuck)
    # By the time the caller hears, the host already knows: FAILED, then back.
    failed = events.next("trouble", State.FAILED, timeout=1)
    assert "deadline" in str(failed.error) and "recycled" in str(failed.error)
    events.next("trouble", State.AVAILABLE)
    x = np.ones((1, 1, 1, 3), np.float32)
    np.testing.assert_array_equal(host.predict("trouble", {"x": x})["y"], x * 2)
    # A request inside its deadline is unaffected.
    slept = host.predict("trouble", {"seconds": np.float32(0.01)}, signature="sleep", timeout=30)
    assert int(slept["slept"]) == 0


def test_a_crash_inside_a_model_names_the_signal_and_the_fatal_line(
    trouble: tuple[Host, Events],
) -> None:
    host, events = trouble
    crashed = worker_pid("trouble")
    with pytest.raises(WorkerDied) as caught:
        host.predict("trouble", {"message": np.array(b"bye")}, signature="abort")
    text = str(caught.value)
    assert "'trouble'" in text and "SIGABRT" in text and "toolbox abort" in text
    assert caught.value.exitcode == -signal.SIGABRT
    assert gone(crashed)
    events.next("trouble", State.AVAILABLE)
    x = np.ones((1, 1, 1, 3), np.float32)
    np.testing.assert_array_equal(host.predict("trouble", {"x": x})["y"], x * 2)


# -- memory, parallel start, orphans ---------------------------------------------------------


def test_parallel_starts_and_memory_returns_after_unload(big_model: Path) -> None:
    host = Host()
    me = psutil.Process()
    names = [f"mem-{i}" for i in range(3)]
    alive_at_first_ready: list[int] = []

    def on_event(event: Event) -> None:
        if event.state is State.AVAILABLE and not alive_at_first_ready:
            alive_at_first_ready.append(sum(len(workers(n)) for n in names))

    host.subscribe(on_event)
    before = private_memory([me])
    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(lambda n: host.load(n, big_model, isolation="process"), names))
    # All three workers were up before the first model was ready: they start in parallel.
    assert alive_at_first_ready == [len(names)], alive_at_first_ready
    x = np.ones((1, BIG_SIDE), np.float32)
    for name in names:
        np.testing.assert_allclose(host.predict(name, {"x": x})["y"], np.ones_like(x), rtol=1e-4)
    loaded = private_memory([me, *(w for n in names for w in workers(n))])
    # Each worker really holds its weights.
    assert loaded > before + len(names) * 64 * 2**20, (before, loaded)
    pids = [worker_pid(n) for n in names]
    for name in names:
        host.unload(name)
    after = private_memory([me, *(w for n in names for w in workers(n))])
    assert all(gone(pid) for pid in pids)
    assert after <= before * 1.05, (before, loaded, after)
    host.close()


_ORPHAN_SCRIPT = """
import json, sys, threading, time
from tfhost import Host
host = Host()
loads = [("solo", {}), ("packed", {"group": "g"})]
threads = [threading.Thread(target=host.load, args=(name, sys.argv[1]),
                            kwargs={"isolation": "process", **extra}) for name, extra in loads]
for t in threads: t.start()
for t in threads: t.join()
import psutil
pids = [p.pid for p in psutil.Process().children() if "tfhost.cells.worker" in p.cmdline()]
print(json.dumps({"pids": pids, "models": len(host.models()),
                  "tensorflow": "tensorflow" in sys.modules}), flush=True)
time.sleep(600)
"""


def test_workers_exit_when_their_host_process_is_killed(artifacts: ArtifactMap) -> None:
    path = artifacts[Format.TF2_SAVED_MODEL, 1.0]
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert parent.stdout is not None
        report = json.loads(parent.stdout.readline())
        assert report["models"] == 2 and len(report["pids"]) == 2
        assert report["tensorflow"] is False  # the host side never imports TensorFlow
        assert not any(gone(pid) for pid in report["pids"])
    finally:
        parent.kill()
        parent.wait()
    wait_until(lambda: all(gone(pid) for pid in report["pids"]), 5.0, "orphaned workers exit")


def test_an_unknown_model_and_signature_are_refused_host_side(shared: Host) -> None:
    with pytest.raises(NotFound, match="signature 'nope'"):
        shared.predict("linear", {"x": SAMPLE_X}, signature="nope")
