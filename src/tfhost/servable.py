"""The interface every loaded model version presents, wherever it runs."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol

import numpy as np

from tfhost.errors import ModelError, TfhostError, Unavailable
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


class Guarded:
    """A servable as a cell runs it, in the host or in a worker: the one place that

    - types every failure: a run raises a ``TfhostError``, whatever the model raised
      (anything else becomes ``ModelError`` naming the model, signature and type), so a
      failure reads the same inline and in a worker process;
    - keeps contract 4 when ``close`` comes while runs are in flight (a forced unload):
      the servable is closed by the last run to return, and a run after ``close`` fails
      ``Unavailable`` instead of reaching a closed session.

    Thread safety: ``_lock`` guards ``_running`` and ``_closing``.
    """

    def __init__(self, name: str, servable: Servable) -> None:
        self.name = name
        self.servable = servable
        self._lock = threading.Lock()
        self._running = 0
        self._closing = False
        self._closed = False

    def run(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            if self._closing:
                raise Unavailable(f"model {self.name!r} was unloaded")
            self._running += 1
        try:
            return self.servable.run(signature, inputs)
        except TfhostError:
            raise
        except Exception as exc:
            raise ModelError(
                f"model {self.name!r} signature {signature!r} raised {type(exc).__name__}: {exc}",
                type(exc).__name__,
            ) from exc
        finally:
            with self._lock:
                self._running -= 1
                last = self._closing and self._running == 0
            if last:
                self._close_servable()

    def close(self) -> None:
        """Close now, or once the runs in flight have returned. Idempotent."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            idle = self._running == 0
        if idle:
            self._close_servable()

    def _close_servable(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.servable.close()
