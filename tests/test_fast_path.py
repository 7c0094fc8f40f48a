"""The eager fast path: flat calls through ``context.call_function``, checked at load.

Every test compares the fast path with the ordinary call (``fn(**inputs)``), on real
TensorFlow functions: the fast path must be used where it can be, give the same answers
and the same errors, step aside where its load-time check fails, and never run a
signature at load.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from tfhost import Format, Host, InputError, TfhostError
from tfhost.examples import SAMPLE_X, expected_y
from tfhost.formats import detect, load
from tfhost.formats.eager import Entry, FunctionServable, signature_entry
from tfhost.formats.keras import keras_servable
from tfhost.specs import LoadOptions

from .conftest import ArtifactMap

EAGER = [
    Format.TF2_SAVED_MODEL,
    Format.KERAS,
    Format.KERAS_H5,
    Format.KERAS_SAVED_MODEL,
    Format.KERAS_EXPORT,
]
LOGGER = "tfhost.formats.eager"


def ordinary(servable: FunctionServable, keras: bool) -> FunctionServable:
    """The same functions as ``servable``, every signature on the ordinary call."""
    entries = {}
    for key, spec in servable.signatures.items():
        positional = tuple(spec.inputs) if keras else None
        entries[key] = Entry(spec, servable.function(key), positional=positional)
    return FunctionServable(servable.name, servable.format, entries, None, fast_path=False)


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def error_of(servable: FunctionServable, signature: str, inputs: dict[str, Any]) -> TfhostError:
    with pytest.raises(TfhostError) as info:
        servable.run(signature, inputs)
    return info.value


@pytest.mark.parametrize("fmt", EAGER, ids=lambda f: f.value)
def test_every_eager_format_runs_the_fast_path(fmt: Format, artifacts: ArtifactMap) -> None:
    servable = load("m", detect(artifacts[fmt, 2.0]), LoadOptions())
    assert isinstance(servable, FunctionServable)
    plain = ordinary(servable, keras=fmt in (Format.KERAS, Format.KERAS_H5))
    for key in servable.signatures:
        status = servable.fast_path(key)
        assert status.active, status.reason
        assert "binding of a call" in status.reason
        assert not plain.fast_path(key).active
        got = servable.run(key, {"x": SAMPLE_X})
        assert_same(got, plain.run(key, {"x": SAMPLE_X}))
        (y,) = got.values()
        np.testing.assert_allclose(y, expected_y(SAMPLE_X, 2.0), rtol=1e-6)


def test_host_predict_goes_through_the_fast_path(
    artifacts: ArtifactMap, caplog: pytest.LogCaptureFixture
) -> None:
    """Inputs as the host checks them (lists, other dtypes) are never declined."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with Host() as host:
        for fmt in EAGER:
            host.load(fmt.value, artifacts[fmt, 1.0])
            for x in (SAMPLE_X, SAMPLE_X.astype(np.float64), SAMPLE_X.tolist()):
                (y,) = host.predict(fmt.value, {"x": x}).values()
                np.testing.assert_allclose(y, expected_y(SAMPLE_X, 1.0), rtol=1e-6)
    assert not [r for r in caplog.records if "not exactly the declared" in r.getMessage()]


# -- several inputs of different dtypes, declared out of alphabetical order ---------------


class Mixed(tf.Module):  # type: ignore[misc]
    """Inputs declared zeta, alpha, mid, beta (flat order: sorted); outputs sorted the other
    way from their declaration. Every output mixes inputs, so any swap changes answers."""

    def __init__(self) -> None:
        super().__init__(name="mixed")
        self.w = tf.Variable([[1.0], [10.0]], name="w")
        self.count = tf.Variable(0.0, name="count")

    @tf.function(  # type: ignore[untyped-decorator]
        autograph=False,
        input_signature=[
            tf.TensorSpec([None, 2], tf.float32, name="zeta"),
            tf.TensorSpec([None], tf.int64, name="alpha"),
            tf.TensorSpec([None], tf.string, name="mid"),
            tf.TensorSpec([None], tf.bool, name="beta"),
        ],
    )
    def serve(
        self, zeta: tf.Tensor, alpha: tf.Tensor, mid: tf.Tensor, beta: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        return {
            "zz": tf.matmul(zeta, self.w)[:, 0] + 100.0 * tf.cast(alpha, tf.float32),
            "aa": tf.strings.length(mid) + 1000 * tf.cast(alpha, tf.int32),
            "b": tf.strings.join([mid, tf.where(beta, "+", "-")]),
        }

    @tf.function(  # type: ignore[untyped-decorator]
        autograph=False, input_signature=[tf.TensorSpec([None], tf.string, name="s")]
    )
    def number(self, s: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"n": tf.strings.to_number(s)}

    @tf.function(  # type: ignore[untyped-decorator]
        autograph=False, input_signature=[tf.TensorSpec([], tf.string, name="path")]
    )
    def read(self, path: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"content": tf.io.read_file(path)}

    @tf.function(  # type: ignore[untyped-decorator]
        autograph=False, input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")]
    )
    def counter(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        # Stateful: a load that ran it would move the count.
        return {"count": tf.reduce_sum(x) * 0.0 + self.count.assign_add(1.0)}

    @tf.function(  # type: ignore[untyped-decorator]
        autograph=False, input_signature=[tf.TensorSpec([1, 4097, 4097], tf.float32, name="big")]
    )
    def huge(self, big: tf.Tensor) -> dict[str, tf.Tensor]:
        # One input over the 64 MiB a load marks inputs with: no fast path for it.
        return {"total": tf.reduce_sum(big)}


MIXED_X = {
    "zeta": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32),
    "alpha": np.array([5, 7], np.int64),
    "mid": np.array([b"a", b"xyz"], object),
    "beta": np.array([True, False]),
}
MIXED_Y = {
    "zz": np.array([521.0, 743.0], np.float32),
    "aa": np.array([5001, 7003], np.int32),
    "b": np.array([b"a+", b"xyz-"], object),
}


@pytest.fixture(scope="module")
def mixed_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mixed") / "mixed"
    module = Mixed()
    signatures = {
        "serving_default": module.serve,
        "number": module.number,
        "read": module.read,
        "counter": module.counter,
        "huge": module.huge,
    }
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path


@pytest.fixture
def mixed(mixed_path: Path) -> Iterator[tuple[FunctionServable, FunctionServable, Any]]:
    """The mixed SavedModel loaded once: (fast servable, ordinary servable, loaded object)."""
    loaded = tf.saved_model.load(str(mixed_path))
    entries = {key: signature_entry(fn) for key, fn in loaded.signatures.items()}
    fast = FunctionServable("mixed", Format.TF2_SAVED_MODEL, entries, loaded)
    plain = FunctionServable("mixed", Format.TF2_SAVED_MODEL, entries, loaded, fast_path=False)
    yield fast, plain, loaded
    fast.close()
    plain.close()


def test_several_inputs_reach_the_right_arguments(
    mixed: tuple[FunctionServable, FunctionServable, Any],
) -> None:
    fast, plain, _ = mixed
    assert fast.fast_path("serving_default").active
    # The declaration order is not the flat order TensorFlow calls with, and the loaded
    # structured signature's order comes from a protobuf map (it varies from process to
    # process): a guess from either would swap inputs.
    function = fast.function("serving_default")
    flat = [t.name.split(":")[0] for t in function.inputs[:4]]
    assert flat == ["alpha", "beta", "mid", "zeta"]
    assert list(MIXED_X) != flat  # MIXED_X is in declaration order
    got = fast.run("serving_default", MIXED_X)
    assert_same(got, MIXED_Y)
    assert_same(got, plain.run("serving_default", MIXED_X))


def test_several_inputs_through_the_host(
    mixed_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    as_lists = {
        "zeta": [[1, 2], [3, 4]],  # ints, converted to float32 by the host's check
        "alpha": [5, 7],
        "mid": ["a", "xyz"],
        "beta": [True, False],
    }
    with Host() as host:
        host.load("mixed", mixed_path)
        for inputs in (MIXED_X, as_lists):
            assert_same(host.predict("mixed", inputs), MIXED_Y)
    assert not [r for r in caplog.records if "not exactly the declared" in r.getMessage()]


def test_several_keras_inputs_as_a_dict_in_any_order() -> None:
    keras = pytest.importorskip("keras")
    zeta = keras.Input((2,), name="zeta")
    alpha = keras.Input((1,), name="alpha", dtype="int32")
    mid = keras.Input((3,), name="mid", dtype="float64")
    total = (
        keras.ops.sum(zeta, axis=1, keepdims=True)
        + 100.0 * keras.ops.cast(alpha, "float32")
        + 10000.0 * keras.ops.cast(keras.ops.sum(mid, axis=1, keepdims=True), "float32")
    )
    model = keras.Model({"zeta": zeta, "alpha": alpha, "mid": mid}, {"total": total})
    servable = keras_servable("k", Format.KERAS, model)
    assert servable.fast_path("serving_default").active
    inputs = {
        "zeta": np.array([[1.0, 2.0]], np.float32),
        "alpha": np.array([[3]], np.int32),
        "mid": np.array([[0.25, 0.5, 0.25]], np.float64),
    }
    (total_value,) = servable.run("serving_default", inputs).values()
    np.testing.assert_allclose(total_value, [[10303.0]])
    assert_same(
        servable.run("serving_default", inputs),
        ordinary(servable, True).run("serving_default", inputs),
    )


# -- errors -----------------------------------------------------------------------------


def test_errors_translate_as_the_ordinary_call(
    mixed: tuple[FunctionServable, FunctionServable, Any],
) -> None:
    fast, plain, _ = mixed
    for key in ("number", "read"):
        assert fast.fast_path(key).active, fast.fast_path(key).reason
    bad_number = {"s": np.array([b"1.5", b"x1"], object)}
    got, want = error_of(fast, "number", bad_number), error_of(plain, "number", bad_number)
    assert isinstance(got, InputError) and type(got) is type(want)
    assert str(got) == str(want)
    assert "could not correctly convert string: x1" in str(got)
    missing = {"path": np.array(b"/nonexistent/tfhost-fast-path", object)}
    got, want = error_of(fast, "read", missing), error_of(plain, "read", missing)
    assert type(got) is type(want) and not isinstance(got, InputError)
    assert (str(got), got.code) == (str(want), want.code)
    assert vars(got) == vars(want)
    assert "No such file or directory" in str(got)


def test_host_errors_through_the_fast_path(mixed_path: Path) -> None:
    with Host() as host:
        host.load("mixed", mixed_path)
        with pytest.raises(InputError, match="could not correctly convert string: x1"):
            host.predict("mixed", {"s": ["x1"]}, signature="number")
        assert host.predict("mixed", {"s": ["2.5"]}, signature="number")["n"].tolist() == [2.5]


# -- where the fast path steps aside --------------------------------------------------------


def test_a_load_runs_no_signature(
    mixed: tuple[FunctionServable, FunctionServable, Any],
) -> None:
    """Signatures may have effects (TF Serving's saved_model_counter): checking the fast
    path at load must not run them."""
    _, _, loaded = mixed
    before = float(loaded.count.numpy())
    entries = {"counter": signature_entry(loaded.signatures["counter"])}
    servable = FunctionServable("stateful", Format.TF2_SAVED_MODEL, entries, loaded)
    assert float(loaded.count.numpy()) == before
    assert servable.fast_path("counter").active, servable.fast_path("counter").reason
    x = {"x": np.zeros((1, 2), np.float32)}
    assert servable.run("counter", x)["count"].tolist() == before + 1
    assert servable.run("counter", x)["count"].tolist() == before + 2


def test_inputs_too_big_to_mark_take_the_ordinary_call(
    mixed: tuple[FunctionServable, FunctionServable, Any], caplog: pytest.LogCaptureFixture
) -> None:
    _, _, loaded = mixed
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    entries = {"huge": signature_entry(loaded.signatures["huge"])}
    servable = FunctionServable("huge", Format.TF2_SAVED_MODEL, entries, loaded)
    status = servable.fast_path("huge")
    assert not status.active and "over 64 MiB" in status.reason
    logged = [r for r in caplog.records if r.name == LOGGER and "'huge'" in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.DEBUG
    total = servable.run("huge", {"big": np.ones((1, 4097, 4097), np.float32)})["total"]
    assert float(total) == pytest.approx(4097 * 4097)


def test_inputs_not_as_declared_take_the_ordinary_call(
    mixed: tuple[FunctionServable, FunctionServable, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """``run`` given what the host would have converted: the ordinary call, as before."""
    fast, _, _ = mixed
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    loose = dict(MIXED_X, alpha=[5, 7])  # a list, not an array
    for _ in range(3):
        assert_same(fast.run("serving_default", loose), MIXED_Y)
    declined = [r for r in caplog.records if "not exactly the declared" in r.getMessage()]
    assert len(declined) == 1
    assert fast.fast_path("serving_default").active


def test_fast_path_can_be_turned_off(mixed: tuple[FunctionServable, FunctionServable, Any]) -> None:
    _, plain, _ = mixed
    assert plain.fast_path("serving_default").active is False
    assert "turned off" in plain.fast_path("serving_default").reason
    assert_same(plain.run("serving_default", MIXED_X), MIXED_Y)


# -- captured variables ----------------------------------------------------------------------


def test_captured_variables_are_read_at_each_call(
    mixed: tuple[FunctionServable, FunctionServable, Any],
) -> None:
    """Captures are variable handles: a new value is seen, the handle stays valid."""
    fast, plain, loaded = mixed
    old = loaded.w.numpy()
    try:
        loaded.w.assign([[2.0], [20.0]])
        got = fast.run("serving_default", MIXED_X)
        np.testing.assert_array_equal(
            got["zz"], [1.0 * 2 + 2.0 * 20 + 500, 3.0 * 2 + 4.0 * 20 + 700]
        )
        assert_same(got, plain.run("serving_default", MIXED_X))
    finally:
        loaded.w.assign(old)
    assert_same(fast.run("serving_default", MIXED_X), MIXED_Y)


def test_keras_weights_set_after_load_are_used() -> None:
    keras = pytest.importorskip("keras")
    x = keras.Input((3,), name="x")
    model = keras.Model(x, keras.layers.Dense(2, name="y")(x))
    servable = keras_servable("k", Format.KERAS, model)
    assert servable.fast_path("serving_default").active
    model.get_layer("y").set_weights([np.ones((3, 2), np.float32), np.zeros(2, np.float32)])
    (y,) = servable.run("serving_default", {"x": SAMPLE_X}).values()
    np.testing.assert_allclose(y, np.asarray(model(SAMPLE_X)), rtol=1e-6)
    np.testing.assert_allclose(y, SAMPLE_X.sum(axis=1, keepdims=True).repeat(2, axis=1))


def test_fast_path_runs_from_many_threads(
    mixed: tuple[FunctionServable, FunctionServable, Any],
) -> None:
    fast, _, _ = mixed
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                assert_same(fast.run("serving_default", MIXED_X), MIXED_Y)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures


# -- the host's input check, on the path every request takes ------------------------------


def test_checked_arrays_of_the_declared_dtype_pass_untouched() -> None:
    from types import MappingProxyType

    from tfhost.specs import SignatureSpec
    from tfhost.specs import TensorSpec as Spec
    from tfhost.validation import check_inputs

    spec = SignatureSpec(
        inputs={"x": Spec("x", "float32", (None, 3)), "s": Spec("s", "string", (None,))},
        outputs={},
    )
    x = np.zeros((2, 3), np.float32)
    strings = np.array(["a", b"b"], object)
    checked = check_inputs("m", "sig", spec, {"x": x, "s": strings}, check_shapes=True)
    assert checked["x"] is x  # nothing to convert: the caller's array itself
    assert checked["s"].tolist() == [b"a", b"b"]  # strings are still checked item by item
    proxy = MappingProxyType({"x": x, "s": strings})
    assert check_inputs("m", "sig", spec, proxy, check_shapes=True)["x"] is x
    with pytest.raises(InputError, match=r"input 'x' expects shape \[\?, 3\], got \[2, 4\]"):
        check_inputs(
            "m", "sig", spec, {"x": np.zeros((2, 4), np.float32), "s": strings}, check_shapes=True
        )
    with pytest.raises(InputError, match=r"missing \['s'\] and unknown \['y'\] inputs"):
        check_inputs("m", "sig", spec, {"x": x, "y": x}, check_shapes=True)
