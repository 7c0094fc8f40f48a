"""Moving messages and tensors between the host and a worker process.

A :class:`Channel` is one end of a Unix stream socket that carries length-prefixed
pickles; a frame may bring file descriptors along (``SCM_RIGHTS``).

Tensors of at least :data:`INLINE_MAX` bytes do not travel in the pickle: they are
copied into a :class:`Region`, an anonymous shared-memory file (``memfd``) that both
processes map, and the message carries only where they are. Regions belong to a lane
(one connection, one call at a time) and are reused call after call, growing to the
largest payload seen, so a steady stream of requests maps no new memory. Smaller
tensors travel as raw bytes in the pickle, where they cost less than the bookkeeping.

The anonymous file is passed by descriptor, never by name, so nothing is left in
``/dev/shm`` when a process dies: the kernel frees the pages once both sides unmap.

Imports neither TensorFlow nor anything that does.
"""

from __future__ import annotations

import array
import contextlib
import mmap
import os
import pickle
import socket
import struct
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

INLINE_MAX = 64 * 1024  # tensors smaller than this travel inside the pickle
MIN_REGION = 1 << 20  # a region never shrinks and starts at 1 MiB
_ALIGN = 64  # TensorFlow avoids a copy for 64-byte aligned buffers
_MAX_FDS = 4  # descriptors one read can bring; a frame brings at most one
_HEADER = struct.Struct("<Q")
_FD_SPACE = socket.CMSG_SPACE(_MAX_FDS * array.array("i").itemsize)
_PICKLE = pickle.HIGHEST_PROTOCOL
_BUFFER = 64 * 1024  # a receive buffer grows for a large frame, and shrinks back after


def _spare_cores() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(cores - 1, 1)


class Calls:
    """How many calls this process has in flight, so a waiter knows whether to poll.

    Polling saves a sleeping reader's wake-up only while a core is free to poll on. Once
    more calls are in flight than cores to spare, the pollers take the cores from the
    model's kernels and the GIL from the other callers (bench/isolation.py, section 5:
    with 16 callers on 2 cores, polling everywhere cost a process-isolated MLP two thirds
    of its throughput), while a sleeper is woken on a core that is busy anyway, cheaply.
    So a ``Channel`` polls only while the count is at most the cores to spare.

    Use ``with CALLS:`` around a call's exchange (the host) or its run (a worker's lane).
    """

    def __init__(self, spare: int) -> None:
        self.spare = spare
        self._lock = threading.Lock()
        self._count = 0

    def __enter__(self) -> None:
        with self._lock:
            self._count += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._count -= 1

    def calm(self) -> bool:
        return self._count <= self.spare  # a racy read is fine: it only tunes a wait


CALLS = Calls(_spare_cores())


class Channel:
    """One end of a framed, descriptor-carrying Unix stream socket.

    Reads are buffered: one system call usually brings a whole frame, header and all.
    Descriptors arrive in the order they were sent, but a read may bring the bytes of
    more than one frame, so they are queued rather than tied to a frame: a message that
    carries one takes the next with ``take_fd``.

    Thread safety: ``send`` may be called from any number of threads (``_send_lock``
    keeps frames whole). ``recv`` and ``take_fd`` must be called by one thread at a
    time. A ``recv`` timeout applies to sends on the same socket too.

    ``spin_s``: how long ``recv`` polls before it sleeps, while ``CALLS`` is calm. Waking
    a reader that sleeps costs its core's exit from an idle state, often longer than the
    exchange it waits for; polling a little first trades that much CPU per message for
    the latency.
    """

    def __init__(self, sock: socket.socket, spin_s: float = 0.0) -> None:
        self._sock = sock
        self.spin_s = spin_s
        self._send_lock = threading.Lock()
        self._buffer = bytearray(_BUFFER)
        self._start = 0  # the buffered bytes not yet read are _buffer[_start:_end]
        self._end = 0
        self._fds: deque[int] = deque()
        self._timeout: float | None = None

    def send(self, message: object, fds: Sequence[int] = ()) -> None:
        """Send one message; raises OSError when the other end is gone."""
        payload = pickle.dumps(message, protocol=_PICKLE)
        header = _HEADER.pack(len(payload))
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        total = len(header) + len(payload)
        with self._send_lock:
            sent = self._sock.sendmsg([header, payload], ancillary, socket.MSG_NOSIGNAL)
            if sent < total:  # a stream socket may take a large frame in pieces
                rest = memoryview(header + payload if sent < len(header) else payload)
                offset = sent if sent < len(header) else sent - len(header)
                self._sock.sendall(rest[offset:], socket.MSG_NOSIGNAL)

    def recv(self, timeout: float | None = None) -> Any:
        """The next message.

        Raises EOFError once the peer is gone, TimeoutError when nothing arrives for
        ``timeout`` seconds (None: wait as long as it takes).
        """
        if timeout != self._timeout:  # a system call; skipped when the timeout stays the same
            self._sock.settimeout(timeout)
            self._timeout = timeout
        self._fill(_HEADER.size)
        (length,) = _HEADER.unpack_from(self._buffer, self._start)
        self._fill(_HEADER.size + length)
        begin = self._start + _HEADER.size
        with memoryview(self._buffer) as whole, whole[begin : begin + length] as frame:
            message = pickle.loads(frame)
        self._start = begin + length
        if self._start == self._end:
            self._start = self._end = 0
            if len(self._buffer) > _BUFFER:
                self._buffer = bytearray(_BUFFER)
        return message

    def take_fd(self) -> int:
        """The next descriptor received; the caller owns it."""
        if not self._fds:
            raise EOFError("a message promised a descriptor that never came")
        return self._fds.popleft()

    def close(self) -> None:
        """Close this end; the peer's ``recv`` then raises EOFError."""
        with contextlib.suppress(OSError):  # already disconnected
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        while self._fds:
            os.close(self._fds.popleft())

    def _fill(self, needed: int) -> None:
        """Read until at least ``needed`` bytes past ``_start`` are buffered."""
        while self._end - self._start < needed:
            if self._start + needed > len(self._buffer):  # no room: move to the front, grow
                pending = self._buffer[self._start : self._end]
                if needed > len(self._buffer):
                    self._buffer = bytearray(max(needed, 2 * len(self._buffer)))
                self._buffer[: len(pending)] = pending
                self._start, self._end = 0, len(pending)
            with memoryview(self._buffer) as whole, whole[self._end :] as free:
                n, ancillary = self._receive(free)
            self._fds.extend(_descriptors(ancillary))
            if n == 0:
                raise EOFError("channel closed")
            self._end += n

    def _receive(self, free: memoryview) -> tuple[int, list[tuple[int, int, bytes]]]:
        if self.spin_s > 0 and CALLS.calm():
            give_up = time.perf_counter() + self.spin_s
            while True:
                try:
                    n, ancillary, _, _ = self._sock.recvmsg_into(
                        [free], _FD_SPACE, socket.MSG_DONTWAIT
                    )
                    return n, ancillary
                except BlockingIOError:
                    if time.perf_counter() >= give_up:
                        break
        n, ancillary, _, _ = self._sock.recvmsg_into([free], _FD_SPACE)
        return n, ancillary


def channel_pair(spin_s: float = 0.0) -> tuple[Channel, socket.socket]:
    """A connected pair: the host's Channel, and the socket to hand to the worker."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return Channel(mine, spin_s), theirs


def _descriptors(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(data[: len(data) - len(data) % received.itemsize])
            fds.extend(received)
    for fd in fds:  # as our own sockets are: never leaked into a process a model starts
        os.set_inheritable(fd, False)
    return fds


class Region:
    """Shared memory mapped by both processes: an anonymous file passed by descriptor.

    The side that creates a region keeps its descriptor (``fd``) to send it along with
    the message that first uses it; the side that receives it maps it and closes the
    descriptor at once. Not thread-safe: a region belongs to one lane, and a lane
    carries one call at a time.
    """

    def __init__(self, fd: int, size: int, *, keep_fd: bool) -> None:
        self.size = size
        self.buf = mmap.mmap(fd, size)
        self.fd = fd if keep_fd else -1
        if not keep_fd:
            os.close(fd)

    @classmethod
    def create(cls, needed: int) -> Region:
        size = max(MIN_REGION, 1 << (max(needed, 1) - 1).bit_length())
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("tfhost-tensors", os.MFD_CLOEXEC)
        else:  # no memfd (not Linux): an unlinked temporary file works the same way
            with tempfile.TemporaryFile() as anonymous:
                fd = os.dup(anonymous.fileno())
        os.ftruncate(fd, size)
        return cls(fd, size, keep_fd=True)

    @classmethod
    def attach(cls, fd: int) -> Region:
        """Map a region whose descriptor arrived in a message; takes ownership of ``fd``."""
        return cls(fd, os.fstat(fd).st_size, keep_fd=False)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(BufferError):  # an array still views it: it goes with it
            self.buf.close()


# How one tensor travels: (how, dtype, shape, what). Plain tuples, because they pickle
# several times faster than NamedTuples or arrays, and this is the per-call path.
_BYTES = 0  # what: its bytes, in the message
_SHARED = 1  # what: its offset in the lane's region
_OBJECT = 2  # what: the array itself, pickled (strings)
Wire = tuple[int, Any, tuple[int, ...], Any]


def _travels_shared(value: np.ndarray) -> bool:
    return value.nbytes >= INLINE_MAX and not value.dtype.hasobject


def _dtype(dtype: np.dtype[Any]) -> Any:
    # numpy's own dtypes by their short code; others (ml_dtypes' bfloat16) as themselves
    return dtype.str if dtype.isbuiltin else dtype


def shared_bytes(arrays: Mapping[str, np.ndarray]) -> int:
    """How large a region must be for the tensors of ``arrays`` that go through it."""
    total = 0
    for value in arrays.values():
        if _travels_shared(value):
            total = _aligned(total) + value.nbytes
    return total


def fit(region: Region | None, needed: int) -> tuple[Region | None, bool]:
    """A region of at least ``needed`` bytes: ``region`` if it is big enough, else a new one.

    Returns the region and whether it is new (its descriptor must go with the message).
    The old region is closed when replaced.
    """
    if needed == 0 or (region is not None and region.size >= needed):
        return region, False
    if region is not None:
        region.close()
    return Region.create(needed), True


def pack(arrays: Mapping[str, np.ndarray], region: Region | None) -> dict[str, Wire]:
    """How ``arrays`` travel; large ones are copied into ``region`` (sized by ``shared_bytes``)."""
    wire: dict[str, Wire] = {}
    offset = 0
    for key, value in arrays.items():
        if value.dtype.hasobject:
            wire[key] = (_OBJECT, None, value.shape, value)
        elif not _travels_shared(value):
            # bytearray, not bytes: the receiver's array must be writable, as inline
            data = bytearray(np.ascontiguousarray(value))
            wire[key] = (_BYTES, _dtype(value.dtype), value.shape, data)
        else:
            assert region is not None  # fit() gave one, since shared_bytes() > 0
            offset = _aligned(offset)
            target = np.ndarray(value.shape, value.dtype, buffer=region.buf, offset=offset)
            np.copyto(target, value, casting="no")
            wire[key] = (_SHARED, _dtype(value.dtype), value.shape, offset)
            offset += value.nbytes
    return wire


def unpack(wire: Mapping[str, Wire], region: Region | None, *, copy: bool) -> dict[str, np.ndarray]:
    """Arrays from a message. ``copy=False`` gives views into ``region`` for the shared
    tensors, valid until the lane's next call; ``copy=True`` gives arrays of their own."""
    arrays: dict[str, np.ndarray] = {}
    for key, (how, dtype, shape, what) in wire.items():
        if how == _BYTES:
            arrays[key] = np.frombuffer(what, np.dtype(dtype)).reshape(shape)
        elif how == _SHARED:
            if region is None:
                raise ValueError(f"tensor {key!r} refers to a region that was never sent")
            view = np.ndarray(shape, np.dtype(dtype), buffer=region.buf, offset=what)
            arrays[key] = view.copy() if copy else view
        else:
            arrays[key] = what
    return arrays


def _aligned(offset: int) -> int:
    return (offset + _ALIGN - 1) // _ALIGN * _ALIGN
