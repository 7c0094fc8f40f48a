"""How a child process is tied to its parent, and how its end is told.

One job, shared by every child process tfhost starts (a process cell's worker, a doctor
step): the child dies with its parent, and the parent words how the child ended and finds
the log line worth quoting. No TensorFlow here; the host side imports it.

- ``die_with_parent``: called first thing in the child.
- ``describe_exit``: a child's exit status in words.
- ``last_fatal``: the last line of a child's log that says why it died.
- ``is_startup_noise``: TensorFlow's start-up chatter, which never says why.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterable
from typing import NoReturn

_PR_SET_PDEATHSIG = 1
_PARENT_POLL_S = 0.5

# Log lines worth quoting when a child dies: absl FATAL lines (a failed CHECK, the Abort
# op), Python's fatal errors, and the last line of a Python traceback.
_FATAL_LINE = re.compile(
    r"^F\d{4} |Fatal Python error|Check failed|^[A-Za-z_][\w.]*(?:Error|Exception)\b"
)
# TensorFlow's start-up chatter (absl lines logged before logging is set up, oneDNN and
# CUDA notices, the CPU-features banner), which says nothing about why a child died.
_STARTUP_NOISE = (
    "I0000",
    "W0000",
    "E0000",
    "WARNING: All log messages",
    "oneDNN",
    "cuda",
    "To enable the following",
    "This TensorFlow binary",
)


def die_with_parent(parent: int) -> None:
    """End this process when ``parent`` ends, however it ends (even SIGKILL): no orphans.

    On Linux the kernel sends SIGKILL (``PR_SET_PDEATHSIG``), which works even when every
    thread is stuck inside TensorFlow; elsewhere a daemon thread watches ``getppid``.
    Linux sends the signal when the parent *thread* that started this process ends, so
    the parent must start it from a thread that outlives it. A parent already gone by the
    time this runs ends this process at once (exit status 0, streams flushed).
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    else:
        threading.Thread(
            target=_watch_parent, args=(parent,), name="tfhost-parent-watch", daemon=True
        ).start()
    if os.getppid() != parent:  # it died before the death signal was armed
        _exit_now()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL_S)
    _exit_now()


def _exit_now() -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken stream
            stream.flush()
    os._exit(0)


def signal_name(exitcode: int) -> str:
    """``SIGKILL`` for a ``Popen.returncode`` of -9."""
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"


def describe_exit(
    exitcode: int, recycled: str | None = None, stopping: bool = False
) -> tuple[str, str]:
    """``how`` and ``why`` a child that ended with ``exitcode`` (``Popen.returncode``) ended.

    ``how`` follows "its process ..." ("was killed by SIGABRT", "exited with code 1");
    ``why``, empty or starting with a space, may follow what it was doing. ``recycled``
    says why the parent killed it on purpose; ``stopping``, that the parent asked it to end.
    """
    if recycled is not None:
        return f"was recycled ({signal_name(exitcode)})", f" because {recycled}"
    if stopping:
        return "was shut down", ""
    if exitcode < 0:
        why = ""
        if -exitcode == signal.SIGKILL:
            why = " (by a person, a supervisor, or the kernel's out-of-memory killer)"
        return f"was killed by {signal_name(exitcode)}", why
    return f"exited with code {exitcode}", ""


def last_fatal(lines: Iterable[str]) -> str | None:
    """The last of ``lines`` that says why a process died (at most 500 characters)."""
    for line in reversed(list(lines)):
        if _FATAL_LINE.search(line):
            return line.strip()[:500]
    return None


def is_startup_noise(line: str) -> bool:
    """Whether ``line`` is TensorFlow's start-up chatter rather than a reason."""
    return line.startswith(_STARTUP_NOISE)
