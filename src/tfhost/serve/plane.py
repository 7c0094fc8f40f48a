"""The data plane: every protocol's requests reach the fleet through here.

A route decodes its wire format, then asks the plane to admit the request (the in-flight
limit), acquire the model (without blocking the event loop on a load), run the checked
inputs and count the outcome (metrics, Triton's statistics, the status page's rates).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np

from tfhost.errors import Code, DeadlineExceeded, InternalError, TfhostError, Unavailable
from tfhost.fleet import Fleet, MustWait, PipelineHandle
from tfhost.host import Checked, Handle, absolute_deadline
from tfhost.serve import workers
from tfhost.serve.metrics import Metrics
from tfhost.serve.settings import ServeSettings
from tfhost.serve.status import ResponseTooLarge, code_of
from tfhost.sizes import format_bytes

AnyHandle = Handle | PipelineHandle

_RATE_WINDOW_S = 60
# A request alone on the event loop, whose model's calls take longer than this, first lets
# the loop read what came in (two turns of the loop, a few µs each: little beside such a
# call) in case it is not alone after all.
_LOOK_AROUND_OVER_S = 0.001


@dataclass
class VersionStats:
    """What Triton's statistics extension reports for one model version (nanoseconds)."""

    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    inference_count: int = 0  # requests, as Triton counts them for max_batch_size 0
    execution_count: int = 0  # requests that ran the model (a multi-inference: one)
    last_inference_ms: int = 0  # wall clock, milliseconds since the epoch


@dataclass
class ModelActivity:
    """Per model, for the status page: recent request rate and the last error."""

    buckets: list[tuple[int, int]] = field(default_factory=lambda: [(0, 0)] * _RATE_WINDOW_S)
    last_error: tuple[float, str] | None = None

    def count(self, now: float) -> None:
        second = int(now)
        slot = second % _RATE_WINDOW_S
        at, n = self.buckets[slot]
        self.buckets[slot] = (second, n + 1 if at == second else 1)

    def rate(self, now: float) -> float:
        """Requests per second over the last minute."""
        oldest = int(now) - _RATE_WINDOW_S
        return sum(n for at, n in self.buckets if at > oldest) / _RATE_WINDOW_S


class Plane:
    """Admission, model lookup, execution and accounting, shared by REST and gRPC."""

    def __init__(self, fleet: Fleet, settings: ServeSettings) -> None:
        self.fleet = fleet
        self.settings = settings
        self.metrics = Metrics(fleet)
        self.started = time.time()
        self._lock = threading.Lock()
        self._active = 0
        self._latency: dict[tuple[str, int | None, str], float] = {}
        self._stats: dict[tuple[str, int], VersionStats] = {}
        self._activity: dict[str, ModelActivity] = {}
        self._request_timeout = (
            settings.request_timeout_s
            if settings.request_timeout_s is not None
            else fleet.host.settings.request_timeout_s
        )

    @property
    def active(self) -> int:
        return self._active

    def admit(self, protocol: str, model: str = "") -> Ticket:
        """A ticket for one request, or Unavailable when ``max_in_flight`` are in."""
        with self._lock:
            if self._active >= self.settings.max_in_flight:
                self.metrics.refused(protocol)
                raise Unavailable(
                    f"the server is at its limit of {self.settings.max_in_flight} requests "
                    f"in flight; try again"
                )
            self._active += 1
        return Ticket(self, protocol, model)

    async def acquire(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> AnyHandle:
        """The fleet's handle; a load it must wait for is waited for off the event loop
        (``workers.blocking``)."""
        try:
            return self.fleet.acquire(name, version, label, wait=False)
        except MustWait:
            return await workers.blocking(self.fleet.acquire, name, version, label, waits=True)

    async def run(
        self, ticket: Ticket, handle: AnyHandle, checked: Checked
    ) -> dict[str, np.ndarray]:
        """Run checked inputs. A request alone on the server whose model is quick runs
        right here (a thread hop would cost more than the call); others run on the host's
        serving threads, so the event loop reads the next request meanwhile. A batched
        model's request, or one to a model slower than a millisecond, runs here only when,
        after the loop has read what came in, it is still alone: while the loop runs a
        model it reads no other request, so none could run beside it or join its batch
        (the requests of clients that each wait for their answer would arrive one at a
        time). On a gRPC pool thread, which has nothing else to do, a quick
        model's request and a batched one's always run right there (the latter waiting in
        its batch beside the other threads' requests)."""
        key = _key(handle, checked.signature)
        estimate = self._latency.get(key)
        ticket.ran = time.perf_counter()
        took_s = self.settings.inline_under_s if estimate is None else estimate  # unknown: slow
        quick = took_s < self.settings.inline_under_s
        batched = isinstance(handle, Handle) and handle.batched
        if workers.on_worker():
            inline = quick or batched
        else:
            inline = quick and self._active == 1
            if inline and (batched or took_s > _LOOK_AROUND_OVER_S):
                # Alone as far as the plane knows, but requests may be waiting unread: were it
                # run here, this call would keep them unread until done, and the next
                # would find itself alone again (16 clients of the wide model were served
                # one at a time, 140 requests/s against 181 on the serving threads). Two
                # turns of the loop: one reads the sockets, one takes their requests to
                # this plane, where they count as active (and go to the batch).
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                inline = self._active == 1
        if inline:
            # A batched call mostly waits for its batch: a pool thread's next call starts.
            with workers.waiting() if batched else contextlib.nullcontext():
                outputs = handle.run(checked, deadline=ticket.deadline)
        elif ticket.deadline is None:
            outputs = await handle.run_async(checked)
        else:
            # The answer is due at the deadline even where the call cannot be stopped (an
            # inline model): the client hears DeadlineExceeded then, the thread finishes.
            try:
                async with asyncio.timeout(ticket.deadline - time.monotonic()):
                    outputs = await handle.run_async(checked, deadline=ticket.deadline)
            except TimeoutError:
                raise DeadlineExceeded(
                    f"model {key[0]!r} signature {checked.signature!r}: no answer within the "
                    f"request's timeout"
                ) from None
        ticket.done = time.perf_counter()
        took = ticket.done - ticket.ran
        self._latency[key] = took if estimate is None else 0.8 * estimate + 0.2 * took
        ticket.serves(handle)
        self._check_size(key, outputs)
        return outputs

    def run_here(
        self, ticket: Ticket, handle: AnyHandle, checked: Checked
    ) -> dict[str, np.ndarray]:
        """Run checked inputs on this thread, which may block: the tf.Example methods
        (classify, regress, multi-inference), which run one or more signatures off the
        event loop. Counted as one execution of the request, from its first call's start
        to its last call's end."""
        if ticket.ran is None:
            ticket.ran = time.perf_counter()
        outputs = handle.run(checked, deadline=ticket.deadline)
        ticket.done = time.perf_counter()
        self._check_size(_key(handle, checked.signature), outputs)
        return outputs

    def _check_size(self, key: tuple[str, int | None, str], outputs: dict[str, np.ndarray]) -> None:
        limit = self.settings.max_response_bytes
        size = sum(_nbytes(value) for value in outputs.values())
        if size > limit:
            raise ResponseTooLarge(
                f"model {key[0]!r} signature {key[2]!r} answered {format_bytes(size)}, over "
                f"this server's limit of {format_bytes(limit)} on an answer (--max-response)"
            )

    # -- what was counted ----------------------------------------------------------------

    def stats(self) -> dict[tuple[str, int], VersionStats]:
        with self._lock:
            return {key: VersionStats(**vars(value)) for key, value in self._stats.items()}

    def activity(self) -> dict[str, tuple[float, tuple[float, str] | None]]:
        """model -> (requests per second over the last minute, its last error)."""
        now = time.time()
        with self._lock:
            return {
                name: (entry.rate(now), entry.last_error) for name, entry in self._activity.items()
            }

    def _finish(self, ticket: Ticket, error: TfhostError | None) -> None:
        end = time.perf_counter()
        took = end - ticket.start
        code = Code.INTERNAL if error is None else code_of(error)
        status = "OK" if error is None else code.value
        version = ticket.version
        model = ticket.model
        if model and not ticket.served and not self.fleet.knows(model):
            # A name nothing serves counts under "": made-up names in request paths must
            # not grow the metrics' label sets or the page's table without bound.
            model = ""
        with self._lock:
            self._active -= 1
            if model:
                activity = self._activity.get(model)
                if activity is None:
                    activity = self._activity[model] = ModelActivity()
                now = time.time()
                activity.count(now)
                if error is not None:
                    activity.last_error = (now, f"{status}: {error.message}")
            if version is not None:
                stats = self._stats.get((model, version))
                if stats is None:
                    stats = self._stats[(model, version)] = VersionStats()
                ns = int(took * 1e9)
                if error is None:
                    stats.success_count += 1
                    stats.success_ns += ns
                else:
                    stats.fail_count += 1
                    stats.fail_ns += ns
                if ticket.ran is not None and ticket.done is not None:
                    stats.compute_input_ns += int((ticket.ran - ticket.start) * 1e9)
                    stats.compute_infer_ns += int((ticket.done - ticket.ran) * 1e9)
                    stats.compute_output_ns += int((end - ticket.done) * 1e9)
                    stats.execution_count += 1
                    # Triton counts a request to a model without batching (max_batch_size
                    # 0, as tfhost's configs say) as one inference, whatever its rows.
                    stats.inference_count += 1
                    stats.last_inference_ms = int(time.time() * 1000)
        self.metrics.request(ticket.protocol, model, version, status, took)


class Ticket:
    """One admitted request: its deadline, and what the plane counts when it ends."""

    __slots__ = (
        "deadline",
        "done",
        "model",
        "plane",
        "protocol",
        "ran",
        "served",
        "start",
        "version",
    )

    def __init__(self, plane: Plane, protocol: str, model: str) -> None:
        self.plane = plane
        self.protocol = protocol
        self.model = model
        self.version: int | None = None
        self.served = False  # reached a handle: ``model`` is a name the fleet serves
        self.start = time.perf_counter()
        self.deadline = absolute_deadline(plane._request_timeout, None, None)
        self.ran: float | None = None
        self.done: float | None = None

    def serves(self, handle: AnyHandle) -> None:
        """The request reached this handle (counted under its version even if it fails)."""
        self.model, self.version = identity(handle)
        self.served = True

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.plane._finish(self, None)
        elif isinstance(exc, TfhostError):
            self.plane._finish(self, exc)
        else:
            self.plane._finish(self, InternalError(f"{type(exc).__name__}: {exc}"))


def identity(handle: AnyHandle) -> tuple[str, int | None]:
    """The model and version a handle serves (a pipeline has no version)."""
    if isinstance(handle, Handle):
        return handle.id.model, handle.id.version
    return handle.name, None


def _nbytes(value: np.ndarray) -> int:
    """An output's bytes; a string tensor's (an object array holds pointers) are its
    strings' lengths."""
    if value.dtype != object:
        return int(value.nbytes)
    return sum(len(item) if isinstance(item, (bytes, str)) else 8 for item in value.flat)


def _key(handle: AnyHandle, signature: str) -> tuple[str, int | None, str]:
    return (*identity(handle), signature)
