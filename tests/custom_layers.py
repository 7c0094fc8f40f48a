"""Custom Keras layers for the doctor tests, importable by doctor's child processes.

``tests.custom_layers`` is a module the children can import (``--preload`` or
``--custom-objects tests.custom_layers:Scale``), which is what a user's own layer module
is. ``Bomb`` stands for a model that takes its process down: it behaves when built in
Python and crashes or hangs only when a saved model is deserialized.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import keras


@keras.saving.register_keras_serializable(package="tfhost_tests")
class Scale(keras.layers.Layer):
    """Multiplies its input by a constant stored in the config."""

    def __init__(self, factor: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x: Any) -> Any:
        return x * self.factor

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}


_loaded_bombs = 0  # Bomb layers deserialized in this process


@keras.saving.register_keras_serializable(package="tfhost_tests")
class Bomb(keras.layers.Layer):
    """Identity when built; ``mode`` happens when loaded from a file.

    "abort" kills the process with SIGABRT; "hang" sleeps for an hour; "second" aborts
    only when another Bomb was loaded in this process before: the model loads alone but
    takes a shared process down.
    """

    def __init__(self, mode: str = "abort", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, x: Any) -> Any:
        return x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Bomb:
        global _loaded_bombs
        _loaded_bombs += 1
        mode = config.get("mode")
        if mode == "hang":
            time.sleep(3600)
        elif mode == "abort" or (mode == "second" and _loaded_bombs > 1):
            os.kill(os.getpid(), signal.SIGABRT)
        return cls(**config)


def write_model(path: str, layer: keras.layers.Layer) -> str:
    """A one-layer functional model on an input ``x`` of shape [batch, 3], saved as .keras."""
    x = keras.Input((3,), name="x")
    keras.Model(x, layer(x), name="custom").save(path)
    return path
