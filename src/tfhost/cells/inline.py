"""The inline cell: the servable runs in the host's own process and threads."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tfhost import formats
from tfhost.errors import FormatError, NotFound
from tfhost.servable import Servable
from tfhost.specs import Artifact, LoadOptions


class InlineCell:
    def __init__(self, artifact: Artifact, servable: Servable) -> None:
        self.artifact = artifact
        self.format = servable.format
        self.signatures = servable.signatures
        self.static_shapes = servable.static_shapes
        self._servable = servable

    def run(
        self, signature: str, inputs: Mapping[str, np.ndarray], timeout: float | None = None
    ) -> dict[str, np.ndarray]:
        # ``timeout`` is accepted for the Cell interface and ignored: a thread running
        # TensorFlow cannot be interrupted, so only a process cell can keep a deadline.
        return self._servable.run(signature, inputs)

    def close(self) -> None:
        self._servable.close()


def open_inline(name: str, path: Path, version: int | None, options: LoadOptions) -> InlineCell:
    try:
        artifact = formats.detect(path, version)
    except (FormatError, NotFound) as exc:
        raise type(exc)(f"model {name!r}: {exc}") from None
    return InlineCell(artifact, formats.load(name, artifact, options))
