"""The one lifecycle of a model version, and the table of moves it may make."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tfhost.errors import InternalError, TfhostError


class State(enum.Enum):
    """Where a model version is in its life.

    TensorFlow Serving's five states plus FAILED: a version whose load or worker failed
    keeps its error and may be retried (FAILED -> LOADING) instead of vanishing at END.
    Only AVAILABLE serves, and it is published only once the servable can serve.
    """

    START = "start"
    LOADING = "loading"
    AVAILABLE = "available"
    FAILED = "failed"
    UNLOADING = "unloading"
    END = "end"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.START: frozenset({State.LOADING}),
    # LOADING -> UNLOADING: an unload that gave up waiting for the load (or a close) drops
    # the version when its load ends; it never serves.
    State.LOADING: frozenset({State.AVAILABLE, State.FAILED, State.UNLOADING}),
    State.AVAILABLE: frozenset({State.UNLOADING, State.FAILED}),
    State.FAILED: frozenset({State.LOADING, State.UNLOADING}),
    State.UNLOADING: frozenset({State.END}),
    State.END: frozenset(),
}


def check_transition(current: State, new: State) -> None:
    if new not in TRANSITIONS[current]:
        raise InternalError(f"illegal version state transition {current.name} -> {new.name}")


@dataclass(frozen=True)
class VersionId:
    model: str
    version: int

    def __str__(self) -> str:
        return f"{self.model}:{self.version}"


@dataclass(frozen=True)
class Event:
    """One observed transition. ``error`` is set when the new state is FAILED."""

    id: VersionId
    previous: State
    state: State
    error: TfhostError | None
    time: float  # time.monotonic()
