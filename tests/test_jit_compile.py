"""``jit_compile``: every signature of a TF2 or Keras model compiled by XLA, per model.

XLA's answers are checked against TensorFlow's, and that XLA really runs is told by
behaviour, not by a flag: an out-of-range ``tf.gather`` index is an error in TensorFlow's
kernel and clamped by XLA. Formats and ops XLA cannot take refuse the load, by name, and
every other model keeps serving.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfhost import Format, Host, InputError, LoadError, State, TfhostError
from tfhost.examples import SAMPLE_X, expected_y
from tfhost.fleet import Fleet, FleetSettings
from tfhost.formats import detect, load
from tfhost.formats.eager import FunctionServable
from tfhost.specs import LoadOptions

from .conftest import ArtifactMap
from .serve_support import ServerProcess
from .test_fast_path import EAGER

OUT_OF_RANGE = {"index": np.array([7, 1], np.int32)}  # the table has 5 rows: 7 is past it
CLAMPED = np.array([40.0, 10.0], np.float32)  # XLA clamps 7 to the last row, 4


@pytest.fixture(scope="module")
def gather_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF2 SavedModel that looks rows up in a variable (so it has a captured input)."""
    module = tf.Module()
    module.table = tf.Variable(tf.range(5, dtype=tf.float32) * 10.0)
    module.lookup = tf.function(
        lambda index: {"value": tf.gather(module.table, index)},
        input_signature=[tf.TensorSpec([None], tf.int32, name="index")],
        autograph=False,
    )
    path = tmp_path_factory.mktemp("jit") / "gather"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.lookup})
    return path


@pytest.fixture(scope="module")
def strings_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF2 SavedModel with a signature XLA has no kernel for (string lengths)."""
    module = tf.Module()
    module.length = tf.function(
        lambda text: {"length": tf.strings.length(text)},
        input_signature=[tf.TensorSpec([None], tf.string, name="text")],
        autograph=False,
    )
    module.double = tf.function(
        lambda x: {"y": x * 2.0},
        input_signature=[tf.TensorSpec([None], tf.float32, name="x")],
        autograph=False,
    )
    path = tmp_path_factory.mktemp("jit") / "strings"
    signatures = {"serving_default": module.double, "length": module.length}
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path


@pytest.fixture(scope="module")
def py_function_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF2 SavedModel whose signature runs Python inside (no XLA kernel)."""
    module = tf.Module()
    module.double = tf.function(
        lambda x: {"y": tf.py_function(lambda a: a * 2.0, [x], tf.float32)},
        input_signature=[tf.TensorSpec([None], tf.float32, name="x")],
        autograph=False,
    )
    path = tmp_path_factory.mktemp("jit") / "py_function"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.double})
    return path


@pytest.mark.parametrize("fmt", EAGER, ids=lambda f: f.value)
def test_every_eager_format_compiles_and_answers_as_before(
    fmt: Format, artifacts: ArtifactMap
) -> None:
    servable = load("m", detect(artifacts[fmt, 2.0]), LoadOptions(jit_compile=True))
    assert isinstance(servable, FunctionServable)
    for key in servable.signatures:
        assert servable.function(key).function_def.attr["_XlaMustCompile"].b, key
        assert servable.fast_path(key).active, servable.fast_path(key).reason
        (y,) = servable.run(key, {"x": SAMPLE_X}).values()
        np.testing.assert_allclose(y, expected_y(SAMPLE_X, 2.0), rtol=1e-5)
    plain = load("m", detect(artifacts[fmt, 2.0]), LoadOptions())
    assert isinstance(plain, FunctionServable)
    for key in plain.signatures:
        assert not plain.function(key).function_def.attr["_XlaMustCompile"].b, key


@pytest.mark.parametrize("isolation", ["inline", "process"])
def test_a_compiled_model_runs_xla_inline_and_in_its_worker(
    gather_model: Path, isolation: str
) -> None:
    with Host() as host:
        host.load("plain", gather_model, isolation=isolation)
        host.load("compiled", gather_model, isolation=isolation, jit_compile=True)
        with pytest.raises(TfhostError, match=r"not in \[0, 5\)"):
            host.predict("plain", OUT_OF_RANGE)
        np.testing.assert_array_equal(host.predict("compiled", OUT_OF_RANGE)["value"], CLAMPED)
        # A new input shape compiles again and still answers.
        many = {"index": np.arange(5, dtype=np.int32)}
        np.testing.assert_array_equal(
            host.predict("compiled", many)["value"], host.predict("plain", many)["value"]
        )


def test_a_signature_xla_cannot_compile_refuses_the_load(
    strings_model: Path, gather_model: Path
) -> None:
    with Host() as host:
        host.load("other", gather_model)
        with pytest.raises(LoadError) as info:
            host.load("strings", strings_model, jit_compile=True)
        message = str(info.value)
        assert "signature 'length'" in message
        assert "input 'text' is a string tensor" in message
        assert "without jit_compile" in message
        assert [m.state for m in host.status("strings")] == [State.FAILED]
        assert host.predict("other", {"index": np.array([2], np.int32)})["value"][0] == 20.0
        host.load("strings", strings_model)  # without XLA the same artifact serves
        got = host.predict("strings", {"text": np.array([b"abc"], object)}, signature="length")
        assert got["length"].tolist() == [3]


def test_an_op_without_an_xla_kernel_is_named(py_function_model: Path) -> None:
    with Host() as host:
        with pytest.raises(LoadError, match="XLA cannot compile it: EagerPyFunc has no XLA"):
            host.load("py", py_function_model, jit_compile=True)
        host.load("py", py_function_model)
        np.testing.assert_array_equal(host.predict("py", {"x": np.ones(2, np.float32)})["y"], 2.0)


@pytest.mark.parametrize("fmt", [Format.TF1_SAVED_MODEL, Format.FROZEN_GRAPH])
def test_graph_mode_formats_refuse_jit_compile(fmt: Format, artifacts: ArtifactMap) -> None:
    with Host() as host:
        with pytest.raises(InputError, match=r"runs in a TF1 session.*TF_XLA_FLAGS"):
            host.load("graph", artifacts[fmt, 1.0], jit_compile=True)
        host.load("graph", artifacts[fmt, 1.0])
        (y,) = host.predict("graph", {"x": SAMPLE_X}).values()
        np.testing.assert_allclose(y, expected_y(SAMPLE_X, 1.0), rtol=1e-6)


def test_jit_compile_must_be_a_boolean(gather_model: Path) -> None:
    with Host() as host, pytest.raises(InputError, match="jit_compile= takes True or False"):
        host.load("m", gather_model, jit_compile="yes")  # type: ignore[arg-type]


def jit_repository(root: Path, gather_model: Path) -> Path:
    """Two copies of the gather model: ``fast`` compiled by the ``[host]`` default,
    ``exact`` not, by its own key."""
    repo = root / "repo"
    for name in ("fast", "exact"):
        shutil.copytree(gather_model, repo / name / "1")
    (repo / "tfhost.toml").write_text(
        "[host]\njit_compile = true\n\n[models.exact]\njit_compile = false\n"
    )
    return repo


def test_a_fleet_compiles_the_models_its_config_says(tmp_path: Path, gather_model: Path) -> None:
    repo = jit_repository(tmp_path, gather_model)
    settings = FleetSettings(poll_s=0.1, retry_backoff_s=0.2)
    with Fleet(repo, settings=settings).start(timeout=120) as fleet:
        np.testing.assert_array_equal(fleet.predict("fast", OUT_OF_RANGE)["value"], CLAMPED)
        with pytest.raises(TfhostError, match=r"not in \[0, 5\)"):
            fleet.predict("exact", OUT_OF_RANGE)
        assert {m.name: m.jit_compile for m in fleet.models()} == {"fast": True, "exact": False}


def test_tfhost_serve_says_and_runs_xla_as_triton_does(tmp_path: Path, gather_model: Path) -> None:
    """Triton's TensorFlow backend takes XLA as ``optimization.graph.level = 1``: the V2
    config says it, over REST and gRPC, and an inference shows XLA's clamped gather."""
    import tritonclient.grpc as triton_grpc
    import tritonclient.http as triton_http
    from tritonclient.utils import InferenceServerException

    repo = jit_repository(tmp_path, gather_model)
    with ServerProcess([str(repo)]) as server:
        assert server.rest is not None and server.grpc is not None
        rest = triton_http.InferenceServerClient(server.rest.removeprefix("http://"))
        grpc = triton_grpc.InferenceServerClient(server.grpc)
        try:
            for name, level in (("fast", 1), ("exact", 0)):
                # Unset, the graph message is left out of the JSON, as Triton prints it.
                optimization = rest.get_model_config(name)["optimization"]
                assert optimization.get("graph", {"level": 0})["level"] == level, name
                proto = grpc.get_model_config(name).config
                assert proto.optimization.graph.level == level, name
            assert "graph" not in rest.get_model_config("exact")["optimization"]
            index = triton_http.InferInput("index", [2], "INT32")
            index.set_data_from_numpy(OUT_OF_RANGE["index"])
            result = rest.infer("fast", [index])
            np.testing.assert_array_equal(result.as_numpy("value"), CLAMPED)
            with pytest.raises(InferenceServerException, match=r"not in \[0, 5\)"):
                rest.infer("exact", [index])
        finally:
            rest.close()
            grpc.close()
