"""The vocabulary shared by every layer: formats, tensor specs, signatures, artifacts.

Pure data, no TensorFlow: frontends and policies import this without paying for TF.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# The signature a request names when it names none (TensorFlow Serving's default key).
DEFAULT_SIGNATURE = "serving_default"


class Format(enum.Enum):
    """The artifact families tfhost reads. Each has exactly one loader."""

    TF2_SAVED_MODEL = "tf2_saved_model"
    TF1_SAVED_MODEL = "tf1_saved_model"
    KERAS = "keras"  # Keras 3 ``.keras`` zip
    KERAS_H5 = "keras_h5"  # legacy Keras HDF5 ``.h5`` / ``.hdf5``
    KERAS_SAVED_MODEL = "keras_saved_model"  # tf.keras 2 ``save_format="tf"`` directory
    KERAS_EXPORT = "keras_export"  # Keras 3 ``model.export()`` directory
    FROZEN_GRAPH = "frozen_graph"  # a GraphDef ``.pb`` file with constants for weights

    @property
    def graph_mode(self) -> bool:
        """Graph-mode formats run in their own ``tf.Graph`` and ``Session``."""
        return self in (Format.TF1_SAVED_MODEL, Format.FROZEN_GRAPH)


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a signature.

    ``dtype`` is TensorFlow's dtype name (``float32``, ``int64``, ``string``...).
    ``shape`` is ``None`` when even the rank is unknown; a ``None`` dimension is unknown.
    """

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": None if self.shape is None else list(self.shape),
        }


@dataclass(frozen=True)
class SignatureSpec:
    """A callable entry point of a servable: named inputs to named outputs."""

    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    # It writes a variable (TF Serving's saved_model_counter): each call must see the
    # state the one before left, so a batcher never merges its requests.
    stateful: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": {k: v.to_dict() for k, v in self.inputs.items()},
            "outputs": {k: v.to_dict() for k, v in self.outputs.items()},
        }


@dataclass(frozen=True)
class Artifact:
    """A detected artifact: where it is, which format, which version folder it came from."""

    path: Path
    format: Format
    version: int | None = None
    versions: tuple[int, ...] = ()


# How a version is warmed up before it serves: its TF Serving warm-up records (True),
# none (False), or one call on inputs made from its signature ("synthetic").
Warmup = bool | Literal["synthetic"]


@dataclass(frozen=True)
class LoadOptions:
    """How to open an artifact, beyond its format.

    ``custom_objects`` are Keras classes/functions by name; ``preload`` names modules to
    import or op libraries (``.so``) to load first; ``format_options`` are per-format
    (``tags`` for TF1 SavedModels, ``inputs``/``outputs`` for frozen graphs).
    """

    custom_objects: Mapping[str, Any] = field(default_factory=dict)
    preload: tuple[str, ...] = ()
    format_options: Mapping[str, Any] = field(default_factory=dict)
    # Replay TF Serving's assets.extra/tf_serving_warmup_requests, when there, before
    # serving; "synthetic": one call of serving_default on inputs made from its signature.
    warmup: Warmup = True
    # Compile every signature with XLA (formats/jit.py); TF2 functions only.
    jit_compile: bool = False
