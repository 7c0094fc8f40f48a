"""One rule per job, wherever it is applied: format options, frozen-graph outputs, typed
load errors, how a child process's end is worded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tfhost import Format, Host
from tfhost.cells.lifeline import describe_exit, is_startup_noise, last_fatal
from tfhost.cells.messages import error_from, failure
from tfhost.cli import app
from tfhost.errors import (
    InputError,
    InternalError,
    LoadError,
    MissingCustomObject,
    MissingOp,
    ModelError,
    NotFound,
    TfhostError,
)
from tfhost.examples import SAMPLE_X
from tfhost.formats import detect, load
from tfhost.formats.options import FORMAT_OPTIONS, checked
from tfhost.inspection import graph_names
from tfhost.specs import DEFAULT_SIGNATURE, LoadOptions

from .conftest import ArtifactMap

ISOLATIONS = ("inline", "process")

# -- format options: declared once, refused when unknown ----------------------------------


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_misspelled_option_is_refused_naming_the_valid_ones(
    isolation: str, artifacts: ArtifactMap
) -> None:
    path = artifacts[Format.FROZEN_GRAPH, 1.0]
    with Host() as host:
        with pytest.raises(InputError) as refused:
            host.load("frozen", path, isolation=isolation, output=["y"])
        assert refused.value.message == (
            "model 'frozen': unknown option 'output' (did you mean 'outputs'?) for a "
            "frozen_graph artifact; it takes 'inputs', 'outputs'"
        )
        # The same option, spelled right, is read.
        info = host.load("named", path, isolation=isolation, outputs=["y", "add"])
        assert list(info.signatures[DEFAULT_SIGNATURE].outputs) == ["y", "add"]
        out = host.predict("named", {"x": SAMPLE_X})
        np.testing.assert_array_equal(out["y"], out["add"])


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.value)
def test_every_format_names_the_options_it_takes(fmt: Format, artifacts: ArtifactMap) -> None:
    artifact = detect(artifacts[fmt, 1.0])
    with pytest.raises(InputError) as refused:
        load("m", artifact, LoadOptions(format_options={"bogus": 1, "also_bogus": 2}))
    message = refused.value.message
    assert "unknown options 'also_bogus', 'bogus'" in message and fmt.value in message
    assert all(repr(option) in message for option in FORMAT_OPTIONS[fmt])


def test_a_loader_cannot_read_an_option_its_format_does_not_declare() -> None:
    options = checked("m", Format.FROZEN_GRAPH, {"outputs": ["y"]})
    assert options.get("outputs") == ["y"] and options.get("inputs") is None
    with pytest.raises(InternalError, match="does not declare"):
        options.get("tags")


# -- frozen graphs: one output rule for load, inspect and doctor --------------------------


@pytest.fixture(scope="module")
def control_dependent_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``z`` is only a control input of ``out``, and ``out`` only of the ``done`` group."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        y = tf.identity(x * 2.0, name="y")  # read by ``out``: not an output
        z = tf.identity(x + 1.0, name="z")  # never read, only waited for: an output
        with tf.control_dependencies([z]):
            out = tf.identity(y, name="out")
        tf.group(out, name="done")  # a NoOp waiting for ``out``: ``out`` is still an output
    path = tmp_path_factory.mktemp("control") / "control.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


def test_control_inputs_do_not_hide_outputs_from_load_or_inspect(
    control_dependent_graph: Path,
) -> None:
    path = control_dependent_graph
    with Host() as host:
        info = host.load("control", path)
        loaded = set(info.signatures[DEFAULT_SIGNATURE].outputs)
        out = host.predict("control", {"x": SAMPLE_X})
    assert loaded == {"out", "z"}
    np.testing.assert_allclose(out["out"], SAMPLE_X * 2.0)
    np.testing.assert_allclose(out["z"], SAMPLE_X + 1.0)
    result = CliRunner().invoke(app, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    inspected = json.loads(result.stdout)["signatures"][DEFAULT_SIGNATURE]["outputs"]
    assert set(inspected) == loaded
    # Doctor's names of what a caller feeds and fetches: the same rule.
    assert graph_names(detect(path)).signature_ops == ("out", "x", "z")


# -- typed load errors, the same inline and in a worker ---------------------------------


@pytest.fixture(scope="module")
def unknown_op_graph(artifacts: ArtifactMap, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef()
    graph.ParseFromString(artifacts[Format.FROZEN_GRAPH, 1.0].read_bytes())
    graph.node.add(name="custom", op="TfhostTestOnlyOp").input.append("y")
    path = tmp_path_factory.mktemp("unknown_op") / "custom_op.pb"
    path.write_bytes(graph.SerializeToString())
    return path


def test_a_missing_op_is_a_typed_load_error_inline_and_in_a_worker(
    unknown_op_graph: Path,
) -> None:
    errors = []
    with Host() as host:
        for isolation in ISOLATIONS:
            with pytest.raises(MissingOp) as missing:
                host.load(f"op-{isolation}", unknown_op_graph, isolation=isolation)
            errors.append(missing.value)
    inline, process = errors
    assert isinstance(inline, LoadError) and inline.op == process.op == "TfhostTestOnlyOp"
    assert process.message == inline.message.replace("op-inline", "op-process")


@pytest.mark.parametrize(
    "error",
    [
        MissingOp("model 'm': needs op 'Foo'", "Foo"),
        MissingCustomObject("model 'm': needs 'Scale'", "Scale"),
        ModelError("model 'm' failed", "NotFoundError"),
        LoadError("model 'm': needs tf_keras"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_cross_from_a_worker_with_their_class_and_fields(error: TfhostError) -> None:
    crossed = error_from(failure(7, error))
    assert type(crossed) is type(error) and crossed.message == error.message
    assert vars(crossed) == vars(error)


# -- a child process's end, in words ----------------------------------------------------


def test_exit_wording_and_fatal_lines() -> None:
    assert describe_exit(-6) == ("was killed by SIGABRT", "")
    assert describe_exit(-9)[1].startswith(" (by a person")
    assert describe_exit(3) == ("exited with code 3", "")
    assert describe_exit(-9, recycled="it ran late") == (
        "was recycled (SIGKILL)",
        " because it ran late",
    )
    assert describe_exit(0, stopping=True) == ("was shut down", "")
    lines = ["I0000 00:00 cuda_dnn.cc: start", "F0000 op.cc:1] Check failed: x", "done"]
    assert last_fatal(lines) == "F0000 op.cc:1] Check failed: x"
    assert last_fatal(["all fine"]) is None
    assert is_startup_noise(lines[0]) and not is_startup_noise(lines[1])


def test_doctor_words_a_childs_end_as_cells_do() -> None:
    from tfhost.diagnosis.runner import Job, StepResult

    def ended(returncode: int | None, timed_out: bool = False) -> str:
        return StepResult(Job("alone", []), [], returncode, timed_out, 1.0, "", 30).how_it_ended()

    assert ended(-6) == "was killed by SIGABRT"
    assert ended(2) == "exited with code 2"
    assert ended(0) == "exited before reporting every model"
    assert ended(None, timed_out=True) == "was killed after running past its 30 s timeout"


def test_doctor_reads_tfhost_errors_by_class_and_foreign_ones_by_their_words() -> None:
    from tfhost.diagnosis.child import describe

    described = describe(MissingCustomObject("model 'm': needs it", "Scale"))
    assert described["kind"] == "missing_custom_object" and described["names"] == ["Scale"]
    assert described["type"] == "MissingCustomObject"
    assert described["code"] == "FAILED_PRECONDITION"
    assert describe(MissingOp("model 'm': needs it", "Foo"))["names"] == ["Foo"]
    # A tfhost message is never read for words: only the class says what it is.
    plain = describe(LoadError("model 'm' at p: it uses the custom object 'Scale', which ..."))
    assert plain["kind"] == "error" and plain["names"] == []
    # TensorFlow's own errors (what the naive ways raise) are read for theirs.
    scope = describe(TypeError("<tf.Tensor 'w:0'> is out of scope and cannot be used here"))
    assert scope["kind"] == "out_of_scope" and scope["names"] == ["w:0"] and scope["code"] is None
    op = describe(ValueError("Op type not registered 'Foo' in binary"))
    assert op["kind"] == "missing_op" and op["names"] == ["Foo"]


@pytest.fixture(scope="module")
def sparse_outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF2 SavedModel whose default signature returns a SparseTensor, and a dense one."""
    import tensorflow as tf

    class Sparse(tf.Module):  # type: ignore[misc]  # TensorFlow has no type hints
        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")]
        )
        def sparse(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"s": tf.sparse.from_dense(x)}

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")]
        )
        def dense(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": x * 2.0}

    module = Sparse()
    path = tmp_path_factory.mktemp("sparse") / "sparse"
    signatures = {"serving_default": module.sparse, "dense": module.dense}
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path


@pytest.mark.parametrize("isolation", ["inline", "process"])
def test_sparse_signatures_are_not_served(sparse_outputs: Path, isolation: str) -> None:
    """As for graph-mode signatures: a sparse output is refused at load, not at each call."""
    with Host() as host:
        host.load("sparse", sparse_outputs, isolation=isolation)
        assert set(host.metadata("sparse")["signatures"]) == {"dense"}
        with pytest.raises(NotFound, match="no signature 'serving_default'"):
            host.predict("sparse", {"x": np.ones((1, 2), np.float32)})
        y = host.predict("sparse", {"x": np.ones((1, 2), np.float32)}, signature="dense")["y"]
        np.testing.assert_array_equal(y, np.full((1, 2), 2.0, np.float32))
