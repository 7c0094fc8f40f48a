"""The typed messages a process cell and its worker exchange, and how errors cross.

A worker has one control channel and any number of lanes. The control channel starts
the worker and loads and unloads models; a lane is a connection of its own that carries
one ``Run`` at a time, so concurrent calls never wait for one another and a reply goes
straight to the thread that waits for it, with no hand-off between threads.

Call order, on the control channel:

1. host -> worker ``Start``; worker -> host ``Ready`` (call 0) once its settings are applied.
2. host -> worker ``Load``; worker -> host ``Loaded`` or ``Failure`` with the same ``call``.
   Loads run concurrently; replies come in whatever order they finish.
3. host -> worker ``Lane`` with a socket attached: the worker serves it from a thread
   of its own until the host closes it or the worker ends.
4. host -> worker ``Unload`` for a model it no longer needs (group workers), no reply.
5. host -> worker ``Shutdown``, or the host closes the control channel: the worker exits.

On a lane: host -> worker ``Run``; worker -> host ``Result`` or ``Failure``; repeat.

Messages are NamedTuples: typed, immutable, and cheap to pickle on the per-call path.
Errors cross as a ``Failure`` naming a tfhost error class, never as a pickled exception,
so the host only ever builds exception types it knows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from tfhost.cells.transport import Channel, Wire
from tfhost.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FormatError,
    InputError,
    InternalError,
    LoadError,
    MissingCustomObject,
    MissingOp,
    ModelError,
    NotFound,
    ResourceExhausted,
    TfhostError,
    Unavailable,
)
from tfhost.settings import WorkerSettings
from tfhost.specs import Artifact, Format, SignatureSpec

READY_CALL = 0  # the call number of the Ready reply; real calls count from 1


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker reports once its settings are applied, as TensorFlow sees them."""

    pid: int
    tensorflow_version: str
    settings: WorkerSettings  # as the worker received them
    intra_op_threads: int  # from here on: as TensorFlow reports them once applied
    inter_op_threads: int
    cuda_visible_devices: str | None  # the environment variable as the worker has it
    gpus: tuple[str, ...]  # physical GPUs TensorFlow sees
    gpu_memory_growth: bool  # applied to every visible GPU
    gpu_memory_limit_mib: int | None  # the logical device limit applied to every visible GPU


class Start(NamedTuple):
    settings: WorkerSettings
    sys_path: tuple[str, ...]  # the host's, so custom objects unpickle from the same modules


class Ready(NamedTuple):
    call: int
    info: WorkerInfo


class Load(NamedTuple):
    call: int
    model: int  # the worker-local key of this servable; a group worker holds several
    name: str
    path: str
    version: int | None
    options: bytes  # a pickled LoadOptions, unpickled in the worker so failures are LoadErrors


class Loaded(NamedTuple):
    call: int
    artifact: Artifact
    format: Format
    signatures: Mapping[str, SignatureSpec]
    static_shapes: bool


class Lane(NamedTuple):
    number: int  # names the worker's thread; the lane's socket comes attached


class Run(NamedTuple):
    call: int
    model: int
    signature: str
    inputs: Mapping[str, Wire]
    fresh_region: bool  # the lane's request region is new: its descriptor comes attached


class Result(NamedTuple):
    call: int
    outputs: Mapping[str, Wire]
    fresh_region: bool  # the lane's response region is new: its descriptor comes attached


class Failure(NamedTuple):
    call: int
    kind: str  # the tfhost error class name
    message: str
    # The error's one field beyond its message, where it has one: ModelError's type_name,
    # MissingOp's op, MissingCustomObject's object_name.
    detail: str | None


class Unload(NamedTuple):
    model: int


class Shutdown(NamedTuple):
    reason: str


Reply = Ready | Loaded | Result | Failure
Message = Start | Ready | Load | Loaded | Lane | Run | Result | Failure | Unload | Shutdown

# On the wire a message is (tag, its fields as a plain tuple): a NamedTuple pickles
# several times slower, and Run and Result are on every call's path.
_MESSAGES: tuple[Any, ...] = (
    Start,
    Ready,
    Load,
    Loaded,
    Lane,
    Run,
    Result,
    Failure,
    Unload,
    Shutdown,
)
_TAGS: dict[type, int] = {kind: tag for tag, kind in enumerate(_MESSAGES)}


def send(channel: Channel, message: Message, fds: Sequence[int] = ()) -> None:
    """Send ``message``; the descriptors ``fds`` go along (Lane, a fresh region)."""
    channel.send((_TAGS[type(message)], tuple(message)), fds)


def receive(channel: Channel, timeout: float | None = None) -> Message:
    """The next message (see ``Channel.recv`` for its errors)."""
    tag, fields = channel.recv(timeout)
    message: Message = _MESSAGES[tag]._make(fields)
    return message


def receive_reply(channel: Channel, timeout: float | None = None) -> Reply:
    """The next message, which the host side knows is a reply."""
    message = receive(channel, timeout)
    if not isinstance(message, Ready | Loaded | Result | Failure):
        raise InternalError(f"expected a reply from the worker, got {type(message).__name__}")
    return message


_KINDS: dict[str, type[TfhostError]] = {
    cls.__name__: cls
    for cls in (
        AlreadyExists,
        DeadlineExceeded,
        FormatError,
        InputError,
        InternalError,
        LoadError,
        MissingCustomObject,
        MissingOp,
        ModelError,
        NotFound,
        ResourceExhausted,
        TfhostError,
        Unavailable,
    )
}


def failure(call: int, error: TfhostError) -> Failure:
    """The message that carries ``error`` to the host."""
    kind = type(error)
    # A subclass the host does not know travels as its nearest known base (at worst
    # TfhostError itself, which is in _KINDS).
    while kind.__name__ not in _KINDS:
        kind = kind.__mro__[1]
    detail = None
    if isinstance(error, ModelError):
        detail = error.type_name
    elif isinstance(error, MissingOp):
        detail = error.op
    elif isinstance(error, MissingCustomObject):
        detail = error.object_name
    return Failure(call, kind.__name__, error.message, detail)


def error_from(message: Failure) -> TfhostError:
    """The host-side exception for a ``Failure``: same class, same message, same field."""
    kind = _KINDS.get(message.kind, InternalError)
    detail = message.detail or ""
    if kind is ModelError:
        return ModelError(message.message, detail or "Exception")
    if kind is MissingOp:
        return MissingOp(message.message, detail)
    if kind is MissingCustomObject:
        return MissingCustomObject(message.message, detail)
    return kind(message.message)
