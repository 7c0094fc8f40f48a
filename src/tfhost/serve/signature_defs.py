"""TensorFlow Serving's model metadata and model status, from tfhost's ``ModelInfo``.

* ``signature_defs``: a version's ``tensorflow.SignatureDef``s, read from its
  ``saved_model.pb`` (protobuf classes only, no TensorFlow runtime) or, for formats
  without one, made from tfhost's SignatureSpecs.
* ``metadata_response`` / ``metadata_json``: ``GetModelMetadataResponse`` and the REST
  body TensorFlow Serving prints for it (``http_rest_api_util.cc ToJsonString``).
* ``status_response`` / ``status_json`` / ``model_status``: ``GetModelStatusResponse``
  as ``get_model_status_impl.cc`` builds it, and its REST body.

The JSON is written as protobuf's C++ printer writes it (``json/internal/unparser.cc``
with ``add_whitespace``, ``always_print_fields_with_no_presence`` and, for metadata,
``preserve_proto_field_names``): fields in field-number order, one-space indents, C++'s
string escapes and float formatting, a final newline. Map entries come sorted by key;
C++ prints them in hash order, which no client can rely on.
"""

from __future__ import annotations

import base64
import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np

from tfhost.cells import Isolation
from tfhost.errors import Code, InputError, InternalError, NotFound
from tfhost.host import ModelInfo
from tfhost.serve.codecs.tfs_proto import data_type, read_varint
from tfhost.specs import Format, SignatureSpec, TensorSpec
from tfhost.state import State

__all__ = [
    "INIT_OP_SIGNATURE",
    "check_metadata_request",
    "metadata_json",
    "metadata_response",
    "model_status",
    "pipeline_info",
    "signature_defs",
    "status_json",
    "status_response",
    "to_json",
]

SIGNATURE_DEF_FIELD: Final = "signature_def"  # GetModelMetadataImpl::kSignatureDef
# TF2's init-op signature: not callable, so not in tfhost's signatures, yet TensorFlow
# Serving lists it (it lists every SignatureDef of the meta graph).
INIT_OP_SIGNATURE: Final = "__saved_model_init_op"
_PREDICT: Final = "tensorflow/serving/predict"
_SERVE_TAG: Final = "serve"
_SAVED_MODEL_FORMATS: Final = frozenset(
    {Format.TF1_SAVED_MODEL, Format.TF2_SAVED_MODEL, Format.KERAS_SAVED_MODEL, Format.KERAS_EXPORT}
)


# -- SignatureDefs ----------------------------------------------------------------------------


def signature_defs(info: ModelInfo) -> dict[str, Any]:
    """The ``SignatureDef``s TensorFlow Serving would show for a version, by key.

    A SavedModel's come from the meta graph tagged ``serve`` in ``info.path /
    saved_model.pb`` (cached per file), kept to the signatures the model serves
    (``info.signatures``) plus TF2's ``__saved_model_init_op``; a signature tfhost serves
    that the file lacks, and every signature of other formats (Keras files, frozen
    graphs), is made from its SignatureSpec with method_name
    ``tensorflow/serving/predict``. The messages may be shared with the cache: read them,
    do not change them.
    """
    saved = saved_signature_defs(info.path) if info.format in _SAVED_MODEL_FORMATS else None
    out: dict[str, Any] = {}
    for key in sorted(info.signatures):
        found = None if saved is None else saved.get(key)
        out[key] = found if found is not None else signature_def_of(info.signatures[key])
    if saved is not None and INIT_OP_SIGNATURE in saved:
        out[INIT_OP_SIGNATURE] = saved[INIT_OP_SIGNATURE]
    return out


def signature_def_of(spec: SignatureSpec, method_name: str = _PREDICT) -> Any:
    """A ``SignatureDef`` made from a tfhost SignatureSpec."""
    from tensorflow.core.protobuf import meta_graph_pb2

    signature = meta_graph_pb2.SignatureDef(method_name=method_name)
    for alias, tensor in spec.inputs.items():
        _fill_tensor_info(signature.inputs[alias], tensor)
    for alias, tensor in spec.outputs.items():
        _fill_tensor_info(signature.outputs[alias], tensor)
    return signature


def _fill_tensor_info(info: Any, spec: TensorSpec) -> None:
    info.name = spec.name
    info.dtype = data_type(spec.dtype)
    info.tensor_shape.SetInParent()
    if spec.shape is None:
        info.tensor_shape.unknown_rank = True
    else:
        for d in spec.shape:
            info.tensor_shape.dim.add().size = -1 if d is None else d


def _saved_model_file(path: Path) -> Path | None:
    if path.is_file():
        return path
    for name in ("saved_model.pb", "saved_model.pbtxt"):
        candidate = path / name
        if candidate.is_file():
            return candidate
    return None


def saved_signature_defs(path: Path) -> Mapping[str, Any] | None:
    found = _saved_model_file(path)
    if found is None:
        return None
    stat = found.stat()
    return _read_signature_defs(str(found.resolve()), stat.st_mtime_ns, stat.st_size)


# A version's files do not change while it is loaded; the stat in the key catches a
# folder rewritten in place.
@functools.lru_cache(maxsize=256)
def _read_signature_defs(file: str, mtime_ns: int, size: int) -> Mapping[str, Any] | None:
    del mtime_ns, size
    from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

    data = Path(file).read_bytes()
    graphs: list[Any]
    if file.endswith(".pbtxt"):
        from google.protobuf import text_format

        saved = text_format.Parse(data.decode("utf-8"), saved_model_pb2.SavedModel())
        graphs = list(saved.meta_graphs)
    else:
        # Parse only what metadata needs: a meta graph's GraphDef can be most of the file.
        graphs = [
            meta_graph_pb2.MetaGraphDef.FromString(
                b"".join(record for number, _, record in _records(payload) if number in (1, 5))
            )
            for number, payload, _ in _records(data)
            if number == 2
        ]
    graph = _serving_graph(graphs)
    return None if graph is None else dict(graph.signature_def)


def _serving_graph(graphs: Sequence[Any]) -> Any | None:
    """The meta graph TensorFlow Serving loads: tags exactly {serve}, else the first
    that has the tag, else the only one."""
    tagged = [g for g in graphs if _SERVE_TAG in g.meta_info_def.tags]
    exact = [g for g in tagged if set(g.meta_info_def.tags) == {_SERVE_TAG}]
    if exact:
        return exact[0]
    if tagged:
        return tagged[0]
    return graphs[0] if len(graphs) == 1 else None


def _records(data: bytes | memoryview) -> list[tuple[int, memoryview, bytes]]:
    """The top-level records of a serialized message: (field number, payload of a
    length-delimited record, the record's bytes)."""
    view = memoryview(data)
    out: list[tuple[int, memoryview, bytes]] = []
    pos, end = 0, len(data)
    while pos < end:
        start = pos
        tag, pos = read_varint(view, pos)
        wire = tag & 7
        payload = view[0:0]
        if wire == 0:
            _, pos = read_varint(view, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = read_varint(view, pos)
            payload = view[pos : pos + size]
            pos += size
        else:
            raise InternalError(f"saved_model.pb: unexpected wire type {wire}")
        number = tag >> 3
        # Only meta graph and signature records are ever copied.
        out.append((number, payload, bytes(view[start:pos]) if number in (1, 5) else b""))
    return out


class _HasSignatures(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def signatures(self) -> Mapping[str, SignatureSpec]: ...


def pipeline_info(handle: _HasSignatures) -> ModelInfo:
    """A pipeline as a ModelInfo for metadata: its name, version 0 (a pipeline has none;
    TensorFlow Serving's metadata always names one) and its signatures."""
    return ModelInfo(
        name=handle.name,
        version=0,
        state=State.AVAILABLE,
        isolation=Isolation.INLINE,
        path=Path(),
        format=None,
        signatures=dict(handle.signatures),
    )


# -- metadata ---------------------------------------------------------------------------------


def check_metadata_request(request: Any) -> None:
    """``GetModelMetadataImpl``'s request checks, with its texts."""
    if not request.HasField("model_spec"):
        raise InputError("Missing ModelSpec")
    if not request.metadata_field:
        raise InputError("GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
        if field != SIGNATURE_DEF_FIELD:
            raise InputError(f"Metadata field {field} is not supported")


def metadata_response(name: str, version: int, defs: Mapping[str, Any]) -> Any:
    """``GetModelMetadataResponse``: model_spec name and version, and the SignatureDefMap
    packed in an ``Any`` under ``signature_def``."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = name
    response.model_spec.version.value = version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in defs.items():
        signature_map.signature_def[key].CopyFrom(signature)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
    return response


def metadata_json(response: Any) -> bytes:
    """The REST body of ``GET /v1/models/<name>/metadata``: TensorFlow Serving prints the
    model_spec and the unpacked SignatureDefMap apart and concatenates them (its
    workaround for Any's field names), byte for byte as here."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    if SIGNATURE_DEF_FIELD not in response.metadata:
        raise InternalError(
            "Failed to find 'signature_def' key in the GetModelMetadataResponse metadata map."
        )
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    if not response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_map):
        raise InternalError("Failed to unpack 'Any' object to 'SignatureDefMap'.")
    model_spec = to_json(response.model_spec, preserve_proto_field_names=True)
    signatures = to_json(signature_map, preserve_proto_field_names=True)
    text = f'{{\n"model_spec":{model_spec},\n"metadata": {{"signature_def": {signatures}}}\n}}\n'
    return text.encode("utf-8")


# -- status -----------------------------------------------------------------------------------

# tfhost's FAILED is TensorFlow Serving's failed load: the manager publishes kEnd with the
# load's error as the version's health (basic_manager.cc error_callback).
_STATE_NAMES: Final = {
    State.START: "START",
    State.LOADING: "LOADING",
    State.AVAILABLE: "AVAILABLE",
    State.FAILED: "END",
    State.UNLOADING: "UNLOADING",
    State.END: "END",
}


def status_response(infos: Sequence[ModelInfo]) -> Any:
    """``GetModelStatusResponse``: one ModelVersionStatus per version, newest first (the
    state monitor's order), each with its state and ``status`` (``ToStatusProto``: OK and
    no message, or a failed version's error code and message)."""
    from tensorflow_serving.apis import get_model_status_pb2

    response = get_model_status_pb2.GetModelStatusResponse()
    states = get_model_status_pb2.ModelVersionStatus.State
    for info in sorted(infos, key=lambda i: i.version, reverse=True):
        entry = response.model_version_status.add()
        entry.version = info.version
        entry.state = states.Value(_STATE_NAMES[info.state])
        entry.status.SetInParent()
        if info.state in (State.FAILED, State.END) and info.error is not None:
            entry.status.error_code = _error_code(info.error_code)
            entry.status.error_message = info.error
    return response


def _error_code(code: Code | None) -> int:
    from tensorflow_serving.apis import status_pb2

    enum = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type
    value = enum.values_by_name.get("UNKNOWN" if code is None else code.value)
    return 2 if value is None else int(value.number)


def model_status(
    lookup: Callable[[str, int | None], Sequence[ModelInfo]],
    request: Any,
) -> Any:
    """``GetModelStatusImpl::GetModelStatus``: ``lookup(name, version)`` (e.g.
    ``Host.status``) gives the versions; the request's version, when set, picks one (a
    version label does not: TensorFlow Serving's status ignores labels)."""
    if not request.HasField("model_spec"):
        raise InputError("Missing ModelSpec")
    spec = request.model_spec
    version = spec.version.value if spec.HasField("version") else None
    try:
        infos = list(lookup(spec.name, version))
    except NotFound:
        infos = []
    if version is not None:
        infos = [i for i in infos if i.version == version]
        if not infos:
            raise NotFound(f"Could not find version {version} of model {spec.name}")
    elif not infos:
        raise NotFound(f"Could not find any versions of model {spec.name}")
    return status_response(infos)


def status_json(response: Any) -> bytes:
    """The REST body of ``GET /v1/models/<name>[/versions/<v>]``."""
    return to_json(response).encode("utf-8")


# -- protobuf's C++ JSON printer ----------------------------------------------------------------

_T_DOUBLE, _T_FLOAT, _T_INT64, _T_UINT64, _T_INT32, _T_FIXED64, _T_FIXED32 = 1, 2, 3, 4, 5, 6, 7
_T_BOOL, _T_STRING, _T_GROUP, _T_MESSAGE, _T_BYTES, _T_UINT32, _T_ENUM = 8, 9, 10, 11, 12, 13, 14
_T_SFIXED32, _T_SFIXED64, _T_SINT32, _T_SINT64 = 15, 16, 17, 18
_QUOTED_INTS: Final = frozenset({_T_INT64, _T_UINT64, _T_FIXED64, _T_SFIXED64, _T_SINT64})
_PLAIN_INTS: Final = frozenset({_T_INT32, _T_UINT32, _T_FIXED32, _T_SFIXED32, _T_SINT32})
_WRAPPERS: Final = frozenset(
    f"google.protobuf.{n}Value"
    for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
_OTHER_WELL_KNOWN: Final = frozenset(
    f"google.protobuf.{n}"
    for n in ("Struct", "Value", "ListValue", "Timestamp", "Duration", "FieldMask")
)
_ANY: Final = "google.protobuf.Any"
_REPEATED: Final = 3  # FieldDescriptor.LABEL_REPEATED
# json/internal/writer.cc MustEscape: JSON's escapes plus the ESF parser's extras.
_ESCAPE: Final = re.compile(
    '[\x00-\x1f"\\\\<>\x7f-\x9f\u00ad\u0600-\u0603\u06dd\u070f\u17b4\u17b5\u200b-\u200f'
    "\u2028-\u202e\u2060-\u2064\u206a-\u206f\ufeff\ufff9-\ufffb\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f]"
)
_SHORT_ESCAPES: Final = {
    "\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\f": "\\f", "\b": "\\b", "\\": "\\\\",
}  # fmt: skip


def to_json(message: Any, *, preserve_proto_field_names: bool = False) -> str:
    """``MessageToJsonString`` with ``add_whitespace`` and
    ``always_print_fields_with_no_presence``, as protobuf's C++ prints it (with its final
    newline)."""
    writer = _Writer(preserve_proto_field_names)
    writer.message(message)
    writer.newline()
    return "".join(writer.parts)


def _quote(text: str) -> str:
    return '"' + _ESCAPE.sub(_escape_char, text) + '"'


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    point = ord(char)
    if point < 0x10000:
        return f"\\u{point:04x}"
    point -= 0x10000
    return f"\\u{0xD800 + (point >> 10):04x}\\u{0xDC00 + (point & 0x3FF):04x}"


def _float_text(value: float, single: bool) -> str:
    """``io::SimpleFtoa`` / ``SimpleDtoa``: the short ``%g`` when it reads back the same,
    else the long one; non-finite values as JSON strings."""
    if math.isnan(value):
        return '"NaN"'
    if math.isinf(value):
        return '"Infinity"' if value > 0 else '"-Infinity"'
    short, long = (6, 9) if single else (15, 17)
    text = f"{value:.{short}g}"
    same = np.float32(text) == np.float32(value) if single else float(text) == value
    return text if same else f"{value:.{long}g}"


class _Writer:
    """``json_internal::JsonWriter`` with ``add_whitespace``."""

    def __init__(self, preserve_names: bool) -> None:
        self.parts: list[str] = []
        self.indent = 0
        self.preserve = preserve_names

    def newline(self) -> None:
        self.parts.append("\n" + " " * self.indent)

    def message(self, message: Any) -> None:
        descriptor = message.DESCRIPTOR
        full_name = descriptor.full_name
        if full_name in _WRAPPERS:
            self.scalar(descriptor.fields_by_name["value"], message.value)
            return
        if full_name == _ANY:
            self.any(message)
            return
        if full_name in _OTHER_WELL_KNOWN:
            from google.protobuf import json_format

            self.plain(json_format.MessageToDict(message))
            return
        self.parts.append("{")
        self.indent += 1
        first = self.fields(message, first=True)
        self.indent -= 1
        if not first:
            self.newline()
        self.parts.append("}")

    def fields(self, message: Any, first: bool) -> bool:
        """``WriteFields``; returns whether nothing was written."""
        chosen = []
        for field in message.DESCRIPTOR.fields:
            if field.label == _REPEATED:
                chosen.append(field)
            elif field.has_presence:
                if message.HasField(field.name):
                    chosen.append(field)
            else:
                chosen.append(field)  # always_print_fields_with_no_presence
        for field in sorted(chosen, key=lambda f: f.number):
            if not first:
                self.parts.append(",")
            first = False
            self.newline()
            name = field.name if self.preserve else field.json_name
            self.parts.append(_quote(name) + ": ")
            value = getattr(message, field.name)
            if field.label != _REPEATED:
                self.scalar(field, value)
            elif _is_map(field):
                self.map(field, value)
            else:
                self.repeated(field, value)
        return first

    def repeated(self, field: Any, values: Any) -> None:
        self.parts.append("[")
        self.indent += 1
        for i, value in enumerate(values):
            if i:
                self.parts.append(",")
            self.newline()
            self.scalar(field, value)
        self.indent -= 1
        if len(values):
            self.newline()
        self.parts.append("]")

    def map(self, field: Any, entries: Any) -> None:
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        self.parts.append("{")
        self.indent += 1
        for i, key in enumerate(sorted(entries)):
            if i:
                self.parts.append(",")
            self.newline()
            if key_field.type == _T_STRING:
                self.parts.append(_quote(key))
            elif key_field.type == _T_BOOL:
                self.parts.append('"true"' if key else '"false"')
            else:
                self.parts.append(f'"{key}"')
            self.parts.append(": ")
            self.scalar(value_field, entries[key])
        self.indent -= 1
        if len(entries):
            self.newline()
        self.parts.append("}")

    def scalar(self, field: Any, value: Any) -> None:
        kind = field.type
        if kind in (_T_MESSAGE, _T_GROUP):
            self.message(value)
        elif kind == _T_STRING:
            self.parts.append(_quote(value))
        elif kind == _T_BYTES:
            self.parts.append('"' + base64.b64encode(value).decode("ascii") + '"')
        elif kind == _T_BOOL:
            self.parts.append("true" if value else "false")
        elif kind in _QUOTED_INTS:
            self.parts.append(f'"{value}"')
        elif kind in _PLAIN_INTS:
            self.parts.append(str(value))
        elif kind in (_T_FLOAT, _T_DOUBLE):
            self.parts.append(_float_text(value, kind == _T_FLOAT))
        elif kind == _T_ENUM:
            if field.enum_type.full_name == "google.protobuf.NullValue":
                self.parts.append("null")
                return
            named = field.enum_type.values_by_number.get(value)
            self.parts.append(str(value) if named is None else _quote(named.name))
        else:
            raise InternalError(f"cannot print protobuf field type {kind} as JSON")

    def any(self, message: Any) -> None:
        if not message.type_url and not message.value:
            self.parts.append("{}")
            return
        if not message.type_url:
            raise InternalError("broken Any: missing type URL")
        from google.protobuf import symbol_database

        type_name = message.type_url.rsplit("/", 1)[-1]
        try:
            cls = symbol_database.Default().GetSymbol(type_name)
        except KeyError:
            raise InternalError(f"cannot print an Any of unknown type {type_name}") from None
        inner = cls.FromString(message.value)
        self.parts.append("{")
        self.indent += 1
        self.newline()
        self.parts.append('"@type": ' + _quote(message.type_url))
        if type_name in _WRAPPERS or type_name in _OTHER_WELL_KNOWN or type_name == _ANY:
            self.parts.append(",")
            self.newline()
            self.parts.append('"value": ')
            self.message(inner)
        else:
            self.fields(inner, first=False)
        self.indent -= 1
        self.newline()
        self.parts.append("}")

    def plain(self, value: object) -> None:
        """A Python JSON value (what json_format gives for the rarer well-known types)."""
        if isinstance(value, dict):
            self.parts.append("{")
            self.indent += 1
            for i, (key, item) in enumerate(value.items()):
                if i:
                    self.parts.append(",")
                self.newline()
                self.parts.append(_quote(str(key)) + ": ")
                self.plain(item)
            self.indent -= 1
            if value:
                self.newline()
            self.parts.append("}")
        elif isinstance(value, list):
            self.parts.append("[")
            self.indent += 1
            for i, item in enumerate(value):
                if i:
                    self.parts.append(",")
                self.newline()
                self.plain(item)
            self.indent -= 1
            if value:
                self.newline()
            self.parts.append("]")
        elif isinstance(value, str):
            self.parts.append(_quote(value))
        elif isinstance(value, bool):
            self.parts.append("true" if value else "false")
        elif value is None:
            self.parts.append("null")
        elif isinstance(value, float):
            self.parts.append(_float_text(value, single=False))
        else:
            self.parts.append(str(value))


def _is_map(field: Any) -> bool:
    message_type = field.message_type
    return message_type is not None and bool(message_type.GetOptions().map_entry)
