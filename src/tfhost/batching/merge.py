"""Merging requests along the first dimension and splitting the answers back: pure numpy.

A request is a mapping of input name to array, already checked against its signature.
It can join a batch when every input has the same first dimension (its rows) and no
dimension is 0; which batch it joins is its ``key``: the signature, and each input's dtype
and other dimensions (only its rank, when variable lengths are padded).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Inputs = Mapping[str, np.ndarray]
Key = tuple[object, ...]


class NotBatchMajor(Exception):
    """An output whose first dimension is not the batch's row count."""

    def __init__(self, output: str, shape: tuple[int, ...], rows: int) -> None:
        self.output = output
        self.shape = shape
        self.rows = rows
        super().__init__(
            f"output {output!r} has shape {list(shape)}, whose first dimension is not the "
            f"{rows} rows of the batch"
        )


def rows_of(inputs: Inputs) -> int | None:
    """The rows a request brings, or None when it cannot be merged (no inputs, a scalar,
    first dimensions that differ, an empty dimension)."""
    rows: int | None = None
    for array in inputs.values():
        if array.ndim == 0 or 0 in array.shape:
            return None
        if rows is None:
            rows = array.shape[0]
        elif array.shape[0] != rows:
            return None
    return rows


def key_of(signature: str, inputs: Inputs, pad: bool) -> Key:
    """Requests with equal keys can be merged into one batch."""
    if pad:
        return (signature, *((name, a.dtype.str, a.ndim) for name, a in sorted(inputs.items())))
    return (signature, *((name, a.dtype.str, a.shape[1:]) for name, a in sorted(inputs.items())))


def merge(parts: Sequence[Inputs], size: int, pad: bool) -> dict[str, np.ndarray]:
    """``parts`` (of one key) as one request of ``size`` rows: concatenated along the first
    dimension, each input padded to the largest other dimensions when ``pad``, and rows
    added to reach ``size`` by repeating the last part's first row (TF Serving's rule)."""
    rows = sum(rows_of(part) or 0 for part in parts)
    merged: dict[str, np.ndarray] = {}
    for name in parts[0]:
        arrays = [part[name] for part in parts]
        if pad:
            widest = np.max([a.shape[1:] for a in arrays], axis=0)
            arrays = [_pad(a, widest) for a in arrays]
        if size > rows:
            arrays.append(np.repeat(arrays[-1][:1], size - rows, axis=0))
        merged[name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    return merged


def split(
    outputs: Mapping[str, np.ndarray], rows: Sequence[int], size: int
) -> list[dict[str, np.ndarray]]:
    """Each part's rows of ``outputs`` (a call on ``size`` rows, ``rows`` per part, padding
    last); NotBatchMajor when an output's first dimension is not ``size``."""
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != size:
            raise NotBatchMajor(name, array.shape, size)
    if len(rows) == 1 and rows[0] == size:
        return [dict(outputs)]
    answers = []
    start = 0
    for count in rows:
        # A copy, so an answer does not keep the whole batch's array alive.
        answers.append({name: a[start : start + count].copy() for name, a in outputs.items()})
        start += count
    return answers


def padded_size(rows: int, allowed: Sequence[int]) -> int:
    """The smallest allowed batch size that holds ``rows`` (``rows`` when none is given)."""
    for size in allowed:
        if size >= rows:
            return size
    return rows


def _pad(array: np.ndarray, widest: np.ndarray) -> np.ndarray:
    if tuple(widest) == array.shape[1:]:
        return array
    width = [(0, 0), *((0, int(w) - d) for w, d in zip(widest, array.shape[1:], strict=True))]
    # TF Serving pads with the tensor's own first element (batching_util.h AddPadding).
    return np.pad(array, width, mode="constant", constant_values=array.flat[0])
