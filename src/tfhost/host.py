"""The Host: the registry of models and versions, and the only owner of their state.

Thread safety: every public method may be called from any thread. ``_lock`` guards
``_models`` and every ``_Version`` field; loading, running and closing a cell happen
outside it, so a slow load never blocks predictions on other models.

Guarantees:
1. A version is AVAILABLE only once its cell can serve; only AVAILABLE versions serve.
2. A handle keeps its servable alive: unload waits until every handle is released.
3. Every state change goes through ``check_transition`` and is delivered, in order,
   to every subscriber.
4. A failed load leaves the version FAILED with its error and every other model serving.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from tfhost.cells import Cell, Isolation, open_cell
from tfhost.errors import (
    AlreadyExists,
    DeadlineExceeded,
    InputError,
    InternalError,
    NotFound,
    TfhostError,
    Unavailable,
    WorkerDied,
)
from tfhost.formats.detect import resolve_version
from tfhost.settings import HostSettings
from tfhost.specs import Format, LoadOptions, SignatureSpec
from tfhost.state import Event, State, VersionId, check_transition
from tfhost.validation import check_inputs

DEFAULT_SIGNATURE = "serving_default"
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_model_name(name: object) -> str:
    """Model names are safe as path segments and URL parts: no '/', no '..'."""
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name) or ".." in name:
        raise InputError(
            f"invalid model name {name!r}: use 1-128 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit, without '..'"
        )
    return name


@dataclass(frozen=True)
class ModelInfo:
    """A snapshot of one model version."""

    name: str
    version: int
    state: State
    isolation: Isolation
    path: Path
    format: Format | None = None
    error: str | None = None
    signatures: Mapping[str, SignatureSpec] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "state": self.state.value,
            "isolation": self.isolation.value,
            "path": str(self.path),
            "format": None if self.format is None else self.format.value,
            "error": self.error,
            "signatures": {k: v.to_dict() for k, v in self.signatures.items()},
        }


class _Version:
    """One model version's record. Every field is guarded by ``Host._lock``."""

    __slots__ = (
        "available_since",
        "cell",
        "error",
        "group",
        "id",
        "isolation",
        "options",
        "path",
        "refs",
        "restarts",
        "state",
    )

    def __init__(
        self,
        vid: VersionId,
        path: Path,
        isolation: Isolation,
        options: LoadOptions,
        group: str | None,
    ) -> None:
        self.id = vid
        self.path = path
        self.isolation = isolation
        self.options = options
        self.group = group
        self.state = State.START
        self.error: TfhostError | None = None
        self.cell: Cell | None = None
        self.refs = 0
        self.restarts = 0  # worker restarts in the current run of quick deaths
        self.available_since = 0.0  # time.monotonic() of the last move to AVAILABLE

    def info(self) -> ModelInfo:
        cell = self.cell
        return ModelInfo(
            name=self.id.model,
            version=self.id.version,
            state=self.state,
            isolation=self.isolation,
            path=self.path,
            format=None if cell is None else cell.format,
            error=None if self.error is None else str(self.error),
            signatures={} if cell is None else dict(cell.signatures),
        )


def _settled(entry: _Version) -> bool:
    return entry.state is not State.LOADING


def _drained(entry: _Version) -> bool:
    return entry.refs == 0


class Handle:
    """A claim on an AVAILABLE servable: it stays loaded until ``release``.

    Use as a context manager. Not for sharing between threads after release.
    """

    __slots__ = ("_entry", "_host", "_released")

    def __init__(self, host: Host, entry: _Version) -> None:
        self._host = host
        self._entry = entry
        self._released = False

    @property
    def id(self) -> VersionId:
        return self._entry.id

    @property
    def signatures(self) -> Mapping[str, SignatureSpec]:
        return self._cell().signatures

    def _cell(self) -> Cell:
        cell = self._entry.cell
        if cell is None:  # its worker died after this handle was acquired
            raise self._host._unavailable(self._entry.id.model, [self._entry])
        return cell

    def predict(
        self,
        inputs: Mapping[str, Any],
        *,
        signature: str = DEFAULT_SIGNATURE,
        timeout: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Run ``signature``. ``timeout`` (seconds, default ``HostSettings.request_timeout_s``)
        is kept by process-isolated models only: an inline call cannot be interrupted."""
        cell = self._cell()
        spec = cell.signatures.get(signature)
        if spec is None:
            raise NotFound(
                f"model {self._entry.id.model!r} version {self._entry.id.version} has no "
                f"signature {signature!r}; it has {sorted(cell.signatures)}"
            )
        checked = check_inputs(
            self._entry.id.model, signature, spec, inputs, check_shapes=cell.static_shapes
        )
        if timeout is None:
            timeout = self._host.settings.request_timeout_s
        return cell.run(signature, checked, timeout=timeout)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._host._release(self._entry)

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


Listener = Callable[[Event], None]


class Host:
    """Loads models side by side, each isolated, and serves predictions.

    ``with Host() as host: host.load("a", path); host.predict("a", {"x": x})``
    """

    def __init__(self, settings: HostSettings | None = None) -> None:
        self.settings = settings or HostSettings()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._models: dict[str, dict[int, _Version]] = {}
        self._closed = False
        self._listeners: list[Listener] = []
        self._pending: deque[Event] = deque()  # guarded by _lock
        self._dispatch = threading.RLock()  # delivers _pending in order; re-entrant for listeners

    # -- lifecycle ---------------------------------------------------------------

    def load(
        self,
        name: str,
        path: str | Path,
        *,
        version: int | None = None,
        custom_objects: Mapping[str, Any] | None = None,
        preload: Iterable[str] = (),
        isolation: str | Isolation | None = None,
        group: str | None = None,
        **format_options: Any,
    ) -> ModelInfo:
        """Load the artifact at ``path`` as ``name``; return once it is AVAILABLE.

        Raises the load's error (FormatError, LoadError, ...) after recording the
        version as FAILED; every other model keeps serving.
        """
        check_model_name(name)
        mode = self._isolation(isolation)
        options = LoadOptions(dict(custom_objects or {}), tuple(preload), dict(format_options))
        path = Path(path)
        if not path.exists():
            raise NotFound(f"model {name!r}: no artifact at {path}")
        number, version_path = resolve_version(path, version)
        vid = VersionId(name, number)
        with self._lock:
            if self._closed:
                raise Unavailable("host is closed")
            entry = self._models.get(name, {}).get(number)
            if entry is not None and entry.state is not State.FAILED:
                raise AlreadyExists(
                    f"model {name!r} version {number} is already {entry.state.value}; "
                    f"unload it first or load another version"
                )
            if entry is not None:  # retire the failed record, and any restart it planned
                self._move(entry, State.UNLOADING)
                self._move(entry, State.END)
            entry = _Version(vid, version_path, mode, options, group)
            self._models.setdefault(name, {})[number] = entry
            self._move(entry, State.LOADING)
        self._deliver()
        self._open(entry)
        with self._lock:
            closed = self._closed
            info = entry.info()
            error = entry.error if entry.state is State.FAILED else None
        if closed:  # close() ran while we loaded: do not leak the new cell
            self.unload(name, number)
            raise Unavailable("host was closed while loading")
        if error is not None:
            raise error
        return info

    def _open(self, entry: _Version) -> None:
        """Open ``entry``'s cell (it is LOADING) and publish AVAILABLE or FAILED."""
        vid = entry.id
        try:
            cell = open_cell(
                entry.isolation,
                vid.model,
                entry.path,
                None,
                entry.options,
                self.settings.worker,
                entry.group,
                lambda e: self._cell_died(entry, e),
            )
        except TfhostError as exc:
            self._fail(entry, exc)
            return
        except Exception as exc:
            error = InternalError(f"model {vid.model!r}: load failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            self._fail(entry, error)
            return
        with self._lock:
            entry.cell = cell
            entry.error = None
            entry.available_since = time.monotonic()
            self._move(entry, State.AVAILABLE)
        self._deliver()

    def _cell_died(self, entry: _Version, error: WorkerDied) -> None:
        """A worker exited: FAILED with its reason, then restart with bounded backoff."""
        with self._lock:
            if entry.state is not State.AVAILABLE:
                return
            entry.error = error
            self._move(entry, State.FAILED)
            dead, entry.cell = entry.cell, None
            if time.monotonic() - entry.available_since >= self.settings.worker.restart_window_s:
                entry.restarts = 0  # it served a good while: not part of a crash loop
            delay = self._next_restart(entry)
        self._deliver()
        if dead is not None:
            dead.close()
        self._schedule_restart(entry, delay)

    def _next_restart(self, entry: _Version) -> float | None:
        """Backoff before ``entry``'s next restart, None once out of tries; holds ``_lock``."""
        worker = self.settings.worker
        attempt = entry.restarts
        if self._closed or attempt >= worker.max_restarts:
            return None
        entry.restarts += 1
        return float(worker.restart_backoff_s * 2**attempt)

    def _schedule_restart(self, entry: _Version, delay: float | None) -> None:
        if delay is not None:
            threading.Thread(
                target=self._restart,
                args=(entry, delay),
                name=f"tfhost-restart-{entry.id}",
                daemon=True,
            ).start()

    def _restart(self, entry: _Version, delay: float) -> None:
        time.sleep(delay)
        with self._lock:
            if self._closed or entry.state is not State.FAILED:
                return
            self._move(entry, State.LOADING)
        self._deliver()
        self._open(entry)
        with self._lock:  # a restart that fails to load uses up a try; the next waits longer
            again = self._next_restart(entry) if entry.state is State.FAILED else None
        self._schedule_restart(entry, again)

    def unload(
        self, name: str, version: int | None = None, *, timeout: float | None = None
    ) -> None:
        """Unload one version, or every version of ``name``.

        Waits for loads in progress to finish and for every handle to be released
        (drain), then closes the cells. ``timeout`` bounds that wait.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            versions = self._models.get(name)
            if not versions or (version is not None and version not in versions):
                raise NotFound(self._not_found(name, version))
            targets = [versions[version]] if version is not None else list(versions.values())
            for entry in targets:
                self._wait(functools.partial(_settled, entry), deadline, entry.id)
                if entry.state in (State.AVAILABLE, State.FAILED):
                    self._move(entry, State.UNLOADING)
            mine = [e for e in targets if e.state is State.UNLOADING]
            for entry in mine:
                self._wait(functools.partial(_drained, entry), deadline, entry.id)
        self._deliver()
        for entry in mine:
            if entry.cell is not None:
                entry.cell.close()
        with self._lock:
            for entry in mine:
                entry.cell = None
                self._move(entry, State.END)
                model = self._models.get(entry.id.model, {})
                if model.get(entry.id.version) is entry:
                    del model[entry.id.version]
                if not model:
                    self._models.pop(entry.id.model, None)
        self._deliver()

    def close(self) -> None:
        """Unload every model. Idempotent."""
        with self._lock:
            self._closed = True
            names = list(self._models)
        for name in names:
            with contextlib.suppress(NotFound):  # unloaded meanwhile by another thread
                self.unload(name)

    def __enter__(self) -> Host:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- serving -----------------------------------------------------------------

    def acquire(self, name: str, version: int | None = None) -> Handle:
        """A handle on the AVAILABLE version (the highest one if ``version`` is None)."""
        with self._lock:
            versions = self._models.get(name)
            if version is None and versions:
                ready = [v for v in versions.values() if v.state is State.AVAILABLE]
                entry = max(ready, key=lambda v: v.id.version) if ready else None
                if entry is None:
                    raise self._unavailable(name, list(versions.values()))
            else:
                entry = None if versions is None else versions.get(version)  # type: ignore[arg-type]
                if entry is None:
                    raise NotFound(self._not_found(name, version))
                if entry.state is not State.AVAILABLE:
                    raise self._unavailable(name, [entry])
            entry.refs += 1
        return Handle(self, entry)

    def predict(
        self,
        name: str,
        inputs: Mapping[str, Any],
        *,
        version: int | None = None,
        signature: str = DEFAULT_SIGNATURE,
        timeout: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Run ``signature`` of the model on ``inputs`` (name -> array-like).

        ``timeout`` (seconds, default ``HostSettings.request_timeout_s``) bounds a
        process-isolated call: past it, DeadlineExceeded and the worker is recycled.
        """
        handle = self.acquire(name, version)
        try:
            return handle.predict(inputs, signature=signature, timeout=timeout)
        finally:
            handle.release()

    # -- introspection -----------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        """Every known model version, sorted by name then version."""
        with self._lock:
            return [
                v.info()
                for name in sorted(self._models)
                for _, v in sorted(self._models[name].items())
            ]

    def status(self, name: str, version: int | None = None) -> list[ModelInfo]:
        with self._lock:
            versions = self._models.get(name)
            if not versions or (version is not None and version not in versions):
                raise NotFound(self._not_found(name, version))
            chosen = [versions[version]] if version is not None else list(versions.values())
            return [v.info() for v in sorted(chosen, key=lambda v: v.id.version)]

    def metadata(self, name: str, version: int | None = None) -> dict[str, Any]:
        """``{"model", "version", "format", "signatures": {sig: {"inputs", "outputs"}}}``."""
        with self.acquire(name, version) as handle, self._lock:
            info = handle._entry.info()
        return {
            "model": info.name,
            "version": info.version,
            "format": None if info.format is None else info.format.value,
            "isolation": info.isolation.value,
            "signatures": {k: v.to_dict() for k, v in info.signatures.items()},
        }

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` on every state change, in order. Returns unsubscribe."""
        with self._dispatch:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._dispatch:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def wait_for(
        self, name: str, version: int, states: Iterable[State], timeout: float | None = None
    ) -> ModelInfo:
        """Block until the version is in one of ``states``; DeadlineExceeded after timeout."""
        wanted = frozenset(states)
        deadline = None if timeout is None else time.monotonic() + timeout

        def reached() -> bool:
            entry = self._models.get(name, {}).get(version)
            state = State.END if entry is None else entry.state
            return state in wanted

        with self._lock:
            self._wait(reached, deadline, VersionId(name, version))
            entry = self._models.get(name, {}).get(version)
            if entry is None:
                return ModelInfo(name, version, State.END, Isolation.INLINE, Path())
            return entry.info()

    # -- internals ---------------------------------------------------------------

    def _isolation(self, isolation: str | Isolation | None) -> Isolation:
        try:
            return Isolation(isolation or self.settings.default_isolation)
        except ValueError:
            raise InputError(
                f"unknown isolation {isolation!r}; expected one of {[i.value for i in Isolation]}"
            ) from None

    def _release(self, entry: _Version) -> None:
        with self._lock:
            entry.refs -= 1
            if entry.refs == 0 and entry.state is State.UNLOADING:
                self._changed.notify_all()

    def _fail(self, entry: _Version, error: TfhostError) -> None:
        with self._lock:
            entry.error = error
            self._move(entry, State.FAILED)
        self._deliver()

    def _move(self, entry: _Version, state: State) -> None:
        """Transition ``entry``; caller holds ``_lock``."""
        check_transition(entry.state, state)
        previous, entry.state = entry.state, state
        error = entry.error if state is State.FAILED else None
        self._pending.append(Event(entry.id, previous, state, error, time.monotonic()))
        self._changed.notify_all()

    def _deliver(self) -> None:
        """Hand queued events to listeners, outside ``_lock``, in transition order."""
        with self._dispatch:
            while True:
                with self._lock:
                    if not self._pending:
                        return
                    event = self._pending.popleft()
                for listener in list(self._listeners):
                    listener(event)

    def _wait(self, predicate: Callable[[], bool], deadline: float | None, vid: VersionId) -> None:
        """Wait on ``_changed`` (caller holds ``_lock``) until ``predicate`` holds."""
        while not predicate():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(f"model {vid.model!r} version {vid.version}: timed out")
            self._changed.wait(remaining)

    def _not_found(self, name: str, version: int | None) -> str:
        versions = self._models.get(name)
        if not versions:
            return f"model {name!r} is not loaded; loaded models: {sorted(self._models)}"
        return f"model {name!r} has no version {version}; it has {sorted(versions)}"

    @staticmethod
    def _unavailable(name: str, entries: list[_Version]) -> Unavailable:
        if len(entries) == 1 and isinstance(entries[0].error, WorkerDied):
            died = entries[0].error
            return WorkerDied(f"{died.message}; it is {entries[0].state.value}", died.exitcode)
        parts = [
            f"version {e.id.version} is {e.state.value}" + (f" ({e.error})" if e.error else "")
            for e in sorted(entries, key=lambda e: e.id.version)
        ]
        return Unavailable(f"model {name!r} has no available version: {'; '.join(parts)}")
