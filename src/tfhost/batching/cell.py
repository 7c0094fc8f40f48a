"""The batching cell: a cell whose runs are merged into batches before they reach the cell
it wraps (inline or process-isolated: one call crosses to the worker per batch).

How a run goes:
1. A request that cannot be merged (see ``merge.rows_of``), that is larger than a batch,
   or whose signature is stateful or was found not batch-major, runs alone, as it would
   unbatched.
2. A request that arrives while the cell is idle (nothing queued, nothing running) runs
   right away in the caller's thread: batching adds nothing when requests come one at a
   time.
3. Otherwise it is queued under its key, and a batch thread takes as many requests of the
   oldest request's key as fit in ``max_batch_size`` rows, after waiting up to
   ``batch_timeout_micros`` for more; 0 takes what is queued.

Guarantees:
1. A request's answer is its own rows of the batch's outputs, and only once every output's
   first dimension was checked to be the batch's rows. A signature whose outputs are not
   batch-major has batching turned off (a warning names the output), and that batch's
   requests are run again one by one.
2. Neighbours never fail each other: inputs were checked before joining; a request whose
   deadline passed while queued fails DeadlineExceeded and is not run; a batch the model
   refuses (InputError, ModelError) is run again request by request, so only the requests
   that fail alone fail.
3. The queue is bounded (``max_enqueued_batches`` batches of rows): a request beyond it is
   refused with Unavailable at once.

Thread safety: ``_lock`` (``_changed``'s) guards ``_queue``, ``_queued_rows``, ``_running``,
``_closed``, ``_alone`` and the counters behind ``stats``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from tfhost.batching.merge import Key, NotBatchMajor, key_of, merge, padded_size, rows_of, split
from tfhost.batching.settings import BatchingSettings
from tfhost.cells import Cell
from tfhost.errors import DeadlineExceeded, InputError, ModelError, TfhostError, Unavailable

_log = logging.getLogger(__name__)

# Upper bounds, in seconds, of the time-in-queue histogram's buckets.
QUEUE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


@dataclass(frozen=True)
class BatchingStats:
    """A batching cell's settings in use and what it has done, for metrics and pages."""

    max_batch_size: int
    chosen: str  # how max_batch_size was set: "configured", or what "auto" measured
    queue_depth: int  # requests waiting now
    batch_sizes: Mapping[int, int]  # rows a model call was given (padding included) -> calls
    queued: int  # requests that went through the queue
    queue_seconds: float  # their time in it, summed
    queue_buckets: tuple[int, ...]  # of them, how many waited at most QUEUE_BUCKETS[i]
    unbatched: Mapping[str, str]  # signature -> why batching is off for it

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_batch_size": self.max_batch_size,
            "chosen": self.chosen,
            "queue_depth": self.queue_depth,
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "queued": self.queued,
            "queue_seconds": self.queue_seconds,
            "unbatched": dict(self.unbatched),
        }


class _Answer(Protocol):
    """Where a queued run's answer goes: the part of ``concurrent.futures.Future`` the
    batch threads use."""

    def set_running_or_notify_cancel(self) -> bool: ...
    def set_result(self, result: dict[str, np.ndarray]) -> None: ...
    def set_exception(self, exception: BaseException | None) -> None: ...
    def done(self) -> bool: ...


class _LoopAnswer:
    """A queued run's answer for an event loop: the asyncio future it awaits, settled on
    that loop. A ``concurrent.futures.Future`` under ``asyncio.wrap_future`` costs more (a
    Condition per run, callbacks chained both ways): with 16 callers on one loop here, 32
    µs of the loop's time a request against 12, in a request of ~140 µs."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[dict[str, np.ndarray]] = loop.create_future()

    def set_running_or_notify_cancel(self) -> bool:
        return not self.future.cancelled()  # its caller gave up (an asyncio timeout)

    def set_result(self, result: dict[str, np.ndarray]) -> None:
        self._settle(result, None)

    def set_exception(self, exception: BaseException | None) -> None:
        self._settle(None, exception)

    def done(self) -> bool:
        return self.future.done()

    def _settle(self, result: Any, exception: BaseException | None) -> None:
        # A closed loop raises RuntimeError: nobody awaits the answer any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_settle, self.future, result, exception)


def _settle(future: asyncio.Future[Any], result: Any, exception: BaseException | None) -> None:
    if future.done():  # cancelled meanwhile, or failed by close() before the batch's end
        return
    if exception is None:
        future.set_result(result)
    else:
        future.set_exception(exception)


class _Task:
    __slots__ = ("deadline", "enqueued", "future", "inputs", "key", "rows", "signature")

    def __init__(
        self,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        rows: int,
        key: Key,
        deadline: float | None,
        answer: _Answer,
    ) -> None:
        self.signature = signature
        self.inputs = inputs
        self.rows = rows
        self.key = key
        self.deadline = deadline
        self.enqueued = time.monotonic()
        self.future = answer


class BatchingCell:
    """``inner`` with its runs batched by ``settings``; ``max_batch_size`` is the size in
    use (``settings.max_batch_size``, or what ``"auto"`` chose, said by ``chosen``)."""

    def __init__(
        self,
        name: str,
        inner: Cell,
        settings: BatchingSettings,
        max_batch_size: int,
        chosen: str = "configured",
    ) -> None:
        self.name = name
        self.inner = inner
        self.settings = settings
        self.max_batch_size = max_batch_size
        self.chosen = chosen
        self._pad = settings.pad_variable_length_inputs
        self._timeout = settings.batch_timeout_micros / 1e6
        self._limit = settings.max_enqueued_batches * max_batch_size
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: deque[_Task] = deque()
        self._queued_rows = 0
        self._running = 0
        self._closed = False
        self._alone: dict[str, str] = {
            key: "it writes state" for key, spec in inner.signatures.items() if spec.stateful
        }
        self._sizes: dict[int, int] = {}
        self._queued = 0
        self._queue_seconds = 0.0
        self._queue_buckets = [0] * len(QUEUE_BUCKETS)
        for i in range(settings.threads):
            threading.Thread(
                target=self._serve, name=f"tfhost-batch-{name}-{i}", daemon=True
            ).start()

    # -- the Cell interface --------------------------------------------------------------

    @property
    def artifact(self) -> Any:
        return self.inner.artifact

    @property
    def format(self) -> Any:
        return self.inner.format

    @property
    def signatures(self) -> Any:
        return self.inner.signatures

    @property
    def static_shapes(self) -> bool:
        return self.inner.static_shapes

    @property
    def memory_bytes(self) -> int | None:
        return self.inner.memory_bytes

    def run(
        self, signature: str, inputs: Mapping[str, np.ndarray], deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        """Run, batched with whatever else is queued (see the module's steps)."""
        answer: concurrent.futures.Future[dict[str, np.ndarray]] = concurrent.futures.Future()
        task = self._task(signature, inputs, deadline, answer)
        if task is None:
            return self.inner.run(signature, inputs, deadline)
        with self._lock:
            idle = not self._queue and self._running == 0 and not self._closed
            if idle:
                self._running += 1
            else:
                self._enqueue(task)
        if not idle:
            return answer.result()
        try:
            self._count(task.rows)
            return self._checked(task, self.inner.run(signature, inputs, deadline))[0]
        finally:
            self._done()

    def submit(
        self, signature: str, inputs: Mapping[str, np.ndarray], deadline: float | None = None
    ) -> asyncio.Future[dict[str, np.ndarray]] | None:
        """Queue a run for the batch threads, its answer for the running event loop to
        await; None when it cannot be merged (run it alone, with ``run``)."""
        answer = _LoopAnswer(asyncio.get_running_loop())
        task = self._task(signature, inputs, deadline, answer)
        if task is None:
            return None
        with self._lock:
            self._enqueue(task)
        return answer.future

    def close(self) -> None:
        """Fail what is queued (Unavailable) and close the inner cell, which keeps the
        Cell contract for the batches running (an inline cell closes once they return, a
        process cell fails them); each batch thread ends once its batch has."""
        with self._lock:
            self._closed = True
            queued = list(self._queue)
            self._queue.clear()
            self._queued_rows = 0
            self._changed.notify_all()
        for task in queued:
            _fail(task, Unavailable(f"model {self.name!r} was unloaded"))
        self.inner.close()

    def stats(self) -> BatchingStats:
        with self._lock:
            return BatchingStats(
                max_batch_size=self.max_batch_size,
                chosen=self.chosen,
                queue_depth=len(self._queue),
                batch_sizes=dict(self._sizes),
                queued=self._queued,
                queue_seconds=self._queue_seconds,
                queue_buckets=tuple(self._queue_buckets),
                unbatched=dict(self._alone),
            )

    # -- queueing ------------------------------------------------------------------------

    def _task(
        self,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        deadline: float | None,
        answer: _Answer,
    ) -> _Task | None:
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineExceeded(
                f"model {self.name!r} signature {signature!r}: the request's deadline passed "
                f"before it could run"
            )
        if signature in self._alone:
            return None
        rows = rows_of(inputs)
        if rows is None or rows > self.max_batch_size:
            return None
        key = key_of(signature, inputs, self._pad)
        return _Task(signature, inputs, rows, key, deadline, answer)

    def _enqueue(self, task: _Task) -> None:
        """Holds ``_lock``."""
        if self._closed:
            raise Unavailable(f"model {self.name!r} was unloaded")
        if self._queued_rows + task.rows > self._limit:
            raise Unavailable(
                f"model {self.name!r}: its batch queue is full ({self._queued_rows} rows "
                f"waiting, at most {self._limit}: max_enqueued_batches "
                f"{self.settings.max_enqueued_batches} x max_batch_size "
                f"{self.max_batch_size}); try again"
            )
        self._queue.append(task)
        self._queued_rows += task.rows
        self._changed.notify()

    def _serve(self) -> None:
        """A batch thread: take a batch, run it, until closed."""
        while True:
            with self._lock:
                batch = self._take()
                if batch is None:
                    return
                self._running += 1
            try:
                self._run_batch(batch)
            except BaseException as exc:  # never lose a thread, nor leave a caller waiting
                _log.exception("model %r: a batch failed unexpectedly", self.name)
                for task in batch:
                    _fail(task, exc if isinstance(exc, TfhostError) else Unavailable(str(exc)))
            finally:
                self._done()

    def _take(self) -> list[_Task] | None:
        """The next batch, waiting for one; None once closed. Holds ``_lock``."""
        while True:
            while not self._queue:
                if self._closed:
                    return None
                self._changed.wait()
            head = self._queue[0]
            if self._timeout <= 0 or self._closed:
                break
            left = head.enqueued + self._timeout - time.monotonic()
            if left <= 0 or self._rows_of(head.key) >= self.max_batch_size:
                break
            # Look again when woken: another thread may have taken the head meanwhile.
            self._changed.wait(left)
        batch: list[_Task] = []
        rows = 0
        kept: deque[_Task] = deque()
        for task in self._queue:
            if task.key == head.key and rows + task.rows <= self.max_batch_size:
                batch.append(task)
                rows += task.rows
            else:
                kept.append(task)
        self._queue = kept
        self._queued_rows -= rows
        now = time.monotonic()
        for task in batch:
            waited = now - task.enqueued
            self._queued += 1
            self._queue_seconds += waited
            for i, bound in enumerate(QUEUE_BUCKETS):
                if waited <= bound:
                    self._queue_buckets[i] += 1
        return batch

    def _rows_of(self, key: Key) -> int:
        return sum(task.rows for task in self._queue if task.key == key)

    def _done(self) -> None:
        with self._lock:
            self._running -= 1
            if self._queue:
                self._changed.notify()

    # -- running -------------------------------------------------------------------------

    def _run_batch(self, batch: list[_Task]) -> None:
        now = time.monotonic()
        live: list[_Task] = []
        for task in batch:
            if not task.future.set_running_or_notify_cancel():
                continue  # its caller gave up (an asyncio timeout cancelled it)
            if task.deadline is not None and now >= task.deadline:
                _fail(
                    task,
                    DeadlineExceeded(
                        f"model {self.name!r} signature {task.signature!r}: the request's "
                        f"deadline passed while it waited in the batch queue"
                    ),
                )
                continue
            live.append(task)
        if not live:
            return
        signature = live[0].signature
        rows = [task.rows for task in live]
        size = padded_size(sum(rows), self.settings.allowed_batch_sizes)
        merged = merge([task.inputs for task in live], size, self._pad)
        deadlines = [task.deadline for task in live]
        deadline = None if None in deadlines else max(d for d in deadlines if d is not None)
        self._count(size)
        try:
            outputs = self.inner.run(signature, merged, deadline)
        except (InputError, ModelError) as exc:
            if len(live) == 1:
                _fail(live[0], exc)
            else:
                self._one_by_one(live)
            return
        except TfhostError as exc:
            for task in live:
                _fail(task, exc)
            return
        try:
            answers = self._checked_split(signature, outputs, rows, size)
        except NotBatchMajor:
            self._one_by_one(live)
            return
        for task, answer in zip(live, answers, strict=True):
            task.future.set_result(answer)

    def _checked(self, task: _Task, outputs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """A request that ran alone: its outputs as they came, after the batch-major check."""
        try:
            return self._checked_split(task.signature, outputs, [task.rows], task.rows)
        except NotBatchMajor:
            return [outputs]

    def _checked_split(
        self, signature: str, outputs: dict[str, np.ndarray], rows: list[int], size: int
    ) -> list[dict[str, np.ndarray]]:
        try:
            return split(outputs, rows, size)
        except NotBatchMajor as exc:
            with self._lock:
                first = signature not in self._alone
                self._alone.setdefault(signature, str(exc))
            if first:
                _log.warning(
                    "model %r signature %r: batching turned off: %s", self.name, signature, exc
                )
            raise

    def _one_by_one(self, tasks: list[_Task]) -> None:
        for task in tasks:
            self._count(task.rows)
            try:
                task.future.set_result(self.inner.run(task.signature, task.inputs, task.deadline))
            except TfhostError as exc:
                task.future.set_exception(exc)

    def _count(self, size: int) -> None:
        with self._lock:
            self._sizes[size] = self._sizes.get(size, 0) + 1


def _fail(task: _Task, error: BaseException) -> None:
    if not task.future.done():
        task.future.set_exception(error)
