"""``tfhost inspect`` and ``tfhost predict`` on every format, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from tfhost import Format
from tfhost.cli import app
from tfhost.examples import SAMPLE_X, expected_y
from tfhost.inspection import INSPECTION_SCHEMA

from .conftest import ArtifactMap
from .schema import validate

runner = CliRunner()

# (stored variables, their bytes, where they are counted): the example is a 3x2 kernel and a
# bias of 2, float32. A Keras 3 export stores its variables twice (two tracked lists).
WEIGHTS = {
    Format.TF1_SAVED_MODEL: (2, 32, "checkpoint"),
    Format.TF2_SAVED_MODEL: (2, 32, "checkpoint"),
    Format.KERAS_SAVED_MODEL: (2, 32, "checkpoint"),
    Format.KERAS_EXPORT: (4, 64, "checkpoint"),
    Format.KERAS: (2, 32, "keras weights"),
    Format.KERAS_H5: (2, 32, "keras weights"),
    Format.FROZEN_GRAPH: (2, 32, "graph constants"),
}
WRITER_KEY = {
    Format.KERAS: "keras",
    Format.KERAS_H5: "keras",
    Format.FROZEN_GRAPH: "graph_def_producer",
}


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.value)
def test_inspect_every_format(fmt: Format, artifacts: ArtifactMap) -> None:
    path = artifacts[fmt, 2.0]
    document = as_json(invoke("inspect", str(path), "--json"))
    validate(document, INSPECTION_SCHEMA)
    assert document["format"] == fmt.value
    signature = document["signatures"]["serving_default"]
    (x,) = signature["inputs"].values()
    assert (x["dtype"], x["shape"]) == ("float32", [None, 3])
    (y,) = signature["outputs"].values()
    assert (y["dtype"], y["shape"]) == ("float32", [None, 2])
    count, size, source = WEIGHTS[fmt]
    assert document["variables"] == {"count": count, "bytes": size, "source": source}
    assert document["written_by"][WRITER_KEY.get(fmt, "tensorflow")]
    assert document["needs"] == {"custom_objects": [], "ops": []}
    assert document["signatures_error"] is None
    if fmt.value.endswith("saved_model") or fmt is Format.KERAS_EXPORT:
        assert document["tags"] == [["serve"]]
    text = invoke("inspect", str(path))
    assert text.exit_code == 0, text.output
    assert fmt.value in text.stdout and "serving_default" in text.stdout
    assert "float32" in text.stdout and "[?, 3]" in text.stdout


def test_inspect_names_missing_ops_and_custom_objects(
    tmp_path: Path, artifacts: ArtifactMap
) -> None:
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef()
    graph.ParseFromString(artifacts[Format.FROZEN_GRAPH, 1.0].read_bytes())
    node = graph.node.add(name="custom", op="TfhostTestOnlyOp")
    node.input.append("y")
    custom_op = tmp_path / "custom_op.pb"
    custom_op.write_bytes(graph.SerializeToString())
    result = invoke("inspect", str(custom_op), "--json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    validate(document, INSPECTION_SCHEMA)
    assert document["needs"]["ops"] == ["TfhostTestOnlyOp"]
    assert "TfhostTestOnlyOp" in document["signatures_error"]
    assert "preload" in document["signatures_error"]

    from .custom_layers import Scale, write_model

    # (Loading without Scale fails only where nothing registered it: a fresh process,
    # which test_doctor covers; this process imported it above.)
    scaled = write_model(str(tmp_path / "scaled.keras"), Scale(3.0, name="scale"))
    given = as_json(
        invoke("inspect", scaled, "--json", "--custom-objects", "tests.custom_layers:Scale")
    )
    assert given["needs"]["custom_objects"] == ["tfhost_tests>Scale"]
    assert "serving_default" in given["signatures"]


def test_inspect_reads_version_folders(tmp_path: Path, artifacts: ArtifactMap) -> None:
    import shutil

    for version in (1, 7):
        shutil.copytree(artifacts[Format.TF2_SAVED_MODEL, 1.0], tmp_path / "m" / str(version))
    document = as_json(invoke("inspect", str(tmp_path / "m"), "--json"))
    assert (document["version"], document["versions"]) == (7, [1, 7])
    older = as_json(invoke("inspect", str(tmp_path / "m"), "--json", "--version", "1"))
    assert older["path"].endswith("/m/1")


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.value)
def test_predict_every_format(fmt: Format, artifacts: ArtifactMap) -> None:
    literal = json.dumps(SAMPLE_X.tolist())
    document = as_json(
        invoke("predict", str(artifacts[fmt, 2.0]), "--input", f"x={literal}", "--json")
    )
    assert document["signature"] == "serving_default" and document["version"] == 1
    (output,) = document["outputs"].values()
    assert output["dtype"] == "float32" and output["shape"] == [2, 2]
    np.testing.assert_allclose(output["values"], expected_y(SAMPLE_X, 2.0), rtol=1e-6)


def test_predict_reads_npy_and_json_files_and_prints_a_table(
    tmp_path: Path, artifacts: ArtifactMap
) -> None:
    path = str(artifacts[Format.TF1_SAVED_MODEL, 1.0])
    np.save(tmp_path / "x.npy", SAMPLE_X)
    (tmp_path / "x.json").write_text(json.dumps(SAMPLE_X.tolist()))
    want = expected_y(SAMPLE_X, 1.0)
    for source in ("x.npy", "x.json"):
        document = as_json(invoke("predict", path, "--input", f"x=@{tmp_path / source}", "--json"))
        np.testing.assert_allclose(document["outputs"]["y"]["values"], want, rtol=1e-6)
    # One input: the name may be left out.
    table = invoke("predict", path, "--input", "[[1, 2, 3]]")
    assert table.exit_code == 0, table.output
    assert "float32" in table.stdout and "[1, 2]" in table.stdout
    assert "22.5" in table.stdout and "27.5" in table.stdout


def test_predict_feeds_half_plus_two_like_tensorflow_serving(half_plus_two: Path) -> None:
    # x is declared [-1, 1]; TensorFlow Serving's own tests feed it a [3] vector.
    document = as_json(
        invoke("predict", str(half_plus_two), "--input", "x=[1.0, 2.0, 5.0]", "--json")
    )
    assert document["outputs"]["y"]["values"] == [2.5, 3.0, 4.5]


def test_predict_errors_name_what_is_wrong(tmp_path: Path, artifacts: ArtifactMap) -> None:
    path = str(artifacts[Format.TF2_SAVED_MODEL, 1.0])
    wrong_dtype = invoke("predict", path, "--input", 'x=[["a", "b", "c"]]')
    assert wrong_dtype.exit_code == 2 and "expects float32" in wrong_dtype.output
    missing_file = invoke("predict", path, "--input", f"x=@{tmp_path / 'none.npy'}")
    assert missing_file.exit_code == 2 and "none.npy" in missing_file.output
    bad_signature = invoke("predict", path, "--input", "x=[[1,2,3]]", "--signature", "nope")
    assert bad_signature.exit_code == 2 and "serving_default" in bad_signature.output
    nothing = invoke("inspect", str(tmp_path / "nothing"))
    assert nothing.exit_code == 2 and "no artifact" in nothing.output


def _keras_model(path: Path, names: tuple[str | None, ...]) -> Path:
    """A .keras model adding its inputs of shape [batch, 3]; a None name lets Keras choose."""
    import keras

    inputs = [keras.Input((3,), name=name) for name in names]
    output = inputs[0] if len(inputs) == 1 else keras.layers.Add()(inputs)
    keras.Model(inputs, keras.layers.Identity()(output)).save(path)
    return path


def _input_names(path: Path) -> list[str]:
    return list(
        as_json(invoke("inspect", str(path), "--json"))["signatures"]["serving_default"]["inputs"]
    )


def test_predict_reads_each_input_form_and_names_the_inputs_of_a_wrong_name(
    tmp_path: Path,
) -> None:
    # Keras names the only input itself (input_layer, ...): NAME=VALUE with another name
    # is a wrong name, not a bare value.
    model = _keras_model(tmp_path / "effnet.keras", (None,))
    (name,) = _input_names(model)
    assert name.startswith("input_layer")
    np.save(tmp_path / "img.npy", SAMPLE_X)
    np.savez(tmp_path / "img.npz", img=SAMPLE_X)
    np.save(tmp_path / "a=b.npy", SAMPLE_X)  # a file name with "=" in it
    (tmp_path / "img.json").write_text(json.dumps(SAMPLE_X.tolist()))
    wrong = invoke("predict", str(model), "--input", f"x=@{tmp_path / 'img.npy'}")
    assert wrong.exit_code == 2
    assert f"model 'effnet' has no input 'x'; its inputs are ['{name}']" in " ".join(
        wrong.output.split()
    )
    for given in (
        f"{name}=@{tmp_path / 'img.npy'}",
        f"@{tmp_path / 'img.npy'}",
        f"{name}=@{tmp_path / 'img.npz'}",  # its only array
        f"@{tmp_path / 'img.npz'}",
        f"{name}=@{tmp_path / 'img.json'}",
        f"@{tmp_path / 'a=b.npy'}",
        f"{name}={json.dumps(SAMPLE_X.tolist())}",
        json.dumps(SAMPLE_X.tolist()),
    ):
        document = as_json(invoke("predict", str(model), "--input", given, "--json"))
        (output,) = document["outputs"].values()
        np.testing.assert_allclose(output["values"], SAMPLE_X, rtol=1e-6, err_msg=given)


def test_predict_feeds_several_inputs_from_names_or_one_npz(tmp_path: Path) -> None:
    model = _keras_model(tmp_path / "pair.keras", ("a", "b"))
    np.savez(tmp_path / "ab.npz", a=SAMPLE_X, b=SAMPLE_X * 10)
    np.savez(tmp_path / "ac.npz", a=SAMPLE_X, c=SAMPLE_X)
    np.save(tmp_path / "b.npy", SAMPLE_X * 10)
    want = SAMPLE_X * 11
    literal = json.dumps(SAMPLE_X.tolist())
    for given in (
        [f"@{tmp_path / 'ab.npz'}"],
        [f"a={literal}", f"b=@{tmp_path / 'b.npy'}"],
        [f"a=@{tmp_path / 'ab.npz'}", f"b=@{tmp_path / 'ab.npz'}"],  # each its own array
    ):
        args = [arg for item in given for arg in ("--input", item)]
        document = as_json(invoke("predict", str(model), *args, "--json"))
        (output,) = document["outputs"].values()
        np.testing.assert_allclose(output["values"], want, rtol=1e-6, err_msg=str(given))
    errors = {
        (literal,): "has inputs ['a', 'b']; write NAME=VALUE",
        (f"a={literal}", f"a={literal}"): "--input 'a' is given twice",
        (f"@{tmp_path / 'ac.npz'}",): "model 'pair' has no input 'c'; its inputs are ['a', 'b']",
        (f"a=@{tmp_path / 'ac.npz'}", f"b=@{tmp_path / 'ac.npz'}"): "holds ['a', 'c'], not 'b'",
    }
    for items, message in errors.items():
        args = [arg for item in items for arg in ("--input", item)]
        result = invoke("predict", str(model), *args)
        assert result.exit_code == 2, (items, result.output)
        assert message in " ".join(result.output.split()), (items, result.output)


def test_help_keeps_the_brackets_of_extras() -> None:
    """rich reads [word] as markup; the help of ``serve --ray`` must still name tfhost[ray]."""
    result = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "pip install 'tfhost[ray]'" in result.output
