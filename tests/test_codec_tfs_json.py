"""TensorFlow Serving's REST JSON codec (tfhost.serve.codecs.tfs_json), pure: no server,
no TensorFlow runtime beyond importing the protos.

The core is a replay of ``tensorflow_serving/util/json_tensor_test.cc`` (every TEST, with
its inputs and golden outputs) and of the codec cases in ``http_rest_api_handler_test.cc``.
Around it: the exact texts and layouts TF Serving writes (derived from rapidjson 1.1.0's
PrettyWriter/Reader and abseil, which TF Serving builds against), each dtype's accepted
values, and properties tying the fast paths to the line-by-line port.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import orjson
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import classification_pb2, regression_pb2

from tfhost.errors import Code, InputError, NotFound
from tfhost.serve.codecs import tfs_json
from tfhost.serve.codecs.tfs_json import (
    PredictCall,
    decode_classification_request,
    decode_predict_request,
    decode_regression_request,
    encode_classification_result,
    encode_error,
    encode_predict_response,
    encode_regression_result,
)
from tfhost.specs import TensorSpec

# --------------------------------------------------------------------------------------
# Helpers


def inputs_of(**dtypes: str) -> Callable[[str], Mapping[str, TensorSpec]]:
    """The C++ tests' ``getmap(infomap)``: every signature has these inputs."""
    specs = {name: TensorSpec(name, dtype, None) for name, dtype in dtypes.items()}
    return lambda signature: specs


def decode(body: str | bytes, **dtypes: str) -> PredictCall:
    raw = body.encode() if isinstance(body, str) else body
    return decode_predict_request(raw, inputs_of(**dtypes))


def error(body: str | bytes, **dtypes: str) -> str:
    with pytest.raises(InputError) as info:
        decode(body, **dtypes)
    assert info.value.code is Code.INVALID_ARGUMENT
    return info.value.message


def same_tensor(actual: np.ndarray, expected: np.ndarray) -> None:
    """dtype, shape and every value (NaN == NaN, -0.0 != 0.0)."""
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if actual.dtype.kind == "f":
        assert np.array_equal(actual, expected, equal_nan=True)
        assert np.array_equal(np.signbit(actual), np.signbit(expected))
    else:
        assert actual.tolist() == expected.tolist()


def strings(*values: bytes, shape: tuple[int, ...] | None = None) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out.reshape(shape if shape is not None else (len(values),))


def parse_json(text: bytes) -> Any:
    """The C++ CompareJson: parse both sides (NaN/Infinity allowed) and compare values."""
    return json.loads(text)


def number_texts(text: bytes) -> list[str]:
    """CompareJsonAllValuesAsStrings: the number tokens exactly as written."""
    out: list[str] = []
    json.loads(text, parse_float=out.append, parse_int=out.append, parse_constant=out.append)
    return out


# ======================================================================================
# json_tensor_test.cc: FillPredictRequestFromJson


def test_single_unnamed_tensor() -> None:
    call = decode('{"instances": [[1,2],[3,4],[5,6]]}', default="int32")
    assert call.columnar is False
    assert call.signature == "serving_default"
    assert list(call.inputs) == ["default"]
    same_tensor(call.inputs["default"], np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int32))


def test_deeply_nested_well_formed() -> None:
    # 500000 levels in a key TF Serving ignores: rapidjson's iterative parser takes it (and
    # orjson, which would overflow the C stack, is never given it).
    body = '{"instances":[1], "nested":' + "[" * 500000 + "]" * 500000 + "}"
    call = decode(body, default="int32")
    assert list(call.inputs) == ["default"]
    same_tensor(call.inputs["default"], np.array([1], dtype=np.int32))


def test_deeply_nested_malformed() -> None:
    body = '{"signature_name":' + "[" * 500000 + "]" * 500000 + "}"
    message = error(body, default="int32")
    assert "key must be a string value" in message
    # JsonValueToDebugString stops writing once 256 bytes are out.
    assert message == (
        'JSON Value: {\n    "signature_name": ' + "[" * 232 + " not formatted correctly. "
        "'signature_name' key must be a string value."
    )


def test_mixed_input_for_float_tensor() -> None:
    call = decode('{"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}', default="float32")
    assert call.columnar is False
    expected = np.array([1, 2.0, 3, 4, 5.003, 0.007, 0.0], dtype=np.float32)
    same_tensor(call.inputs["default"], expected)


def test_mixed_input_for_double_tensor() -> None:
    call = decode('{"instances": [1.0, 2, 3, 4, 0.662, 0, 0.0]}', default="float64")
    expected = np.array([1.0, 2, 3, 4, 0.662, 0, 0.0], dtype=np.float64)
    same_tensor(call.inputs["default"], expected)


@pytest.mark.parametrize("literal", ["1435774380", "1435774380.0"])
def test_float_tensor_with_precision_loss(literal: str) -> None:
    # b/181409782: the integer and the decimal spelling both round to the same float.
    call = decode('{"instances": [' + literal + "]}", default="float32")
    value = call.inputs["default"]
    same_tensor(value, np.array([1435774380], dtype=np.float32))
    assert float(value[0]) == 1435774336.0


@pytest.mark.parametrize(
    ("literal", "expected"), [("1.79769e+308", np.inf), ("-1.79769e+308", -np.inf)]
)
def test_float_tensor_that_exceeds_max_returns_inf(literal: str, expected: float) -> None:
    # absl::Substitute prints numeric_limits<double>::max() with six digits.
    call = decode('{ "instances": [' + literal + "] }", default="float32")
    same_tensor(call.inputs["default"], np.array([expected], dtype=np.float32))


@pytest.mark.parametrize(("literal", "expected"), [("2.22507e-308", 0.0), ("-2.22507e-308", -0.0)])
def test_float_tensor_that_exceeds_min_returns_zero(literal: str, expected: float) -> None:
    call = decode('{ "instances": [' + literal + "] }", default="float32")
    same_tensor(call.inputs["default"], np.array([expected], dtype=np.float32))


def test_single_unnamed_tensor_with_signature() -> None:
    seen: list[str] = []
    specs = {"default": TensorSpec("default", "int32", None)}

    def lookup(signature: str) -> Mapping[str, TensorSpec]:
        seen.append(signature)
        return specs

    call = decode_predict_request(
        b'{"signature_name": "predict_images", "instances": [[1,2]]}', lookup
    )
    assert call.signature == "predict_images"
    assert seen == ["predict_images"]
    same_tensor(call.inputs["default"], np.array([[1, 2]], dtype=np.int32))


def test_tensor_from_non_null_terminated_buffer() -> None:
    buffer = b'{"instances": [[1,2],[3,4],[5,6]]}X'
    call = decode_predict_request(memoryview(buffer)[:-1].tobytes(), inputs_of(default="int32"))
    same_tensor(call.inputs["default"], np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int32))


def test_single_unnamed_tensor_base64_scalars() -> None:
    call = decode(
        '{"instances": [ { "b64" : "aGVsbG8=" }, { "b64": "d29ybGQ=" } ]}', default="string"
    )
    same_tensor(call.inputs["default"], strings(b"hello", b"world"))


def test_single_unnamed_tensor_base64_lists() -> None:
    call = decode(
        '{"instances": [ [{ "b64" : "aGVsbG8=" }], [{ "b64": "d29ybGQ=" }] ]}', default="string"
    )
    same_tensor(call.inputs["default"], strings(b"hello", b"world", shape=(2, 1)))


def test_single_named_tensor_base64() -> None:
    call = decode(
        '{"instances": [{"default": [ [{ "b64" : "aGVsbG8=" }], [{ "b64": "d29ybGQ=" }] ]}]}',
        default="string",
    )
    same_tensor(call.inputs["default"], strings(b"hello", b"world", shape=(1, 2, 1)))


def test_multiple_named_tensor() -> None:
    body = """
    {
      "instances": [
        {
          "int_tensor": [[1,2],[3,4],[5,6]],
          "str_tensor": ["foo", "bar"],
          "float_tensor": [1.0, NaN],
          "dbl_tensor": [NaN]
        },
        {
          "int_tensor": [[7,8],[9,0],[1,2]],
          "str_tensor": ["baz", "bat"],
          "float_tensor": [2.0, Infinity],
          "dbl_tensor": [2.0]
        }
      ]
    }"""
    call = decode(
        body, int_tensor="int32", str_tensor="string", float_tensor="float32", dbl_tensor="float64"
    )
    assert call.columnar is False
    assert sorted(call.inputs) == ["dbl_tensor", "float_tensor", "int_tensor", "str_tensor"]
    same_tensor(
        call.inputs["int_tensor"],
        np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2], dtype=np.int32).reshape(2, 3, 2),
    )
    same_tensor(call.inputs["str_tensor"], strings(b"foo", b"bar", b"baz", b"bat", shape=(2, 2)))
    same_tensor(
        call.inputs["float_tensor"], np.array([[1.0, np.nan], [2.0, np.inf]], dtype=np.float32)
    )
    same_tensor(call.inputs["dbl_tensor"], np.array([[np.nan], [2.0]], dtype=np.float64))


@pytest.mark.parametrize(
    "body",
    ['{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]]}}', '{"inputs": [[[1,2],[3,4],[5,6]]]}'],
    ids=["named", "unnamed"],
)
def test_single_unnamed_tensor_columnar_format(body: str) -> None:
    call = decode(body, int_tensor="int32")
    assert call.columnar is True
    same_tensor(call.inputs["int_tensor"], np.array([[[1, 2], [3, 4], [5, 6]]], dtype=np.int32))


def test_multiple_named_tensor_columnar_format() -> None:
    body = """
    {
      "inputs": {
        "int_tensor": [[[1,2],[3,4],[5,6]]],
        "str_tensor": ["foo", "bar"],
        "bin_tensor": { "b64" : "aGVsbG8=" }
      }
    }"""
    call = decode(body, int_tensor="int32", str_tensor="string", bin_tensor="string")
    assert call.columnar is True
    same_tensor(call.inputs["int_tensor"], np.array([[[1, 2], [3, 4], [5, 6]]], dtype=np.int32))
    same_tensor(call.inputs["str_tensor"], strings(b"foo", b"bar"))
    same_tensor(call.inputs["bin_tensor"], strings(b"hello", shape=()))


@pytest.mark.parametrize(
    ("body", "substring", "message"),
    [
        ("", "document is empty", "JSON Parse error: The document is empty"),
        (
            '{"signature_name": 5, "instances": [[1,2],[3,4],[5,6,7]]}',
            "must be a string value",
            'JSON Value: {\n    "signature_name": 5,\n    "instances": [[1, 2], [3, 4], '
            "[5, 6, 7]]\n} not formatted correctly. 'signature_name' key must be a string "
            "value.",
        ),
        (
            '{"instances": [[1,2],[3,4],[5,6,7]], "inputs": [[1,2],[3,4],[5,6,7]]}',
            "Not formatted correctly",
            'JSON Value: {\n    "instances": [[1, 2], [3, 4], [5, 6, 7]],\n    "inputs": '
            "[[1, 2], [3, 4], [5, 6, 7]]\n} Not formatted correctly expecting only one of "
            "'inputs' or 'instances' keys to exist ",
        ),
        (
            '{"instances": [[1,2],[3,4],[5,6,7]]}',
            "Expecting tensor size",
            "Failed to process element: 2 of 'instances' list. Error: INVALID_ARGUMENT: "
            "Expecting tensor size: 2 but got: 3",
        ),
        (
            '{"instances": [[1,2],[3,4],[[5,6]]]}',
            "Expecting shape",
            "Failed to process element: 2 of 'instances' list. Error: INVALID_ARGUMENT: "
            "Expecting shape [2] but got: [1,2]",
        ),
        (
            '{"instances": [1, [1]]}',
            "Expecting shape",
            "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
            "Expecting shape [] but got: [1]",
        ),
        (
            '{"instances": [[1,2],["a", "b"]]}',
            "not of expected type",
            "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
            'JSON Value: "a" Type: String is not of expected type: int32',
        ),
    ],
    ids=["empty", "signature", "both-keys", "size", "shape", "scalar-vs-list", "type"],
)
def test_single_unnamed_tensor_errors(body: str, substring: str, message: str) -> None:
    got = error(body, default="int32")
    assert substring in got
    assert got == message


@pytest.mark.parametrize(
    ("body", "dtypes", "substring", "message"),
    [
        (
            '{"instances": [{"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"]},'
            ' {"int_tensor": [[[7,8],[9,0],[1,2]]], "str_tensor": ["baz", "bat"]}]}',
            {"int_tensor": "int32", "str_tensor": "string"},
            "Expecting shape",
            "Failed to process element: 1 key: int_tensor of 'instances' list. Error: "
            "INVALID_ARGUMENT: Expecting shape [3,2] but got: [1,3,2]",
        ),
        (
            '{"instances": [{"int_tensor": [[1,2],[3,4],[5,6],[7,8]], "str_tensor": ["foo", '
            '"bar"]}, {"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"]}]}',
            {"int_tensor": "int32", "str_tensor": "string"},
            "Expecting tensor size",
            "Failed to process element: 1 key: int_tensor of 'instances' list. Error: "
            "INVALID_ARGUMENT: Expecting tensor size: 8 but got: 6",
        ),
        (
            '{"instances": [{"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"]},'
            ' [1, 20, 30], {"int_tensor": [[[7,8],[9,0],[1,2]]], "str_tensor": ["baz", "bat"]}]}',
            {"int_tensor": "int32", "str_tensor": "string"},
            "Expecting object but got list",
            "Expecting object but got list at item 1 of input list",
        ),
        (
            '{"instances": [["baz", "bar"], {"str_tensor": ["baz", "bat"]}]}',
            {"str_tensor": "string"},
            "Expecting value/list but got object",
            "Expecting value/list but got object at item 1 of input list",
        ),
    ],
    ids=["shape", "size", "object-then-list", "list-then-object"],
)
def test_multiple_named_tensor_errors(
    body: str, dtypes: dict[str, str], substring: str, message: str
) -> None:
    got = error(body, **dtypes)
    assert substring in got
    assert got == message


# ======================================================================================
# json_tensor_test.cc: MakeJsonFromTensors

INT_2x3x2 = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2], dtype=np.int32).reshape(2, 3, 2)
BYTES_2x2 = strings(b"hello", b"world", b"tf", b"serving", shape=(2, 2))


def test_from_json_single_tensor() -> None:
    row = encode_predict_response({"int_tensor": INT_2x3x2}, columnar=False)
    assert parse_json(row) == {"predictions": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]]}
    # PrettyWriter: the "predictions" array opens in the default format, its items are
    # written single-line, and it closes in the default format again.
    assert row == (
        b'{\n    "predictions": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]\n    ]\n}'
    )
    columnar = encode_predict_response({"int_tensor": INT_2x3x2}, columnar=True)
    assert parse_json(columnar) == {"outputs": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]]}
    # Columnar output never switches to single-line arrays: one value a line.
    assert columnar.startswith(
        b'{\n    "outputs": [\n        [\n            [\n                1,\n'
    )
    assert columnar.endswith(b"                2\n            ]\n        ]\n    ]\n}")


def test_from_json_single_scalar_tensor() -> None:
    tensor = np.array([1, 2, 3, 4, 5], dtype=np.int32)
    row = encode_predict_response({"int_tensor": tensor}, columnar=False)
    assert parse_json(row) == {"predictions": [1, 2, 3, 4, 5]}
    assert row == b'{\n    "predictions": [1, 2, 3, 4, 5\n    ]\n}'
    columnar = encode_predict_response({"int_tensor": tensor}, columnar=True)
    assert parse_json(columnar) == {"outputs": [1, 2, 3, 4, 5]}
    assert columnar == (
        b'{\n    "outputs": [\n        1,\n        2,\n        3,\n        4,\n        5\n    ]\n}'
    )


def test_from_json_single_bytes_tensor() -> None:
    row = encode_predict_response({"str_tensor_bytes": BYTES_2x2}, columnar=False)
    assert parse_json(row) == {
        "predictions": [
            [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
            [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}],
        ]
    }
    # Objects are never single-line: each {"b64": ...} spans three lines.
    assert row == (
        b'{\n    "predictions": [[{\n                "b64": "aGVsbG8="\n            }, {\n'
        b'                "b64": "d29ybGQ="\n            }], [{\n                "b64": "dGY="\n'
        b'            }, {\n                "b64": "c2VydmluZw=="\n            }]\n    ]\n}'
    )


def test_from_json_single_float_tensor_six_digit_precision() -> None:
    tensor = np.array([9000000, 999999, 0.50000, 0.0003, 0.00003, 555557.5], dtype=np.float32)
    row = encode_predict_response({"float_tensor": tensor.reshape(2, 3)}, columnar=False)
    assert number_texts(row) == ["9e+06", "999999.0", "0.5", "0.0003", "3e-05", "555557.5"]
    assert row == (
        b'{\n    "predictions": [[9e+06, 999999.0, 0.5], [0.0003, 3e-05, 555557.5]\n    ]\n}'
    )


def test_from_json_single_float_tensor_non_finite() -> None:
    tensor = np.array([np.nan, np.inf, 3, -np.inf], dtype=np.float32).reshape(2, 2)
    row = encode_predict_response({"float_tensor": tensor}, columnar=False)
    assert number_texts(row) == ["NaN", "Infinity", "3.0", "-Infinity"]
    assert row == b'{\n    "predictions": [[NaN, Infinity], [3.0, -Infinity]\n    ]\n}'


@pytest.mark.parametrize(
    ("outputs", "substring", "message"),
    [
        ({}, "empty tensor map", "Cannot convert empty tensor map to JSON"),
        (
            {"tensor": np.array([1.0, 2.0], dtype=np.complex64)},
            "tensor type: complex64",
            "Failed to write JSON value for tensor type: complex64",
        ),
        (
            {"tensor": np.array(1, dtype=np.int32)},
            "no shape information",
            "Tensor name: tensor has no shape information ",
        ),
    ],
    ids=["empty", "complex64", "scalar"],
)
def test_from_json_single_tensor_errors(
    outputs: dict[str, np.ndarray], substring: str, message: str
) -> None:
    with pytest.raises(InputError) as info:
        encode_predict_response(outputs, columnar=False)
    assert substring in info.value.message
    assert info.value.message == message


MULTIPLE_NAMED = {
    "int_tensor": INT_2x3x2,
    "str_tensor": strings(b"foo", b"bar", b"baz", b"bat", shape=(2, 2)),
    "float_tensor": np.array([[1.0], [2.0]], dtype=np.float32),
    "double_scalar_tensor": np.array([8.0, 9.0], dtype=np.float64),
    "str_tensor_bytes": BYTES_2x2,
}


def test_from_json_multiple_named_tensors_row() -> None:
    row = encode_predict_response(MULTIPLE_NAMED, columnar=False)
    assert parse_json(row) == {
        "predictions": [
            {
                "double_scalar_tensor": 8.0,
                "float_tensor": [1.0],
                "int_tensor": [[1, 2], [3, 4], [5, 6]],
                "str_tensor": ["foo", "bar"],
                "str_tensor_bytes": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
            },
            {
                "double_scalar_tensor": 9.0,
                "float_tensor": [2.0],
                "int_tensor": [[7, 8], [9, 0], [1, 2]],
                "str_tensor": ["baz", "bat"],
                "str_tensor_bytes": [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}],
            },
        ]
    }
    first_row = (
        b'{\n    "predictions": [\n        {\n            "double_scalar_tensor": 8.0,\n'
        b'            "float_tensor": [1.0],\n'
        b'            "int_tensor": [[1, 2], [3, 4], [5, 6]],\n'
        b'            "str_tensor": ["foo", "bar"],\n'
        b'            "str_tensor_bytes": [{\n                    "b64": "aGVsbG8="\n'
        b'                }, {\n                    "b64": "d29ybGQ="\n                }]\n'
        b"        },\n        {\n"
    )
    assert row.startswith(first_row)
    assert row.endswith(b"                }]\n        }\n    ]\n}")


def test_from_json_multiple_named_tensors_columnar() -> None:
    columnar = encode_predict_response(MULTIPLE_NAMED, columnar=True)
    assert parse_json(columnar) == {
        "outputs": {
            "double_scalar_tensor": [8.0, 9.0],
            "float_tensor": [[1.0], [2.0]],
            "int_tensor": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]],
            "str_tensor": [["foo", "bar"], ["baz", "bat"]],
            "str_tensor_bytes": [
                [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
                [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}],
            ],
        }
    }
    assert columnar.startswith(
        b'{\n    "outputs": {\n        "double_scalar_tensor": [\n            8.0,\n'
        b"            9.0\n        ],\n"
    )
    assert (
        b'        "str_tensor_bytes": [\n            [\n                {\n'
        b'                    "b64": "aGVsbG8="\n                },\n' in columnar
    )
    assert columnar.endswith(b"            ]\n        ]\n    }\n}")


def test_from_json_multiple_named_tensors_errors() -> None:
    outputs = {
        "int_tensor": np.arange(1, 7, dtype=np.int32).reshape(2, 3),
        "str_tensor": strings(b"foo", b"bar", b"baz", shape=(1, 3)),
    }
    with pytest.raises(InputError) as info:
        encode_predict_response(outputs, columnar=False)
    assert "inconsistent batch size" in info.value.message
    assert info.value.message == (
        "Tensor name: str_tensor has inconsistent batch size: 1 expecting: 2"
    )


def test_from_json_single_zero_batch_tensor() -> None:
    row = encode_predict_response({"int_tensor": np.zeros((0, 2), np.int32)}, columnar=False)
    assert parse_json(row) == {"predictions": []}
    assert row == b'{\n    "predictions": []\n}'


def test_from_json_multiple_zero_batch_tensors() -> None:
    outputs = {
        "str_tensor": np.empty((0, 1, 2), dtype=object),
        "float_tensor": np.zeros((0, 3, 4), np.float32),
    }
    row = encode_predict_response(outputs, columnar=False)
    assert parse_json(row) == {"predictions": []}
    assert row == b'{\n    "predictions": []\n}'


def test_from_json_multiple_zero_batch_tensors_errors() -> None:
    outputs = {
        "int_tensor": np.zeros((0, 2), np.int32),
        "str_tensor": strings(b"foo", b"bar", shape=(1, 2)),
    }
    with pytest.raises(InputError) as info:
        encode_predict_response(outputs, columnar=False)
    assert "inconsistent batch size" in info.value.message


# ======================================================================================
# json_tensor_test.cc: FillClassificationRequestFromJson / FillRegressionRequestFromJson

REQUEST_TYPES = [
    pytest.param(
        classification_pb2.ClassificationRequest, decode_classification_request, id="classify"
    ),
    pytest.param(regression_pb2.RegressionRequest, decode_regression_request, id="regress"),
]


def same_proto(actual: Any, expected: Any) -> None:
    # Deterministic bytes: map order fixed, NaN compares equal to NaN (the C++ test's
    # set_treat_nan_as_equal), -0.0 still differs from 0.0.
    assert actual.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    ), f"{actual}\n!=\n{expected}"


@pytest.mark.parametrize(("request_type", "fill"), REQUEST_TYPES)
def test_request_no_context(request_type: Any, fill: Any) -> None:
    request = request_type()
    fill(
        b"""{
          "examples": [
            {"names": [ "foo", "bar" ], "ratings": [ 8.0, 9.0 ], "age": 20},
            {"names": [ "baz" ], "ratings": 6.0}
          ]
        }""",
        request,
    )
    expected = request_type()
    text_format.Parse(
        """
        input { example_list {
          examples { features {
            feature { key: "names" value { bytes_list { value: "foo" value: "bar" } } }
            feature { key: "ratings" value { float_list { value: 8.0 value: 9.0 } } }
            feature { key: "age" value { int64_list { value: 20 } } }
          } }
          examples { features {
            feature { key: "names" value { bytes_list { value: "baz" } } }
            feature { key: "ratings" value { float_list { value: 6.0 } } }
          } }
        } }""",
        expected,
    )
    same_proto(request, expected)


@pytest.mark.parametrize(("request_type", "fill"), REQUEST_TYPES)
def test_request_with_context_and_signature(request_type: Any, fill: Any) -> None:
    request = request_type()
    fill(
        b"""{
          "signature_name": "custom_signture",
          "context": {"query": "pizza", "location": [ "sfo" ]},
          "examples": [
            {"names": [ "foo", "bar" ], "ratings": [ 8.0, 9.0, NaN, Infinity ], "age": 20},
            {"names": [ "baz", { "b64": "aGVsbG8=" } ], "ratings": 6.0,
             "intboolmix": [ 1, true, false ]},
            {"names": "bar", "ratings": -Infinity}
          ]
        }""",
        request,
    )
    expected = request_type()
    text_format.Parse(
        """
        model_spec { signature_name: "custom_signture" }
        input { example_list_with_context {
          context { features {
            feature { key: "query" value { bytes_list { value: "pizza" } } }
            feature { key: "location" value { bytes_list { value: "sfo" } } }
          } }
          examples { features {
            feature { key: "names" value { bytes_list { value: "foo" value: "bar" } } }
            feature { key: "ratings" value { float_list {
              value: 8.0 value: 9.0 value: NaN value: Infinity } } }
            feature { key: "age" value { int64_list { value: 20 } } }
          } }
          examples { features {
            feature { key: "names" value { bytes_list { value: "baz" value: "hello" } } }
            feature { key: "ratings" value { float_list { value: 6.0 } } }
            feature { key: "intboolmix" value { int64_list { value: 1 value: 1 value: 0 } } }
          } }
          examples { features {
            feature { key: "names" value { bytes_list { value: "bar" } } }
            feature { key: "ratings" value { float_list { value: -Infinity } } }
          } }
        } }""",
        expected,
    )
    same_proto(request, expected)


@pytest.mark.parametrize(("request_type", "fill"), REQUEST_TYPES)
@pytest.mark.parametrize(
    ("body", "substring", "message"),
    [
        (
            '{"signature_name": [ "hello" ], "examples": [ { "names": [ "foo", "bar" ] } ]}',
            "'signature_name' key must be a string",
            'JSON Value: {\n    "signature_name": ["hello"],\n    "examples": [{\n'
            '            "names": ["foo", "bar"]\n        }]\n} not formatted correctly. '
            "'signature_name' key must be a string value.",
        ),
        (
            '{"context": [ { "names": [ "foo", "bar" ] } ]}',
            "Example must be JSON object",
            "Example must be JSON object but got JSON Array",
        ),
        (
            '{"examples": { "names": [ "foo", "bar" ] }}',
            "list/array",
            'JSON Value: {\n    "examples": {\n        "names": ["foo", "bar"]\n    }\n} '
            "Expecting 'examples' value to be an list/array",
        ),
        (
            '{"examples": [ [ { "names": [ "foo", "bar" ] } ] ]}',
            "Example must be JSON object",
            "Example must be JSON object but got JSON Array",
        ),
        (
            '{"examples": [ { "names": [ 10, null ] } ]}',
            "names has element with unexpected JSON type: Null",
            "Feature: names has element with unexpected JSON type: Null",
        ),
        (
            '{"examples": [ { "names": [ 10, 10.0 ] } ]}',
            "feature: names expecting type: int64",
            "Unexpected element type in feature: names expecting type: int64",
        ),
        (
            '{"examples": [ { "names": [ 10, { "test": 10 } ] } ]}',
            "names has element with unexpected JSON type: Object",
            "Feature: names has element with unexpected JSON type: Object",
        ),
        (
            '{"examples": [ { "names": [ [10], 20 ] } ]}',
            "names has element with unexpected JSON type: Array",
            "Feature: names has element with unexpected JSON type: Array",
        ),
        (
            '{"examples": [ { "names": [ 20, 18446744073709551603 ] } ]}',
            "Only int64_t is supported",
            "Feature: names has uint64_t element. Only int64_t is supported.",
        ),
    ],
    ids=[
        "signature",
        "context",
        "examples-object",
        "nested",
        "null",
        "int-then-float",
        "object",
        "array",
        "uint64",
    ],
)
def test_classify_regress_json_errors(
    request_type: Any, fill: Any, body: str, substring: str, message: str
) -> None:
    with pytest.raises(InputError) as info:
        fill(body.encode(), request_type())
    assert substring in info.value.message
    assert info.value.message == message


# ======================================================================================
# json_tensor_test.cc: MakeJsonFromClassificationResult / MakeJsonFromRegressionResult
# / MakeJsonFromStatus


def test_json_from_classification_result() -> None:
    result = classification_pb2.ClassificationResult()
    text_format.Parse(
        """
        classifications {
          classes { label: "car" score: 0.2 } classes { label: "bike" score: 0.7 }
          classes { label: "bus" score: 0.1 } }
        classifications {
          classes { label: "car" score: 0.7 } classes { label: "bike" score: 0.1 }
          classes { label: "bus" score: 0.2 } }""",
        result,
    )
    out = encode_classification_result(result)
    assert parse_json(out) == {
        "results": [
            [["car", 0.2], ["bike", 0.7], ["bus", 0.1]],
            [["car", 0.7], ["bike", 0.1], ["bus", 0.2]],
        ]
    }
    assert out == (
        b'{\n    "results": [[["car", 0.2], ["bike", 0.7], ["bus", 0.1]], '
        b'[["car", 0.7], ["bike", 0.1], ["bus", 0.2]]\n    ]\n}'
    )


def test_json_from_regression_result() -> None:
    result = regression_pb2.RegressionResult()
    text_format.Parse(
        "regressions { value: 0.2 } regressions { value: 0.9 } regressions { value: 1.0 }", result
    )
    out = encode_regression_result(result)
    assert parse_json(out) == {"results": [0.2, 0.9, 1.0]}
    assert out == b'{\n    "results": [0.2, 0.9, 1.0]\n}'


def test_json_from_regression_result_with_non_finite() -> None:
    result = regression_pb2.RegressionResult()
    text_format.Parse(
        "regressions { value: 0.2 } regressions { value: Infinity } regressions { value: 1.0 }"
        " regressions { value: -Infinity } regressions { value: NaN }",
        result,
    )
    out = encode_regression_result(result)
    assert number_texts(out) == ["0.2", "Infinity", "1.0", "-Infinity", "NaN"]


def test_json_from_result_errors() -> None:
    with pytest.raises(InputError, match="empty ClassificationResults") as info:
        encode_classification_result(classification_pb2.ClassificationResult())
    assert info.value.message == "Cannot convert empty ClassificationResults to JSON"
    with pytest.raises(InputError, match="empty RegressionResults") as info:
        encode_regression_result(regression_pb2.RegressionResult())
    assert info.value.message == "Cannot convert empty RegressionResults to JSON"


@pytest.mark.parametrize("message", ['Bad key: "key"', "Bad key: 'key'"])
def test_status_error(message: str) -> None:
    out = encode_error(message)
    assert parse_json(out) == {"error": message}
    assert out == b'{\n    "error": ' + json.dumps(message).encode() + b"\n}"


# ======================================================================================
# http_rest_api_handler_test.cc: PredictRequestErrors (the codec's share)


def test_handler_predict_request_errors() -> None:
    assert error("", x="float32") == "JSON Parse error: The document is empty"
    assert "JSON Parse error: Invalid value" in error("instances = [1, 2]", x="float32")
    assert "not of expected type: float" in error('{ "instances": ["x", "y"] }', x="float32")
    assert "'signature_name' key must be a string value." in error(
        '{ "signature_name": 100 }', x="float32"
    )


def test_handler_predict_signature_and_formats() -> None:
    row = decode('{"signature_name": "serving_default", "instances": [3.0, 4.0]}', x="float32")
    columnar = decode('{"signature_name": "serving_default", "inputs": [3.0, 4.0]}', x="float32")
    assert (row.signature, row.columnar) == ("serving_default", False)
    assert (columnar.signature, columnar.columnar) == ("serving_default", True)
    same_tensor(row.inputs["x"], np.array([3.0, 4.0], np.float32))
    same_tensor(columnar.inputs["x"], np.array([3.0, 4.0], np.float32))
    # half_plus_two's answers, as the handler test expects them.
    out = {"y": np.array([3.5, 4.0], np.float32)}
    assert parse_json(encode_predict_response(out, False)) == {"predictions": [3.5, 4.0]}
    assert parse_json(encode_predict_response(out, True)) == {"outputs": [3.5, 4.0]}


# ======================================================================================
# rapidjson's reader: what TF Serving accepts beyond strict JSON, and its error texts.


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("   ", "JSON Parse error: The document is empty. at offset: 3"),
        ("{", "JSON Parse error: Missing a name for object member. at offset: 1"),
        ('{"a"', "JSON Parse error: Missing a colon after a name of object member. at offset: 4"),
        ('{"a":', "JSON Parse error: Invalid value. at offset: 5"),
        ('{"a":1', "JSON Parse error: Missing a comma or '}' after an object member. at offset: 6"),
        (
            '{"a":1 "b":2}',
            "JSON Parse error: Missing a comma or '}' after an object member. at offset: 7",
        ),
        (
            '{"a":[1 2]}',
            "JSON Parse error: Missing a comma or ']' after an array element. at offset: 8",
        ),
        ('{"a":[1,]}', "JSON Parse error: Invalid value. at offset: 8"),
        ("{,}", "JSON Parse error: Missing a name for object member. at offset: 1"),
        ('{"a":1,}', "JSON Parse error: Missing a name for object member. at offset: 7"),
        ('{"a":"\\x"}', "JSON Parse error: Invalid escape character in string. at offset: 6"),
        ('{"a":"x\ny"}', "JSON Parse error: Invalid escape character in string. at offset: 7"),
        (
            '{"a":"\\u12G4"}',
            "JSON Parse error: Incorrect hex digit after \\u escape in string. at offset: 6",
        ),
        (
            '{"a":"\\ud800"}',
            "JSON Parse error: The surrogate pair in string is invalid. at offset: 6",
        ),
        (
            '{"a":"\\ud800\\u0041"}',
            "JSON Parse error: The surrogate pair in string is invalid. at offset: 6",
        ),
        ('{"a":"abc', "JSON Parse error: Missing a closing quotation mark in string. at offset: 9"),
        ('{"a":1.}', "JSON Parse error: Miss fraction part in number. at offset: 7"),
        ('{"a":1e}', "JSON Parse error: Miss exponent in number. at offset: 7"),
        ('{"a":1e400}', "JSON Parse error: Number too big to be stored in double. at offset: 5"),
        (
            '{"a":' + "9" * 400 + "}",
            "JSON Parse error: Number too big to be stored in double. at offset: 5",
        ),
        ('{"a":tru}', "JSON Parse error: Invalid value. at offset: 8"),
        ('{"a": -}', "JSON Parse error: Invalid value. at offset: 7"),
        ('{"a": Infinit}', "JSON Parse error: Invalid value. at offset: 13"),
        (
            '{"a": NaNx}',
            "JSON Parse error: Missing a comma or '}' after an object member. at offset: 9",
        ),
        (
            '{"instances":[1]\0}',
            "JSON Parse error: Missing a comma or '}' after an object member. at offset: 16",
        ),
        # Inside arrays, around runs of plain numbers next to a token orjson refuses.
        (
            '{"a":[1, 2, 3 4, NaN]}',  # reported at the "4", after the space
            "JSON Parse error: Missing a comma or ']' after an array element. at offset: 14",
        ),
        (
            '{"a":[1, 2, 01, NaN]}',
            "JSON Parse error: Missing a comma or ']' after an array element. at offset: 13",
        ),
        ('{"a":[1, 2,], "b": NaN}', "JSON Parse error: Invalid value. at offset: 11"),
        (
            '{"a":[1e999, NaN]}',
            "JSON Parse error: Number too big to be stored in double. at offset: 6",
        ),
        ('{"a":[NaN, 1, 2.]}', "JSON Parse error: Miss fraction part in number. at offset: 16"),
        ("[1]", "JSON Value: [1] Is not object"),
        ('"abc"', 'JSON Value: "abc" Is not object'),
        ("01", "JSON Value: 0 Is not object"),
    ],
)
def test_parse_errors(body: str, message: str) -> None:
    assert error(body, x="float32") == message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # kParseNanAndInfFlag: NaN, Inf, Infinity, with or without a minus.
        (
            '{"instances": [NaN, -NaN, Inf, -Inf, Infinity, -Infinity]}',
            [math.nan, math.nan, math.inf, -math.inf, math.inf, -math.inf],
        ),
        # kParseStopWhenDoneFlag: whatever follows the document is never read.
        ('{"instances": [1.5]} trailing [garbage', [1.5]),
        ('\ufeff{"instances": [1.5]}', [1.5]),  # the UTF-8 BOM is skipped
        # rapidjson 1.1.0 has no final overflow check: 10e308 is infinity, not an error.
        ('{"instances": [10e308, 1e-400]}', [math.inf, 0.0]),
        (
            '{"instances": [1, 2 , 3,\n4, NaN, 5.5e-3, -0, 1e99, 9e99]}',
            [1, 2, 3, 4, math.nan, 0.0055, 0.0, 1e99, 9e99],
        ),
        (
            '{"instances": [18446744073709551616, -9223372036854775809]}',
            [1.8446744073709552e19, -9.223372036854776e18],
        ),
    ],
    ids=["nan-inf", "trailing", "bom", "overflow", "number-runs", "big-integers"],
)
def test_rapidjson_extensions(body: str, expected: list[float]) -> None:
    call = decode(body.encode(), x="float64")
    same_tensor(call.inputs["x"], np.array(expected, dtype=np.float64))


def test_strings_are_bytes_as_rapidjson_keeps_them() -> None:
    # No UTF-8 validation: invalid bytes stay as they are; a lone low surrogate escape is
    # written out as its three bytes; escapes decode.
    body = b'{"instances": ["\xff\xfe", "\\udc00", "\\u00e9\\n\\/", "\xc3\xa9"]}'
    call = decode(body, x="string")
    same_tensor(
        call.inputs["x"], strings(b"\xff\xfe", b"\xed\xb0\x80", b"\xc3\xa9\n/", b"\xc3\xa9")
    )


def test_nesting_deep_enough_to_crash_orjson_is_parsed_without_it() -> None:
    # orjson 3.8 overflows the C stack somewhere past 100000 levels; this must not reach it.
    depth = 300000
    value_body = '{"inputs": ' + "[" * depth + "1" + "]" * depth + "}"
    assert error(value_body, x="float32") == "tensor parsing error: x"
    assert tfs_json._nesting_may_exceed(value_body.encode(), 512)
    # Brackets inside strings do not count.
    assert not tfs_json._nesting_may_exceed(('{"a": "' + "[" * 5000 + '"}').encode(), 512)
    assert tfs_json._nesting_may_exceed(('{"a": "\\"' + "[" * 5000 + '"}').encode(), 512) is False
    assert tfs_json._nesting_may_exceed(
        ('{"a": "\\\\"' + "[" * 600 + "]" * 600 + "}").encode(), 512
    )


def test_duplicate_keys_keep_the_last_value() -> None:
    # Deliberate: rapidjson's FindMember would take the first; orjson keeps the last, and
    # both parse paths agree on it.
    for body in (
        '{"instances": [1.0], "instances": [2.0]}',
        '{"instances": [1.0], "instances": [2.0], "x": NaN}',
    ):
        same_tensor(decode(body, x="float32").inputs["x"], np.array([2.0], np.float32))


# ======================================================================================
# AddValueToTensor: each dtype's accepted JSON values (columnar, so the message is bare).


@pytest.mark.parametrize(
    ("dtype", "json_value", "expected"),
    [
        ("float32", "[1, -2.5, 1e3, 16777217]", np.array([1, -2.5, 1e3, 16777216], np.float32)),
        ("float64", "[1, 0.1, 9007199254740993]", np.array([1, 0.1, 9007199254740992.0])),
        ("int32", "[-2147483648, 2147483647]", np.array([-(2**31), 2**31 - 1], np.int32)),
        ("int16", "[70000, -1]", np.array([70000 - 65536, -1], np.int16)),  # int_val wraps
        ("int8", "[127, 128]", np.array([127, -128], np.int8)),
        ("uint8", "[255, 300, -1]", np.array([255, 44, 255], np.uint8)),
        (
            "int64",
            "[-9223372036854775808, 9223372036854775807]",
            np.array([-(2**63), 2**63 - 1], np.int64),
        ),
        ("uint32", "[0, 4294967295]", np.array([0, 2**32 - 1], np.uint32)),
        ("uint64", "[0, 18446744073709551615]", np.array([0, 2**64 - 1], np.uint64)),
        ("bool", "[true, false]", np.array([True, False])),
        ("string", '["a", {"b64": "Yg=="}, ""]', strings(b"a", b"b", b"")),
        ("int32", "[[], []]", np.zeros((2, 0), np.int32)),
        ("string", "[[], []]", np.empty((2, 0), dtype=object)),
        ("float32", "7", np.array(7, np.float32)),
        ("bool", "true", np.array(True)),
    ],
)
def test_accepted_values(dtype: str, json_value: str, expected: np.ndarray) -> None:
    call = decode('{"inputs": ' + json_value + "}", x=dtype)
    same_tensor(call.inputs["x"], expected)


@pytest.mark.parametrize(
    ("dtype", "json_value", "message"),
    [
        (
            "int32",
            "[1, 2147483648]",
            "JSON Value: 2147483648 Type: Number is not of expected type: int32",
        ),
        ("int32", "[1, 1.0]", "JSON Value: 1.0 Type: Number is not of expected type: int32"),
        ("int32", "[true]", "JSON Value: true Type: True is not of expected type: int32"),
        ("uint8", '["1"]', 'JSON Value: "1" Type: String is not of expected type: uint8'),
        (
            "int64",
            "[9223372036854775808]",
            "JSON Value: 9223372036854775808 Type: Number is not of expected type: int64",
        ),
        # A double again past uint64; rapidjson writes it positionally up to 21 digits.
        (
            "int64",
            "[18446744073709551616]",
            "JSON Value: 18446744073709552000.0 Type: Number is not of expected type: int64",
        ),
        ("uint32", "[-1]", "JSON Value: -1 Type: Number is not of expected type: uint32"),
        ("uint64", "[-1]", "JSON Value: -1 Type: Number is not of expected type: uint64"),
        ("bool", "[1]", "JSON Value: 1 Type: Number is not of expected type: bool"),
        ("float32", "[1, false]", "JSON Value: false Type: False is not of expected type: float"),
        ("float32", "[null]", "JSON Value: null Type: Null is not of expected type: float"),
        ("float64", '["1.5"]', 'JSON Value: "1.5" Type: String is not of expected type: double'),
        (
            "float32",
            '[{"b64": "AA=="}]',
            'JSON Value: {\n    "b64": "AA=="\n} Type: Object is not of expected type: float',
        ),
        ("string", "[1]", "JSON Value: 1 Type: Number is not of expected type: string"),
        (
            "string",
            '[{"b64": "AA==", "x": 1}]',
            'JSON Value: {\n    "b64": "AA==",\n    "x": 1\n}'
            " not formatted correctly for base64 data",
        ),
        (
            "string",
            '[{"b64": 1}]',
            'JSON Value: {\n    "b64": 1\n} not formatted correctly for base64 data',
        ),
        ("float16", "[1]", "Conversion of JSON Value: 1 to type: half"),
        ("uint16", "[1]", "Conversion of JSON Value: 1 to type: uint16"),
        # Leaves must all sit at the rank the first elements give.
        (
            "float32",
            "[[1], 2]",
            "JSON Value: 2 found at incorrect level: 2 in the JSON DOM. Expected at level: 2",
        ),
        ("float32", "[1, [2]]", "Encountered list at unexpected level: 1 expected < 1"),
        (
            "float32",
            "[[1, 2], [3]]",
            "Encountered list at unexpected size: 1 at level: 1 expected size: 2",
        ),
        (
            "float32",
            "[[], [1]]",
            "Encountered list at unexpected size: 1 at level: 1 expected size: 0",
        ),
        # The first bad leaf in document order is the one reported.
        (
            "float32",
            '[[1, "a"], [3]]',
            'JSON Value: "a" Type: String is not of expected type: float',
        ),
        ("float32", "[1, NaN, true]", "JSON Value: true Type: True is not of expected type: float"),
    ],
)
def test_rejected_values(dtype: str, json_value: str, message: str) -> None:
    assert error('{"inputs": ' + json_value + "}", x=dtype) == message


def test_row_format_wraps_the_status_with_its_code() -> None:
    assert error('{"instances": [1]}', x="float16") == (
        "Failed to process element: 0 of 'instances' list. Error: UNIMPLEMENTED: Conversion "
        "of JSON Value: 1 to type: half"
    )
    assert error('{"instances": [{"x": [1], "y": 2}]}', x="float32") == (
        "Failed to process element: 0 key: y of 'instances' list. Error: INVALID_ARGUMENT: "
        "JSON object: does not have named input: y"
    )
    assert error('{"instances": [{"x": 1}]}', x="float32", y="float32") == (
        "Failed to process element: 0 of 'instances' list. JSON object: {\n    \"x\": 1\n} "
        "keys must be equal to: x,y"
    )
    assert error('{"instances": [1, 2]}', x="float32", y="float32") == (
        "instances is a plain list, but expecting list of objects as multiple input tensors "
        "required as per tensorinfo_map"
    )


def test_request_level_errors() -> None:
    doc = '{"instances": 5}'
    assert error(doc, x="float32") == (
        "JSON Value: {\n    \"instances\": 5\n} Expecting 'instances' to be an list/array"
    )
    assert error('{"instances": []}', x="float32") == (
        "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array"
    )
    assert error('{"signature_name": "s"}', x="float32") == "Missing 'inputs' or 'instances' key"
    assert error('{"inputs": [1]}', x="float32", y="float32") == (
        "inputs is a plain value/list, but expecting an object as multiple input tensors "
        "required as per tensorinfo_map"
    )
    assert error('{"inputs": {"x": [1]}}', x="float32", y="float32") == (
        "Missing named input: y in 'inputs' object."
    )
    # JsonValueToDebugString cannot print NaN: the output stops right before it.
    assert error('{"x": NaN, "instances": 1}', x="float32") == (
        "JSON Value: {\n    \"x\":  Expecting 'instances' to be an list/array"
    )
    # rapidjson's own number formatting inside messages.
    assert error('{"instances": [0.5, 1e21, 1e-7, 123.25, -0.0, 3]}', x="string").endswith(
        "JSON Value: 0.5 Type: Number is not of expected type: string"
    )
    assert error('{"inputs": [1e21]}', x="string") == (
        "JSON Value: 1e21 Type: Number is not of expected type: string"
    )
    assert error('{"inputs": [1e-7]}', x="string") == (
        "JSON Value: 1e-7 Type: Number is not of expected type: string"
    )
    assert error('{"inputs": [-0.0]}', x="string") == (
        "JSON Value: -0.0 Type: Number is not of expected type: string"
    )
    assert error('{"inputs": [1e20]}', x="string") == (
        "JSON Value: 100000000000000000000.0 Type: Number is not of expected type: string"
    )


def test_signature_lookup() -> None:
    seen: list[str] = []
    specs = {"x": TensorSpec("x", "float32", None)}

    def lookup(signature: str) -> Mapping[str, TensorSpec]:
        seen.append(signature)
        if signature == "missing":
            raise NotFound('Serving signature name: "missing" not found in signature def')
        return specs if signature != "empty" else {}

    assert decode_predict_request(b'{"inputs": [1]}', lookup).signature == "serving_default"
    assert decode_predict_request(b'{"signature_name": "", "inputs": [1]}', lookup).signature == (
        "serving_default"
    )
    with pytest.raises(NotFound):
        decode_predict_request(b'{"signature_name": "missing", "inputs": [1]}', lookup)
    with pytest.raises(InputError) as info:
        decode_predict_request(b'{"signature_name": "empty", "inputs": [1]}', lookup)
    assert info.value.message == "Failed to get input map for signature: empty"
    assert seen == ["serving_default", "serving_default", "missing", "empty"]

    def broken(signature: str) -> Mapping[str, TensorSpec]:
        raise KeyError(signature)

    # The caller's own failures are not the body's: they are not turned into a 400.
    with pytest.raises(KeyError):
        decode_predict_request(b'{"inputs": [1]}', broken)


def test_columnar_ignores_extra_keys_and_takes_named_scalars() -> None:
    call = decode('{"inputs": {"x": 1.5, "unused": "anything"}}', x="float32")
    assert list(call.inputs) == ["x"]
    same_tensor(call.inputs["x"], np.array(1.5, np.float32))


@pytest.mark.parametrize(
    ("b64", "expected"),
    [
        ("aGVsbG8=", b"hello"),
        ("aGVsbG8", b"hello"),  # absl accepts missing padding
        ("aGVsbG8.", b"hello"),  # and '.' as the pad character
        ("aGVs bG8=\n", b"hello"),  # and whitespace anywhere
        ("", b""),
        ("/+8=", b"\xff\xef"),
    ],
)
def test_base64_as_absl_decodes_it(b64: str, expected: bytes) -> None:
    call = decode('{"inputs": [{"b64": "' + b64.replace("\n", "\\n") + '"}]}', x="string")
    same_tensor(call.inputs["x"], strings(expected))


@pytest.mark.parametrize("b64", ["aGVsbG8==", "aGVsb", "aGV$", "aGVs=bG8=", "-_8="])
def test_base64_errors(b64: str) -> None:
    assert error('{"inputs": [{"b64": "' + b64 + '"}]}', x="string") == "Unable to base64 decode"


def test_rank_beyond_numpy_is_tf_servings_tensor_parsing_error() -> None:
    depth = tfs_json._MAX_RANK + 1
    body = '{"instances": [' + "[" * depth + "1" + "]" * depth + "]}"
    assert error(body, x="float32") == "tensor parsing error: x"
    fits = '{"inputs": ' + "[" * tfs_json._MAX_RANK + "1" + "]" * tfs_json._MAX_RANK + "}"
    assert decode(fits, x="float32").inputs["x"].ndim == tfs_json._MAX_RANK


# ======================================================================================
# Fast paths == the line-by-line port, and the two parsers agree.


def random_leaf(rng: random.Random) -> Any:
    kind = rng.random()
    if kind < 0.35:
        return rng.choice(
            [
                0,
                1,
                -1,
                7,
                2**31 - 1,
                2**31,
                -(2**31) - 1,
                2**63,
                2**64 - 1,
                -(2**63),
                rng.randint(-1000, 1000),
            ]
        )
    if kind < 0.7:
        return rng.choice([0.0, -0.0, 1.5, 1e300, 1e-300, math.nan, math.inf, rng.random()])
    if kind < 0.8:
        return rng.choice([True, False])
    if kind < 0.9:
        return rng.choice(["a", "", "\u00e9"])
    if kind < 0.95:
        return {"b64": rng.choice(["aGk=", "aGk", "!"])}
    return None


def random_value(rng: random.Random, uniform: bool) -> Any:
    rank = rng.randint(0, 3)
    shape = [rng.randint(0, 3) for _ in range(rank)]
    leaf = random_leaf(rng)

    def build(level: int) -> Any:
        if level == len(shape):
            return leaf if uniform else random_leaf(rng)
        n = shape[level] if uniform or rng.random() < 0.9 else rng.randint(0, 3)
        return [build(level + 1) for _ in range(n)]

    return build(0)


def outcome(body: bytes, dtypes: dict[str, str]) -> tuple[str, Any]:
    try:
        call = decode_predict_request(body, inputs_of(**dtypes))
    except InputError as e:
        return "error", e.message
    return "ok", call


DTYPES = ["float32", "float64", "int32", "uint8", "int64", "uint32", "uint64", "bool", "string"]


@pytest.mark.parametrize("seed", range(6))
def test_fast_paths_agree_with_the_port(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    cases: list[tuple[bytes, dict[str, str]]] = []
    for _ in range(150):
        uniform = rng.random() < 0.7
        dtype = rng.choice(DTYPES)
        shape = rng.randint(1, 4)
        if rng.random() < 0.5:
            doc: Any = {"instances": [random_value(rng, uniform) for _ in range(shape)]}
            dtypes = {"x": dtype}
        elif rng.random() < 0.5:
            doc = {
                "instances": [
                    {"x": random_value(rng, uniform), "y": random_value(rng, True)}
                    for _ in range(shape)
                ]
            }
            dtypes = {"x": dtype, "y": rng.choice(DTYPES)}
        else:
            doc = {"inputs": random_value(rng, uniform)}
            dtypes = {"x": dtype}
        cases.append((json.dumps(doc).encode(), dtypes))
    fast = [outcome(body, dtypes) for body, dtypes in cases]
    monkeypatch.setattr(tfs_json, "_fill_fast", lambda *args: None)
    monkeypatch.setattr(tfs_json, "_numeric_instances", lambda *args: None)
    exact = [outcome(body, dtypes) for body, dtypes in cases]
    assert_same_outcomes(cases, fast, exact)


def assert_same_outcomes(
    cases: list[tuple[bytes, dict[str, str]]],
    fast: list[tuple[str, Any]],
    exact: list[tuple[str, Any]],
) -> None:
    accepted = 0
    for (body, _), (kind, got), (kind_exact, want) in zip(cases, fast, exact, strict=True):
        assert kind == kind_exact, body
        if kind == "error":
            assert got == want, body
            continue
        accepted += 1
        assert got.columnar == want.columnar
        assert list(got.inputs) == list(want.inputs)
        for name in got.inputs:
            same_tensor(got.inputs[name], want.inputs[name])
    assert accepted > 20  # the generator must exercise successes, not only errors


# Bodies the simdjson path must either decode exactly as the general path does, or leave
# to it: near misses of the one shape it takes.
NUMERIC_BODIES = [
    b'{"instances": [[1.5, 2, -3e2], [4, 5, 6]]}',
    b'{"signature_name": "", "instances": [[1, 2]]}',
    b'{"instances": [0.1, 1e300, -1e300, 2.5e-45, 1e-320, -0.0, 18446744073709551615]}',
    b'{"instances": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]}',
    b'  \r\n{"instances": [[1]]}\t',
    b'{"instances": [[1, 2, 3], [4]]}',
    b'{"instances": [[1, [2]], [3, 4]]}',
    b'{"instances": [[[1, 2], [3, 4]], [[5, 6, 7, 8], []]]}',
    b'{"instances": [[1, 2], 3]}',
    b'{"instances": [[[1]], [[]], [[2]]]}',
    b'{"instances": [[1], []]}',
    b'{"instances": [1, [2]]}',
    b'{"instances": [[], []]}',
    b'{"instances": [[]]}',
    b'{"instances": []}',
    b'{"instances": [1e400]}',
    b'{"instances": [123456789012345678901234567890]}',
    b'{"instances": [NaN, 1]}',
    b'{"instances": [1, 2], "instances": [3, 4]}',
    b'{"instances": [1, 2], "inputs": [3, 4]}',
    b'{"instances": [1, 2], "other": 1}',
    b'{"signature_name": 7, "instances": [1]}',
    b'{"signature_name": "serving\\u005fdefault", "instances": [1]}',
    b'{"signature_name": "nope", "instances": [1]}',
    b'\xef\xbb\xbf{"instances": [1]}',
    b'{"instances": [1]} trailing',
    b'{"instances": [1,]}',
    b'[{"instances": [1]}]',
    b'{"instances": ' + b"[" * 70 + b"1" + b"]" * 70 + b"}",
]


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_numeric_fast_path_agrees_with_the_general_one(
    dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(dtype)
    cases = [(body, {"x": dtype}) for body in NUMERIC_BODIES]
    for _ in range(400):  # regular and ragged arrays of every rank up to 4
        value = random_value(rng, uniform=rng.random() < 0.6)
        cases.append((json.dumps({"instances": [value]}).encode(), {"x": dtype}))
    fast = [outcome(body, dtypes) for body, dtypes in cases]
    monkeypatch.setattr(tfs_json, "_numeric_instances", lambda *args: None)
    exact = [outcome(body, dtypes) for body, dtypes in cases]
    assert_same_outcomes(cases, fast, exact)


def test_numeric_fast_path_takes_the_common_body() -> None:
    lookups: list[str] = []

    def specs(signature: str) -> Mapping[str, TensorSpec]:
        lookups.append(signature)
        return {"x": TensorSpec("x", "float32", (None, 3))}

    body = b'{"instances": [[1, 2.5, 3e-1], [4, 5, 6]]}'
    call = tfs_json._numeric_instances(body, specs)
    assert call is not None and not call.columnar
    assert call.signature == "serving_default" and lookups == ["serving_default"]
    np.testing.assert_array_equal(
        call.inputs["x"], np.array([[1, 2.5, 0.3], [4, 5, 6]], dtype=np.float32)
    )
    assert call.inputs["x"].dtype == np.float32
    # Ragged with as many values as the first row's shape wants, ragged with fewer, and a
    # level out of place: left alone.
    for ragged in (
        b"[[1, 2], [3, 4, 5], [6]]",
        b"[[1, 2, 3], [4, 5]]",
        b"[[1, 2, [3]], [4, 5, 6]]",
    ):
        assert tfs_json._numeric_instances(b'{"instances": ' + ragged + b"}", specs) is None
    # A body the fast path declines asks for the signature's inputs once, not twice.
    lookups.clear()
    with pytest.raises(InputError):
        decode_predict_request(b'{"instances": [[1, 2, 3], [4, 5]]}', specs)
    assert lookups == ["serving_default"]


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.random()
    if depth < 4 and kind < 0.25:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if depth < 4 and kind < 0.45:
        return {
            rng.choice(["a", "b", "\u00e9", "\\", '"', "k\n"]): random_json(rng, depth + 1)
            for _ in range(rng.randint(0, 4))
        }
    return rng.choice(
        [
            None,
            True,
            False,
            0,
            -0,
            12,
            -(2**63),
            2**64 - 1,
            2**64,
            1.5,
            -0.0,
            1e-320,
            1.7976931348623157e308,
            "",
            "x",
            "\u00e9\u4e2d\U0001f600",
            "\x01\x1f",
            '\\/"',
            rng.random(),
            rng.randint(-(10**20), 10**20),
        ]
    )


@pytest.mark.parametrize("seed", range(3))
def test_rapidjson_reader_port_agrees_with_orjson(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        doc = random_json(rng)
        for text in (json.dumps(doc), json.dumps(doc, ensure_ascii=False, indent=1)):
            raw = text.encode()
            expected = orjson.loads(raw)
            assert tfs_json._Reader(raw).parse() == expected, text


def test_malformed_bodies_only_ever_raise_input_error() -> None:
    rng = random.Random(7)
    seeds = [
        b'{"instances": [[1.0, 2.0], [3.0, 4.0]], "signature_name": "s"}',
        b'{"inputs": {"a": [1, 2], "b": [{"b64": "aGk="}], "c": [true]}}',
        b'{"instances": [{"a": [1], "b": "x"}, {"a": [2], "b": "y"}]}',
    ]
    dtypes = {"a": "int32", "b": "string", "c": "bool", "x": "float32"}
    for _ in range(1500):
        body = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(body))
            op = rng.random()
            if op < 0.4:
                body[pos] = rng.choice(b'[]{}",:0123456789.eE+-ntfNI \\\x00\xff')
            elif op < 0.7:
                del body[pos]
            else:
                body[pos:pos] = bytes([rng.randrange(256)])
        with contextlib.suppress(InputError):
            decode_predict_request(bytes(body), inputs_of(**dtypes))


# ======================================================================================
# WriteDecimal and the rest of the writer.


def exact_strtof(text: str) -> np.float32:
    """The float nearest to the decimal, ties to even: absl::SimpleAtof, done exactly."""
    target = Fraction(text)
    guess = np.float32(float(text))
    candidates = [
        np.nextafter(guess, np.float32(-np.inf)),
        guess,
        np.nextafter(guess, np.float32(np.inf)),
    ]
    finite = [c for c in candidates if np.isfinite(c)]
    return min(finite, key=lambda c: (abs(Fraction(float(c)) - target), int(c.view(np.uint32)) & 1))


def reference_text(value: float, is32: bool) -> str:
    """WriteDecimal, written out: StrCat (printf "%g") if it reads back, else %.9g/%.17g."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = f"{value:.6g}"
    back_same = exact_strtof(text) == np.float32(value) if is32 else float(text) == value
    if not back_same:
        text = f"{value:.9g}" if is32 else f"{value:.17g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text


@pytest.mark.parametrize(
    ("value", "dtype", "text"),
    [
        (0.1, np.float32, "0.1"),
        (1 / 3, np.float32, "0.333333343"),
        (1 / 3, np.float64, "0.33333333333333331"),
        (0.1 + 0.2, np.float64, "0.30000000000000004"),
        (16777216.0, np.float32, "16777216.0"),
        (1234567.0, np.float32, "1234567.0"),
        (100000.0, np.float32, "100000.0"),
        (1e6, np.float32, "1e+06"),
        (123456789.0, np.float32, "123456792.0"),
        (1e22, np.float64, "1e+22"),
        (1e-5, np.float32, "1e-05"),  # six digits read back as the same float
        (1.2345678e-5, np.float32, "1.23456784e-05"),
        (1e-5, np.float64, "1e-05"),
        (1.2345678e-5, np.float64, "1.2345677999999999e-05"),
        (0.1234567, np.float64, "0.1234567"),  # %.17g drops trailing zeros
        (1.5e-40, np.float32, "1.50001e-40"),  # subnormal: the exact value rounds up
        (3.4028234663852886e38, np.float32, "3.40282347e+38"),
        (-0.0, np.float32, "-0.0"),
        (0.0, np.float64, "0.0"),
        (-2.5, np.float64, "-2.5"),
        (5e-324, np.float64, "4.94066e-324"),
        # 2.3890271450000000186e-07: float64's x * 10**15 lands on ...714.5 exactly and
        # would round to even; the true value is just above the half.
        (float(np.array([880820874], np.uint32).view(np.float32)[0]), np.float32, "2.38902715e-07"),
    ],
)
def test_write_decimal(value: float, dtype: Any, text: str) -> None:
    out = encode_predict_response({"y": np.array([value], dtype=dtype)}, columnar=False)
    assert out == b'{\n    "predictions": [' + text.encode() + b"\n    ]\n}"
    assert reference_text(float(np.array(value, dtype=dtype)), dtype == np.float32) == text


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_write_decimal_vectorised_matches_the_reference(dtype: Any) -> None:
    rng = np.random.default_rng(11)
    n = 4000
    parts = [
        rng.standard_normal(n) * 10.0 ** rng.integers(-12, 12, n),
        np.round(rng.standard_normal(n) * 1000, 3),
        rng.integers(-(10**9), 10**9, n).astype(np.float64),
        rng.random(n) * 1e-4,  # softmax tails: exponent notation
    ]
    values = np.concatenate(parts).astype(dtype)
    if dtype == np.float32:
        bits = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
        values = np.concatenate([values, bits.view(np.float32)])
    else:
        bits = rng.integers(0, 2**63, n, dtype=np.uint64)
        values = np.concatenate([values, bits.view(np.float64), -bits.view(np.float64)])
    out = encode_predict_response({"y": values}, columnar=False)
    is32 = dtype == np.float32
    expected = ", ".join(reference_text(v, is32) for v in values.tolist())
    assert out == b'{\n    "predictions": [' + expected.encode() + b"\n    ]\n}"


def _six_digit_edges() -> np.ndarray:
    """The floats next to six-digit decimals and to powers of two (whose float below is
    twice as near), where "%g" reading back as the value is decided by an ulp."""
    rng = np.random.default_rng(12)
    with np.errstate(over="ignore"):
        decimals = rng.integers(100000, 999999, 1500) * 10.0 ** rng.integers(-44, 33, 1500)
        nearest = decimals.astype(np.float32)
    powers = np.ldexp(np.float32(1), np.arange(-149, 128)).astype(np.float32)
    edges = np.concatenate([nearest, powers, -powers])
    return np.concatenate(
        [
            edges,
            np.nextafter(edges, np.float32(np.inf)),
            np.nextafter(edges, np.float32(-np.inf)),
            rng.integers(0, 2**32, 1500, dtype=np.uint64).astype(np.uint32).view(np.float32),
        ]
    )


def test_write_decimal_value_by_value_matches_the_reference_at_six_digits_edges() -> None:
    # Arrays of at most 256 values are written one value at a time.
    values = _six_digit_edges()
    for chunk in np.array_split(values, 30):  # ~250 values each
        out = encode_predict_response({"y": chunk}, columnar=False)
        expected = ", ".join(reference_text(v, True) for v in chunk.tolist())
        assert out == b'{\n    "predictions": [' + expected.encode() + b"\n    ]\n}"


def test_write_decimal_vectorised_matches_the_reference_at_six_digits_edges() -> None:
    # One array: the plan decides six digits against half the float's ulp in numpy.
    values = _six_digit_edges()
    out = encode_predict_response({"y": values}, columnar=False)
    expected = ", ".join(reference_text(v, True) for v in values.tolist())
    assert out == b'{\n    "predictions": [' + expected.encode() + b"\n    ]\n}"


def test_columnar_layout_of_floats_with_patched_values() -> None:
    values = np.array([[0.5, 1.2345678e-5], [np.nan, 2.0]], dtype=np.float32)
    out = encode_predict_response({"y": values}, columnar=True)
    assert out == (
        b'{\n    "outputs": [\n        [\n            0.5,\n            1.23456784e-05\n'
        b"        ],\n        [\n            NaN,\n            2.0\n        ]\n    ]\n}"
    )


@pytest.mark.parametrize(
    ("array", "text"),
    [
        (np.array([1, -2], np.int8), b"[1, -2]"),
        (np.array([255], np.uint8), b"[255]"),
        (np.array([-32768], np.int16), b"[-32768]"),
        (np.array([4294967295], np.uint32), b"[4294967295]"),
        (np.array([-(2**63)], np.int64), b"[-9223372036854775808]"),
        (np.array([2**64 - 1], np.uint64), b"[18446744073709551615]"),
        (np.array([True, False]), b"[true, false]"),
        (np.array(["x", "\u00e9"]), '["x", "\u00e9"]'.encode()),
        (
            np.array([b'a\x00\x1f\x7f/"\\\n\t\xff'], dtype=object),
            b'["a\\u0000\\u001F\x7f/\\"\\\\\\n\\t\xff"]',
        ),
    ],
)
def test_value_types(array: np.ndarray, text: bytes) -> None:
    out = encode_predict_response({"y": array}, columnar=False)
    assert out == b'{\n    "predictions": ' + text[:-1] + b"\n    ]\n}"


@pytest.mark.parametrize(("dtype", "name"), [(np.uint16, "uint16"), (np.float16, "half")])
def test_output_types_tf_serving_cannot_write(dtype: Any, name: str) -> None:
    with pytest.raises(InputError) as info:
        encode_predict_response({"y": np.zeros(2, dtype)}, columnar=True)
    assert info.value.message == f"Failed to write JSON value for tensor type: {name}"
    # No value is written, so nothing is refused.
    empty = encode_predict_response({"y": np.zeros((0,), dtype)}, columnar=True)
    assert empty == b'{\n    "outputs": []\n}'


def test_outputs_in_any_memory_layout() -> None:
    native = np.array([[0.5, 1.25], [3.0, 1e-7]], np.float32)
    expected = encode_predict_response({"y": native}, False)
    assert expected == b'{\n    "predictions": [[0.5, 1.25], [3.0, 1e-07]\n    ]\n}'
    assert encode_predict_response({"y": native.astype(">f4")}, False) == expected
    transposed = np.asfortranarray(native.T).T  # same values, Fortran order
    assert encode_predict_response({"y": transposed}, False) == expected
    ints = np.arange(6, dtype=">i8").reshape(2, 3)[:, ::2]
    assert encode_predict_response({"y": ints}, False) == (
        b'{\n    "predictions": [[0, 2], [3, 5]\n    ]\n}'
    )


def test_scalar_outputs_in_columnar_format() -> None:
    assert encode_predict_response({"y": np.array(3.5, np.float32)}, True) == (
        b'{\n    "outputs": 3.5\n}'
    )
    assert encode_predict_response(
        {"a": np.array(b"x", dtype=object), "a_bytes": np.array(b"x", dtype=object)}, True
    ) == (
        b'{\n    "outputs": {\n        "a": "x",\n        "a_bytes": {\n'
        b'            "b64": "eA=="\n        }\n    }\n}'
    )


def test_row_format_of_rank_one_outputs_next_to_others() -> None:
    out = encode_predict_response(
        {
            "score": np.array([0.25, 0.5], np.float32),
            "label_bytes": strings(b"a", b"b"),
            "ids": np.array([[1, 2], [3, 4]], np.int64),
        },
        columnar=False,
    )
    assert out == (
        b'{\n    "predictions": [\n        {\n            "ids": [1, 2],\n'
        b'            "label_bytes": {\n                "b64": "YQ=="\n            },\n'
        b'            "score": 0.25\n        },\n        {\n            "ids": [3, 4],\n'
        b'            "label_bytes": {\n                "b64": "Yg=="\n            },\n'
        b'            "score": 0.5\n        }\n    ]\n}'
    )


def test_encode_error_escapes_as_rapidjson() -> None:
    assert encode_error('line\nbreak \x01 "q" / \xe9') == (
        '{\n    "error": "line\\nbreak \\u0001 \\"q\\" / \xe9"\n}'.encode()
    )
    # Request bytes that are not UTF-8 come back as U+FFFD, so the answer stays JSON
    # (TF Serving echoes them raw).
    message = error(b'{"inputs": ["\xff"]}', x="int32")
    answer = encode_error(message)
    assert answer == (
        b'{\n    "error": "JSON Value: \\"\xef\xbf\xbd\\" Type: String is not of expected '
        b'type: int32"\n}'
    )
    assert json.loads(answer)["error"].startswith('JSON Value: "\ufffd"')


def test_classification_result_edge_cases() -> None:
    result = classification_pb2.ClassificationResult()
    text_format.Parse(
        'classifications { } classifications { classes { label: "a\\"b" score: 1e-07 } '
        "classes { score: NaN } }",
        result,
    )
    assert encode_classification_result(result) == (
        b'{\n    "results": [[], [["a\\"b", 1e-07], ["", NaN]]\n    ]\n}'
    )
