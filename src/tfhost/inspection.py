"""What an artifact is and what it needs, for every format tfhost reads: ``tfhost inspect``.

``saved_model_cli show --all`` for SavedModels, extended to Keras files and frozen graphs:
format, version folders, signatures, stored variables (count and bytes), the TensorFlow
or Keras version that wrote it where the artifact records one, and the custom objects or
ops it needs. SavedModels and frozen graphs are read from their protobufs without running
them; a Keras file is loaded (its signature only exists once it is traced).

Named ``inspection`` so that it never shadows the standard library's ``inspect``.
Imports TensorFlow when called, not when imported.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfhost.errors import TfhostError
from tfhost.formats.detect import parse_graph_def, read_saved_model, serving_meta_graph
from tfhost.specs import Artifact, Format, LoadOptions, SignatureSpec

# Nodes that hold a graph-mode model's variables (TF1 resource and ref variables).
_VARIABLE_OPS = frozenset({"VarHandleOp", "VariableV2", "Variable", "VarHandleOpV2"})
_CHECKPOINT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
# Keras class names that a tf.keras 2 file records but that are not objects a user defines.
_KERAS_INTERNALS = frozenset(
    {
        "Functional",
        "Sequential",
        "Model",
        "InputLayer",
        "InputSpec",
        "TensorShape",
        "TypeSpec",
        "TensorSpec",
        "DTypePolicy",
        "Policy",
        "__tuple__",
        "__keras_tensor__",
        "__tensor__",
        "__numpy__",
        "__typespec__",
        "__lambda__",
        "__bytes__",
        "__ellipsis__",
        "__slice__",
    }
)


@dataclass(frozen=True)
class Weights:
    """Variables stored with the artifact. ``source`` says where they were counted."""

    count: int
    bytes: int
    source: str  # "checkpoint", "keras weights", or "graph constants" for a frozen graph

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "bytes": self.bytes, "source": self.source}


@dataclass(frozen=True)
class Needs:
    """What must be available before the artifact loads."""

    custom_objects: tuple[str, ...] = ()  # Keras classes/functions not built into Keras
    ops: tuple[str, ...] = ()  # op types not registered in this TensorFlow build

    def to_dict(self) -> dict[str, list[str]]:
        return {"custom_objects": list(self.custom_objects), "ops": list(self.ops)}


@dataclass(frozen=True)
class GraphNames:
    """The node names of a graph-mode artifact: what collides in a shared graph."""

    variables: tuple[str, ...]
    ops: tuple[str, ...]  # every other node
    # The ops a caller feeds and fetches by name (signature tensors, placeholders, outputs).
    signature_ops: tuple[str, ...] = ()


@dataclass(frozen=True)
class Inspection:
    artifact: Artifact
    signatures: Mapping[str, SignatureSpec]
    weights: Weights
    written_by: Mapping[str, str]
    needs: Needs
    tags: tuple[tuple[str, ...], ...] = ()
    # Why the signatures are missing (e.g. a custom object not given); None when read.
    signatures_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.artifact.path),
            "format": self.artifact.format.value,
            "version": self.artifact.version,
            "versions": list(self.artifact.versions),
            "tags": [list(t) for t in self.tags],
            "signatures": {k: v.to_dict() for k, v in self.signatures.items()},
            "signatures_error": self.signatures_error,
            "variables": self.weights.to_dict(),
            "written_by": dict(self.written_by),
            "needs": self.needs.to_dict(),
        }


_STR: dict[str, Any] = {"type": "string"}
_STR_LIST: dict[str, Any] = {"type": "array", "items": _STR}
_TENSOR: dict[str, Any] = {
    "type": "object",
    "required": ["name", "dtype", "shape"],
    "properties": {
        "name": _STR,
        "dtype": _STR,
        "shape": {"type": ["array", "null"], "items": {"type": ["integer", "null"]}},
    },
    "additionalProperties": False,
}
# The documented shape of ``tfhost inspect --json`` (JSON Schema subset).
INSPECTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "path",
        "format",
        "version",
        "versions",
        "tags",
        "signatures",
        "signatures_error",
        "variables",
        "written_by",
        "needs",
    ],
    "properties": {
        "path": _STR,
        "format": {"type": "string", "enum": [f.value for f in Format]},
        "version": {"type": ["integer", "null"]},
        "versions": {"type": "array", "items": {"type": "integer"}},
        "tags": {"type": "array", "items": _STR_LIST},
        "signatures": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["inputs", "outputs"],
                "properties": {
                    "inputs": {"type": "object", "additionalProperties": _TENSOR},
                    "outputs": {"type": "object", "additionalProperties": _TENSOR},
                },
                "additionalProperties": False,
            },
        },
        "signatures_error": {"type": ["string", "null"]},
        "variables": {
            "type": "object",
            "required": ["count", "bytes", "source"],
            "properties": {
                "count": {"type": "integer"},
                "bytes": {"type": "integer"},
                "source": {
                    "type": "string",
                    "enum": ["checkpoint", "keras weights", "graph constants"],
                },
            },
            "additionalProperties": False,
        },
        "written_by": {"type": "object", "additionalProperties": _STR},
        "needs": {
            "type": "object",
            "required": ["custom_objects", "ops"],
            "properties": {"custom_objects": _STR_LIST, "ops": _STR_LIST},
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}


# -- the entry point --------------------------------------------------------------------


def inspect_artifact(
    path: str | Path,
    version: int | None = None,
    *,
    custom_objects: Mapping[str, Any] | None = None,
    preload: Iterable[str] = (),
) -> Inspection:
    """Everything tfhost can tell about the artifact at ``path`` without serving it."""
    from tfhost import formats

    artifact = formats.detect(path, version)
    preload = tuple(preload)
    if preload:
        from tfhost.formats.common import preload as run_preload

        run_preload(str(artifact.path), preload)
    signatures: Mapping[str, SignatureSpec] = {}
    error = None
    if artifact.format in _SAVED_MODEL_FORMATS:
        signatures = saved_model_signatures(artifact.path)
    else:
        # Frozen graphs and Keras files have no stored signature: the loader derives it.
        try:
            servable = formats.load(
                artifact.path.name, artifact, LoadOptions(dict(custom_objects or {}), preload)
            )
        except TfhostError as exc:
            error = exc.message
        else:
            signatures = dict(servable.signatures)
            servable.close()
    return Inspection(
        artifact=artifact,
        signatures=signatures,
        weights=weights(artifact),
        written_by=written_by(artifact),
        needs=needs(artifact),
        tags=saved_model_tags(artifact.path) if artifact.format in _SAVED_MODEL_FORMATS else (),
        signatures_error=error,
    )


_SAVED_MODEL_FORMATS = (
    Format.TF1_SAVED_MODEL,
    Format.TF2_SAVED_MODEL,
    Format.KERAS_SAVED_MODEL,
    Format.KERAS_EXPORT,
)


# -- signatures -------------------------------------------------------------------------


def _serving_meta_graph(directory: Path) -> Any:
    """The MetaGraph a server loads, chosen as the loader chooses it."""
    return serving_meta_graph(directory.name, directory)


def saved_model_tags(directory: Path) -> tuple[tuple[str, ...], ...]:
    proto = read_saved_model(directory)
    return tuple(tuple(sorted(m.meta_info_def.tags)) for m in proto.meta_graphs)


def saved_model_signatures(directory: Path) -> dict[str, SignatureSpec]:
    """The SignatureDefs a server exposes, as tfhost names them (internal ones left out)."""
    from tfhost.formats.common import spec_from_tensor_info

    meta = _serving_meta_graph(directory)
    signatures = {}
    for key in sorted(meta.signature_def):
        sig = meta.signature_def[key]
        if key.startswith("__"):
            continue
        if any(
            info.WhichOneof("encoding") != "name"
            for info in [*sig.inputs.values(), *sig.outputs.values()]
        ):
            continue
        signatures[key] = SignatureSpec(
            inputs={k: spec_from_tensor_info(k, sig.inputs[k]) for k in sorted(sig.inputs)},
            outputs={k: spec_from_tensor_info(k, sig.outputs[k]) for k in sorted(sig.outputs)},
        )
    return signatures


# -- graph names, ops -------------------------------------------------------------------


def _graph_def(artifact: Artifact) -> Any | None:
    if artifact.format is Format.FROZEN_GRAPH:
        return parse_graph_def(artifact.path)
    if artifact.format in _SAVED_MODEL_FORMATS:
        return _serving_meta_graph(artifact.path).graph_def
    return None


def graph_names(artifact: Artifact) -> GraphNames:
    """Variable and op names of a graph-mode artifact's serving graph (empty otherwise)."""
    if not artifact.format.graph_mode:
        return GraphNames((), ())
    graph = _graph_def(artifact)
    assert graph is not None
    variables = tuple(sorted(n.name for n in graph.node if n.op in _VARIABLE_OPS))
    ops = tuple(sorted(n.name for n in graph.node if n.op not in _VARIABLE_OPS))
    if artifact.format is Format.TF1_SAVED_MODEL:
        meta = _serving_meta_graph(artifact.path)
        tensors = {
            info.name
            for sig in meta.signature_def.values()
            for info in [*sig.inputs.values(), *sig.outputs.values()]
            if info.name
        }
        signature_ops = {t.split(":")[0] for t in tensors}
    else:
        signature_ops = _frozen_signature_ops(graph)
    return GraphNames(variables, ops, tuple(sorted(signature_ops)))


def _frozen_signature_ops(graph_def: Any) -> set[str]:
    """The ops the frozen-graph loader feeds and fetches, found by the loader's own rules.

    Empty when TensorFlow cannot import the graph (an op it does not register): such a
    graph has no signature to feed or fetch either.
    """
    import tensorflow as tf

    from tfhost.formats.graph import frozen_graph_inputs, frozen_graph_outputs

    graph = tf.Graph()
    try:
        with graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
    except Exception:
        return set()
    tensors = [*frozen_graph_inputs(graph), *frozen_graph_outputs(graph)]
    return {t.op.name for t in tensors}


def _op_types(graph: Any) -> set[str]:
    functions = {f.signature.name for f in graph.library.function}
    types = {n.op for n in graph.node}
    for function in graph.library.function:
        types.update(n.op for n in function.node_def)
    # A call to a library function names the function as its op type.
    return types - functions


def missing_ops(artifact: Artifact) -> tuple[str, ...]:
    """Op types the artifact's graph uses that this TensorFlow build does not register."""
    graph = _graph_def(artifact)
    if graph is None:
        return ()
    from tensorflow.python.framework import op_def_registry

    return tuple(sorted(t for t in _op_types(graph) if op_def_registry.get(t) is None))


# -- Keras custom objects ---------------------------------------------------------------


def _walk(config: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(config, Mapping):
        yield config
        for value in config.values():
            yield from _walk(value)
    elif isinstance(config, list):
        for value in config:
            yield from _walk(value)


def keras3_custom_objects(config: Any) -> tuple[str, ...]:
    """Objects in a Keras 3 config that Keras does not define (their module is not keras)."""
    found = set()
    for node in _walk(config):
        module, class_name = node.get("module"), node.get("class_name")
        if (
            isinstance(class_name, str)
            and isinstance(module, str)
            and not (module == "keras" or module.startswith(("keras.", "builtins")))
        ):
            found.add(str(node.get("registered_name") or class_name))
    return tuple(sorted(found))


def _known_to_keras(class_name: str) -> bool:
    import keras

    modules = [
        keras.layers,
        keras.initializers,
        keras.regularizers,
        keras.constraints,
        keras.activations,
        keras.losses,
        keras.metrics,
        keras.optimizers,
        keras.models,
    ]
    if any(hasattr(module, class_name) for module in modules):
        return True
    try:  # only now: importing tf_keras costs seconds
        import tf_keras
    except ImportError:
        return False
    legacy = [
        tf_keras.layers,
        tf_keras.initializers,
        tf_keras.regularizers,
        tf_keras.constraints,
        tf_keras.activations,
        tf_keras.models,
    ]
    return any(hasattr(module, class_name) for module in legacy)


def tf_keras_custom_objects(class_names: Iterable[str]) -> tuple[str, ...]:
    """Class names from a tf.keras 2 file that neither Keras 3 nor tf_keras defines."""
    return tuple(
        sorted(
            {
                name
                for name in class_names
                if name not in _KERAS_INTERNALS and (">" in name or not _known_to_keras(name))
            }
        )
    )


def _class_names(config: Any) -> list[str]:
    return [str(n["class_name"]) for n in _walk(config) if isinstance(n.get("class_name"), str)]


def _keras_zip(path: Path) -> tuple[dict[str, Any], dict[str, Any], bytes | None]:
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        config = json.loads(archive.read("config.json"))
        metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
        weights = archive.read("model.weights.h5") if "model.weights.h5" in names else None
    return config, metadata, weights


def _keras_metadata_text(directory: Path) -> str:
    # keras_metadata.pb is a proto of JSON strings; the JSON is all that is needed.
    return (directory / "keras_metadata.pb").read_bytes().decode("utf-8", "replace")


def needs(artifact: Artifact) -> Needs:
    fmt = artifact.format
    ops = missing_ops(artifact)
    if fmt is Format.KERAS:
        config, _, _ = _keras_zip(artifact.path)
        return Needs(keras3_custom_objects(config), ops)
    if fmt is Format.KERAS_H5:
        import h5py

        with h5py.File(artifact.path, "r") as f:
            raw = f.attrs["model_config"]
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return Needs(tf_keras_custom_objects(_class_names(json.loads(text))), ops)
    if fmt is Format.KERAS_SAVED_MODEL:
        names = re.findall(r'"class_name": "([^"]+)"', _keras_metadata_text(artifact.path))
        return Needs(tf_keras_custom_objects(names), ops)
    return Needs((), ops)


# -- weights, writer --------------------------------------------------------------------


def _h5_weights(file: Any, root: str | None) -> tuple[int, int]:
    import h5py

    count = size = 0
    group = file if root is None else file[root]

    def visit(_: str, item: Any) -> None:
        nonlocal count, size
        if isinstance(item, h5py.Dataset):
            count += 1
            size += int(item.size) * item.dtype.itemsize

    group.visititems(visit)
    return count, size


def weights(artifact: Artifact) -> Weights:
    fmt, path = artifact.format, artifact.path
    if fmt is Format.KERAS:
        import h5py

        _, _, data = _keras_zip(path)
        if data is None:
            return Weights(0, 0, "keras weights")
        with h5py.File(io.BytesIO(data), "r") as f:
            return Weights(*_h5_weights(f, None), "keras weights")
    if fmt is Format.KERAS_H5:
        import h5py

        with h5py.File(path, "r") as f:
            root = "model_weights" if "model_weights" in f else None
            return Weights(*_h5_weights(f, root), "keras weights")
    if fmt is Format.FROZEN_GRAPH:
        import numpy as np
        import tensorflow as tf

        graph = parse_graph_def(path)
        consts = [n.attr["value"].tensor for n in graph.node if n.op == "Const"]
        size = sum(tf.make_ndarray(t).nbytes for t in consts)
        return Weights(len(consts), int(np.int64(size)), "graph constants")
    index = path / "variables" / "variables.index"
    if not index.is_file():
        return Weights(0, 0, "checkpoint")
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(path / "variables" / "variables"))
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    count = size = 0
    for key, shape in shapes.items():
        if key == _CHECKPOINT_GRAPH_KEY:
            continue
        count += 1
        elements = 1
        for dim in shape:
            elements *= int(dim)
        size += elements * int(dtypes[key].size)
    return Weights(count, size, "checkpoint")


def written_by(artifact: Artifact) -> dict[str, str]:
    """Versions the artifact records about what wrote it (empty where none is recorded)."""
    fmt, path = artifact.format, artifact.path
    found: dict[str, str] = {}
    if fmt is Format.KERAS:
        _, metadata, _ = _keras_zip(path)
        for key in ("keras_version", "date_saved"):
            if metadata.get(key):
                found[key.replace("_version", "")] = str(metadata[key])
    elif fmt is Format.KERAS_H5:
        import h5py

        with h5py.File(path, "r") as f:
            for key in ("keras_version", "backend"):
                if key in f.attrs:
                    value = f.attrs[key]
                    text = value.decode() if isinstance(value, bytes) else str(value)
                    found[key.replace("_version", "")] = text
    elif fmt is Format.FROZEN_GRAPH:
        graph = parse_graph_def(path)
        found["graph_def_producer"] = str(graph.versions.producer)
    else:
        info = _serving_meta_graph(path).meta_info_def
        if info.tensorflow_version:
            found["tensorflow"] = info.tensorflow_version
        if info.tensorflow_git_version:
            found["tensorflow_git"] = info.tensorflow_git_version
        if fmt is Format.KERAS_SAVED_MODEL:
            match = re.search(r'"keras_version": "([^"]+)"', _keras_metadata_text(path))
            if match:
                found["keras"] = match.group(1)
    return found
