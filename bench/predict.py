"""Host.predict overhead against the raw TensorFlow call, measured in one run.

    python bench/predict.py [--calls N]

For each model the baseline is the same concrete function tfhost calls, called
directly with the same numpy input and its output turned into numpy (``fn(x)``): the
floor a user would write themselves. Goals: Host.predict never more than max(10 %, 50 us)
above it on any model; on the batch-1 MLP, Host.predict <= 0.8x it (tfhost's fast path
skips TensorFlow's Python argument handling, see formats/eager.py); and Host.predict
>= 20x faster than Keras ``model.predict`` at batch 1. Also printed, without a goal: the
servable's own run, fast path against ordinary call, to show where the time goes, and
Host.predict of the same file loaded with ``jit_compile=True`` (XLA) against without.
Timings are medians of interleaved rounds (bench/timing.py); on a busy machine, run it
several times and read the medians.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from tfhost import Format, Host
from tfhost.formats.eager import Entry, FunctionServable
from tfhost.formats.keras import keras_servable
from timing import interleaved

RATIO_GOAL = 0.8  # Host.predict / raw fn(x), batch-1 MLP


def mlp() -> keras.Model:
    x = keras.Input((64,), name="features")
    h = keras.layers.Dense(128, activation="relu")(x)
    h = keras.layers.Dense(128, activation="relu")(h)
    return keras.Model(x, keras.layers.Dense(10, name="logits")(h))


def convnet() -> keras.Model:
    x = keras.Input((32, 32, 3), name="image")
    h = keras.layers.Conv2D(16, 3, activation="relu")(x)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(32, 3, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(x, keras.layers.Dense(10, name="logits")(h))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cases = [
        ("mlp batch 1", mlp(), rng.standard_normal((1, 64), np.float32)),
        ("convnet batch 32", convnet(), rng.standard_normal((32, 32, 32, 3), np.float32)),
    ]
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, {os.cpu_count()} cpus")
    print(f"{'model':<18}{'raw cf us':>11}{'host us':>10}{'added us':>10}{'added %':>9}  goal")
    failures = 0
    ratio = 0.0
    with tempfile.TemporaryDirectory() as tmp, Host() as host:
        for label, model, x in cases:
            path = Path(tmp) / f"{label.split()[0]}.keras"
            model.save(path)
            info = host.load(label.split()[0], path)
            (input_name,) = info.signatures["serving_default"].inputs
            # The raw floor: the concrete function tfhost would trace, called directly.
            servable = keras_servable("raw", info.format, keras.saving.load_model(path))
            function = servable.function("serving_default")

            def raw(function: object = function, x: np.ndarray = x) -> object:
                return {k: v.numpy() for k, v in function(x).items()}  # type: ignore[operator]

            def hosted(name: str = info.name, x: np.ndarray = x, key: str = input_name) -> object:
                return host.predict(name, {key: x})

            np.testing.assert_allclose(
                next(iter(raw().values())), next(iter(hosted().values())), rtol=1e-5
            )
            timing = interleaved({"raw": raw, "host": hosted}, args.calls)
            added = timing["host"] - timing["raw"]
            percent = 100 * added / timing["raw"]
            ok = added <= max(50.0, 0.10 * timing["raw"])
            failures += not ok
            print(
                f"{label:<18}{timing['raw']:>11.1f}{timing['host']:>10.1f}{added:>10.1f}"
                f"{percent:>8.1f}%  <= max(50 us, 10%): {'PASS' if ok else 'FAIL'}"
            )
            if label == "mlp batch 1":
                ratio = timing["host"] / timing["raw"]
        ok = ratio <= RATIO_GOAL
        failures += not ok
        print(
            f"mlp batch 1: Host.predict / raw fn(x) = {ratio:.2f} "
            f"(goal <= {RATIO_GOAL}: {'PASS' if ok else 'FAIL'})"
        )
        for label, model, x in cases:
            servable_paths(label, model, x, args.calls)
            jit_compiled(host, label, x, args.calls)
        model, x = cases[0][1], cases[0][2]
        timing = interleaved(
            {
                "keras": lambda: model.predict(x, verbose=0),
                "host": lambda: host.predict("mlp", {"features": x}),
            },
            calls=min(args.calls, 500),
        )
        speedup = timing["keras"] / timing["host"]
        ok = speedup >= 20
        failures += not ok
        print(
            f"keras model.predict batch 1: {timing['keras']:.0f} us, Host.predict: "
            f"{timing['host']:.1f} us -> {speedup:.0f}x faster (goal >= 20x: "
            f"{'PASS' if ok else 'FAIL'})"
        )
    raise SystemExit(1 if failures else 0)


def jit_compiled(host: Host, label: str, x: np.ndarray, calls: int) -> None:
    """The same file loaded with ``jit_compile=True`` (XLA), against the plain load: what
    the opt-in buys (formats/jit.py)."""
    name = label.split()[0]
    path = host.status(name)[0].path
    info = host.load(f"{name}-jit", path, jit_compile=True)
    (key,) = info.signatures["serving_default"].inputs
    plain = host.predict(name, {key: x})
    compiled = host.predict(info.name, {key: x})
    for output, value in plain.items():
        np.testing.assert_allclose(compiled[output], value, rtol=1e-4, atol=1e-5)
    timing = interleaved(
        {
            "plain": lambda: host.predict(name, {key: x}),
            "jit": lambda: host.predict(info.name, {key: x}),
        },
        calls,
    )
    print(
        f"{label}: Host.predict with jit_compile {timing['jit']:.1f} us, without "
        f"{timing['plain']:.1f} us: {timing['plain'] / timing['jit']:.2f}x the calls/s"
    )


def servable_paths(label: str, model: keras.Model, x: np.ndarray, calls: int) -> None:
    """The servable's run, fast path against ordinary call (what the fast path saves)."""
    fast = keras_servable("fast", Format.KERAS, model)
    spec = fast.signatures["serving_default"]
    entry = Entry(spec, fast.function("serving_default"), positional=tuple(spec.inputs))
    ordinary = FunctionServable(
        "ordinary", Format.KERAS, {"serving_default": entry}, model, fast_path=False
    )
    (key,) = spec.inputs
    status = fast.fast_path("serving_default")
    timing = interleaved(
        {
            "fast": lambda: fast.run("serving_default", {key: x}),
            "ordinary": lambda: ordinary.run("serving_default", {key: x}),
        },
        calls,
    )
    print(
        f"{label}: servable run {timing['fast']:.1f} us fast path "
        f"({'on' if status.active else 'OFF: ' + status.reason}), "
        f"{timing['ordinary']:.1f} us ordinary call"
    )


if __name__ == "__main__":
    main()
