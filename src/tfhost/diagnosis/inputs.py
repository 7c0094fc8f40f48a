"""Inputs for doctor's runs: built deterministically from a signature, or the user's own.

Pure numpy. The same input name, dtype and shape always give the same values, in every
process and for every model: two colliding models get identical inputs, so a model that
returns another model's answer can be recognised by that answer.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tfhost.errors import InputError
from tfhost.specs import SignatureSpec, TensorSpec
from tfhost.validation import format_shape, numpy_dtype

# An unknown dimension (a batch, a sequence length) gets this size: big enough that a
# batch of one cannot hide a bug that mixes rows, small enough to run anywhere.
UNKNOWN_DIM = 2


def small_shape(shape: tuple[int | None, ...] | None) -> tuple[int, ...]:
    """``shape`` with every unknown dimension set small; an unknown rank becomes a vector."""
    if shape is None:
        return (UNKNOWN_DIM,)
    return tuple(UNKNOWN_DIM if d is None or d < 0 else d for d in shape)


def make_input(spec: TensorSpec) -> np.ndarray:
    """A deterministic array for one input: its name, dtype and shape fix every value.

    Floats lie in [-2, 2] on a 1/8 grid (exact in every float width); integers in
    [0, 3) so they stay valid as small vocabulary or class indices; strings are short
    ASCII words.
    """
    shape = small_shape(spec.shape)
    seed = zlib.crc32(f"{spec.name}|{spec.dtype}|{shape}".encode())
    rng = np.random.default_rng(seed)
    if spec.dtype == "string":
        count = int(np.prod(shape, dtype=np.int64))
        words = [f"tfhost-{i}-{int(rng.integers(0, 1000))}".encode() for i in range(count)]
        return np.array(words, dtype=object).reshape(shape)
    try:
        target = numpy_dtype(spec.dtype)
    except TypeError:
        raise InputError(
            f"input {spec.name!r} has dtype {spec.dtype}, which doctor cannot make up; "
            f"pass your own inputs with --inputs FILE.npz"
        ) from None
    if target.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    if target.kind in "iu":
        return rng.integers(0, 3, size=shape).astype(target)
    if target.kind == "c":
        real = rng.integers(-16, 17, size=shape) / 8
        imag = rng.integers(-16, 17, size=shape) / 8
        return (real + 1j * imag).astype(target)
    if target.kind == "f" or spec.dtype == "bfloat16":
        return (rng.integers(-16, 17, size=shape) / 8).astype(target)
    raise InputError(
        f"input {spec.name!r} has dtype {spec.dtype}, which doctor cannot make up; "
        f"pass your own inputs with --inputs FILE.npz"
    )


def make_inputs(signature: SignatureSpec) -> dict[str, np.ndarray]:
    return {name: make_input(spec) for name, spec in signature.inputs.items()}


def user_inputs(
    model: str, signature: SignatureSpec, provided: Mapping[str, np.ndarray], source: str
) -> dict[str, np.ndarray] | None:
    """The arrays from an ``--inputs`` file that feed ``model``; None when the file has
    none of its inputs (doctor makes them up, as without a file).

    A key ``MODEL/INPUT`` feeds one model; a plain ``INPUT`` feeds every model that has an
    input of that name. The model-specific key wins. A file with some of a model's inputs
    but not all is an error.
    """
    if not any(key in provided for name in signature.inputs for key in (f"{model}/{name}", name)):
        return None
    chosen: dict[str, np.ndarray] = {}
    for name in signature.inputs:
        for key in (f"{model}/{name}", name):
            if key in provided:
                chosen[name] = provided[key]
                break
        else:
            spec = signature.inputs[name]
            raise InputError(
                f"{source} has no array for input {name!r} of model {model!r} "
                f"({spec.dtype} {format_shape(spec.shape)}): add a key {name!r} or "
                f"'{model}/{name}'; it has {sorted(provided)}"
            )
    return chosen


def storable(array: np.ndarray) -> np.ndarray:
    """An array that ``np.savez`` writes without pickling: strings become bytes arrays."""
    array = np.asarray(array)
    if array.dtype.kind == "O":
        flat = [v.encode() if isinstance(v, str) else bytes(v) for v in array.flat]
        return np.array(flat, dtype=bytes).reshape(array.shape)
    if array.dtype.kind == "U":
        return np.char.encode(array, "utf-8")
    return array


def save_arrays(path: Path, arrays: Mapping[str, Any]) -> None:
    # Names can hold '/' and ':' (graph tensor names); positional keys keep them intact.
    names = list(arrays)
    stored = {f"a{i}": storable(np.asarray(arrays[n])) for i, n in enumerate(names)}
    np.savez(path, __names__=np.array(names, dtype=str), **stored)  # type: ignore[arg-type]


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        names = [str(n) for n in data["__names__"]]
        return {n: data[f"a{i}"] for i, n in enumerate(names)}


def read_user_file(path: Path) -> dict[str, np.ndarray]:
    """An ``--inputs`` file: ``.npz`` (keys INPUT or MODEL/INPUT) or one ``.npy`` array."""
    if not path.is_file():
        raise InputError(f"--inputs: no file at {path}")
    try:
        if path.suffix == ".npy":
            raise InputError(
                f"--inputs {path}: a .npy file holds one unnamed array; save a .npz with "
                f"np.savez(path, INPUT=array) so each array names its input"
            )
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"--inputs {path}: not a readable .npz file ({exc})") from None
