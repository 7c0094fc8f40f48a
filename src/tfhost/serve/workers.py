"""The threads gRPC calls run on.

grpcio's sync server hands each call to a thread of a pool while its C core reads and
writes the sockets without the GIL (grpc.aio's event loop spent 0.85-1.25 ms of CPU per
call here, and handed calls on one at a time). The plane's operations are coroutines,
which REST awaits on its event loop; on a pool thread one runs to completion on an event
loop of that thread's own (about 15 µs a call), so both protocols share one code path.
``on_worker`` tells the plane that the thread it is on may block: nothing else waits on
that loop.

A call to a batched model waits in its batch side by side with the others, one per
thread, so the pool needs many threads; but calls that run at once contend for the GIL,
and that costs more than a small model (a bare grpcio servicer, 1-row MLP, 16 clients:
2,097-2,425 calls/s on 4 threads against 1,274-1,437 on 16). So ``Pool`` has two limits:
``threads`` threads, of which ``running`` run calls at once. A call that waits for
something other than this process's CPU (``waiting()``: its batch's answer, a model's
load) gives its place to the next call while it waits. A thread that finishes a call
takes the next queued one itself, so a steady load stays on the same few warm threads
(a thread woken from sleep ran the same TensorFlow call at up to twice the CPU here).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

_T = TypeVar("_T")

_local = threading.local()


def default_threads() -> int:
    """TensorFlow Serving's ``--grpc_max_threads`` default (4 per core), and at least 16:
    a batched model's batch holds at most as many gRPC requests as there are threads.
    Measured here (2 cores, 16 clients of a grpc.aio client, 3 s slices alternated): with
    4 threads the wide model's batched calls/s fell from 418 to 268 (8 threads: 353)."""
    return max(16, 4 * (os.cpu_count() or 1))


def default_running() -> int:
    """gRPC calls running at once, not counting those ``waiting()``: 2 per core. Measured
    here (2 cores, 16 clients, 1-row MLP, against a bare grpcio servicer on 16 threads):
    4 running answered 1.2-1.8x the servicer's calls/s (over four runs), 2 running 1.3x,
    8 running 1.0x; the wide model was served as fast as the servicer with 4 and 8, 0.9x
    with 2."""
    return 2 * (os.cpu_count() or 1)


class WorkerLoop(asyncio.SelectorEventLoop):
    """The event loop of one gRPC pool thread."""


_Call = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class Pool(Executor):
    """grpcio's thread pool: at most ``threads`` threads, each with its own ``WorkerLoop``,
    and at most ``running`` calls running at once, not counting those ``waiting()``."""

    def __init__(self, threads: int, running: int | None = None) -> None:
        self._max_threads = threads
        self._max_running = min(threads, default_running() if running is None else running)
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._calls: deque[_Call] = deque()
        self._running = 0  # calls running, not waiting
        self._idle = 0  # threads asleep, not yet woken
        self._woken = 0  # threads woken (or started) for a call, not yet back in the count
        self._threads: list[threading.Thread] = []
        self._shut = False

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        future: Future[_T] = Future()
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot schedule new calls after shutdown")
            self._calls.append((future, fn, args, kwargs))
            self._wake()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Queued calls still run (unless ``cancel_futures``); then the threads end."""
        with self._lock:
            self._shut = True
            self._woken += self._idle  # every sleeper wakes, and counts itself back
            self._idle = 0
            if cancel_futures:
                while self._calls:
                    self._calls.popleft()[0].cancel()
            self._ready.notify_all()
            threads = list(self._threads)
        if wait:
            for thread in threads:
                thread.join()

    @property
    def limits(self) -> tuple[int, int]:
        """(threads, calls running at once)."""
        return self._max_threads, self._max_running

    # -- a call that waits -------------------------------------------------------------------

    def _pause(self) -> None:
        with self._lock:
            self._running -= 1
            self._wake()

    def _resume(self) -> None:
        # Back at once, even past the limit: the call is nearly done, and making it queue
        # again would hold its client up behind calls that came later.
        with self._lock:
            self._running += 1

    # -- the threads -----------------------------------------------------------------------

    def _wake(self) -> None:
        """One more thread for the queue, where there is room; holds ``_lock``."""
        if not self._calls or self._running + self._woken >= self._max_running:
            return
        if self._idle:
            self._idle -= 1
            self._woken += 1
            self._ready.notify()
        elif len(self._threads) < self._max_threads:
            self._woken += 1
            thread = threading.Thread(
                target=self._work, name=f"tfhost-grpc-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _next(self) -> _Call | None:
        """The next call this thread runs, sleeping until there is one with room to run;
        None once shut down with nothing queued. Holds ``_lock``."""
        while not (self._calls and self._running < self._max_running):
            if self._shut and not self._calls:
                return None
            self._idle += 1
            self._ready.wait()
            self._woken -= 1  # whoever woke this thread counted it there (or shutdown)
        self._running += 1
        return self._calls.popleft()

    def _work(self) -> None:
        loop = WorkerLoop()
        _local.loop = loop
        _local.pool = self
        try:
            with self._lock:
                self._woken -= 1
                call = self._next()
            while call is not None:
                future, fn, args, kwargs = call
                if future.set_running_or_notify_cancel():
                    try:
                        result = fn(*args, **kwargs)
                    except BaseException as exc:
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
                del call, future, fn, args, kwargs  # nothing of a call outlives it here
                with self._lock:
                    self._running -= 1
                    call = self._next()
        finally:
            loop.close()


@contextlib.contextmanager
def waiting() -> Iterator[None]:
    """Around a wait that leaves the CPU to others (a batch's answer, a model's load): on
    a pool thread, the pool starts another call meanwhile."""
    pool: Pool | None = getattr(_local, "pool", None)
    if pool is None:
        yield
        return
    pool._pause()
    try:
        yield
    finally:
        pool._resume()


def run(call: Coroutine[Any, Any, _T]) -> _T:
    """``call`` run to completion on this pool thread's loop."""
    loop: WorkerLoop | None = getattr(_local, "loop", None)
    if loop is None:
        call.close()
        raise RuntimeError("workers.run is for the threads of a workers.Pool")
    return loop.run_until_complete(call)


def on_worker() -> bool:
    """Whether the running event loop is a pool thread's (which may block)."""
    return isinstance(asyncio.get_running_loop(), WorkerLoop)


async def blocking(function: Callable[..., _T], *args: Any, waits: bool = False) -> _T:
    """``function(*args)``, which may block, without blocking an event loop others wait
    on: on a pool thread right here, elsewhere on a thread. ``waits``: it mostly waits
    (for a load, say), and a pool thread is ``waiting()`` meanwhile."""
    if on_worker():
        with waiting() if waits else contextlib.nullcontext():
            return function(*args)
    return await asyncio.to_thread(function, *args)
