"""Host.predict overhead against the raw TensorFlow call, measured in one run.

    python bench/predict.py [--calls N]

For each model the baseline is the same concrete function tfhost calls, called
directly with the same numpy input and its output turned into numpy: the floor.
Goal (issue "Core"): overhead <= 10% or <= 50 us per call, whichever is larger; and
Host.predict >= 20x faster than Keras ``model.predict`` at batch 1.
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

from tfhost import Host
from tfhost.formats.keras import keras_servable
from timing import interleaved


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
    with tempfile.TemporaryDirectory() as tmp, Host() as host:
        for label, model, x in cases:
            path = Path(tmp) / f"{label.split()[0]}.keras"
            model.save(path)
            info = host.load(label.split()[0], path)
            (input_name,) = info.signatures["serving_default"].inputs
            # The raw floor: the concrete function tfhost would trace, called directly.
            raw_fn = keras_servable("raw", info.format, keras.saving.load_model(path))
            function = raw_fn._owner[1]  # (model, concrete function)

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


if __name__ == "__main__":
    main()
