"""How a model's requests are batched: TensorFlow Serving's ``BatchingParameters``, by its
names, checked when made."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from tfhost.errors import InputError

# TensorFlow Serving's defaults for a BatchingParameters field left unset
# (shared_batch_scheduler.h QueueOptions; num_batch_threads is its MaxParallelism).
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_MAX_ENQUEUED_BATCHES = 10

# The batch sizes ``max_batch_size = "auto"`` tries, doubling from 1.
AUTO_LARGEST = 1024


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class BatchingSettings:
    """Dynamic batching for one model: requests that arrive together run as one call.

    - ``max_batch_size``: the most rows one call takes; ``"auto"`` measures the model at
      load (latency per batch size, doubling from 1) and takes the largest size whose
      call stays within ``auto_latency_bound`` times a one-row call.
    - ``batch_timeout_micros``: how long the first request of a batch waits for more; 0
      takes what is queued and never waits, so batching adds no latency when alone.
    - ``max_enqueued_batches``: the queue holds at most this many full batches of rows;
      a request beyond it is refused (Unavailable) at once.
    - ``num_batch_threads``: batches run at once (default: the cores this process may use).
    - ``allowed_batch_sizes``: a batch is padded up to the next of these (increasing, the
      last equal to ``max_batch_size``), so the model sees only these sizes.
    - ``pad_variable_length_inputs``: requests whose inputs differ beyond the first
      dimension are padded to the largest (with each tensor's first element, as TF
      Serving does) instead of going to different batches; outputs keep the padded shape.
    """

    max_batch_size: int | Literal["auto"] = DEFAULT_MAX_BATCH_SIZE
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = DEFAULT_MAX_ENQUEUED_BATCHES
    num_batch_threads: int | None = None
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    auto_latency_bound: float = 2.0

    def __post_init__(self) -> None:
        owner = "BatchingSettings"
        if self.max_batch_size != "auto":
            _positive_int(owner, "max_batch_size", self.max_batch_size, '(or "auto")')
        _non_negative_int(owner, "batch_timeout_micros", self.batch_timeout_micros)
        _positive_int(owner, "max_enqueued_batches", self.max_enqueued_batches)
        if self.num_batch_threads is not None:
            _positive_int(owner, "num_batch_threads", self.num_batch_threads)
        if not isinstance(self.pad_variable_length_inputs, bool):
            raise InputError(
                f"{owner}.pad_variable_length_inputs must be true or false, "
                f"got {self.pad_variable_length_inputs!r}"
            )
        sizes = self.allowed_batch_sizes
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, (list, tuple)):
            raise InputError(f"{owner}.allowed_batch_sizes must be a list of sizes, got {sizes!r}")
        object.__setattr__(self, "allowed_batch_sizes", tuple(sizes))
        for size in self.allowed_batch_sizes:
            _positive_int(owner, "allowed_batch_sizes", size)
        if list(self.allowed_batch_sizes) != sorted(set(self.allowed_batch_sizes)):
            raise InputError(
                f"{owner}.allowed_batch_sizes must increase, got {list(self.allowed_batch_sizes)}"
            )
        if self.allowed_batch_sizes:
            if self.max_batch_size == "auto":
                raise InputError(
                    f'{owner}: max_batch_size "auto" picks its own size; it cannot be given '
                    f"allowed_batch_sizes (whose last entry must equal max_batch_size)"
                )
            if self.allowed_batch_sizes[-1] != self.max_batch_size:
                # TF Serving's rule (bundle_factory_util.cc), and its wording.
                raise InputError(
                    f"{owner}: the last entry in allowed_batch_sizes must match "
                    f"max_batch_size; last entry was {self.allowed_batch_sizes[-1]}; "
                    f"expected {self.max_batch_size}"
                )
        bound = self.auto_latency_bound
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not bound >= 1:
            raise InputError(f"{owner}.auto_latency_bound must be a number >= 1, got {bound!r}")

    @property
    def threads(self) -> int:
        return self.num_batch_threads if self.num_batch_threads is not None else _cores()

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_batch_size": self.max_batch_size,
            "batch_timeout_micros": self.batch_timeout_micros,
            "max_enqueued_batches": self.max_enqueued_batches,
            "num_batch_threads": self.threads,
            "allowed_batch_sizes": list(self.allowed_batch_sizes),
            "pad_variable_length_inputs": self.pad_variable_length_inputs,
        }


def _positive_int(owner: str, name: str, value: object, extra: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        more = f" {extra}" if extra else ""
        raise InputError(f"{owner}.{name} must be a positive int{more}, got {value!r}")


def _non_negative_int(owner: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{owner}.{name} must be a non-negative int, got {value!r}")
