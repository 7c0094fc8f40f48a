"""The one settings object, built by the caller (or the CLI) and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker process is set up, applied before TensorFlow initialises in it."""

    intra_op_threads: int | None = 1
    inter_op_threads: int | None = 1
    cuda_visible_devices: str | None = None
    gpu_memory_growth: bool = False
    gpu_memory_limit_mib: int | None = None
    # Bounded restarts of a worker that died, with exponential backoff between tries.
    # How long a waiting side (a caller awaiting its reply, the worker awaiting the next
    # request on a lane) polls before it sleeps: at most this much CPU per call buys
    # back an idle core's wake-up, which costs more than the whole exchange on a small
    # model. 0 turns polling off.
    spin_us: int = 500
    max_restarts: int = 3
    restart_backoff_s: float = 0.5
    # A worker that served this long before it died starts a fresh count of restarts:
    # max_restarts bounds a crash loop, not the number of crashes in a version's life.
    restart_window_s: float = 60.0
    start_timeout_s: float = 120.0


@dataclass(frozen=True)
class HostSettings:
    default_isolation: str = "inline"
    # Per-request deadline for process-isolated models; None waits as long as it takes.
    request_timeout_s: float | None = None
    worker: WorkerSettings = field(default_factory=WorkerSettings)
