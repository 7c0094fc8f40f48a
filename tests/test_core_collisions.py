"""The seed scenario: models with the same names but different weights, side by side.

Every model must return exactly what it returns when loaded alone in a fresh process
(the ``alone`` fixture), whatever else is loaded, in whatever order, from any thread.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfhost import Format, Host
from tfhost.examples import SAMPLE_X, expected_y

from .conftest import SCALES, ArtifactMap

Alone = dict[tuple[Format, float], np.ndarray]


def _name(fmt: Format, scale: float) -> str:
    return f"{fmt.value}-{scale:g}"


def _output(host: Host, name: str) -> np.ndarray:
    (y,) = host.predict(name, {"x": SAMPLE_X}).values()
    return y


def test_alone_reference_is_what_the_examples_compute(alone: Alone) -> None:
    # Guards the reference itself: the two scales really differ, so a swap would show.
    for (_, scale), y in alone.items():
        np.testing.assert_allclose(y, expected_y(SAMPLE_X, scale), rtol=1e-6)
    assert not np.allclose(expected_y(SAMPLE_X, 1.0), expected_y(SAMPLE_X, 2.0))


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.value)
@pytest.mark.parametrize("order", [SCALES, SCALES[::-1]], ids=["1-then-2", "2-then-1"])
def test_same_names_different_weights_each_returns_its_own(
    fmt: Format, order: tuple[float, float], artifacts: ArtifactMap, alone: Alone
) -> None:
    with Host() as host:
        for scale in order:
            host.load(_name(fmt, scale), artifacts[fmt, scale])
            # Loading the second must not change what the first returns.
            for loaded in order[: order.index(scale) + 1]:
                np.testing.assert_array_equal(_output(host, _name(fmt, loaded)), alone[fmt, loaded])


def test_every_format_at_once_in_one_host(artifacts: ArtifactMap, alone: Alone) -> None:
    keys = sorted(artifacts, key=lambda k: (k[1], k[0].value))
    with Host() as host:
        for key in keys:
            host.load(_name(*key), artifacts[key])
        for key in reversed(keys):
            np.testing.assert_array_equal(_output(host, _name(*key)), alone[key])
        assert len(host.models()) == len(keys)


def test_concurrent_loads_and_predictions_from_threads(
    artifacts: ArtifactMap, alone: Alone
) -> None:
    keys = list(artifacts)
    with Host() as host, ThreadPoolExecutor(max_workers=8) as pool:
        infos = list(pool.map(lambda k: host.load(_name(*k), artifacts[k]), keys))
        assert {i.name for i in infos} == {_name(*k) for k in keys}

        def check(key: tuple[Format, float]) -> bool:
            for _ in range(20):
                np.testing.assert_array_equal(_output(host, _name(*key)), alone[key])
            return True

        assert all(pool.map(check, keys * 3))


def test_unload_and_reload_in_between_keeps_neighbours_right(
    artifacts: ArtifactMap, alone: Alone
) -> None:
    fmt = Format.TF1_SAVED_MODEL
    with Host() as host:
        host.load("a", artifacts[fmt, 1.0])
        host.load("b", artifacts[fmt, 2.0])
        host.unload("a")
        host.load("a", artifacts[fmt, 2.0])  # same name, now the other weights
        np.testing.assert_array_equal(_output(host, "a"), alone[fmt, 2.0])
        np.testing.assert_array_equal(_output(host, "b"), alone[fmt, 2.0])
        host.unload("b")
        host.load("b", artifacts[fmt, 1.0])
        np.testing.assert_array_equal(_output(host, "b"), alone[fmt, 1.0])
        np.testing.assert_array_equal(_output(host, "a"), alone[fmt, 2.0])


# -- the naive ways really are broken: the suite has teeth --------------------------


def test_naive_shared_session_silently_returns_the_other_models_answer(
    artifacts: ArtifactMap, alone: Alone
) -> None:
    """Two TF1 SavedModels into one graph and session: no error, wrong answer."""
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
        metas = [
            tf.compat.v1.saved_model.loader.load(session, ["serve"], str(artifacts[key]))
            for key in [(Format.TF1_SAVED_MODEL, 1.0), (Format.TF1_SAVED_MODEL, 2.0)]
        ]
        first = metas[0].signature_def["serving_default"]
        y_first = session.run(first.outputs["y"].name, {first.inputs["x"].name: SAMPLE_X})
    assert not np.array_equal(y_first, alone[Format.TF1_SAVED_MODEL, 1.0])
    np.testing.assert_array_equal(y_first, alone[Format.TF1_SAVED_MODEL, 2.0])


def test_graph_as_default_recipe_fails_in_tf2(artifacts: ArtifactMap) -> None:
    with tf.Graph().as_default():
        loaded = tf.saved_model.load(str(artifacts[Format.TF2_SAVED_MODEL, 1.0]))
    with pytest.raises(TypeError, match="out of scope"):
        loaded.signatures["serving_default"](x=tf.constant(SAMPLE_X))


def test_keras3_load_model_refuses_the_legacy_savedmodel(
    artifacts: ArtifactMap, alone: Alone
) -> None:
    import keras

    path = artifacts[Format.KERAS_SAVED_MODEL, 1.0]
    with pytest.raises(ValueError, match="legacy SavedModel format is not supported"):
        keras.models.load_model(str(path))
    with Host() as host:
        host.load("legacy", path)
        np.testing.assert_array_equal(_output(host, "legacy"), alone[Format.KERAS_SAVED_MODEL, 1.0])


def test_half_plus_two_takes_a_rank_1_tensor_as_tf_serving_does(half_plus_two: Path) -> None:
    """TF Serving's documented example feeds [1, 2, 5] into an input declared [-1, 1]."""
    x = np.array([1.0, 2.0, 5.0], dtype=np.float32)
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
        tf.compat.v1.saved_model.loader.load(session, ["serve"], str(half_plus_two))
        with pytest.raises(ValueError, match="Cannot feed value of shape"):
            session.run("y:0", {"x:0": x})
    with Host() as host:
        info = host.load("half_plus_two", half_plus_two)
        assert info.signatures["serving_default"].inputs["x"].shape == (None, 1)
        y = host.predict("half_plus_two", {"x": [1.0, 2.0, 5.0]})["y"]
        np.testing.assert_array_equal(y, np.array([2.5, 3.0, 4.5], dtype=np.float32))
        y2 = host.predict("half_plus_two", {"x": [[1.0], [2.0]]})["y"]
        np.testing.assert_array_equal(y2, np.array([[2.5], [3.0]], dtype=np.float32))
