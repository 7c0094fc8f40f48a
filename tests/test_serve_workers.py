"""The gRPC pool: its two limits, a call that waits, its warm threads, its shutdown."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError

import pytest

from tfhost.errors import InputError
from tfhost.serve import workers
from tfhost.serve.command import ServeOptions, serve_settings

WAIT_S = 10.0  # what a call waits for what must happen; reached only when it does not


class Calls:
    """Calls that each start, then block until released, counting how many run at once."""

    def __init__(self, count: int) -> None:
        self.started = [threading.Event() for _ in range(count)]
        self.release = [threading.Event() for _ in range(count)]
        self._lock = threading.Lock()
        self._now = 0
        self.most = 0
        self.threads: set[str] = set()

    def __call__(self, i: int) -> int:
        with self._lock:
            self._now += 1
            self.most = max(self.most, self._now)
            self.threads.add(threading.current_thread().name)
        self.started[i].set()
        try:
            assert self.release[i].wait(WAIT_S), f"call {i} was never released"
        finally:
            with self._lock:
                self._now -= 1
        return i


PoolOf = Callable[[int, int], workers.Pool]


@pytest.fixture
def pool_of() -> Iterator[PoolOf]:
    pools: list[workers.Pool] = []

    def make(threads: int, running: int) -> workers.Pool:
        pools.append(workers.Pool(threads, running))
        return pools[-1]

    yield make
    for pool in pools:
        pool.shutdown(cancel_futures=True)


def test_no_more_calls_run_at_once_than_the_limit(pool_of: PoolOf) -> None:
    pool = pool_of(8, 2)
    calls = Calls(3)
    futures = [pool.submit(calls, i) for i in range(3)]
    assert calls.started[0].wait(WAIT_S) and calls.started[1].wait(WAIT_S)
    # Threads are free (8), but two calls run: the third waits its turn. Were it let
    # through, it would start at once; half a second is many times what that takes.
    assert not calls.started[2].wait(0.5)
    calls.release[0].set()
    assert calls.started[2].wait(WAIT_S)
    calls.release[1].set()
    calls.release[2].set()
    assert [f.result(WAIT_S) for f in futures] == [0, 1, 2]
    assert calls.most == 2


def test_a_waiting_call_gives_its_place_to_the_next(pool_of: PoolOf) -> None:
    pool = pool_of(4, 1)
    second_ran = threading.Event()

    def first() -> bool:
        with workers.waiting():  # as a batched call waits for its batch's answer
            return second_ran.wait(WAIT_S)

    waiting = pool.submit(first)
    second = pool.submit(second_ran.set)
    assert waiting.result(WAIT_S + 1) is True  # with one call running, only if it gave way
    assert second.result(WAIT_S) is None


def test_a_call_done_waiting_runs_on_past_the_limit(pool_of: PoolOf) -> None:
    pool = pool_of(4, 1)
    calls = Calls(1)
    back = threading.Event()
    go_on = threading.Event()

    def waits_then_runs() -> str:
        with workers.waiting():
            assert calls.started[0].wait(WAIT_S)  # the call that took its place runs
        back.set()
        assert go_on.wait(WAIT_S)
        return "done"

    first = pool.submit(waits_then_runs)
    other = pool.submit(calls, 0)
    # Back from its wait while the other call runs: it goes on rather than queueing
    # behind calls that came later.
    assert back.wait(WAIT_S)
    go_on.set()
    assert first.result(WAIT_S) == "done"
    calls.release[0].set()
    assert other.result(WAIT_S) == 0


def test_many_calls_queued_past_both_limits_all_run(pool_of: PoolOf) -> None:
    pool = pool_of(3, 2)
    lock = threading.Lock()
    now = most = 0
    names: set[str] = set()

    def call(i: int) -> int:
        nonlocal now, most
        with lock:
            now += 1
            most = max(most, now)
            names.add(threading.current_thread().name)
        with lock:
            now -= 1
        return i * i

    futures = [pool.submit(call, i) for i in range(200)]
    assert [f.result(WAIT_S) for f in futures] == [i * i for i in range(200)]
    assert most <= 2
    assert 1 <= len(names) <= 3
    assert pool.limits == (3, 2)


def test_the_running_limit_is_at_most_the_threads() -> None:
    pool = workers.Pool(2, 8)
    try:
        assert pool.limits == (2, 2)
        assert workers.Pool(16).limits[1] == min(16, workers.default_running())
    finally:
        pool.shutdown()


def test_an_exception_reaches_the_caller_and_the_thread_serves_on(pool_of: PoolOf) -> None:
    pool = pool_of(1, 1)

    def fails() -> None:
        raise ValueError("bad call")

    with pytest.raises(ValueError, match="bad call"):
        pool.submit(fails).result(WAIT_S)
    assert pool.submit(lambda: 7).result(WAIT_S) == 7


def test_shutdown_runs_the_queued_calls(pool_of: PoolOf) -> None:
    pool = pool_of(2, 1)
    calls = Calls(3)
    futures = [pool.submit(calls, i) for i in range(3)]
    assert calls.started[0].wait(WAIT_S)
    for release in calls.release:
        release.set()
    pool.shutdown(wait=True)
    assert [f.result(0) for f in futures] == [0, 1, 2]
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(calls, 0)


def test_shutdown_can_cancel_the_queued_calls(pool_of: PoolOf) -> None:
    pool = pool_of(2, 1)
    calls = Calls(3)
    futures = [pool.submit(calls, i) for i in range(3)]
    assert calls.started[0].wait(WAIT_S)
    pool.shutdown(wait=False, cancel_futures=True)
    calls.release[0].set()
    assert futures[0].result(WAIT_S) == 0
    for future in futures[1:]:
        with pytest.raises(CancelledError):
            future.result(WAIT_S)
    assert not calls.started[1].is_set() and not calls.started[2].is_set()


def test_each_thread_runs_coroutines_on_its_own_loop_closed_with_the_pool() -> None:
    pool = workers.Pool(2, 2)

    async def loop_of_call() -> asyncio.AbstractEventLoop:
        assert workers.on_worker()
        return asyncio.get_running_loop()

    loop = pool.submit(lambda: workers.run(loop_of_call())).result(WAIT_S)
    assert isinstance(loop, workers.WorkerLoop) and not loop.is_closed()
    pool.shutdown(wait=True)
    assert loop.is_closed()


def test_workers_run_is_refused_off_the_pool() -> None:
    async def nothing() -> None:
        return None

    with pytest.raises(RuntimeError, match=r"threads of a workers\.Pool"):
        workers.run(nothing())


def test_serve_takes_the_running_limit_and_refuses_a_bad_one() -> None:
    assert serve_settings(ServeOptions(None)).grpc_running_calls == workers.default_running()
    assert serve_settings(ServeOptions(None, grpc_running_calls=3)).grpc_running_calls == 3
    for bad in (0, -1):
        with pytest.raises(InputError, match=f"grpc_running_calls must be positive, got {bad}"):
            serve_settings(ServeOptions(None, grpc_running_calls=bad))
