"""Input checking before TensorFlow sees the data.

Pure numpy: the error names the model, the input, what was expected and what came,
instead of a TensorFlow traceback from deep inside a graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tfhost.errors import InputError
from tfhost.specs import SignatureSpec, TensorSpec

_STRING = "string"


def numpy_dtype(tf_dtype: str) -> np.dtype[Any]:
    """The numpy dtype that carries a TensorFlow dtype name."""
    cached = _NUMPY_DTYPES.get(tf_dtype)
    if cached is not None:
        return cached
    dtype = _numpy_dtype(tf_dtype)
    _NUMPY_DTYPES[tf_dtype] = dtype  # a racing thread writes the same value
    return dtype


_NUMPY_DTYPES: dict[str, np.dtype[Any]] = {}


def zeros(shape: tuple[int, ...], tf_dtype: str) -> np.ndarray:
    """Zeros (empty strings for ``string``) of a TensorFlow dtype: made-up inputs."""
    numpy = numpy_dtype(tf_dtype)
    if numpy == np.dtype(object):
        return np.full(shape, b"", dtype=object)
    return np.zeros(shape, dtype=numpy)


def _numpy_dtype(tf_dtype: str) -> np.dtype[Any]:
    if tf_dtype == _STRING:
        return np.dtype(object)
    if tf_dtype == "bfloat16":
        import ml_dtypes

        bfloat16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bfloat16
    return np.dtype(tf_dtype)


def _castable(value: np.ndarray, target: np.dtype[Any]) -> bool:
    """Whether ``value`` converts to ``target`` without losing what it means.

    Integers and bools become floats; floats change precision (the model's precision
    is the one that counts); integers narrow only when every value fits. Floats never
    become integers, and numbers never become strings or the reverse.
    """
    src = value.dtype
    if src == target or np.can_cast(src, target, casting="safe"):
        return True
    src_kind, dst_kind = src.kind, target.kind
    if dst_kind in "fc" and src_kind in "biuf":
        return True
    if dst_kind in "iu" and src_kind in "biu":
        if value.size == 0 or src_kind == "b":
            return True
        info = np.iinfo(target)
        return bool(value.min() >= info.min and value.max() <= info.max)
    return dst_kind == "b" and src_kind == "b"


def _utf8(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _as_string_array(model: str, name: str, value: Any) -> np.ndarray:
    """Strings as an object array of bytes, the form TensorFlow takes for tf.string."""
    array = value if isinstance(value, np.ndarray) else np.asarray(value, dtype=object)
    if array.dtype.kind in "US":
        array = array.astype(object)
    if array.dtype.kind != "O":
        raise InputError(
            f"model {model!r}: input {name!r} expects strings, got dtype {array.dtype}"
        )
    out = np.empty(array.shape, dtype=object)
    for index, item in enumerate(array.flat):
        if not isinstance(item, (str, bytes)):
            raise InputError(
                f"model {model!r}: input {name!r} expects strings, got a value of type "
                f"{type(item).__name__}"
            )
        out.flat[index] = _utf8(item)
    return out


def _shape_fits(spec_shape: tuple[int | None, ...] | None, shape: tuple[int, ...]) -> bool:
    if spec_shape is None:
        return True
    if len(spec_shape) != len(shape):
        return False
    # A plain loop: this runs on every request, and a generator costs more than the check.
    for want, got in zip(spec_shape, shape):  # noqa: B905, SIM110 (lengths checked above)
        if want is not None and want != got:
            return False
    return True


def format_shape(shape: tuple[int | None, ...] | None) -> str:
    if shape is None:
        return "any shape"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def check_input(
    model: str, name: str, spec: TensorSpec, value: Any, *, check_shape: bool
) -> np.ndarray:
    """One input converted to the spec's dtype, or an ``InputError`` saying why not."""
    if spec.dtype == _STRING:
        array = _as_string_array(model, name, value)
    elif type(value) is np.ndarray and value.dtype == numpy_dtype(spec.dtype):
        array = value  # already what the model takes, the common case: nothing to convert
    else:
        target = numpy_dtype(spec.dtype)
        try:
            array = value if isinstance(value, np.ndarray) else np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise InputError(
                f"model {model!r}: input {name!r} is not a rectangular array of numbers ({exc})"
            ) from None
        if array.dtype.kind in "OUS":
            raise InputError(
                f"model {model!r}: input {name!r} expects {spec.dtype}, got "
                f"{'strings' if array.dtype.kind in 'US' else 'non-numeric values'}"
            )
        if array.dtype != target:
            if not _castable(array, target):
                raise InputError(
                    f"model {model!r}: input {name!r} expects {spec.dtype}, got {array.dtype} "
                    f"which cannot be converted without losing values"
                )
            array = array.astype(target)
    if check_shape and not _shape_fits(spec.shape, array.shape):
        raise InputError(
            f"model {model!r}: input {name!r} expects shape {format_shape(spec.shape)}, "
            f"got {format_shape(array.shape)}"
        )
    return array


def check_inputs(
    model: str, signature_name: str, signature: SignatureSpec, inputs: Any, *, check_shapes: bool
) -> dict[str, np.ndarray]:
    """Every input checked and converted; exactly the signature's input names."""
    if type(inputs) is not dict and not isinstance(inputs, Mapping):
        raise InputError(
            f"model {model!r}: inputs must be a mapping of input name to array, "
            f"got {type(inputs).__name__}"
        )
    expected = signature.inputs
    if inputs.keys() != expected.keys():
        missing = [k for k in expected if k not in inputs]
        unknown = [k for k in inputs if k not in expected]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing {sorted(missing)}")
            if unknown:
                parts.append(f"unknown {sorted(map(str, unknown))}")
            raise InputError(
                f"model {model!r} signature {signature_name!r}: {' and '.join(parts)} "
                f"inputs; expected exactly {sorted(expected)}"
            )
    return {
        name: check_input(model, name, spec, inputs[name], check_shape=check_shapes)
        for name, spec in expected.items()
    }
