"""TensorFlow Serving's Classify, Regress and MultiInference, over any way of running a
model.

As ``classifier.cc``, ``regressor.cc``, ``multi_inference.cc`` and ``util.cc`` do them:
the request's ``Input`` becomes one string tensor of serialized ``tf.Example``s (the
context's bytes before each example's, so protobuf's merge lets an example's feature
replace the context's), fed to the signature's single input ``inputs``; the outputs
(``classes``/``scores``, or ``outputs``) are checked and shaped into the result with
TensorFlow Serving's error texts.

``run(signature_name, inputs)`` runs one signature of the model and returns its outputs
by alias; ``signature_defs`` are the model's ``tensorflow.SignatureDef``s by key.

``method_check`` is TensorFlow Serving's ``--enable_signature_method_name_check``
(off by default there, so off here): when on, a signature's ``method_name`` must be the
one the API expects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import numpy as np

from tfhost.errors import InputError
from tfhost.serve.codecs.tfs_proto import dtype_name, make_model_spec
from tfhost.specs import DEFAULT_SIGNATURE

__all__ = [
    "CLASSIFY",
    "PREDICT",
    "REGRESS",
    "Run",
    "classify",
    "examples_tensor",
    "multi_inference",
    "regress",
]

Run = Callable[[str, dict[str, np.ndarray]], Mapping[str, np.ndarray]]

PREDICT: Final = "tensorflow/serving/predict"
CLASSIFY: Final = "tensorflow/serving/classify"
REGRESS: Final = "tensorflow/serving/regress"

_INPUTS: Final = "inputs"  # kClassifyInputs, kRegressInputs
_CLASSES: Final = "classes"
_SCORES: Final = "scores"
_OUTPUTS: Final = "outputs"  # kRegressOutputs


def examples_tensor(input_proto: Any) -> np.ndarray:
    """``InputToSerializedExampleTensor``: the ``Input``'s examples as a 1-D object array
    of serialized ``tf.Example`` bytes, each ``ExampleListWithContext`` example prefixed
    with the serialized context."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        serialized = [e.SerializeToString() for e in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        listed = input_proto.example_list_with_context
        context = listed.context.SerializeToString()
        serialized = [context + e.SerializeToString() for e in listed.examples]
    else:
        serialized = []
    if not serialized:
        raise InputError("Input is empty.")
    out = np.empty(len(serialized), object)
    out[:] = serialized
    return out


def _signature(signature_defs: Mapping[str, Any], model_spec: Any) -> tuple[str, Any]:
    name = model_spec.signature_name or DEFAULT_SIGNATURE
    found = signature_defs.get(name)
    if found is None:
        raise InputError(f"No signature was found with the name: {name}")
    return name, found


def _debug_string(message: Any) -> str:
    from google.protobuf import text_format

    return str(text_format.MessageToString(message))


def _shape_string(value: np.ndarray) -> str:
    """``TensorShape::DebugString``."""
    return "[" + ",".join(str(d) for d in value.shape) + "]"


# -- classify ---------------------------------------------------------------------------------


def _check_classification(signature: Any, method_check: bool) -> tuple[str, ...]:
    """``PreProcessClassification``: the output aliases to read (classes, then scores)."""
    if method_check and signature.method_name != CLASSIFY:
        raise InputError(
            f"Expected classification signature method_name to be {CLASSIFY}. "
            f"Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise InputError("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise InputError(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if _INPUTS not in signature.inputs:
        raise InputError(
            f"No classification inputs found in SignatureDef: {_debug_string(signature)}"
        )
    wanted = tuple(a for a in (_CLASSES, _SCORES) if a in signature.outputs)
    if not wanted:
        raise InputError(
            f'Expected classification signature outputs to contain at least one of "{_CLASSES}"'
            f' or "{_SCORES}". Signature was: {_debug_string(signature)}'
        )
    return wanted


def _fetch(outputs: Mapping[str, np.ndarray], wanted: tuple[str, ...]) -> dict[str, np.ndarray]:
    got = {alias: np.asarray(outputs[alias]) for alias in wanted if alias in outputs}
    if len(got) != len(wanted):
        raise InputError(f"Expected {len(wanted)} output tensor(s).  Got: {len(got)}")
    return got


def _label(value: object) -> str:
    # Class.label is a proto3 string: Python needs text. TensorFlow Serving copies the raw
    # bytes; bytes that are not UTF-8 become U+FFFD here rather than failing the request.
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _classification_result(
    outputs: Mapping[str, np.ndarray], num_examples: int, result: Any
) -> None:
    """``PostProcessClassificationResult``."""
    classes = outputs.get(_CLASSES)
    scores = outputs.get(_SCORES)
    if classes is not None:
        if classes.ndim != 2:
            raise InputError(
                f"Expected Tensor shape: [batch_size num_classes] but got {_shape_string(classes)}"
            )
        if classes.dtype.kind not in "OSU":
            raise InputError(
                f"Expected classes Tensor of DT_STRING. Got: {dtype_name(classes.dtype)}"
            )
        if classes.shape[0] != num_examples:
            raise InputError(
                f"Expected classes output batch size of {num_examples}. Got: {classes.shape[0]}"
            )
    if scores is not None:
        if scores.ndim != 2:
            raise InputError(
                f"Expected Tensor shape: [batch_size num_classes] but got {_shape_string(scores)}"
            )
        if scores.dtype != np.float32:
            raise InputError(f"Expected scores Tensor of DT_FLOAT. Got: {dtype_name(scores.dtype)}")
        if scores.shape[0] != num_examples:
            raise InputError(
                f"Expected scores output batch size of {num_examples}. Got: {scores.shape[0]}"
            )
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise InputError(
            "Tensors class and score should match in dim_size(1). "
            f"Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    labels = None if classes is None else classes.tolist()
    values = None if scores is None else scores.tolist()
    num_classes = (classes if classes is not None else scores).shape[1]  # type: ignore[union-attr]
    for i in range(num_examples):
        classifications = result.classifications.add()
        for c in range(num_classes):
            entry = classifications.classes.add()
            if labels is not None:
                entry.label = _label(labels[i][c])
            if values is not None:
                entry.score = values[i][c]


def classify(
    run: Run,
    signature_defs: Mapping[str, Any],
    request: Any,
    version: int | None = None,
    *,
    method_check: bool = False,
) -> Any:
    """``RunClassify``: a ``ClassificationResponse`` for a ``ClassificationRequest``.

    Its model_spec is ``MakeModelSpec``'s: the request's model name, the signature name
    (``serving_default`` for none) and ``version`` when given.
    """
    from tensorflow_serving.apis import classification_pb2

    name, signature = _signature(signature_defs, request.model_spec)
    wanted = _check_classification(signature, method_check)
    response = classification_pb2.ClassificationResponse()
    make_model_spec(response.model_spec, request.model_spec.name, name, version)
    examples = examples_tensor(request.input)
    outputs = _fetch(run(name, {_INPUTS: examples}), wanted)
    _classification_result(outputs, len(examples), response.result)
    return response


# -- regress ----------------------------------------------------------------------------------


def _check_regression(signature: Any, method_check: bool) -> tuple[str, ...]:
    """``PreProcessRegression``."""
    if method_check and signature.method_name != REGRESS:
        raise InputError(
            f"Expected regression signature method_name to be {REGRESS}. "
            f"Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise InputError("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise InputError("Expected one output Tensor.")
    if _INPUTS not in signature.inputs:
        raise InputError(f"No regression inputs found in SignatureDef: {_debug_string(signature)}")
    if _OUTPUTS not in signature.outputs:
        raise InputError(f"No regression outputs found in SignatureDef: {_debug_string(signature)}")
    return (_OUTPUTS,)


def _regression_result(outputs: Mapping[str, np.ndarray], num_examples: int, result: Any) -> None:
    """``PostProcessRegressionResult``."""
    value = outputs[_OUTPUTS]
    if not (value.ndim == 1 or (value.ndim == 2 and value.shape[1] == 1)):
        raise InputError(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{_shape_string(value)}"
        )
    if value.shape[0] != num_examples:
        raise InputError(
            f"Input batch size did not match output batch size: {num_examples} vs. {value.shape[0]}"
        )
    if value.dtype != np.float32:
        raise InputError(f"Expected output Tensor of DT_FLOAT.  Got: {dtype_name(value.dtype)}")
    if value.size != num_examples:
        raise InputError(f"Expected output batch size to be {num_examples}.  Got: {value.size}")
    for v in value.reshape(-1).tolist():
        result.regressions.add().value = v


def regress(
    run: Run,
    signature_defs: Mapping[str, Any],
    request: Any,
    version: int | None = None,
    *,
    method_check: bool = False,
) -> Any:
    """``RunRegress``: a ``RegressionResponse`` for a ``RegressionRequest``."""
    from tensorflow_serving.apis import regression_pb2

    name, signature = _signature(signature_defs, request.model_spec)
    wanted = _check_regression(signature, method_check)
    response = regression_pb2.RegressionResponse()
    make_model_spec(response.model_spec, request.model_spec.name, name, version)
    examples = examples_tensor(request.input)
    outputs = _fetch(run(name, {_INPUTS: examples}), wanted)
    _regression_result(outputs, len(examples), response.result)
    return response


# -- multi-inference --------------------------------------------------------------------------


def multi_inference(
    run: Run,
    signature_defs: Mapping[str, Any],
    request: Any,
    version: int | None = None,
    *,
    method_check: bool = False,
) -> Any:
    """``TensorFlowMultiInferenceRunner::Infer``: every task checked first (one model, no
    signature twice, classify or regress only), then the examples, then each task's
    signature run on the same examples; one result per task, in order, each with its
    ``MakeModelSpec`` model_spec.

    TensorFlow Serving fetches every task's outputs in one session run; here each task
    runs its own signature, which gives the same outputs for a model without state.
    An unsupported ``method_name`` is TensorFlow Serving's UNIMPLEMENTED, raised here as
    an InputError (tfhost has no UNIMPLEMENTED code).
    """
    from tensorflow_serving.apis import inference_pb2

    model_name = ""
    seen: set[str] = set()
    plan: list[tuple[Any, str, Any, tuple[str, ...]]] = []
    for task in request.tasks:
        spec = task.model_spec
        if not spec.name:
            raise InputError("Found ModelSpec with an empty model name.")
        if not model_name:
            model_name = spec.name
        elif spec.name != model_name:
            raise InputError(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )
        name = spec.signature_name or DEFAULT_SIGNATURE
        if name in seen:
            raise InputError(f"Duplicate evaluation of signature: {name}")
        seen.add(name)
        signature = signature_defs.get(name)
        if signature is None:
            raise InputError(f"Requested signature not found in model graph: {name}")
        if task.method_name == CLASSIFY:
            wanted = _check_classification(signature, method_check)
        elif task.method_name == REGRESS:
            wanted = _check_regression(signature, method_check)
        else:
            raise InputError(f"Unsupported signature method_name: {task.method_name}")
        plan.append((task, name, signature, wanted))

    examples = examples_tensor(request.input)
    response = inference_pb2.MultiInferenceResponse()
    for task, name, _, wanted in plan:
        outputs = _fetch(run(name, {_INPUTS: examples}), wanted)
        result = response.results.add()
        if task.method_name == CLASSIFY:
            _classification_result(outputs, len(examples), result.classification_result)
        else:
            _regression_result(outputs, len(examples), result.regression_result)
        make_model_spec(result.model_spec, task.model_spec.name, name, version)
    return response
