"""KServe V2 / Open Inference Protocol <-> numpy, as Triton speaks it to ``tritonclient``.

REST: the inference request and response JSON with the binary tensor data extension
(``Inference-Header-Content-Length``, ``binary_data_size``, ``binary_data``,
``binary_data_output``); gRPC: ``inference.GRPCInferenceService`` with the protos
``tritonclient`` ships. Plus the JSON / proto pairs of the metadata, model configuration,
statistics and repository-index answers. Naming: ``x`` builds the REST JSON value (a dict
or list, for ``orjson.dumps``), ``x_grpc`` the gRPC response message, from the same inputs.

Choices, where Triton and the KServe text leave room:

* Decoding is strict: a numeric input takes JSON numbers only (integers only for integer
  types, each within range), BOOL takes ``true``/``false``, BYTES takes strings. Nested
  ``data`` must nest exactly as ``shape``; flat ``data`` must hold ``prod(shape)`` values.
  Two leniencies: ``true``/``false`` inside numeric data count as 1/0 (Python's ``bool``
  is an ``int``), and FP16/BF16 are accepted as JSON numbers (Triton refuses them).
* An output listed without ``binary_data`` follows the request's ``binary_data_output``
  (the extension's text); outputs not listed are all returned, in the mapping's order.
* JSON cannot spell NaN and infinities; a JSON output carries them as ``NaN``,
  ``Infinity`` and ``-Infinity`` (which Python's ``json``, ``rapidjson`` and so
  ``tritonclient`` read back exactly) rather than ``null`` (which reads back as NaN).
* Binary inputs decode to views of the request body where aligned (read-only), copies
  otherwise; JSON inputs decode to fresh arrays. Copy before writing into an input.
* Unsupported on purpose, each with its own ``InputError``: shared memory, the
  classification extension, raw-binary requests (``Inference-Header-Content-Length: 0``).

Speed (JSON): a header of large float inputs goes through ``v2_simd``, where simdjson
writes their numbers into one buffer of doubles, once it has proven the document the one
orjson would give. Everything else orjson parses (no numpy text parser beats it:
``np.fromstring(sep=",")`` and ``np.loadtxt`` are 5-10x slower), and the parsed lists go
to numpy through ``array.array``, which converts in C and type-checks every element at the
speed of the plain ``np.array(list, dtype)`` that does neither.
"""

from __future__ import annotations

import array
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import ml_dtypes
import numpy as np
import numpy.typing as npt
import orjson
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2

from tfhost import __version__
from tfhost.errors import InputError, InternalError
from tfhost.serve.codecs import v2_simd
from tfhost.specs import SignatureSpec, TensorSpec

__all__ = [
    "DATATYPES",
    "EXTENSIONS",
    "InferCall",
    "RepositoryEntry",
    "Statistics",
    "array_datatype",
    "decode_infer_request",
    "decode_infer_request_grpc",
    "encode_error",
    "encode_infer_response",
    "encode_infer_response_grpc",
    "model_config",
    "model_config_grpc",
    "model_config_proto",
    "model_metadata",
    "model_metadata_grpc",
    "model_statistics",
    "model_statistics_grpc",
    "numpy_dtype",
    "repository_index",
    "repository_index_grpc",
    "server_metadata",
    "server_metadata_grpc",
    "tf_dtype",
    "v2_datatype",
]

Array = npt.NDArray[Any]

# What V2 says where a TensorFlow dtype has no V2 datatype (complex, resource, variant...).
INVALID: Final = "INVALID"

# numpy's limit (NPY_MAXDIMS) on the oldest numpy tfhost supports.
_MAX_RANK: Final = 32
_MAX_DIM: Final = 2**63 - 1  # V2 shapes are int64
_LENGTH: Final = struct.Struct("<I")  # BYTES elements: 4-byte little-endian length prefix


# -- datatypes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Type:
    v2: str  # V2 datatype
    tf: str  # TensorFlow's dtype name, tfhost's vocabulary
    numpy: np.dtype[Any]
    config: int  # model_config_pb2.DataType
    contents: str | None  # the InferTensorContents field; None: none can carry it
    packing: str  # array.array typecode a JSON list converts through; "" for BOOL, BYTES


def _types() -> tuple[_Type, ...]:
    c = model_config_pb2
    return (
        _Type("BOOL", "bool", np.dtype(np.bool_), c.TYPE_BOOL, "bool_contents", ""),
        _Type("UINT8", "uint8", np.dtype("<u1"), c.TYPE_UINT8, "uint_contents", "Q"),
        _Type("UINT16", "uint16", np.dtype("<u2"), c.TYPE_UINT16, "uint_contents", "Q"),
        _Type("UINT32", "uint32", np.dtype("<u4"), c.TYPE_UINT32, "uint_contents", "Q"),
        _Type("UINT64", "uint64", np.dtype("<u8"), c.TYPE_UINT64, "uint64_contents", "Q"),
        _Type("INT8", "int8", np.dtype("<i1"), c.TYPE_INT8, "int_contents", "q"),
        _Type("INT16", "int16", np.dtype("<i2"), c.TYPE_INT16, "int_contents", "q"),
        _Type("INT32", "int32", np.dtype("<i4"), c.TYPE_INT32, "int_contents", "q"),
        _Type("INT64", "int64", np.dtype("<i8"), c.TYPE_INT64, "int64_contents", "q"),
        _Type("FP16", "float16", np.dtype("<f2"), c.TYPE_FP16, None, "d"),
        # 'f' packs straight to float32 with C's double->float rounding, as Triton does.
        _Type("FP32", "float32", np.dtype("<f4"), c.TYPE_FP32, "fp32_contents", "f"),
        _Type("FP64", "float64", np.dtype("<f8"), c.TYPE_FP64, "fp64_contents", "d"),
        _Type("BF16", "bfloat16", np.dtype(ml_dtypes.bfloat16), c.TYPE_BF16, None, "d"),
        _Type("BYTES", "string", np.dtype(object), c.TYPE_STRING, "bytes_contents", ""),
    )


_TYPES: Final = _types()
_BY_V2: Final = {t.v2: t for t in _TYPES}
_BY_TF: Final = {t.tf: t for t in _TYPES}
_BOOL: Final = _BY_V2["BOOL"]
_BYTES: Final = _BY_V2["BYTES"]
_BF16: Final = _BY_V2["BF16"]
_FLOAT_TYPES: Final = frozenset(t.v2 for t in _TYPES if t.packing in ("f", "d"))
_BY_KIND_SIZE: Final = {
    (t.numpy.kind, t.numpy.itemsize): t for t in _TYPES if t.numpy.kind in "iuf"
}

DATATYPES: Final = tuple(t.v2 for t in _TYPES)


def v2_datatype(tf_dtype: str) -> str:
    """The V2 datatype of a TensorFlow dtype name; ``INVALID`` where V2 has none."""
    t = _BY_TF.get(tf_dtype)
    return t.v2 if t is not None else INVALID


def _v2_type(datatype: object, name: str) -> _Type:
    t = _BY_V2.get(datatype) if isinstance(datatype, str) else None
    if t is None:
        raise InputError(
            f"unknown datatype {datatype!r} for input '{name}'; "
            f"V2 datatypes are {', '.join(DATATYPES)}"
        )
    return t


def tf_dtype(datatype: str) -> str:
    """The TensorFlow dtype name of a V2 datatype (``InputError`` for an unknown one)."""
    return _v2_type(datatype, "?").tf


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype a V2 datatype decodes to: BYTES is ``object`` (of ``bytes``), BF16
    is ``ml_dtypes.bfloat16``."""
    return _v2_type(datatype, "?").numpy


def _array_type(name: str, value: Array) -> _Type:
    dtype = value.dtype
    if dtype.kind == "b":
        return _BOOL
    if dtype.kind in "OSU":
        return _BYTES
    if dtype == _BF16.numpy:
        return _BF16
    t = _BY_KIND_SIZE.get((dtype.kind, dtype.itemsize))
    if t is None:
        raise InternalError(f"output '{name}' has dtype {dtype}, which KServe V2 cannot carry")
    return t


def array_datatype(value: Array) -> str:
    """The V2 datatype an array is sent as (``InternalError`` if none can carry it)."""
    return _array_type("?", value).v2


# -- the decoded request ---------------------------------------------------------------------


@dataclass
class InferCall:
    """One inference request, protocol-independent.

    ``outputs``: the outputs asked for, in order; empty means all. ``binary``: per listed
    output, whether it goes back as binary data (REST); outputs without an entry follow
    ``binary_default`` (the request's ``binary_data_output``). ``parameters``: the
    request-level parameters, less ``binary_data_output``.
    """

    id: str | None
    inputs: dict[str, Array]
    outputs: tuple[str, ...] = ()
    binary: dict[str, bool] = field(default_factory=dict)
    binary_default: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)

    def wants_binary(self, output: str) -> bool:
        return self.binary.get(output, self.binary_default)


# -- shapes and arrays -----------------------------------------------------------------------


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _check_shape(name: str, dims: Sequence[Any]) -> tuple[int, ...]:
    if len(dims) > _MAX_RANK:
        raise InputError(f"input '{name}' has {len(dims)} dimensions; at most {_MAX_RANK}")
    for d in dims:
        # bool is an int to Python; a shape of [true] is a client bug, not a 1.
        if type(d) is not int or d < 0 or d > _MAX_DIM:
            raise InputError(
                f"Unable to parse 'shape': input '{name}' has dimension {d!r}; "
                "dimensions are integers >= 0"
            )
    return tuple(dims)


def _empty(name: str, t: _Type, shape: tuple[int, ...]) -> Array:
    try:
        return np.empty(shape, dtype=t.numpy)
    except ValueError:  # numpy refuses shapes whose non-zero dims overflow
        raise InputError(f"input '{name}' has shape {_shape_text(shape)}, too large") from None


def _from_buffer(
    name: str, t: _Type, buffer: bytes, offset: int, size: int, shape: tuple[int, ...]
) -> Array:
    """The tensor in ``buffer[offset:offset + size]``, V2's binary form."""
    count = math.prod(shape)
    if t is _BYTES:
        return _split_bytes(name, buffer, offset, size, shape, count)
    expected = count * t.numpy.itemsize
    if size != expected:
        raise InputError(
            f"unexpected byte size {size} for input '{name}': shape {_shape_text(shape)} "
            f"of {t.v2} takes {expected} bytes"
        )
    if count == 0:
        return _empty(name, t, shape)
    if t is _BOOL:
        # Any non-zero byte is true (C's reading); numpy would keep the raw byte instead.
        truth: Array = np.frombuffer(buffer, np.uint8, count, offset) != 0
        return truth.reshape(shape)
    values = np.frombuffer(buffer, t.numpy, count, offset)
    if not values.flags.aligned:
        # The JSON header has any length, so binary tensors land at any offset; TensorFlow
        # and numpy's fast loops want aligned data.
        values = values.copy()
    return values.reshape(shape)


def _split_bytes(
    name: str, buffer: bytes, offset: int, size: int, shape: tuple[int, ...], count: int
) -> Array:
    end = offset + size
    items: list[bytes] = []
    pos = offset
    while pos < end:
        if len(items) == count:
            raise InputError(
                f"expected {count} string elements for inference input '{name}', got more"
            )
        if end - pos < _LENGTH.size:
            raise InputError(
                f"input '{name}': BYTES element {len(items)}: element byte size indicator "
                "exceeds the end of the buffer"
            )
        (length,) = _LENGTH.unpack_from(buffer, pos)
        pos += _LENGTH.size
        if length > end - pos:
            raise InputError(
                f"input '{name}': BYTES element {len(items)} claims {length} bytes, "
                f"but only {end - pos} remain"
            )
        items.append(buffer[pos : pos + length])
        pos += length
    if len(items) != count:
        raise InputError(
            f"expected {count} string elements for inference input '{name}', got {len(items)}"
        )
    return _object_array(name, items, shape)


def _object_array(name: str, items: list[bytes], shape: tuple[int, ...]) -> Array:
    if not items:
        return _empty(name, _BYTES, shape)
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(shape)


def _flatten(data: list[Any], shape: tuple[int, ...]) -> list[Any] | None:
    """The row-major elements of ``data`` if it nests exactly as ``shape``, else None."""
    level: list[Any] = [data]
    for dim in shape:
        below: list[Any] = []
        for item in level:
            if type(item) is not list or len(item) != dim:
                return None
            below.extend(item)
        level = below
    return level


def _json_values(name: str, data: Any, shape: tuple[int, ...], count: int) -> list[Any]:
    if type(data) is not list:
        raise InputError(f"Unable to parse 'data': input '{name}' data is not an array")
    if len(data) == count and (count == 0 or type(data[0]) is not list):
        return data
    flat = _flatten(data, shape)
    if flat is None:
        raise InputError(
            f"Unable to parse 'data': Shape does not match true shape of 'data' field: "
            f"input '{name}' needs {count} values for shape {_shape_text(shape)}, as a flat "
            "array or nested as the shape"
        )
    return flat


def _from_json(name: str, t: _Type, data: Any, shape: tuple[int, ...]) -> Array:
    if type(data) is v2_simd.Doubles:  # proven count numbers, as orjson's would be
        with np.errstate(over="ignore"):  # beyond the type's range is inf, as in C
            return data.values.astype(t.numpy).reshape(shape)
    count = math.prod(shape)
    values = _json_values(name, data, shape, count)
    if count == 0:
        return _empty(name, t, shape)
    if t is _BYTES:
        if not all(type(v) is str for v in values):
            raise InputError(f"Unable to parse 'data': input '{name}' is BYTES: strings only")
        # orjson refuses lone surrogates, so every str it gives encodes.
        return _object_array(name, [v.encode("utf-8") for v in values], shape)
    if t is _BOOL:
        if not all(type(v) is bool for v in values):
            raise InputError(f"Unable to parse 'data': input '{name}' is BOOL: true or false only")
        return np.array(values, dtype=np.bool_).reshape(shape)
    return _numbers(name, t, values).reshape(shape)


def _numbers(name: str, t: _Type, values: list[Any]) -> Array:
    try:
        # array.array checks each element's type in C: floats and None and strings are
        # refused for integers, strings and None for floats, out-of-range integers too.
        packed = array.array(t.packing, values)
    except (TypeError, OverflowError):
        wanted = "integers within its range" if t.packing in "qQ" else "numbers"
        raise InputError(
            f"Unable to parse 'data': input '{name}' is {t.v2}, which takes {wanted} only"
        ) from None
    if t.packing == "f":
        return np.frombuffer(packed, np.float32)
    if t.packing == "d":
        wide = np.frombuffer(packed, np.float64)
        with np.errstate(over="ignore"):  # beyond FP16/BF16's range is inf, as in C
            return wide.astype(t.numpy)
    wide = np.frombuffer(packed, np.int64 if t.packing == "q" else np.uint64)
    if t.numpy.itemsize < 8:
        info = np.iinfo(t.numpy)
        if int(wide.min()) < info.min or int(wide.max()) > info.max:
            raise InputError(
                f"Unable to parse 'data': input '{name}' has a value outside {t.v2}'s range "
                f"[{info.min}, {info.max}]"
            )
        return wide.astype(t.numpy)
    return wide


# -- REST requests ---------------------------------------------------------------------------

_RESERVED_PREFIX: Final = "triton_"
_ANY: Final = "parameters are strings, numbers or booleans"
_PARAMETER_RULES: Final = {
    "sequence_id": "an integer >= 0 or a string",
    "sequence_start": "a boolean",
    "sequence_end": "a boolean",
    "priority": "an integer >= 0",
    "timeout": "an integer >= 0 (microseconds)",
}


def _request_parameters(raw: Any) -> tuple[dict[str, Any], bool]:
    if raw is None:
        return {}, False
    if type(raw) is not dict:
        raise InputError("Unable to parse 'parameters': it is not an object")
    parameters: dict[str, Any] = {}
    binary_default = False
    for key, value in raw.items():
        if key == "binary_data_output":
            if type(value) is not bool:
                raise InputError("Unable to parse 'binary_data_output'")
            binary_default = value
            continue
        if key.startswith(_RESERVED_PREFIX):
            raise InputError(
                "parameter keys starting with 'triton_' are reserved for Triton usage and "
                "should not be specified."
            )
        if key in ("sequence_start", "sequence_end"):
            ok = type(value) is bool
        elif key in ("priority", "timeout"):
            ok = type(value) is int and value >= 0
        elif key == "sequence_id":
            ok = (type(value) is int and value >= 0) or type(value) is str
        else:
            ok = type(value) in (str, int, float, bool)
        if not ok:
            rule = _PARAMETER_RULES.get(key, _ANY)
            raise InputError(f"Unable to parse parameter '{key}': {rule}")
        parameters[key] = value
    return parameters, binary_default


def _requested_outputs(raw: Any) -> tuple[tuple[str, ...], dict[str, bool]]:
    if raw is None:
        return (), {}
    if type(raw) is not list:
        raise InputError("Unable to parse 'outputs': it is not an array")
    names: list[str] = []
    binary: dict[str, bool] = {}
    for entry in raw:
        if type(entry) is not dict or type(entry.get("name")) is not str:
            raise InputError("Unable to parse 'name': each output is an object with a name")
        name = entry["name"]
        if name in names:
            raise InputError(f"output '{name}' is requested more than once")
        names.append(name)
        parameters = entry.get("parameters")
        if parameters is None:
            continue
        if type(parameters) is not dict:
            raise InputError(f"Unable to parse 'parameters' of output '{name}'")
        if "shared_memory_region" in parameters:
            raise InputError(f"output '{name}': tfhost does not support shared memory")
        if "classification" in parameters:
            raise InputError(
                f"output '{name}': tfhost does not support the classification extension"
            )
        if "binary_data" in parameters:
            if type(parameters["binary_data"]) is not bool:
                raise InputError("Unable to parse 'binary_data'")
            binary[name] = parameters["binary_data"]
    return tuple(names), binary


def _content_kind(name: str, entry: dict[str, Any], parameters: dict[str, Any]) -> bool:
    """Triton's rule: an input sets exactly one of its three ways of carrying data. True
    for ``data`` (JSON), False for ``binary_data_size``."""
    json_data = "data" in entry
    binary = "binary_data_size" in parameters
    shared = "shared_memory_region" in parameters
    if json_data + binary + shared != 1:
        present = [
            label
            for label, here in (
                ("'data'", json_data),
                ("'binary_data_size'", binary),
                ("'shared_memory_region'", shared),
            )
            if here
        ]
        raise InputError(
            f"input '{name}': Input must set only one of the following fields: 'data', "
            "'binary_data_size' in 'parameters', 'shared_memory_region' in 'parameters'. "
            "But " + ("set " + " ".join(present) if present else "no field is set")
        )
    if shared:
        raise InputError(f"input '{name}': tfhost does not support shared memory")
    return json_data


def decode_infer_request(body: bytes, header_length: int | None) -> InferCall:
    """A REST inference request: the JSON header, then (with the binary tensor extension)
    the binary inputs, in input order. ``header_length`` is the request's
    ``Inference-Header-Content-Length`` (None: the whole body is JSON)."""
    if not isinstance(body, bytes):
        body = bytes(body)
    size = len(body)
    if header_length is None:
        header_end = size
    elif header_length == 0:
        raise InputError(
            "raw binary requests (Inference-Header-Content-Length: 0) are not supported; "
            "send a JSON header"
        )
    elif header_length < 0 or header_length > size:
        raise InputError(
            f"inference header size should be in range (0, {size}), got: {header_length}"
        )
    else:
        header_end = header_length
    header = body if header_end == size else body[:header_end]
    doc = v2_simd.parse(header, _FLOAT_TYPES)
    if doc is None:
        try:
            doc = orjson.loads(header)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"failed to parse the request JSON buffer: {exc}") from None
    if type(doc) is not dict:
        raise InputError("the inference request is not a JSON object")

    request_id = doc.get("id")
    if request_id is not None and type(request_id) is not str:
        raise InputError("Unable to parse 'id'")
    parameters, binary_default = _request_parameters(doc.get("parameters"))
    raw_inputs = doc.get("inputs")
    if type(raw_inputs) is not list:
        raise InputError("Unable to parse 'inputs'")

    inputs: dict[str, Array] = {}
    offset = header_end
    for index, entry in enumerate(raw_inputs):
        if type(entry) is not dict:
            raise InputError(f"Unable to parse 'inputs': input {index} is not an object")
        name = entry.get("name")
        if type(name) is not str:
            raise InputError(f"Unable to parse 'name' of input {index}")
        if name in inputs:
            raise InputError(f"input '{name}' appears more than once")
        t = _v2_type(entry.get("datatype"), name)
        dims = entry.get("shape")
        if type(dims) is not list:
            raise InputError(f"Unable to parse 'shape' of input '{name}'")
        shape = _check_shape(name, dims)
        input_parameters = entry.get("parameters", {})
        if type(input_parameters) is not dict:
            raise InputError(f"Unable to parse 'parameters' of input '{name}'")
        if _content_kind(name, entry, input_parameters):
            inputs[name] = _from_json(name, t, entry["data"], shape)
            continue
        byte_size = input_parameters["binary_data_size"]
        if type(byte_size) is not int or byte_size < 0:
            raise InputError(f"Unable to parse 'binary_data_size' of input '{name}'")
        if header_length is None and byte_size > 0:
            raise InputError(
                "must specify valid 'Inference-Header-Content-Length' in request header and "
                f"'binary_data_size' when passing inputs in binary data format (input '{name}')"
            )
        if byte_size > size - offset:
            raise InputError(
                f"unexpected size for input '{name}', expecting "
                f"{byte_size - (size - offset)} additional bytes"
            )
        inputs[name] = _from_buffer(name, t, body, offset, byte_size, shape)
        offset += byte_size
    if offset != size:
        raise InputError(
            f"unexpected additional input data: {size - offset} bytes follow the last binary input"
        )

    outputs, binary = _requested_outputs(doc.get("outputs"))
    return InferCall(request_id, inputs, outputs, binary, binary_default, parameters)


# -- REST responses --------------------------------------------------------------------------


def _wire(name: str, value: Any) -> tuple[_Type, Array]:
    """The output as V2 sends it: its datatype and a C-contiguous little-endian array."""
    arr = np.asarray(value)
    t = _array_type(name, arr)
    if t is not _BYTES and arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    # Not np.ascontiguousarray: it makes a 0-d array 1-d.
    return t, arr if arr.flags.c_contiguous else arr.copy(order="C")


def _bytes_items(name: str, arr: Array) -> list[bytes]:
    items: list[bytes] = []
    for item in arr.reshape(-1).tolist():
        if isinstance(item, str):
            item = item.encode("utf-8", "surrogatepass")
        elif isinstance(item, bytearray | memoryview):
            item = bytes(item)
        elif not isinstance(item, bytes):
            raise InternalError(
                f"output '{name}' holds a {type(item).__name__}; BYTES elements are bytes"
            )
        items.append(item)
    return items


def _serialize_bytes(name: str, arr: Array) -> bytes:
    parts: list[bytes] = []
    for item in _bytes_items(name, arr):
        if len(item) > 0xFFFFFFFF:
            raise InternalError(f"output '{name}' has an element over 4 GiB")
        parts.append(_LENGTH.pack(len(item)))
        parts.append(item)
    return b"".join(parts)


def _raw(name: str, t: _Type, arr: Array) -> bytes | memoryview:
    if t is _BYTES:
        return _serialize_bytes(name, arr)
    # A byte view, not tobytes(): the body join is the one copy.
    return arr.reshape(-1).view(np.uint8).data


_NONFINITE: Final = {"nan": b"NaN", "inf": b"Infinity", "-inf": b"-Infinity"}


def _json_texts(name: str, flat: Array) -> bytes:
    texts: list[str] = []
    for item in flat.tolist():
        if isinstance(item, str):
            texts.append(item)
            continue
        if not isinstance(item, bytes | bytearray | memoryview):
            raise InternalError(
                f"output '{name}' holds a {type(item).__name__}; BYTES elements are bytes"
            )
        try:
            texts.append(bytes(item).decode("utf-8"))
        except UnicodeDecodeError:
            raise InputError(
                f"output '{name}' holds bytes that are not UTF-8, which JSON cannot carry; "
                "ask for it with binary_data"
            ) from None
    try:
        return orjson.dumps(texts)
    except orjson.JSONEncodeError:  # a str output with a lone surrogate
        raise InputError(
            f"output '{name}' holds text that is not valid Unicode; ask for it with binary_data"
        ) from None


def _json_data(name: str, t: _Type, arr: Array) -> bytes:
    flat = arr.reshape(-1)
    if t is _BYTES:
        return _json_texts(name, flat)
    if t.packing in ("f", "d"):  # the floats; bfloat16's numpy kind is "V"
        if flat.dtype.itemsize < 4:
            flat = flat.astype(np.float32)  # exact; orjson writes float32 and float64 only
        if flat.dtype.byteorder not in "=|":
            flat = flat.astype(flat.dtype.newbyteorder("="))
        text = orjson.dumps(flat, option=orjson.OPT_SERIALIZE_NUMPY)
        # orjson writes each non-finite value as null, and numbers hold no "n": one scan
        # of the text, cheaper than numpy's isfinite for a request's few values.
        if b"n" in text:
            finite = np.isfinite(flat)
            pieces = text.split(b"null")
            tokens = [_NONFINITE[str(v)] for v in flat[~finite].tolist()]
            text = pieces[0] + b"".join(
                tok + rest for tok, rest in zip(tokens, pieces[1:], strict=True)
            )
        return text
    if flat.dtype.byteorder not in "=|":
        flat = flat.astype(flat.dtype.newbyteorder("="))
    return orjson.dumps(flat, option=orjson.OPT_SERIALIZE_NUMPY)


def _output_names(model_name: str, call: InferCall, outputs: Mapping[str, Any]) -> tuple[str, ...]:
    names = call.outputs or tuple(outputs)
    for name in names:
        if name not in outputs:
            raise InputError(f"unexpected inference output '{name}' for model '{model_name}'")
    return names


def encode_infer_response(
    model_name: str, model_version: str | int, call: InferCall, outputs: Mapping[str, Any]
) -> tuple[bytes, int | None]:
    """The REST response body and, when binary data follows the JSON, the JSON's length
    (for ``Inference-Header-Content-Length``; None when the body is all JSON, as Triton
    answers when no output has binary bytes)."""
    head: dict[str, Any] = {}
    if call.id:
        head["id"] = call.id
    head["model_name"] = model_name
    head["model_version"] = str(model_version)
    pieces: list[bytes] = []
    blobs: list[bytes | memoryview] = []
    for name in _output_names(model_name, call, outputs):
        t, arr = _wire(name, outputs[name])
        meta: dict[str, Any] = {"name": name, "datatype": t.v2, "shape": list(arr.shape)}
        if call.wants_binary(name):
            blob = _raw(name, t, arr)
            meta["parameters"] = {"binary_data_size": len(blob)}
            pieces.append(orjson.dumps(meta))
            if len(blob):
                blobs.append(blob)
        else:
            data = _json_data(name, t, arr)
            pieces.append(b"".join((orjson.dumps(meta)[:-1], b',"data":', data, b"}")))
    header = b"".join((orjson.dumps(head)[:-1], b',"outputs":[', b",".join(pieces), b"]}"))
    if not blobs:
        return header, None
    return b"".join((header, *blobs)), len(header)


def encode_error(message: str) -> bytes:
    """V2's error body."""
    return orjson.dumps({"error": message})


# -- gRPC ------------------------------------------------------------------------------------


def _grpc_parameters(raw: Any) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    for key, value in raw.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is None:
            raise InputError(f"parameter '{key}' has no value")
        if key.startswith(_RESERVED_PREFIX):
            raise InputError(
                "parameter keys starting with 'triton_' are reserved for Triton usage and "
                "should not be specified."
            )
        parameters[key] = getattr(value, choice)
    return parameters


def _grpc_contents(name: str, t: _Type, tensor: Any, shape: tuple[int, ...]) -> Array:
    count = math.prod(shape)
    given = [f.name for f, _ in tensor.contents.ListFields()] if tensor.HasField("contents") else []
    if t.contents is None:
        if given or count:
            raise InputError(
                f"input '{name}': {t.v2} has no typed contents field; send it in raw_input_contents"
            )
        return _empty(name, t, shape)
    stray = [f for f in given if f != t.contents]
    if stray:
        raise InputError(
            f"input '{name}' is {t.v2}, whose data goes in {t.contents}, but has {stray[0]}"
        )
    values = getattr(tensor.contents, t.contents)
    if len(values) != count:
        raise InputError(
            f"input '{name}' has {len(values)} values in {t.contents}; shape "
            f"{_shape_text(shape)} needs {count}"
        )
    if count == 0:
        return _empty(name, t, shape)
    if t is _BYTES:
        return _object_array(name, list(values), shape)
    # int_contents and uint_contents are 32-bit for every narrower type too.
    wide = np.fromiter(values, dtype=_CONTENTS_DTYPE[t.contents], count=count)
    if wide.dtype != t.numpy:
        info = np.iinfo(t.numpy)
        if int(wide.min()) < info.min or int(wide.max()) > info.max:
            raise InputError(
                f"input '{name}' has a value outside {t.v2}'s range [{info.min}, {info.max}]"
            )
        wide = wide.astype(t.numpy)
    return wide.reshape(shape)


_CONTENTS_DTYPE: Final = {
    "bool_contents": np.dtype(np.bool_),
    "int_contents": np.dtype(np.int32),
    "int64_contents": np.dtype(np.int64),
    "uint_contents": np.dtype(np.uint32),
    "uint64_contents": np.dtype(np.uint64),
    "fp32_contents": np.dtype(np.float32),
    "fp64_contents": np.dtype(np.float64),
}


def decode_infer_request_grpc(request: Any) -> InferCall:
    """A ``ModelInferRequest``: data in ``raw_input_contents`` (one per input, in order, as
    tritonclient sends it) or in each input's typed ``contents``."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InputError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "give one per input, in input order"
        )
    inputs: dict[str, Array] = {}
    for index, tensor in enumerate(request.inputs):
        name = tensor.name
        if name in inputs:
            raise InputError(f"input '{name}' appears more than once")
        t = _v2_type(tensor.datatype, name)
        shape = _check_shape(name, list(tensor.shape))
        if "shared_memory_region" in tensor.parameters:
            raise InputError(f"input '{name}': tfhost does not support shared memory")
        if raw:
            if tensor.HasField("contents") and tensor.contents.ListFields():
                raise InputError(
                    f"contents field must not be specified when using raw_input_contents for "
                    f"'{name}' for model '{request.model_name}'"
                )
            content = raw[index]
            inputs[name] = _from_buffer(name, t, content, 0, len(content), shape)
        else:
            inputs[name] = _grpc_contents(name, t, tensor, shape)
    names: list[str] = []
    for output in request.outputs:
        if output.name in names:
            raise InputError(f"output '{output.name}' is requested more than once")
        if "shared_memory_region" in output.parameters:
            raise InputError(f"output '{output.name}': tfhost does not support shared memory")
        if "classification" in output.parameters:
            raise InputError(
                f"output '{output.name}': tfhost does not support the classification extension"
            )
        names.append(output.name)
    return InferCall(
        request.id or None,
        inputs,
        tuple(names),
        {n: True for n in names},
        True,  # gRPC has only raw outputs
        _grpc_parameters(request.parameters),
    )


def encode_infer_response_grpc(
    model_name: str, model_version: str | int, call: InferCall, outputs: Mapping[str, Any]
) -> Any:
    """A ``ModelInferResponse`` with every output in ``raw_output_contents``, as Triton
    answers tritonclient (whose ``InferResult`` reads them by output index)."""
    response = service_pb2.ModelInferResponse(
        model_name=model_name, model_version=str(model_version), id=call.id or ""
    )
    for name in _output_names(model_name, call, outputs):
        t, arr = _wire(name, outputs[name])
        tensor = response.outputs.add()
        tensor.name = name
        tensor.datatype = t.v2
        tensor.shape.extend(arr.shape)
        raw = _raw(name, t, arr)
        response.raw_output_contents.append(raw if isinstance(raw, bytes) else raw.tobytes())
    return response


# -- server and model metadata ---------------------------------------------------------------

# The V2 / Triton extensions tfhost serves; not classification, sequence batching, shared
# memory, trace or logging.
EXTENSIONS: Final = (
    "binary_tensor_data",
    "model_repository",
    "model_configuration",
    "statistics",
    "parameters",
)


def server_metadata(
    version: str = __version__, extensions: Sequence[str] = EXTENSIONS, name: str = "tfhost"
) -> dict[str, Any]:
    return {"name": name, "version": version, "extensions": list(extensions)}


def server_metadata_grpc(
    version: str = __version__, extensions: Sequence[str] = EXTENSIONS, name: str = "tfhost"
) -> Any:
    return service_pb2.ServerMetadataResponse(
        name=name, version=version, extensions=list(extensions)
    )


def _metadata_shape(spec: TensorSpec) -> list[int]:
    # V2 has no unknown rank; one variable dimension is the nearest it can say.
    if spec.shape is None:
        return [-1]
    return [-1 if d is None else d for d in spec.shape]


def _tensor_metadata(key: str, spec: TensorSpec) -> dict[str, Any]:
    return {"name": key, "datatype": v2_datatype(spec.dtype), "shape": _metadata_shape(spec)}


def model_metadata(
    name: str, versions: Sequence[str], platform: str, signature: SignatureSpec
) -> dict[str, Any]:
    """``GET /v2/models/NAME``: the signature's real shapes (unknown dimensions -1)."""
    return {
        "name": name,
        "versions": list(versions),
        "platform": platform,
        "inputs": [_tensor_metadata(k, s) for k, s in signature.inputs.items()],
        "outputs": [_tensor_metadata(k, s) for k, s in signature.outputs.items()],
    }


def model_metadata_grpc(
    name: str, versions: Sequence[str], platform: str, signature: SignatureSpec
) -> Any:
    tensor = service_pb2.ModelMetadataResponse.TensorMetadata
    return service_pb2.ModelMetadataResponse(
        name=name,
        versions=list(versions),
        platform=platform,
        inputs=[tensor(**_tensor_metadata(k, s)) for k, s in signature.inputs.items()],
        outputs=[tensor(**_tensor_metadata(k, s)) for k, s in signature.outputs.items()],
    )


# -- model configuration ---------------------------------------------------------------------

_MODEL_FILES: Final = {
    "tensorflow_savedmodel": "model.savedmodel",
    "tensorflow_graphdef": "model.graphdef",
}


def _config_dims(spec: TensorSpec, batched: bool) -> tuple[list[int], bool]:
    """Triton's ``dims`` for a tensor (without the batch dimension when the model batches)
    and whether it needs Triton's scalar reshape (``dims: [1]``, ``reshape: {shape: []}``)."""
    if spec.shape is None:
        return [-1], False
    dims = [-1 if d is None else d for d in spec.shape]
    if batched:
        dims = dims[1:]
    if not dims:
        return [1], True
    return dims, False


def model_config_proto(
    name: str,
    signature: SignatureSpec,
    *,
    max_batch_size: int = 0,
    platform: str = "tensorflow_savedmodel",
    backend: str = "tensorflow",
    versions: Sequence[int | str] | None = None,
    instance_count: int = 1,
    dynamic_batching: bool = False,
    jit_compile: bool = False,
) -> Any:
    """The ``ModelConfig`` Triton would hold for the model after filling in its defaults.

    ``max_batch_size > 0`` says the first dimension of every tensor is the batch and is left
    out of ``dims``. ``versions``: the versions served (a ``specific`` version policy);
    None: Triton's default, the latest one. ``jit_compile`` is said as Triton's
    TensorFlow backend takes XLA: ``optimization.graph.level = 1``.
    """
    c = model_config_pb2
    batched = max_batch_size > 0
    config = c.ModelConfig(
        name=name,
        platform=platform,
        backend=backend,
        max_batch_size=max_batch_size,
        default_model_filename=_MODEL_FILES.get(platform, ""),
    )
    if versions is None:
        config.version_policy.latest.num_versions = 1
    else:
        config.version_policy.specific.versions.extend(int(v) for v in versions)
    for key, spec in signature.inputs.items():
        dims, scalar = _config_dims(spec, batched)
        tensor = config.input.add(
            name=key, data_type=_config_type(spec), format=c.ModelInput.FORMAT_NONE, dims=dims
        )
        if scalar:
            tensor.reshape.SetInParent()
    for key, spec in signature.outputs.items():
        dims, scalar = _config_dims(spec, batched)
        out = config.output.add(name=key, data_type=_config_type(spec), dims=dims)
        if scalar:
            out.reshape.SetInParent()
    config.instance_group.add(
        name=f"{name}_0", kind=c.ModelInstanceGroup.KIND_CPU, count=instance_count
    )
    config.optimization.priority = c.ModelOptimizationPolicy.PRIORITY_DEFAULT
    config.optimization.input_pinned_memory.enable = True
    config.optimization.output_pinned_memory.enable = True
    if jit_compile:
        config.optimization.graph.level = 1
    config.model_transaction_policy.SetInParent()
    if dynamic_batching:
        config.dynamic_batching.SetInParent()
    return config


def _config_type(spec: TensorSpec) -> int:
    t = _BY_TF.get(spec.dtype)
    return t.config if t is not None else model_config_pb2.TYPE_INVALID


def model_config(name: str, signature: SignatureSpec, **options: Any) -> dict[str, Any]:
    """``GET /v2/models/NAME/config``: Triton's JSON form of the ``ModelConfig``, which is
    protobuf's JSON with every field printed, proto field names, and the 64-bit integers
    as numbers rather than protobuf's strings. Options: those of ``model_config_proto``."""
    return _config_json(model_config_proto(name, signature, **options))


def model_config_grpc(name: str, signature: SignatureSpec, **options: Any) -> Any:
    return service_pb2.ModelConfigResponse(config=model_config_proto(name, signature, **options))


def _message_dict(message: Any) -> dict[str, Any]:
    try:
        printed: dict[str, Any] = json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    except TypeError:  # protobuf < 5.26 names the option differently
        printed = json_format.MessageToDict(
            message, preserving_proto_field_name=True, including_default_value_fields=True
        )
    return printed


_INT64_TYPES: Final = frozenset((3, 4, 6, 16, 18))  # INT64, UINT64, FIXED64, SFIXED64, SINT64


def _config_json(config: Any) -> dict[str, Any]:
    printed = _message_dict(config)
    _numbers_for_int64(printed, config.DESCRIPTOR)
    return printed


def _numbers_for_int64(printed: dict[str, Any], descriptor: Any) -> None:
    """Triton's ModelConfigToJson fix: protobuf prints 64-bit integers as strings; Triton
    serves them as numbers. Map keys stay strings (JSON allows no other)."""
    for f in descriptor.fields:
        if f.name not in printed:
            continue
        value = printed[f.name]
        message = f.message_type
        if message is not None and message.GetOptions().map_entry:
            inner = message.fields_by_name["value"]
            for k, v in value.items():
                if inner.message_type is not None:
                    _numbers_for_int64(v, inner.message_type)
                elif inner.type in _INT64_TYPES:
                    value[k] = int(v)
        elif message is not None:
            for item in value if isinstance(value, list) else [value]:
                _numbers_for_int64(item, message)
        elif f.type in _INT64_TYPES:
            printed[f.name] = [int(v) for v in value] if isinstance(value, list) else int(value)


# -- statistics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statistics:
    """One model version's counters, as Triton's statistics extension reports them
    (durations in nanoseconds, ``last_inference_ms`` in milliseconds since the epoch)."""

    model: str
    version: str
    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0

    def durations(self) -> dict[str, tuple[int, int]]:
        # Triton counts queue and compute once per successful request; tfhost has no
        # response cache, so no hits and no misses.
        n = self.success_count
        return {
            "success": (n, self.success_ns),
            "fail": (self.fail_count, self.fail_ns),
            "queue": (n, self.queue_ns),
            "compute_input": (n, self.compute_input_ns),
            "compute_infer": (n, self.compute_infer_ns),
            "compute_output": (n, self.compute_output_ns),
            "cache_hit": (0, 0),
            "cache_miss": (0, 0),
        }


def model_statistics(records: Iterable[Statistics]) -> dict[str, Any]:
    """``GET /v2/models[/NAME[/versions/V]]/stats``, field for field as Triton writes it."""
    return {
        "model_stats": [
            {
                "name": r.model,
                "version": r.version,
                "last_inference": r.last_inference_ms,
                "inference_count": r.inference_count,
                "execution_count": r.execution_count,
                "inference_stats": {
                    k: {"count": count, "ns": ns} for k, (count, ns) in r.durations().items()
                },
                "response_stats": {},
                "batch_stats": [],
                "memory_usage": [],
            }
            for r in records
        ]
    }


def model_statistics_grpc(records: Iterable[Statistics]) -> Any:
    response = service_pb2.ModelStatisticsResponse()
    for r in records:
        stats = response.model_stats.add(
            name=r.model,
            version=r.version,
            last_inference=r.last_inference_ms,
            inference_count=r.inference_count,
            execution_count=r.execution_count,
        )
        for key, (count, ns) in r.durations().items():
            duration = getattr(stats.inference_stats, key)
            duration.count = count
            duration.ns = ns
    return response


# -- repository index ------------------------------------------------------------------------


@dataclass(frozen=True)
class RepositoryEntry:
    """One row of the repository index. ``state``: Triton's words (``READY``,
    ``UNAVAILABLE``, ``LOADING``, ``UNLOADING``); ``version`` empty for a model not loaded."""

    name: str
    version: str = ""
    state: str = "READY"
    reason: str = ""


def repository_index(entries: Iterable[RepositoryEntry]) -> list[dict[str, Any]]:
    """``POST /v2/repository/index``: as Triton writes it, without empty fields."""
    out = []
    for e in entries:
        row: dict[str, Any] = {"name": e.name}
        if e.version:
            row["version"] = e.version
        row["state"] = e.state
        if e.reason:
            row["reason"] = e.reason
        out.append(row)
    return out


def repository_index_grpc(entries: Iterable[RepositoryEntry]) -> Any:
    response = service_pb2.RepositoryIndexResponse()
    for e in entries:
        response.models.add(name=e.name, version=e.version, state=e.state, reason=e.reason)
    return response


# -- repository load / unload ------------------------------------------------------------------

# What tfhost takes of Triton's load and unload parameters: every model is served as its
# files say, so a config override or model files sent in the request are refused, not
# ignored (the client would believe them applied).
_LOAD_REFUSED: Final = "tfhost serves a model as its repository's files say"
_PARAMETERS: Final[dict[str, dict[str, type]]] = {
    "load": {},
    "unload": {"unload_dependents": bool},
}


def check_repository_parameters(action: str, parameters: Mapping[str, Any]) -> None:
    """A load's or unload's ``parameters``, decoded (a name -> bool, int or str): refused
    where tfhost would not do what they ask."""
    for key, value in parameters.items():
        if action == "load" and (key == "config" or key.startswith("file:")):
            raise InputError(f"load parameter {key!r} is not supported: {_LOAD_REFUSED}")
        allowed = _PARAMETERS[action]
        if key not in allowed:
            raise InputError(f"unrecognized {action} parameter {key!r}")
        if not isinstance(value, allowed[key]):
            raise InputError(
                f"{action} parameter {key!r} must be a {allowed[key].__name__}, got {value!r}"
            )


def check_repository_request(action: str, doc: Any) -> None:
    """``POST /v2/repository/models/NAME/load`` (or ``unload``), its body parsed: a JSON
    object with an optional ``parameters`` object, checked."""
    if not isinstance(doc, dict):
        raise InputError(f"the {action} request must be a JSON object")
    parameters = doc.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InputError(f"the {action} request's 'parameters' must be a JSON object")
    check_repository_parameters(action, parameters)


def repository_parameters_grpc(parameters: Any) -> dict[str, Any]:
    """A ``RepositoryModelLoadRequest``'s (or unload's) ``parameters`` map, decoded."""
    out: dict[str, Any] = {}
    for key, value in parameters.items():
        kind = value.WhichOneof("parameter_choice")
        out[key] = None if kind is None else getattr(value, kind)
    return out
