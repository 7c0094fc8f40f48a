"""TensorFlow Serving's protos <-> numpy: ``TensorProto``, ``PredictRequest``,
``PredictResponse``.

Follows TensorFlow's ``Tensor::FromProto`` (reading) and TensorFlow Serving's
``predict_util.cc`` (which encodes response tensors with ``Tensor::AsProtoField``: the
typed ``*_val`` fields, not ``tensor_content``).

Speed: numeric values never go through Python objects one by one. ``tensor_content`` is
read with ``np.frombuffer``; the packed ``*_val`` fields are read from, and written as,
their wire bytes (one ``SerializeToString`` / ``MergeFromString`` and numpy), because
upb's repeated-field containers cost about a microsecond per element either way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from tfhost.errors import Code, InputError, InternalError, TfhostError
from tfhost.specs import DEFAULT_SIGNATURE

__all__ = [
    "FailedPrecondition",
    "array_to_tensor",
    "data_type",
    "data_type_name",
    "decode_predict_request",
    "dtype_name",
    "encode_predict_response",
    "find_predict_signature",
    "prepare_predict",
    "tensor_to_array",
]


class FailedPrecondition(TfhostError):
    """TensorFlow Serving's FAILED_PRECONDITION for a request (an unknown predict
    signature). Local because ``tfhost.errors`` has no request-level class for it."""

    code = Code.FAILED_PRECONDITION


# -- dtypes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DType:
    enum: int  # tensorflow.DataType
    name: str  # TensorFlow's dtype name, tfhost's vocabulary
    numpy: np.dtype[Any] | None  # None: no numpy form (resource, variant, quantized)
    field: str | None  # the TensorProto field AsProtoField fills; None: none
    number: int  # that field's number in TensorProto
    encoding: str  # "fixed": packed little-endian; "varint"; "bytes"; "string"; ""


def _ml_dtype(name: str) -> np.dtype[Any] | None:
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - ml_dtypes ships with TensorFlow
        return None
    kind = getattr(ml_dtypes, name, None)
    return None if kind is None else np.dtype(kind)


def _table() -> tuple[_DType, ...]:
    f, v = "fixed", "varint"
    rows: list[tuple[int, str, np.dtype[Any] | None, str | None, int, str]] = [
        (1, "float32", np.dtype("<f4"), "float_val", 5, f),
        (2, "float64", np.dtype("<f8"), "double_val", 6, f),
        (3, "int32", np.dtype("<i4"), "int_val", 7, v),
        (4, "uint8", np.dtype("u1"), "int_val", 7, v),
        (5, "int16", np.dtype("<i2"), "int_val", 7, v),
        (6, "int8", np.dtype("i1"), "int_val", 7, v),
        (7, "string", np.dtype(object), "string_val", 8, "string"),
        (8, "complex64", np.dtype("<c8"), "scomplex_val", 9, f),
        (9, "int64", np.dtype("<i8"), "int64_val", 10, v),
        (10, "bool", np.dtype(bool), "bool_val", 11, v),
        (11, "qint8", None, None, 0, ""),
        (12, "quint8", None, None, 0, ""),
        (13, "qint32", None, None, 0, ""),
        (14, "bfloat16", _ml_dtype("bfloat16"), "half_val", 13, v),
        (15, "qint16", None, None, 0, ""),
        (16, "quint16", None, None, 0, ""),
        (17, "uint16", np.dtype("<u2"), "int_val", 7, v),
        (18, "complex128", np.dtype("<c16"), "dcomplex_val", 12, f),
        (19, "float16", np.dtype("<f2"), "half_val", 13, v),
        (20, "resource", None, None, 0, ""),
        (21, "variant", None, None, 0, ""),
        (22, "uint32", np.dtype("<u4"), "uint32_val", 16, v),
        (23, "uint64", np.dtype("<u8"), "uint64_val", 17, v),
        (24, "float8_e5m2", _ml_dtype("float8_e5m2"), "float8_val", 18, "bytes"),
        (25, "float8_e4m3fn", _ml_dtype("float8_e4m3fn"), "float8_val", 18, "bytes"),
        # TensorFlow has no typed field for these; they travel in tensor_content only.
        (26, "float8_e4m3fnuz", _ml_dtype("float8_e4m3fnuz"), None, 0, ""),
        (27, "float8_e4m3b11fnuz", _ml_dtype("float8_e4m3b11fnuz"), None, 0, ""),
        (28, "float8_e5m2fnuz", _ml_dtype("float8_e5m2fnuz"), None, 0, ""),
        (29, "int4", _ml_dtype("int4"), "int_val", 7, v),
        (30, "uint4", _ml_dtype("uint4"), "int_val", 7, v),
        (31, "int2", _ml_dtype("int2"), "int_val", 7, v),
        (32, "uint2", _ml_dtype("uint2"), "int_val", 7, v),
        (33, "float4_e2m1fn", _ml_dtype("float4_e2m1fn"), "float8_val", 18, "bytes"),
    ]
    return tuple(_DType(*row) for row in rows)


_DTYPES: Final = _table()
_BY_ENUM: Final = {d.enum: d for d in _DTYPES}
_BY_NAME: Final = {d.name: d for d in _DTYPES}
# numpy dtypes compare equal across byte orders only when they are the same; index the
# native forms too so a plain np.float32 array finds its row.
_BY_NUMPY: Final = {
    **{d.numpy.newbyteorder("="): d for d in _DTYPES if d.numpy is not None},
    **{d.numpy: d for d in _DTYPES if d.numpy is not None},
}
_STRING: Final = _BY_NAME["string"]
_DATA_TYPE_NAMES: Final = {
    0: "DT_INVALID", 1: "DT_FLOAT", 2: "DT_DOUBLE", 3: "DT_INT32", 4: "DT_UINT8",
    5: "DT_INT16", 6: "DT_INT8", 7: "DT_STRING", 8: "DT_COMPLEX64", 9: "DT_INT64",
    10: "DT_BOOL", 11: "DT_QINT8", 12: "DT_QUINT8", 13: "DT_QINT32", 14: "DT_BFLOAT16",
    15: "DT_QINT16", 16: "DT_QUINT16", 17: "DT_UINT16", 18: "DT_COMPLEX128",
    19: "DT_HALF", 20: "DT_RESOURCE", 21: "DT_VARIANT", 22: "DT_UINT32", 23: "DT_UINT64",
    24: "DT_FLOAT8_E5M2", 25: "DT_FLOAT8_E4M3FN", 26: "DT_FLOAT8_E4M3FNUZ",
    27: "DT_FLOAT8_E4M3B11FNUZ", 28: "DT_FLOAT8_E5M2FNUZ", 29: "DT_INT4", 30: "DT_UINT4",
    31: "DT_INT2", 32: "DT_UINT2", 33: "DT_FLOAT4_E2M1FN",
}  # fmt: skip


def data_type(name: str) -> int:
    """The ``tensorflow.DataType`` number of a TensorFlow dtype name (0: DT_INVALID)."""
    row = _BY_NAME.get(name)
    return 0 if row is None else row.enum


def data_type_name(enum: int) -> str:
    """``DataType_Name``: ``DT_FLOAT`` for 1; the number itself when unknown."""
    return _DATA_TYPE_NAMES.get(enum, str(enum))


def dtype_name(dtype: np.dtype[Any]) -> str:
    """The ``DT_*`` name of what a numpy array carries (strings of any kind: DT_STRING)."""
    row = _row_of(dtype)
    return "DT_INVALID" if row is None else data_type_name(row.enum)


def _row_of(dtype: np.dtype[Any]) -> _DType | None:
    if dtype.kind in "OSU":
        return _STRING
    row = _BY_NUMPY.get(dtype)
    if row is None and dtype.byteorder == ">":
        row = _BY_NUMPY.get(dtype.newbyteorder("<"))
    return row


# -- wire helpers ---------------------------------------------------------------------------

_U64: Final = np.uint64
_SHIFTS: Final = tuple(np.uint64(7 * k) for k in range(10))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _encode_varints(values: np.ndarray) -> bytes:
    """Protobuf varints of uint64 ``values``, vectorized."""
    if values.size == 0:
        return b""
    if int(values.max()) < 0x80:
        return values.astype(np.uint8).tobytes()
    sizes = np.ones(values.shape, np.int64)
    for k in range(1, 10):
        sizes += values >= (_U64(1) << _SHIFTS[k])
    widest = int(sizes.max())
    groups = np.empty((values.size, widest), np.uint8)
    for k in range(widest):
        group = ((values >> _SHIFTS[k]) & _U64(0x7F)).astype(np.uint8)
        group[sizes > k + 1] |= 0x80
        groups[:, k] = group
    return groups[np.arange(widest) < sizes[:, None]].tobytes()


def _decode_varints(data: bytes) -> np.ndarray:
    """The uint64 values of concatenated protobuf varints, vectorized."""
    raw = np.frombuffer(data, np.uint8)
    if raw.size == 0:
        return np.empty(0, _U64)
    ends = np.flatnonzero(raw < 0x80)
    if ends.size == 0 or ends[-1] != raw.size - 1:
        raise InputError("malformed varint in a packed TensorProto field")
    payload = (raw & 0x7F).astype(_U64)
    if ends.size == raw.size:
        return payload
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    sizes = ends - starts + 1
    if int(sizes.max()) > 10:
        raise InputError("malformed varint in a packed TensorProto field")
    out = payload[starts].copy()
    for k in range(1, int(sizes.max())):
        longer = sizes > k
        out[longer] |= payload[starts[longer] + k] << _SHIFTS[k]
    return out


def _packed_payload(serialized: bytes, number: int) -> bytes | None:
    """The packed payload of field ``number`` in a serialized message; None when the
    field also appears unpacked (the caller then reads it the slow way)."""
    parts: list[bytes] = []
    view = memoryview(serialized)
    pos, end = 0, len(serialized)
    while pos < end:
        tag, pos = read_varint(view, pos)
        wire = tag & 7
        if wire == 0:
            _, pos = read_varint(view, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = read_varint(view, pos)
            if tag >> 3 == number:
                parts.append(bytes(view[pos : pos + size]))
            pos += size
        else:
            return None
        if tag >> 3 == number and wire != 2:
            return None
    return b"".join(parts)


def read_varint(view: memoryview, pos: int) -> tuple[int, int]:
    """A protobuf varint at ``pos``: its value and the position after it."""
    result = shift = 0
    while True:
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


# -- TensorProto -> numpy -------------------------------------------------------------------

# The element type on the wire of each fixed-width field (complex: interleaved pairs).
_FIXED_SCALARS: Final[dict[str, np.dtype[Any]]] = {
    "float_val": np.dtype("<f4"),
    "double_val": np.dtype("<f8"),
    "scomplex_val": np.dtype("<f4"),
    "dcomplex_val": np.dtype("<f8"),
}
# Below this many values the plain field read beats serializing the proto.
_WIRE_READ_MIN: Final = 64
_MAX_DIMS: Final = 254


def _shape_text(dims: Iterable[int]) -> str:
    return "[" + ",".join("?" if d == -1 else str(d) for d in dims) + "]"


def _shape(proto: Any) -> tuple[int, ...]:
    """A complete shape from a TensorShapeProto, checked as TensorShape::IsValidShape.

    ``unknown_rank`` is ignored, as TensorFlow's complete shapes ignore it (for backwards
    compatibility): the dims say the shape."""
    dims = tuple(d.size for d in proto.dim)
    if len(dims) > _MAX_DIMS:
        raise InputError(f"Shape {_shape_text(dims)} has too many dimensions")
    if any(d < 0 for d in dims):
        raise InputError(f"Shape {_shape_text(dims)} is not fully defined")
    if math.prod(dims) >= 2**63:
        raise InputError(f"Shape {_shape_text(dims)} is too large (more than 2**63 - 1 entries)")
    return dims


MAX_FILLED_BYTES = 256 << 20


def tensor_to_array(proto: Any) -> np.ndarray:
    """A ``tensorflow.TensorProto`` as a numpy array, as ``Tensor::FromProto`` reads it.

    ``tensor_content`` (the raw little-endian buffer) wins when set and must hold exactly
    the shape's bytes; otherwise the typed field is read, and TensorFlow's rule fills the
    shape: no values means zeros, fewer values than the shape repeat the last one (so one
    value fills it all). More values than the shape is an InputError (TensorFlow silently
    drops the extra; a client sending them has a bug worth hearing about). Strings come
    back as an object array of ``bytes``; float16 as ``np.float16``, bfloat16 as
    ``ml_dtypes.bfloat16``. Numeric arrays read from ``tensor_content`` share the proto's
    bytes and are read-only.
    """
    row = _BY_ENUM.get(proto.dtype)
    if row is None or row.enum == 0:
        raise InputError(f"Unsupported tensor dtype: {data_type_name(proto.dtype)}")
    shape = _shape(proto.tensor_shape)
    if row.numpy is None:
        raise InputError(f"Unsupported tensor dtype: {data_type_name(row.enum)}")
    count = math.prod(shape)
    if count == 0:
        try:
            return np.empty(shape, row.numpy)
        except ValueError:  # an empty shape numpy still cannot index ([0, 2**63 - 1])
            raise InputError(f"Shape {_shape_text(shape)} is too large") from None
    content = proto.tensor_content
    if content:
        if row is _STRING:
            return _decode_string_list(content, count).reshape(shape)
        expected = count * row.numpy.itemsize
        if len(content) != expected:
            raise InputError(
                f"tensor_content of {data_type_name(row.enum)} {_shape_text(shape)}: "
                f"Input size was {len(content)} and expected {expected}"
            )
        return np.frombuffer(content, row.numpy).reshape(shape)
    if row.field is None:
        raise InputError(
            f"Unsupported tensor dtype without tensor_content: {data_type_name(row.enum)}"
        )
    # The fill rule makes a few bytes on the wire a tensor of any size: refused past a
    # bound, so one request cannot take the host's memory.
    itemsize = 8 if row is _STRING else row.numpy.itemsize
    if count * itemsize > MAX_FILLED_BYTES:
        raise InputError(
            f"{data_type_name(row.enum)} {_shape_text(shape)} would take "
            f"{count * itemsize} bytes, over the limit of {MAX_FILLED_BYTES} for a tensor "
            f"filled from its typed values"
        )
    if row is _STRING:
        return _fill_strings(list(proto.string_val), count, shape)
    values = _typed_values(proto, row)
    return _fill(values, count, shape, row)


def _typed_values(proto: Any, row: _DType) -> np.ndarray:
    assert row.numpy is not None and row.field is not None
    if row.encoding == "bytes":
        return np.frombuffer(getattr(proto, row.field), np.uint8).view(row.numpy)
    field = getattr(proto, row.field)
    payload = (
        _packed_payload(proto.SerializeToString(), row.number)
        if (len(field) >= _WIRE_READ_MIN)
        else None
    )
    if row.encoding == "fixed":
        scalar = _FIXED_SCALARS[row.field]
        if payload is not None:
            flat = np.frombuffer(payload, scalar)
        else:
            flat = np.array(field, dtype=scalar)
        if row.numpy.kind == "c":
            if flat.size % 2:
                flat = flat[:-1]  # TensorFlow reads whole (real, imaginary) pairs only
            complex_values: np.ndarray = flat.view(row.numpy)
            return complex_values
        return flat
    # varint fields: int_val, int64_val, bool_val, half_val, uint32_val, uint64_val
    if payload is not None:
        raw = _decode_varints(payload)
    else:
        raw = np.array(field, dtype=np.int64 if row.field in ("int_val", "int64_val") else _U64)
    if row.field == "half_val":
        return raw.astype(np.uint16).view(row.numpy)
    if row.field == "bool_val":
        return raw.astype(bool)
    if raw.dtype == _U64 and row.field in ("int_val", "int64_val"):
        raw = raw.view(np.int64)  # two's complement, as the wire carries negatives
    return raw.astype(row.numpy)


def _fill(values: np.ndarray, count: int, shape: tuple[int, ...], row: _DType) -> np.ndarray:
    assert row.numpy is not None
    got = values.size
    if got == count:
        return values.reshape(shape)
    if got > count:
        raise InputError(_too_many(row, got, count, shape))
    if got == 0:
        return np.zeros(shape, row.numpy)
    out = np.empty(count, row.numpy)
    out[:got] = values
    out[got:] = values[-1]
    return out.reshape(shape)


def _fill_strings(values: list[bytes], count: int, shape: tuple[int, ...]) -> np.ndarray:
    got = len(values)
    if got > count:
        raise InputError(_too_many(_STRING, got, count, shape))
    if got < count:
        values.extend([values[-1] if values else b""] * (count - got))
    out = np.empty(count, object)
    out[:] = values
    return out.reshape(shape)


def _too_many(row: _DType, got: int, count: int, shape: tuple[int, ...]) -> str:
    return (
        f"{row.field} of {data_type_name(row.enum)} {_shape_text(shape)} has {got} values; "
        f"the shape holds {count}"
    )


def _decode_string_list(content: bytes, count: int) -> np.ndarray:
    """``port::DecodeStringList``: ``count`` varint lengths, then the bytes."""
    raw = np.frombuffer(content, np.uint8)
    ends = np.flatnonzero(raw < 0x80)[:count]
    bad = InputError("tensor_content of DT_STRING is not a valid string list")
    if ends.size < count:
        raise bad
    header = int(ends[-1]) + 1
    lengths = _decode_varints(content[:header])
    if lengths.size != count or int(lengths.sum()) != len(content) - header:
        raise bad
    stops = (np.cumsum(lengths) + header).tolist()
    starts = [header, *stops[:-1]]
    out = np.empty(count, object)
    out[:] = [content[a:b] for a, b in zip(starts, stops, strict=True)]
    return out


# -- numpy -> TensorProto -------------------------------------------------------------------


def array_to_tensor(array: Any, proto: Any | None = None) -> Any:
    """A numpy array as a ``tensorflow.TensorProto``, as ``Tensor::AsProtoField`` writes
    it (TensorFlow Serving's default for responses): dtype, the shape (present even for a
    scalar), and the values in the typed field (``float_val``, ``int_val``, ``string_val``,
    ``half_val`` with float16/bfloat16 bits...), one per element, never ``tensor_content``.

    ``proto``, when given, is cleared and filled (e.g. ``response.outputs["y"]``).
    ``str`` strings are written as UTF-8.
    """
    if proto is None:
        from tensorflow.core.framework import tensor_pb2

        proto = tensor_pb2.TensorProto()
    else:
        proto.Clear()
    value = np.asarray(array)
    row = _row_of(value.dtype)
    if row is None or row.field is None:
        raise InternalError(f"cannot encode a {value.dtype} array as a TensorProto")
    shape = b"".join(_length_delimited(2, b"\x08" + _varint(d)) for d in value.shape)
    wire = b"\x08" + _varint(row.enum) + _length_delimited(2, shape)
    if value.size and row is not _STRING:
        wire += _length_delimited(row.number, _value_bytes(value, row))
    proto.MergeFromString(wire)
    if value.size and row is _STRING:
        proto.string_val.extend(_as_bytes(item) for item in value.ravel().tolist())
    return proto


def _value_bytes(value: np.ndarray, row: _DType) -> bytes:
    assert row.numpy is not None
    flat = np.ascontiguousarray(value.reshape(-1), dtype=row.numpy)
    if row.encoding in ("fixed", "bytes"):
        return flat.tobytes()
    if row.field == "half_val":
        return _encode_varints(flat.view(np.uint16).astype(_U64))
    if row.field == "bool_val":
        return flat.view(np.uint8).tobytes()
    if flat.dtype.kind == "u":
        return _encode_varints(flat.astype(_U64))
    # Signed values go out sign-extended to 64 bits, as protobuf writes int32 varints.
    return _encode_varints(flat.astype(np.int64).view(_U64))


def _as_bytes(item: object) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    raise InternalError(f"a string tensor holds a {type(item).__name__}, not bytes or str")


# -- Predict --------------------------------------------------------------------------------


def decode_predict_request(
    request: Any,
) -> tuple[str, dict[str, np.ndarray], tuple[str, ...]]:
    """``(signature_name, inputs, output_filter)`` of a ``PredictRequest``.

    The signature defaults to ``serving_default`` as TensorFlow Serving's does; a tensor
    that does not parse is TensorFlow Serving's ``tensor parsing error: <alias>`` with
    the reason after it.
    """
    signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
    inputs: dict[str, np.ndarray] = {}
    for alias, tensor in request.inputs.items():
        try:
            inputs[alias] = tensor_to_array(tensor)
        except InputError as exc:
            raise InputError(f"tensor parsing error: {alias} ({exc.message})") from None
    return signature, inputs, tuple(request.output_filter)


def encode_predict_response(
    outputs: Mapping[str, np.ndarray],
    model_name: str,
    version: int | None,
    signature: str,
) -> Any:
    """A ``PredictResponse``: the outputs as ``AsProtoField`` tensors and the model_spec
    as TensorFlow Serving's ``MakeModelSpec`` fills it (name, the signature name with
    ``serving_default`` for an empty one, the version when known)."""
    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    make_model_spec(response.model_spec, model_name, signature, version)
    for alias, value in outputs.items():
        array_to_tensor(value, response.outputs[alias])
    return response


def make_model_spec(spec: Any, name: str, signature: str | None, version: int | None) -> None:
    """``util.cc MakeModelSpec``: ``signature=None`` leaves signature_name unset."""
    spec.Clear()
    spec.name = name
    if signature is not None:
        spec.signature_name = signature or DEFAULT_SIGNATURE
    if version is not None:
        spec.version.value = version


def find_predict_signature(signature_defs: Mapping[str, Any], signature: str) -> Any:
    """The SignatureDef a Predict names (empty: ``serving_default``), or TensorFlow
    Serving's FAILED_PRECONDITION."""
    name = signature or DEFAULT_SIGNATURE
    found = signature_defs.get(name)
    if found is None:
        raise FailedPrecondition(f'Serving signature key "{name}" not found.')
    return found


def prepare_predict(
    signature_def: Any, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """``predict_util.cc PreProcessPrediction`` on decoded inputs: the inputs to feed
    (the request's, plus the signature's ``defaults`` for those it left out) and the
    output aliases to return (the filter's, in its order, or every output), with
    TensorFlow Serving's errors for the wrong inputs or a bad filter."""
    sig_inputs = signature_def.inputs
    defaults = signature_def.defaults
    if len(inputs) > len(sig_inputs) or (len(inputs) < len(sig_inputs) and not defaults):
        sent, wanted = set(inputs), set(sig_inputs)
        raise InputError(
            f"input size does not match signature: {len(inputs)}!={len(sig_inputs)} "
            f"len({{{_join(sent)}}}) != len({{{_join(wanted)}}}). "
            f"Sent extra: {{{_join(sent - wanted)}}}. "
            f"Missing but required: {{{_join(wanted - sent)}}}."
        )
    feeds: dict[str, np.ndarray] = {}
    for alias in sorted(sig_inputs):
        if alias in inputs:
            feeds[alias] = inputs[alias]
            continue
        if alias not in defaults:
            raise InputError(
                f"Signature input alias: {alias}(feed name: {sig_inputs[alias].name}) not "
                f"found in request and no default value provided. Inputs expected to be in "
                f"the request {{{_join(inputs)}}}, or default input alias set: "
                f"{_join(defaults)}"
            )
        try:
            feeds[alias] = tensor_to_array(defaults[alias])
        except InputError:
            raise InputError(f"tensor parsing error: {alias}") from None
    used = set(inputs) & set(sig_inputs)
    if inputs and len(used) != len(inputs):
        raise InputError(
            f"Inputs contains invalid name. Used request inputs: {_join(used)}, "
            f"request input: {_join(inputs)}"
        )
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature_def.outputs:
            raise InputError(
                f"output tensor alias not found in signature: {alias} Outputs expected to "
                f"be in the set {{{_join(signature_def.outputs)}}}."
            )
        if alias in seen:
            raise InputError(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    aliases = tuple(output_filter) if output_filter else tuple(signature_def.outputs)
    return feeds, aliases


def _join(names: Iterable[str]) -> str:
    """``absl::StrJoin`` of a ``std::set``: sorted, comma-separated."""
    return ",".join(sorted(names))
