"""TensorFlow Serving's warm-up: replay the requests a SavedModel ships before it serves.

A SavedModel may carry ``assets.extra/tf_serving_warmup_requests``, a TFRecord file of
``PredictionLog`` records. TensorFlow Serving replays them at load so the first real
requests do not pay for lazy initialisation (graph optimisation, kernel caches, memory
pools); tfhost does the same, in the cell that loaded the model (inline, or in its worker),
before the version is published. Predict logs are replayed; other kinds of log are counted
and skipped, since tfhost serves predict signatures.
"""

from __future__ import annotations

import logging
from pathlib import Path

import tensorflow as tf

from tfhost.errors import LoadError, NotFound, TfhostError
from tfhost.servable import Servable
from tfhost.specs import DEFAULT_SIGNATURE
from tfhost.validation import check_inputs

_log = logging.getLogger(__name__)

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_RECORDS = 1000  # TF Serving's limit on warm-up records


def warm_up(model: str, directory: Path, servable: Servable) -> int:
    """Replay ``directory``'s warm-up requests on ``servable``; how many ran.

    A record that fails (a bad input, a signature the model lacks) fails the load with a
    ``LoadError`` naming the record, as in TensorFlow Serving: a model that cannot answer its
    own warm-up requests is not ready to serve.
    """
    path = directory / WARMUP_FILE
    if not path.is_file():
        return 0
    from tensorflow_serving.apis import prediction_log_pb2

    ran = skipped = 0
    for index, record in enumerate(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()):
        if index >= MAX_RECORDS:
            raise LoadError(f"model {model!r}: {path} has more than {MAX_RECORDS} warm-up records")
        log = prediction_log_pb2.PredictionLog.FromString(record)
        if log.WhichOneof("log_type") != "predict_log":
            skipped += 1
            continue
        request = log.predict_log.request
        signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
        try:
            spec = servable.signatures.get(signature)
            if spec is None:
                raise NotFound(f"no signature {signature!r}; it has {sorted(servable.signatures)}")
            inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
            checked = check_inputs(
                model, signature, spec, inputs, check_shapes=servable.static_shapes
            )
            servable.run(signature, checked)
        except (TfhostError, tf.errors.OpError, TypeError, ValueError) as exc:
            raise LoadError(
                f"model {model!r}: warm-up record {index} in {path} (signature "
                f"{signature!r}) failed: {exc}"
            ) from None
        ran += 1
    if skipped:
        _log.info("model %r: skipped %d warm-up records that are not predict logs", model, skipped)
    return ran
