"""What the fleet costs and gives, each figure against a baseline measured in the same run.

    python bench/fleet.py [--models 20] [--big-mib 200] [--only start|p99|memory]

Prints (issue "fleet"):
1. the time until N small process-isolated models are AVAILABLE: one after another
   (``Host.load`` in a loop) vs the fleet's parallel loads, and the floor (the CPU time
   one start costs, times N, over the cores);
2. the p99 latency of a steady model's requests while a ~200 MiB model loads, and while
   it is hot-swapped to a new version, against its steady p99 (goal <= 1.5x);
3. the host's memory (its process tree's PSS) after the fleet evicts process-isolated
   models, against before they loaded (goal: within 5 %).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from tfhost import Format, Host
from tfhost.examples import SAMPLE_X, write_example
from tfhost.fleet import Fleet, FleetSettings

GOAL_P99 = 1.5
GOAL_MEMORY = 0.05


def write_big(path: Path, mib: int) -> Path:
    """A TF2 SavedModel with ``mib`` MiB of weights: y = x @ W."""
    import tensorflow as tf

    side = int((mib * 2**20 / 4) ** 0.5)

    class Big(tf.Module):  # type: ignore[misc]  # TensorFlow has no type hints
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(tf.fill([side, side], 1.0 / side), name="w")

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([None, side], tf.float32)]
        )
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": tf.matmul(x, self.w)}

    module = Big()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def place(source: Path, repo: Path, model: str, version: int) -> None:
    """Copy a version in aside, then rename it into place, as a deploy does."""
    aside = repo / model / f".incoming-{version}"
    shutil.copytree(source, aside)
    aside.rename(repo / model / str(version))


def tree_pss() -> int:
    """This process and its workers: the sum of their PSS. (USS is not additive here: the
    host's TensorFlow libraries count as its own until a worker maps them too.)"""
    me = psutil.Process()
    total = 0
    for process in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # it ended meanwhile
            total += process.memory_full_info().pss
    return total


def start_times(root: Path, count: int) -> None:
    small = write_example(root / "small", Format.TF2_SAVED_MODEL, 1.0)
    started = time.monotonic()
    with Host() as host:
        one = time.monotonic()
        host.load("s0", small, isolation="process")
        first_s = time.monotonic() - one
        cpu_one = sum(
            c.cpu_times().user + c.cpu_times().system for c in psutil.Process().children()
        )
        for i in range(1, count):
            host.load(f"s{i}", small, isolation="process")
    sequential = time.monotonic() - started
    repo = root / "repo-start"
    for i in range(count):
        (repo / f"s{i}").mkdir(parents=True)
        shutil.copytree(small, repo / f"s{i}" / "1")
    (repo / "tfhost.toml").write_text('[host]\nisolation = "process"\n')
    started = time.monotonic()
    with Fleet(repo, settings=FleetSettings(poll_s=0.2)).start(timeout=600):
        fleet_s = time.monotonic() - started
    cores = len(os.sched_getaffinity(0))
    floor = cpu_one * count / cores
    print(f"1. {count} small process-isolated models until AVAILABLE ({cores} cores)")
    print(f"   one after another  {sequential:6.1f} s   (the first alone: {first_s:.1f} s)")
    print(f"   the fleet          {fleet_s:6.1f} s   x{sequential / fleet_s:.2f} faster")
    per = f"{cpu_one:.1f} CPU-s per start x {count} / {cores}"
    print(f"   floor              {floor:6.1f} s   ({per})")


def _latencies(fleet: Fleet, stop: threading.Event, out: list[tuple[float, float]]) -> None:
    inputs = {"x": SAMPLE_X}
    while not stop.is_set():
        began = time.perf_counter()
        fleet.predict("steady", inputs)
        out.append((time.monotonic(), time.perf_counter() - began))


def _p99(samples: list[tuple[float, float]], start: float, end: float) -> float:
    window = sorted(d for t, d in samples if start <= t <= end)
    if len(window) < 20:
        return float("nan")
    return window[int(0.99 * (len(window) - 1))] * 1e6


def p99_during_loads(root: Path, big_mib: int) -> None:
    small = write_example(root / "steady-src", Format.TF2_SAVED_MODEL, 1.0)
    big = write_big(root / "big-src", big_mib)
    repo = root / "repo-p99"
    (repo / "steady").mkdir(parents=True)
    shutil.copytree(small, repo / "steady" / "1")
    (repo / "big").mkdir()
    (repo / "tfhost.toml").write_text('[models.big]\nisolation = "process"\n')
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    with Fleet(repo, settings=FleetSettings(poll_s=0.2)).start(timeout=600) as fleet:
        client = threading.Thread(target=_latencies, args=(fleet, stop, samples))
        client.start()
        time.sleep(1.0)  # warm
        calm_start = time.monotonic()
        time.sleep(6.0)
        calm_end = time.monotonic()
        windows = {}
        for version, what in ((1, "load"), (2, "hot swap")):
            began = time.monotonic()
            place(big, repo, "big", version)
            while [
                m.version
                for m in fleet.models()
                if m.name == "big" and m.state.value == "available"
            ] != [version]:
                time.sleep(0.05)
            windows[what] = (began, time.monotonic())
            time.sleep(1.0)
        stop.set()
        client.join()
    steady = _p99(samples, calm_start, calm_end)
    median = statistics.median(d for t, d in samples if calm_start <= t <= calm_end) * 1e6
    print(f"2. p99 of a steady model's requests (one client; steady median {median:.0f} us)")
    print(f"   steady        {steady:8.0f} us")
    for what, (begin, end) in windows.items():
        during = _p99(samples, begin, end)
        ratio = during / steady
        verdict = "met" if ratio <= GOAL_P99 else "NOT met"
        print(
            f"   during {what:9} {during:6.0f} us   x{ratio:.2f} over {end - begin:.1f} s   "
            f"goal <= x{GOAL_P99}: {verdict}"
        )


def memory_after_eviction(root: Path, count: int) -> None:
    small = write_example(root / "evict-src", Format.TF2_SAVED_MODEL, 1.0)
    repo = root / "repo-memory"
    for i in range(count + 1):
        (repo / f"e{i}").mkdir(parents=True)
        shutil.copytree(small, repo / f"e{i}" / "1")
    config = '[host]\nisolation = "process"\nlazy = true\n'
    (repo / "tfhost.toml").write_text(config)
    with Fleet(repo, settings=FleetSettings(poll_s=0.2)) as fleet:
        before = tree_pss()
        for i in range(count):
            fleet.predict(f"e{i}", {"x": SAMPLE_X})
        loaded = tree_pss()
        # Room for one worker: a request for one more model evicts all the others.
        (repo / "tfhost.toml").write_text(f"{config}memory_budget = {300 << 20}\n")
        fleet.reload()
        fleet.predict(f"e{count}", {"x": SAMPLE_X})
        fleet.wait_settled(60)
        evicted = [m.name for m in fleet.models()] == [f"e{count}"]
        fleet.host.unload(f"e{count}")  # and the one loaded in their place
        after = tree_pss()
    mib = 2**20
    change = (after - before) / before
    verdict = "met" if abs(change) <= GOAL_MEMORY and evicted else "NOT met"
    print(f"3. host + workers (PSS): {count} process-isolated models, evicted for one more")
    print(f"   before they loaded {before / mib:6.0f} MiB   loaded {loaded / mib:6.0f} MiB")
    print(
        f"   after eviction     {after / mib:6.0f} MiB ({change:+.1%})   goal within "
        f"{GOAL_MEMORY:.0%}: {verdict}{'' if evicted else ' (not all were evicted)'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--big-mib", type=int, default=200)
    parser.add_argument("--only", choices=("start", "p99", "memory"))
    args = parser.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"tfhost fleet bench: {os.cpu_count()} cores, python {sys.version.split()[0]}, "
        f"load average {load} (other work on the machine moves every figure)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.only in (None, "start"):
            start_times(root, args.models)
        if args.only in (None, "p99"):
            p99_during_loads(root, args.big_mib)
        if args.only in (None, "memory"):
            memory_after_eviction(root, 4)


if __name__ == "__main__":
    main()
