"""Tiny, deterministic example models in every format tfhost reads.

Every builder writes the same network, ``y = x @ (scale * W) + scale * B`` with an input
named ``x`` of shape ``[batch, 3]`` and an output named ``y`` of shape ``[batch, 2]``,
using the same variable, tensor and layer names whatever ``scale`` is. Two models with
different scales are the canonical colliding pair: same names, different weights.

Used by ``tfhost demo``, the test suite and the benchmarks. Imports TensorFlow.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tfhost.specs import DEFAULT_SIGNATURE, Format

W = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
B = np.array([0.5, -0.5], dtype=np.float32)
SAMPLE_X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)


def expected_y(x: np.ndarray, scale: float) -> np.ndarray:
    """What every example model with ``scale`` returns for ``x``."""
    y: np.ndarray = np.asarray(x, np.float32) @ (np.float32(scale) * W) + np.float32(scale) * B
    return y


def _tf1_graph(scale: float):  # type: ignore[no-untyped-def]
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        w = tf.compat.v1.get_variable("w", initializer=tf.constant(scale * W))
        b = tf.compat.v1.get_variable("b", initializer=tf.constant(scale * B))
        y = tf.identity(tf.matmul(x, w) + b, name="y")
    return graph, x, y


def write_tf1_saved_model(path: Path, scale: float) -> Path:
    import tensorflow as tf

    graph, x, y = _tf1_graph(scale)
    with tf.compat.v1.Session(graph=graph) as session:
        session.run(tf.compat.v1.global_variables_initializer())
        builder = tf.compat.v1.saved_model.Builder(str(path))
        signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
        builder.add_meta_graph_and_variables(
            session, ["serve"], signature_def_map={DEFAULT_SIGNATURE: signature}
        )
        builder.save()
    return path


def write_half_plus_two(path: Path, scale: float = 1.0) -> Path:
    """TensorFlow Serving's ``half_plus_two`` test model, rebuilt: ``y = 0.5 * x + 2``.

    As in TF Serving's testdata, ``x`` is not a placeholder but an Identity after
    ``parse_example``, declared ``[-1, 1]``; TF Serving feeds it a ``[3]`` tensor.
    ``scale`` multiplies ``a`` so two copies collide with different answers.
    """
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        a = tf.compat.v1.Variable(0.5 * scale, name="a")
        b = tf.compat.v1.Variable(2.0, name="b")
        serialized = tf.compat.v1.placeholder(tf.string, [None], name="tf_example")
        features = {"x": tf.io.FixedLenFeature([1], dtype=tf.float32)}
        x = tf.identity(tf.io.parse_example(serialized, features)["x"], name="x")
        y = tf.add(tf.multiply(a, x), b, name="y")
        session.run(tf.compat.v1.global_variables_initializer())
        builder = tf.compat.v1.saved_model.Builder(str(path))
        predict = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
        builder.add_meta_graph_and_variables(
            session, ["serve"], signature_def_map={DEFAULT_SIGNATURE: predict}
        )
        builder.save()
    return path


def write_frozen_graph(path: Path, scale: float) -> Path:
    import tensorflow as tf

    graph, _, _ = _tf1_graph(scale)
    with tf.compat.v1.Session(graph=graph) as session:
        session.run(tf.compat.v1.global_variables_initializer())
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
            session, graph.as_graph_def(), ["y"]
        )
    path.write_bytes(frozen.SerializeToString())
    return path


def write_tf2_saved_model(path: Path, scale: float) -> Path:
    import tensorflow as tf

    class Linear(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(name="linear")
            self.w = tf.Variable(scale * W, name="w")
            self.b = tf.Variable(scale * B, name="b")

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")]
        )
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": tf.matmul(x, self.w) + self.b}

    module = Linear()
    tf.saved_model.save(module, str(path), signatures={DEFAULT_SIGNATURE: module.serve})
    return path


def _keras3_model(scale: float):  # type: ignore[no-untyped-def]
    import keras

    x = keras.Input((3,), name="x")
    y = keras.layers.Dense(2, name="y")(x)
    model = keras.Model(x, y, name="linear")
    model.get_layer("y").set_weights([scale * W, scale * B])
    return model


def _tf_keras_model(scale: float):  # type: ignore[no-untyped-def]
    import tf_keras

    x = tf_keras.Input((3,), name="x")
    y = tf_keras.layers.Dense(2, name="y")(x)
    model = tf_keras.Model(x, y, name="linear")
    model.get_layer("y").set_weights([scale * W, scale * B])
    return model


def write_keras(path: Path, scale: float) -> Path:
    _keras3_model(scale).save(str(path))
    return path


def write_keras_h5(path: Path, scale: float) -> Path:
    """A legacy HDF5 file written by tf.keras 2 (tf_keras), as older projects have them."""
    _tf_keras_model(scale).save(str(path), save_format="h5")
    return path


def write_keras_saved_model(path: Path, scale: float) -> Path:
    """A tf.keras 2 SavedModel directory (``save_format="tf"``); Keras 3 refuses it."""
    _tf_keras_model(scale).save(str(path), save_format="tf")
    return path


def write_keras_export(path: Path, scale: float) -> Path:
    _keras3_model(scale).export(str(path), verbose=False)
    return path


WRITERS: dict[Format, tuple[str, Callable[[Path, float], Path]]] = {
    Format.TF2_SAVED_MODEL: ("tf2", write_tf2_saved_model),
    Format.TF1_SAVED_MODEL: ("tf1", write_tf1_saved_model),
    Format.KERAS: ("model.keras", write_keras),
    Format.KERAS_H5: ("model.h5", write_keras_h5),
    Format.KERAS_SAVED_MODEL: ("keras_sm", write_keras_saved_model),
    Format.KERAS_EXPORT: ("keras_export", write_keras_export),
    Format.FROZEN_GRAPH: ("frozen.pb", write_frozen_graph),
}


def write_example(root: Path, fmt: Format, scale: float) -> Path:
    """Write the example model of ``fmt`` with ``scale`` under ``root``; return its path."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    name, writer = WRITERS[fmt]
    root.mkdir(parents=True, exist_ok=True)
    return writer(root / name, scale)
