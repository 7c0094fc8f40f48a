"""tfhost doctor on real artifacts: each scenario runs doctor once (module fixtures).

Every run spawns real TensorFlow child processes (alone, the naive ways, tfhost), so the
scenarios are few and the assertions many.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tfhost import Format
from tfhost.cli import app
from tfhost.diagnosis import (
    DIAGNOSIS_SCHEMA,
    CauseKind,
    Diagnosis,
    Outcome,
    Way,
    compare,
    doctor,
    expand_repositories,
    model_names,
)
from tfhost.diagnosis.inputs import make_inputs, small_shape, user_inputs
from tfhost.diagnosis.report import render_markdown, render_text, verdict_table
from tfhost.errors import InputError, NotFound
from tfhost.specs import SignatureSpec, TensorSpec

from .conftest import ArtifactMap
from .schema import validate

DOCS = Path(__file__).parent.parent / "docs" / "doctor.md"


def outcome(d: Diagnosis, model: str, way: Way) -> Outcome:
    return d.verdict(model, way).outcome


def cause_kind(d: Diagnosis, model: str, way: Way) -> CauseKind | None:
    cause = d.verdict(model, way).cause
    return None if cause is None else cause.kind


# -- pure parts: inputs, comparison, names ------------------------------------------------


def test_generated_inputs_are_deterministic_and_cover_dtypes() -> None:
    signature = SignatureSpec(
        inputs={
            "f": TensorSpec("f", "float32", (None, 3)),
            "h": TensorSpec("h", "float16", (4,)),
            "i": TensorSpec("i", "int64", (None,)),
            "u": TensorSpec("u", "uint8", (2, 2)),
            "b": TensorSpec("b", "bool", (None, None)),
            "s": TensorSpec("s", "string", (None,)),
            "any": TensorSpec("any", "float32", None),
        },
        outputs={},
    )
    first, second = make_inputs(signature), make_inputs(signature)
    for name in signature.inputs:
        np.testing.assert_array_equal(first[name], second[name])
    assert first["f"].shape == (2, 3) and first["f"].dtype == np.float32
    assert first["h"].dtype == np.float16 and first["h"].shape == (4,)
    assert first["i"].dtype == np.int64 and set(first["i"].tolist()) <= {0, 1, 2}
    assert first["u"].dtype == np.uint8 and first["b"].dtype == np.bool_
    assert all(isinstance(v, bytes) for v in first["s"].flat)
    assert first["any"].shape == (2,)
    assert small_shape((None, 7, None)) == (2, 7, 2)
    # Values do not repeat one constant: a model swapping rows would show.
    assert len(set(first["f"].ravel().tolist())) > 1


def test_generated_inputs_refuse_dtypes_they_cannot_make() -> None:
    signature = SignatureSpec(inputs={"r": TensorSpec("r", "resource", ())}, outputs={})
    with pytest.raises(InputError, match="--inputs"):
        make_inputs(signature)


def test_user_inputs_prefer_the_model_specific_key() -> None:
    signature = SignatureSpec(inputs={"x": TensorSpec("x", "float32", (None,))}, outputs={})
    provided = {"x": np.zeros(2), "a/x": np.ones(2)}
    np.testing.assert_array_equal(user_inputs("a", signature, provided, "f.npz")["x"], 1)
    np.testing.assert_array_equal(user_inputs("b", signature, provided, "f.npz")["x"], 0)
    # None of c's inputs: doctor makes them up. Some but not all: an error naming the keys.
    assert user_inputs("c", signature, {"y": np.zeros(2)}, "f.npz") is None
    both = SignatureSpec(
        inputs={name: TensorSpec(name, "float32", (None,)) for name in ("x", "z")}, outputs={}
    )
    with pytest.raises(InputError, match="'c/z'"):
        user_inputs("c", both, {"x": np.zeros(2)}, "f.npz")


def test_compare_uses_a_tight_float_tolerance_and_exact_other_dtypes() -> None:
    y = {"y": np.array([1.0, 2.0], np.float32)}
    assert compare(y, {"y": np.array([1.0, 2.0 + 1e-7], np.float32)}).equal
    different = compare(y, {"y": np.array([1.0, 2.01], np.float32)})
    assert not different.equal and different.max_abs_diff == pytest.approx(0.01, rel=1e-3)
    assert not compare({"k": np.array([1, 2])}, {"k": np.array([1, 3])}).equal
    assert not compare({"s": np.array([b"a"])}, {"s": np.array([b"b"])}).equal
    assert not compare(y, {"z": y["y"]}).equal
    assert not compare(y, {"y": y["y"][None]}).equal


def test_model_names_are_short_unique_and_host_valid(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "model.keras", tmp_path / "b" / "model.keras"
    assert model_names([a, b]) == ["a", "b"]
    assert model_names([tmp_path / "x" / "tf1", tmp_path / "y" / "m.h5"]) == ["tf1", "m"]
    same = tmp_path / "c" / "model.keras"
    assert len(set(model_names([same, same]))) == 2
    # Version folders, or a Keras file in one, are named for their model.
    (tmp_path / "ver" / "1").mkdir(parents=True)
    (tmp_path / "ver" / "2").mkdir(parents=True)
    keras = tmp_path / "mix" / "1" / "model.keras"
    assert model_names([tmp_path / "ver" / "1", keras]) == ["ver", "mix"]
    assert model_names([tmp_path / "ver" / "1", tmp_path / "ver" / "2"]) == ["ver-1", "ver-2"]


def test_a_model_repository_stands_for_its_models(artifacts: ArtifactMap, tmp_path: Path) -> None:
    """What ``tfhost serve`` takes: each model in it, by folder name, versions resolved by
    doctor as for any versioned folder; a model's own folders stay one model."""
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(artifacts[Format.TF2_SAVED_MODEL, 1.0], repo / "ranker" / "1")
    shutil.copytree(artifacts[Format.TF2_SAVED_MODEL, 2.0], repo / "ranker" / "2")
    shutil.copy(artifacts[Format.KERAS, 1.0], repo / "scorer.keras")
    single = artifacts[Format.TF1_SAVED_MODEL, 1.0]
    expanded = expand_repositories([repo, single, repo / "ranker"])
    assert expanded == [repo / "ranker", repo / "scorer.keras", single, repo / "ranker"]
    assert model_names(expanded[:3]) == ["ranker", "scorer", single.name]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert expand_repositories([empty]) == [empty]  # no models: doctor says what it is


def test_doctor_refuses_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        doctor([tmp_path / "nothing-here"])


# -- scenarios ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tf1_pair(artifacts: ArtifactMap, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two TF1 SavedModels with the same names, through the CLI with --json and --report."""
    report = tmp_path_factory.mktemp("report") / "doctor.md"
    paths = [str(artifacts[Format.TF1_SAVED_MODEL, s]) for s in (1.0, 2.0)]
    result = CliRunner().invoke(app, ["doctor", *paths, "--json", "--report", str(report)])
    return {"result": result, "report": report, "json": json.loads(result.stdout)}


def test_tf1_pair_wrong_answers_exit_1_with_colliding_names(tf1_pair: dict[str, Any]) -> None:
    result, document = tf1_pair["result"], tf1_pair["json"]
    assert result.exit_code == 1, result.output
    validate(document, DIAGNOSIS_SCHEMA)
    names = [m["name"] for m in document["models"]]
    assert names == ["tf1_saved_model-1", "tf1_saved_model-2"]
    verdicts = {(v["model"], v["way"]): v for v in document["verdicts"]}
    # Measured: in one graph both return the second model's answers; the first is wrong.
    shared = verdicts["tf1_saved_model-1", "shared_graph"]
    assert shared["outcome"] == "wrong answer"
    assert shared["cause"]["kind"] == "name_collision"
    assert shared["same_as"] == "tf1_saved_model-2"
    assert {"w", "b", "x", "y"} <= set(shared["cause"]["names"])
    assert shared["max_abs_diff"] > 1
    collided = {c["name"]: c for c in document["collisions"]}
    assert collided["w"]["kind"] == "variable" and collided["b"]["kind"] == "variable"
    assert collided["x"]["models"] == names
    # Variables come first: they explain the wrong answers.
    assert [c["kind"] for c in document["collisions"][:2]] == ["variable", "variable"]
    for name in names:
        assert verdicts[name, "alone"]["outcome"] == "ok"
        assert verdicts[name, "tfhost"]["outcome"] == "ok"
        assert verdicts[name, "load_model"]["outcome"] == "ok"
        recipe = verdicts[name, "graph_recipe"]
        assert recipe["outcome"] == "error" and recipe["cause"]["kind"] == "out_of_scope"
        assert "out of scope" in recipe["detail"] and recipe["counts"] is False
    assert document["models"][0]["format"] == "tf1_saved_model"
    assert document["models"][0]["written_by"]["tensorflow"]
    assert document["models"][0]["signatures"]["serving_default"]["inputs"]["x"]["shape"] == [
        None,
        3,
    ]
    assert any("Name collisions" in r for r in document["recommendations"])


def test_tf1_pair_steps_ran_in_fresh_processes_in_parallel(tf1_pair: dict[str, Any]) -> None:
    steps = tf1_pair["json"]["steps"]
    assert [s["step"] for s in steps] == [
        "alone",
        "alone",
        "shared_graph",
        "load_model",
        "graph_recipe",
        "tfhost",
    ]
    assert all(s["returncode"] == 0 and s["import_s"] > 0 for s in steps)
    environment = tf1_pair["json"]["environment"]
    assert environment["jobs"] == (os.cpu_count() or 1)
    if environment["jobs"] > 1:
        # Children overlap: the whole run takes less than its steps one after another.
        assert tf1_pair["json"]["elapsed_s"] < sum(s["wall_s"] for s in steps)


def test_tf1_pair_markdown_report_for_a_bug_report(tf1_pair: dict[str, Any]) -> None:
    text = tf1_pair["report"].read_text()
    assert text.startswith("## tfhost doctor report")
    assert "| tf1_saved_model-1 | ok | wrong answer [1] |" in text
    assert "### Colliding names" in text and "| `w` | variable |" in text
    assert "**Fix:**" in text and "<details>" in text


@pytest.fixture(scope="module")
def frozen_pair(artifacts: ArtifactMap) -> Diagnosis:
    return doctor([artifacts[Format.FROZEN_GRAPH, s] for s in (1.0, 2.0)])


def test_frozen_pair_second_model_runs_the_first_models_ops(frozen_pair: Diagnosis) -> None:
    d = frozen_pair
    assert d.exit_code == 1
    first, second = (m.name for m in d.models)
    assert outcome(d, first, Way.SHARED_GRAPH) is Outcome.OK
    wrong = d.verdict(second, Way.SHARED_GRAPH)
    assert wrong.outcome is Outcome.WRONG and wrong.same_as == first
    assert wrong.cause is not None and wrong.cause.kind is CauseKind.NAME_COLLISION
    assert {"x", "y", "w", "b", "MatMul"} <= set(wrong.cause.names)
    assert "x_1" in wrong.cause.summary  # says how TensorFlow renamed the second import
    for name in (first, second):
        assert outcome(d, name, Way.TFHOST) is Outcome.OK
        # No loader of the other ways reads a frozen GraphDef: n/a, not an error.
        assert outcome(d, name, Way.LOAD_MODEL) is Outcome.NOT_APPLICABLE
    assert d.ways() == [Way.ALONE, Way.SHARED_GRAPH, Way.TFHOST]
    assert {c.name for c in d.collisions} >= {"x", "y", "w", "b"}


@pytest.fixture(scope="module")
def legacy_pair(artifacts: ArtifactMap) -> Diagnosis:
    return doctor([artifacts[Format.KERAS_SAVED_MODEL, 1.0], artifacts[Format.KERAS, 2.0]])


def test_legacy_keras_saved_model_beside_keras3_loader_failure(legacy_pair: Diagnosis) -> None:
    d = legacy_pair
    assert d.exit_code == 1
    legacy, modern = (m.name for m in d.models)
    failure = d.verdict(legacy, Way.LOAD_MODEL)
    assert failure.outcome is Outcome.ERROR
    assert failure.cause is not None and failure.cause.kind is CauseKind.UNREADABLE_FORMAT
    assert "tf.saved_model.load" in failure.cause.fix and "tfhost[legacy]" in failure.cause.fix
    assert "legacy SavedModel format is not supported" in failure.detail
    assert outcome(d, modern, Way.LOAD_MODEL) is Outcome.OK
    assert outcome(d, modern, Way.GRAPH_RECIPE) is Outcome.NOT_APPLICABLE
    for name in (legacy, modern):
        assert outcome(d, name, Way.TFHOST) is Outcome.OK
    assert d.models[0].written_by.get("keras", "").startswith("2.")
    assert "Loaders" in " ".join(d.recommendations)


@pytest.fixture(scope="module")
def custom_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from .custom_layers import Scale, write_model

    path = tmp_path_factory.mktemp("custom") / "scaled.keras"
    return Path(write_model(str(path), Scale(3.0, name="scale")))


@pytest.fixture(scope="module")
def custom_missing(custom_model: Path, artifacts: ArtifactMap) -> Diagnosis:
    return doctor([custom_model, artifacts[Format.TF2_SAVED_MODEL, 1.0]])


def test_custom_layer_without_custom_objects_exit_2_naming_the_class(
    custom_missing: Diagnosis,
) -> None:
    d = custom_missing
    assert d.exit_code == 2
    assert "Scale" in d.summary
    alone = d.verdict("scaled", Way.ALONE)
    assert alone.outcome is Outcome.ERROR
    assert alone.cause is not None and alone.cause.kind is CauseKind.MISSING_CUSTOM_OBJECT
    assert alone.cause.names == ("Scale",)
    assert "custom_objects={'Scale': Scale}" in alone.cause.fix
    assert "--custom-objects" in alone.cause.fix
    assert d.models[0].needs["custom_objects"] == ["tfhost_tests>Scale"]
    assert outcome(d, "scaled", Way.TFHOST) is Outcome.ERROR
    assert outcome(d, "scaled", Way.LOAD_MODEL) is Outcome.NOT_RUN
    # The other model is still checked end to end.
    assert outcome(d, "tf2", Way.TFHOST) is Outcome.OK
    assert outcome(d, "tf2", Way.LOAD_MODEL) is Outcome.OK


@pytest.fixture(scope="module")
def custom_given(
    custom_model: Path, artifacts: ArtifactMap, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The same pair, the custom object given on the CLI, with the user's own inputs."""
    inputs = tmp_path_factory.mktemp("inputs") / "inputs.npz"
    np.savez(inputs, x=np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]))
    result = CliRunner().invoke(
        app,
        [
            "doctor",
            str(custom_model),
            str(artifacts[Format.TF2_SAVED_MODEL, 1.0]),
            "--custom-objects",
            "tests.custom_layers:Scale",
            "--inputs",
            str(inputs),
            "--json",
        ],
    )
    return {"result": result, "json": json.loads(result.stdout), "inputs": inputs}


def test_custom_layer_given_harmless_pair_exit_0(custom_given: dict[str, Any]) -> None:
    result, document = custom_given["result"], custom_given["json"]
    assert result.exit_code == 0, result.output
    validate(document, DIAGNOSIS_SCHEMA)
    counted = [v for v in document["verdicts"] if v["counts"]]
    assert all(v["outcome"] in ("ok", "n/a") for v in counted)
    assert {m["inputs"] for m in document["models"]} == {str(custom_given["inputs"])}
    assert [m["format"] for m in document["models"]] == ["keras", "tf2_saved_model"]


def test_function_api_takes_custom_object_classes(custom_model: Path) -> None:
    from tfhost.diagnosis.core import custom_object_specs

    from .custom_layers import Scale

    assert custom_object_specs({"Scale": Scale}) == {"Scale": "tests.custom_layers:Scale"}
    assert custom_object_specs(["tests.custom_layers:Scale"]) == {
        "Scale": "tests.custom_layers:Scale"
    }

    class Local:
        pass

    with pytest.raises(InputError, match="importable module"):
        custom_object_specs({"Local": Local})


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory, artifacts: ArtifactMap) -> dict[str, Any]:
    from .custom_layers import Bomb, write_model

    root = tmp_path_factory.mktemp("bombs")
    paths = [
        Path(write_model(str(root / f"{mode}.keras"), Bomb(mode, name="bomb")))
        for mode in ("abort", "hang")
    ]
    together = [
        Path(write_model(str(root / f"second{i}.keras"), Bomb("second", name="bomb")))
        for i in (1, 2)
    ]
    # A frozen graph using an op this TensorFlow does not have: it needs a library.
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef()
    graph.ParseFromString(artifacts[Format.FROZEN_GRAPH, 1.0].read_bytes())
    graph.node.add(name="custom", op="TfhostTestOnlyOp").input.append("y")
    custom_op = root / "custom_op.pb"
    custom_op.write_bytes(graph.SerializeToString())
    started = time.monotonic()
    diagnosis = doctor(
        [*paths, artifacts[Format.TF2_SAVED_MODEL, 1.0], *together, custom_op],
        preload=["tests.custom_layers"],
        timeout_s=30,
    )
    return {"diagnosis": diagnosis, "elapsed": time.monotonic() - started}


def test_crashing_and_hanging_models_are_verdicts_not_hangs(bombs: dict[str, Any]) -> None:
    d: Diagnosis = bombs["diagnosis"]
    assert d.exit_code == 2
    # The hang is cut at its 30 s timeout; nothing waits for the hour it sleeps.
    assert bombs["elapsed"] < 150
    abort = d.verdict("abort", Way.ALONE)
    assert abort.outcome is Outcome.ERROR and abort.cause is not None
    assert abort.cause.kind is CauseKind.CRASH and "SIGABRT" in abort.cause.summary
    assert "loading" in abort.cause.summary and "isolation='process'" in abort.cause.fix
    hang = d.verdict("hang", Way.ALONE)
    assert hang.cause is not None and hang.cause.kind is CauseKind.TIMEOUT
    assert "30 s" in hang.cause.summary
    for name in ("abort", "hang"):
        assert outcome(d, name, Way.TFHOST) is Outcome.ERROR
        assert outcome(d, name, Way.LOAD_MODEL) is Outcome.NOT_RUN
    assert outcome(d, "tf2", Way.ALONE) is Outcome.OK
    assert outcome(d, "second1", Way.ALONE) is Outcome.OK
    assert outcome(d, "second2", Way.ALONE) is Outcome.OK
    # Together, second2 takes the shared process down while loading...
    crash = d.verdict("second2", Way.LOAD_MODEL)
    assert crash.cause is not None and crash.cause.kind is CauseKind.CRASH
    assert "while loading this model" in crash.cause.summary
    # ...so the models loaded before it never got to run, and say who stopped them.
    for way in (Way.LOAD_MODEL, Way.TFHOST):
        stopped = d.verdict("tf2", way)
        assert stopped.outcome is Outcome.ERROR and stopped.cause is not None
        assert stopped.cause.names == ("second2",)
        assert "not reached" in stopped.cause.summary
    op = d.verdict("custom_op", Way.ALONE)
    assert op.cause is not None and op.cause.kind is CauseKind.MISSING_OP
    assert op.cause.names == ("TfhostTestOnlyOp",) and "preload" in op.cause.fix
    assert d.models[-1].needs["ops"] == ["TfhostTestOnlyOp"]
    assert outcome(d, "custom_op", Way.TFHOST) is Outcome.ERROR
    steps = {(s.step, s.models): s for s in d.steps}
    assert steps["alone", ("abort",)].returncode == -6
    assert steps["alone", ("hang",)].returncode is None
    assert any("isolation='process'" in r for r in d.recommendations)


# -- rendering and docs ------------------------------------------------------------------


def test_text_rendering_shows_table_causes_and_verdict(legacy_pair: Diagnosis) -> None:
    text = render_text(legacy_pair)
    assert "tfhost doctor: 2 model(s)" in text
    assert re.search(r"keras_sm\s*│\s*keras_saved_model\s*│\s*ok\s*│\s*error \[1\]", text)
    assert "Verdict (exit 1)" in text and "Recommendation:" in text
    markdown = render_markdown(legacy_pair)
    assert "| keras_sm | ok | error [1] | error [2] * | ok |" in markdown


def test_docs_show_current_doctor_output(tf1_pair: dict[str, Any], legacy_pair: Diagnosis) -> None:
    """docs/doctor.md is generated by scripts/make_doctor_docs.py; it must be current."""
    text = DOCS.read_text()
    assert "Generated by scripts/make_doctor_docs.py" in text
    tf1 = Diagnosis.from_dict(tf1_pair["json"])
    for diagnosis in (tf1, legacy_pair):
        assert verdict_table(diagnosis) in text, (
            "docs/doctor.md is stale: run python scripts/make_doctor_docs.py"
        )
    for heading in ("colliding pair", "harmless pair", "Keras 3 next to a legacy"):
        assert heading in text


def test_without_serving_default_doctor_runs_a_predict_signature_first() -> None:
    """A classify or regress signature takes serialized tf.Example protos, which doctor
    cannot make up: it is chosen only when nothing else is there (or when asked for)."""
    from tests.serve_support import TF_SERVING_DATA
    from tfhost.diagnosis.child import _methods, choose_signature

    methods = _methods(TF_SERVING_DATA / "saved_model_half_plus_two_cpu" / "00000123")
    assert methods["classify_x_to_y"] == "tensorflow/serving/classify"
    names = [name for name in methods if name != "serving_default"] + ["predict_y"]
    signatures = dict.fromkeys(names)
    methods["predict_y"] = "tensorflow/serving/predict"
    assert choose_signature(signatures, None, methods) == "predict_y"
    examples_only = {k: None for k in names if k != "predict_y"}
    assert choose_signature(examples_only, None, methods) == "classify_x_to_y"
    assert choose_signature(signatures, "regress_x_to_y", methods) == "regress_x_to_y"
    assert choose_signature({**signatures, "serving_default": None}, None, methods) == (
        "serving_default"
    )
