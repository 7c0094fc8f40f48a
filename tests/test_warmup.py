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
