"""The isolation boundary: where a servable runs.

A cell presents the Servable interface plus the artifact it opened. The inline cell
runs the servable in this process; the process cell runs it in a worker process.
The Host does not care which.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from tfhost.errors import WorkerDied
from tfhost.servable import Servable
from tfhost.specs import Artifact, LoadOptions

if TYPE_CHECKING:
    from tfhost.cells.process import Groups
    from tfhost.settings import WorkerSettings


class Isolation(enum.Enum):
    INLINE = "inline"  # in this process: fastest, shares memory and fate with the host
    PROCESS = "process"  # in a worker process: memory returns on unload, crashes contained


class Cell(Servable, Protocol):
    """A servable where it runs.

    Contract, beyond Servable's:
    1. ``run`` raises only ``TfhostError``s, the same class and message for the same
       failure whichever the isolation.
    2. ``close`` may come while runs are in flight (a forced unload): an inline cell
       closes its servable once they return; a process cell ends its worker, failing
       them with ``WorkerDied``. A run after ``close`` fails ``Unavailable``.
    """

    @property
    def artifact(self) -> Artifact: ...

    @property
    def memory_bytes(self) -> int | None:
        """What loading it took, in bytes, as measured when it loaded (None: unknown)."""
        ...

    def run(
        self, signature: str, inputs: Mapping[str, np.ndarray], deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        """``Servable.run``, finished by ``deadline`` (``time.monotonic()``) where the cell
        can keep it.

        A process cell keeps it (DeadlineExceeded, then its worker is recycled); an inline
        cell accepts and ignores it: a thread inside TensorFlow cannot be interrupted.
        """
        ...


def open_cell(
    isolation: Isolation,
    name: str,
    path: Path,
    version: int | None,
    options: LoadOptions,
    worker: WorkerSettings,
    groups: Groups,
    group: str | None = None,
    on_death: Callable[[WorkerDied], None] | None = None,
) -> Cell:
    """Detect and load the artifact at ``path`` in a cell of the given isolation.

    ``groups`` is the caller's registry of worker processes (one per host). ``on_death``
    is called once, from a monitor thread, if the cell's worker process exits while the
    cell is open (never for an inline cell, and never after ``close``).
    """
    if isolation is Isolation.INLINE:
        from tfhost.cells.inline import open_inline

        return open_inline(name, path, version, options)
    from tfhost.cells.process import open_process

    return open_process(name, path, version, options, worker, groups, group, on_death)
