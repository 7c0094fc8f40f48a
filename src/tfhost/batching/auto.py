"""``max_batch_size = "auto"``: measure a model's latency per batch size when it loads and
take the largest size whose call stays within a bound of a one-row call."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from tfhost.batching.settings import AUTO_LARGEST
from tfhost.errors import TfhostError
from tfhost.specs import DEFAULT_SIGNATURE, SignatureSpec
from tfhost.validation import zeros

# When the model cannot be measured (its inputs have unknown dimensions beyond the first,
# or it refuses made-up inputs): TF Serving's documented starting point for CPUs.
FALLBACK_SIZE = 32
_CALLS = 5  # timed calls per size, after one untimed call; the median counts

Run = Callable[[str, Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class Choice:
    size: int
    why: str  # what was measured, or why nothing was
    latency_s: Mapping[int, float]  # batch size -> median seconds per call


def choose(
    name: str,
    run: Run,
    signatures: Mapping[str, SignatureSpec],
    bound: float,
    largest: int = AUTO_LARGEST,
) -> Choice:
    """The largest power-of-two batch size up to ``largest`` whose median call on zeros
    takes at most ``bound`` times a one-row call of ``serving_default`` (or the first
    signature with inputs)."""
    signature = _measured(signatures)
    if signature is None:
        return Choice(FALLBACK_SIZE, f"no signature to measure; using {FALLBACK_SIZE}", {})
    spec = signatures[signature]
    shapes: dict[str, tuple[int, ...]] = {}
    for key, tensor in spec.inputs.items():
        if tensor.shape is None or len(tensor.shape) == 0 or None in tensor.shape[1:]:
            return Choice(
                FALLBACK_SIZE,
                f"input {key!r} of {signature!r} has shape "
                f"{'unknown' if tensor.shape is None else list(tensor.shape)}: no made-up "
                f"batch to measure; using {FALLBACK_SIZE}",
                {},
            )
        shapes[key] = tuple(d for d in tensor.shape[1:] if d is not None)
    latency: dict[int, float] = {}
    size = 1
    while size <= largest:
        inputs = {
            key: zeros((size, *shape), spec.inputs[key].dtype) for key, shape in shapes.items()
        }
        try:
            latency[size] = _median_call(run, signature, inputs)
        except TfhostError as exc:
            if size == 1:
                return Choice(
                    FALLBACK_SIZE,
                    f"{signature!r} refused made-up inputs ({exc}); using {FALLBACK_SIZE}",
                    {},
                )
            break
        if latency[size] > bound * latency[1]:
            del latency[size]
            break
        size *= 2
    chosen = max(latency)
    why = (
        f"measured {signature!r}: {chosen} rows take "
        f"{latency[chosen] * 1e3:.2f} ms, {latency[chosen] / latency[1]:.2f}x one row "
        f"({latency[1] * 1e3:.2f} ms; bound {bound:g}x)"
    )
    return Choice(chosen, why, latency)


def _measured(signatures: Mapping[str, SignatureSpec]) -> str | None:
    if DEFAULT_SIGNATURE in signatures and signatures[DEFAULT_SIGNATURE].inputs:
        return DEFAULT_SIGNATURE
    for key, spec in sorted(signatures.items()):
        if spec.inputs and not spec.stateful:
            return key
    return None


def _median_call(run: Run, signature: str, inputs: Mapping[str, np.ndarray]) -> float:
    run(signature, inputs)
    times = []
    for _ in range(_CALLS):
        start = time.perf_counter()
        run(signature, inputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
