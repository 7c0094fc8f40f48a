"""The lifecycle under load: eight threads doing everything at once, workers killed at random.

Eight threads, for ``TFHOST_STRESS_SECONDS`` (default 20, at most 60), load, unload,
predict and acquire/release six colliding models (three inline, three process-isolated)
while a ninth SIGKILLs workers at random; then ``close()``. Asserted: no InternalError and
no error outside the expected kinds, no call past its bound, every answer the model's own,
every transition legal and delivered in order, and no worker left once ``close`` returns.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter, defaultdict

import numpy as np
import pytest

from tfhost import (
    AlreadyExists,
    DeadlineExceeded,
    Event,
    Format,
    Host,
    HostSettings,
    InternalError,
    NotFound,
    State,
    Unavailable,
    WorkerSettings,
)
from tfhost.examples import SAMPLE_X, expected_y
from tfhost.state import VersionId, check_transition

from .conftest import ArtifactMap
from .support import workers

SECONDS = min(float(os.environ.get("TFHOST_STRESS_SECONDS", "20")), 60.0)
THREADS = 8
CALL_BOUND_S = 60.0  # no call may take longer (a process load on a busy 2-core machine: ~10 s)
MODELS = {
    "tf2-inline": (Format.TF2_SAVED_MODEL, 1.0, "inline"),
    "tf1-inline": (Format.TF1_SAVED_MODEL, 2.0, "inline"),
    "keras-inline": (Format.KERAS, 1.0, "inline"),
    "tf1-process": (Format.TF1_SAVED_MODEL, 1.0, "process"),
    "tf2-process": (Format.TF2_SAVED_MODEL, 2.0, "process"),
    "frozen-process": (Format.FROZEN_GRAPH, 2.0, "process"),
}
# What a caller may see while others unload, reload and kill: never InternalError.
EXPECTED = (AlreadyExists, NotFound, Unavailable, DeadlineExceeded)


class Ledger:
    """What every thread saw, and what it is doing now (for a call that hangs)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.wrong: list[str] = []
        self.slowest: dict[str, float] = defaultdict(float)
        self.doing: dict[int, tuple[str, float]] = {}

    def begin(self, what: str) -> None:
        with self.lock:
            self.doing[threading.get_ident()] = (what, time.monotonic())

    def end(self, what: str, outcome: str) -> None:
        with self.lock:
            _, started = self.doing.pop(threading.get_ident())
            self.slowest[what] = max(self.slowest[what], time.monotonic() - started)
            self.counts[f"{what}:{outcome}"] += 1


def _check(ledger: Ledger, name: str, outputs: dict[str, np.ndarray]) -> None:
    _, scale, _ = MODELS[name]
    (y,) = outputs.values()
    if not np.allclose(y, expected_y(SAMPLE_X, scale), rtol=1e-6):
        with ledger.lock:
            ledger.wrong.append(f"{name}: {y.tolist()}")


def _act(host: Host, artifacts: ArtifactMap, ledger: Ledger, rng: random.Random) -> None:
    name = rng.choice(list(MODELS))
    fmt, scale, isolation = MODELS[name]
    action = rng.choices(["predict", "acquire", "load", "unload"], weights=[8, 4, 2, 1])[0]
    ledger.begin(action)
    outcome = "ok"
    try:
        if action == "predict":
            _check(ledger, name, host.predict(name, {"x": SAMPLE_X}, timeout=30))
        elif action == "acquire":
            with host.acquire(name) as handle:
                for _ in range(rng.randint(1, 3)):
                    _check(ledger, name, handle.predict({"x": SAMPLE_X}, timeout=30))
        elif action == "load":
            host.load(name, artifacts[fmt, scale], isolation=isolation)
        else:
            host.unload(name, timeout=rng.choice([None, 0.05, 1.0]))
    except EXPECTED as exc:
        outcome = type(exc).__name__
    except BaseException as exc:
        outcome = "unexpected"
        with ledger.lock:
            ledger.unexpected.append(f"{action} {name}: {type(exc).__name__}: {exc}")
    ledger.end(action, outcome)


def _killer(stop: threading.Event, ledger: Ledger, rng: random.Random) -> None:
    while not stop.wait(rng.uniform(0.5, 2.0)):
        live = workers()
        if live:
            victim = rng.choice(live)
            try:
                os.kill(victim.pid, signal.SIGKILL)
                with ledger.lock:
                    ledger.counts["killed"] += 1
            except ProcessLookupError:
                pass


def _check_events(events: list[Event]) -> list[str]:
    """Every version's events form legal chains, each move from where the last one left it,
    and delivery order is transition order."""
    problems = []
    last: dict[VersionId, State] = {}
    previous_time = float("-inf")
    for event in events:
        if event.time < previous_time:
            problems.append(f"delivered out of order: {event}")
        previous_time = event.time
        where = last.get(event.id, State.START)
        if where is State.END:  # a new record for the same version starts over
            where = State.START
        if event.previous is not where:
            problems.append(
                f"{event.id}: {event.previous.name} -> {event.state.name} after {where.name}"
            )
        try:
            check_transition(event.previous, event.state)
        except InternalError as exc:
            problems.append(str(exc))
        last[event.id] = event.state
    return problems


@pytest.mark.timeout(600)
def test_eight_threads_load_unload_predict_and_kill(artifacts: ArtifactMap) -> None:
    settings = HostSettings(
        drain_timeout_s=10.0, worker=WorkerSettings(restart_backoff_s=0.05, max_restarts=5)
    )
    host = Host(settings)
    events: list[Event] = []
    host.subscribe(events.append)  # list.append is atomic; one thread delivers at a time
    ledger = Ledger()
    stop = threading.Event()
    seed = int(os.environ.get("TFHOST_STRESS_SEED", str(time.time_ns() % 10**6)))
    print(f"stress seed {seed}, {SECONDS:g} s")

    def run(index: int) -> None:
        rng = random.Random(seed * 100 + index)
        while not stop.is_set():
            _act(host, artifacts, ledger, rng)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(THREADS)]
    killer = threading.Thread(target=_killer, args=(stop, ledger, random.Random(seed)), daemon=True)
    for thread in [*threads, killer]:
        thread.start()
    time.sleep(SECONDS)
    stop.set()
    for thread in [*threads, killer]:
        thread.join(CALL_BOUND_S)
    hung = {what: time.monotonic() - since for what, since in ledger.doing.values()}
    assert not hung, f"calls still running {CALL_BOUND_S:g} s after the stop: {hung}"
    started = time.monotonic()
    host.close()
    closing = time.monotonic() - started
    assert workers() == [], "a worker process outlived close()"
    assert host.models() == []
    print(dict(sorted(ledger.counts.items())), {k: round(v, 2) for k, v in ledger.slowest.items()})
    assert not ledger.unexpected, ledger.unexpected[:10]
    assert not ledger.wrong, ledger.wrong[:10]
    assert max(ledger.slowest.values()) < CALL_BOUND_S, ledger.slowest
    assert closing < CALL_BOUND_S
    problems = _check_events(events)
    assert not problems, problems[:10]
    # The run did what it claims: answers served, loads made, workers killed.
    assert ledger.counts["predict:ok"] > 0 and ledger.counts["load:ok"] > 0
    assert ledger.counts["killed"] > 0 and any(e.state is State.FAILED for e in events)
    assert any(e.state is State.END for e in events)
