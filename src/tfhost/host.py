"""The Host: the registry of models and versions, and the only owner of their state.

Thread safety: every public method may be called from any thread. ``_lock`` guards
``_models``, ``_routes``, ``_listeners``, ``_pending``, ``_delivering``, ``_closed`` and
every ``_Version`` field; loading, running and closing a cell happen outside it, so a slow
load never blocks predictions on other models. Listeners and ``prepare`` hooks never run
with ``_lock`` held.

Guarantees:
1. A version is AVAILABLE only once its cell can serve and its ``prepare`` hook has
   returned; only AVAILABLE versions take new handles.
2. A handle keeps its servable alive: unload waits until every handle is released, for
   at most its ``timeout`` (``close``: ``HostSettings.drain_timeout_s``); after that the
   version is unloaded anyway and a late handle's calls fail ``Unavailable``.
3. Every state change goes through ``check_transition``, exactly one caller owns each
   move (the one that made the version LOADING owns its move out of LOADING; the one that
   made it UNLOADING owns its move to END), and every change is delivered, in order, to
   every subscriber. A listener that raises is logged; it never stops a state change.
4. A failed load leaves the version FAILED with its error and every other model serving.
5. A worker that dies, before or after its version is published, leaves the version
   FAILED with a ``WorkerDied`` and restarts it with bounded backoff; a worker recycled
   for a neighbour's deadline restarts at once, without using up a try.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import functools
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from tfhost.batching import BatchingCell, BatchingSettings, BatchingStats, batched
from tfhost.cells import Cell, Isolation, open_cell
from tfhost.errors import (
    AlreadyExists,
    Code,
    DeadlineExceeded,
    InputError,
    InternalError,
    NotFound,
    TfhostError,
    Unavailable,
    WorkerDied,
)
from tfhost.formats.detect import resolve_version
from tfhost.settings import HostSettings, WorkerSettings
from tfhost.specs import DEFAULT_SIGNATURE, Format, LoadOptions, SignatureSpec, Warmup
from tfhost.state import Event, State, VersionId, check_transition
from tfhost.validation import check_inputs

if TYPE_CHECKING:
    from tfhost.cells.process import Groups

_log = logging.getLogger(__name__)
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_T = TypeVar("_T")


def absolute_deadline(
    timeout: float | None, deadline: float | None, default_timeout: float | None
) -> float | None:
    """The ``time.monotonic()`` instant a call must end by: the earlier of ``deadline`` and
    now + ``timeout``; with neither, now + ``default_timeout``; None for no deadline."""
    if timeout is None and deadline is None:
        timeout = default_timeout
    ends = [] if deadline is None else [deadline]
    if timeout is not None:
        ends.append(time.monotonic() + timeout)
    return min(ends) if ends else None


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
    """A snapshot of one model version: what a policy needs to decide what to do next.

    ``handles`` counts the claims in use now; ``last_used`` is the ``time.monotonic()``
    of the last ``acquire`` (None: never used); ``memory_bytes`` is what its load took as
    measured then (a process-isolated model with a worker of its own: that worker's
    unique memory; an inline one: the host's growth during its load); ``load_seconds`` is
    how long its last load took, ``prepare`` hook included.
    """

    name: str
    version: int
    state: State
    isolation: Isolation
    path: Path
    format: Format | None = None
    error: str | None = None
    error_code: Code | None = None  # the failure's kind, where ``error`` says what it was
    signatures: Mapping[str, SignatureSpec] = field(default_factory=dict)
    group: str | None = None
    handles: int = 0
    last_used: float | None = None
    memory_bytes: int | None = None
    load_seconds: float | None = None
    restarts: int = 0
    batching: BatchingStats | None = None  # when its requests are batched
    jit_compile: bool = False  # its signatures are compiled by XLA

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "state": self.state.value,
            "isolation": self.isolation.value,
            "path": str(self.path),
            "format": None if self.format is None else self.format.value,
            "error": self.error,
            "error_code": None if self.error_code is None else self.error_code.value,
            "signatures": {k: v.to_dict() for k, v in self.signatures.items()},
            "group": self.group,
            "handles": self.handles,
            "last_used": self.last_used,
            "memory_bytes": self.memory_bytes,
            "load_seconds": self.load_seconds,
            "restarts": self.restarts,
            "batching": None if self.batching is None else self.batching.to_dict(),
            "jit_compile": self.jit_compile,
        }


Prepare = Callable[["Handle"], None]


class _Version:
    """One model version's record. Every field is guarded by ``Host._lock``."""

    __slots__ = (
        "attempt",
        "available_since",
        "batching",
        "cell",
        "died_loading",
        "error",
        "format",
        "group",
        "id",
        "isolation",
        "last_used",
        "load_seconds",
        "memory_bytes",
        "options",
        "path",
        "prepare",
        "refs",
        "restarts",
        "signatures",
        "state",
        "unload_asked",
        "worker",
    )

    def __init__(
        self,
        vid: VersionId,
        path: Path,
        isolation: Isolation,
        options: LoadOptions,
        group: str | None,
        worker: WorkerSettings,
        prepare: Prepare | None,
        batching: BatchingSettings | None,
    ) -> None:
        self.id = vid
        self.batching = batching
        self.path = path
        self.isolation = isolation
        self.options = options
        self.group = group
        self.worker = worker
        self.prepare = prepare
        self.state = State.START
        self.error: TfhostError | None = None
        self.cell: Cell | None = None
        # What the last cell to serve it presented: kept once the cell is gone, so a
        # FAILED version still shows what it served.
        self.format: Format | None = None
        self.signatures: Mapping[str, SignatureSpec] = {}
        self.refs = 0
        self.restarts = 0  # worker restarts in the current run of quick deaths
        self.available_since = 0.0  # time.monotonic() of the last move to AVAILABLE
        self.attempt = 0  # which opening of a cell this is; a death names the one it ends
        self.died_loading: WorkerDied | None = None  # its worker died before it was published
        self.unload_asked = False  # an unload gave up waiting for its load: unload it after
        self.last_used: float | None = None
        self.memory_bytes: int | None = None
        self.load_seconds: float | None = None

    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.id.model,
            version=self.id.version,
            state=self.state,
            isolation=self.isolation,
            path=self.path,
            format=self.format,
            error=None if self.error is None else str(self.error),
            error_code=None if self.error is None else self.error.code,
            signatures=dict(self.signatures),
            group=self.group,
            handles=self.refs,
            last_used=self.last_used,
            memory_bytes=self.memory_bytes,
            load_seconds=self.load_seconds,
            restarts=self.restarts,
            batching=self.cell.stats() if isinstance(self.cell, BatchingCell) else None,
            jit_compile=self.options.jit_compile,
        )


def _settled(entry: _Version) -> bool:
    return entry.state is not State.LOADING


def _drained(entry: _Version) -> bool:
    return entry.refs == 0


@dataclass(frozen=True)
class Checked:
    """Inputs checked against one signature of one version: names, dtypes converted, and
    shapes where the servable declares them. Made by ``Handle.check``; a batcher may build
    one from checked inputs merged along the first dimension."""

    signature: str
    inputs: Mapping[str, np.ndarray]


class _Opened(enum.Enum):
    """How ``Host._open`` ended."""

    AVAILABLE = "available"
    FAILED = "failed"  # the load (or its prepare hook) failed
    DIED = "died"  # its worker died before it was published; a restart is scheduled
    DROPPED = "dropped"  # unloaded (or the host closed) while it loaded


class Handle:
    """A claim on a servable: it stays loaded until ``release`` (or a forced unload).

    Use as a context manager. The calls are safe from any thread until ``release``.
    ``check`` then ``run`` is ``predict`` in two steps, for callers (a batcher) that check
    each request before merging them.
    """

    __slots__ = ("_cell", "_entry", "_host", "_released")

    def __init__(self, host: Host, entry: _Version, cell: Cell) -> None:
        self._host = host
        self._entry = entry
        self._cell = cell  # the cell it was acquired on, even if its worker dies later
        self._released = False

    @property
    def id(self) -> VersionId:
        return self._entry.id

    @property
    def signatures(self) -> Mapping[str, SignatureSpec]:
        return self._cell.signatures

    @property
    def batched(self) -> bool:
        """Whether its runs are merged with others' (``Host.load(batching=...)``)."""
        return isinstance(self._cell, BatchingCell)

    def check(self, inputs: Mapping[str, Any], signature: str = DEFAULT_SIGNATURE) -> Checked:
        """``inputs`` checked against ``signature``; InputError or NotFound saying why not."""
        spec = self._cell.signatures.get(signature)
        if spec is None:
            raise NotFound(
                f"model {self._entry.id.model!r} version {self._entry.id.version} has no "
                f"signature {signature!r}; it has {sorted(self._cell.signatures)}"
            )
        checked = check_inputs(
            self._entry.id.model, signature, spec, inputs, check_shapes=self._cell.static_shapes
        )
        return Checked(signature, checked)

    def run(
        self, checked: Checked, *, timeout: float | None = None, deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        """Run checked inputs. ``deadline`` is a ``time.monotonic()`` instant, ``timeout``
        seconds from now; the earlier one counts, and with neither,
        ``HostSettings.request_timeout_s``. Past it before the call starts:
        DeadlineExceeded without running. A process-isolated model also keeps it while
        running (DeadlineExceeded, its worker recycled); an inline call cannot be
        interrupted."""
        end = self._host._deadline(timeout, deadline)
        if end is not None and time.monotonic() >= end:
            raise DeadlineExceeded(
                f"model {self._entry.id.model!r} signature {checked.signature!r}: the "
                f"request's deadline passed before it could run"
            )
        return self._cell.run(checked.signature, checked.inputs, end)

    def predict(
        self,
        inputs: Mapping[str, Any],
        *,
        signature: str = DEFAULT_SIGNATURE,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> dict[str, np.ndarray]:
        """``run(check(inputs, signature))``."""
        return self.run(self.check(inputs, signature), timeout=timeout, deadline=deadline)

    async def run_async(
        self, checked: Checked, *, timeout: float | None = None, deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        """``run`` on the host's serving threads; time spent waiting for one counts. A
        batched model's request waits for its batch without taking a thread."""
        end = self._host._deadline(timeout, deadline)
        if isinstance(self._cell, BatchingCell):
            future = self._cell.submit(checked.signature, checked.inputs, end)
            if future is not None:
                return await future
        return await self._host._in_pool(self.run, checked, deadline=end)

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
        self._routes: dict[str, int] = {}
        self._closed = False
        self._listeners: list[Listener] = []
        self._pending: deque[Event] = deque()
        self._delivering = False  # one thread at a time hands _pending to the listeners
        self._groups_made: Groups | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

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
        worker: WorkerSettings | None = None,
        prepare: Prepare | None = None,
        warmup: Warmup = True,
        batching: BatchingSettings | None = None,
        jit_compile: bool = False,
        **format_options: Any,
    ) -> ModelInfo:
        """Load the artifact at ``path`` as ``name``; return once it is AVAILABLE.

        ``worker`` sets up a process-isolated model's worker (default
        ``HostSettings.worker``); the models of one ``group`` share one worker and so
        must agree on it. ``prepare(handle)`` runs once the servable is open and before
        it is published AVAILABLE (a warm-up, a check), and again after every restart;
        if it raises, the load fails with its error. A SavedModel's own warm-up requests
        (TF Serving's ``assets.extra/tf_serving_warmup_requests``) are replayed before
        that, unless ``warmup=False``; ``warmup="synthetic"`` instead calls
        ``serving_default`` once on zeros shaped by its signature. ``batching`` merges
        requests that arrive together into one call (``tfhost.batching``); its
        ``max_batch_size = "auto"`` is measured after the warm-up, before ``prepare``.
        ``jit_compile=True`` compiles every signature with XLA (TF2 SavedModels and Keras
        models; ``tfhost.formats.jit`` says what changes).

        Raises the load's error (FormatError, LoadError, ...) after recording the
        version as FAILED; every other model keeps serving.
        """
        check_model_name(name)
        mode = self._isolation(isolation)
        settings = self.settings.worker if worker is None else worker
        if not isinstance(settings, WorkerSettings):
            raise InputError(
                f"model {name!r}: worker= takes a WorkerSettings, got {type(settings).__name__}"
            )
        if group is not None and not isinstance(group, str):
            raise InputError(f"model {name!r}: group= takes a name, got {group!r}")
        if warmup not in (True, False, "synthetic"):
            raise InputError(
                f"model {name!r}: warmup= takes True, False or 'synthetic', got {warmup!r}"
            )
        if batching is not None and not isinstance(batching, BatchingSettings):
            raise InputError(
                f"model {name!r}: batching= takes a BatchingSettings, got {type(batching).__name__}"
            )
        if not isinstance(jit_compile, bool):
            raise InputError(
                f"model {name!r}: jit_compile= takes True or False, got {jit_compile!r}"
            )
        options = LoadOptions(
            dict(custom_objects or {}), tuple(preload), dict(format_options), warmup, jit_compile
        )
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
            entry = _Version(vid, version_path, mode, options, group, settings, prepare, batching)
            self._models.setdefault(name, {})[number] = entry
            self._move(entry, State.LOADING)
        self._deliver()
        outcome = self._open(entry)
        with self._lock:
            info = entry.info()
            error = entry.error
            closed = self._closed
        if outcome is _Opened.DROPPED:
            raise Unavailable(
                f"model {name!r} version {number}: unloaded while it loaded"
                + (" (the host was closed)" if closed else "")
            )
        if outcome is not _Opened.AVAILABLE:
            assert error is not None
            raise error
        return info

    def _open(self, entry: _Version) -> _Opened:
        """Open ``entry``'s cell (it is LOADING, and this call owns its move out of it),
        run its prepare hook, and publish the outcome."""
        vid = entry.id
        with self._lock:
            entry.attempt += 1
            attempt = entry.attempt
            entry.died_loading = None
        started = time.monotonic()
        error: TfhostError | None = None
        cell: Cell | None = None
        try:
            cell = open_cell(
                entry.isolation,
                vid.model,
                entry.path,
                None,
                entry.options,
                entry.worker,
                self._groups(),
                entry.group,
                lambda died: self._cell_died(entry, attempt, died),
            )
            if entry.batching is not None:
                cell = batched(vid.model, cell, entry.batching)
            if entry.prepare is not None:
                self._prepare(entry, cell)
        except TfhostError as exc:
            error = exc
        except Exception as exc:
            error = InternalError(f"model {vid.model!r}: load failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
        with self._lock:
            outcome = self._settle(entry, cell, error, time.monotonic() - started)
            delay = self._restart_delay(entry) if outcome is _Opened.DIED else None
        self._deliver()
        if outcome is not _Opened.AVAILABLE and cell is not None:
            cell.close()
        if outcome is _Opened.DROPPED:
            with self._lock:
                self._end(entry)
            self._deliver()
        if outcome is _Opened.DIED:
            self._schedule_restart(entry, delay)
        return outcome

    def _prepare(self, entry: _Version, cell: Cell) -> None:
        assert entry.prepare is not None
        with self._lock:
            entry.refs += 1
        handle = Handle(self, entry, cell)
        try:
            entry.prepare(handle)
        except TfhostError:
            raise
        except Exception as exc:
            raise InternalError(
                f"model {entry.id.model!r} version {entry.id.version}: its prepare hook "
                f"raised {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            handle.release()

    def _settle(
        self, entry: _Version, cell: Cell | None, error: TfhostError | None, seconds: float
    ) -> _Opened:
        """Move ``entry`` out of LOADING; holds ``_lock``."""
        if entry.died_loading is None and cell is not None and isinstance(error, WorkerDied):
            entry.died_loading = error  # the prepare hook saw the death before the watcher did
        if entry.died_loading is not None:  # its worker's death outranks what the load said
            entry.error = entry.died_loading
            self._move(entry, State.FAILED)
            return _Opened.DIED
        if self._closed or entry.unload_asked:
            self._move(entry, State.UNLOADING)
            return _Opened.DROPPED
        if error is not None or cell is None:
            entry.error = error
            self._move(entry, State.FAILED)
            return _Opened.FAILED
        entry.cell = cell
        entry.format = cell.format
        entry.signatures = dict(cell.signatures)
        entry.memory_bytes = cell.memory_bytes
        entry.load_seconds = seconds
        entry.error = None
        entry.available_since = time.monotonic()
        self._move(entry, State.AVAILABLE)
        return _Opened.AVAILABLE

    def _cell_died(self, entry: _Version, attempt: int, error: WorkerDied) -> None:
        """A worker exited: FAILED with its reason, then restart with bounded backoff."""
        with self._lock:
            if attempt != entry.attempt:
                return  # a cell this version no longer uses
            if entry.state is State.LOADING:
                entry.died_loading = error  # the loading call publishes it (see _settle)
                return
            if entry.state is not State.AVAILABLE:
                return
            entry.error = error
            self._move(entry, State.FAILED)
            dead, entry.cell = entry.cell, None
            delay = self._restart_delay(entry)
        self._deliver()
        if dead is not None:
            dead.close()
        self._schedule_restart(entry, delay)

    def _restart_delay(self, entry: _Version) -> float | None:
        """Backoff before the restart of ``entry``, whose worker died (its error says how);
        None once out of tries or closed. Holds ``_lock``."""
        if self._closed:
            return None
        if isinstance(entry.error, WorkerDied) and entry.error.recycled:
            return 0.0  # a neighbour's deadline: not this model's fault
        worker = entry.worker
        if time.monotonic() - entry.available_since >= worker.restart_window_s:
            entry.restarts = 0  # it served a good while: not part of a crash loop
        return self._next_restart(entry)

    def _next_restart(self, entry: _Version) -> float | None:
        """Backoff before ``entry``'s next try, None once out of tries; holds ``_lock``."""
        attempt = entry.restarts
        if self._closed or attempt >= entry.worker.max_restarts:
            return None
        entry.restarts += 1
        return float(entry.worker.restart_backoff_s * 2**attempt)

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
                return  # unloaded, retired by a new load, or closed meanwhile
            self._move(entry, State.LOADING)
        self._deliver()
        if self._open(entry) is _Opened.FAILED:
            with self._lock:  # a restart that fails to load uses up a try; the next waits longer
                again = self._next_restart(entry) if entry.state is State.FAILED else None
            self._schedule_restart(entry, again)

    def unload(
        self, name: str, version: int | None = None, *, timeout: float | None = None
    ) -> None:
        """Unload one version, or every version of ``name``.

        Waits for loads in progress to finish and for every handle to be released
        (drain), then closes the cells. ``timeout`` bounds both waits: past it, held
        handles are revoked (their calls fail ``Unavailable``; calls already running
        finish) and the versions are unloaded anyway. A version still loading then raises
        DeadlineExceeded once the others are unloaded: it is unloaded when its load ends,
        and never serves.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        still_loading: list[_Version] = []
        with self._lock:
            versions = self._models.get(name)
            if not versions or (version is not None and version not in versions):
                raise NotFound(self._not_found(name, version))
            targets = [versions[version]] if version is not None else list(versions.values())
            mine: list[_Version] = []
            for entry in targets:
                if not self._wait(functools.partial(_settled, entry), deadline):
                    entry.unload_asked = True  # its loader drops it (see _settle)
                    still_loading.append(entry)
                elif entry.state in (State.AVAILABLE, State.FAILED):
                    self._move(entry, State.UNLOADING)
                    mine.append(entry)
            for entry in mine:
                self._wait(functools.partial(_drained, entry), deadline)  # else revoked below
            cells = [entry.cell for entry in mine if entry.cell is not None]
            for entry in mine:
                entry.cell = None
        self._deliver()
        for cell in cells:
            cell.close()
        with self._lock:
            for entry in mine:
                self._end(entry)
            # Versions another call is unloading: done when it is.
            others = [e for e in targets if e not in mine and e not in still_loading]
            self._wait(lambda: all(e.state is State.END for e in others), deadline)
        self._deliver()
        if still_loading:
            raise DeadlineExceeded(
                f"model {name!r}: version(s) {[e.id.version for e in still_loading]} still "
                f"loading after {timeout:g} s; each is unloaded as soon as its load ends"
            )

    def close(self) -> None:
        """Unload every model, draining handles for at most ``drain_timeout_s``. Idempotent.

        Loads still running past the drain are unloaded when they end (and never serve);
        every other version is END, and its worker process gone, when ``close`` returns.
        """
        with self._lock:
            self._closed = True
            names = list(self._models)
            pool, self._pool = self._pool, None
        deadline = time.monotonic() + self.settings.drain_timeout_s
        for name in names:
            try:
                self.unload(name, timeout=max(deadline - time.monotonic(), 0.0))
            except NotFound:  # unloaded meanwhile by another thread
                pass
            except DeadlineExceeded as exc:
                _log.warning("closing the host: %s", exc)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Host:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- serving -----------------------------------------------------------------

    def route(self, name: str, version: int | None) -> None:
        """Send requests for ``name`` that name no version to ``version``.

        ``None`` (the default) sends them to the highest AVAILABLE version. A routed
        version that is not AVAILABLE makes those requests fail ``Unavailable``: the
        caller that routes (the fleet: labels, version policies, hot swap) decides when
        traffic moves. Requests that name a version are not affected.
        """
        check_model_name(name)
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise InputError(f"model {name!r}: route to a version number, got {version!r}")
        with self._lock:
            if version is None:
                self._routes.pop(name, None)
            else:
                self._routes[name] = version

    def acquire(self, name: str, version: int | None = None) -> Handle:
        """A handle on an AVAILABLE version: ``version``, or the one ``name`` routes to."""
        with self._lock:
            versions = self._models.get(name)
            routed = version is None and name in self._routes
            if version is None:
                version = self._routes.get(name)
            if version is None and versions:
                ready = [v for v in versions.values() if v.state is State.AVAILABLE]
                entry = max(ready, key=lambda v: v.id.version) if ready else None
                if entry is None:
                    raise self._unavailable(name, list(versions.values()))
            else:
                entry = None if versions is None else versions.get(version)  # type: ignore[arg-type]
                if entry is None and routed:
                    raise Unavailable(
                        f"model {name!r}: requests route to version {version}, which is not "
                        f"loaded; loaded versions: {sorted(versions or {})}"
                    )
                if entry is None:
                    raise NotFound(self._not_found(name, version))
                if entry.state is not State.AVAILABLE:
                    raise self._unavailable(name, [entry])
            cell = entry.cell
            assert cell is not None  # AVAILABLE has a cell
            entry.refs += 1
            entry.last_used = time.monotonic()
        return Handle(self, entry, cell)

    def predict(
        self,
        name: str,
        inputs: Mapping[str, Any],
        *,
        version: int | None = None,
        signature: str = DEFAULT_SIGNATURE,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Run ``signature`` of the model on ``inputs`` (name -> array-like).

        ``deadline`` (``time.monotonic()``) or ``timeout`` (seconds from now; default
        ``HostSettings.request_timeout_s``) bounds the call: see ``Handle.run``.
        """
        with self.acquire(name, version) as handle:
            return handle.predict(inputs, signature=signature, timeout=timeout, deadline=deadline)

    async def predict_async(
        self,
        name: str,
        inputs: Mapping[str, Any],
        *,
        version: int | None = None,
        signature: str = DEFAULT_SIGNATURE,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> dict[str, np.ndarray]:
        """``predict`` for asyncio callers: checked here, run as ``Handle.run_async`` runs
        (on the host's serving threads, or in a batch); the deadline starts now, so time
        spent waiting for a thread counts."""
        end = self._deadline(timeout, deadline)
        with self.acquire(name, version) as handle:
            return await handle.run_async(handle.check(inputs, signature), deadline=end)

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
        """Call ``listener(event)`` on every state change, in order, from whichever thread
        is delivering (never with the host's lock held). A listener that raises is logged
        and the others still hear; one that blocks holds up later events. Returns
        unsubscribe."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
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
            if not self._wait(reached, deadline):
                raise DeadlineExceeded(
                    f"model {name!r} version {version}: not {sorted(s.value for s in wanted)} "
                    f"after {timeout:g} s"
                )
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

    def _groups(self) -> Groups:
        """This host's worker processes (made on first use: inline hosts need none)."""
        with self._lock:
            if self._groups_made is None:
                from tfhost.cells.process import Groups

                self._groups_made = Groups()
            return self._groups_made

    def _deadline(self, timeout: float | None, deadline: float | None) -> float | None:
        return absolute_deadline(timeout, deadline, self.settings.request_timeout_s)

    async def _in_pool(self, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """The one place async callers reach TensorFlow: a bounded pool of threads."""
        with self._lock:
            if self._closed:
                raise Unavailable("host is closed")
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self.settings.serving_threads, thread_name_prefix="tfhost-serving"
                )
            pool = self._pool
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, functools.partial(function, *args, **kwargs))

    def _release(self, entry: _Version) -> None:
        with self._lock:
            entry.refs -= 1
            if entry.refs == 0 and entry.state is State.UNLOADING:  # only a drain waits on it
                self._changed.notify_all()

    def _end(self, entry: _Version) -> None:
        """UNLOADING -> END, and forget the version; holds ``_lock``."""
        self._move(entry, State.END)
        model = self._models.get(entry.id.model, {})
        if model.get(entry.id.version) is entry:
            del model[entry.id.version]
        if not model:
            self._models.pop(entry.id.model, None)

    def _move(self, entry: _Version, state: State) -> None:
        """Transition ``entry``; caller holds ``_lock``."""
        check_transition(entry.state, state)
        previous, entry.state = entry.state, state
        error = entry.error if state is State.FAILED else None
        self._pending.append(Event(entry.id, previous, state, error, time.monotonic()))
        self._changed.notify_all()

    def _deliver(self) -> None:
        """Hand queued events to listeners, outside ``_lock``, in transition order.

        One thread delivers at a time; a thread that finds another delivering leaves its
        events to it, so a listener that waits on the host (an unload from a listener)
        never deadlocks with a thread that is only trying to deliver.
        """
        with self._lock:
            if self._delivering:
                return
            self._delivering = True
        try:
            while True:
                with self._lock:
                    if not self._pending:
                        self._delivering = False
                        return
                    event = self._pending.popleft()
                    listeners = list(self._listeners)
                for listener in listeners:
                    try:
                        listener(event)
                    except Exception:
                        _log.exception("a listener raised on %s (%s)", event.id, event.state.name)
        except BaseException:
            with self._lock:
                self._delivering = False
            raise

    def _wait(self, predicate: Callable[[], bool], deadline: float | None) -> bool:
        """Wait on ``_changed`` (caller holds ``_lock``) until ``predicate`` holds; False if
        ``deadline`` came first."""
        while not predicate():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._changed.wait(remaining)
        return True

    def _not_found(self, name: str, version: int | None) -> str:
        versions = self._models.get(name)
        if not versions:
            return f"model {name!r} is not loaded; loaded models: {sorted(self._models)}"
        return f"model {name!r} has no version {version}; it has {sorted(versions)}"

    def _unavailable(self, name: str, entries: list[_Version]) -> Unavailable:
        if len(entries) == 1 and isinstance(entries[0].error, WorkerDied):
            died = entries[0].error
            return WorkerDied(
                f"{died.message}; it is {entries[0].state.value}",
                died.exitcode,
                recycled=died.recycled,
            )
        routed = self._routes.get(name)
        parts = [
            f"version {e.id.version} is {e.state.value}" + (f" ({e.error})" if e.error else "")
            for e in sorted(entries, key=lambda e: e.id.version)
        ]
        where = f" (requests route to version {routed})" if routed is not None else ""
        return Unavailable(f"model {name!r} has no available version{where}: {'; '.join(parts)}")
