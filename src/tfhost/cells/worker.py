"""The worker process behind a process cell.

The host starts it as its own module, ``python -m tfhost.cells.worker --fd N --parent PID
--label LABEL``, never by forking itself (TensorFlow's threads do not survive a fork) and
never by re-running the user's script (as ``multiprocessing``'s spawn does). ``N`` is the
worker's end of the control channel (see :mod:`tfhost.cells.messages` for the call order).

What it does, in order:
1. Arrange to die with its parent: ``PR_SET_PDEATHSIG`` on Linux (the kernel kills it even
   if every thread is stuck inside TensorFlow), a ``getppid`` watch elsewhere.
2. Read ``Start`` and apply its WorkerSettings: ``CUDA_VISIBLE_DEVICES`` before TensorFlow
   is imported, thread pools and GPU memory before TensorFlow initialises; reply ``Ready``
   with what TensorFlow reports.
3. Serve the control channel and its lanes until ``Shutdown`` or end of file on the control
   channel, then exit at once with ``os._exit``: tearing TensorFlow down buys nothing in a
   process that is about to end.

Only this process imports TensorFlow (and only after step 2 began); the host never does.

Its stdout goes where its stderr goes, line by line: to the pipe the host reads and passes
on through ``logging`` (``tfhost.worker``), so a model's print reaches the host's log with
TensorFlow's own lines, and the host's stdout stays the host's. TensorFlow's C++ log level
comes in the environment (``TF_CPP_MIN_LOG_LEVEL``), set by the host before TensorFlow is
imported here.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pickle
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from tfhost.cells.lifeline import die_with_parent
from tfhost.cells.messages import (
    READY_CALL,
    Failure,
    Lane,
    Load,
    Loaded,
    Ready,
    Result,
    Run,
    Shutdown,
    Start,
    Unload,
    WorkerInfo,
    failure,
    receive,
    send,
)
from tfhost.cells.transport import CALLS, Channel, Region, fit, pack, shared_bytes, unpack
from tfhost.errors import FormatError, InternalError, LoadError, NotFound, TfhostError
from tfhost.servable import Guarded
from tfhost.settings import WorkerSettings
from tfhost.specs import LoadOptions, SignatureSpec


def main(argv: Sequence[str] | None = None) -> NoReturn:
    _stdout_to_stderr()
    parser = argparse.ArgumentParser(prog="python -m tfhost.cells.worker")
    parser.add_argument("--fd", type=int, required=True, help="the control channel's socket")
    parser.add_argument("--parent", type=int, required=True, help="the host's process id")
    parser.add_argument("--label", default="", help="which models it serves (for ps and logs)")
    args = parser.parse_args(argv)
    # Ctrl-C in a terminal reaches the whole process group; the host decides when we end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(args.parent)
    # Keep the channel out of any process a model may start, or our death would not
    # reach the host as end of file.
    os.set_inheritable(args.fd, False)
    channel = Channel(socket.socket(fileno=args.fd))
    try:
        start = receive(channel)
    except (EOFError, OSError):
        _exit()
    if not isinstance(start, Start):
        _protocol_error(f"expected Start, got {type(start).__name__}")
    # The host's own path first, so custom objects unpickle from the modules it used.
    sys.path[:] = list(dict.fromkeys([*start.sys_path, *sys.path]))
    try:
        priority = _LoadPriority(start.settings.load_nice)
        priority.begin()  # TensorFlow's import is the biggest part of a start
        info = _configure(start.settings)
    except Exception as exc:
        error = LoadError(
            f"worker {args.label}: could not apply its settings {start.settings}: "
            f"{type(exc).__name__}: {exc}"
        )
        send(channel, failure(READY_CALL, error))
        _exit()
    send(channel, Ready(READY_CALL, info))
    priority.end()
    _Server(channel, start.settings.spin_us / 1e6, priority).serve()


def _configure(settings: WorkerSettings) -> WorkerInfo:
    """Apply ``settings``; TensorFlow is imported here, after the environment is set."""
    if settings.cuda_visible_devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = settings.cuda_visible_devices
    import tensorflow as tf

    if settings.intra_op_threads is not None:
        tf.config.threading.set_intra_op_parallelism_threads(settings.intra_op_threads)
    if settings.inter_op_threads is not None:
        tf.config.threading.set_inter_op_parallelism_threads(settings.inter_op_threads)
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        if settings.gpu_memory_growth:
            tf.config.experimental.set_memory_growth(gpu, True)
        if settings.gpu_memory_limit_mib is not None:
            tf.config.set_logical_device_configuration(
                gpu,
                [tf.config.LogicalDeviceConfiguration(memory_limit=settings.gpu_memory_limit_mib)],
            )
    limits = [
        config.memory_limit
        for gpu in gpus
        for config in (tf.config.get_logical_device_configuration(gpu) or [])
    ]
    return WorkerInfo(
        pid=os.getpid(),
        tensorflow_version=str(tf.__version__),
        settings=settings,
        intra_op_threads=int(tf.config.threading.get_intra_op_parallelism_threads()),
        inter_op_threads=int(tf.config.threading.get_inter_op_parallelism_threads()),
        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        gpus=tuple(gpu.name for gpu in gpus),
        gpu_memory_growth=bool(gpus)
        and all(tf.config.experimental.get_memory_growth(gpu) for gpu in gpus),
        gpu_memory_limit_mib=int(limits[0]) if limits and len(set(limits)) == 1 else None,
    )


def _protocol_error(text: str) -> NoReturn:
    """The host and this worker disagree on the protocol: end, saying why on stderr,
    worded as Python ends a traceback so the host quotes it in its WorkerDied."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"RuntimeError: tfhost worker: {text}\n")
        sys.stderr.flush()
    os._exit(70)  # EX_SOFTWARE


def _stdout_to_stderr() -> None:
    with contextlib.suppress(OSError):  # no stderr: then stdout stays as it is
        os.dup2(2, 1)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # a print is a line of the host's log


def _exit() -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken stream
            stream.flush()
    os._exit(0)


class _Server:
    """Serves the control channel on the main thread and each lane on a thread of its own.

    A Load runs on a thread of its own too, so a slow load in a group worker never holds
    up the lanes or the loads of the other models.

    Thread safety: ``_servables`` changes only on Load/Unload, which the host never
    overlaps with a Run of the same model; single dict operations are atomic, so no lock
    guards it. A lane's regions belong to its thread alone.
    """

    def __init__(self, control: Channel, spin_s: float, priority: _LoadPriority) -> None:
        self._priority = priority
        self._control = control
        self._spin_s = spin_s  # lanes poll this long for the next request before sleeping
        self._servables: dict[int, Guarded] = {}

    def serve(self) -> NoReturn:
        while True:
            try:
                message = receive(self._control)
            except (EOFError, OSError):  # the host closed the channel, or died
                _exit()
            if isinstance(message, Lane):
                lane = Channel(socket.socket(fileno=self._control.take_fd()), self._spin_s)
                threading.Thread(
                    target=self._serve_lane,
                    args=(lane,),
                    name=f"tfhost-lane-{message.number}",
                    daemon=True,
                ).start()
            elif isinstance(message, Load):
                threading.Thread(
                    target=self._load,
                    args=(message,),
                    name=f"tfhost-load-{message.name}",
                    daemon=True,
                ).start()
            elif isinstance(message, Unload):
                self._unload(message)
            elif isinstance(message, Shutdown):
                _exit()
            else:
                _protocol_error(f"unexpected message {type(message).__name__}")

    def _serve_lane(self, lane: Channel) -> None:
        request: Region | None = None  # the host writes inputs here
        response: Region | None = None  # we write outputs here
        while True:
            try:
                message = receive(lane)
            except (EOFError, OSError):  # the host closed this lane
                return
            if not isinstance(message, Run):
                _protocol_error(f"unexpected message {type(message).__name__}")
            if message.fresh_region:
                if request is not None:
                    request.close()
                request = Region.attach(lane.take_fd())
            with CALLS:  # a lane polls for its next request only while few others run
                reply, response, attached = self._run(message, request, response)
            try:
                send(lane, reply, attached)
            except OSError:  # the host gave up on this lane
                return

    def _run(
        self, message: Run, request: Region | None, response: Region | None
    ) -> tuple[Result | Failure, Region | None, list[int]]:
        try:
            entry = self._servables.get(message.model)
            if entry is None:
                raise InternalError(f"this worker holds no model with key {message.model}")
            inputs = unpack(message.inputs, request, copy=False)
            outputs = entry.run(message.signature, inputs)
            outputs = {key: np.asarray(value) for key, value in outputs.items()}
            response, fresh = fit(response, shared_bytes(outputs))
            reply = Result(message.call, pack(outputs, response), fresh)
            return reply, response, [response.fd] if fresh and response is not None else []
        except TfhostError as exc:
            return failure(message.call, exc), response, []

    def _load(self, message: Load) -> None:
        self._priority.begin()
        try:
            self._load_at_low_priority(message)
        finally:
            self._priority.end()

    def _load_at_low_priority(self, message: Load) -> None:
        reply: Loaded | Failure
        try:
            options = _options(message)
            from tfhost import formats

            try:
                artifact = formats.detect(message.path, message.version)
            except (FormatError, NotFound) as exc:
                raise type(exc)(f"model {message.name!r}: {exc}") from None
            servable = formats.load(message.name, artifact, options)
            self._servables[message.model] = Guarded(message.name, servable)
            signatures = {
                key: SignatureSpec(dict(spec.inputs), dict(spec.outputs), spec.stateful)
                for key, spec in servable.signatures.items()
            }
            reply = Loaded(
                message.call, artifact, servable.format, signatures, servable.static_shapes
            )
        except TfhostError as exc:
            reply = failure(message.call, exc)
        except Exception as exc:
            reply = failure(
                message.call,
                InternalError(f"model {message.name!r}: load failed: {type(exc).__name__}: {exc}"),
            )
        try:
            send(self._control, reply)
        except OSError:  # the host is gone
            _exit()

    def _unload(self, message: Unload) -> None:
        entry = self._servables.pop(message.model, None)
        if entry is not None:  # closed once the runs in flight on it have returned
            entry.close()


class _LoadPriority:
    """Starts and loads run at a lower CPU priority, serving at the worker's own.

    A start (TensorFlow's import) and a load take seconds of CPU; at the priority of the
    models already serving they take cores from them (measured in bench/fleet.py: a
    neighbour's p99 x2.4 during a 200 MiB load on 2 cores; x1.1 at ``nice`` 10, with the
    load no slower on an idle machine). Linux keeps a niceness per thread and new threads
    inherit their creator's, so every thread of the process is moved at once, and back
    once no load runs. Going back needs the right to lower a niceness (root, or
    RLIMIT_NICE); where the system refuses, the worker keeps the lower priority, which
    only matters while the machine is short of CPU.

    Thread safety: ``_lock`` guards ``_loads`` and ``_lowered``.
    """

    def __init__(self, nice: int) -> None:
        self._nice = nice
        self._base = os.getpriority(os.PRIO_PROCESS, 0)
        self._lock = threading.Lock()
        self._loads = 0
        self._lowered = False

    def begin(self) -> None:
        with self._lock:
            self._loads += 1
            if self._nice and not self._lowered:
                self._lowered = _set_niceness(self._base + self._nice)

    def end(self) -> None:
        with self._lock:
            self._loads -= 1
            if self._loads == 0 and self._lowered:
                self._lowered = not _set_niceness(self._base)


def _set_niceness(value: int) -> bool:
    """Every thread of this process to ``value``; False if the system refuses any."""
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # not Linux: the process's priority is one
        threads = [0]
    try:
        for tid in threads:
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                os.setpriority(os.PRIO_PROCESS, tid, value)
    except PermissionError:
        return False
    return True


def _options(message: Load) -> LoadOptions:
    try:
        options: Any = pickle.loads(message.options)
    except Exception as exc:
        raise LoadError(
            f"model {message.name!r}: its custom_objects or format_options cannot be rebuilt "
            f"in the worker process ({type(exc).__name__}: {exc}). Objects cross the process "
            f"boundary by module path: define them in an importable module, not in __main__ "
            f"or inside a function, or load the model with isolation='inline'"
        ) from None
    if not isinstance(options, LoadOptions):
        raise InternalError(f"expected LoadOptions, got {type(options).__name__}")
    return options


if __name__ == "__main__":
    main()
