"""The fleet: a repository that runs itself on a Host.

Three jobs, three pieces (TensorFlow Serving's split): the repository (``config`` and
``repository``) says which versions should be loaded, the policy (``policy.plan``) says
what to do next, and this module does it. One thread, the fleet's loop, is the only place
that sleeps or schedules: each cycle it reads the config (keeping the last good one),
scans the repository, asks the policy for actions and applies them; loads run on a small
pool so one slow load never stops the loop, and at most ``max_parallel_loads`` run at once
so loading never starves serving.

Thread safety: every public method may be called from any thread. ``_lock`` guards
``_wants``, ``_sources``, ``_on_disk``, ``_demands``, ``_retries``, ``_loading``,
``_refusals``, ``_labels``, ``_load_errors``, ``_routes``, ``_since``, ``_config``, ``_scanner``,
``_config_error``, ``_kept`` and ``_wiring``.
The Host has its own lock; the fleet never holds ``_lock`` while it calls the Host.

Guarantees:
1. A request never fails because of a swap: a new version is loaded while the old one
   serves, traffic moves once it is AVAILABLE, the old one drains its handles, then
   unloads (the policy's guarantee 1, the Host's guarantee 2).
2. A bad config never takes the fleet down: its error is logged and kept
   (``config_error``), and the last good config keeps serving.
3. A failed load is retried with bounded backoff, its error visible in ``models()``.
4. A request for a lazy or evicted model loads it; concurrent requests wait on one load.
5. A pipeline (``[pipelines.NAME]``, see ``pipeline``) is served like a model: ``acquire``
   takes a handle on each of its steps (loading lazy ones), ``predict`` runs them in order.
   The models that configured pipelines use are never evicted, and one whose versions
   leave the repository while a configured pipeline names it is not unloaded: an error
   naming the pipelines is logged, and the versions it has loaded keep serving until no
   configured pipeline names it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from rich.console import Console

from tfhost.batching import BatchingSettings
from tfhost.errors import InputError, NotFound, ResourceExhausted, TfhostError, Unavailable
from tfhost.fleet.config import ConfigError, FleetConfig, ModelConfig, PipelineConfig, read_config
from tfhost.fleet.pipeline import PipelineHandle, open_pipeline, wire
from tfhost.fleet.policy import Demand, Evict, Load, Refuse, Retry, Route, Unload, Want, plan
from tfhost.fleet.progress import live
from tfhost.fleet.repository import Scanner, Versions
from tfhost.host import Handle, Host, ModelInfo
from tfhost.settings import HostSettings
from tfhost.specs import DEFAULT_SIGNATURE
from tfhost.state import Event, State, VersionId

_log = logging.getLogger(__name__)


class MustWait(Unavailable):
    """``Fleet.acquire(wait=False)``: the model is loading, or must be loaded first."""


@dataclass(frozen=True)
class FleetSettings:
    """How the fleet runs. ``poll_s`` is TF Serving's ``--file_system_poll_wait_seconds``
    (None: look at the repository once, then only when a request or ``reload`` asks);
    ``reread_config`` False reads the config file once (TF Serving's
    ``--model_config_file_poll_wait_seconds=0``), then only on ``reload``."""

    poll_s: float | None = 2.0
    reread_config: bool = True
    max_parallel_loads: int = 2
    retry_backoff_s: float = 1.0
    max_retries: int = 5
    demand_timeout_s: float = 120.0  # how long a request waits for a lazy model's load
    # TF Serving's --allow_version_labels_for_unavailable_models: a label may point at a
    # version still loading (its requests then fail until it is AVAILABLE).
    labels_for_unavailable: bool = False
    memory_budget: int | None = None  # bytes; overrides the config's [host] memory_budget
    # What a worker process of its own costs before any model (TensorFlow imported: about
    # 190-250 MiB measured here), added to a process-isolated model's estimate until its
    # load is measured.
    worker_estimate_bytes: int = 256 << 20
    # The batching of every model whose config says nothing of batching (TF Serving's
    # --enable_batching with its --batching_parameters_file); None: unbatched.
    batching: BatchingSettings | None = None
    # Every model lazy, whatever its config says: loaded on its first request only (a Ray
    # Serve replica loads just the models routed to it).
    lazy: bool = False

    def __post_init__(self) -> None:
        if self.poll_s is not None and not self.poll_s > 0:
            raise InputError(f"FleetSettings.poll_s must be positive, got {self.poll_s!r}")
        if self.max_parallel_loads < 1:
            raise InputError(
                f"FleetSettings.max_parallel_loads must be at least 1, got "
                f"{self.max_parallel_loads!r}"
            )


class Fleet:
    """Serve every model of a repository, following it as it changes.

    ``with Fleet("models/") as fleet: fleet.predict("ranker", {"x": x})``
    """

    def __init__(
        self,
        repository: str | Path,
        *,
        config_file: str | Path | None = None,
        settings: FleetSettings | None = None,
        host: Host | None = None,
        host_settings: HostSettings | None = None,
        config: FleetConfig | None = None,
    ) -> None:
        """``config``, when given, is served instead of reading a config file (as one
        given to ``reload``)."""
        self.repository = Path(repository).absolute()
        if not self.repository.is_dir():
            raise NotFound(f"no model repository at {self.repository}")
        self.settings = settings or FleetSettings()
        self._config_file = None if config_file is None else Path(config_file).absolute()
        self._owns_host = host is None
        self.host = host if host is not None else Host(host_settings)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._cycling = threading.Lock()  # held through a whole cycle
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._config: FleetConfig | None = None
        self._config_error: str | None = None
        self._scanner: Scanner | None = None
        self._wants: dict[str, Want] = {}
        self._sources: dict[str, ModelConfig] = {}
        self._on_disk: dict[str, Versions] = {}
        self._demands: dict[tuple[str, int | None], Demand] = {}
        self._retries: dict[tuple[str, int], Retry] = {}
        self._loading: set[tuple[str, int]] = set()
        self._refusals: dict[tuple[str, int], str] = {}  # why a load could not fit
        self._labels: dict[tuple[str, str], int] = {}  # (model, label) -> version it serves
        self._load_errors: dict[str, tuple[float, TfhostError]] = {}  # the last failed load
        self._since: dict[VersionId, float] = {}  # when each version entered its state
        self._routes: dict[str, int | None] = {}
        # Models kept for the pipelines that use them after their versions left the
        # repository: model -> the versions kept (logged once per change).
        self._kept: dict[str, frozenset[int]] = {}
        self._wiring: dict[str, str | None] = {}  # pipeline -> its wiring error, last logged
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self.settings.max_parallel_loads, thread_name_prefix="tfhost-fleet-load"
        )
        self._unsubscribe = self.host.subscribe(self._heard)
        self._loop: threading.Thread | None = None
        self._evictions = 0
        self._given = config  # a config given to reload(), over the file's
        # Models unloaded on request, until loaded again: the versions they served then.
        self._held: dict[str, tuple[int, ...]] = {}

    # -- life ----------------------------------------------------------------------

    def start(
        self, *, wait: bool = True, timeout: float | None = None, progress: Console | None = None
    ) -> Fleet:
        """Read the repository and start following it. With ``wait``, return once every
        wanted (non-lazy) version has settled (AVAILABLE or FAILED); with ``progress``,
        show the models' states live on that console meanwhile."""
        view = contextlib.nullcontext() if progress is None else live(self.models, progress)
        with view:
            self._read_config(raise_errors=True)
            self._cycle()
            self._loop = threading.Thread(target=self._run, name="tfhost-fleet", daemon=True)
            self._loop.start()
            if wait:
                self.wait_settled(timeout)
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._loop is not None:
            self._loop.join()
        self._pool.shutdown(wait=True)
        self._unsubscribe()
        if self._owns_host:
            self.host.close()

    def __enter__(self) -> Fleet:
        return self if self._loop is not None else self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def reload(self, config: FleetConfig | None = None) -> None:
        """Read the config and the repository now, and act on them. A bad config raises
        ``ConfigError`` and the last good one keeps serving.

        ``config`` (TF Serving's HandleReloadConfigRequest) is put in force instead of
        the config file, until ``reload()`` is called without one."""
        with self._lock:
            self._given = config
        self._read_config(raise_errors=True)
        self._cycle()

    @property
    def config_error(self) -> str | None:
        """The error of the last config read, None once a read succeeded."""
        with self._lock:
            return self._config_error

    def wait_settled(self, timeout: float | None = None) -> None:
        """Block until no wanted, non-lazy version is missing or loading."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._settled():
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the fleet did not settle within {timeout:g} s")
            self._wake.set()
            with self._changed:
                self._changed.wait(0.05)

    # -- serving ------------------------------------------------------------------------

    def acquire(
        self,
        name: str,
        version: int | None = None,
        label: str | None = None,
        *,
        wait: bool = True,
    ) -> Handle | PipelineHandle:
        """A handle on ``name`` (at ``version``, or the version ``label`` points to); a
        model that is lazy or was evicted is loaded first. For a pipeline, a handle on
        every one of its steps (the versions their requests reach; a pipeline has no
        versions or labels of its own).

        With ``wait=False`` a request that would have to wait for a load raises
        ``MustWait`` instead of blocking (an event loop asks this way first, then
        waits on a thread)."""
        with self._lock:
            pipeline = None if self._config is None else self._config.pipelines.get(name)
            source = None if self._config is None else self._config.source
        if pipeline is None:
            return self._acquire_model(name, version, label, wait=wait)
        if version is not None or label is not None:
            raise InputError(
                f"pipeline {name!r} has no versions or labels of its own; its steps "
                f"{list(pipeline.steps)} serve the versions their own requests reach"
            )
        return open_pipeline(
            pipeline,
            functools.partial(self._acquire_model, wait=wait),
            request_timeout_s=self.host.settings.request_timeout_s,
            file=source,
        )

    def _acquire_model(
        self, name: str, version: int | None = None, label: str | None = None, *, wait: bool
    ) -> Handle:
        if version is not None and label is not None:
            raise InputError(f"model {name!r}: give a version or a label, not both")
        if label is not None:
            version = self._resolve_label(name, label)
        try:
            return self.host.acquire(name, version)
        except NotFound as exc:  # not loaded: lazy, or evicted
            if not self._wanted(name, version):
                raise
            first: TfhostError = exc
        except Unavailable as exc:  # loading: wait for it; failed: say so now
            if not self._loading_now(name, version):
                raise
            first = exc
        if not wait:
            raise MustWait(f"model {name!r}: waiting for its load") from first
        return self._on_demand(name, version, first)

    def predict(
        self,
        name: str,
        inputs: Mapping[str, Any],
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = DEFAULT_SIGNATURE,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> dict[str, np.ndarray]:
        with self.acquire(name, version, label) as handle:
            return handle.predict(inputs, signature=signature, timeout=timeout, deadline=deadline)

    def models(self) -> list[ModelInfo]:
        return self.host.models()

    def pipelines(self) -> dict[str, PipelineConfig]:
        """The pipelines of the config in force, by name."""
        with self._lock:
            return {} if self._config is None else dict(self._config.pipelines)

    def metadata(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> dict[str, Any]:
        """``Host.metadata`` of a model (by version or label), or a pipeline's: its
        signature and, under ``"pipeline"``, each step's model, version and feeds. Loads
        what is lazy, as a request would."""
        with self.acquire(name, version, label) as handle:
            if isinstance(handle, PipelineHandle):
                return handle.metadata()
            return self.host.metadata(name, handle.id.version)

    def unload_model(self, name: str) -> None:
        """Unload every version of ``name`` and keep it unloaded, whatever the repository
        holds, until ``load_model`` (the KServe V2 / Triton repository extension)."""
        self._configured(name)
        served = tuple(
            sorted(i.version for i in self.host.status(name) if i.state is State.AVAILABLE)
        )
        with self._lock:
            self._held[name] = self._held.get(name) or served
        self._cycle()

    def load_model(self, name: str) -> None:
        """Serve ``name`` again as its config says, and return once a version is
        AVAILABLE (loading it now if it is lazy); its load error if it fails."""
        self._configured(name)
        with self._lock:
            self._held.pop(name, None)
        self._cycle()
        with self.acquire(name):
            pass

    def settled(self) -> bool:
        """Every wanted, non-lazy version is AVAILABLE or FAILED (nothing to wait for)."""
        return self._settled()

    def configured(self) -> list[str]:
        """The models of the config in force, by name."""
        with self._lock:
            return [] if self._config is None else sorted(self._config.models)

    def knows(self, name: str) -> bool:
        """Whether the config in force has a model or pipeline of that name."""
        with self._lock:
            config = self._config
        return config is not None and (name in config.models or name in config.pipelines)

    def held(self) -> dict[str, tuple[int, ...]]:
        """The models ``unload_model`` keeps unloaded, with the versions they served when
        it was asked (Triton's repository index still names them)."""
        with self._lock:
            return dict(self._held)

    def _configured(self, name: str) -> None:
        with self._lock:
            config = self._config
        if config is None or name not in config.models:
            known = [] if config is None else sorted(config.models)
            raise NotFound(f"model {name!r} is not in the repository (it has {known})")

    @property
    def evictions(self) -> int:
        """Versions unloaded to keep within the memory budget, since the fleet started."""
        with self._lock:
            return self._evictions

    @property
    def memory_budget(self) -> int | None:
        """The budget in force, in bytes (the settings' over the config's)."""
        with self._lock:
            config = self._config
        if self.settings.memory_budget is not None:
            return self.settings.memory_budget
        return None if config is None else config.memory_budget

    def labels(self, name: str) -> dict[str, int]:
        with self._lock:
            want = self._wants.get(name)
            return {} if want is None else dict(want.labels)

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if self.settings.reread_config:
                    self._read_config(raise_errors=False)
                self._cycle()
            except Exception:  # the loop must outlive any one cycle's surprise
                _log.exception("fleet cycle failed; trying again next poll")

    def _read_config(self, *, raise_errors: bool) -> None:
        try:
            with self._lock:
                given = self._given
            config = given or read_config(self.repository, self._config_file)
        except ConfigError as exc:
            with self._lock:
                changed = self._config_error != str(exc)
                self._config_error = str(exc)
                keep = self._config is not None
            if changed:
                _log.error("config: %s%s", exc, "; the last good config keeps serving" * keep)
            if raise_errors or not keep:
                raise
            return
        with self._lock:
            previous = self._config
            if self._scanner is None:  # what is there at start-up is served
                self._scanner = Scanner(config, trust_first_scan=True)
            elif self._config != config:
                self._scanner.update(config)
            self._config = config
            self._config_error = None
        if previous is not None and previous != config:
            for name, keys in _load_changes(previous, config).items():
                _log.warning(
                    "config: model %r changes %s; the versions it serves keep what they "
                    "were loaded with until they load again (a new version, or a V2 "
                    "repository unload and load)",
                    name,
                    ", ".join(keys),
                )

    def _cycle(self) -> None:
        # One cycle at a time: the loop's and a caller's reload() would plan the same loads.
        with self._cycling:
            self._cycle_once()

    def _cycle_once(self) -> None:
        with self._lock:
            config, scanner = self._config, self._scanner
            held = set(self._held)
        if config is None or scanner is None:
            return
        on_disk = scanner.scan()
        wants = {
            name: Want(
                model=name,
                versions=model.version_policy.choose(on_disk[name].ready)
                if name in on_disk and name not in held
                else frozenset(),
                labels=dict(model.labels),
                lazy=model.lazy or self.settings.lazy,
                pinned=model.pinned,
                estimate_bytes=_estimates(
                    on_disk.get(name),
                    self.settings.worker_estimate_bytes
                    if (model.isolation or self.host.settings.default_isolation) == "process"
                    and model.group is None
                    else 0,
                ),
            )
            for name, model in config.models.items()
        }
        budget = self.settings.memory_budget or config.memory_budget
        with self._lock:
            demands = list(self._demands.values())
            retries = dict(self._retries)
            loading = set(self._loading)
            routes = dict(self._routes)
        snapshot = self.host.models()  # after ``loading``: a load done meanwhile is in it
        piped = self._keep_for_pipelines(config, wants, snapshot)
        with self._lock:
            self._wants, self._sources, self._on_disk = wants, dict(config.models), on_disk
        actions = plan(
            wants,
            snapshot,
            routes=routes,
            demands=demands,
            retries=retries,
            budget=budget,
            now=time.monotonic(),
            backoff_s=self.settings.retry_backoff_s,
            max_retries=self.settings.max_retries,
            in_use_by_pipelines=piped,
        )
        for action in actions:
            if isinstance(action, Load):
                if (action.model, action.version) not in loading:
                    self._start_load(action)
            elif isinstance(action, Route):
                self.host.route(action.model, action.version)
                with self._lock:
                    self._routes[action.model] = action.version
                _log.info("route %s -> %s (%s)", action.model, action.version, action.reason)
            elif isinstance(action, (Unload, Evict)):
                if isinstance(action, Evict):
                    with self._lock:
                        self._evictions += 1
                self._unload(action.model, action.version, action.reason)
            elif isinstance(action, Refuse):
                self._refuse(action)
        self._check_wiring(config, snapshot, routes)

    def _keep_for_pipelines(
        self, config: FleetConfig, wants: dict[str, Want], snapshot: list[ModelInfo]
    ) -> frozenset[str]:
        """The models configured pipelines use. One of them whose ``Want`` lost every
        version (its versions left the repository) stays wanted with the versions it has
        loaded or loading now, so a pipeline that needs it never loses it (guarantee 5);
        ``wants`` is changed in place."""
        users: dict[str, list[str]] = {}
        for pipeline in config.pipelines.values():
            for step in pipeline.steps:
                users.setdefault(step, []).append(pipeline.name)
        kept: dict[str, frozenset[int]] = {}
        for name in users:
            want = wants.get(name)
            if want is None or want.versions:
                continue
            loaded = frozenset(
                m.version
                for m in snapshot
                if m.name == name and m.state in (State.LOADING, State.AVAILABLE)
            )
            if loaded:
                kept[name] = loaded
                wants[name] = dataclasses.replace(want, versions=loaded)
        with self._lock:
            before, self._kept = self._kept, kept
        for name, versions in sorted(kept.items()):
            if before.get(name) != versions:
                _log.error(
                    "model %s has no version in the repository any more, but pipeline(s) %s "
                    "use it: it is not unloaded; version(s) %s keep serving until no "
                    "configured pipeline names it",
                    name,
                    ", ".join(sorted(users[name])),
                    ", ".join(str(v) for v in sorted(versions)),
                )
        for name in sorted(set(before) - set(kept)):
            _log.info("model %s is no longer kept for pipelines", name)
        return frozenset(users)

    def _check_wiring(
        self, config: FleetConfig, snapshot: list[ModelInfo], routes: Mapping[str, int | None]
    ) -> None:
        """Log, once per change, what is wrong with a pipeline's wiring as soon as all its
        steps are AVAILABLE (their signatures are known only then); a request for it
        raises the same error."""
        serving: dict[str, ModelInfo] = {}
        for info in snapshot:  # what a request reaches: the routed version, else the highest
            if info.state is not State.AVAILABLE:
                continue
            routed = routes.get(info.name)
            if routed is not None:
                if info.version == routed:
                    serving[info.name] = info
            elif info.name not in serving or serving[info.name].version < info.version:
                serving[info.name] = info
        found: dict[str, str | None] = {}
        for name, pipeline in config.pipelines.items():
            if not all(step in serving for step in pipeline.steps):
                continue
            signatures = [serving[s].signatures.get(DEFAULT_SIGNATURE) for s in pipeline.steps]
            try:
                wire(pipeline, signatures, file=config.source)
            except ConfigError as exc:
                found[name] = str(exc)
            else:
                found[name] = None
        with self._lock:
            before = self._wiring
            self._wiring = {**{k: v for k, v in before.items() if k in config.pipelines}, **found}
        for name, error in sorted(found.items()):
            if error is not None and before.get(name) != error:
                _log.error("pipeline %s cannot run: %s", name, error)
            elif error is None and before.get(name, "") is not None:
                steps = config.pipelines[name].steps
                _log.info("pipeline %s: %s", name, " -> ".join(steps))

    def _start_load(self, action: Load) -> None:
        key = (action.model, action.version)
        with self._lock:
            source = self._sources.get(action.model)
            versions = self._on_disk.get(action.model)
            if source is None or versions is None or action.version not in versions.on_disk:
                return
            if key in self._loading:
                return
            self._loading.add(key)
            path = versions.on_disk[action.version]
        _log.info("load %s:%d (%s)", action.model, action.version, action.reason)
        self._pool.submit(self._load, source, action.version, path)

    def _load(self, source: ModelConfig, version: int, path: Path) -> None:
        key = (source.name, version)
        try:
            # ``path`` is the version's own folder (or file): loaded as given, as ``version``.
            self.host.load(
                source.name,
                path,
                version=version,
                custom_objects=source.resolve_custom_objects(),
                preload=source.preload,
                isolation=source.isolation,
                group=source.group,
                worker=source.worker,
                warmup=source.warmup,
                jit_compile=source.jit_compile,
                batching=self.settings.batching
                if source.batching is None
                else source.batching or None,
                **source.format_options,
            )
        except TfhostError as exc:
            with self._lock:
                previous = self._retries.get(key)
                failures = 1 if previous is None else previous.failures + 1
                self._retries[key] = Retry(failures, time.monotonic())
                # The requests waiting on this load hear its error; later ones ask again.
                self._load_errors[source.name] = (time.monotonic(), exc)
                self._demands = {k: d for k, d in self._demands.items() if d.model != source.name}
            _log.error("load %s:%d failed (try %d): %s", source.name, version, failures, exc)
        else:
            with self._lock:
                self._retries.pop(key, None)
                self._demands = {k: d for k, d in self._demands.items() if d.model != source.name}
        finally:
            with self._lock:
                self._loading.discard(key)
                self._changed.notify_all()
            self._wake.set()

    def _unload(self, model: str, version: int, reason: str) -> None:
        _log.info("unload %s:%d (%s)", model, version, reason)
        try:
            self.host.unload(model, version, timeout=self.host.settings.drain_timeout_s)
        except NotFound:
            pass
        except TfhostError as exc:
            _log.warning("unload %s:%d: %s", model, version, exc)

    def _refuse(self, action: Refuse) -> None:
        with self._lock:
            if self._refusals.get((action.model, action.version)) != action.error:
                _log.error("load %s:%d refused: %s", action.model, action.version, action.error)
            refused = [k for k, d in self._demands.items() if d.model == action.model]
            for key in refused:
                del self._demands[key]
            self._refusals[(action.model, action.version)] = action.error
            self._changed.notify_all()

    # -- on demand ----------------------------------------------------------------------

    def _on_demand(self, name: str, version: int | None, first: TfhostError) -> Handle:
        asked = time.monotonic()
        deadline = asked + self.settings.demand_timeout_s
        with self._lock:
            self._demands[(name, version)] = Demand(name, version)
        self._wake.set()
        while True:
            try:
                return self.host.acquire(name, version)
            except (NotFound, Unavailable):
                pass
            with self._lock:
                refused = self._refused(name, version)
                if refused is not None:
                    raise ResourceExhausted(refused)
                failed = self._load_errors.get(name)
                if failed is not None and failed[0] >= asked:
                    raise failed[1]
                if time.monotonic() > deadline:
                    raise Unavailable(
                        f"model {name!r}: not loaded within "
                        f"{self.settings.demand_timeout_s:g} s of the request ({first})"
                    )
                self._changed.wait(0.05)

    def _refused(self, name: str, version: int | None) -> str | None:
        for (model, number), error in self._refusals.items():
            if model == name and (version is None or version == number):
                return error
        return None

    # -- internals -------------------------------------------------------------------------

    def _heard(self, event: Event) -> None:
        with self._lock:
            if event.state is State.AVAILABLE:
                self._refusals.pop((event.id.model, event.id.version), None)
            since = self._since.pop(event.id, None)
            if event.state is not State.END:
                self._since[event.id] = event.time
            self._changed.notify_all()
        took = "" if since is None else f" after {event.time - since:.2f} s"
        memory = ""
        if event.state is State.AVAILABLE:
            with contextlib.suppress(NotFound):  # gone again already
                (info,) = self.host.status(event.id.model, event.id.version)
                if info.memory_bytes is not None:
                    memory = f", {info.memory_bytes / 2**20:.0f} MiB"
        error = f": {event.error}" if event.error is not None else ""
        _log.info(
            "%s: %s -> %s%s%s%s",
            event.id,
            event.previous.value,
            event.state.value,
            took,
            memory,
            error,
        )
        if event.state in (State.AVAILABLE, State.FAILED, State.END):
            self._wake.set()

    def _settled(self) -> bool:
        with self._lock:
            wants = dict(self._wants)
            loading = bool(self._loading)
            refused = set(self._refusals)
        if loading:
            return False
        states = {(m.name, m.version): m.state for m in self.host.models()}
        for want in wants.values():
            if want.lazy:
                continue
            for version in want.versions:
                if (want.model, version) in refused:
                    continue  # it cannot fit: settled as far as waiting goes
                if states.get((want.model, version)) not in (State.AVAILABLE, State.FAILED):
                    return False
        return True

    def _wanted(self, name: str, version: int | None) -> bool:
        """Whether the fleet would load ``version`` (None: some version) of ``name``: not
        for a model unloaded on request or with no version on disk, which nothing loads."""
        with self._lock:
            want = self._wants.get(name)
        if want is None:
            return False
        return bool(want.versions) if version is None else version in want.versions

    def _loading_now(self, name: str, version: int | None) -> bool:
        with self._lock:
            if any(m == name and (version is None or v == version) for m, v in self._loading):
                return True
        return any(
            m.name == name and (version is None or m.version == version)
            for m in self.host.models()
            if m.state is State.LOADING
        )

    def _resolve_label(self, name: str, label: str) -> int:
        """The version ``label`` points to. TF Serving's rule: a label moves to a version
        only once that version is AVAILABLE (until then it keeps its last one), unless
        ``FleetSettings.labels_for_unavailable`` lets it point at a version still loading."""
        with self._lock:
            want = self._wants.get(name)
            if want is None:
                raise NotFound(f"model {name!r} is not in the repository")
            target = want.labels.get(label)
            if target is None:
                # TensorFlow Serving's text and code (INVALID_ARGUMENT), then ours.
                raise InputError(
                    f"Unrecognized servable version label: {label} (model {name!r} has no "
                    f"label {label!r}; its labels: {sorted(want.labels)})"
                )
            held = self._labels.get((name, label))
        if self.settings.labels_for_unavailable:
            return target
        available = {
            m.version for m in self.host.models() if m.name == name and m.state is State.AVAILABLE
        }
        if target in available:
            with self._lock:
                self._labels[(name, label)] = target
            return target
        if held is not None and held in available:
            return held  # the label's last version serves until the new one is AVAILABLE
        raise Unavailable(
            f"model {name!r}: label {label!r} points to version {target}, which is not "
            f"available yet"
        )


# What a version takes when it loads; the rest of a ModelConfig (path, versions, labels,
# lazy, pinned) the fleet acts on at once.
_LOAD_KEYS = (
    "isolation",
    "group",
    "custom_objects",
    "preload",
    "format_options",
    "warmup",
    "jit_compile",
    "worker",
    "batching",
)


def _load_changes(old: FleetConfig, new: FleetConfig) -> dict[str, list[str]]:
    """The models of both configs whose load settings differ, and which."""
    changes = {}
    for name, model in new.models.items():
        before = old.models.get(name)
        if before is None:
            continue
        keys = [k for k in _LOAD_KEYS if getattr(before, k) != getattr(model, k)]
        if keys:
            changes[name] = keys
    return changes


def _estimates(versions: Versions | None, overhead: int) -> dict[int, int]:
    """Each version's estimated memory before it loads: its size on disk (as the scan
    saw it), plus ``overhead`` (a worker process of its own)."""
    if versions is None:
        return {}
    return {number: overhead + size for number, size in versions.sizes.items()}
