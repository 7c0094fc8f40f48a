"""The KServe V2 codecs against tritonclient itself: requests that tritonclient builds decode
to the arrays it was given, responses the codecs build read back through tritonclient's
``InferResult`` to the arrays the model gave; bad input is an ``InputError``, always."""

from __future__ import annotations

import json
import struct
from typing import Any

import ml_dtypes
import numpy as np
import orjson
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import _utils as grpc_utils
from tritonclient.grpc import model_config_pb2, service_pb2
from tritonclient.utils import np_to_triton_dtype, triton_to_np_dtype

from tfhost import __version__
from tfhost.errors import InputError, InternalError
from tfhost.serve.codecs import v2
from tfhost.specs import SignatureSpec, TensorSpec

# One sample per datatype, with each type's edge values.
SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([0, 1, 255], dtype=np.uint8),
    "UINT16": np.array([0, 1, 65535], dtype=np.uint16),
    "UINT32": np.array([0, 7, 2**32 - 1], dtype=np.uint32),
    "UINT64": np.array([0, 2**63, 2**64 - 1], dtype=np.uint64),
    "INT8": np.array([-128, 0, 127], dtype=np.int8),
    "INT16": np.array([-32768, 1, 32767], dtype=np.int16),
    "INT32": np.array([[-(2**31), 0], [5, 2**31 - 1]], dtype=np.int32),
    "INT64": np.array([-(2**63), -1, 2**63 - 1], dtype=np.int64),
    "FP16": np.array([0.0, -1.5, 65504.0, 6e-8], dtype=np.float16),
    "FP32": np.array([[0.1, -2.5e-38, 3.4e38], [1.0, 1e-45, -0.0]], dtype=np.float32),
    "FP64": np.array([0.1, 1e-308, -1.7976931348623157e308, 5e-324], dtype=np.float64),
    "BF16": np.array([1.5, -2.0, 3.0e38, 0.0078125], dtype=ml_dtypes.bfloat16),
    "BYTES": np.array([[b"ab", b""], ["é".encode(), b"x" * 300]], dtype=object),
}
# Binary BYTES carry any bytes, JSON only text.
RAW_BYTES = np.array([b"\x00\xff\xfe", b"", b"\x00" * 5], dtype=object)
DATATYPES = list(SAMPLES)
JSON_DATATYPES = [d for d in DATATYPES if d != "BF16"]  # tritonclient sends BF16 binary only


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    if want.dtype == object:
        assert got.tolist() == want.tolist()
        assert all(type(v) is bytes for v in got.ravel())
    else:
        np.testing.assert_array_equal(got, want, strict=True)
        # Bit for bit: -0.0 and the smallest subnormals survive.
        assert got.tobytes() == np.ascontiguousarray(want).tobytes()


def http_input(name: str, value: np.ndarray, datatype: str, binary: bool) -> Any:
    tensor = thttp.InferInput(name, list(value.shape), datatype)
    tensor.set_data_from_numpy(value, binary_data=binary)
    return tensor


def http_request(
    tensors: list[Any], outputs: list[Any] | None = None, **options: Any
) -> tuple[bytes, int | None]:
    body, length = thttp.InferenceServerClient.generate_request_body(
        tensors, outputs=outputs, **options
    )
    return body, length


def read_http(body: bytes, length: int | None) -> Any:
    return thttp.InferResult.from_response_body(body, header_length=length)


def json_request(inputs: list[dict[str, Any]], **top: Any) -> bytes:
    # The stdlib writes integers past 64 bits, which orjson refuses to.
    return json.dumps({"inputs": inputs, **top}).encode()


# -- datatypes ------------------------------------------------------------------------------


def test_datatypes_agree_with_tritonclient() -> None:
    for datatype in v2.DATATYPES:
        want = np.dtype(triton_to_np_dtype(datatype))
        assert v2.numpy_dtype(datatype) == want, datatype
        assert np_to_triton_dtype(v2.numpy_dtype(datatype)) == datatype
        assert v2.v2_datatype(v2.tf_dtype(datatype)) == datatype
    for datatype, sample in SAMPLES.items():
        assert v2.array_datatype(sample) == np_to_triton_dtype(sample.dtype) == datatype
    assert v2.array_datatype(np.array(["text"])) == "BYTES"
    assert v2.array_datatype(np.array([b"raw"])) == "BYTES"


def test_tensorflow_dtype_names() -> None:
    assert v2.v2_datatype("float32") == "FP32"
    assert v2.v2_datatype("string") == "BYTES"
    assert v2.v2_datatype("bfloat16") == "BF16"
    assert v2.v2_datatype("complex64") == v2.INVALID
    assert v2.tf_dtype("BOOL") == "bool"
    with pytest.raises(InputError, match="unknown datatype 'FLOAT32'"):
        v2.tf_dtype("FLOAT32")
    with pytest.raises(InternalError, match="complex64"):
        v2.array_datatype(np.zeros(2, np.complex64))


# -- REST requests ---------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", DATATYPES)
def test_http_binary_input_every_datatype(datatype: str) -> None:
    sample = SAMPLES[datatype]
    body, length = http_request([http_input("x", sample, datatype, binary=True)])
    assert length is not None
    call = v2.decode_infer_request(body, length)
    assert list(call.inputs) == ["x"]
    assert_same(call.inputs["x"], sample)


@pytest.mark.parametrize("datatype", JSON_DATATYPES)
def test_http_json_input_every_datatype(datatype: str) -> None:
    sample = SAMPLES[datatype]
    body, length = http_request([http_input("x", sample, datatype, binary=False)])
    assert length is None
    call = v2.decode_infer_request(body, None)
    assert_same(call.inputs["x"], sample)


def test_http_binary_bytes_are_not_text() -> None:
    body, length = http_request([http_input("raw", RAW_BYTES, "BYTES", binary=True)])
    assert_same(v2.decode_infer_request(body, length).inputs["raw"], RAW_BYTES)


def test_http_mixed_inputs_and_request_fields() -> None:
    tensors = [
        http_input("a", SAMPLES["FP32"], "FP32", binary=True),
        http_input("b", SAMPLES["BYTES"], "BYTES", binary=False),
        http_input("c", RAW_BYTES, "BYTES", binary=True),
        http_input("d", SAMPLES["INT64"], "INT64", binary=False),
        http_input("e", SAMPLES["FP16"], "FP16", binary=True),
    ]
    outputs = [thttp.InferRequestedOutput("y", binary_data=False), thttp.InferRequestedOutput("z")]
    body, length = http_request(
        tensors,
        outputs,
        request_id="req-7",
        sequence_id=42,
        sequence_start=True,
        priority=3,
        timeout=1000,
        parameters={"signature_name": "serving_default", "k": 2.5, "flag": False},
    )
    call = v2.decode_infer_request(body, length)
    assert list(call.inputs) == ["a", "b", "c", "d", "e"]
    for name, want in zip("abcde", ("FP32", "BYTES", None, "INT64", "FP16"), strict=True):
        assert_same(call.inputs[name], RAW_BYTES if want is None else SAMPLES[want])
    assert call.id == "req-7"
    assert call.outputs == ("y", "z")
    assert call.binary == {"y": False, "z": True}
    assert not call.wants_binary("y") and call.wants_binary("z")
    assert call.parameters == {
        "sequence_id": 42,
        "sequence_start": True,
        "sequence_end": False,
        "priority": 3,
        "timeout": 1000,
        "signature_name": "serving_default",
        "k": 2.5,
        "flag": False,
    }


def test_http_no_outputs_means_all_in_binary() -> None:
    # tritonclient asks for every output in binary by setting binary_data_output.
    body, length = http_request([http_input("x", SAMPLES["INT8"], "INT8", binary=False)])
    call = v2.decode_infer_request(body, length)
    assert call.outputs == () and call.binary == {} and call.binary_default is True
    assert call.wants_binary("anything")
    assert "binary_data_output" not in call.parameters
    bare = v2.decode_infer_request(json_request([_json_input("x", "INT8", [1], [1])]), None)
    assert bare.binary_default is False and bare.id is None


def test_listed_output_without_binary_data_follows_binary_data_output() -> None:
    body = json_request(
        [_json_input("x", "INT8", [1], [1])],
        outputs=[{"name": "y"}, {"name": "z", "parameters": {"binary_data": False}}],
        parameters={"binary_data_output": True},
    )
    call = v2.decode_infer_request(body, None)
    assert call.wants_binary("y") and not call.wants_binary("z")


def _json_input(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def test_json_data_nested_as_the_shape() -> None:
    body = json_request(
        [
            _json_input("f", "FP32", [2, 3], [[1, 2.5, 3], [4, 5, 6]]),
            _json_input("s", "BYTES", [2, 1], [["a"], ["bc"]]),
            _json_input("b", "BOOL", [1, 2], [[True, False]]),
            _json_input("i", "INT16", [3, 1], [[1], [-2], [3]]),
            _json_input("scalar", "INT64", [], [7]),
            _json_input("empty", "FP32", [2, 0], [[], []]),
        ]
    )
    inputs = v2.decode_infer_request(body, None).inputs
    assert_same(inputs["f"], np.array([[1, 2.5, 3], [4, 5, 6]], dtype=np.float32))
    assert_same(inputs["s"], np.array([[b"a"], [b"bc"]], dtype=object))
    assert_same(inputs["b"], np.array([[True, False]]))
    assert_same(inputs["i"], np.array([[1], [-2], [3]], dtype=np.int16))
    assert_same(inputs["scalar"], np.array(7, dtype=np.int64))
    assert inputs["empty"].shape == (2, 0) and inputs["empty"].dtype == np.float32


def test_json_leniencies() -> None:
    # Documented: FP16/BF16 as JSON numbers, and bools inside numbers count as 1/0.
    body = json_request(
        [
            _json_input("h", "BF16", [2], [1.5, -2]),
            _json_input("n", "INT32", [2], [True, 5]),
        ]
    )
    inputs = v2.decode_infer_request(body, None).inputs
    assert_same(inputs["h"], np.array([1.5, -2], dtype=ml_dtypes.bfloat16))
    assert_same(inputs["n"], np.array([1, 5], dtype=np.int32))


def test_json_fp32_rounds_as_triton() -> None:
    # Triton reads a double and casts it to float: round to nearest, overflow to inf.
    values = [0.1, 1e300, -1e300, 3.4028235677973366e38, 1.401298464324817e-45]
    body = json_request([_json_input("x", "FP32", [5], values)])
    with np.errstate(over="ignore"):
        want = np.array(values, dtype=np.float64).astype(np.float32)
    assert_same(v2.decode_infer_request(body, None).inputs["x"], want)


@pytest.mark.parametrize("extra", [0, 1, 2, 3, 5, 7])
def test_binary_inputs_aligned_views_or_aligned_copies(extra: int) -> None:
    # The request id's length moves the binary section through every alignment.
    sample = SAMPLES["FP64"]
    body, length = http_request(
        [http_input("x", sample, "FP64", binary=True)], request_id="r" * (1 + extra)
    )
    assert length is not None
    got = v2.decode_infer_request(body, length).inputs["x"]
    assert_same(got, sample)
    assert got.flags.aligned
    whole = np.frombuffer(body, np.uint8)
    if np.frombuffer(body, np.uint8, 1, length).ctypes.data % 8 == 0:
        assert np.shares_memory(got, whole) and not got.flags.writeable
    else:
        assert not np.shares_memory(got, whole)


def test_binary_bool_reads_nonzero_as_true() -> None:
    header = json_request(
        [{"name": "b", "datatype": "BOOL", "shape": [3], "parameters": {"binary_data_size": 3}}]
    )
    call = v2.decode_infer_request(header + b"\x00\x02\x01", len(header))
    assert_same(call.inputs["b"], np.array([False, True, True]))


def test_zero_sized_binary_input() -> None:
    empty = np.zeros((0, 4), dtype=np.float32)
    body, length = http_request(
        [http_input("e", empty, "FP32", True), http_input("x", SAMPLES["INT8"], "INT8", True)]
    )
    inputs = v2.decode_infer_request(body, length).inputs
    assert_same(inputs["e"], empty)
    assert_same(inputs["x"], SAMPLES["INT8"])


# -- REST responses --------------------------------------------------------------------------


def _call(outputs: tuple[str, ...] = (), binary: dict[str, bool] | None = None, **kw: Any) -> Any:
    return v2.InferCall(
        id=kw.pop("id", None), inputs={}, outputs=outputs, binary=binary or {}, **kw
    )


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", DATATYPES)
def test_http_response_every_datatype(datatype: str, binary: bool) -> None:
    sample = SAMPLES[datatype]
    call = _call(("y",), {"y": binary})
    body, length = v2.encode_infer_response("m", "3", call, {"y": sample, "ignored": sample})
    assert (length is not None) == binary
    result = read_http(body, length)
    got = result.as_numpy("y")
    if datatype == "BYTES" and not binary:
        # tritonclient reads JSON BYTES as str.
        assert got.tolist() == [[v.decode() for v in row] for row in sample.tolist()]
    else:
        assert_same(got.astype(sample.dtype) if datatype == "BYTES" else got, sample)
    response = result.get_response()
    assert response["model_name"] == "m" and response["model_version"] == "3"
    assert [o["name"] for o in response["outputs"]] == ["y"]
    assert response["outputs"][0]["datatype"] == datatype


def test_http_response_golden_json() -> None:
    call = _call(("y", "s"), {"y": False, "s": False}, id="r1")
    outputs = {"s": np.array([b"a", "é".encode()], dtype=object), "y": np.array([1.0, 2.5], "f4")}
    body, length = v2.encode_infer_response("m", 1, call, outputs)
    assert length is None
    assert body == (
        b'{"id":"r1","model_name":"m","model_version":"1","outputs":['
        b'{"name":"y","datatype":"FP32","shape":[2],"data":[1.0,2.5]},'
        b'{"name":"s","datatype":"BYTES","shape":[2],"data":["a","\xc3\xa9"]}]}'
    )


def test_http_response_golden_binary() -> None:
    call = _call(("a", "b", "s"), {"a": True, "b": False, "s": True})
    outputs = {
        "a": np.array([1, 2], dtype=np.int16),
        "b": np.array([[True]]),
        "s": np.array([b"xy"], dtype=object),
    }
    body, length = v2.encode_infer_response("m", "2", call, outputs)
    assert length is not None
    header = orjson.loads(body[:length])
    assert header["outputs"] == [
        {"name": "a", "datatype": "INT16", "shape": [2], "parameters": {"binary_data_size": 4}},
        {"name": "b", "datatype": "BOOL", "shape": [1, 1], "data": [True]},
        {"name": "s", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}},
    ]
    assert "id" not in header
    assert body[length:] == b"\x01\x00\x02\x00" + b"\x02\x00\x00\x00xy"


def test_http_response_all_outputs_follow_binary_default() -> None:
    outputs: dict[str, np.ndarray] = {
        "p": np.arange(3, dtype=np.int32),
        "q": np.array(2.5, dtype=np.float64),
    }
    body, length = v2.encode_infer_response("m", "1", _call(binary_default=True), outputs)
    result = read_http(body, length)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["p", "q"]
    assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
    assert_same(result.as_numpy("p"), outputs["p"])
    assert_same(result.as_numpy("q"), outputs["q"])


def test_http_response_zero_sized_binary_has_no_binary_section() -> None:
    # As Triton: no binary bytes, no Inference-Header-Content-Length.
    call = _call(("e",), {"e": True})
    body, length = v2.encode_infer_response("m", "1", call, {"e": np.zeros((2, 0), np.float32)})
    assert length is None
    got = read_http(body, length).as_numpy("e")
    assert got.shape == (2, 0) and got.dtype == np.float32


def test_http_response_nonfinite_json() -> None:
    values = np.array([np.nan, np.inf, -np.inf, 1.5, -0.0], dtype=np.float32)
    call = _call(("y", "h"), {"y": False, "h": False})
    body, length = v2.encode_infer_response("m", "1", call, {"y": values, "h": values.astype("f2")})
    assert b'"data":[NaN,Infinity,-Infinity,1.5,-0.0]' in body
    result = read_http(body, length)
    assert_same(result.as_numpy("y"), values)
    assert_same(result.as_numpy("h"), values.astype(np.float16))
    assert json.loads(body)["outputs"][0]["data"][1] == float("inf")  # Python's json too


def test_http_response_non_native_and_strided_arrays() -> None:
    big_endian = np.arange(4, dtype=">i4")
    strided = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]
    call = _call(("b", "s", "bj"), {"b": True, "s": True, "bj": False})
    outputs = {"b": big_endian, "s": strided, "bj": big_endian}
    body, length = v2.encode_infer_response("m", "1", call, outputs)
    result = read_http(body, length)
    np.testing.assert_array_equal(result.as_numpy("b"), big_endian)
    np.testing.assert_array_equal(result.as_numpy("s"), strided)
    np.testing.assert_array_equal(result.as_numpy("bj"), big_endian)


def test_http_response_text_outputs() -> None:
    text = np.array(["naïve", "b"])  # numpy str, as a Keras model may return
    call = _call(("t", "tb"), {"t": False, "tb": True})
    body, length = v2.encode_infer_response("m", "1", call, {"t": text, "tb": text})
    result = read_http(body, length)
    assert result.as_numpy("t").tolist() == ["naïve", "b"]
    assert result.as_numpy("tb").tolist() == ["naïve".encode(), b"b"]


def test_http_response_errors() -> None:
    with pytest.raises(InputError, match="unexpected inference output 'nope' for model 'm'"):
        v2.encode_infer_response("m", "1", _call(("nope",)), {"y": np.zeros(1)})
    with pytest.raises(InputError, match=r"not UTF-8.*binary_data"):
        v2.encode_infer_response(
            "m", "1", _call(("s",), {"s": False}), {"s": np.array([b"\xff"], dtype=object)}
        )
    with pytest.raises(InternalError, match="complex128"):
        v2.encode_infer_response("m", "1", _call(), {"c": np.zeros(2, np.complex128)})
    with pytest.raises(InternalError, match="holds a int"):
        v2.encode_infer_response(
            "m", "1", _call(binary_default=True), {"s": np.array([b"a", 3], dtype=object)}
        )
    assert orjson.loads(v2.encode_error("boom")) == {"error": "boom"}


# -- gRPC ------------------------------------------------------------------------------------


def grpc_request(
    tensors: list[Any], outputs: list[Any] | None = None, request_id: str = "", **options: Any
) -> Any:
    request = grpc_utils._get_inference_request(
        model_name="m",
        inputs=tensors,
        model_version="",
        request_id=request_id,
        outputs=outputs,
        sequence_id=options.pop("sequence_id", 0),
        sequence_start=options.pop("sequence_start", False),
        sequence_end=options.pop("sequence_end", False),
        priority=options.pop("priority", 0),
        timeout=options.pop("timeout", None),
        parameters=options.pop("parameters", None),
    )
    # Across the wire and back, as the servicer sees it.
    return service_pb2.ModelInferRequest.FromString(request.SerializeToString())


def grpc_input(name: str, value: np.ndarray, datatype: str) -> Any:
    tensor = tgrpc.InferInput(name, list(value.shape), datatype)
    tensor.set_data_from_numpy(value)
    return tensor


@pytest.mark.parametrize("datatype", DATATYPES)
def test_grpc_raw_input_every_datatype(datatype: str) -> None:
    sample = SAMPLES[datatype]
    call = v2.decode_infer_request_grpc(grpc_request([grpc_input("x", sample, datatype)]))
    assert_same(call.inputs["x"], sample)
    assert call.outputs == () and call.id is None


def test_grpc_request_fields() -> None:
    tensors = [grpc_input("a", RAW_BYTES, "BYTES"), grpc_input("b", SAMPLES["UINT64"], "UINT64")]
    request = grpc_request(
        tensors,
        [tgrpc.InferRequestedOutput("y"), tgrpc.InferRequestedOutput("z")],
        request_id="g1",
        sequence_id="seq",
        sequence_end=True,
        priority=2,
        timeout=50,
        parameters={"signature_name": "s", "n": 3, "f": 0.5, "on": True},
    )
    call = v2.decode_infer_request_grpc(request)
    assert_same(call.inputs["a"], RAW_BYTES)
    assert_same(call.inputs["b"], SAMPLES["UINT64"])
    assert call.id == "g1" and call.outputs == ("y", "z")
    assert call.wants_binary("y") and call.wants_binary("z")
    assert call.parameters == {
        "sequence_id": "seq",
        "sequence_start": False,
        "sequence_end": True,
        "priority": 2,
        "timeout": 50,
        "signature_name": "s",
        "n": 3,
        "f": 0.5,
        "on": True,
    }


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d not in ("FP16", "BF16")])
def test_grpc_typed_contents_every_datatype(datatype: str) -> None:
    sample = SAMPLES[datatype]
    request = service_pb2.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=list(sample.shape))
    field = v2._BY_V2[datatype].contents
    assert field is not None
    getattr(tensor.contents, field).extend(sample.ravel().tolist())
    request = service_pb2.ModelInferRequest.FromString(request.SerializeToString())
    assert_same(v2.decode_infer_request_grpc(request).inputs["x"], sample)


@pytest.mark.parametrize("datatype", DATATYPES)
def test_grpc_response_every_datatype(datatype: str) -> None:
    sample = SAMPLES[datatype]
    call = v2.InferCall(id="q", inputs={}, outputs=("y", "z"))
    outputs = {"z": np.arange(3, dtype=np.int32), "y": sample}
    response = v2.encode_infer_response_grpc("m", "4", call, outputs)
    response = service_pb2.ModelInferResponse.FromString(response.SerializeToString())
    result = tgrpc.InferResult(response)
    got = result.as_numpy("y")
    assert_same(got.astype(object) if datatype == "BYTES" else got, sample)
    assert_same(result.as_numpy("z"), outputs["z"])
    assert (response.model_name, response.model_version, response.id) == ("m", "4", "q")
    assert [o.datatype for o in response.outputs] == [datatype, "INT32"]
    assert len(response.raw_output_contents) == 2


def test_grpc_response_all_outputs_and_errors() -> None:
    outputs = {"a": SAMPLES["BYTES"], "b": np.float32(2.5)}
    response = v2.encode_infer_response_grpc("m", 1, v2.InferCall(None, {}), outputs)
    result = tgrpc.InferResult(response)
    assert [o.name for o in response.outputs] == ["a", "b"] and response.id == ""
    assert_same(result.as_numpy("b"), np.array(2.5, dtype=np.float32))
    with pytest.raises(InputError, match="unexpected inference output 'c'"):
        v2.encode_infer_response_grpc("m", 1, v2.InferCall(None, {}, ("c",)), outputs)


def _typed(datatype: str, shape: list[int], **contents: Any) -> Any:
    request = service_pb2.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    return request


def _raw_request(datatype: str, shape: list[int], raw: bytes) -> Any:
    request = service_pb2.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return request


def _with_raw_and_contents() -> Any:
    request = _raw_request("INT32", [1], b"\x01\x00\x00\x00")
    request.inputs[0].contents.int_contents.append(1)
    return request


def _two_inputs_one_raw() -> Any:
    request = _raw_request("INT32", [1], b"\x01\x00\x00\x00")
    request.inputs.add(name="y", datatype="INT32", shape=[1])
    return request


def _output_with(parameter: str) -> Any:
    request = _typed("INT32", [1], int_contents=[1])
    output = request.outputs.add(name="y")
    output.parameters[parameter].int64_param = 1
    return request


def _reserved_parameter() -> Any:
    request = _typed("INT32", [1], int_contents=[1])
    request.parameters["triton_x"].bool_param = True
    return request


def _empty_parameter() -> Any:
    request = _typed("INT32", [1], int_contents=[1])
    request.parameters["p"].SetInParent()
    return request


GRPC_ERRORS = [
    (lambda: _typed("FLOAT", [1]), "unknown datatype 'FLOAT'"),
    (lambda: _typed("FP16", [1]), "FP16 has no typed contents field"),
    (lambda: _typed("INT32", [2], int_contents=[1]), r"1 values in int_contents; shape \[2\]"),
    (lambda: _typed("INT32", [1], fp32_contents=[1.0]), "goes in int_contents, but has fp32"),
    (lambda: _typed("INT8", [1], int_contents=[300]), "outside INT8's range"),
    (lambda: _typed("UINT16", [1], uint_contents=[70000]), "outside UINT16's range"),
    (lambda: _typed("INT32", [-1], int_contents=[1]), "Unable to parse 'shape'"),
    (lambda: _raw_request("FP32", [2], b"\x00" * 7), "unexpected byte size 7"),
    (lambda: _raw_request("BYTES", [1], b"\x05\x00\x00\x00ab"), "claims 5 bytes"),
    (lambda: _raw_request("BYTES", [2], b"\x00\x00\x00\x00"), "expected 2 string elements"),
    (lambda: _raw_request("BYTES", [1], b"\x01\x00"), "size indicator exceeds"),
    (_with_raw_and_contents, "contents field must not be specified when using raw_input"),
    (_two_inputs_one_raw, "raw_input_contents has 1 entries for 2 inputs"),
    (lambda: _output_with("classification"), "classification"),
    (lambda: _output_with("shared_memory_region"), "shared memory"),
    (_reserved_parameter, "reserved for Triton"),
    (_empty_parameter, "parameter 'p' has no value"),
]


@pytest.mark.parametrize(("build", "message"), GRPC_ERRORS)
def test_grpc_request_errors(build: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        v2.decode_infer_request_grpc(build())


# -- REST request errors ---------------------------------------------------------------------


def _binary(header: dict[str, Any], data: bytes) -> tuple[bytes, int]:
    text = orjson.dumps(header)
    return text + data, len(text)


def _bin_input(datatype: str, shape: list[int], size: Any, name: str = "x") -> dict[str, Any]:
    return {
        "name": name,
        "datatype": datatype,
        "shape": shape,
        "parameters": {"binary_data_size": size},
    }


def _j(datatype: str, shape: Any, data: Any, **more: Any) -> tuple[bytes, None]:
    return json_request(
        [{"name": "x", "datatype": datatype, "shape": shape, "data": data, **more}]
    ), None


HTTP_ERRORS: list[tuple[tuple[bytes, int | None], str]] = [
    ((b"{not json", None), "failed to parse the request JSON buffer"),
    ((b"[1, 2]", None), "not a JSON object"),
    ((b'{"inputs": {}}', None), "Unable to parse 'inputs'"),
    ((b'{"inputs": [], "id": 5}', None), "Unable to parse 'id'"),
    ((b'{"inputs": [7]}', None), "input 0 is not an object"),
    ((b'{"inputs": [{"datatype": "FP32"}]}', None), "Unable to parse 'name' of input 0"),
    (_j("FP33", [1], [1]), "unknown datatype 'FP33' for input 'x'"),
    (_j("FP32", [2], [1.0]), "needs 2 values for shape"),
    (_j("FP32", [2, 2], [[1, 2, 3], [4]]), "Shape does not match true shape"),
    (_j("FP32", [2, 3], [[1, 2], [3, 4], [5, 6]]), "nested as the shape"),
    (_j("FP32", [2], [1.0, "2"]), "FP32, which takes numbers only"),
    (_j("FP32", [2], [1.0, None]), "numbers only"),
    (_j("INT32", [2], [1, 2.5]), "INT32, which takes integers"),
    (_j("INT64", [1], [2**64]), "INT64, which takes integers"),
    (_j("INT8", [2], [1, 128]), r"outside INT8's range \[-128, 127\]"),
    (_j("UINT8", [1], [-1]), "UINT8, which takes integers"),
    (_j("BOOL", [2], [True, 1]), "BOOL: true or false only"),
    (_j("BYTES", [2], ["a", 2]), "BYTES: strings only"),
    (_j("FP32", [1], 1.0), "data is not an array"),
    (_j("FP32", [-1], [1.0]), "Unable to parse 'shape'"),
    (_j("FP32", [True], [1.0]), "Unable to parse 'shape'"),
    (_j("FP32", [1.0], [1.0]), "Unable to parse 'shape'"),
    (_j("FP32", "2", [1.0]), "Unable to parse 'shape' of input 'x'"),
    (_j("FP32", [1] * 33, [1.0]), "33 dimensions"),
    (_j("FP32", [0, 2**62, 2**62], []), "too large"),
    (_j("FP32", [1], [1.0], parameters=[]), "Unable to parse 'parameters' of input"),
    (_j("FP32", [1], [1.0], parameters={"binary_data_size": 4}), "But set 'data' 'binary_data"),
    (
        (json_request([{"name": "x", "datatype": "FP32", "shape": [1]}]), None),
        "Input must set only one of the following fields.*But no field is set",
    ),
    (
        _j("FP32", [1], [1.0], parameters={"shared_memory_region": "r"}),
        "But set 'data' 'shared_memory_region'",
    ),
    (
        (
            json_request(
                [
                    {
                        "name": "x",
                        "datatype": "FP32",
                        "shape": [1],
                        "parameters": {"shared_memory_region": "r"},
                    }
                ]
            ),
            None,
        ),
        "does not support shared memory",
    ),
    (
        (
            json_request([_json_input("x", "FP32", [1], [1]), _json_input("x", "FP32", [1], [1])]),
            None,
        ),
        "input 'x' appears more than once",
    ),
    ((json_request([], parameters={"binary_data_output": 1}), None), "binary_data_output"),
    ((json_request([], parameters={"triton_enable": True}), None), "reserved for Triton"),
    ((json_request([], parameters={"priority": -1}), None), "parameter 'priority'"),
    ((json_request([], parameters={"sequence_start": 1}), None), "'sequence_start'"),
    ((json_request([], parameters={"k": [1]}), None), "strings, numbers or booleans"),
    ((json_request([], parameters=[]), None), "Unable to parse 'parameters'"),
    ((json_request([], outputs={}), None), "Unable to parse 'outputs'"),
    ((json_request([], outputs=[{"nam": "y"}]), None), "Unable to parse 'name'"),
    ((json_request([], outputs=[{"name": "y"}, {"name": "y"}]), None), "more than once"),
    (
        (json_request([], outputs=[{"name": "y", "parameters": {"binary_data": "yes"}}]), None),
        "Unable to parse 'binary_data'",
    ),
    (
        (json_request([], outputs=[{"name": "y", "parameters": {"classification": 3}}]), None),
        "classification",
    ),
    (
        (
            json_request([], outputs=[{"name": "y", "parameters": {"shared_memory_region": "r"}}]),
            None,
        ),
        "shared memory",
    ),
    # The binary extension.
    ((b'{"inputs": []}', 0), "raw binary requests"),
    ((b'{"inputs": []}', -3), r"inference header size should be in range \(0, 14\), got: -3"),
    ((b'{"inputs": []}', 15), "should be in range"),
    ((b'{"inputs": []}', 5), "failed to parse the request JSON buffer"),
    (_binary({"inputs": [_bin_input("FP32", [2], 8)]}, b"\x00" * 5), "expecting 3 additional"),
    (_binary({"inputs": [_bin_input("FP32", [2], 4)]}, b"\x00" * 4), "unexpected byte size 4"),
    (_binary({"inputs": [_bin_input("FP32", [1], 4)]}, b"\x00" * 6), "2 bytes follow the last"),
    (_binary({"inputs": [_bin_input("FP32", [1], -4)]}, b""), "Unable to parse 'binary_data_size"),
    (_binary({"inputs": [_bin_input("FP32", [1], 4.0)]}, b""), "Unable to parse 'binary_data_size"),
    (
        (orjson.dumps({"inputs": [_bin_input("FP32", [1], 4)]}), None),
        "must specify valid 'Inference-Header-Content-Length'",
    ),
    (_binary({"inputs": [_bin_input("BYTES", [1], 6)]}, b"\x09\x00\x00\x00ab"), "claims 9 bytes"),
    (_binary({"inputs": [_bin_input("BYTES", [1], 3)]}, b"\x01\x00\x00"), "indicator exceeds"),
    (
        _binary({"inputs": [_bin_input("BYTES", [1], 8)]}, b"\x00" * 8),
        "expected 1 string elements for inference input 'x', got more",
    ),
    (
        _binary({"inputs": [_bin_input("BYTES", [3], 8)]}, b"\x00" * 8),
        "expected 3 string elements for inference input 'x', got 2",
    ),
]


@pytest.mark.parametrize(("request_", "message"), HTTP_ERRORS)
def test_http_request_errors(request_: tuple[bytes, int | None], message: str) -> None:
    body, length = request_
    with pytest.raises(InputError, match=message):
        v2.decode_infer_request(body, length)


# -- fuzz: bad input is an InputError, never anything else -----------------------------------


def _golden_bodies() -> list[tuple[bytes, int | None]]:
    mixed = [
        http_input("a", SAMPLES["FP32"], "FP32", binary=True),
        http_input("b", SAMPLES["BYTES"], "BYTES", binary=True),
        http_input("c", SAMPLES["INT16"], "INT16", binary=False),
        http_input("d", SAMPLES["BOOL"], "BOOL", binary=True),
    ]
    text = [
        http_input("s", SAMPLES["BYTES"], "BYTES", binary=False),
        http_input("f", SAMPLES["FP64"], "FP64", binary=False),
    ]
    return [
        http_request(mixed, [thttp.InferRequestedOutput("y")], request_id="abc"),
        http_request(text, parameters={"k": "v"}),
        (json_request([_json_input("n", "UINT8", [2, 2], [[1, 2], [3, 4]])]), None),
    ]


GOLDEN = _golden_bodies()
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_or_input_error(body: bytes, length: int | None) -> None:
    try:
        call = v2.decode_infer_request(body, length)
    except InputError:
        return
    assert isinstance(call, v2.InferCall)
    for value in call.inputs.values():
        assert isinstance(value, np.ndarray)


@FUZZ
@given(st.data())
def test_fuzz_mutated_bodies(data: st.DataObject) -> None:
    body, length = data.draw(st.sampled_from(GOLDEN))
    buffer = bytearray(body)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = data.draw(st.integers(0, max(len(buffer) - 1, 0)))
        if action == "flip" and buffer:
            buffer[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del buffer[at:]
        elif action == "insert":
            buffer[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif buffer:
            del buffer[at : at + data.draw(st.integers(1, 8))]
    if data.draw(st.booleans()):
        length = data.draw(st.none() | st.integers(-2, len(buffer) + 2))
    _decode_or_input_error(bytes(buffer), length)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
    | st.sampled_from(v2.DATATYPES),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


@FUZZ
@given(
    st.sampled_from([*v2.DATATYPES, "x"]),
    st.one_of(st.lists(st.integers(-1, 3), max_size=3), JSON_VALUES),
    JSON_VALUES,
    st.sampled_from(["data", "parameters", "id", "outputs", "top-parameters", "name"]),
    JSON_VALUES,
)
def test_fuzz_structured_requests(
    datatype: str, shape: Any, data: Any, where: str, other: Any
) -> None:
    tensor: dict[str, Any] = {"name": "x", "datatype": datatype, "shape": shape, "data": data}
    doc: dict[str, Any] = {"inputs": [tensor]}
    if where == "parameters":
        tensor["parameters"] = other
    elif where == "name":
        tensor["name"] = other
    elif where == "top-parameters":
        doc["parameters"] = other
    else:
        doc[where] = other
    _decode_or_input_error(json.dumps(doc).encode(), None)


@FUZZ
@given(
    st.sampled_from([*v2.DATATYPES, "", "FP8"]),
    st.lists(st.integers(-2, 4), max_size=3),
    st.lists(st.binary(max_size=24), max_size=3),
    st.sampled_from([None, *[f.name for f in service_pb2.InferTensorContents.DESCRIPTOR.fields]]),
    st.lists(st.integers(0, 2**32 - 1), max_size=6),
)
def test_fuzz_grpc_requests(
    datatype: str, shape: list[int], raw: list[bytes], field: str | None, values: list[int]
) -> None:
    request = service_pb2.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=shape)
    request.raw_input_contents.extend(raw)
    if field is not None:
        container = getattr(tensor.contents, field)
        if field == "bytes_contents":
            container.extend(v.to_bytes(4, "little") for v in values)
        elif field == "bool_contents":
            container.extend(bool(v & 1) for v in values)
        elif field == "int_contents":
            container.extend(v - 2**31 for v in values)
        else:
            container.extend(values)
    try:
        call = v2.decode_infer_request_grpc(request)
    except InputError:
        return
    assert call.inputs["x"].shape == tuple(shape)


# -- metadata, configuration, statistics, repository -----------------------------------------

SIGNATURE = SignatureSpec(
    inputs={
        "images": TensorSpec("images", "float32", (None, 28, 28)),
        "ids": TensorSpec("ids", "int64", (None,)),
    },
    outputs={
        "scores": TensorSpec("scores", "float32", (None, 10)),
        "label": TensorSpec("label", "string", ()),
        "blob": TensorSpec("blob", "complex64", None),
    },
)


def test_server_metadata() -> None:
    want = {
        "name": "tfhost",
        "version": __version__,
        "extensions": [
            "binary_tensor_data",
            "model_repository",
            "model_configuration",
            "statistics",
            "parameters",
        ],
    }
    assert v2.server_metadata() == want
    assert json_format.MessageToDict(v2.server_metadata_grpc()) == want
    assert v2.server_metadata("9", ["x"])["extensions"] == ["x"]


def test_model_metadata() -> None:
    want = {
        "name": "mnist",
        "versions": ["1", "2"],
        "platform": "tensorflow_savedmodel",
        "inputs": [
            {"name": "images", "datatype": "FP32", "shape": [-1, 28, 28]},
            {"name": "ids", "datatype": "INT64", "shape": [-1]},
        ],
        "outputs": [
            {"name": "scores", "datatype": "FP32", "shape": [-1, 10]},
            {"name": "label", "datatype": "BYTES", "shape": []},
            {"name": "blob", "datatype": "INVALID", "shape": [-1]},
        ],
    }
    args = ("mnist", ("1", "2"), "tensorflow_savedmodel", SIGNATURE)
    assert v2.model_metadata(*args) == want
    proto = v2.model_metadata_grpc(*args)
    assert isinstance(proto, service_pb2.ModelMetadataResponse)
    assert json_format.ParseDict(want, service_pb2.ModelMetadataResponse()) == proto


def test_model_config_golden() -> None:
    config = v2.model_config("mnist", SIGNATURE, max_batch_size=8, versions=[1, 2])
    io = {"is_shape_tensor": False, "is_non_linear_format_io": False}
    assert config == {
        "name": "mnist",
        "platform": "tensorflow_savedmodel",
        "backend": "tensorflow",
        "runtime": "",
        "version_policy": {"specific": {"versions": [1, 2]}},
        "max_batch_size": 8,
        "input": [
            {
                "name": "images",
                "data_type": "TYPE_FP32",
                "format": "FORMAT_NONE",
                "dims": [28, 28],
                "allow_ragged_batch": False,
                "optional": False,
                **io,
            },
            {
                "name": "ids",
                "data_type": "TYPE_INT64",
                "format": "FORMAT_NONE",
                "dims": [1],
                "reshape": {"shape": []},
                "allow_ragged_batch": False,
                "optional": False,
                **io,
            },
        ],
        "output": [
            {"name": "scores", "data_type": "TYPE_FP32", "dims": [10], "label_filename": "", **io},
            {
                "name": "label",
                "data_type": "TYPE_STRING",
                "dims": [1],
                "reshape": {"shape": []},
                "label_filename": "",
                **io,
            },
            {"name": "blob", "data_type": "TYPE_INVALID", "dims": [-1], "label_filename": "", **io},
        ],
        "batch_input": [],
        "batch_output": [],
        "optimization": {
            "priority": "PRIORITY_DEFAULT",
            "input_pinned_memory": {"enable": True},
            "output_pinned_memory": {"enable": True},
            "gather_kernel_buffer_threshold": 0,
            "eager_batching": False,
        },
        "instance_group": [
            {
                "name": "mnist_0",
                "kind": "KIND_CPU",
                "count": 1,
                "gpus": [],
                "secondary_devices": [],
                "profile": [],
                "passive": False,
                "host_policy": "",
            }
        ],
        "default_model_filename": "model.savedmodel",
        "cc_model_filenames": {},
        "metric_tags": {},
        "parameters": {},
        "model_warmup": [],
        "model_transaction_policy": {"decoupled": False},
    }


def test_model_config_json_and_proto_agree() -> None:
    for options in ({}, {"max_batch_size": 4, "dynamic_batching": True}, {"versions": ["3"]}):
        config = v2.model_config("m", SIGNATURE, platform="tensorflow_graphdef", **options)
        response = v2.model_config_grpc("m", SIGNATURE, platform="tensorflow_graphdef", **options)
        assert isinstance(response, service_pb2.ModelConfigResponse)
        assert json_format.ParseDict(config, model_config_pb2.ModelConfig()) == response.config
        # Triton serves 64-bit integers as numbers, not protobuf's strings.
        assert all(type(d) is int for io in config["input"] for d in io["dims"])
    unbatched = v2.model_config("m", SIGNATURE)
    assert unbatched["max_batch_size"] == 0
    assert [io["dims"] for io in unbatched["input"]] == [[-1, 28, 28], [-1]]
    assert unbatched["version_policy"] == {"latest": {"num_versions": 1}}
    assert "dynamic_batching" not in unbatched
    batching = v2.model_config("m", SIGNATURE, max_batch_size=4, dynamic_batching=True)
    assert batching["dynamic_batching"]["max_queue_delay_microseconds"] == 0


def test_model_statistics() -> None:
    record = v2.Statistics(
        model="m",
        version="2",
        success_count=3,
        success_ns=3000,
        fail_count=1,
        fail_ns=50,
        queue_ns=300,
        compute_input_ns=30,
        compute_infer_ns=2000,
        compute_output_ns=40,
        inference_count=12,
        execution_count=3,
        last_inference_ms=1_700_000_000_123,
    )
    stats = v2.model_statistics([record, v2.Statistics("n", "1")])

    def duration(count: int, ns: int) -> dict[str, int]:
        return {"count": count, "ns": ns}

    assert stats["model_stats"][0] == {
        "name": "m",
        "version": "2",
        "last_inference": 1_700_000_000_123,
        "inference_count": 12,
        "execution_count": 3,
        "inference_stats": {
            "success": duration(3, 3000),
            "fail": duration(1, 50),
            "queue": duration(3, 300),
            "compute_input": duration(3, 30),
            "compute_infer": duration(3, 2000),
            "compute_output": duration(3, 40),
            "cache_hit": duration(0, 0),
            "cache_miss": duration(0, 0),
        },
        "response_stats": {},
        "batch_stats": [],
        "memory_usage": [],
    }
    assert stats["model_stats"][1]["inference_stats"]["success"] == duration(0, 0)
    proto = v2.model_statistics_grpc([record, v2.Statistics("n", "1")])
    assert json_format.ParseDict(stats, service_pb2.ModelStatisticsResponse()) == proto
    assert proto.model_stats[0].inference_stats.compute_infer.ns == 2000
    assert v2.model_statistics([]) == {"model_stats": []}


def test_repository_index() -> None:
    entries = [
        v2.RepositoryEntry("a", "1", "READY"),
        v2.RepositoryEntry("b", "", "UNAVAILABLE", "unloaded"),
        v2.RepositoryEntry("c", "3", "LOADING"),
    ]
    index = v2.repository_index(entries)
    assert index == [
        {"name": "a", "version": "1", "state": "READY"},
        {"name": "b", "state": "UNAVAILABLE", "reason": "unloaded"},
        {"name": "c", "version": "3", "state": "LOADING"},
    ]
    proto = v2.repository_index_grpc(entries)
    assert json_format.ParseDict({"models": index}, service_pb2.RepositoryIndexResponse()) == proto
    assert [(m.name, m.version, m.state, m.reason) for m in proto.models] == [
        ("a", "1", "READY", ""),
        ("b", "", "UNAVAILABLE", "unloaded"),
        ("c", "3", "LOADING", ""),
    ]


def test_bytes_element_framing_matches_tritonclient() -> None:
    from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

    call = _call(binary_default=True)
    body, length = v2.encode_infer_response("m", "1", call, {"s": RAW_BYTES})
    assert length is not None
    assert body[length:] == serialize_byte_tensor(RAW_BYTES).item()
    assert deserialize_bytes_tensor(body[length:]).tolist() == RAW_BYTES.tolist()
    assert struct.unpack_from("<I", body, length)[0] == 3
