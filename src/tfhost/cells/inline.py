"""The inline cell: the servable runs in the host's own process and threads."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import psutil

from tfhost import formats
from tfhost.errors import FormatError, NotFound
from tfhost.servable import Guarded
from tfhost.specs import Artifact, LoadOptions


class InlineCell:
    def __init__(self, artifact: Artifact, guarded: Guarded, memory_bytes: int | None) -> None:
        self.artifact = artifact
        self.format = guarded.servable.format
        self.signatures = guarded.servable.signatures
        self.static_shapes = guarded.servable.static_shapes
        self.memory_bytes = memory_bytes
        self._guarded = guarded

    def run(
        self, signature: str, inputs: Mapping[str, np.ndarray], deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        # ``deadline`` is accepted for the Cell interface and ignored: a thread running
        # TensorFlow cannot be interrupted, so only a process cell can keep a deadline.
        return self._guarded.run(signature, inputs)

    def close(self) -> None:
        self._guarded.close()


def open_inline(name: str, path: Path, version: int | None, options: LoadOptions) -> InlineCell:
    process = psutil.Process()
    # Inline loads are serialized, so the host's growth while this one holds the lock is
    # this model's: an estimate (concurrent requests allocate too), and memory freed by
    # an unload before it is reused rather than taken anew.
    with formats.loading_lock():
        before = process.memory_info().rss
        try:
            artifact = formats.detect(path, version)
        except (FormatError, NotFound) as exc:
            raise type(exc)(f"model {name!r}: {exc}") from None
        servable = formats.load(name, artifact, options)
        grown = process.memory_info().rss - before
    return InlineCell(artifact, Guarded(name, servable), max(grown, 0))
