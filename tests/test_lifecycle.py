"""The Host's lifecycle under concurrency and faults, and the seams the next layers use.

Each test here pins one case where the lifecycle used to break (a raising listener, an
unload racing close, a death before publication, a drain that never ends, a deadline in a
shared worker), or one seam (check then run, deadlines, snapshots, routes, the prepare
hook, async callers, per-model worker settings).
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tfhost import (
    Checked,
    Code,
    DeadlineExceeded,
    Event,
    Format,
    FormatError,
    Handle,
    Host,
    HostSettings,
    InputError,
    InternalError,
    ModelError,
    State,
    TfhostError,
    Unavailable,
    WorkerDied,
    WorkerSettings,
)
from tfhost.cells.process import ProcessCell
from tfhost.examples import SAMPLE_X, expected_y
from tfhost.servable import Guarded
from tfhost.specs import Format as SpecFormat
from tfhost.specs import SignatureSpec

from .conftest import ArtifactMap
from .support import Events, gone, wait_until, workers

FAST_RESTARTS = WorkerSettings(restart_backoff_s=0.05)
TF2 = Format.TF2_SAVED_MODEL
TF1 = Format.TF1_SAVED_MODEL


def pid_of(host: Host, name: str) -> int:
    with host.acquire(name) as handle:
        cell = handle._cell
    assert isinstance(cell, ProcessCell)
    return cell.pid


# -- listeners cannot break a transition ------------------------------------------------------


@pytest.mark.parametrize("on", [State.LOADING, State.AVAILABLE, State.UNLOADING, State.END])
def test_a_raising_listener_is_logged_and_the_transition_goes_on(
    artifacts: ArtifactMap, on: State, caplog: pytest.LogCaptureFixture
) -> None:
    host = Host()
    seen: list[State] = []

    def bad(event: Event) -> None:
        if event.state is on:
            raise RuntimeError(f"listener broke on {on.name}")

    host.subscribe(bad)
    host.subscribe(lambda event: seen.append(event.state))
    info = host.load("m", artifacts[TF2, 1.0], isolation="process")
    assert info.state is State.AVAILABLE
    pid = pid_of(host, "m")
    np.testing.assert_allclose(
        host.predict("m", {"x": SAMPLE_X})["y"], expected_y(SAMPLE_X, 1.0), rtol=1e-6
    )
    done = threading.Event()
    threading.Thread(target=lambda: (host.close(), done.set()), daemon=True).start()
    assert done.wait(60), "close() hung after a listener raised"
    assert host.models() == []
    assert gone(pid), "the worker outlived its unload"
    # The other listener heard every transition, in order.
    assert seen == [State.LOADING, State.AVAILABLE, State.UNLOADING, State.END]
    assert f"listener broke on {on.name}" in caplog.text


def test_a_raising_listener_does_not_stop_a_restart(artifacts: ArtifactMap) -> None:
    with Host(HostSettings(worker=FAST_RESTARTS)) as host:
        events = Events(host)

        def bad(event: Event) -> None:
            if event.state is State.FAILED:
                raise RuntimeError("listener broke on FAILED")

        host.subscribe(bad)
        host.load("m", artifacts[TF2, 1.0], isolation="process")
        pid = pid_of(host, "m")
        os.kill(pid, signal.SIGKILL)
        events.next("m", State.FAILED)
        events.next("m", State.AVAILABLE)
        assert pid_of(host, "m") != pid
        np.testing.assert_allclose(
            host.predict("m", {"x": SAMPLE_X})["y"], expected_y(SAMPLE_X, 1.0), rtol=1e-6
        )


def test_a_listener_may_call_back_into_the_host(artifacts: ArtifactMap) -> None:
    """A listener that unloads another model, which waits on a load in another thread,
    must not deadlock with that thread's delivery of its own events."""
    with Host() as host:
        host.load("a", artifacts[TF2, 1.0])
        unloaded = threading.Event()

        def listener(event: Event) -> None:
            if event.id.model == "b" and event.state is State.LOADING:
                host.unload("a")
                unloaded.set()

        host.subscribe(listener)
        loader = threading.Thread(target=host.load, args=("b", artifacts[TF1, 1.0]))
        loader.start()
        loader.join(60)
        assert not loader.is_alive() and unloaded.wait(60)
        assert [(m.name, m.state) for m in host.models()] == [("b", State.AVAILABLE)]


# -- one owner per transition ------------------------------------------------------------


@pytest.mark.parametrize("delay_ms", [0, 2, 5, 10])
def test_unload_and_close_at_once(artifacts: ArtifactMap, delay_ms: int) -> None:
    host = Host()
    host.load("m", artifacts[TF2, 1.0], isolation="process")
    pid = pid_of(host, "m")
    events = Events(host)
    errors: list[BaseException] = []

    def unload() -> None:
        try:
            host.unload("m")
        except Exception as exc:  # NotFound is fine: close got there first
            if not isinstance(exc, TfhostError) or exc.code is not Code.NOT_FOUND:
                errors.append(exc)

    thread = threading.Thread(target=unload)
    thread.start()
    time.sleep(delay_ms / 1000)
    host.close()
    thread.join(60)
    assert not errors, errors
    assert gone(pid)
    assert host.models() == []
    events.next("m", State.UNLOADING, timeout=5)
    events.next("m", State.END, timeout=5)
    with pytest.raises(queue.Empty):  # END exactly once
        events.next("m", State.END, timeout=0.2)


# -- a worker that dies before its version is published -------------------------------------


def test_a_worker_that_dies_before_publication_is_restarted(artifacts: ArtifactMap) -> None:
    killed: list[int] = []

    def kill_once(handle: Handle) -> None:
        cell = handle._cell
        assert isinstance(cell, ProcessCell)
        if not killed:
            killed.append(cell.pid)
            os.kill(cell.pid, signal.SIGKILL)
            wait_until(lambda: gone(cell.pid), 10, "the worker to die")

    with Host(HostSettings(worker=FAST_RESTARTS)) as host:
        events = Events(host)
        thread = threading.Thread(
            target=host.load,
            args=("m", artifacts[TF2, 1.0]),
            kwargs={"isolation": "process", "prepare": kill_once},
            daemon=True,
        )
        thread.start()
        failed = events.next("m", State.FAILED)
        assert isinstance(failed.error, WorkerDied) and "SIGKILL" in str(failed.error)
        events.next("m", State.AVAILABLE)
        thread.join(60)
        live = pid_of(host, "m")
        assert live != killed[0] and not gone(live)
        np.testing.assert_allclose(
            host.predict("m", {"x": SAMPLE_X})["y"], expected_y(SAMPLE_X, 1.0), rtol=1e-6
        )


# -- bounded drains ----------------------------------------------------------------------


def test_close_with_a_handle_never_released(artifacts: ArtifactMap) -> None:
    host = Host(HostSettings(drain_timeout_s=0.5))
    host.load("p", artifacts[TF1, 1.0], isolation="process")
    host.load("i", artifacts[TF1, 2.0])
    pid = pid_of(host, "p")
    held = [host.acquire("p"), host.acquire("i")]
    started = time.monotonic()
    host.close()
    assert time.monotonic() - started < 20
    assert host.models() == [] and gone(pid)
    for handle in held:
        with pytest.raises(Unavailable, match="was unloaded"):
            handle.predict({"x": SAMPLE_X})
        handle.release()


def test_a_forced_unload_lets_the_call_in_flight_finish(toolbox: Path) -> None:
    """Inline: the servable is closed by the last call to return, not under it."""
    with Host() as host:
        host.load("t", toolbox)
        handle = host.acquire("t")
        result: list[object] = []
        call = threading.Thread(
            target=lambda: result.append(
                handle.predict({"seconds": np.float32(1.0)}, signature="sleep")
            )
        )
        call.start()
        time.sleep(0.2)
        host.unload("t", timeout=0.1)
        assert host.models() == []
        call.join(30)
        assert result and int(result[0]["slept"]) == 0  # type: ignore[index]
        with pytest.raises(Unavailable):
            handle.predict({"seconds": np.float32(0.0)}, signature="sleep")
        handle.release()


def test_an_unload_that_times_out_on_a_load_drops_it_when_it_ends(
    artifacts: ArtifactMap,
) -> None:
    with Host() as host:
        events = Events(host)
        outcome: list[BaseException] = []

        def load() -> None:
            try:
                host.load("m", artifacts[TF2, 1.0], isolation="process")
            except BaseException as exc:
                outcome.append(exc)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        events.next("m", State.LOADING)
        with pytest.raises(DeadlineExceeded, match="still loading"):
            host.unload("m", timeout=0.05)
        events.next("m", State.UNLOADING)
        events.next("m", State.END)
        loader.join(60)
        assert len(outcome) == 1 and isinstance(outcome[0], Unavailable)
        assert "unloaded while it loaded" in str(outcome[0])
        assert host.models() == [] and workers() == []
        with pytest.raises(queue.Empty):  # it never served
            events.next("m", State.AVAILABLE, timeout=0.2)


# -- one error for one failure ------------------------------------------------------------


def test_the_same_failures_read_the_same_inline_and_in_a_process(
    artifacts: ArtifactMap, toolbox: Path, tmp_path: Path
) -> None:
    """Runtime failures (TensorFlow refusing inputs, a model raising) and load failures
    give the same class, code and message whichever the isolation."""
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "saved_model.pb").write_bytes(b"not a protobuf")
    cases = [
        ("toolbox", toolbox, "fail", {"path": np.array(b"/nonexistent/tfhost-file")}),
        ("tf1", artifacts[TF1, 1.0], "serving_default", {"x": np.ones((2, 4), np.float32)}),
        ("toolbox", toolbox, "echo", {"text": np.array([b"a"])}),
    ]
    with Host() as host:
        for name, path, *_ in cases[:2]:
            host.load(f"{name}-inline", path, isolation="inline")
            host.load(f"{name}-process", path, isolation="process")
        for name, _, signature, inputs in cases[:2]:
            seen = []
            for where in ("inline", "process"):
                with pytest.raises(TfhostError) as caught:
                    host.predict(f"{name}-{where}", inputs, signature=signature)
                error = caught.value
                seen.append((type(error), error.code, error.message.replace(where, "*")))
            assert seen[0] == seen[1], seen
        loads = []
        for where in ("inline", "process"):
            with pytest.raises(FormatError) as caught:
                host.load(f"corrupt-{where}", corrupt, isolation=where)
            loads.append((caught.value.code, caught.value.message.replace(where, "*")))
        assert loads[0] == loads[1], loads


class _Raises:
    """A servable whose run raises what it is given (a model's Python code failing)."""

    format = SpecFormat.TF2_SAVED_MODEL
    static_shapes = True

    def __init__(self, error: BaseException) -> None:
        self.signatures: dict[str, SignatureSpec] = {}
        self.error = error
        self.closed = 0

    def run(self, signature: str, inputs: object) -> dict[str, np.ndarray]:
        raise self.error

    def close(self) -> None:
        self.closed += 1


def test_guarded_types_every_failure_and_closes_once() -> None:
    """The wrapper every cell runs its servable through (inline, and in the worker)."""
    raw = _Raises(KeyError("weights"))
    guarded = Guarded("m", raw)
    with pytest.raises(ModelError) as caught:
        guarded.run("serving_default", {})
    assert caught.value.type_name == "KeyError"
    assert (
        caught.value.message == "model 'm' signature 'serving_default' raised KeyError: 'weights'"
    )
    typed = Guarded("m", _Raises(InputError("model 'm': bad")))
    with pytest.raises(InputError, match="bad"):
        typed.run("serving_default", {})
    guarded.close()
    guarded.close()
    assert raw.closed == 1
    with pytest.raises(Unavailable, match="'m' was unloaded"):
        guarded.run("serving_default", {})


# -- worker settings per model ------------------------------------------------------------


def test_worker_settings_per_model_and_per_group(artifacts: ArtifactMap) -> None:
    with Host() as host:
        host.load(
            "one",
            artifacts[TF2, 1.0],
            isolation="process",
            worker=WorkerSettings(intra_op_threads=1, cuda_visible_devices=""),
        )
        host.load(
            "two",
            artifacts[TF2, 2.0],
            isolation="process",
            worker=WorkerSettings(intra_op_threads=2, gpu_memory_limit_mib=1024),
        )
        host.load(
            "g1",
            artifacts[TF1, 1.0],
            isolation="process",
            group="g",
            worker=WorkerSettings(intra_op_threads=2),
        )
        host.load(
            "g2",
            artifacts[TF1, 2.0],
            isolation="process",
            group="g",
            worker=WorkerSettings(intra_op_threads=2),
        )
        infos = {}
        for name in ("one", "two", "g1", "g2"):
            with host.acquire(name) as handle:
                assert isinstance(handle._cell, ProcessCell)
                infos[name] = handle._cell.worker_info
        assert infos["one"].intra_op_threads == 1 and infos["one"].cuda_visible_devices == ""
        assert infos["two"].intra_op_threads == 2
        assert infos["two"].settings.gpu_memory_limit_mib == 1024
        assert infos["g1"].pid == infos["g2"].pid != infos["one"].pid
        # One worker has one set of thread pools: a group cannot mix settings.
        with pytest.raises(InputError, match="group 'g' runs in one worker process"):
            host.load(
                "g3",
                artifacts[TF2, 1.0],
                isolation="process",
                group="g",
                worker=WorkerSettings(intra_op_threads=1),
            )
        for name, scale in (("one", 1.0), ("two", 2.0)):
            np.testing.assert_allclose(
                host.predict(name, {"x": SAMPLE_X})["y"], expected_y(SAMPLE_X, scale), rtol=1e-6
            )
    with pytest.raises(InputError, match="worker= takes a WorkerSettings"):
        Host().load("x", artifacts[TF2, 1.0], worker={"intra_op_threads": 1})  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"HostSettings\.drain_timeout_s"):
        HostSettings(drain_timeout_s=0)
    with pytest.raises(InputError, match=r"WorkerSettings\.max_restarts"):
        WorkerSettings(max_restarts=-1)


# -- check, then run; deadlines ------------------------------------------------------------


@pytest.fixture(scope="module")
def seams(artifacts: ArtifactMap, toolbox: Path) -> Iterator[Host]:
    host = Host()
    host.load("tf2", artifacts[TF2, 1.0])
    host.load("toolbox", toolbox, isolation="process")
    yield host
    host.close()


def test_check_then_run(seams: Host) -> None:
    with seams.acquire("tf2") as handle:
        checked = handle.check({"x": SAMPLE_X.astype(np.float64)})
        assert isinstance(checked, Checked) and checked.signature == "serving_default"
        assert checked.inputs["x"].dtype == np.float32  # converted once, at the check
        np.testing.assert_allclose(handle.run(checked)["y"], expected_y(SAMPLE_X, 1.0), rtol=1e-6)
        # A bad request fails at its check, before anything runs; the good one still does.
        with pytest.raises(InputError, match="expects shape"):
            handle.check({"x": np.ones((1, 7), np.float32)})
        np.testing.assert_allclose(handle.run(checked)["y"], expected_y(SAMPLE_X, 1.0), rtol=1e-6)


def test_a_deadline_that_passed_in_a_queue_is_not_run(seams: Host) -> None:
    with seams.acquire("toolbox") as handle:
        checked = handle.check({"seconds": np.float32(0.0)}, "sleep")
        with pytest.raises(DeadlineExceeded, match="deadline passed before it could run"):
            handle.run(checked, deadline=time.monotonic() - 0.001)
        # The earlier of deadline and timeout counts.
        with pytest.raises(DeadlineExceeded, match="deadline passed"):
            handle.run(checked, timeout=60, deadline=time.monotonic() - 1)
        assert int(handle.run(checked, deadline=time.monotonic() + 30)["slept"]) == 0


def test_an_absolute_deadline_is_kept_by_a_worker(seams: Host) -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="recycled"):
        seams.predict(
            "toolbox", {"seconds": np.float32(30)}, signature="sleep", deadline=started + 0.5
        )
    assert time.monotonic() - started < 10
    seams.wait_for("toolbox", 1, [State.AVAILABLE], timeout=60)


def test_a_deadline_in_a_shared_worker_restarts_its_neighbours_at_once(toolbox: Path) -> None:
    """A call past its deadline recycles its group's worker: the neighbours' calls in
    flight fail naming the model that ran late, and they are back at once, no try used."""
    slow_backoff = WorkerSettings(restart_backoff_s=30.0, max_restarts=1)
    with Host(HostSettings(worker=slow_backoff)) as host:
        host.load("late", toolbox, isolation="process", group="g")
        host.load("neighbour", toolbox, isolation="process", group="g")
        events = Events(host)
        outcome: list[BaseException] = []

        def neighbour_call() -> None:
            try:
                host.predict("neighbour", {"seconds": np.float32(20)}, signature="sleep")
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=neighbour_call)
        thread.start()
        time.sleep(0.3)
        with pytest.raises(DeadlineExceeded):
            host.predict("late", {"seconds": np.float32(20)}, signature="sleep", timeout=0.5)
        thread.join(30)
        assert len(outcome) == 1 and isinstance(outcome[0], WorkerDied)
        assert outcome[0].recycled
        assert "a request to model 'late'" in str(outcome[0])
        assert "ran past its deadline" in str(outcome[0])
        started = time.monotonic()
        for name in ("late", "neighbour"):
            events.next(name, State.AVAILABLE, timeout=60)
        # Not after the 30 s backoff: at once. And no try used, though only one is allowed.
        assert time.monotonic() - started < 25
        assert [m.restarts for m in host.models()] == [0, 0]
        assert (
            int(host.predict("neighbour", {"seconds": np.float32(0)}, signature="sleep")["slept"])
            == 0
        )


# -- what a policy reads ---------------------------------------------------------------------


def test_a_snapshot_has_handles_last_use_memory_and_load_time(
    artifacts: ArtifactMap,
) -> None:
    with Host() as host:
        host.load("i", artifacts[TF2, 1.0])
        host.load("p", artifacts[TF2, 2.0], isolation="process")
        fresh = {m.name: m for m in host.models()}
        assert fresh["i"].last_used is None and fresh["i"].handles == 0
        for info in fresh.values():
            assert info.load_seconds is not None and info.load_seconds > 0
            assert info.memory_bytes is not None
        # A worker of its own holds at least TensorFlow itself.
        assert fresh["p"].memory_bytes is not None and fresh["p"].memory_bytes > 50 << 20
        before = time.monotonic()
        with host.acquire("i"), host.acquire("i"):
            (held,) = host.status("i")
            assert held.handles == 2
            assert held.last_used is not None and held.last_used >= before
        (released,) = host.status("i")
        assert released.handles == 0
        as_dict = released.to_dict()
        assert {"handles", "last_used", "memory_bytes", "load_seconds"} <= set(as_dict)


# -- who decides which version serves ----------------------------------------------------------


def test_routes_choose_the_version_a_name_serves(tmp_path: Path, artifacts: ArtifactMap) -> None:
    import shutil

    versions = tmp_path / "m"
    for number, scale in ((1, 1.0), (2, 2.0)):
        shutil.copytree(artifacts[TF2, scale], versions / str(number))
    with Host() as host:
        host.load("m", versions, version=1)
        host.load("m", versions, version=2)

        def served() -> float:
            y = host.predict("m", {"x": SAMPLE_X})["y"]
            return float(y[0, 0] / expected_y(SAMPLE_X, 1.0)[0, 0])

        assert served() == pytest.approx(2.0)  # default: the highest
        host.route("m", 1)
        assert served() == pytest.approx(1.0)
        host.unload("m", 1)
        with pytest.raises(Unavailable, match="route to version 1, which is not loaded"):
            host.predict("m", {"x": SAMPLE_X})
        host.route("m", None)
        assert served() == pytest.approx(2.0)
        with pytest.raises(InputError):
            host.route("m", "2")  # type: ignore[arg-type]


def test_prepare_runs_before_the_version_is_published(
    artifacts: ArtifactMap, toolbox: Path
) -> None:
    with Host() as host:
        seen: list[tuple[str, State]] = []

        def warm(handle: Handle) -> None:
            # Not yet published: requests by name cannot reach it, the hook's handle can.
            with pytest.raises(Unavailable):
                host.predict("m", {"x": SAMPLE_X})
            y = handle.predict({"x": SAMPLE_X})["y"]
            seen.append(("warmed", host.status("m")[0].state))
            np.testing.assert_allclose(y, expected_y(SAMPLE_X, 1.0), rtol=1e-6)

        host.subscribe(lambda e: seen.append(("event", e.state)))
        host.load("m", artifacts[TF2, 1.0], prepare=warm)
        assert seen == [
            ("event", State.LOADING),
            ("warmed", State.LOADING),
            ("event", State.AVAILABLE),
        ]

        def refuse(handle: Handle) -> None:
            raise ValueError("warm-up answers are wrong")

        with pytest.raises(InternalError, match="prepare hook raised ValueError: warm-up"):
            host.load("bad", artifacts[TF2, 2.0], isolation="process", prepare=refuse)
        (bad,) = host.status("bad")
        assert bad.state is State.FAILED and "warm-up answers are wrong" in (bad.error or "")
        assert workers("bad") == []


# -- async callers ------------------------------------------------------------------------


def test_async_predict_runs_on_the_serving_threads(artifacts: ArtifactMap) -> None:
    with Host(HostSettings(serving_threads=2)) as host:
        host.load("m", artifacts[TF1, 2.0])

        async def main() -> list[dict[str, np.ndarray]]:
            calls = [host.predict_async("m", {"x": SAMPLE_X}) for _ in range(16)]
            return await asyncio.gather(*calls)

        for out in asyncio.run(main()):
            np.testing.assert_allclose(out["y"], expected_y(SAMPLE_X, 2.0), rtol=1e-6)
        serving = [t for t in threading.enumerate() if t.name.startswith("tfhost-serving")]
        assert 1 <= len(serving) <= 2  # bounded by HostSettings.serving_threads

        async def expired() -> None:
            await host.predict_async("m", {"x": SAMPLE_X}, deadline=time.monotonic() - 1)

        with pytest.raises(DeadlineExceeded):
            asyncio.run(expired())


# -- TensorFlow imported once ---------------------------------------------------------------


def test_concurrent_first_loads_in_a_fresh_process(artifacts: ArtifactMap) -> None:
    """The first loads of a fresh process, all at once, in every format: none may see a
    half-imported TensorFlow."""
    paths = {fmt.value: str(artifacts[fmt, 1.0]) for fmt in Format}
    code = f"""
import sys, threading
from tfhost import Host
paths = {paths!r}
host = Host()
barrier = threading.Barrier(len(paths))
errors = []
def load(name, path):
    barrier.wait()
    try:
        host.load(name, path)
    except Exception as exc:
        errors.append(f"{{name}}: {{type(exc).__name__}}: {{exc}}")
threads = [threading.Thread(target=load, args=item) for item in paths.items()]
[t.start() for t in threads]
[t.join() for t in threads]
assert "tensorflow" in sys.modules
print("ERRORS", errors)
host.close()
sys.exit(1 if errors else 0)
"""
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]


# -- loads at a lower CPU priority ------------------------------------------------------------


def _niceness(pid: int) -> set[int]:
    return {os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


@pytest.mark.parametrize("load_nice", [10, 0])
def test_a_worker_loads_at_a_lower_priority_and_serves_at_its_own(
    artifacts: ArtifactMap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load_nice: int
) -> None:
    probe = tmp_path / "nice"
    monkeypatch.setenv("TFHOST_NICE_PROBE", str(probe))
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    base = os.getpriority(os.PRIO_PROCESS, 0)
    with Host() as host:
        host.load(
            "m",
            artifacts[TF2, 1.0],
            isolation="process",
            preload=["nice_probe"],
            worker=WorkerSettings(load_nice=load_nice),
        )
        assert int(probe.read_text()) == base + load_nice  # the load ran at that priority
        assert _niceness(pid_of(host, "m")) == {base}  # every thread serves at the host's
        np.testing.assert_allclose(
            host.predict("m", {"x": SAMPLE_X})["y"], expected_y(SAMPLE_X, 1.0), rtol=1e-6
        )
    with pytest.raises(InputError, match="load_nice must be 0 to 19"):
        WorkerSettings(load_nice=20)
