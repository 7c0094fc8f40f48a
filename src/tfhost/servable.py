"""The interface every loaded model version presents, wherever it runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from tfhost.specs import Format, SignatureSpec


class Servable(Protocol):
    """A loaded model version.

    Contract:
    1. ``signatures`` is fixed once the servable exists.
    2. ``run`` is safe to call from many threads at once.
    3. ``run`` takes inputs already checked against the signature (names, dtypes,
       and shapes when ``static_shapes``) and returns every output of the signature.
    4. ``close`` is called once, after every ``run`` has returned; it frees what
       the servable holds (a graph-mode servable closes its session).
    """

    @property
    def format(self) -> Format: ...

    @property
    def signatures(self) -> Mapping[str, SignatureSpec]: ...

    # True when shapes must match the declared specs before running (eager
    # concrete functions). Graph-mode sessions accept whatever the runtime can
    # compute, as TensorFlow Serving does, so they leave shapes to the runtime.
    @property
    def static_shapes(self) -> bool: ...

    def run(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...
