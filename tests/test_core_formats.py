"""Format detection and loading: every format, versions, corrupt and unknown input."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tfhost import Format, FormatError, Host, LoadError, NotFound, State
from tfhost.examples import SAMPLE_X, expected_y, write_example
from tfhost.formats import detect

from .conftest import ArtifactMap


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.value)
def test_detect_names_every_format(fmt: Format, artifacts: ArtifactMap) -> None:
    artifact = detect(artifacts[fmt, 1.0])
    assert artifact.format is fmt
    assert artifact.path == artifacts[fmt, 1.0]


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.value)
def test_every_format_serves_its_signature(fmt: Format, artifacts: ArtifactMap) -> None:
    with Host() as host:
        info = host.load("m", artifacts[fmt, 2.0])
        assert info.format is fmt and info.state is State.AVAILABLE
        meta = host.metadata("m")
        sig = meta["signatures"]["serving_default"]
        assert sig["inputs"]["x"] == {"name": "x", "dtype": "float32", "shape": [None, 3]}
        (out,) = sig["outputs"].values()
        assert out["dtype"] == "float32" and out["shape"] == [None, 2]
        (y,) = host.predict("m", {"x": SAMPLE_X}).values()
        np.testing.assert_allclose(y, expected_y(SAMPLE_X, 2.0), rtol=1e-6)


def test_keras_signature_uses_the_models_own_names(artifacts: ArtifactMap) -> None:
    with Host() as host:
        for fmt in (Format.KERAS, Format.KERAS_H5):
            info = host.load(fmt.value, artifacts[fmt, 1.0])
            spec = info.signatures["serving_default"]
            assert list(spec.inputs) == ["x"] and list(spec.outputs) == ["y"]


@pytest.fixture(scope="module")
def versioned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("versioned") / "linear"
    for version, scale in ((1, 1.0), (3, 3.0)):
        write_example(root, Format.TF2_SAVED_MODEL, scale).rename(root / str(version))
    return root


def test_version_folders_pick_the_highest_or_the_one_asked(versioned: Path) -> None:
    assert detect(versioned).version == 3
    assert detect(versioned).versions == (1, 3)
    assert detect(versioned, 1).path == versioned / "1"
    with pytest.raises(NotFound, match=r"versions \[1, 3\], not version 2"):
        detect(versioned, 2)
    with Host() as host:
        assert host.load("m", versioned).version == 3
        assert host.load("m", versioned, version=1).version == 1
        np.testing.assert_allclose(
            host.predict("m", {"x": SAMPLE_X})["y"], expected_y(SAMPLE_X, 3.0)
        )
        np.testing.assert_allclose(
            host.predict("m", {"x": SAMPLE_X}, version=1)["y"], expected_y(SAMPLE_X, 1.0)
        )
        assert [m.version for m in host.models()] == [1, 3]
        host.unload("m", 3)
        np.testing.assert_allclose(
            host.predict("m", {"x": SAMPLE_X})["y"], expected_y(SAMPLE_X, 1.0)
        )


# -- bad artifacts: a clear FormatError, never a bare traceback, neighbours unharmed --


def _corrupt(tmp: Path, artifacts: ArtifactMap) -> dict[str, tuple[Path, str]]:
    """Each bad artifact and a fragment its error must contain."""
    cases: dict[str, tuple[Path, str]] = {}

    truncated_sm = tmp / "truncated_sm"
    shutil.copytree(artifacts[Format.TF2_SAVED_MODEL, 1.0], truncated_sm)
    pb = truncated_sm / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:50])
    cases["truncated saved_model.pb"] = (truncated_sm, "corrupt SavedModel")

    no_vars = tmp / "no_variables"
    shutil.copytree(artifacts[Format.TF1_SAVED_MODEL, 1.0], no_vars)
    shutil.rmtree(no_vars / "variables")
    cases["TF1 SavedModel without variables"] = (no_vars, "could not load")

    garbage_pb = tmp / "garbage.pb"
    garbage_pb.write_bytes(b"\xff\xfe not a protobuf \x00" * 10)
    cases["garbage .pb"] = (garbage_pb, "not a GraphDef")

    cut_keras = tmp / "cut.keras"
    cut_keras.write_bytes(artifacts[Format.KERAS, 1.0].read_bytes()[:200])
    cases["truncated .keras"] = (cut_keras, "corrupt zip")

    zip_no_config = tmp / "other.keras"
    import zipfile

    with zipfile.ZipFile(zip_no_config, "w") as z:
        z.writestr("readme.txt", "hello")
    cases["zip without config"] = (zip_no_config, "without config.json")

    weights_only = tmp / "weights.h5"
    import h5py

    with h5py.File(weights_only, "w") as f:
        f.create_dataset("w", data=np.ones(3))
    cases["weights-only h5"] = (weights_only, "weights only")

    cut_h5 = tmp / "cut.h5"
    cut_h5.write_bytes(artifacts[Format.KERAS_H5, 1.0].read_bytes()[:100])
    cases["truncated h5"] = (cut_h5, "corrupt HDF5")

    text = tmp / "notes.txt"
    text.write_text("just text")
    cases["text file"] = (text, "unknown file type")

    empty_dir = tmp / "empty"
    empty_dir.mkdir()
    cases["empty directory"] = (empty_dir, "without saved_model.pb")
    return cases


def test_corrupt_and_unknown_artifacts_give_format_errors(
    tmp_path: Path, artifacts: ArtifactMap
) -> None:
    with Host() as host:
        host.load("good", artifacts[Format.TF1_SAVED_MODEL, 2.0])
        for label, (path, fragment) in _corrupt(tmp_path, artifacts).items():
            with pytest.raises(FormatError) as caught:
                host.load("bad", path)
            message = str(caught.value)
            assert fragment in message, f"{label}: {message}"
            assert "Traceback" not in message
            assert host.status("bad")[0].state is State.FAILED
            np.testing.assert_allclose(
                host.predict("good", {"x": SAMPLE_X})["y"], expected_y(SAMPLE_X, 2.0)
            )
        host.unload("bad")
        assert [m.name for m in host.models()] == ["good"]


def test_missing_path_is_not_found(host: Host, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no artifact"):
        host.load("m", tmp_path / "nope")


# -- what a model needs: custom objects, ops, tf_keras -----------------------------


@pytest.fixture(scope="module")
def custom_layer_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, type]:
    import keras

    class Doubler(keras.layers.Layer):  # local: Keras cannot import it by name
        def call(self, x):  # type: ignore[no-untyped-def]
            return x * 2.0

    x = keras.Input((3,), name="x")
    y = Doubler(name="double")(x)
    path = tmp_path_factory.mktemp("custom") / "custom.keras"
    keras.Model(x, y).save(path)
    return path, Doubler


def test_missing_custom_object_is_named_with_the_fix(
    host: Host, custom_layer_model: tuple[Path, type]
) -> None:
    path, doubler = custom_layer_model
    with pytest.raises(LoadError) as caught:
        host.load("custom", path)
    assert "'Doubler'" in str(caught.value)
    assert "custom_objects=" in str(caught.value)
    host.load("custom", path, custom_objects={"Doubler": doubler})
    np.testing.assert_array_equal(host.predict("custom", {"x": SAMPLE_X})["double"], SAMPLE_X * 2)


def test_missing_op_is_named_with_the_fix(host: Host, tmp_path: Path) -> None:
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    x = graph_def.node.add(name="x", op="Placeholder")
    x.attr["dtype"].type = tf.float32.as_datatype_enum
    custom = graph_def.node.add(name="y", op="TfhostTestOnlyOp", input=["x"])
    custom.attr["T"].type = tf.float32.as_datatype_enum
    path = tmp_path / "custom_op.pb"
    path.write_bytes(graph_def.SerializeToString())
    with pytest.raises(LoadError) as caught:
        host.load("custom_op", path)
    assert "'TfhostTestOnlyOp'" in str(caught.value)
    assert "preload=" in str(caught.value)


def test_preload_imports_modules_and_reports_failures(host: Host, artifacts: ArtifactMap) -> None:
    host.load("m", artifacts[Format.TF2_SAVED_MODEL, 1.0], preload=["colorsys"])
    assert "colorsys" in sys.modules
    with pytest.raises(LoadError, match="preload 'tfhost_no_such_module' failed"):
        host.load("n", artifacts[Format.TF2_SAVED_MODEL, 1.0], preload=["tfhost_no_such_module"])


@pytest.fixture(scope="module")
def legacy_only_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An .h5 from tf.keras 2 using a layer Keras 3 removed (LocallyConnected1D)."""
    import tf_keras

    x = tf_keras.Input((4, 2), name="x")
    y = tf_keras.layers.LocallyConnected1D(1, 2, name="y", kernel_initializer="ones")(x)
    path = tmp_path_factory.mktemp("legacy") / "locally_connected.h5"
    tf_keras.Model(x, y).save(path, save_format="h5")
    return path


def test_h5_that_keras3_cannot_read_goes_through_tf_keras(host: Host, legacy_only_h5: Path) -> None:
    info = host.load("lc", legacy_only_h5)
    assert info.format is Format.KERAS_H5
    y = host.predict("lc", {"x": np.ones((1, 4, 2), np.float32)})["y"]
    np.testing.assert_array_equal(y, np.full((1, 3, 1), 4.0, np.float32))


def test_without_tf_keras_the_error_says_to_install_the_extra(legacy_only_h5: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["tf_keras"] = None  # as if tfhost[legacy] were not installed
        from tfhost import Host, LoadError
        with Host() as host:
            try:
                host.load("lc", {str(legacy_only_h5)!r})
            except LoadError as exc:
                print("ERROR:", exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert "ERROR:" in result.stdout, result.stderr[-2000:]
    assert "pip install 'tfhost[legacy]'" in result.stdout
    assert "LocallyConnected1D" in result.stdout


def test_lambda_h5_needs_explicit_trust(host: Host, tmp_path: Path) -> None:
    import tf_keras

    x = tf_keras.Input((3,), name="x")
    y = tf_keras.layers.Lambda(lambda t: t * 3.0, name="y")(x)
    path = tmp_path / "lambda.h5"
    tf_keras.Model(x, y).save(path, save_format="h5")
    with pytest.raises(LoadError, match=r"safe_mode=False"):
        host.load("lam", path)
    host.load("lam", path, safe_mode=False)
    np.testing.assert_array_equal(host.predict("lam", {"x": SAMPLE_X})["y"], SAMPLE_X * 3)


def test_frozen_graph_inputs_and_outputs_can_be_named(host: Host, artifacts: ArtifactMap) -> None:
    path = artifacts[Format.FROZEN_GRAPH, 1.0]
    info = host.load("frozen", path, inputs=["x"], outputs=["y:0", "add"])
    assert list(info.signatures["serving_default"].outputs) == ["y", "add"]
    out = host.predict("frozen", {"x": SAMPLE_X})
    np.testing.assert_array_equal(out["y"], out["add"])
    with pytest.raises(FormatError, match="no tensor 'nope'"):
        host.load("frozen2", path, outputs=["nope"])


def test_tf1_tags_are_chosen_or_refused(host: Host, artifacts: ArtifactMap) -> None:
    path = artifacts[Format.TF1_SAVED_MODEL, 1.0]
    assert host.load("t", path, tags=["serve"]).state is State.AVAILABLE
    with pytest.raises(FormatError, match=r"no MetaGraph tagged \['gpu'\]"):
        host.load("u", path, tags=["gpu"])
