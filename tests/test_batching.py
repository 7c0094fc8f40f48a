"""Dynamic batching in the library: answers equal unbatched ones, neighbours never fail
each other, the queue is bounded, and what cannot be merged is not.

Tolerance: a merged call runs TensorFlow's (oneDNN's) kernels on a larger batch, which may
block and sum in another order than a one-row call, so batched floats are compared with
``rtol=1e-5, atol=1e-6`` rather than for equality (docs/batching.md).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support import wait_until
from tfhost import Host
from tfhost.batching import BatchingSettings
from tfhost.batching.merge import NotBatchMajor, key_of, merge, padded_size, rows_of, split
from tfhost.errors import DeadlineExceeded, InputError, Unavailable
from tfhost.fleet.config import ConfigError, read_config

TF_SERVING_DATA = Path(__file__).parent / "data" / "tf_serving"
RTOL, ATOL = 1e-5, 1e-6
# Long enough that requests started together from threads meet in one batch.
GATHER = BatchingSettings(max_batch_size=8, batch_timeout_micros=300_000, num_batch_threads=1)


def _x(i: int, rows: int = 1) -> np.ndarray:
    return (np.arange(rows * 4, dtype=np.float32).reshape(rows, 4) + i) / 7


def _together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` from threads released at once; each result, or the error it raised."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


@pytest.fixture(scope="module")
def plain(batchy: Path) -> Iterator[Host]:
    """The unbatched answers."""
    with Host() as host:
        host.load("batchy", batchy)
        yield host


def _sizes(host: Host, name: str) -> dict[int, int]:
    info = host.status(name)[0]
    assert info.batching is not None
    return dict(info.batching.batch_sizes)


# -- pure: merge and split ------------------------------------------------------------------


def test_rows_and_keys() -> None:
    assert rows_of({"a": np.zeros((3, 2)), "b": np.zeros((3,))}) == 3
    assert rows_of({"a": np.zeros((3, 2)), "b": np.zeros((2,))}) is None  # first dims differ
    assert rows_of({"a": np.zeros(())}) is None  # a scalar
    assert rows_of({"a": np.zeros((0, 2))}) is None  # nothing to merge
    assert rows_of({}) is None
    one, two = {"x": np.zeros((1, 3))}, {"x": np.zeros((2, 5))}
    assert key_of("s", one, pad=False) != key_of("s", two, pad=False)
    assert key_of("s", one, pad=True) == key_of("s", two, pad=True)
    assert key_of("s", one, pad=True) != key_of("t", one, pad=True)
    assert key_of("s", one, pad=True) != key_of("s", {"x": np.zeros((1, 3), np.int32)}, pad=True)


def test_merge_pads_to_the_size_with_the_last_parts_first_row() -> None:
    a = {"x": np.array([[1.0, 2.0]])}
    b = {"x": np.array([[3.0, 4.0], [5.0, 6.0]])}
    merged = merge([a, b], 5, pad=False)
    assert merged["x"].tolist() == [[1, 2], [3, 4], [5, 6], [3, 4], [3, 4]]
    answers = split({"y": merged["x"] * 10}, [1, 2], 5)
    assert [r["y"].tolist() for r in answers] == [[[10, 20]], [[30, 40], [50, 60]]]


def test_merge_pads_variable_lengths_with_each_tensors_first_element() -> None:
    a = {"t": np.array([[7.0, 8.0]])}
    b = {"t": np.array([[1.0, 2.0, 3.0]])}
    assert merge([a, b], 2, pad=True)["t"].tolist() == [[7, 8, 7], [1, 2, 3]]


def test_split_refuses_an_output_that_is_not_batch_major() -> None:
    with pytest.raises(NotBatchMajor, match="'total'"):
        split({"y": np.zeros((3, 1)), "total": np.zeros((4,))}, [1, 2], 3)
    with pytest.raises(NotBatchMajor):
        split({"s": np.zeros(())}, [1], 1)


def test_padded_size() -> None:
    assert padded_size(3, (2, 4, 8)) == 4
    assert padded_size(4, (2, 4, 8)) == 4
    assert padded_size(3, ()) == 3


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size must be a positive int"),
        ({"max_batch_size": "big"}, "max_batch_size"),
        ({"batch_timeout_micros": -1}, "batch_timeout_micros"),
        ({"max_enqueued_batches": 0}, "max_enqueued_batches"),
        ({"num_batch_threads": 0}, "num_batch_threads"),
        ({"max_batch_size": 8, "allowed_batch_sizes": (4, 2, 8)}, "must increase"),
        ({"max_batch_size": 8, "allowed_batch_sizes": (2, 4)}, "last entry was 4; expected 8"),
        ({"max_batch_size": "auto", "allowed_batch_sizes": (2,)}, "auto"),
        ({"pad_variable_length_inputs": 1}, "pad_variable_length_inputs"),
        ({"auto_latency_bound": 0.5}, "auto_latency_bound"),
    ],
)
def test_settings_refuse_bad_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        BatchingSettings(**values)


def test_tfhost_toml_batching(tmp_path: Path) -> None:
    (tmp_path / "a" / "1").mkdir(parents=True)
    (tmp_path / "b" / "1").mkdir(parents=True)
    (tmp_path / "tfhost.toml").write_text(
        "[host]\nbatching = { max_batch_size = 8, allowed_batch_sizes = [4, 8] }\n"
        "[models.b]\nbatching = false\n"
    )
    models = read_config(tmp_path).models
    assert models["a"].batching == BatchingSettings(max_batch_size=8, allowed_batch_sizes=(4, 8))
    assert models["b"].batching is False
    (tmp_path / "tfhost.toml").write_text("[models.a]\nbatching = { max_batch = 8 }\n")
    with pytest.raises(ConfigError, match=r"models\.a\.batching\.max_batch.*max_batch_size"):
        read_config(tmp_path)
    (tmp_path / "tfhost.toml").write_text("[models.a]\nbatching = { max_batch_size = -1 }\n")
    with pytest.raises(ConfigError, match=r"models\.a\.batching: max_batch_size must be"):
        read_config(tmp_path)


# -- through the Python API -----------------------------------------------------------------


def test_batched_answers_equal_unbatched_ones(batchy: Path, plain: Host) -> None:
    inputs = [_x(i, rows=1 + i % 3) for i in range(24)]
    expected = [plain.predict("batchy", {"x": x})["y"] for x in inputs]
    with Host() as host:
        host.load("batchy", batchy, batching=GATHER)
        got = _together([lambda x=x: host.predict("batchy", {"x": x}) for x in inputs])
        sizes = _sizes(host, "batchy")
    for answer, want in zip(got, expected, strict=True):
        np.testing.assert_allclose(answer["y"], want, rtol=RTOL, atol=ATOL)
    assert max(sizes) > 3, f"no request was merged: {sizes}"
    assert max(sizes) <= 8


def test_asyncio_callers_are_batched_without_a_thread_each(batchy: Path, plain: Host) -> None:
    inputs = [_x(i) for i in range(12)]
    expected = [plain.predict("batchy", {"x": x})["y"] for x in inputs]

    async def main(host: Host) -> list[dict[str, np.ndarray]]:
        return await asyncio.gather(*(host.predict_async("batchy", {"x": x}) for x in inputs))

    # Fewer serving threads than requests: a request waits for its batch, not for a thread.
    with Host(settings=_settings(serving_threads=2)) as host:
        host.load("batchy", batchy, batching=GATHER)
        got = asyncio.run(main(host))
        sizes = _sizes(host, "batchy")
    for answer, want in zip(got, expected, strict=True):
        np.testing.assert_allclose(answer["y"], want, rtol=RTOL, atol=ATOL)
    assert max(sizes) == 8, sizes


def _settings(**values: Any) -> Any:
    from tfhost.settings import HostSettings

    return HostSettings(**values)


def test_a_process_isolated_model_is_batched_in_the_host(batchy: Path, plain: Host) -> None:
    inputs = [_x(i) for i in range(6)]
    expected = [plain.predict("batchy", {"x": x})["y"] for x in inputs]
    with Host() as host:
        host.load("batchy", batchy, isolation="process", batching=GATHER)
        got = _together([lambda x=x: host.predict("batchy", {"x": x}) for x in inputs])
        sizes = _sizes(host, "batchy")
    for answer, want in zip(got, expected, strict=True):
        np.testing.assert_allclose(answer["y"], want, rtol=RTOL, atol=ATOL)
    # The merge happened in the host: the worker was called with several rows at once.
    assert max(sizes) > 1, sizes


def test_a_request_alone_runs_at_once_in_its_callers_thread(batchy: Path) -> None:
    with Host() as host:
        host.load("batchy", batchy, batching=GATHER)
        start = time.monotonic()
        host.predict("batchy", {"x": _x(0)})
        waited = time.monotonic() - start
        info = host.status("batchy")[0].batching
    assert info is not None
    assert info.queued == 0  # never queued: nothing else was running
    assert info.batch_sizes == {1: 1}
    assert waited < 0.3  # it did not wait out the 300 ms batch timeout


def test_a_bad_request_fails_alone_and_its_neighbours_answer(batchy: Path, plain: Host) -> None:
    good = [_x(i) for i in range(5)]
    expected = [plain.predict("batchy", {"x": x})["y"] for x in good]
    with Host() as host:
        host.load("batchy", batchy, batching=GATHER)
        calls: list[Callable[[], Any]] = [
            lambda x=x: host.predict("batchy", {"x": x}) for x in good
        ]
        calls.insert(2, lambda: host.predict("batchy", {"x": np.zeros((1, 5), np.float32)}))
        got = _together(calls)
    bad = got.pop(2)
    assert isinstance(bad, InputError)
    assert "x" in str(bad) and "5" in str(bad)
    for answer, want in zip(got, expected, strict=True):
        np.testing.assert_allclose(answer["y"], want, rtol=RTOL, atol=ATOL)


def test_a_batch_the_model_refuses_is_run_again_request_by_request(batchy: Path) -> None:
    with Host() as host:
        host.load("batchy", batchy, batching=GATHER)
        indices = [[0], [1], [7], [2]]  # 7 is out of the lookup table's range
        busy = _async_slow(host)  # so that all four wait in the queue, and meet there
        wait_until(lambda: sum(_sizes(host, "batchy").values()) == 1, 10, "the slow call runs")
        got = _together(
            [
                lambda i=i: host.predict(
                    "batchy", {"index": np.array(i, np.int32)}, signature="lookup"
                )
                for i in indices
            ]
        )
        busy.result(timeout=10)
        sizes = _sizes(host, "batchy")
    # It failed as it fails alone: the error names its own row 0, not row 2 of the batch.
    assert isinstance(got[2], InputError), got[2]
    assert "indices[0] = 7" in str(got[2])
    assert [g["value"].tolist() for k, g in enumerate(got) if k != 2] == [[10], [20], [30]]
    assert 4 in sizes, f"the four were not merged first: {sizes}"


def test_a_request_whose_deadline_passes_in_the_queue_is_not_run(batchy: Path) -> None:
    settings = BatchingSettings(max_batch_size=1, num_batch_threads=1)
    with Host() as host:
        host.load("batchy", batchy, batching=settings)
        cell_busy = _async_slow(host)  # takes the batch thread for 200 ms
        wait_until(lambda: sum(_sizes(host, "batchy").values()) == 1, 10, "the slow call runs")
        with pytest.raises(DeadlineExceeded, match="while it waited in the batch queue"):
            host.predict(
                "batchy", {"x": np.ones((1, 1), np.float32)}, signature="slow", timeout=0.05
            )
        assert cell_busy.result(timeout=10)["y"].tolist() == [[2.0]]
        assert sum(_sizes(host, "batchy").values()) == 1  # the expired request never ran


def _async_slow(host: Host) -> Any:
    """A slow request queued for the batch threads (not run in its caller's thread)."""
    import concurrent.futures

    result: concurrent.futures.Future[dict[str, np.ndarray]] = concurrent.futures.Future()

    def main() -> None:
        async def call() -> dict[str, np.ndarray]:
            return await host.predict_async(
                "batchy", {"x": np.ones((1, 1), np.float32)}, signature="slow"
            )

        try:
            result.set_result(asyncio.run(call()))
        except Exception as exc:
            result.set_exception(exc)

    threading.Thread(target=main, daemon=True).start()
    return result


def _busy(host: Host) -> Any:
    """A slow request running on the batch thread (the cell is busy until it answers)."""
    running = _async_slow(host)
    wait_until(lambda: sum(_sizes(host, "batchy").values()) == 1, 10, "the slow call runs")
    return running


def _queue_one(host: Host) -> Any:
    """A slow request waiting in the queue behind the one running."""
    queued = _async_slow(host)
    wait_until(
        lambda: host.status("batchy")[0].batching.queue_depth == 1,  # type: ignore[union-attr]
        10,
        "a second call queued",
    )
    return queued


def test_a_full_queue_refuses_at_once(batchy: Path) -> None:
    settings = BatchingSettings(max_batch_size=1, max_enqueued_batches=1, num_batch_threads=1)
    one = {"x": np.ones((1, 1), np.float32)}
    with Host() as host:
        host.load("batchy", batchy, batching=settings)
        running = _busy(host)
        queued = _queue_one(host)
        with pytest.raises(Unavailable, match="batch queue is full"):
            host.predict("batchy", one, signature="slow")
        assert running.result(timeout=10)["y"].tolist() == [[2.0]]
        assert queued.result(timeout=10)["y"].tolist() == [[2.0]]
        # Refusing it lost nothing: the model serves.
        assert host.predict("batchy", one, signature="slow")["y"].tolist() == [[2.0]]


def test_outputs_that_are_not_batch_major_turn_batching_off_for_the_signature(
    batchy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inputs = [_x(i, rows=1 + i % 2) for i in range(6)]
    with Host() as host, caplog.at_level(logging.WARNING, "tfhost.batching"):
        host.load("batchy", batchy, batching=GATHER)
        got = _together(
            [lambda x=x: host.predict("batchy", {"x": x}, signature="totals") for x in inputs]
        )
        info = host.status("batchy")[0].batching
        after = host.predict("batchy", {"x": inputs[1]}, signature="totals")
    for answer, x in zip(got, inputs, strict=True):
        np.testing.assert_allclose(answer["total"], x.sum(axis=0), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(answer["y"], x * 2, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(after["total"], inputs[1].sum(axis=0), rtol=RTOL, atol=ATOL)
    assert info is not None
    assert "'total'" in info.unbatched["totals"]
    assert "serving_default" not in info.unbatched
    warned = [r.message for r in caplog.records if "batching turned off" in r.message]
    assert warned and "'total'" in warned[0]


def test_batches_are_padded_to_the_allowed_sizes(batchy: Path, plain: Host) -> None:
    settings = BatchingSettings(
        max_batch_size=8,
        allowed_batch_sizes=(4, 8),
        batch_timeout_micros=300_000,
        num_batch_threads=1,
    )
    inputs = [_x(i) for i in range(3)]
    expected = [plain.predict("batchy", {"x": x})["y"] for x in inputs]
    with Host() as host:
        host.load("batchy", batchy, batching=settings)
        got = _together([lambda x=x: host.predict("batchy", {"x": x}) for x in inputs])
        sizes = _sizes(host, "batchy")
    for answer, want in zip(got, expected, strict=True):
        assert answer["y"].shape == (1, 3)
        np.testing.assert_allclose(answer["y"], want, rtol=RTOL, atol=ATOL)
    # The two that met were padded to 4; the one that ran alone was never padded.
    assert set(sizes) <= {1, 4, 8} and 4 in sizes, sizes


@pytest.mark.parametrize("pad", [False, True])
def test_variable_length_inputs(batchy: Path, pad: bool) -> None:
    settings = BatchingSettings(
        batch_timeout_micros=300_000, num_batch_threads=1, pad_variable_length_inputs=pad
    )
    short = {"tokens": np.array([[1.0, 2.0]], np.float32)}
    long = {"tokens": np.array([[3.0, 4.0, 5.0]], np.float32)}
    with Host() as host:
        host.load("batchy", batchy, batching=settings)
        calls = [lambda i=i: host.predict("batchy", i, signature="ragged") for i in (short, long)]
        # One request runs while the idle cell takes it; the other two meet in the queue.
        first = _async_slow(host)
        wait_until(lambda: sum(_sizes(host, "batchy").values()) == 1, 10, "the slow call runs")
        got = _together(calls)
        first.result(timeout=10)
        sizes = _sizes(host, "batchy")
    if pad:
        # Merged: the short one padded with its own first element, as TF Serving pads.
        assert got[0]["doubled"].tolist() == [[2.0, 4.0, 2.0]]
        assert sizes.get(2) == 1, sizes
    else:
        assert got[0]["doubled"].tolist() == [[2.0, 4.0]]  # never merged with the longer one
        assert 2 not in sizes, sizes
    assert got[1]["doubled"].tolist() == [[6.0, 8.0, 10.0]]


def test_stateful_signatures_are_never_merged() -> None:
    counter = TF_SERVING_DATA / "saved_model_counter"
    by = "incr_counter_by"
    with Host() as host:
        info = host.load("counter", counter, batching=GATHER)
        assert {k: s.stateful for k, s in info.signatures.items()} == {
            "get_counter": False,
            "incr_counter": True,
            by: True,
            "reset_counter": True,
        }
        got = _together(
            [lambda: host.predict("counter", {"delta": np.float32(1)}, signature=by)] * 4
        )
        host.predict("counter", {}, signature="reset_counter")
        steps = [float(host.predict("counter", {"delta": np.float32(2)}, signature=by)["output"])]
        steps.append(float(host.predict("counter", {}, signature="incr_counter")["output"]))
        batching = host.status("counter")[0].batching
    assert all(isinstance(g, dict) for g in got), got
    assert steps == [2.0, 3.0]  # each call saw the state the one before left
    assert batching is not None
    for signature in ("incr_counter", by, "reset_counter"):
        assert batching.unbatched[signature] == "it writes state"
    assert "get_counter" not in batching.unbatched
    assert batching.queued == 0  # none went through the queue


def test_a_tf1_saved_model_with_a_saver_is_not_stateful() -> None:
    with Host() as host:
        info = host.load("hpt", TF_SERVING_DATA / "saved_model_half_plus_two_cpu")
    assert not any(spec.stateful for spec in info.signatures.values())


def test_auto_measures_and_says_what_it_chose(batchy: Path, toolbox: Path) -> None:
    with Host() as host:
        info = host.load("batchy", batchy, batching=BatchingSettings(max_batch_size="auto"))
        unknown = host.load("toolbox", toolbox, batching=BatchingSettings(max_batch_size="auto"))
    assert info.batching is not None
    size = info.batching.max_batch_size
    assert size >= 1 and size & (size - 1) == 0  # a power of two
    assert info.batching.chosen.startswith("auto: measured 'serving_default'")
    assert f"{size} rows take" in info.batching.chosen
    # The toolbox's serving_default takes images of unknown size: nothing to measure.
    assert unknown.batching is not None
    assert unknown.batching.max_batch_size == 32
    assert "unknown" in unknown.batching.chosen or "None" in unknown.batching.chosen


def test_an_asyncio_caller_that_gives_up_while_queued_is_never_run(batchy: Path) -> None:
    settings = BatchingSettings(max_batch_size=1, num_batch_threads=1)
    one = {"x": np.ones((1, 1), np.float32)}
    with Host() as host:
        host.load("batchy", batchy, batching=settings)
        running = _busy(host)  # the batch thread is taken for 200 ms

        async def give_up() -> None:
            call = host.predict_async("batchy", one, signature="slow")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(call, 0.05)

        asyncio.run(give_up())  # its loop is closed by the time the batch thread is free
        assert running.result(timeout=10)["y"].tolist() == [[2.0]]
        wait_until(
            lambda: host.status("batchy")[0].batching.queue_depth == 0,  # type: ignore[union-attr]
            10,
            "the abandoned request taken from the queue",
        )
        assert host.predict("batchy", one, signature="slow")["y"].tolist() == [[2.0]]
        assert sum(_sizes(host, "batchy").values()) == 2  # the abandoned request never ran


def test_unloading_fails_what_is_queued(batchy: Path) -> None:
    settings = BatchingSettings(max_batch_size=1, num_batch_threads=1)
    with Host() as host:
        host.load("batchy", batchy, batching=settings)
        running = _busy(host)
        queued = _queue_one(host)
        host.unload("batchy", timeout=0.01)
        assert running.result(timeout=10)["y"].tolist() == [[2.0]]
        with pytest.raises(Unavailable, match="unloaded"):
            queued.result(timeout=10)
