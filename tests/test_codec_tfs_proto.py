"""TensorFlow Serving's protos: tensors, Predict, Classify/Regress/MultiInference, metadata
and model status, pure (no server). TensorFlow itself is the oracle for tensors
(``tf.make_ndarray``, ``tf.make_tensor_proto``, and ``tf.io.parse_tensor``, which is
C++ ``Tensor::FromProto``); TensorFlow Serving's own unit tests are replayed for the rest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    input_pb2,
    predict_pb2,
    regression_pb2,
)

from tfhost import Host
from tfhost.cells import Isolation
from tfhost.errors import Code, InputError, InternalError, NotFound
from tfhost.host import ModelInfo
from tfhost.serve import signature_defs as sd
from tfhost.serve import tfs_methods
from tfhost.serve.codecs import tfs_proto
from tfhost.serve.codecs.tfs_proto import array_to_tensor, tensor_to_array
from tfhost.specs import Format, SignatureSpec, TensorSpec
from tfhost.state import State


def exactly(text: str) -> str:
    return "^" + re.escape(text) + "$"


def starts(text: str) -> str:
    return "^" + re.escape(text)


DATA = Path(__file__).parent / "data" / "tf_serving"
TWO_VERSIONS = DATA / "saved_model_half_plus_two_2_versions"
TF2 = DATA / "saved_model_half_plus_two_tf2_cpu"
MODEL = "saved_model_half_plus_two_2_versions"  # TF Serving's kTestModelName


# -- tensors ----------------------------------------------------------------------------------

# Every dtype with a numpy form, with the TensorProto field AsProtoField fills.
DTYPES = {
    "float32": "float_val",
    "float64": "double_val",
    "int32": "int_val",
    "uint8": "int_val",
    "int16": "int_val",
    "int8": "int_val",
    "string": "string_val",
    "complex64": "scomplex_val",
    "int64": "int64_val",
    "bool": "bool_val",
    "bfloat16": "half_val",
    "uint16": "int_val",
    "complex128": "dcomplex_val",
    "float16": "half_val",
    "uint32": "uint32_val",
    "uint64": "uint64_val",
    "float8_e5m2": "float8_val",
    "float8_e4m3fn": "float8_val",
    "int4": "int_val",
    "uint4": "int_val",
}
# Small and wide enough to take both the plain and the wire-bytes paths (64+ values).
SHAPES = [(), (3,), (2, 100), (0, 4)]


def sample(name: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    count = int(np.prod(shape))
    dtype = tf.dtypes.as_dtype(name)
    if name == "string":
        items = [
            bytes(rng.integers(0, 256, rng.integers(0, 6)).astype(np.uint8)) for _ in range(count)
        ]
        out = np.empty(count, object)
        out[:] = items
        return out.reshape(shape)
    if name == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    numpy = dtype.as_numpy_dtype
    if dtype.is_integer:
        info = (
            ml_dtypes.iinfo(numpy)  # type: ignore[no-untyped-call]
            if name in ("int4", "uint4")
            else np.iinfo(numpy)
        )
        kind = np.uint64 if name == "uint64" else np.int64
        return rng.integers(int(info.min), int(info.max), shape, dtype=kind, endpoint=True).astype(
            numpy
        )
    if dtype.is_complex:
        return (rng.normal(size=shape) * 100 + 1j * rng.normal(size=shape)).astype(numpy)
    return (rng.normal(size=shape) * 4).astype(numpy)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and bits (NaN-safe, and exact for float8/bfloat16)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == object:
        return bool(a.tolist() == b.tolist())
    return bool(np.array_equal(a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8)))


def field_values(value: np.ndarray, field: str) -> Any:
    """What AsProtoField puts in ``field`` for ``value``, computed independently."""
    flat = value.reshape(-1)
    if field == "half_val":
        return flat.view(np.uint16).tolist()
    if field in ("scomplex_val", "dcomplex_val"):
        return flat.view(np.float32 if field == "scomplex_val" else np.float64).tolist()
    if field == "float8_val":
        return flat.tobytes()
    if field == "int_val" and flat.dtype.name in ("int4", "uint4"):
        return flat.astype(np.int64).tolist()
    return flat.tolist()


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", list(DTYPES))
def test_round_trip_every_dtype(name: str, shape: tuple[int, ...]) -> None:
    value = sample(name, shape)
    proto = array_to_tensor(value)

    # The layout AsProtoField writes: dtype, the shape (present even for a scalar), the
    # typed field, never tensor_content.
    expected = tensor_pb2.TensorProto(dtype=tf.dtypes.as_dtype(name).as_datatype_enum)
    expected.tensor_shape.SetInParent()
    for d in shape:
        expected.tensor_shape.dim.add().size = d
    if value.size:
        field = DTYPES[name]
        if field == "float8_val":
            expected.float8_val = field_values(value, field)
        else:
            getattr(expected, field).extend(field_values(value, field))
    assert proto == expected
    assert proto.HasField("tensor_shape") and not proto.tensor_content

    assert same(tensor_to_array(proto), value)
    assert same(tf.make_ndarray(proto), value)  # TensorFlow reads what we wrote
    if name not in ("int4", "uint4"):  # tf.io.parse_tensor has no int4 kernel
        parsed = tf.io.parse_tensor(proto.SerializeToString(), tf.dtypes.as_dtype(name)).numpy()
        assert same(np.asarray(parsed, dtype=value.dtype), value)  # C++ FromProto agrees
    # We read what TensorFlow writes (tensor_content for most numeric dtypes, typed
    # fields for strings, bools, halves and complex numbers).
    assert same(tensor_to_array(tf.make_tensor_proto(value)), value)


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes([*out, n])


def test_string_tensor_content_is_the_varint_string_list() -> None:
    # port::EncodeStringList, the DT_STRING tensor_content Tensor::FromProto reads: every
    # length as a varint, then every string.
    items = [b"a", b"", b"\xff" * 200, b"xyz"]
    flat = np.empty(4, object)
    flat[:] = items
    value = flat.reshape(2, 2)
    content = b"".join(varint(len(b)) for b in items) + b"".join(items)
    proto = proto_of(types_pb2.DT_STRING, [2, 2], tensor_content=content)
    assert same(tensor_to_array(proto), value)
    assert cpp_reads(proto, tf.string).tolist() == value.tolist()
    broken = proto_of(types_pb2.DT_STRING, [2, 2], tensor_content=content[:-1])
    with pytest.raises(InputError, match=re.escape("string list")):
        tensor_to_array(broken)
    with pytest.raises(tf.errors.InvalidArgumentError):
        cpp_reads(broken, tf.string)


def proto_of(dtype: int, dims: list[int] | None, **fields: Any) -> Any:
    proto = tensor_pb2.TensorProto(dtype=dtype, **fields)
    if dims is not None:
        for d in dims:
            proto.tensor_shape.dim.add().size = d
    return proto


def cpp_reads(proto: Any, dtype: tf.DType) -> np.ndarray:
    return np.asarray(tf.io.parse_tensor(proto.SerializeToString(), dtype).numpy())


@pytest.mark.parametrize(
    "proto",
    [
        proto_of(types_pb2.DT_FLOAT, [2, 3], float_val=[7.5]),
        proto_of(types_pb2.DT_FLOAT, [4], float_val=[1, 2]),  # pads with the last value
        proto_of(types_pb2.DT_FLOAT, [2, 2], float_val=[]),  # none: zeros
        proto_of(types_pb2.DT_INT32, [3, 100], int_val=list(range(-50, 50))),  # wire path
        proto_of(types_pb2.DT_INT64, [5], int64_val=[-(2**40)]),
        proto_of(types_pb2.DT_BOOL, [3], bool_val=[True]),
        proto_of(types_pb2.DT_HALF, [2, 2], half_val=[0x3C00]),  # 1.0
        proto_of(types_pb2.DT_COMPLEX64, [3], scomplex_val=[1, 2]),
        proto_of(types_pb2.DT_UINT64, [2], uint64_val=[2**64 - 1]),
        proto_of(types_pb2.DT_DOUBLE, [1, 300], double_val=[0.25] * 64),  # wire path, padded
        proto_of(types_pb2.DT_FLOAT, None, float_val=[3]),  # no shape: a scalar
    ],
    ids=lambda p: f"{tfs_proto.data_type_name(p.dtype)}-{[d.size for d in p.tensor_shape.dim]}",
)
def test_typed_field_fills_the_shape_as_tensorflow_does(proto: Any) -> None:
    dtype = tf.dtypes.as_dtype(proto.dtype)
    ours = tensor_to_array(proto)
    assert same(ours, cpp_reads(proto, dtype))
    assert same(ours, tf.make_ndarray(proto))


def test_one_string_fills_the_shape() -> None:
    proto = proto_of(types_pb2.DT_STRING, [2, 2], string_val=[b"x"])
    ours = tensor_to_array(proto)
    assert ours.dtype == object and ours.tolist() == [[b"x", b"x"], [b"x", b"x"]]
    assert ours.tolist() == cpp_reads(proto, tf.string).tolist()
    empty = tensor_to_array(proto_of(types_pb2.DT_STRING, [2], string_val=[]))
    assert empty.tolist() == [b"", b""]


@pytest.mark.parametrize(
    ("proto", "match", "tensorflow_rejects"),
    [
        (proto_of(types_pb2.DT_FLOAT, [3], tensor_content=b"\0" * 8), "Input size was 8", True),
        (proto_of(types_pb2.DT_FLOAT, [2], float_val=[1, 2, 3]), "has 3 values", False),
        (proto_of(types_pb2.DT_STRING, [1], string_val=[b"a", b"b"]), "has 2 values", False),
        (proto_of(types_pb2.DT_INT32, [2], int_val=list(range(100))), "has 100 values", False),
        (proto_of(types_pb2.DT_INVALID, [1], float_val=[1]), "DT_INVALID", True),
        (proto_of(99, [1]), "Unsupported tensor dtype: 99", None),
        (proto_of(types_pb2.DT_RESOURCE, [1]), "DT_RESOURCE", None),
        (proto_of(types_pb2.DT_QINT8, [1], int_val=[1]), "DT_QINT8", None),
        (proto_of(types_pb2.DT_FLOAT, [-1, 2]), "not fully defined", True),
    ],
    ids=[
        "content_size",
        "too_many_floats",
        "too_many_strings",
        "too_many_wire",
        "dt_invalid",
        "dt_unknown",
        "dt_resource",
        "dt_qint8",
        "negative_dim",
    ],
)
def test_bad_protos_are_input_errors(
    proto: Any, match: str, tensorflow_rejects: bool | None
) -> None:
    with pytest.raises(InputError, match=match) as caught:
        tensor_to_array(proto)
    assert caught.value.code is Code.INVALID_ARGUMENT
    if tensorflow_rejects is None:
        return
    try:
        cpp_reads(proto, tf.float32 if proto.dtype == 0 else tf.dtypes.as_dtype(proto.dtype))
        rejected = False
    except (tf.errors.InvalidArgumentError, ValueError, TypeError):
        rejected = True
    # Where TensorFlow accepts (too many values: it drops the extra), tfhost is stricter on
    # purpose; everywhere else both refuse.
    assert rejected is tensorflow_rejects


def test_unknown_rank_is_ignored_as_tensorflow_does() -> None:
    # TensorShape::IsValid: complete shapes tolerate unknown_rank, for compatibility.
    shape = tensor_shape_pb2.TensorShapeProto(unknown_rank=True)
    shape.dim.add().size = 2
    proto = proto_of(types_pb2.DT_FLOAT, None, tensor_shape=shape, float_val=[1, 2])
    assert same(tensor_to_array(proto), cpp_reads(proto, tf.float32))
    assert tensor_to_array(proto).shape == (2,)


def test_empty_tensor_ignores_values_as_tensorflow_does() -> None:
    proto = proto_of(types_pb2.DT_FLOAT, [0, 3], float_val=[1, 2, 3, 4])
    assert same(tensor_to_array(proto), np.zeros((0, 3), np.float32))
    assert cpp_reads(proto, tf.float32).shape == (0, 3)


def test_array_to_tensor_fills_a_given_proto_and_clears_it() -> None:
    response = predict_pb2.PredictResponse()
    response.outputs["y"].string_val.append(b"old")
    response.outputs["y"].tensor_content = b"old"
    array_to_tensor(np.array([[1.5, 2.5]], np.float32), response.outputs["y"])
    out = response.outputs["y"]
    assert list(out.float_val) == [1.5, 2.5] and not out.string_val and not out.tensor_content
    assert [d.size for d in out.tensor_shape.dim] == [1, 2]


def test_array_to_tensor_other_array_forms() -> None:
    big_endian = np.arange(6, dtype=">f4").reshape(2, 3)
    assert same(tensor_to_array(array_to_tensor(big_endian)), big_endian.astype("<f4"))
    text = array_to_tensor(np.array(["héllo", "b"]))
    assert list(text.string_val) == ["héllo".encode(), b"b"]
    assert list(array_to_tensor(np.array([b"ab", b"c"])).string_val) == [b"ab", b"c"]
    mixed = np.array(["a", b"b"], dtype=object)
    assert list(array_to_tensor(mixed).string_val) == [b"a", b"b"]
    with pytest.raises(InternalError, match=re.escape("cannot encode")):
        array_to_tensor(np.array(["2020-01-01"], dtype="datetime64[D]"))
    with pytest.raises(InternalError, match=re.escape("holds a int")):
        array_to_tensor(np.array([1, b"b"], dtype=object))


def test_varints_cover_the_64_bit_range() -> None:
    values = np.array([0, 1, 127, 128, 16383, 16384, 2**32, 2**63, 2**64 - 1], dtype=np.uint64)
    big = np.tile(values, 10)  # over the wire-path threshold
    proto = array_to_tensor(big)
    assert list(proto.uint64_val) == big.tolist()
    assert same(tensor_to_array(proto), big)
    negatives = np.array([-1, -(2**31), 2**31 - 1, 0] * 20, np.int32)
    proto = array_to_tensor(negatives)
    assert list(proto.int_val) == negatives.tolist()
    assert same(tensor_to_array(proto), negatives)


# -- Predict ----------------------------------------------------------------------------------


def test_decode_predict_request() -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0, 2.0]], np.float32)))
    request.inputs["s"].CopyFrom(proto_of(types_pb2.DT_STRING, [2], string_val=[b"q"]))
    request.output_filter.extend(["y", "z"])
    signature, inputs, output_filter = tfs_proto.decode_predict_request(request)
    assert signature == "serving_default"
    assert same(inputs["x"], np.array([[1.0, 2.0]], np.float32))
    assert inputs["s"].tolist() == [b"q", b"q"]
    assert output_filter == ("y", "z")
    request.model_spec.signature_name = "regress_x_to_y"
    assert tfs_proto.decode_predict_request(request)[0] == "regress_x_to_y"

    request.inputs["bad"].CopyFrom(proto_of(types_pb2.DT_FLOAT, [3], tensor_content=b"\0"))
    with pytest.raises(InputError, match=r"^tensor parsing error: bad \(") as caught:
        tfs_proto.decode_predict_request(request)
    assert caught.value.code is Code.INVALID_ARGUMENT


def test_encode_predict_response_as_predict_util_test_expects() -> None:
    # PredictImplTest.PredictionSuccess: scalar 3 out, model_spec echoed with the
    # default signature name and the version.
    response = tfs_proto.encode_predict_response({"y": np.array(3, np.float32)}, MODEL, 123, "")
    expected = predict_pb2.PredictResponse()
    expected.model_spec.name = MODEL
    expected.model_spec.version.value = 123
    expected.model_spec.signature_name = "serving_default"
    out = expected.outputs["y"]
    out.dtype = types_pb2.DT_FLOAT
    out.float_val.append(3)
    out.tensor_shape.SetInParent()
    assert response == expected

    # PredictionWithNamedRegressionSignature; a pipeline has no version.
    response = tfs_proto.encode_predict_response(
        {"outputs": np.array([4.0], np.float32)}, MODEL, None, "regress_x2_to_y3"
    )
    assert response.model_spec.signature_name == "regress_x2_to_y3"
    assert not response.model_spec.HasField("version")
    assert list(response.outputs["outputs"].float_val) == [4.0]


def half_plus_two_signature() -> Any:
    signature = meta_graph_pb2.SignatureDef(method_name=tfs_methods.PREDICT)
    signature.inputs["x"].name = "x:0"
    signature.outputs["y"].name = "y:0"
    return signature


def test_prepare_predict_replays_predict_util_test() -> None:
    signature = half_plus_two_signature()
    x = {"x": np.array(2, np.float32)}
    # InputTensorsDontMatchModelSpecInputs
    with pytest.raises(InputError) as caught:
        tfs_proto.prepare_predict(signature, {"unknown_key1": x["x"], "unknown_key2": x["x"]})
    assert "Sent extra: {unknown_key1,unknown_key2}" in caught.value.message
    assert "Missing but required: {x}" in caught.value.message
    assert caught.value.message.startswith(
        "input size does not match signature: 2!=1 len({unknown_key1,unknown_key2}) != len({x})."
    )
    with pytest.raises(InputError, match=re.escape("input size does not match signature: 0!=1")):
        tfs_proto.prepare_predict(signature, {})  # EmptyInputList
    # OutputFiltersDontMatchModelSpecOutputs
    with pytest.raises(
        InputError,
        match=r"^output tensor alias not found in signature: output_filter Outputs expected "
        r"to be in the set \{y\}\.$",
    ):
        tfs_proto.prepare_predict(signature, x, ["output_filter"])
    assert tfs_proto.prepare_predict(signature, x, ["y"]) == (x, ("y",))
    with pytest.raises(InputError, match=exactly("duplicate output tensor alias: y")):
        tfs_proto.prepare_predict(signature, x, ["y", "y"])
    assert tfs_proto.prepare_predict(signature, x)[1] == ("y",)


def test_prepare_predict_feeds_signature_defaults() -> None:
    signature = half_plus_two_signature()
    signature.inputs["bias"].name = "bias:0"
    signature.defaults["bias"].CopyFrom(proto_of(types_pb2.DT_FLOAT, [1], float_val=[0.5]))
    feeds, _ = tfs_proto.prepare_predict(signature, {"x": np.array(2, np.float32)})
    assert same(feeds["bias"], np.array([0.5], np.float32))
    signature.inputs["other"].name = "other:0"
    with pytest.raises(InputError, match=r"^Signature input alias: other\(feed name: other:0\)"):
        tfs_proto.prepare_predict(signature, {"x": np.array(2, np.float32)})
    del signature.inputs["other"]
    with pytest.raises(InputError, match=starts("Inputs contains invalid name")):
        tfs_proto.prepare_predict(
            signature, {"x": np.array(2, np.float32), "typo": np.array(1, np.float32)}
        )


def test_find_predict_signature_is_failed_precondition() -> None:
    defs = {"serving_default": half_plus_two_signature()}
    assert tfs_proto.find_predict_signature(defs, "") is defs["serving_default"]
    with pytest.raises(
        tfs_proto.FailedPrecondition, match=exactly('Serving signature key "nope" not found.')
    ) as caught:
        tfs_proto.find_predict_signature(defs, "nope")
    assert caught.value.code is Code.FAILED_PRECONDITION


# -- classify (classifier_test.cc) ------------------------------------------------------------


def tensor_info(name: str) -> Any:
    return meta_graph_pb2.TensorInfo(name=name)


def classifier_defs(method_check: bool) -> dict[str, Any]:
    """ClassifierTest::SetUp's meta graph."""

    def signature(outputs: dict[str, str], method: str) -> Any:
        sig = meta_graph_pb2.SignatureDef()
        sig.inputs["inputs"].CopyFrom(tensor_info("input:0"))
        for alias, name in outputs.items():
            sig.outputs[alias].CopyFrom(tensor_info(name))
        if method_check:
            sig.method_name = method
        return sig

    classify = tfs_methods.CLASSIFY
    return {
        "serving_default": signature({"classes": "output:0", "scores": "score:0"}, classify),
        "output_plus_one": signature(
            {"scores": "outputPlusOne:0", "classes": "output:0"}, classify
        ),
        "invalid_regression_signature": signature(
            {"outputs": "outputPlusOne:0"}, tfs_methods.REGRESS
        ),
        "ImproperlySizedScoresSignature": signature(
            {"scores": "ImproperlySizedScores:0", "classes": "output:0"}, classify
        ),
    }


def feature_values(example: Any, name: str) -> list[Any]:
    feature = example.features.feature.get(name)
    if feature is None:
        return []
    kind = feature.WhichOneof("kind")
    return [] if kind is None else list(getattr(feature, kind).value)


def classifier_session(defs: Mapping[str, Any]) -> tfs_methods.Run:
    """ClassifierTest's FakeSession: classes from each example's "class" feature, scores
    from its "score" feature (+1 when the signature fetches outputPlusOne:0)."""

    def run(signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert list(inputs) == ["inputs"]
        examples = [example_pb2.Example.FromString(b) for b in inputs["inputs"].tolist()]
        names = {alias: info.name for alias, info in defs[signature].outputs.items()}
        offset = 1.0 if "outputPlusOne:0" in names.values() else 0.0
        num_classes = len(feature_values(examples[0], "class"))
        classes = np.array([feature_values(e, "class") for e in examples], object)
        classes = classes.reshape(len(examples), num_classes)
        scores = np.array([feature_values(e, "score") for e in examples], np.float32) + offset
        scores = scores.reshape(len(examples), num_classes)
        out: dict[str, np.ndarray] = {}
        for alias, name in names.items():
            if name == "output:0":
                out[alias] = classes
            elif name in ("score:0", "outputPlusOne:0"):
                out[alias] = scores
            elif name == "ImproperlySizedScores:0":
                out[alias] = np.zeros((len(examples), num_classes, 10), np.float32)
        return out

    return run


def class_example(pairs: list[tuple[str, float]]) -> Any:
    example = example_pb2.Example()
    example.features.feature["class"].bytes_list.value.extend(c.encode() for c, _ in pairs)
    example.features.feature["score"].float_list.value.extend(s for _, s in pairs)
    return example


def classification_request(*examples: Any, signature: str = "") -> Any:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "test_model"
    request.model_spec.signature_name = signature
    request.input.example_list.examples.extend(examples)
    return request


def classifications(response: Any) -> list[list[tuple[str, float]]]:
    return [[(c.label, c.score) for c in row.classes] for row in response.result.classifications]


@pytest.fixture(params=[False, True], ids=["no_method_check", "method_check"])
def method_check(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def classify_with(
    defs: Mapping[str, Any], request: Any, method_check: bool, run: tfs_methods.Run | None = None
) -> Any:
    return tfs_methods.classify(
        run or classifier_session(defs), defs, request, method_check=method_check
    )


def test_classify_example_list(method_check: bool) -> None:
    defs = classifier_defs(method_check)
    request = classification_request(
        class_example([("dos", 2), ("uno", 1)]), class_example([("cuatro", 4), ("tres", 3)])
    )
    response = classify_with(defs, request, method_check)
    assert classifications(response) == [[("dos", 2), ("uno", 1)], [("cuatro", 4), ("tres", 3)]]
    assert response.model_spec.name == "test_model"
    assert response.model_spec.signature_name == "serving_default"
    assert not response.model_spec.HasField("version")
    versioned = tfs_methods.classify(
        classifier_session(defs), defs, request, 7, method_check=method_check
    )
    assert versioned.model_spec.version.value == 7


def test_classify_example_list_with_context(method_check: bool) -> None:
    defs = classifier_defs(method_check)
    request = classification_request()
    listed = request.input.example_list_with_context
    listed.context.CopyFrom(class_example([("dos", 2), ("uno", 1)]))
    listed.examples.add()
    listed.examples.add()
    response = classify_with(defs, request, method_check)
    assert classifications(response) == [[("dos", 2), ("uno", 1)]] * 2


def test_classify_context_features_are_replaced_by_the_example(method_check: bool) -> None:
    # ExampleListWithContext_DuplicateFeatures
    defs = classifier_defs(method_check)
    request = classification_request()
    listed = request.input.example_list_with_context
    listed.context.CopyFrom(class_example([("uno", 1), ("dos", 2)]))
    listed.examples.add()
    listed.examples.add().CopyFrom(class_example([("tres", 3), ("cuatro", 4)]))
    response = classify_with(defs, request, method_check)
    assert classifications(response) == [[("uno", 1), ("dos", 2)], [("tres", 3), ("cuatro", 4)]]


def test_classify_classes_only_and_scores_only(method_check: bool) -> None:
    request = classification_request(
        class_example([("dos", 2), ("uno", 1)]), class_example([("cuatro", 4), ("tres", 3)])
    )
    defs = classifier_defs(method_check)
    del defs["serving_default"].outputs["scores"]
    response = classify_with(defs, request, method_check)
    assert classifications(response) == [[("dos", 0), ("uno", 0)], [("cuatro", 0), ("tres", 0)]]

    defs = classifier_defs(method_check)
    del defs["serving_default"].outputs["classes"]
    response = classify_with(defs, request, method_check)
    assert classifications(response) == [[("", 2), ("", 1)], [("", 4), ("", 3)]]


def test_classify_zero_scores_are_present(method_check: bool) -> None:
    defs = classifier_defs(method_check)
    del defs["serving_default"].outputs["classes"]
    request = classification_request(class_example([("minus", -1), ("zero", 0), ("one", 1)]))
    response = classify_with(defs, request, method_check)
    assert [c.score for c in response.result.classifications[0].classes] == [-1, 0, 1]


def test_classify_named_signatures(method_check: bool) -> None:
    defs = classifier_defs(method_check)
    examples = (
        class_example([("dos", 2), ("uno", 1)]),
        class_example([("cuatro", 4), ("tres", 3)]),
    )
    response = classify_with(
        defs, classification_request(*examples, signature="output_plus_one"), method_check
    )
    assert classifications(response) == [[("dos", 3), ("uno", 2)], [("cuatro", 5), ("tres", 4)]]
    assert response.model_spec.signature_name == "output_plus_one"

    for bad in ("invalid_regression_signature", "ImproperlySizedScoresSignature"):
        with pytest.raises(InputError) as caught:
            classify_with(defs, classification_request(*examples, signature=bad), method_check)
        assert caught.value.code is Code.INVALID_ARGUMENT
    with pytest.raises(InputError, match=exactly("No signature was found with the name: nope")):
        classify_with(defs, classification_request(*examples, signature="nope"), method_check)
    with pytest.raises(
        InputError, match=r"^Expected Tensor shape: \[batch_size num_classes\] but got \[2,2,10\]$"
    ):
        classify_with(
            defs,
            classification_request(*examples, signature="ImproperlySizedScoresSignature"),
            method_check,
        )


def test_classify_missing_signature_parts(method_check: bool) -> None:
    # MissingClassificationSignature: an empty SignatureDef.
    defs = {"serving_default": meta_graph_pb2.SignatureDef()}
    request = classification_request(class_example([("dos", 2)]))
    expected = (
        "Expected classification signature method_name"
        if method_check
        else "^Expected one input Tensor.$"
    )
    with pytest.raises(InputError, match=expected):
        classify_with(defs, request, method_check)
    sig = meta_graph_pb2.SignatureDef(method_name=tfs_methods.CLASSIFY)
    sig.inputs["x"].name = "x:0"
    sig.outputs["scores"].name = "s:0"
    with pytest.raises(
        InputError, match=starts("No classification inputs found in SignatureDef: ")
    ):
        classify_with({"serving_default": sig}, request, method_check)
    sig = meta_graph_pb2.SignatureDef(method_name=tfs_methods.CLASSIFY)
    sig.inputs["inputs"].name = "x:0"
    sig.outputs["probabilities"].name = "p:0"
    with pytest.raises(
        InputError,
        match=starts(
            'Expected classification signature outputs to contain at least one of "classes" '
            'or "scores"'
        ),
    ):
        classify_with({"serving_default": sig}, request, method_check)
    for alias in ("a", "b", "c"):
        sig.outputs[alias].name = f"{alias}:0"
    with pytest.raises(InputError, match=exactly("Expected one or two output Tensors, found 4")):
        classify_with({"serving_default": sig}, request, method_check)


@pytest.mark.parametrize("kind", ["unset", "example_list", "example_list_with_context"])
def test_classify_empty_input(method_check: bool, kind: str) -> None:
    defs = classifier_defs(method_check)
    request = classification_request()
    if kind == "unset":
        request.input.SetInParent()
    elif kind == "example_list":
        request.input.example_list.SetInParent()
    else:
        request.input.example_list_with_context.context.CopyFrom(class_example([("dos", 2)]))
    with pytest.raises(InputError, match=exactly("Input is empty.")) as caught:
        classify_with(defs, request, method_check)
    assert caught.value.code is Code.INVALID_ARGUMENT


def test_classify_run_fails(method_check: bool) -> None:
    def run(signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise InternalError("Run totally failed")

    with pytest.raises(InternalError, match=re.escape("Run totally failed")):
        classify_with(
            classifier_defs(method_check),
            classification_request(class_example([("dos", 2)])),
            method_check,
            run,
        )


def returning(outputs: dict[str, np.ndarray]) -> tfs_methods.Run:
    return lambda signature, inputs: outputs


@pytest.mark.parametrize(
    ("outputs", "match"),
    [
        (
            {"classes": np.full((1, 2), b"", object), "scores": np.zeros((2, 2), np.float32)},
            "^Expected classes output batch size of 2. Got: 1$",
        ),
        (
            {"classes": np.zeros((2, 2), np.float32), "scores": np.zeros((2, 2), np.float32)},
            "^Expected classes Tensor of DT_STRING. Got: DT_FLOAT$",
        ),
        (
            {"classes": np.full((2, 2), b"", object), "scores": np.zeros((1, 2), np.float32)},
            "^Expected scores output batch size of 2. Got: 1$",
        ),
        (
            {"classes": np.full((2, 2), b"", object), "scores": np.full((2, 2), b"", object)},
            "^Expected scores Tensor of DT_FLOAT. Got: DT_STRING$",
        ),
        (
            {"classes": np.full((2, 2), b"", object), "scores": np.zeros((2, 3), np.float32)},
            r"^Tensors class and score should match in dim_size\(1\). Got 2 vs. 3$",
        ),
        (
            {"classes": np.full((2, 2), b"", object), "scores": np.zeros((2, 2), np.float64)},
            "^Expected scores Tensor of DT_FLOAT. Got: DT_DOUBLE$",
        ),
        ({"classes": np.full((2, 2), b"", object)}, r"^Expected 2 output tensor\(s\).  Got: 1$"),
    ],
    ids=[
        "classes_batch",
        "classes_type",
        "scores_batch",
        "scores_type",
        "mismatched_classes",
        "scores_double",
        "missing_output",
    ],
)
def test_classify_bad_outputs(
    method_check: bool, outputs: dict[str, np.ndarray], match: str
) -> None:
    request = classification_request(
        class_example([("dos", 2), ("uno", 1)]), class_example([("cuatro", 4), ("tres", 3)])
    )
    with pytest.raises(InputError, match=match):
        classify_with(classifier_defs(method_check), request, method_check, returning(outputs))


def test_classify_method_name_check(method_check: bool) -> None:
    defs = classifier_defs(method_check)
    request = classification_request(class_example([("dos", 2), ("uno", 1)]))
    defs["serving_default"].method_name = tfs_methods.CLASSIFY
    classify_with(defs, request, method_check)
    for method in ("not/supported/method", ""):
        defs["serving_default"].method_name = method
        if method_check:
            with pytest.raises(
                InputError,
                match=exactly(
                    "Expected classification signature method_name to be "
                    f"tensorflow/serving/classify. Was: {method}"
                ),
            ):
                classify_with(defs, request, method_check)
        else:
            classify_with(defs, request, method_check)


def test_classify_labels_that_are_not_utf8() -> None:
    defs = classifier_defs(False)
    del defs["serving_default"].outputs["scores"]
    outputs = {"classes": np.array([[b"\xff", "text"]], object)}
    response = tfs_methods.classify(
        returning(outputs), defs, classification_request(class_example([("a", 1)]))
    )
    assert [c.label for c in response.result.classifications[0].classes] == ["\ufffd", "text"]


# -- regress (regressor_test.cc) --------------------------------------------------------------


def regressor_defs(method_check: bool) -> dict[str, Any]:
    """RegressorTest::SetUp's meta graph."""

    def signature(outputs: dict[str, str], method: str) -> Any:
        sig = meta_graph_pb2.SignatureDef()
        sig.inputs["inputs"].CopyFrom(tensor_info("input:0"))
        for alias, name in outputs.items():
            sig.outputs[alias].CopyFrom(tensor_info(name))
        if method_check:
            sig.method_name = method
        return sig

    regress = tfs_methods.REGRESS
    return {
        "serving_default": signature({"outputs": "output:0"}, regress),
        "output_plus_one": signature({"outputs": "outputPlusOne:0"}, regress),
        "invalid_classification_signature": signature(
            {"classes": "outputPlusOne:0"}, tfs_methods.CLASSIFY
        ),
        "ImproperlySizedOutputSignature": signature(
            {"outputs": "ImproperlySizedOutput:0"}, regress
        ),
    }


def regressor_session(defs: Mapping[str, Any]) -> tfs_methods.Run:
    """RegressorTest's FakeSession: each example's "output" feature, [batch] for output:0,
    [batch, 1] and +1 for outputPlusOne:0, a rank-3 tensor for ImproperlySizedOutput:0."""

    def run(signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        examples = [example_pb2.Example.FromString(b) for b in inputs["inputs"].tolist()]
        values = np.array([feature_values(e, "output")[0] for e in examples], np.float32)
        name = defs[signature].outputs["outputs"].name
        if name == "ImproperlySizedOutput:0":
            return {"outputs": np.zeros((len(examples), 1, 10), np.float32)}
        if name == "outputPlusOne:0":
            return {"outputs": (values + 1).reshape(-1, 1)}
        return {"outputs": values}

    return run


def output_example(value: float) -> Any:
    example = example_pb2.Example()
    example.features.feature["output"].float_list.value.append(value)
    return example


def regression_request(*examples: Any, signature: str = "") -> Any:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "test_model"
    request.model_spec.signature_name = signature
    request.input.example_list.examples.extend(examples)
    return request


def regress_with(
    defs: Mapping[str, Any], request: Any, method_check: bool, run: tfs_methods.Run | None = None
) -> Any:
    return tfs_methods.regress(
        run or regressor_session(defs), defs, request, method_check=method_check
    )


def regressions(response: Any) -> list[float]:
    return [r.value for r in response.result.regressions]


def test_regress_example_lists(method_check: bool) -> None:
    defs = regressor_defs(method_check)
    response = regress_with(
        defs, regression_request(output_example(2.0), output_example(3.0)), method_check
    )
    assert regressions(response) == [2.0, 3.0]
    assert response.model_spec.signature_name == "serving_default"

    request = regression_request()
    listed = request.input.example_list_with_context
    listed.examples.add()
    listed.examples.add()
    listed.context.CopyFrom(output_example(3.0))
    assert regressions(regress_with(defs, request, method_check)) == [3.0, 3.0]

    named = regression_request(
        output_example(2.0), output_example(3.0), signature="output_plus_one"
    )
    assert regressions(regress_with(defs, named, method_check)) == [3.0, 4.0]


def test_regress_bad_signatures(method_check: bool) -> None:
    defs = regressor_defs(method_check)
    examples = (output_example(2.0), output_example(3.0))
    with pytest.raises(InputError) as caught:  # InvalidNamedSignature
        regress_with(
            defs,
            regression_request(*examples, signature="invalid_classification_signature"),
            method_check,
        )
    assert caught.value.code is Code.INVALID_ARGUMENT
    with pytest.raises(
        InputError,
        match=exactly(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but "
            "got [2,1,10]"
        ),
    ):
        regress_with(
            defs,
            regression_request(*examples, signature="ImproperlySizedOutputSignature"),
            method_check,
        )
    # MissingRegressionSignature
    with pytest.raises(InputError):
        regress_with(
            {"serving_default": meta_graph_pb2.SignatureDef()},
            regression_request(*examples),
            method_check,
        )
    sig = meta_graph_pb2.SignatureDef(method_name=tfs_methods.REGRESS)
    sig.inputs["inputs"].name = "i:0"
    sig.outputs["y"].name = "y:0"
    with pytest.raises(
        InputError, match=starts("No regression outputs found in SignatureDef: inputs {")
    ):
        regress_with({"serving_default": sig}, regression_request(*examples), method_check)
    sig.outputs["z"].name = "z:0"
    with pytest.raises(InputError, match=exactly("Expected one output Tensor.")):
        regress_with({"serving_default": sig}, regression_request(*examples), method_check)


@pytest.mark.parametrize("kind", ["unset", "example_list", "example_list_with_context"])
def test_regress_empty_input(method_check: bool, kind: str) -> None:
    request = regression_request()
    if kind == "unset":
        request.input.SetInParent()
    elif kind == "example_list":
        request.input.example_list.SetInParent()
    else:
        request.input.example_list_with_context.context.CopyFrom(output_example(3.0))
    with pytest.raises(InputError, match=exactly("Input is empty.")):
        regress_with(regressor_defs(method_check), request, method_check)


def test_regress_bad_outputs(method_check: bool) -> None:
    defs = regressor_defs(method_check)
    request = regression_request(output_example(2.0))

    def fails(signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise InternalError("Run totally failed")

    with pytest.raises(InternalError, match=re.escape("Run totally failed")):
        regress_with(defs, request, method_check, fails)
    # UnexpectedOutputTensorSize
    with pytest.raises(
        InputError, match=exactly("Input batch size did not match output batch size: 1 vs. 2")
    ):
        regress_with(defs, request, method_check, returning({"outputs": np.zeros(2, np.float32)}))
    # UnexpectedOutputTensorType
    with pytest.raises(
        InputError, match=exactly("Expected output Tensor of DT_FLOAT.  Got: DT_STRING")
    ):
        regress_with(defs, request, method_check, returning({"outputs": np.full(1, b"", object)}))


def test_regress_method_name_check(method_check: bool) -> None:
    defs = regressor_defs(method_check)
    request = regression_request(output_example(2.0))
    defs["serving_default"].method_name = tfs_methods.REGRESS
    regress_with(defs, request, method_check)
    for method in ("not/supported/method", ""):
        defs["serving_default"].method_name = method
        if method_check:
            with pytest.raises(
                InputError,
                match=starts(
                    "Expected regression signature method_name to be tensorflow/serving/regress"
                ),
            ):
                regress_with(defs, request, method_check)
        else:
            regress_with(defs, request, method_check)


# -- the TF Serving test models: signature_defs, and classify/regress/multi-inference on them ---


def info_of(
    path: Path,
    fmt: Format | None,
    signatures: Mapping[str, SignatureSpec] | list[str],
    name: str = MODEL,
    version: int = 123,
    state: State = State.AVAILABLE,
    error: str | None = None,
    error_code: Code | None = None,
) -> ModelInfo:
    specs = (
        signatures
        if isinstance(signatures, Mapping)
        else {k: SignatureSpec({}, {}) for k in signatures}
    )
    return ModelInfo(
        name=name,
        version=version,
        state=state,
        isolation=Isolation.INLINE,
        path=path,
        format=fmt,
        error=error,
        error_code=error_code,
        signatures=specs,
    )


def serving_graph_defs(path: Path) -> dict[str, Any]:
    """The oracle: every SignatureDef of the serve meta graph, the whole file parsed."""
    saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    (graph,) = [g for g in saved.meta_graphs if "serve" in g.meta_info_def.tags]
    return dict(graph.signature_def)


HALF_PLUS_TWO_KEYS = [
    "classify_x2_to_y3",
    "classify_x_to_y",
    "regress_x2_to_y3",
    "regress_x_to_y",
    "regress_x_to_y2",
    "serving_default",
]


@pytest.mark.parametrize(
    ("folder", "fmt"),
    [
        ("saved_model_half_plus_two_2_versions/00000123", Format.TF1_SAVED_MODEL),
        ("saved_model_half_plus_two_2_versions/00000124", Format.TF1_SAVED_MODEL),
        ("saved_model_half_plus_two_cpu/00000123", Format.TF1_SAVED_MODEL),
        ("saved_model_half_plus_two_tf2_cpu/00000123", Format.TF2_SAVED_MODEL),
        ("saved_model_half_plus_three/00000123", Format.TF1_SAVED_MODEL),
        ("saved_model_counter/00000123", Format.TF1_SAVED_MODEL),
    ],
)
def test_signature_defs_of_the_test_models(folder: str, fmt: Format) -> None:
    path = DATA / folder
    everything = serving_graph_defs(path)
    served = sorted(k for k in everything if k != sd.INIT_OP_SIGNATURE)
    defs = sd.signature_defs(info_of(path, fmt, served))
    assert defs == everything  # all the meta graph's, the init op included
    again = sd.signature_defs(info_of(path, fmt, served))
    assert all(again[key] is defs[key] for key in defs)  # read once, cached


def test_signature_defs_keep_only_what_the_model_serves() -> None:
    tf2 = TF2 / "00000123"
    defs = sd.signature_defs(info_of(tf2, Format.TF2_SAVED_MODEL, ["serving_default"]))
    assert sorted(defs) == [sd.INIT_OP_SIGNATURE, "serving_default"]
    assert defs["serving_default"].defaults["x"].float_val == [0.0]
    spec = SignatureSpec(
        {"a": TensorSpec("a:0", "int64", (None, 3))}, {"b": TensorSpec("b:0", "string", None)}
    )
    defs = sd.signature_defs(
        info_of(TWO_VERSIONS / "00000123", Format.TF1_SAVED_MODEL, {"extra": spec})
    )
    assert list(defs) == ["extra"]  # served by tfhost but not in the file: made from the spec
    assert defs["extra"].method_name == tfs_methods.PREDICT


def test_signature_defs_synthesized_for_other_formats() -> None:
    spec = SignatureSpec(
        inputs={"x": TensorSpec("x", "float32", (None, 784)), "s": TensorSpec("s", "string", ())},
        outputs={
            "y": TensorSpec("Identity:0", "bfloat16", None),
            "n": TensorSpec("n", "qint8", (2,)),
        },
    )
    for fmt in (Format.KERAS, Format.KERAS_H5, Format.FROZEN_GRAPH):
        defs = sd.signature_defs(
            info_of(Path("/nonexistent/model.keras"), fmt, {"serving_default": spec})
        )
        sig = defs["serving_default"]
        expected = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
        x = expected.inputs["x"]
        x.name, x.dtype = "x", types_pb2.DT_FLOAT
        x.tensor_shape.dim.add().size = -1
        x.tensor_shape.dim.add().size = 784
        s = expected.inputs["s"]
        s.name, s.dtype = "s", types_pb2.DT_STRING
        s.tensor_shape.SetInParent()
        y = expected.outputs["y"]
        y.name, y.dtype = "Identity:0", types_pb2.DT_BFLOAT16
        y.tensor_shape.unknown_rank = True
        n = expected.outputs["n"]
        n.name, n.dtype = "n", types_pb2.DT_QINT8
        n.tensor_shape.dim.add().size = 2
        assert sig == expected


def test_signature_defs_cache_sees_a_rewritten_file(tmp_path: Path) -> None:
    folder = tmp_path / "1"
    shutil.copytree(TWO_VERSIONS / "00000123", folder)
    info = info_of(
        folder, Format.TF1_SAVED_MODEL, ["serving_default", "tensorflow/serving/regress"]
    )
    before = sd.signature_defs(info)
    assert before["tensorflow/serving/regress"].method_name == tfs_methods.PREDICT  # made up
    assert before["serving_default"].inputs["x"].name == "x:0"
    pb = folder / "saved_model.pb"
    shutil.copyfile(DATA / "saved_model_half_plus_three/00000123/saved_model.pb", pb)
    os.utime(pb, ns=(pb.stat().st_atime_ns, pb.stat().st_mtime_ns + 10**9))
    after = sd.signature_defs(info)
    assert after == serving_graph_defs(DATA / "saved_model_half_plus_three/00000123")
    assert after["tensorflow/serving/regress"].method_name == tfs_methods.REGRESS


def test_signature_defs_read_a_pbtxt(tmp_path: Path) -> None:
    from google.protobuf import text_format

    saved = saved_model_pb2.SavedModel.FromString(
        (TWO_VERSIONS / "00000123/saved_model.pb").read_bytes()
    )
    (tmp_path / "saved_model.pbtxt").write_text(text_format.MessageToString(saved))
    defs = sd.signature_defs(info_of(tmp_path, Format.TF1_SAVED_MODEL, HALF_PLUS_TWO_KEYS))
    assert defs == serving_graph_defs(TWO_VERSIONS / "00000123")


def half_plus_two_run(offsets: Mapping[str, float]) -> tfs_methods.Run:
    """The half_plus_two model's math in numpy: y = 0.5 * x + offset, x read from each
    serialized example's "x" feature; outputs shaped [batch, 1] as the graph's are."""

    def run(signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        examples = [example_pb2.Example.FromString(b) for b in inputs["inputs"].tolist()]
        x = np.array([feature_values(e, "x")[0] for e in examples], np.float32).reshape(-1, 1)
        y = (0.5 * x + offsets[signature]).astype(np.float32)
        alias = "scores" if signature.startswith("classify") else "outputs"
        return {alias: y}

    return run


HALF_PLUS_TWO = half_plus_two_run({"regress_x_to_y": 2, "regress_x_to_y2": 3, "classify_x_to_y": 2})
MODEL_DEFS = {
    "tf1": sd.signature_defs(
        info_of(TWO_VERSIONS / "00000123", Format.TF1_SAVED_MODEL, HALF_PLUS_TWO_KEYS)
    ),
    "tf2": sd.signature_defs(info_of(TF2 / "00000123", Format.TF2_SAVED_MODEL, HALF_PLUS_TWO_KEYS)),
}
# MultiInferenceTest turns the method-name check on for the TF1 model only (the TF2
# model's signatures all say tensorflow/serving/predict).
METHOD_CHECK = {"tf1": True, "tf2": False}


def x_examples(request: Any, *xs: float) -> None:
    for x in xs:
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)


def add_task(request: Any, signature: str, method: str, name: str = MODEL) -> None:
    task = request.tasks.add()
    task.model_spec.name = name
    task.model_spec.signature_name = signature
    task.method_name = method


@pytest.fixture(params=["tf1", "tf2"])
def model(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def multi(model: str, request: Any) -> Any:
    return tfs_methods.multi_inference(
        HALF_PLUS_TWO, MODEL_DEFS[model], request, 1, method_check=METHOD_CHECK[model]
    )


def test_multi_inference_errors(model: str) -> None:
    request = inference_pb2.MultiInferenceRequest()
    add_task(request, "regress_x_to_y", tfs_methods.REGRESS)
    with pytest.raises(InputError, match=re.escape("Input is empty")):  # MissingInputTest
        multi(model, request)
    x_examples(request, 2)
    cases: list[tuple[Callable[[Any], None], str]] = [
        (
            lambda r: add_task(r, "ThisSignatureDoesNotExist", tfs_methods.REGRESS),
            "signature not found",
        ),
        (
            lambda r: add_task(r, "regress_x_to_y", tfs_methods.REGRESS, name="ModelDoesNotExist"),
            "must access the same model name",
        ),
        (
            lambda r: add_task(r, "regress_x_to_y", tfs_methods.REGRESS),
            "^Duplicate evaluation of signature: regress_x_to_y$",
        ),
        (lambda r: add_task(r, "serving_default", tfs_methods.PREDICT), "Unsupported signature"),
        (
            lambda r: add_task(r, "classify_x_to_y", tfs_methods.CLASSIFY, name=""),
            "^Found ModelSpec with an empty model name.$",
        ),
    ]
    for extend, match in cases:
        bad = inference_pb2.MultiInferenceRequest()
        bad.CopyFrom(request)
        if "Unsupported" in match:
            del bad.tasks[:]
        extend(bad)
        with pytest.raises(InputError, match=match):
            multi(model, bad)


def expected_result(response: Any, signature: str, version: int = 1) -> Any:
    result = response.results.add()
    result.model_spec.name = MODEL
    result.model_spec.signature_name = signature
    result.model_spec.version.value = version
    return result


def test_multi_inference_results(model: str) -> None:
    # ValidSingleSignatureTest
    request = inference_pb2.MultiInferenceRequest()
    x_examples(request, 2)
    add_task(request, "regress_x_to_y", tfs_methods.REGRESS)
    expected = inference_pb2.MultiInferenceResponse()
    expected_result(expected, "regress_x_to_y").regression_result.regressions.add().value = 3.0
    assert multi(model, request) == expected
    # MultipleValidRegressSignaturesTest
    add_task(request, "regress_x_to_y2", tfs_methods.REGRESS)
    expected_result(expected, "regress_x_to_y2").regression_result.regressions.add().value = 4.0
    assert multi(model, request) == expected
    # RegressAndClassifySignaturesTest
    del request.tasks[1:]
    del expected.results[1:]
    add_task(request, "classify_x_to_y", tfs_methods.CLASSIFY)
    classified = expected_result(expected, "classify_x_to_y").classification_result
    classified.classifications.add().classes.add().score = 3.0
    assert multi(model, request) == expected


def test_multi_inference_without_tasks_checks_the_input() -> None:
    request = inference_pb2.MultiInferenceRequest()
    with pytest.raises(InputError, match=re.escape("Input is empty")):
        multi("tf1", request)
    x_examples(request, 1)
    assert multi("tf1", request) == inference_pb2.MultiInferenceResponse()


def test_classify_and_regress_on_half_plus_two(model: str) -> None:
    # http_rest_api_handler_test: classify_x_to_y on x=10 gives [["", 7]].
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "classify_x_to_y"
    x_examples(request, 10)
    response = tfs_methods.classify(
        HALF_PLUS_TWO, MODEL_DEFS[model], request, 123, method_check=METHOD_CHECK[model]
    )
    assert classifications(response) == [[("", 7.0)]]
    assert (response.model_spec.name, response.model_spec.version.value) == (MODEL, 123)

    request = regression_pb2.RegressionRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "regress_x_to_y2"
    x_examples(request, 1, 2, 3)
    response = tfs_methods.regress(
        HALF_PLUS_TWO, MODEL_DEFS[model], request, method_check=METHOD_CHECK[model]
    )
    assert regressions(response) == [3.5, 4.0, 4.5]


def test_examples_tensor_is_util_cc_serialization() -> None:
    request = input_pb2.Input()
    listed = request.example_list_with_context
    listed.context.features.feature["c"].int64_list.value.append(1)
    listed.examples.add().features.feature["x"].float_list.value.append(2.0)
    tensor = tfs_methods.examples_tensor(request)
    context = listed.context.SerializeToString()
    assert tensor.dtype == object and tensor.shape == (1,)
    assert tensor[0] == context + listed.examples[0].SerializeToString()
    merged = example_pb2.Example.FromString(tensor[0])
    assert sorted(merged.features.feature) == ["c", "x"]


# -- metadata ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    with Host() as h:
        h.load(MODEL, TWO_VERSIONS, version=123)
        h.load(MODEL, TWO_VERSIONS, version=124)
        h.load("tf2", TF2)
        yield h


def golden(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def test_metadata_json_equals_tf_serving_golden_tf1(host: Host) -> None:
    (info,) = host.status(MODEL, 123)
    response = sd.metadata_response(info.name, info.version, sd.signature_defs(info))
    assert json.loads(sd.metadata_json(response)) == golden(
        "saved_model_half_plus_two_2_versions_metadata.json"
    )


def test_metadata_json_equals_tf_serving_golden_tf2(host: Host) -> None:
    (info,) = host.status("tf2")
    info = dataclasses.replace(info, name=MODEL)  # the golden's name for this model
    response = sd.metadata_response(info.name, info.version, sd.signature_defs(info))
    expected = golden("saved_model_half_plus_two_tf2_2_versions_metadata.json")
    # That golden is used by no TF Serving test and is stale against the model next to
    # it: TF Serving commit 65b13b76 added "defaults": {} by hand to every signature but
    # the init op's (the printer prints every empty map), and 45bc2916 re-exported the
    # model with a default for serving_default's x (0.0, shape [1]).
    signatures = expected["metadata"]["signature_def"]["signature_def"]
    signatures["__saved_model_init_op"]["defaults"] = {}
    signatures["serving_default"]["defaults"] = {
        "x": {
            "dtype": "DT_FLOAT",
            "tensor_shape": {"dim": [{"size": "1", "name": ""}], "unknown_rank": False},
            "version_number": 0,
            "tensor_content": "",
            "half_val": [],
            "float_val": [0],
            "double_val": [],
            "int_val": [],
            "string_val": [],
            "scomplex_val": [],
            "int64_val": [],
            "bool_val": [],
            "dcomplex_val": [],
            "resource_handle_val": [],
            "variant_val": [],
            "uint32_val": [],
            "uint64_val": [],
            "float8_val": "",
        }
    }
    assert json.loads(sd.metadata_json(response)) == expected


def test_metadata_json_text_is_tf_serving_concatenation() -> None:
    defs = MODEL_DEFS["tf1"]
    response = sd.metadata_response(MODEL, 123, defs)
    text = sd.metadata_json(response).decode()
    assert text.startswith(
        "{\n"
        '"model_spec":{\n'
        ' "name": "saved_model_half_plus_two_2_versions",\n'
        ' "version": "123",\n'
        ' "signature_name": ""\n'
        "}\n"
        ",\n"
        '"metadata": {"signature_def": {\n'
        ' "signature_def": {\n'
        '  "classify_x2_to_y3": {\n'
        '   "inputs": {\n'
        '    "inputs": {\n'
        '     "name": "x2:0",\n'
        '     "dtype": "DT_FLOAT",\n'
        '     "tensor_shape": {\n'
        '      "dim": [\n'
        "       {\n"
        '        "size": "-1",\n'
        '        "name": ""\n'
        "       },\n"
    )
    assert text.endswith('   "defaults": {}\n  }\n }\n}\n}\n}\n')
    # The signature map part is the C++ printer's layout: what json.dumps(indent=1) gives
    # for the same parsed object, key order kept, plus the final newline.
    start = text.index('"signature_def": ') + len('"signature_def": ')
    body = text[start : -len("}\n}\n")]
    assert body == json.dumps(json.loads(body), indent=1) + "\n"


def test_metadata_errors() -> None:
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    with pytest.raises(InternalError, match=re.escape("Failed to find 'signature_def' key")):
        sd.metadata_json(response)
    response.metadata["signature_def"].Pack(predict_pb2.PredictRequest())
    with pytest.raises(
        InternalError, match=re.escape("Failed to unpack 'Any' object to 'SignatureDefMap'.")
    ):
        sd.metadata_json(response)
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    with pytest.raises(InputError, match=exactly("Missing ModelSpec")):
        sd.check_metadata_request(request)
    request.model_spec.name = MODEL
    with pytest.raises(
        InputError,
        match=exactly("GetModelMetadataRequest must specify at least one metadata_field"),
    ):
        sd.check_metadata_request(request)
    request.metadata_field.append("signature_def")
    sd.check_metadata_request(request)
    request.metadata_field.append("other")
    with pytest.raises(InputError, match=exactly("Metadata field other is not supported")):
        sd.check_metadata_request(request)


def test_metadata_response_packs_the_signature_map() -> None:
    response = sd.metadata_response(MODEL, 124, MODEL_DEFS["tf1"])
    assert response.model_spec.name == MODEL and response.model_spec.version.value == 124
    packed = response.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    unpacked = get_model_metadata_pb2.SignatureDefMap()
    assert packed.Unpack(unpacked)
    assert dict(unpacked.signature_def) == MODEL_DEFS["tf1"]


# -- the JSON printer -------------------------------------------------------------------------


def python_json(message: Any, preserve: bool) -> Any:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=preserve, always_print_fields_with_no_presence=True
    )


@pytest.mark.parametrize("preserve", [True, False])
def test_to_json_has_json_format_content(preserve: bool) -> None:
    messages = [
        get_model_metadata_pb2.SignatureDefMap(signature_def=MODEL_DEFS["tf2"]),
        array_to_tensor(np.array([[1.5, -2.0]], np.float32)),
        array_to_tensor(np.array([b"\x00\xff", b"x"], object)),
        sd.metadata_response(MODEL, 1, MODEL_DEFS["tf1"]),  # an Any inside
    ]
    for message in messages:
        assert json.loads(sd.to_json(message, preserve_proto_field_names=preserve)) == python_json(
            message, preserve
        )


def test_to_json_layout_order_and_escapes() -> None:
    spec = get_model_status_pb2.GetModelStatusRequest().model_spec
    spec.name = 'a"b\\c<d>\u2028e\x01\u00e9\U0001f600'
    spec.signature_name = "s"
    spec.version.value = 5
    text = sd.to_json(spec)
    # Field-number order (name 1, version 2, signature_name 3), C++'s escapes (< and >,
    # U+2028 and control characters as \u, other non-ASCII as it is), json_name keys.
    assert text == (
        "{\n"
        ' "name": "a\\"b\\\\c\\u003cd\\u003e\\u2028e\\u0001\u00e9\U0001f600",\n'
        ' "version": "5",\n'
        ' "signatureName": "s"\n'
        "}\n"
    )
    assert json.loads(text)["name"] == spec.name


@pytest.mark.parametrize(
    ("value", "single", "text"),
    [
        (0.1, True, "0.1"),
        (float(np.float32(1.234567)), True, "1.23456705"),  # 6 digits do not read back: 9
        (1.2345678901234567, False, "1.2345678901234567"),
        (2.5, True, "2.5"),
        (1 / 3, True, "0.333333343"),
        (0.1, False, "0.1"),
        (1 / 3, False, "0.33333333333333331"),
        (1e10, True, "1e+10"),
        (-0.0, False, "-0"),
        (float("inf"), True, '"Infinity"'),
        (float("-inf"), False, '"-Infinity"'),
        (float("nan"), True, '"NaN"'),
    ],
)
def test_to_json_floats_as_simple_ftoa(value: float, single: bool, text: str) -> None:
    proto = tensor_pb2.TensorProto()
    (proto.float_val if single else proto.double_val).append(value)
    field = "floatVal" if single else "doubleVal"
    assert f'"{field}": [\n  {text}\n ]' in sd.to_json(proto)


# -- status (get_model_status_impl_test.cc, http_rest_api_handler_test.cc) -----------------------


def status_request(name: str | None, version: int | None = None) -> Any:
    request = get_model_status_pb2.GetModelStatusRequest()
    if name is not None:
        request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    return request


@pytest.mark.parametrize(("name", "version"), [(MODEL, 123), ("tf2", None)])
def test_methods_on_the_real_models(host: Host, name: str, version: int | None) -> None:
    """The same requests through tfhost's own run of the TF Serving models."""
    with host.acquire(name, version) as handle:
        (info,) = host.status(name, handle.id.version)
        defs = sd.signature_defs(info)

        def run(signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return dict(handle.run(handle.check(inputs, signature)))

        request = inference_pb2.MultiInferenceRequest()
        x_examples(request, 2, 10)
        add_task(request, "regress_x_to_y", tfs_methods.REGRESS, name=name)
        add_task(request, "regress_x_to_y2", tfs_methods.REGRESS, name=name)
        add_task(request, "classify_x_to_y", tfs_methods.CLASSIFY, name=name)
        response = tfs_methods.multi_inference(run, defs, request, info.version)
        assert [r.value for r in response.results[0].regression_result.regressions] == [3, 7]
        assert [r.value for r in response.results[1].regression_result.regressions] == [4, 8]
        scores = response.results[2].classification_result.classifications
        assert [[c.score for c in row.classes] for row in scores] == [[3], [7]]
        assert response.results[2].model_spec.version.value == info.version


def test_model_status_replays_get_model_status_impl_test(host: Host) -> None:
    lookup: Callable[[str, int | None], list[ModelInfo]] = host.status
    # MissingOrEmptyModelSpecFailure
    with pytest.raises(InputError, match=exactly("Missing ModelSpec")) as caught:
        sd.model_status(lookup, get_model_status_pb2.GetModelStatusRequest())
    assert caught.value.code is Code.INVALID_ARGUMENT
    # InvalidModelNameFailure
    with pytest.raises(
        NotFound, match=exactly("Could not find any versions of model nonexistent_model")
    ):
        sd.model_status(lookup, status_request("nonexistent_model"))
    # InvalidModelVersionFailure
    with pytest.raises(NotFound, match=exactly(f"Could not find version 125 of model {MODEL}")):
        sd.model_status(lookup, status_request(MODEL, 125))
    # AllVersionsSuccess
    response = sd.model_status(lookup, status_request(MODEL))
    assert [s.version for s in response.model_version_status] == [124, 123]
    for status in response.model_version_status:
        assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
        assert status.status.error_code == 0 and status.status.error_message == ""
    # SingleVersionSuccess
    response = sd.model_status(lookup, status_request(MODEL, 123))
    assert [s.version for s in response.model_version_status] == [123]
    # A version label does not pick a version: TF Serving's status ignores it.
    request = status_request(MODEL)
    request.model_spec.version_label = "stable"
    assert len(sd.model_status(lookup, request).model_version_status) == 2


def test_status_json_as_http_rest_api_handler_test(host: Host) -> None:
    body = sd.status_json(sd.status_response(host.status(MODEL, 123)))
    assert json.loads(body) == {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert body == (
        b'{\n "model_version_status": [\n  {\n   "version": "123",\n   "state": "AVAILABLE",\n'
        b'   "status": {\n    "error_code": "OK",\n    "error_message": ""\n   }\n  }\n ]\n}\n'
    )


def test_status_states_and_failed_loads() -> None:
    infos = [
        info_of(DATA, None, [], version=v, state=s, error=e, error_code=c)
        for v, s, e, c in [
            (1, State.START, None, None),
            (2, State.LOADING, None, None),
            (3, State.AVAILABLE, None, None),
            (4, State.UNLOADING, None, None),
            (5, State.END, None, None),
            (6, State.FAILED, "Op type not registered 'Foo'", Code.FAILED_PRECONDITION),
            (7, State.FAILED, "worker died", None),
            (8, State.LOADING, "the last try failed", None),  # retrying: no error yet
        ]
    ]
    response = sd.status_response(infos)
    states = get_model_status_pb2.ModelVersionStatus.State
    got = [
        (s.version, states.Name(s.state), s.status.error_code, s.status.error_message)
        for s in response.model_version_status
    ]
    assert got == [
        (8, "LOADING", 0, ""),
        (7, "END", 2, "worker died"),  # UNKNOWN without a code
        (6, "END", 9, "Op type not registered 'Foo'"),
        (5, "END", 0, ""),
        (4, "UNLOADING", 0, ""),
        (3, "AVAILABLE", 0, ""),
        (2, "LOADING", 0, ""),
        (1, "START", 0, ""),
    ]
    assert all(s.HasField("status") for s in response.model_version_status)
    failed = json.loads(sd.status_json(response))["model_version_status"][2]
    assert failed == {
        "version": "6",
        "state": "END",
        "status": {
            "error_code": "FAILED_PRECONDITION",
            "error_message": "Op type not registered 'Foo'",
        },
    }


def test_pipeline_info_for_metadata() -> None:
    class Pipeline:
        name = "pipe"
        signatures: ClassVar = {
            "serving_default": SignatureSpec({"x": TensorSpec("x", "float32", (None,))}, {})
        }

    info = sd.pipeline_info(Pipeline())
    defs = sd.signature_defs(info)
    assert (
        list(defs) == ["serving_default"]
        and defs["serving_default"].inputs["x"].dtype == types_pb2.DT_FLOAT
    )
    assert json.loads(sd.metadata_json(sd.metadata_response(info.name, info.version, defs)))[
        "model_spec"
    ] == {"name": "pipe", "version": "0", "signature_name": ""}
