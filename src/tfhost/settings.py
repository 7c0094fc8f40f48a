"""The one settings object, built by the caller (or the CLI) and passed down.

Settings are checked when they are made: a bad value fails where it was written, with
``InputError`` naming the field, not later when a worker starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tfhost.errors import InputError


def _non_negative_int(owner: str, name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{owner}.{name} must be a non-negative int, got {value!r}")


def _positive_number(owner: str, name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InputError(f"{owner}.{name} must be a positive number of seconds, got {value!r}")


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker process is set up, applied before TensorFlow initialises in it.

    Given per host (``HostSettings.worker``, the default) or per model
    (``Host.load(..., worker=...)``); the models of one group share one worker, so they
    share its settings.
    """

    intra_op_threads: int | None = 1
    inter_op_threads: int | None = 1
    cuda_visible_devices: str | None = None
    gpu_memory_growth: bool = False
    gpu_memory_limit_mib: int | None = None
    # How long a waiting side (a caller awaiting its reply, the worker awaiting the next
    # request on a lane) polls before it sleeps: at most this much CPU per call buys
    # back an idle core's wake-up, which costs more than the whole exchange on a small
    # model. 0 turns polling off.
    spin_us: int = 500
    # Bounded restarts of a worker that died, with exponential backoff between tries.
    # How much lower (a ``nice`` increment) a worker's start and loads run than its
    # serving, so loading a model does not take the cores of the models already serving
    # (bench/fleet.py). 0 loads at the serving priority.
    load_nice: int = 10
    max_restarts: int = 3
    restart_backoff_s: float = 0.5
    # A worker that served this long before it died starts a fresh count of restarts:
    # max_restarts bounds a crash loop, not the number of crashes in a version's life.
    restart_window_s: float = 60.0
    start_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        owner = "WorkerSettings"
        if self.gpu_memory_growth and self.gpu_memory_limit_mib is not None:
            raise InputError(
                f"{owner}: gpu_memory_growth and gpu_memory_limit_mib exclude each other "
                f"(TensorFlow refuses memory growth on a GPU with a memory limit); set one"
            )
        for name in ("intra_op_threads", "inter_op_threads", "gpu_memory_limit_mib"):
            _non_negative_int(owner, name, getattr(self, name), optional=True)
        for name in ("spin_us", "max_restarts", "load_nice"):
            _non_negative_int(owner, name, getattr(self, name), optional=False)
        if self.load_nice > 19:
            raise InputError(
                f"{owner}.load_nice must be 0 to 19 (a nice increment), got {self.load_nice}"
            )
        if self.gpu_memory_limit_mib == 0:
            raise InputError(f"{owner}.gpu_memory_limit_mib must be at least 1 MiB, got 0")
        if self.cuda_visible_devices is not None and not isinstance(self.cuda_visible_devices, str):
            raise InputError(
                f"{owner}.cuda_visible_devices must be a string such as '0' or '0,1' "
                f"('' hides every GPU), got {self.cuda_visible_devices!r}"
            )
        for name in ("restart_window_s", "start_timeout_s"):
            _positive_number(owner, name, getattr(self, name), optional=False)
        if isinstance(self.restart_backoff_s, bool) or not (
            isinstance(self.restart_backoff_s, (int, float)) and self.restart_backoff_s >= 0
        ):
            raise InputError(
                f"{owner}.restart_backoff_s must be a non-negative number of seconds, "
                f"got {self.restart_backoff_s!r}"
            )


@dataclass(frozen=True)
class HostSettings:
    default_isolation: str = "inline"
    # Per-request deadline, in seconds, for process-isolated models; None waits as long
    # as it takes. An absolute ``deadline=`` on a call overrides it.
    request_timeout_s: float | None = None
    # How long ``Host.close`` waits for loads in progress to finish and for handles to be
    # released before it unloads anyway; a handle used after that fails ``Unavailable``.
    drain_timeout_s: float = 30.0
    # Threads that run TensorFlow for async callers (``Host.predict_async``).
    serving_threads: int = 8
    worker: WorkerSettings = field(default_factory=WorkerSettings)

    def __post_init__(self) -> None:
        owner = "HostSettings"
        if self.default_isolation not in ("inline", "process"):
            raise InputError(
                f"{owner}.default_isolation must be 'inline' or 'process', "
                f"got {self.default_isolation!r}"
            )
        _positive_number(owner, "request_timeout_s", self.request_timeout_s, optional=True)
        _positive_number(owner, "drain_timeout_s", self.drain_timeout_s, optional=False)
        _non_negative_int(owner, "serving_threads", self.serving_threads, optional=False)
        if self.serving_threads == 0:
            raise InputError(f"{owner}.serving_threads must be at least 1, got 0")
        if not isinstance(self.worker, WorkerSettings):
            raise InputError(
                f"{owner}.worker must be a WorkerSettings, got {type(self.worker).__name__}"
            )
