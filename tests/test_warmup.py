"""TF Serving's warm-up requests (``assets.extra/tf_serving_warmup_requests``), replayed
before a version serves, inline and in a worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfhost import Host, LoadError, State


def _write(path: Path, records: list[tuple[str, np.ndarray]]) -> Path:
    """A counting TF2 SavedModel and its warm-up file: (signature, x) per record."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    class Counting(tf.Module):  # type: ignore[misc]  # TensorFlow has no type hints
        def __init__(self) -> None:
            super().__init__()
            self.calls = tf.Variable(0, dtype=tf.int64)

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")]
        )
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            with tf.control_dependencies([self.calls.assign_add(1)]):
                return {"y": x * 2.0}

        @tf.function(autograph=False, input_signature=[])  # type: ignore[untyped-decorator]
        def count(self) -> dict[str, tf.Tensor]:
            return {"calls": self.calls.read_value()}

    module = Counting()
    signatures = {"serving_default": module.serve, "count": module.count}
    tf.saved_model.save(module, str(path), signatures=signatures)
    extra = path / "assets.extra"
    extra.mkdir()
    with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:
        for signature, x in records:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "counting"
            request.model_spec.signature_name = signature
            request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path


@pytest.fixture(scope="module")
def counting(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x = np.ones((1, 2), np.float32)
    return _write(tmp_path_factory.mktemp("warm") / "counting", [("serving_default", x)] * 3)


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    records = [("serving_default", np.ones((1, 2), np.float32)), ("nope", np.ones((1, 2)))]
    return _write(tmp_path_factory.mktemp("warm") / "broken", records)


@pytest.mark.parametrize("isolation", ["inline", "process"])
def test_warm_up_requests_run_before_the_version_serves(counting: Path, isolation: str) -> None:
    with Host() as host:
        host.load("warm", counting, isolation=isolation)
        host.load("cold", counting, isolation=isolation, warmup=False)
        assert int(host.predict("warm", {}, signature="count")["calls"]) == 3
        assert int(host.predict("cold", {}, signature="count")["calls"]) == 0


def test_a_failing_warm_up_record_fails_the_load(broken: Path) -> None:
    with Host() as host:
        with pytest.raises(LoadError, match=r"warm-up record 1 .* signature 'nope'"):
            host.load("broken", broken)
        (info,) = host.status("broken")
        assert info.state is State.FAILED


def _examples_logs(path: Path, signature: str) -> None:
    """Classify, regress and multi-inference warm-up records for TF Serving's
    half_plus_two (its classify_x_to_y / regress_x_to_y take tf.Examples of "x")."""
    import tensorflow as tf
    from tensorflow_serving.apis import (
        classification_pb2,
        inference_pb2,
        prediction_log_pb2,
        regression_pb2,
    )

    def examples(request: object) -> None:
        example = request.input.example_list.examples.add()  # type: ignore[attr-defined]
        example.features.feature["x"].float_list.value.append(2.0)

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.signature_name = signature
    examples(classify)
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.signature_name = "regress_x_to_y"
    examples(regress)
    multi = inference_pb2.MultiInferenceRequest()
    for name in ("classify_x_to_y", "regress_x_to_y"):
        task = multi.tasks.add()
        task.model_spec.name = "hp2"
        task.model_spec.signature_name = name
        task.method_name = (
            "tensorflow/serving/classify"
            if name.startswith("classify")
            else "tensorflow/serving/regress"
        )
    examples(multi)
    logs = [
        prediction_log_pb2.PredictionLog(
            classify_log=prediction_log_pb2.ClassifyLog(request=classify)
        ),
        prediction_log_pb2.PredictionLog(
            regress_log=prediction_log_pb2.RegressLog(request=regress)
        ),
        prediction_log_pb2.PredictionLog(
            multi_inference_log=prediction_log_pb2.MultiInferenceLog(request=multi)
        ),
    ]
    extra = path / "assets.extra"
    extra.mkdir()
    with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:
        for log in logs:
            writer.write(log.SerializeToString())


def _half_plus_two_with(tmp_path: Path, signature: str) -> Path:
    import shutil

    from tests.serve_support import TF_SERVING_DATA

    base = tmp_path / "hp2"
    shutil.copytree(TF_SERVING_DATA / "saved_model_half_plus_two_cpu", base)
    _examples_logs(base / "00000123", signature)
    return base / "00000123"


def test_classify_regress_and_multi_inference_records_are_replayed(tmp_path: Path) -> None:
    from tfhost.formats import load
    from tfhost.formats.detect import detect
    from tfhost.formats.warmup import warm_up
    from tfhost.specs import LoadOptions

    version = _half_plus_two_with(tmp_path, "classify_x_to_y")
    servable = load("hp2", detect(version), LoadOptions(warmup=False))
    try:
        assert warm_up("hp2", version, servable) == 3
    finally:
        servable.close()
    with Host() as host:
        host.load("hp2", version.parent)
        assert host.status("hp2")[0].state is State.AVAILABLE


def test_a_failing_classify_record_fails_the_load(tmp_path: Path) -> None:
    version = _half_plus_two_with(tmp_path, "regress_x_to_y")  # not a classification
    with (
        Host() as host,
        pytest.raises(LoadError, match=r"record 0 .*'regress_x_to_y'\) failed: Expected classif"),
    ):
        host.load("hp2", version.parent)


@pytest.mark.parametrize("isolation", ["inline", "process"])
def test_synthetic_warm_up_calls_serving_default_once(counting: Path, isolation: str) -> None:
    with Host() as host:
        host.load("synthetic", counting, isolation=isolation, warmup="synthetic")
        assert int(host.predict("synthetic", {}, signature="count")["calls"]) == 1
        with pytest.raises(Exception, match="warmup= takes True, False or 'synthetic'"):
            host.load("bad", counting, warmup="sometimes")  # type: ignore[arg-type]
