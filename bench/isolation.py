"""What process isolation costs, against inline isolation, measured in one run.

    python bench/isolation.py [--calls N] [--models 8]
    python bench/isolation.py --gpu          # on a machine with a GPU: memory limits

Prints, each with its goal (issue "process isolation"):
1. the median per-call latency of a batch-1 MLP, inline vs process, and the difference
   (goal: <= 150 us added);
2. the throughput of one client on a 1x224x224x3 float32 input, process / inline
   (goal: >= 70% of inline);
3. the memory (host + workers, RSS and USS) of N small models inline, N process-isolated
   and N in one group, each scenario in a fresh Python process so none inherits another's;
4. the time to start 1 and N process-isolated models in parallel;
5. the throughput of a process-isolated batch-1 MLP with 1 and 16 concurrent callers,
   with ``WorkerSettings.spin_us`` at its default, and 0 (polling off), against the
   inline model under the same load: what polling buys and what it costs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import psutil

from tfhost import Host, WorkerSettings
from timing import interleaved

GOAL_ADDED_US = 150.0
GOAL_THROUGHPUT = 0.70
IMAGE = (1, 224, 224, 3)


def write_mlp(path: Path) -> Path:
    """A batch-1 MLP (64 -> 128 -> 128 -> 10) as a TF2 SavedModel."""
    import tensorflow as tf

    rng = np.random.default_rng(0)

    class Mlp(tf.Module):  # type: ignore[misc]  # TensorFlow has no type hints
        def __init__(self) -> None:
            super().__init__()
            shapes = [(64, 128), (128, 128), (128, 10)]
            self.ws = [tf.Variable(rng.standard_normal(s, dtype=np.float32) * 0.1) for s in shapes]
            self.bs = [tf.Variable(np.zeros(s[1], np.float32)) for s in shapes]

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False,
            input_signature=[tf.TensorSpec([None, 64], tf.float32, name="features")],
        )
        def serve(self, h: tf.Tensor) -> dict[str, tf.Tensor]:
            for i, (w, b) in enumerate(zip(self.ws, self.bs, strict=True)):
                h = tf.matmul(h, w) + b
                if i < len(self.ws) - 1:
                    h = tf.nn.relu(h)
            return {"logits": h}

    module = Mlp()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def write_image_model(path: Path) -> Path:
    """A tiny convolution over a 224x224x3 image: the cost is mostly moving the image."""
    import tensorflow as tf

    class Conv(tf.Module):  # type: ignore[misc]  # TensorFlow has no type hints
        def __init__(self) -> None:
            super().__init__()
            self.k = tf.Variable(tf.fill([3, 3, 3, 4], 0.1))

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False,
            input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32, name="image")],
        )
        def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            features = tf.nn.conv2d(image, self.k, strides=4, padding="SAME")
            return {"features": tf.reduce_mean(features, axis=[1, 2])}

    module = Conv()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def latency_and_throughput(root: Path, calls: int) -> None:
    mlp, image_model = write_mlp(root / "mlp"), write_image_model(root / "conv")
    with Host() as host:
        host.load("mlp-inline", mlp, isolation="inline")
        host.load("mlp-process", mlp, isolation="process")
        host.load("conv-inline", image_model, isolation="inline")
        host.load("conv-process", image_model, isolation="process")
        features = {"features": np.ones((1, 64), np.float32)}
        image = {"image": np.random.default_rng(0).random(IMAGE, dtype=np.float32)}
        mlp_us = interleaved(
            {
                kind: partial(host.predict, f"mlp-{kind}", features)
                for kind in ("inline", "process")
            },
            calls,
        )
        added = mlp_us["process"] - mlp_us["inline"]
        print("1. batch-1 MLP, median per call")
        print(f"   inline   {mlp_us['inline']:8.1f} us")
        print(f"   process  {mlp_us['process']:8.1f} us")
        print(
            f"   added    {added:8.1f} us   goal <= {GOAL_ADDED_US:.0f} us: "
            f"{'met' if added <= GOAL_ADDED_US else 'NOT met'}"
        )
        conv_us = interleaved(
            {kind: partial(host.predict, f"conv-{kind}", image) for kind in ("inline", "process")},
            max(calls // 4, 200),
        )
        ratio = conv_us["inline"] / conv_us["process"]
        print("2. 1x224x224x3 float32 input, one client, throughput")
        for kind in ("inline", "process"):
            print(f"   {kind:8} {1e6 / conv_us[kind]:8.0f} calls/s ({conv_us[kind]:.0f} us/call)")
        print(
            f"   process / inline = {ratio:.0%}   goal >= {GOAL_THROUGHPUT:.0%}: "
            f"{'met' if ratio >= GOAL_THROUGHPUT else 'NOT met'}"
        )


# -- memory: one fresh process per scenario -------------------------------------------------


def _tree(process: psutil.Process) -> list[psutil.Process]:
    return [process, *process.children(recursive=True)]


def _sum(processes: list[psutil.Process], what: str) -> int:
    total = 0
    for p in processes:
        try:
            info = p.memory_full_info() if what == "uss" else p.memory_info()
            total += getattr(info, what)
        except psutil.NoSuchProcess:
            pass
    return total


@contextmanager
def _peak_rss(process: psutil.Process) -> Iterator[list[int]]:
    """Samples the RSS of ``process`` and its children every 20 ms; yields [peak]."""
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _sum(_tree(process), "rss"))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()
        peak[0] = max(peak[0], _sum(_tree(process), "rss"))


def _load(host: Host, model: Path, isolation: str, group: str | None, name: str) -> None:
    host.load(name, model, isolation=isolation, group=group)


def memory_scenario(kind: str, model: Path, count: int) -> None:
    """Run in a fresh process: load ``count`` copies of ``model``; print memory as JSON."""
    me = psutil.Process()
    names = [f"m{i}" for i in range(count)]
    isolation = "inline" if kind == "inline" else "process"
    group = "all" if kind == "group" else None
    with Host() as host, _peak_rss(me) as peak:
        start = time.monotonic()
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(partial(_load, host, model, isolation, group), names))
        ready_s = time.monotonic() - start
        for name in names:
            host.predict(name, {"features": np.ones((1, 64), np.float32)})
        tree = _tree(me)
        result = {
            "rss": _sum(tree, "rss"),
            "uss": _sum(tree, "uss"),
            "processes": len(tree),
            "ready_s": ready_s,
        }
    result["peak_rss"] = peak[0]
    print(json.dumps(result))


def memory(root: Path, count: int) -> None:
    mlp = root / "mlp"
    results = {}
    for kind in ("inline", "process", "group"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--memory-scenario",
                kind,
                "--model",
                str(mlp),
                "--models",
                str(count),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results[kind] = json.loads(out.strip().splitlines()[-1])
    mib = 2**20
    print(f"3. memory of {count} small models, host + workers (each scenario a fresh process)")
    print(
        f"   {'':8} {'processes':>9} {'USS MiB':>8} {'RSS MiB':>8} {'peak RSS':>8} {'ready s':>7}"
    )
    for kind, r in results.items():
        print(
            f"   {kind:8} {r['processes']:9d} {r['uss'] / mib:8.0f} {r['rss'] / mib:8.0f} "
            f"{r['peak_rss'] / mib:8.0f} {r['ready_s']:7.1f}"
        )
    base = results["inline"]["uss"]
    print(
        f"   USS vs inline: process x{results['process']['uss'] / base:.1f}, "
        f"group x{results['group']['uss'] / base:.1f}"
    )


def _throughput(host: Host, name: str, callers: int, seconds: float) -> float:
    """Calls per second that ``callers`` threads get from ``name`` in ``seconds``."""
    features = {"features": np.ones((1, 64), np.float32)}
    stop = time.monotonic() + seconds
    counts = [0] * callers

    def client(index: int) -> None:
        while time.monotonic() < stop:
            host.predict(name, features)
            counts[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


def spin_under_concurrency(root: Path, seconds: float) -> None:
    mlp = root / "mlp"
    default = WorkerSettings().spin_us
    with Host() as host:
        host.load("inline", mlp)
        for spin in sorted({default, 0}, reverse=True):
            host.load(f"spin-{spin}", mlp, isolation="process", worker=WorkerSettings(spin_us=spin))
        names = ["inline", *(f"spin-{spin}" for spin in sorted({default, 0}, reverse=True))]
        for name in names:  # warm up: traced functions, lanes, regions
            _throughput(host, name, 16, 0.3)
        rates: dict[tuple[str, int], list[float]] = {}
        for _ in range(3):  # interleaved rounds: drift hits every candidate
            for callers in (1, 16):
                for name in names:
                    rates.setdefault((name, callers), []).append(
                        _throughput(host, name, callers, seconds)
                    )
        median = {key: sorted(values)[1] for key, values in rates.items()}
    print(f"5. batch-1 MLP throughput by concurrent callers (median of 3 rounds of {seconds:g} s)")
    print(f"   {'':22} {'1 caller':>10} {'16 callers':>11}")
    for name in names:
        label = "inline" if name == "inline" else f"process, spin_us={name.split('-')[1]}"
        one, many = median[name, 1], median[name, 16]
        print(f"   {label:22} {one:8.0f}/s {many:9.0f}/s")
    for name in names[1:]:
        one = median[name, 1] / median["inline", 1]
        many = median[name, 16] / median["inline", 16]
        print(f"   {name}: {one:.0%} of inline with 1 caller, {many:.0%} with 16")


def parallel_start(root: Path, count: int) -> None:
    """Time to make 1 and ``count`` process-isolated models available (in parallel)."""
    mlp = root / "mlp"
    times = {}
    for n in (1, count):
        with Host() as host:
            start = time.monotonic()
            with ThreadPoolExecutor(n) as pool:
                list(pool.map(lambda i: host.load(f"s{i}", mlp, isolation="process"), range(n)))
            times[n] = time.monotonic() - start
    print(
        f"4. start: 1 model {times[1]:.1f} s, {count} models {times[count]:.1f} s "
        f"(x{times[count] / times[1]:.1f}; goal well under x{count}, on "
        f"{os.cpu_count()} cores)"
    )


def gpu_check(root: Path) -> None:
    """Two models in one host, each with its own GPU memory limit (1 and 2 GiB) on one
    GPU: each worker must see only its own limit."""
    from tfhost.cells.process import ProcessCell

    mlp = write_mlp(root / "mlp")
    limits = {"gpu-a": 1024, "gpu-b": 2048}
    with Host() as host:
        for name, limit in limits.items():
            host.load(
                name, mlp, isolation="process", worker=WorkerSettings(gpu_memory_limit_mib=limit)
            )
        for name, limit in limits.items():
            host.predict(name, {"features": np.ones((1, 64), np.float32)})
            with host.acquire(name) as handle:
                cell = handle._cell
                assert isinstance(cell, ProcessCell)
                info = cell.worker_info
            limit_seen = info.gpu_memory_limit_mib
            print(f"   {name} pid {info.pid}: gpus {info.gpus}, limit {limit_seen} MiB")
            assert info.gpus and info.gpu_memory_limit_mib == limit
        smi = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv"]
        print(subprocess.run(smi, capture_output=True, text=True, check=False).stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--gpu", action="store_true", help="check GPU memory limits instead")
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="each throughput window of section 5"
    )
    parser.add_argument(
        "--only",
        choices=("latency", "spin"),
        help="run one part and stop (latency: sections 1-2; spin: section 5)",
    )
    parser.add_argument("--memory-scenario", choices=("inline", "process", "group"))
    parser.add_argument("--model", type=Path)
    args = parser.parse_args()
    if args.memory_scenario:
        memory_scenario(args.memory_scenario, args.model, args.models)
        return
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"tfhost isolation bench: {os.cpu_count()} cores, python {sys.version.split()[0]}, "
        f"load average {load} (other work on the machine moves every figure)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.gpu:
            gpu_check(root)
            return
        if args.only == "spin":
            write_mlp(root / "mlp")
            spin_under_concurrency(root, args.seconds)
            return
        if args.only == "latency":
            latency_and_throughput(root, args.calls)
            return
        latency_and_throughput(root, args.calls)
        memory(root, args.models)
        parallel_start(root, args.models)
        spin_under_concurrency(root, args.seconds)


if __name__ == "__main__":
    main()
