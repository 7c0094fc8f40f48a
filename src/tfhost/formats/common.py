"""What every loader shares: TensorFlow import, dtype names, preload, error translation."""

from __future__ import annotations

import importlib
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tensorflow as tf

from tfhost.errors import (
    FormatError,
    InputError,
    LoadError,
    MissingCustomObject,
    MissingOp,
    ModelError,
    TfhostError,
)
from tfhost.specs import TensorSpec

# TensorFlow's and Keras' loaders keep process-global state (Keras name uniquing,
# tf_keras' global session, the op registry) that is not safe to mutate from two
# threads at once. Loads serialize on this lock; running models never takes it.
LOAD_LOCK = threading.RLock()


def dtype_name(dtype: Any) -> str:
    return str(tf.as_dtype(dtype).name)


def shape_tuple(shape: Any) -> tuple[int | None, ...] | None:
    shape = tf.TensorShape(shape)
    if shape.rank is None:
        return None
    return tuple(shape.as_list())


def spec_from_tensor_info(name: str, info: Any) -> TensorSpec:
    """A TensorSpec from a SignatureDef's TensorInfo proto."""
    if info.tensor_shape.unknown_rank:
        shape: tuple[int | None, ...] | None = None
    else:
        shape = tuple(None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim)
    return TensorSpec(name=name, dtype=dtype_name(info.dtype), shape=shape)


def preload(model: str, items: tuple[str, ...]) -> None:
    """Import modules and load op libraries that the model's graph needs."""
    for item in items:
        try:
            if item.endswith(".so") or os.sep in item:
                tf.load_op_library(str(Path(item).resolve()))
            else:
                importlib.import_module(item)
        except Exception as exc:
            raise LoadError(
                f"model {model!r}: preload {item!r} failed: {type(exc).__name__}: {exc}"
            ) from None


# What TensorFlow and Keras say when a load needs something that is not there. These read
# their messages, never tfhost's: tfhost's own errors carry what is missing as a field.
_MISSING_OP = re.compile(r"Op type not registered '([^']+)'")
_MISSING_OBJECT = re.compile(
    r"(?:Could not locate (?:class|function) |Unknown (?:layer|object|activation|loss|"
    r"metric|optimizer|initializer|regularizer|constraint)(?: type)?:?\s*)'?([\w.>-]+)'?"
)


def missing_op(text: str) -> str | None:
    """The op type a TensorFlow error says is not registered, if it says so."""
    match = _MISSING_OP.search(text)
    return match.group(1) if match else None


def missing_object(text: str) -> str | None:
    """The custom object a Keras error says it cannot find, if it says so."""
    match = _MISSING_OBJECT.search(text)
    return match.group(1) if match else None


def first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else ""


def translate_load_error(model: str, path: Path, exc: BaseException) -> Exception:
    """Turn a TensorFlow/Keras load failure into a tfhost error that says what to do."""
    text = str(exc)
    if op := missing_op(text):
        return MissingOp(
            f"model {model!r} at {path}: the graph uses op {op!r}, which is not "
            f"registered in this process. Load the library that defines it first: "
            f"Host.load(..., preload=['path/to/ops.so' or 'python.module'])",
            op,
        )
    if name := missing_object(text):
        return MissingCustomObject(
            f"model {model!r} at {path}: it uses the custom object {name!r}, which is not "
            f"available. Pass it when loading: Host.load(..., custom_objects={{{name!r}: "
            f"{name.split('>')[-1]}}}), or preload the module that registers it",
            name,
        )
    if isinstance(exc, (LoadError, FormatError)):
        return exc
    first = first_line(text)
    return FormatError(
        f"model {model!r}: could not load {path}: {type(exc).__name__}: {first[:500]}"
    )


def op_error_summary(message: str) -> str:
    """The line of a TensorFlow error that says what went wrong.

    An eager function's error starts with "Graph execution error:" and where the failing
    node was defined (a Python stack, or "<stack traces unavailable>" for a loaded
    SavedModel); the cause is the last unindented line, before the node annotation.
    """
    lines = [
        line.rstrip()
        for line in message.splitlines()
        if line.strip()
        and not line[0].isspace()
        and line.strip() not in ("Graph execution error:", "<stack traces unavailable>")
        and not line.startswith("Detected at node")
    ]
    cause = lines[-1] if lines else message.strip()
    return _NODE_ANNOTATION.sub("", cause).strip()[:500]


_NODE_ANNOTATION = re.compile(r"\s*\[\[\{\{node [^}]*\}\}\]\].*$|\s*\[Op:[^\]]*\]\s*$")


def run_error(model: str, signature: str, exc: tf.errors.OpError) -> TfhostError:
    """A TensorFlow failure while running, as the tfhost error a caller can act on."""
    summary = op_error_summary(exc.message)
    if isinstance(exc, tf.errors.InvalidArgumentError):
        return InputError(
            f"model {model!r} signature {signature!r}: TensorFlow refused the inputs: {summary}"
        )
    return ModelError(
        f"model {model!r} signature {signature!r} failed: {summary}", type(exc).__name__
    )


@contextmanager
def loading(model: str, path: Path) -> Iterator[None]:
    """Serialize a load and translate whatever TensorFlow raises."""
    with LOAD_LOCK:
        try:
            yield
        except (LoadError, FormatError):
            raise
        except Exception as exc:
            raise translate_load_error(model, path, exc) from exc


# Op types that write a variable or a table. Reading one (``ReadVariableOp``, ``VarHandleOp``)
# is not a write, and neither are the ``Assign`` ops a TF1 Saver adds: they are not reachable
# from any signature's outputs.
_WRITE_PREFIXES = (
    "Assign",
    "ResourceApply",
    "ResourceSparseApply",
    "ResourceScatter",
    "Scatter",
    "LookupTableInsert",
    "LookupTableRemove",
    "LookupTableImport",
)


def _writes(op_type: str) -> bool:
    return op_type.startswith(_WRITE_PREFIXES)


def graph_writes_state(graph: tf.Graph, fetches: Iterator[str] | list[str]) -> bool:
    """Whether computing ``fetches`` (tensor names) runs an op that writes state: a walk
    back from them over data and control inputs, and into the functions called."""
    seen: set[str] = set()
    stack = [graph.get_tensor_by_name(name).op for name in fetches]
    called: set[str] = set()
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if _writes(op.type):
            return True
        for attr in op.node_def.attr.values():
            if attr.HasField("func"):
                called.add(attr.func.name)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    if not called:
        return False
    library = graph.as_graph_def().library
    return _library_writes(library, called)


def function_writes_state(function: Any) -> bool:
    """Whether a concrete function writes state, in its own body or a function it calls."""
    graph_def = function.graph.as_graph_def()
    if any(_writes(node.op) for node in graph_def.node):
        return True
    library = graph_def.library
    return _library_writes(library, {f.signature.name for f in library.function})


def _library_writes(library: Any, names: set[str]) -> bool:
    functions = {f.signature.name: f for f in library.function}
    pending = list(names)
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        for node in functions[name].node_def:
            if _writes(node.op):
                return True
            pending.extend(a.func.name for a in node.attr.values() if a.HasField("func"))
    return False
