"""Eager formats run through cached concrete functions.

TF2 SavedModels, tf.keras 2 SavedModels and Keras 3 ``export()`` directories all load
through ``tf.saved_model.load`` (Keras 3's ``load_model`` refuses the legacy ones);
their signatures are already concrete functions. Keras models (``.keras``, ``.h5``) get
one traced here, so a call never goes through ``model.predict``'s per-call setup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfhost.errors import FormatError
from tfhost.formats.common import dtype_name, loading, run_error, shape_tuple
from tfhost.specs import Format, SignatureSpec, TensorSpec


@dataclass(frozen=True)
class Entry:
    """One signature: its spec and the function that computes it."""

    spec: SignatureSpec
    # Takes checked inputs by name, returns outputs by name (tensors).
    call: Callable[[Mapping[str, np.ndarray]], Mapping[str, Any]]


class FunctionServable:
    """Concrete functions behind signatures. Thread-safe: TF functions run concurrently."""

    static_shapes = True

    def __init__(self, name: str, fmt: Format, entries: Mapping[str, Entry], owner: Any) -> None:
        self.name = name
        self.format = fmt
        self.signatures = {key: entry.spec for key, entry in entries.items()}
        self._calls = {key: entry.call for key, entry in entries.items()}
        # Keeps the loaded object (and so its variables) alive as long as the servable.
        self._owner = owner

    def run(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            outputs = self._calls[signature](inputs)
        except tf.errors.OpError as exc:
            raise run_error(self.name, signature, exc) from None
        return {key: value.numpy() for key, value in outputs.items()}

    def close(self) -> None:
        self._calls = {}
        self._owner = None


def _spec(name: str, tensor_spec: Any) -> TensorSpec:
    return TensorSpec(name, dtype_name(tensor_spec.dtype), shape_tuple(tensor_spec.shape))


def signature_entry(function: Any) -> Entry:
    """An Entry for a SavedModel signature (a concrete function taking keyword tensors)."""
    _, kwargs = function.structured_input_signature
    outputs = function.structured_outputs
    if not isinstance(outputs, Mapping):
        raise FormatError("signature outputs are not a dict of named tensors")
    spec = SignatureSpec(
        inputs={k: _spec(k, v) for k, v in sorted(kwargs.items())},
        outputs={k: _spec(k, v) for k, v in sorted(outputs.items())},
    )

    def call(inputs: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
        return function(**inputs)  # type: ignore[no-any-return]

    return Entry(spec, call)


def load_saved_model(
    name: str, path: Path, fmt: Format, options: Mapping[str, Any]
) -> FunctionServable:
    """TF2 SavedModel, legacy Keras SavedModel or Keras 3 export, by their signatures."""
    tags = options.get("tags")
    with loading(name, path):
        loaded = tf.saved_model.load(str(path), tags=tags)
        entries = {}
        for key, function in loaded.signatures.items():
            try:
                entries[key] = signature_entry(function)
            except FormatError as exc:
                raise FormatError(f"model {name!r} signature {key!r}: {exc}") from None
        if not entries:
            raise FormatError(
                f"model {name!r}: {path} ({fmt.value}) has no signatures; save it with "
                f"tf.saved_model.save(obj, path, signatures=...) so it can be served"
            )
        return FunctionServable(name, fmt, entries, loaded)
