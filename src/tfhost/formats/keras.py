"""Keras files: Keras 3 ``.keras`` and legacy HDF5 ``.h5``.

Keras 3 reads ``.keras`` and most ``.h5`` files; an ``.h5`` it cannot read goes to
``tf_keras`` (the ``tfhost[legacy]`` extra). Either way the model is traced once into
a concrete function keyed by the model's own input and output names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tensorflow as tf

from tfhost.errors import FormatError, LoadError
from tfhost.formats.common import first_line, function_writes_state, loading
from tfhost.formats.eager import Entry, FunctionServable, _spec
from tfhost.specs import DEFAULT_SIGNATURE, Format, SignatureSpec


def _layer_name(tensor: Any, fallback: str) -> str:
    history = getattr(tensor, "_keras_history", None)
    operation = getattr(history, "operation", None) or getattr(history, "layer", None)
    name = getattr(operation, "name", None)
    return str(name) if name else fallback


def _input_names(model: Any) -> list[str]:
    names = getattr(model, "input_names", None)  # tf_keras
    if isinstance(names, list) and len(names) == len(model.inputs):
        return [str(n) for n in names]
    return [_layer_name(t, f"input_{i}") for i, t in enumerate(model.inputs)]


def _output_names(model: Any, count: int) -> list[str]:
    names = getattr(model, "output_names", None)
    if isinstance(names, list) and len(names) == count:
        return [str(n) for n in names]
    outputs = getattr(model, "outputs", None) or []
    if len(outputs) == count:
        return [_layer_name(t, f"output_{i}") for i, t in enumerate(outputs)]
    return [f"output_{i}" for i in range(count)]


def keras_servable(
    name: str, fmt: Format, model: Any, *, jit_compile: bool = False
) -> FunctionServable:
    """Trace ``model`` once into a concrete function: the ``serving_default`` signature;
    ``jit_compile``: compiled by XLA."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise FormatError(
            f"model {name!r}: the Keras model has no defined inputs (a subclassed model that "
            f"was never built on an Input); save a functional model, or model.export() a "
            f"SavedModel, so it can be served"
        )
    in_names = _input_names(model)
    specs = [tf.TensorSpec(t.shape, t.dtype, name=n) for t, n in zip(inputs, in_names, strict=True)]
    single = len(specs) == 1
    out_names: list[str] = []

    def serve(*args: tf.Tensor) -> dict[str, tf.Tensor]:
        x = args[0] if single else dict(zip(in_names, args, strict=True))
        result = model(x, training=False)
        if isinstance(result, Mapping):
            keys = list(result)
            flat = [result[k] for k in keys]
        else:
            flat = list(result) if isinstance(result, (list, tuple)) else [result]
            keys = _output_names(model, len(flat))
        out_names[:] = keys
        return dict(zip(keys, flat, strict=True))

    function = tf.function(serve, input_signature=specs, autograph=False).get_concrete_function()
    outputs = function.structured_outputs
    spec = SignatureSpec(
        inputs={n: _spec(n, s) for n, s in zip(in_names, specs, strict=True)},
        outputs={k: _spec(k, outputs[k]) for k in out_names},
        stateful=function_writes_state(function),
    )

    entry = Entry(spec, function, positional=tuple(in_names))
    # The servable keeps the model and the function alive; nothing else refers to them.
    return FunctionServable(
        name, fmt, {DEFAULT_SIGNATURE: entry}, (model, function), jit_compile=jit_compile
    )


def _keras3() -> Any:
    import keras

    if keras.backend.backend() != "tensorflow":
        raise LoadError(
            f"Keras is set to the {keras.backend.backend()!r} backend; tfhost serves Keras "
            f"models on TensorFlow. Set KERAS_BACKEND=tensorflow"
        )
    return keras


def load_keras(
    name: str,
    path: Path,
    fmt: Format,
    custom_objects: Mapping[str, Any],
    options: Mapping[str, Any],
    *,
    jit_compile: bool = False,
) -> FunctionServable:
    safe_mode = bool(options.get("safe_mode", True))
    with loading(name, path):
        if fmt is Format.KERAS:
            model = _keras3().saving.load_model(
                str(path),
                custom_objects=dict(custom_objects),
                compile=False,
                safe_mode=safe_mode,
            )
        else:
            model = _load_h5(name, path, custom_objects, safe_mode)
        return keras_servable(name, fmt, model, jit_compile=jit_compile)


def _load_h5(name: str, path: Path, custom_objects: Mapping[str, Any], safe_mode: bool) -> Any:
    try:
        return _keras3().saving.load_model(
            str(path), custom_objects=dict(custom_objects), compile=False, safe_mode=safe_mode
        )
    except Exception as keras3_error:
        reason = first_line(str(keras3_error))[:300]
        if "safe_mode" in str(keras3_error):
            # Never route around Keras' refusal to run code stored in the file.
            raise LoadError(
                f"model {name!r}: {path} stores Python code (e.g. a Lambda) that Keras refuses "
                f"to run by default ({reason}). If you trust the file, load it with "
                f"Host.load(..., safe_mode=False)"
            ) from keras3_error
        try:
            import tf_keras
        except ImportError:
            raise LoadError(
                f"model {name!r}: Keras 3 cannot read {path} ({type(keras3_error).__name__}: "
                f"{reason}). If tf.keras 2 wrote it, install tf_keras: pip install "
                f"'tfhost[legacy]'; if it names your own class, pass custom_objects"
            ) from keras3_error
        return tf_keras.models.load_model(
            str(path), custom_objects=dict(custom_objects), compile=False
        )
