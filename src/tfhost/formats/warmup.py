"""TensorFlow Serving's warm-up: replay the requests a SavedModel ships before it serves.

A SavedModel may carry ``assets.extra/tf_serving_warmup_requests``, a TFRecord file of
``PredictionLog`` records. TensorFlow Serving replays them at load so the first real
requests do not pay for lazy initialisation (graph optimisation, kernel caches, memory
pools); tfhost does the same, in the cell that loaded the model (inline, or in its worker),
before the version is published. Predict, classify, regress and multi-inference logs are
replayed through the same codecs live requests go through (``tfhost.serve``); session-run
logs are counted and skipped.

``warmup = "synthetic"`` instead runs ``serving_default`` once on inputs made from its
signature (zeros, one row where a dimension is unknown), for models that ship no records.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfhost.errors import LoadError, NotFound, TfhostError
from tfhost.servable import Servable
from tfhost.specs import DEFAULT_SIGNATURE, TensorSpec, Warmup
from tfhost.validation import check_inputs, zeros

_log = logging.getLogger(__name__)

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_RECORDS = 1000  # TF Serving's limit on warm-up records
SYNTHETIC = "synthetic"


def warm_up(model: str, directory: Path, servable: Servable, mode: Warmup = True) -> int:
    """Warm ``servable`` up as ``mode`` says; how many requests ran.

    A record that fails (a bad input, a signature the model lacks) fails the load with a
    ``LoadError`` naming the record, as in TensorFlow Serving: a model that cannot answer its
    own warm-up requests is not ready to serve.
    """
    if mode == SYNTHETIC:
        return _synthetic(model, servable)
    path = directory / WARMUP_FILE
    if not path.is_file():
        return 0
    from tensorflow_serving.apis import prediction_log_pb2

    from tfhost.serve import signature_defs, tfs_methods
    from tfhost.serve.codecs import tfs_proto

    def run(signature: str, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        spec = servable.signatures.get(signature)
        if spec is None:
            raise NotFound(f"no signature {signature!r}; it has {sorted(servable.signatures)}")
        checked = check_inputs(model, signature, spec, inputs, check_shapes=servable.static_shapes)
        return servable.run(signature, checked)

    defs = signature_defs.saved_signature_defs(directory) or {}
    ran = skipped = 0
    for index, record in enumerate(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()):
        if index >= MAX_RECORDS:
            raise LoadError(f"model {model!r}: {path} has more than {MAX_RECORDS} warm-up records")
        log = prediction_log_pb2.PredictionLog.FromString(record)
        kind = log.WhichOneof("log_type")
        signature = "(several)"
        try:
            if kind == "predict_log":
                signature, inputs, _ = tfs_proto.decode_predict_request(log.predict_log.request)
                run(signature, inputs)
            elif kind == "classify_log":
                signature = log.classify_log.request.model_spec.signature_name or DEFAULT_SIGNATURE
                tfs_methods.classify(run, defs, log.classify_log.request)
            elif kind == "regress_log":
                signature = log.regress_log.request.model_spec.signature_name or DEFAULT_SIGNATURE
                tfs_methods.regress(run, defs, log.regress_log.request)
            elif kind == "multi_inference_log":
                tfs_methods.multi_inference(run, defs, log.multi_inference_log.request)
            else:
                skipped += 1
                continue
        except (TfhostError, tf.errors.OpError, TypeError, ValueError) as exc:
            raise LoadError(
                f"model {model!r}: warm-up record {index} in {path} (signature "
                f"{signature!r}) failed: {exc}"
            ) from None
        ran += 1
    if skipped:
        _log.info("model %r: skipped %d warm-up records it cannot replay", model, skipped)
    return ran


def _synthetic(model: str, servable: Servable) -> int:
    """One call of ``serving_default`` on zeros shaped by its signature. Made-up inputs
    may not suit every model: a failure is logged, never fails the load."""
    spec = servable.signatures.get(DEFAULT_SIGNATURE)
    if spec is None:
        _log.warning("model %r: no %r signature to warm up", model, DEFAULT_SIGNATURE)
        return 0
    inputs = {name: _zeros(tensor) for name, tensor in spec.inputs.items()}
    try:
        checked = check_inputs(
            model, DEFAULT_SIGNATURE, spec, inputs, check_shapes=servable.static_shapes
        )
        servable.run(DEFAULT_SIGNATURE, checked)
    except (TfhostError, tf.errors.OpError, TypeError, ValueError) as exc:
        _log.warning("model %r: synthetic warm-up failed (the model still serves): %s", model, exc)
        return 0
    return 1


def _zeros(spec: TensorSpec) -> np.ndarray:
    shape = () if spec.shape is None else tuple(1 if d is None else d for d in spec.shape)
    return zeros(shape, spec.dtype)
