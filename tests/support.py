"""Helpers the process and lifecycle tests share: worker processes, waiting, events."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

import psutil

from tfhost import Event, Host, State


def workers(label: str | None = None) -> list[psutil.Process]:
    """This process's live worker processes, those with ``label`` if given."""
    found = []
    for child in psutil.Process().children():
        try:
            argv = child.cmdline()
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if "tfhost.cells.worker" in argv and (label is None or argv[-1] == label):
            found.append(child)
    return found


def worker_pid(label: str) -> int:
    (process,) = workers(label)
    return int(process.pid)


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


class Events:
    """Every state change of a host, to wait on without sleeping.

    Each model's events are consumed in order; another model's events wait for their
    own ``next`` call, whatever order the models' events interleave in.
    """

    def __init__(self, host: Host) -> None:
        self._queue: queue.Queue[Event] = queue.Queue()
        self._held: list[Event] = []
        self.unsubscribe = host.subscribe(self._queue.put)

    def next(self, model: str, state: State, timeout: float = 60.0) -> Event:
        """The next event of ``model`` into ``state``; its earlier events are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self._held):
                if event.id.model == model and event.state is state:
                    others = [e for e in self._held[:index] if e.id.model != model]
                    self._held = others + self._held[index + 1 :]
                    return event
            self._held.append(self._queue.get(timeout=max(deadline - time.monotonic(), 0.001)))
