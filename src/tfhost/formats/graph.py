"""Graph-mode formats: TF1 SavedModel and frozen GraphDef.

Each servable owns a private ``tf.Graph`` and ``tf.compat.v1.Session``: two models
with the same variable and tensor names can never see each other's state, which is
what goes wrong when they share the default graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

from tfhost.errors import FormatError
from tfhost.formats.common import (
    graph_writes_state,
    loading,
    run_error,
    shape_tuple,
    spec_from_tensor_info,
)
from tfhost.formats.detect import parse_graph_def, serving_meta_graph
from tfhost.specs import DEFAULT_SIGNATURE, Format, SignatureSpec, TensorSpec


@dataclass(frozen=True)
class _Binding:
    """Which graph tensors a signature feeds and fetches, in call order."""

    input_keys: tuple[str, ...]
    feeds: tuple[str, ...]
    output_keys: tuple[str, ...]
    fetches: tuple[str, ...]


class GraphServable:
    """A graph run through its own session, one C++ callable per signature.

    The callables come from ``Session._make_callable_from_options``: they run the
    step in the C++ runtime without the Python ``Session.run`` static shape check,
    which refuses feeds (a ``[3]`` tensor into a ``[-1, 1]`` input) that the runtime,
    and TensorFlow Serving, compute without complaint. Thread-safe: a session runs
    concurrent steps.
    """

    static_shapes = False

    def __init__(
        self,
        name: str,
        fmt: Format,
        graph: tf.Graph,
        session: tf.compat.v1.Session,
        signatures: Mapping[str, SignatureSpec],
        bindings: Mapping[str, _Binding],
    ) -> None:
        self.name = name
        self.format = fmt
        self.signatures = dict(signatures)
        self._graph = graph
        self._session = session
        self._bindings = dict(bindings)
        self._callables = {}
        for key, binding in self._bindings.items():
            options = config_pb2.CallableOptions(
                feed=list(binding.feeds), fetch=list(binding.fetches)
            )
            self._callables[key] = session._make_callable_from_options(options)

    def run(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        binding = self._bindings[signature]
        try:
            results = self._callables[signature](*(inputs[k] for k in binding.input_keys))
        except tf.errors.OpError as exc:
            raise run_error(self.name, signature, exc) from None
        return {k: np.asarray(v) for k, v in zip(binding.output_keys, results, strict=True)}

    def close(self) -> None:
        self._callables.clear()
        self._session.close()


def _new_session(graph: tf.Graph) -> tf.compat.v1.Session:
    return tf.compat.v1.Session(
        graph=graph, config=tf.compat.v1.ConfigProto(allow_soft_placement=True)
    )


def load_tf1_saved_model(name: str, path: Path, options: Mapping[str, Any]) -> GraphServable:
    tags = list(serving_meta_graph(name, path, options.get("tags")).meta_info_def.tags)
    with loading(name, path):
        graph = tf.Graph()
        session = _new_session(graph)
        try:
            with graph.as_default():
                meta = tf.compat.v1.saved_model.loader.load(session, tags, str(path))
            signatures: dict[str, SignatureSpec] = {}
            bindings: dict[str, _Binding] = {}
            for key, sig in meta.signature_def.items():
                if key.startswith("__"):
                    continue  # internal entries such as __saved_model_init_op
                if any(
                    info.WhichOneof("encoding") != "name"
                    for info in [*sig.inputs.values(), *sig.outputs.values()]
                ):
                    continue  # sparse/composite tensors are not served
                in_keys = tuple(sorted(sig.inputs))
                out_keys = tuple(sorted(sig.outputs))
                signatures[key] = SignatureSpec(
                    inputs={k: spec_from_tensor_info(k, sig.inputs[k]) for k in in_keys},
                    outputs={k: spec_from_tensor_info(k, sig.outputs[k]) for k in out_keys},
                    stateful=graph_writes_state(graph, [sig.outputs[k].name for k in out_keys]),
                )
                bindings[key] = _Binding(
                    in_keys,
                    tuple(sig.inputs[k].name for k in in_keys),
                    out_keys,
                    tuple(sig.outputs[k].name for k in out_keys),
                )
            if not signatures:
                raise FormatError(
                    f"model {name!r}: {path} (TF1 SavedModel, tags {tags}) has no servable "
                    f"signature_def; expected at least one, e.g. {DEFAULT_SIGNATURE!r}"
                )
            return GraphServable(name, Format.TF1_SAVED_MODEL, graph, session, signatures, bindings)
        except BaseException:
            session.close()
            raise


# Ops whose outputs are never a frozen graph's results: inputs, constants, no-ops, checks.
_NOT_OUTPUTS = frozenset({"NoOp", "Placeholder", "PlaceholderWithDefault", "Const", "Assert"})


def frozen_graph_inputs(graph: tf.Graph) -> list[tf.Tensor]:
    """What a frozen graph's signature feeds when the caller names no ``inputs``: every
    ``Placeholder``."""
    return [op.outputs[0] for op in graph.get_operations() if op.type == "Placeholder"]


def frozen_graph_outputs(graph: tf.Graph) -> list[tf.Tensor]:
    """What a frozen graph's signature returns when the caller names no ``outputs``: every
    tensor that no op reads as data, except those of ``_NOT_OUTPUTS`` ops. The one rule for
    the loader, ``tfhost inspect`` and doctor.

    A control input (``^y`` in a NodeDef) is not a reader: it orders ``y`` before its
    consumer and never sees ``y``'s value, as ``Operation.inputs`` (data) and
    ``Operation.control_inputs`` tell apart, and as ``Tensor.consumers()`` counts. So
    ``y`` kept alive only by ``tf.group(y, z)`` or ``tf.control_dependencies([y])`` is
    still a result. TensorFlow's ``summarize_graph`` tool lists "possible outputs" the
    other way (its ``MapNodesToOutputs`` strips the ``^``), which finds no output at all
    in a graph that ends in such a group.
    """
    ops = graph.get_operations()
    read = {t.name for op in ops for t in op.inputs}
    return [
        t for op in ops if op.type not in _NOT_OUTPUTS for t in op.outputs if t.name not in read
    ]


def _tensor_key(tensor_name: str) -> str:
    return tensor_name[:-2] if tensor_name.endswith(":0") else tensor_name


def _resolve(graph: tf.Graph, name: str, model: str, role: str) -> tf.Tensor:
    full = name if ":" in name else f"{name}:0"
    try:
        return graph.get_tensor_by_name(full)
    except (KeyError, ValueError):
        raise FormatError(
            f"model {model!r}: frozen graph has no tensor {name!r} to use as {role}"
        ) from None


def load_frozen_graph(name: str, path: Path, options: Mapping[str, Any]) -> GraphServable:
    graph_def = parse_graph_def(path)
    with loading(name, path):
        graph = tf.Graph()
        with graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
        if options.get("inputs"):
            inputs = [_resolve(graph, n, name, "input") for n in options["inputs"]]
        else:
            inputs = frozen_graph_inputs(graph)
        if options.get("outputs"):
            outputs = [_resolve(graph, n, name, "output") for n in options["outputs"]]
        else:
            outputs = frozen_graph_outputs(graph)
        if not outputs:
            raise FormatError(f"model {name!r}: frozen graph {path} has no output tensor")

        def specs(tensors: list[tf.Tensor]) -> dict[str, TensorSpec]:
            return {
                _tensor_key(t.name): TensorSpec(
                    _tensor_key(t.name), t.dtype.name, shape_tuple(t.shape)
                )
                for t in tensors
            }

        signature = SignatureSpec(
            inputs=specs(inputs),
            outputs=specs(outputs),
            stateful=graph_writes_state(graph, [t.name for t in outputs]),
        )
        binding = _Binding(
            tuple(signature.inputs),
            tuple(t.name for t in inputs),
            tuple(signature.outputs),
            tuple(t.name for t in outputs),
        )
        session = _new_session(graph)
        try:
            return GraphServable(
                name,
                Format.FROZEN_GRAPH,
                graph,
                session,
                {DEFAULT_SIGNATURE: signature},
                {DEFAULT_SIGNATURE: binding},
            )
        except BaseException:
            session.close()
            raise
