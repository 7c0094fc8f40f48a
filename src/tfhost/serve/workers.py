"""The threads gRPC calls run on.

grpcio's sync server hands each call to a thread of a pool while its C core reads and
writes the sockets without the GIL (grpc.aio's event loop spent 0.85-1.25 ms of CPU per
call here, and handed calls on one at a time), and calls to a batched model wait in
their batch side by side, one per thread. The plane's operations are
coroutines, which REST awaits on its event loop; on a pool thread one runs to completion
on an event loop of that thread's own (about 15 µs a call), so both protocols share one
code path. ``on_worker`` tells the plane that the thread it is on may block: nothing else
waits on that loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

_T = TypeVar("_T")

_local = threading.local()


def default_threads() -> int:
    """TensorFlow Serving's ``--grpc_max_threads`` default (4 per core), and at least 16:
    a batched model's batch holds at most as many gRPC requests as there are threads.
    Measured here (2 cores, 16 clients of a grpc.aio client, 3 s slices alternated): with
    4 threads the wide model's batched calls/s fell from 418 to 268 (8 threads: 353).
    Fewer threads do serve small unbatched models faster, tfhost and a bare grpcio
    servicer alike (1-row MLP: 4 threads 2,088 calls/s against 1,436 with 16, the bare
    servicer 2,097-2,425 against 1,274-1,437): grpcio's threads contend for the GIL, and
    that costs more than the model. ``--grpc-threads`` picks for a fleet that does not
    batch."""
    return max(16, 4 * (os.cpu_count() or 1))


class WorkerLoop(asyncio.SelectorEventLoop):
    """The event loop of one gRPC pool thread."""


class Pool(ThreadPoolExecutor):
    """grpcio's thread pool, each thread with its own ``WorkerLoop``, closed with the pool."""

    def __init__(self, threads: int) -> None:
        self._loops: list[WorkerLoop] = []
        self._loops_lock = threading.Lock()
        super().__init__(threads, thread_name_prefix="tfhost-grpc", initializer=self._start)

    def _start(self) -> None:
        loop = WorkerLoop()
        _local.loop = loop
        with self._loops_lock:
            self._loops.append(loop)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait, cancel_futures=cancel_futures)
        if wait:  # the threads have ended: nothing runs their loops any more
            with self._loops_lock:
                for loop in self._loops:
                    loop.close()
                self._loops.clear()


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


async def blocking(function: Callable[..., _T], *args: Any) -> _T:
    """``function(*args)``, which may block, without blocking an event loop others wait
    on: on a pool thread right here, elsewhere on a thread."""
    if on_worker():
        return function(*args)
    return await asyncio.to_thread(function, *args)
