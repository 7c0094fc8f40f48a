"""Wall time of ``tfhost doctor`` on 2, 4 and 8 small models, parallel vs one by one.

    python bench/doctor.py [--sizes 2 4 8] [--repeat 3]

The baseline is the same doctor run with ``jobs=1``: the same alone, naive and tfhost
steps, each in its own fresh process, one process after another. The ratio is parallel /
baseline, measured in the same run on the same machine. Goal (issue "doctor"): <= 0.6 on
2 cores for 8 models. Also printed: the part of the children's time that is
TensorFlow's own import (each child times ``import tensorflow``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfhost.diagnosis import Diagnosis, doctor
from tfhost.examples import write_example
from tfhost.specs import Format

# Colliding pairs, added two by two: 2 models exercise every naive way (TF1), 4 add frozen
# graphs, 8 add eager formats, which the shared graph does not take.
PAIRS = [Format.TF1_SAVED_MODEL, Format.FROZEN_GRAPH, Format.TF2_SAVED_MODEL, Format.KERAS]


def write_models(root: Path, count: int) -> list[Path]:
    paths = []
    for fmt in PAIRS[: count // 2]:
        for scale in (1.0, 2.0):
            paths.append(write_example(root / f"{fmt.value}-{scale:g}", fmt, scale))
    return paths


def timed(paths: list[Path], jobs: int) -> tuple[float, Diagnosis]:
    started = time.monotonic()
    diagnosis = doctor(paths, jobs=jobs)
    return time.monotonic() - started, diagnosis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--repeat", type=int, default=3, help="runs per size and mode")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"{cores} CPU(s); parallel = jobs {cores}, baseline = jobs 1 (one process at a time)")
    header = (
        f"{'models':>6} {'children':>8} {'parallel s':>10} {'one-by-one s':>12} "
        f"{'ratio':>6} {'TF import share':>16} {'TF import s (sum)':>18}"
    )
    print(header)
    ratios = {}
    with tempfile.TemporaryDirectory(prefix="tfhost-bench-doctor-") as tmp:
        all_paths = write_models(Path(tmp), max(args.sizes))
        for size in args.sizes:
            paths = all_paths[:size]
            parallel, serial, pair_ratios = [], [], []
            for _ in range(args.repeat):
                # Each pair back to back, so drift in the machine's load (other work on a
                # shared box) hits both modes alike; the ratio is the median over pairs.
                wall, diagnosis = timed(paths, cores)
                parallel.append(wall)
                wall, baseline = timed(paths, 1)
                serial.append(wall)
                pair_ratios.append(parallel[-1] / serial[-1])
                assert diagnosis.exit_code == baseline.exit_code == 1, diagnosis.summary
            p, s = statistics.median(parallel), statistics.median(serial)
            ratio = statistics.median(pair_ratios)
            steps = baseline.steps
            imports = sum(step.import_s or 0.0 for step in steps)
            children = sum(step.wall_s for step in steps)
            ratios[size] = ratio
            print(
                f"{size:>6} {len(steps):>8} {p:>10.1f} {s:>12.1f} {ratio:>6.2f} "
                f"{imports / children:>15.0%} {imports:>18.1f}",
                flush=True,
            )
    if 8 in ratios:
        verdict = "met" if ratios[8] <= 0.6 else "NOT met"
        print(f"goal ratio <= 0.60 for 8 models on {cores} cores: {verdict} ({ratios[8]:.2f})")
    print("ratio: median over back-to-back pairs of parallel / one-by-one wall time")
    print("TF import share: TensorFlow's import time / the children's wall time, one by one")


if __name__ == "__main__":
    main()
