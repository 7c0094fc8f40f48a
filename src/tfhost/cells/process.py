"""The process cell: a servable in a worker process, behind the InlineCell interface.

Pieces, host side (the worker side is :mod:`tfhost.cells.worker`):

- ``Worker``: one worker process, its control channel, and its lanes (one connection per
  call in flight). Its watcher thread is the one place that notices the worker's death
  (end of file on the control channel), records how it ended and tells each open cell;
  calls in flight see end of file on their own lanes at the same moment.
- ``ProcessCell``: one model version served by a worker; several cells share a worker
  when they name the same group.
- ``Groups``: one host's worker processes: the named group workers, shared by their
  cells and reference-counted, and the one-model workers.

Guarantees:
1. The host side never imports TensorFlow; the worker applies WorkerSettings before
   TensorFlow initialises.
2. A worker that dies fails its in-flight calls with WorkerDied as soon as the kernel
   closes its end of the channel, and the calls after them at once; each open cell's
   ``on_death`` is called exactly once, from the worker's watcher thread, and never
   once the cell's ``close`` has returned.
3. A call with a deadline that gets no answer in time raises DeadlineExceeded, and the
   worker is killed (recycled): a TensorFlow call cannot be interrupted any other way.
   The other models of a recycled group worker see ``WorkerDied`` with ``recycled``
   set, naming the model whose call ran past its deadline.
4. Closing the last cell of a worker ends the process and waits for it to be gone, so
   its memory is back with the operating system when ``close`` returns.
5. Workers die with the host process (see the worker's parent-death arming), and
   ``Host.close`` ends them through guarantee 4.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import psutil

from tfhost.cells.lifeline import describe_exit, last_fatal
from tfhost.cells.messages import (
    READY_CALL,
    Failure,
    Lane,
    Load,
    Loaded,
    Message,
    Ready,
    Reply,
    Result,
    Run,
    Shutdown,
    Start,
    Unload,
    WorkerInfo,
    error_from,
    receive_reply,
    send,
)
from tfhost.cells.tflog import ENV as TF_LOG_LEVEL_ENV
from tfhost.cells.tflog import forward_level, min_log_level
from tfhost.cells.transport import (
    CALLS,
    Channel,
    Region,
    channel_pair,
    fit,
    pack,
    shared_bytes,
    unpack,
)
from tfhost.errors import (
    DeadlineExceeded,
    InputError,
    InternalError,
    LoadError,
    Unavailable,
    WorkerDied,
)
from tfhost.settings import WorkerSettings
from tfhost.specs import LoadOptions

OnDeath = Callable[[WorkerDied], None]

_log = logging.getLogger(__name__)
# What workers write (TensorFlow's log, a model's print), passed on line by line.
_worker_log = logging.getLogger("tfhost.worker")

_STOP_GRACE_S = 5.0  # a worker asked to shut down gets this long before it is killed
_REAP_GRACE_S = 1.0  # after end of file, how long the process may take to become a zombie
_STDERR_GRACE_S = 0.2  # how long a death report waits for the worker's last log lines
_REPORT_GRACE_S = 2.0  # how long a caller waits for a death to be recorded and reported
_TAIL_LINES = 20


def open_process(
    name: str,
    path: Path,
    version: int | None,
    options: LoadOptions,
    worker: WorkerSettings,
    groups: Groups,
    group: str | None = None,
    on_death: OnDeath | None = None,
) -> ProcessCell:
    """Load the artifact at ``path`` in a worker process; return once it can serve.

    Without ``group`` the model gets a worker of its own; with it, the model joins the
    group's worker (started by whichever load gets there first), which runs with the
    settings its first model gave; a model that asks the same group for other settings
    is refused with InputError. Raises what the worker's load raised (FormatError,
    LoadError, ...), WorkerDied if the worker died while starting or loading,
    DeadlineExceeded after ``worker.start_timeout_s``.
    """
    payload = _pickle_options(name, options)
    process = groups.acquire(name, group, worker)
    deadline = time.monotonic() + process.settings.start_timeout_s
    try:
        process.start(name, deadline)
        return process.load(name, Path(path).absolute(), version, payload, deadline, on_death)
    except BaseException:
        groups.release(process, None)
        raise


class ProcessCell:
    """A model version served by a worker process.

    ``artifact``, ``format``, ``signatures`` and ``static_shapes`` are cached here when
    the load answers, so metadata never crosses the process boundary again.

    Thread safety: ``run`` may be called from any number of threads at once. ``close``
    may be called from any thread, including the worker's watcher thread (from inside
    ``on_death``); it is idempotent. ``_lock`` guards ``_closed`` and ``_reported`` and
    is held while ``on_death`` runs, so a ``close`` from another thread waits for it;
    it is re-entrant because ``on_death`` itself closes the cell.
    """

    def __init__(
        self,
        name: str,
        worker: Worker,
        key: int,
        loaded: Loaded,
        on_death: OnDeath | None,
        memory_bytes: int | None,
    ) -> None:
        self.name = name
        self.artifact = loaded.artifact
        self.format = loaded.format
        self.signatures = loaded.signatures
        self.static_shapes = loaded.static_shapes
        # The worker's unique memory (USS) after its load: what unloading gives back when
        # the model has a worker of its own; a group model's is its worker's growth.
        self.memory_bytes = memory_bytes
        self._worker = worker
        self._key = key
        self._on_death = on_death
        self._lock = threading.RLock()
        self._closed = False
        self._reported = False

    @property
    def pid(self) -> int:
        """The worker process's id."""
        return self._worker.info.pid

    @property
    def worker_info(self) -> WorkerInfo:
        """The worker's settings as TensorFlow applied them."""
        return self._worker.info

    def run(
        self, signature: str, inputs: Mapping[str, np.ndarray], deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        """Run ``signature`` in the worker. ``deadline`` (``time.monotonic()``):
        DeadlineExceeded past it, and the worker is recycled. WorkerDied if the worker
        dies meanwhile, Unavailable once the cell is closed."""
        with self._lock:
            closed = self._closed
        if closed:
            raise self._worker.gone(self.name)
        return self._worker.run(self.name, self._key, signature, inputs, deadline)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._worker.groups.release(self._worker, self._key)

    def _worker_died(self, death: _Death) -> None:
        with self._lock:
            if self._closed or self._reported:
                return
            self._reported = True
            if self._on_death is not None:
                self._on_death(death.error(self.name))


@dataclass(frozen=True)
class _Death:
    """How a worker ended, worded once for every model it served."""

    pid: int
    group: str | None
    how: str  # "was killed by SIGKILL", "exited with code 1", "was recycled (SIGKILL)"
    why: str  # what is known of the cause, "" if nothing
    exitcode: int | None  # as subprocess reports it: negative for a signal
    last_line: str | None  # the last fatal-looking line the worker logged
    recycled: bool  # tfhost killed it because a call ran past its deadline
    shut_down: bool  # it ended because its last model was unloaded

    def error(self, model: str, doing: str = "") -> WorkerDied:
        """The WorkerDied for ``model``; ``doing`` says what the call was doing then."""
        where = f"its worker process {self.pid}" + (
            f" (group {self.group!r})" if self.group is not None else ""
        )
        text = f"model {model!r}: {where} {self.how}{doing}{self.why}"
        if self.last_line:
            text += f"; its last fatal log line: {self.last_line}"
        return WorkerDied(text, self.exitcode, recycled=self.recycled)


class _Call:
    """A control-channel request (start, load) waiting for its reply.

    ``done`` is held until the reply arrives: the watcher thread releases it exactly once,
    after popping the call from ``Worker._calls`` under the worker lock.
    """

    __slots__ = ("done", "number", "reply")

    def __init__(self, number: int) -> None:
        self.number = number
        self.done = threading.Lock()
        self.done.acquire()
        self.reply: Reply | None = None  # None once released: the worker died

    def finish(self, reply: Reply | None) -> None:
        self.reply = reply
        self.done.release()


class _Lane:
    """A connection to the worker for one call at a time, with its reusable regions:
    inputs go out in ``request`` (ours), outputs come back in ``response`` (the worker's)."""

    __slots__ = ("channel", "number", "request", "response")

    def __init__(self, number: int, channel: Channel) -> None:
        self.number = number
        self.channel = channel
        self.request: Region | None = None
        self.response: Region | None = None

    def close(self) -> None:
        """Only the lane's owner closes it: the caller using it, or whoever holds it free."""
        self.channel.close()
        for region in (self.request, self.response):
            if region is not None:
                region.close()
        self.request = self.response = None


_MAX_LANES = 32  # calls in flight on one worker; more wait for a lane to come free


class Worker:
    """One worker process, seen from the host.

    Life: ``start`` (any number of callers; the first one starts the process) -> ``load``,
    ``run``, ``unload`` from any thread -> ``stop`` once its last cell is closed, or death.

    A call takes a free lane (or opens one), sends on it and reads its reply itself:
    the only threads that wake per call are the caller and the worker's lane thread.
    The watcher thread reads the control channel; it is the one that notices the
    worker's death (end of file), records how it ended, fails the control calls and
    tells each open cell. A caller whose lane reaches end of file waits for the record
    (``_recorded``) to word its WorkerDied; a caller that recycles the worker waits
    until every cell has been told (``_ended``), so the host already knows when it
    raises DeadlineExceeded.

    Thread safety: ``_lock`` guards ``_calls``, ``_cells``, ``_lanes``, ``_free_lanes``,
    ``_death``, ``_stopping`` and ``_recycle_reason``; ``_lane_free`` is its condition.
    ``_start_lock`` serialises ``start``; ``refs`` is guarded by ``groups._lock``. A lane
    belongs to one owner at a time: the call that took it, or ``_free_lanes``; only its
    owner closes it.
    """

    def __init__(
        self, label: str, group: str | None, settings: WorkerSettings, groups: Groups
    ) -> None:
        self.label = label
        self.group = group
        self.settings = settings
        self.groups = groups
        self.refs = 0
        self._lock = threading.Lock()
        self._lane_free = threading.Condition(self._lock)
        self._start_lock = threading.Lock()
        # Set once _death is recorded and the calls failed; _ended once every cell is told.
        self._recorded = threading.Event()
        self._ended = threading.Event()
        self._info: WorkerInfo | None = None
        self._start_error: Exception | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._control: Channel | None = None
        self._watcher: threading.Thread | None = None
        self._drain: threading.Thread | None = None
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._calls: dict[int, _Call] = {}
        self._numbers = itertools.count(READY_CALL + 1)
        self._keys = itertools.count(1)
        self._cells: dict[int, ProcessCell] = {}
        self._lanes: list[_Lane] = []
        self._free_lanes: list[_Lane] = []
        self._lane_numbers = itertools.count()
        self._death: _Death | None = None
        self._stopping = False
        self._recycle_reason: str | None = None

    @property
    def info(self) -> WorkerInfo:
        assert self._info is not None, "the worker has not started"
        return self._info

    @property
    def alive(self) -> bool:
        with self._lock:
            return self._death is None and not self._stopping

    # -- life ------------------------------------------------------------------------

    def start(self, model: str, deadline: float) -> WorkerInfo:
        """Start the process (first caller) or wait until it has started (the others)."""
        with self._start_lock:
            if self._info is None and self._start_error is None:
                try:
                    self._info = self._start(model, deadline)
                except Exception as exc:
                    self._start_error = exc
                    self._kill()
            if self._start_error is not None:
                raise self._start_error
            return self.info

    def _start(self, model: str, deadline: float) -> WorkerInfo:
        control, theirs = channel_pair()
        argv = [
            sys.executable,
            "-m",
            "tfhost.cells.worker",
            "--fd",
            str(theirs.fileno()),
            "--parent",
            str(os.getpid()),
            "--label",
            self.label,
        ]
        # TensorFlow reads its C++ log level once, when imported: the worker's comes from
        # the user's TF_CPP_MIN_LOG_LEVEL, else from what the "tfhost.worker" logger shows.
        tf_log_level = min_log_level(os.environ, _worker_log)
        env = {**os.environ, TF_LOG_LEVEL_ENV: str(tf_log_level)}
        try:
            process = (
                _spawner()
                .submit(
                    subprocess.Popen,
                    argv,
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    env=env,
                )
                .result()
            )
        except OSError as exc:
            control.close()
            raise InternalError(
                f"model {model!r}: could not start a worker process: {exc}"
            ) from exc
        finally:
            theirs.close()  # the worker has its copy; ours would hide its death from us
        self._process, self._control = process, control
        assert process.stderr is not None
        self._drain = threading.Thread(
            target=self._forward_log,
            args=(process.stderr, tf_log_level),
            name=f"tfhost-log-{process.pid}",
            daemon=True,
        )
        self._drain.start()
        self._watcher = threading.Thread(
            target=self._watch, name=f"tfhost-watch-{process.pid}", daemon=True
        )
        self._watcher.start()
        call = _Call(READY_CALL)
        with self._lock:
            self._calls[READY_CALL] = call
        reply = self._control_call(
            model,
            call,
            Start(self.settings, tuple(sys.path)),
            deadline,
            "its worker's start",
            "while starting",
        )
        if isinstance(reply, Failure):
            raise error_from(reply)
        if not isinstance(reply, Ready):
            raise InternalError(f"worker for {self.label}: expected Ready, got {reply!r}")
        return reply.info

    def load(
        self,
        name: str,
        path: Path,
        version: int | None,
        options: bytes,
        deadline: float,
        on_death: OnDeath | None,
    ) -> ProcessCell:
        key = next(self._keys)
        before = self._memory()
        call = self._begin(name)
        reply = self._control_call(
            name,
            call,
            Load(call.number, key, name, str(path), version, options),
            deadline,
            "its load",
            "while loading it",
        )
        if isinstance(reply, Failure):
            raise error_from(reply)
        if not isinstance(reply, Loaded):
            raise InternalError(f"model {name!r}: expected Loaded, got {type(reply).__name__}")
        after = self._memory()
        if after is None or self.group is None:
            memory = after
        else:  # its neighbours' memory is not this model's
            memory = None if before is None else max(after - before, 0)
        cell = ProcessCell(name, self, key, reply, on_death, memory)
        with self._lock:
            if self._death is not None:  # died after answering: the cell would never hear
                raise self._death.error(name, " after loading it")
            self._cells[key] = cell
        return cell

    def gone(self, model: str) -> Unavailable:
        """The error for a call on a cell of ``model`` that is closed: how its worker died,
        or that it was unloaded."""
        with self._lock:
            death = self._death
        if death is not None and not death.shut_down:
            return death.error(model)
        return Unavailable(f"model {model!r} was unloaded")

    def _memory(self) -> int | None:
        """The worker's unique memory (USS; RSS where USS cannot be read), or None."""
        if self._info is None:
            return None
        try:
            process = psutil.Process(self._info.pid)
            try:
                return int(process.memory_full_info().uss)
            except psutil.AccessDenied:
                return int(process.memory_info().rss)
        except psutil.Error:
            return None

    def unload(self, key: int) -> None:
        """Forget one model of a worker that goes on serving others."""
        with self._lock:
            self._cells.pop(key, None)
            if self._death is not None or self._control is None:
                return
            control = self._control
        with contextlib.suppress(OSError):  # it died meanwhile: nothing left to unload
            send(control, Unload(key))

    def stop(self) -> None:
        """End the process and wait until it is gone. Idempotent; any thread."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self._cells.clear()
            self._lane_free.notify_all()
        process, control = self._process, self._control
        if control is not None:
            with contextlib.suppress(OSError):
                send(control, Shutdown("its last model was unloaded"))
        if process is not None:
            try:
                process.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if control is not None:
            control.close()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join()  # ends at end of file on the control channel, closed above
        if self._drain is not None:
            # Ends at end of file on the worker's stderr, unless a process the model
            # started still holds it: then the log's tail is not worth waiting for.
            self._drain.join(_STOP_GRACE_S)
        if process is not None and process.stderr is not None:
            process.stderr.close()
        with self._lock:  # the lanes in use are their callers' to close
            free, self._free_lanes = self._free_lanes, []
            self._lanes = [lane for lane in self._lanes if lane not in free]
        for lane in free:
            lane.close()

    def recycle(self, reason: str) -> None:
        """Kill the process and wait until its death is recorded and reported, so the
        caller's next look at the host already sees it; worded with ``reason``."""
        with self._lock:
            if self._death is None and not self._stopping:
                self._recycle_reason = reason
        self._kill()
        if threading.current_thread() is not self._watcher:
            self._ended.wait(_REAP_GRACE_S + _STDERR_GRACE_S + _REPORT_GRACE_S)

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    # -- calls -----------------------------------------------------------------------

    def run(
        self,
        name: str,
        key: int,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        deadline: float | None,
    ) -> dict[str, np.ndarray]:
        started = time.monotonic()
        lane = self._take_lane(name, signature, started, deadline)
        answered = False
        try:
            lane.request, fresh = fit(lane.request, shared_bytes(inputs))
            number = next(self._numbers)
            message = Run(number, key, signature, pack(inputs, lane.request), fresh)
            try:
                with CALLS:
                    send(lane.channel, message, [lane.request.fd] if fresh and lane.request else [])
                    reply = receive_reply(
                        lane.channel,
                        # a zero timeout would make the socket non-blocking instead
                        None if deadline is None else max(deadline - time.monotonic(), 1e-3),
                    )
            except TimeoutError:
                waited = time.monotonic() - started
                self.recycle(
                    f"a request to model {name!r} (signature {signature!r}) ran past its "
                    f"deadline ({waited:.3g} s)"
                )
                raise DeadlineExceeded(
                    f"model {name!r}: signature {signature!r} got no answer within "
                    f"{waited:.3g} s, its deadline; its worker process {self._pid()} was "
                    f"recycled"
                ) from None
            except (EOFError, OSError):
                raise self._died(name, f" while running signature {signature!r}") from None
            if reply.call != number:  # the lane is out of step: it must not be reused
                raise InternalError(f"model {name!r}: reply {reply.call} to call {number}")
            answered = True
            if isinstance(reply, Failure):
                raise error_from(reply)
            if not isinstance(reply, Result):
                raise InternalError(f"model {name!r}: expected Result, got {type(reply).__name__}")
            if reply.fresh_region:
                if lane.response is not None:
                    lane.response.close()
                lane.response = Region.attach(lane.channel.take_fd())
            return unpack(reply.outputs, lane.response, copy=True)
        finally:
            # A lane goes back only after a whole exchange; otherwise what the worker
            # holds of it is unknown (a lost descriptor, half a message), so it closes.
            self._put_lane(lane, reuse=answered)

    def _take_lane(
        self, name: str, signature: str, started: float, deadline: float | None
    ) -> _Lane:
        with self._lock:
            while True:
                if self._death is not None:
                    raise self._death.error(name)
                if self._stopping:
                    raise WorkerDied(f"model {name!r}: its worker process is shutting down")
                if self._free_lanes:
                    return self._free_lanes.pop()
                if len(self._lanes) < _MAX_LANES:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise DeadlineExceeded(
                        f"model {name!r}: signature {signature!r} waited "
                        f"{time.monotonic() - started:.3g} s, until its deadline, for one of "
                        f"the {_MAX_LANES} calls in flight on its worker to finish"
                    )
                self._lane_free.wait(remaining)
            mine, theirs = channel_pair(self.settings.spin_us / 1e6)
            lane = _Lane(next(self._lane_numbers), mine)
            self._lanes.append(lane)
            control = self._control
        try:
            assert control is not None
            send(control, Lane(lane.number), [theirs.fileno()])
        except OSError:
            self._put_lane(lane, reuse=False)
            raise self._died(name, "") from None
        finally:
            theirs.close()  # the worker has its copy now
        return lane

    def _put_lane(self, lane: _Lane, *, reuse: bool) -> None:
        """The caller that took ``lane`` gives it back: free for the next call, or closed."""
        with self._lock:
            keep = reuse and not self._stopping and self._death is None
            if keep:
                self._free_lanes.append(lane)
            else:
                with contextlib.suppress(ValueError):
                    self._lanes.remove(lane)
            self._lane_free.notify()
        if not keep:
            lane.close()

    def _begin(self, model: str) -> _Call:
        call = _Call(next(self._numbers))
        with self._lock:
            if self._death is not None:
                raise self._death.error(model)
            if self._stopping:
                raise WorkerDied(f"model {model!r}: its worker process is shutting down")
            self._calls[call.number] = call
        return call

    def _control_call(
        self, model: str, call: _Call, message: Message, deadline: float, what: str, doing: str
    ) -> Reply:
        """Send ``message`` for ``call`` (already registered) on the control channel and
        wait for its reply until ``deadline``. ``what`` names the call in a deadline error,
        ``doing`` in a death error."""
        assert self._control is not None
        with contextlib.suppress(OSError):  # if it is gone, the watcher fails the call
            send(self._control, message)
        timeout = max(deadline - time.monotonic(), 0.0)
        if not call.done.acquire(timeout=timeout):
            with self._lock:
                abandoned = self._calls.pop(call.number, None) is not None
            if abandoned:
                limit = f"{self.settings.start_timeout_s:g} s"
                self.recycle(f"{what} for model {model!r} took longer than {limit}")
                raise DeadlineExceeded(
                    f"model {model!r}: {what} did not finish within {limit} "
                    f"(WorkerSettings.start_timeout_s); its worker process {self._pid()} "
                    f"was killed"
                )
            call.done.acquire()  # the watcher popped it just now and is about to finish it
        if call.reply is None:
            raise self._died(model, f" {doing}")
        return call.reply

    def _died(self, model: str, doing: str) -> WorkerDied:
        """The WorkerDied for a call that lost its worker, once the watcher has recorded how."""
        self._recorded.wait(_REAP_GRACE_S + _STDERR_GRACE_S + _REPORT_GRACE_S)
        with self._lock:
            death = self._death
        if death is None:
            return WorkerDied(f"model {model!r}: lost its worker process {self._pid()}{doing}")
        return death.error(model, doing)

    def _pid(self) -> int | str:
        return "?" if self._process is None else self._process.pid

    # -- the watcher thread --------------------------------------------------------------

    def _watch(self) -> None:
        control = self._control
        assert control is not None
        while True:
            try:
                reply = receive_reply(control)
            except (EOFError, OSError):
                break
            except Exception:  # a worker that speaks nonsense is of no use: end it
                _log.exception("worker for %s: unreadable reply", self.label)
                self.recycle("it sent a reply the host could not read")
                break
            with self._lock:
                call = self._calls.pop(reply.call, None)
            if call is not None:  # None: its caller gave up, and the worker is being killed
                call.finish(reply)
        self._end()

    def _end(self) -> None:
        """The control channel closed: reap the process, fail every call, tell every cell."""
        process = self._process
        assert process is not None
        try:
            exitcode = process.wait(_REAP_GRACE_S)
        except subprocess.TimeoutExpired:  # closed its end yet lives on: it is no use
            process.kill()
            exitcode = process.wait()
        if self._drain is not None:
            self._drain.join(_STDERR_GRACE_S)
        with self._lock:
            how, why = describe_exit(exitcode, self._recycle_reason, self._stopping)
            death = self._death = _Death(
                process.pid,
                self.group,
                how,
                why,
                exitcode,
                None if self._stopping else last_fatal(self._tail),
                self._recycle_reason is not None,
                self._stopping,
            )
            calls, self._calls = list(self._calls.values()), {}
            cells = [] if self._stopping else list(self._cells.values())
            stopping = self._stopping
            self._lane_free.notify_all()
        for call in calls:
            call.finish(None)
        self._recorded.set()
        if not stopping:
            self.groups.forget(self)
        for cell in cells:
            try:
                cell._worker_died(death)
            except Exception:  # one cell's listener must not keep the others from hearing
                _log.exception("model %r: reporting its worker's death failed", cell.name)
        self._ended.set()

    def _forward_log(self, stream: IO[bytes], tf_log_level: int) -> None:
        """Pass the worker's log lines (its stderr, where its stdout goes too) on through
        logging, to the ``tfhost.worker`` logger, labelled; keep the last ones for
        WorkerDied, whether passed on or not.

        Each line goes at the level its prefix names: TensorFlow's C++ lines below
        ``tf_log_level`` are dropped (TensorFlow drops the later ones itself, not those it
        writes while it is imported), a line with no known prefix (a model's print, a
        traceback) is a WARNING. This thread reads to end of file whatever the handlers
        do: a worker whose stderr pipe is full would stop.
        """
        prefix = f"[tfhost worker {self.label} pid {self._pid()}] "
        extra = {"worker_label": self.label, "worker_pid": self._pid()}
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._tail.append(line)
            level = forward_level(line, tf_log_level)
            if level is not None:
                with contextlib.suppress(Exception):
                    _worker_log.log(level, "%s%s", prefix, line, extra=extra)


class Groups:
    """One host's worker processes: a new one per model, or the shared one of its group.

    A group's worker runs with the settings of the model that started it; a model that
    asks a running group for other settings is refused, since one process has one set of
    thread pools and one GPU configuration.

    Thread safety: ``_lock`` guards ``_workers`` and every worker's ``refs``. A group's
    worker is started outside the lock (``Worker.start`` serialises its own start), so
    loads into different workers start their processes in parallel.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workers: dict[str, Worker] = {}

    def acquire(self, model: str, group: str | None, settings: WorkerSettings) -> Worker:
        with self._lock:
            if group is None:
                worker = Worker(model, None, settings, self)
            else:
                found = self._workers.get(group)
                if found is None or not found.alive:
                    found = self._workers[group] = Worker(f"group:{group}", group, settings, self)
                elif found.settings != settings:
                    raise InputError(
                        f"model {model!r}: group {group!r} runs in one worker process with "
                        f"{found.settings}; this model asks for {settings}. Give the group's "
                        f"models the same worker settings, or this model a group of its own"
                    )
                worker = found
            worker.refs += 1
            return worker

    def release(self, worker: Worker, key: int | None) -> None:
        """Drop one cell's claim (``key`` None: a load that never made a cell)."""
        with self._lock:
            worker.refs -= 1
            last = worker.refs == 0
            if last:
                self._forget(worker)
        if last:
            worker.stop()
        elif key is not None:
            worker.unload(key)

    def forget(self, worker: Worker) -> None:
        """A dead worker takes no new cells; the next load in its group starts another."""
        with self._lock:
            self._forget(worker)

    def _forget(self, worker: Worker) -> None:
        if worker.group is not None and self._workers.get(worker.group) is worker:
            del self._workers[worker.group]


@functools.cache
def _spawner() -> ThreadPoolExecutor:
    """The one thread that starts worker processes.

    Linux delivers PR_SET_PDEATHSIG when the *thread* that started a process ends, not
    the process: a worker started from a short-lived thread (a restart, a request
    handler) would be killed with it. This thread lives as long as the host process.
    """
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="tfhost-spawner")


def _pickle_options(name: str, options: LoadOptions) -> bytes:
    try:
        return pickle.dumps(options, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise LoadError(
            f"model {name!r}: isolation='process' sends custom_objects and format_options to "
            f"a worker process, so they must be picklable; this one is not "
            f"({type(exc).__name__}: {exc}). Define them at module level in an importable "
            f"module, or load the model with isolation='inline'"
        ) from None
