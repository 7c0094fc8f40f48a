"""Eager formats run through cached concrete functions.

TF2 SavedModels, tf.keras 2 SavedModels and Keras 3 ``export()`` directories all load
through ``tf.saved_model.load`` (Keras 3's ``load_model`` refuses the legacy ones);
their signatures are already concrete functions. Keras models (``.keras``, ``.h5``) get
one traced here, so a call never goes through ``model.predict``'s per-call setup.

The fast path. Calling a concrete function (``fn(**inputs)``) spends most of a small
call in TensorFlow's Python argument handling: binding the call to the function type,
converting and checking each argument, resolving captures, packing the outputs. For each
signature, ``FunctionServable`` resolves all of that once, at load, from TensorFlow's own
structures: the function's runtime name, its captured inputs, the flat order of its
inputs (by binding one tensor per input name through ``function_type``, exactly as a call
does) and which flat output is which output name (``function_type.pack_output``). A call
then converts each input as TensorFlow would (a copy, into an ``EagerTensor`` of the
declared dtype) and runs ``context.call_function`` on the flat list.

The fast path is checked at load against TensorFlow's own binding of a call, without
running the model: a load never runs a signature, since signatures may have effects (a
counter, a write, an abort) and big models cost time. Markers (one tensor per input, of
the declared dtype and shape with ``None`` dimensions as 1) are bound the way a call binds
them, and the plan must account for every argument of the function's definition and every
output name. Anything else, including TensorFlow internals that differ from the ones read
here, leaves that signature on the ordinary call (``fast_path()`` says which and why; the
reason is logged once at debug level); a fast call that TensorFlow refuses before running
(anything but an ``OpError``) sends that signature to the ordinary call for good.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfhost.errors import FormatError
from tfhost.formats.common import (
    dtype_name,
    function_writes_state,
    loading,
    run_error,
    shape_tuple,
)
from tfhost.specs import Format, SignatureSpec, TensorSpec

_log = logging.getLogger(__name__)

# Markers bigger than this (all inputs together) are not made at load: a model with inputs
# that large spends its time in kernels, where the fast path saves nothing that counts.
MARKER_LIMIT_BYTES = 64 << 20


@dataclass(frozen=True)
class Entry:
    """One signature: its spec and the concrete function that computes it.

    ``positional`` names the inputs the function takes positionally, in order (a traced
    Keras model); ``None`` means every input is a keyword argument (a SavedModel signature).
    """

    spec: SignatureSpec
    function: Any
    positional: tuple[str, ...] | None = None

    def arguments(self, inputs: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``inputs`` as the function's positional and keyword arguments."""
        if self.positional is None:
            return (), dict(inputs)
        return tuple(inputs[n] for n in self.positional), {}

    def call(self, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        """The ordinary call, through TensorFlow's own argument handling: outputs by name."""
        args, kwargs = self.arguments(inputs)
        return self.function(*args, **kwargs)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class FastPath:
    """How a signature is called: through the fast path (``active``) or not, and why."""

    active: bool
    reason: str


# Takes checked inputs, returns numpy outputs by name, or None when these inputs are not
# exactly what the signature declares (the ordinary call then handles them, as before).
_FastCall = Callable[[Mapping[str, Any]], "dict[str, np.ndarray] | None"]


class _NoFastPath(Exception):
    """Why a signature stays on the ordinary call."""


class _Broken(Exception):
    """A fast call that TensorFlow refused before running it (not an ``OpError``)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Signature:
    """One signature's calls. ``fast`` is None on the ordinary call. A run that finds the
    fast path broken sets ``fast`` to None and ``status`` to why: a plain attribute
    write, atomic under the GIL; a run that read the old value finishes either way."""

    __slots__ = ("declined", "entry", "fast", "status")

    def __init__(self, entry: Entry, fast: _FastCall | None, status: FastPath) -> None:
        self.entry = entry
        self.fast = fast
        self.status = status
        self.declined = False  # whether a run's inputs were declined (logged once)


class FunctionServable:
    """Concrete functions behind signatures. Thread-safe: TF functions run concurrently."""

    static_shapes = True

    def __init__(
        self,
        name: str,
        fmt: Format,
        entries: Mapping[str, Entry],
        owner: Any,
        *,
        fast_path: bool = True,
        jit_compile: bool = False,
    ) -> None:
        """``fast_path=False`` keeps every signature on the ordinary call; ``jit_compile``
        compiles every signature with XLA (formats/jit.py)."""
        self.name = name
        self.format = fmt
        self.signatures = {key: entry.spec for key, entry in entries.items()}
        self._calls: dict[str, _Signature] = {}
        for key, entry in entries.items():
            if jit_compile:
                entry = _jit_compiled(name, key, entry)
            if fast_path:
                fast, status = _prepare_fast_path(name, key, entry)
            else:
                fast, status = None, FastPath(False, "turned off by the caller")
            self._calls[key] = _Signature(entry, fast, status)
        # Keeps the loaded object (and so its variables) alive as long as the servable.
        self._owner = owner

    def fast_path(self, signature: str) -> FastPath:
        """Whether ``signature`` runs through the fast path, and why (not)."""
        return self._calls[signature].status

    def function(self, signature: str) -> Any:
        """The concrete function behind ``signature`` (benchmarks call it directly)."""
        return self._calls[signature].entry.function

    def run(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        call = self._calls[signature]
        fast = call.fast
        try:
            if fast is not None:
                try:
                    result = fast(inputs)
                except _Broken as broken:  # never again: this run and the next are ordinary
                    self._fast_path_broke(signature, call, broken.cause)
                    result = None
                if result is not None:
                    return result
                if not call.declined and call.fast is not None:
                    call.declined = True
                    _log.debug(
                        "model %r signature %r: a run's inputs are not exactly the declared "
                        "dtypes and shapes; such runs take the ordinary call",
                        self.name,
                        signature,
                    )
            outputs = call.entry.call(inputs)
        except tf.errors.OpError as exc:
            raise run_error(self.name, signature, exc) from None
        return {key: value.numpy() for key, value in outputs.items()}

    def _fast_path_broke(self, signature: str, call: _Signature, exc: Exception) -> None:
        if call.fast is None:
            return
        call.fast = None
        reason = f"the fast call raised {type(exc).__name__}: {exc}"
        call.status = FastPath(False, reason)
        _log.debug(
            "model %r signature %r: ordinary call from now on: %s", self.name, signature, reason
        )

    def close(self) -> None:
        self._calls = {}
        self._owner = None


def _jit_compiled(model: str, signature: str, entry: Entry) -> Entry:
    from tfhost.formats.jit import jit_compiled

    try:
        markers = entry.arguments(
            {n: tf.convert_to_tensor(v) for n, v in _markers(entry.spec).items()}
        )
    except _NoFastPath:
        markers = None
    compiled = jit_compiled(model, signature, entry.function, markers)
    return Entry(entry.spec, compiled, entry.positional)


def _spec(name: str, tensor_spec: Any) -> TensorSpec:
    return TensorSpec(name, dtype_name(tensor_spec.dtype), shape_tuple(tensor_spec.shape))


def signature_entry(function: Any) -> Entry:
    """An Entry for a SavedModel signature (a concrete function taking keyword tensors)."""
    _, kwargs = function.structured_input_signature
    outputs = function.structured_outputs
    if not isinstance(outputs, Mapping):
        raise FormatError("signature outputs are not a dict of named tensors")
    spec = SignatureSpec(
        inputs={k: _spec(k, v) for k, v in sorted(kwargs.items())},
        outputs={k: _spec(k, v) for k, v in sorted(outputs.items())},
        stateful=function_writes_state(function),
    )
    return Entry(spec, function)


def _dense(function: Any) -> bool:
    """Whether every input and output of a signature is a plain (dense) tensor."""
    _, kwargs = function.structured_input_signature
    outputs = function.structured_outputs
    values = [*kwargs.values(), *(outputs.values() if isinstance(outputs, Mapping) else [])]
    return all(isinstance(value, tf.TensorSpec) for value in values)


def load_saved_model(
    name: str, path: Path, fmt: Format, options: Mapping[str, Any], *, jit_compile: bool = False
) -> FunctionServable:
    """TF2 SavedModel, legacy Keras SavedModel or Keras 3 export, by their signatures;
    ``jit_compile``: compiled by XLA."""
    tags = options.get("tags")
    with loading(name, path):
        loaded = tf.saved_model.load(str(path), tags=tags)
        entries = {}
        for key, function in loaded.signatures.items():
            if not _dense(function):  # as for graph-mode signatures: not served
                _log.warning(
                    "model %r: signature %r takes or returns sparse or ragged tensors; "
                    "tfhost serves dense tensors only, so it is not served",
                    name,
                    key,
                )
                continue
            try:
                entries[key] = signature_entry(function)
            except FormatError as exc:
                raise FormatError(f"model {name!r} signature {key!r}: {exc}") from None
        if not entries:
            raise FormatError(
                f"model {name!r}: {path} ({fmt.value}) has no signature with dense inputs "
                f"and outputs; save it with tf.saved_model.save(obj, path, signatures=...) "
                f"so it can be served"
            )
        return FunctionServable(name, fmt, entries, loaded, jit_compile=jit_compile)


# -- the fast path -------------------------------------------------------------------


def _prepare_fast_path(
    model: str, signature: str, entry: Entry
) -> tuple[_FastCall | None, FastPath]:
    """The fast call for ``entry`` and its status, or None and why not (logged once)."""
    try:
        markers = _markers(entry.spec)
        fast = _fast_call(entry, markers)
        how = "checked at load against TensorFlow's binding of a call"
    except _NoFastPath as exc:
        reason = str(exc)
    except Exception as exc:  # TensorFlow's internals are not the ones read here
        reason = f"TensorFlow internals differ: {type(exc).__name__}: {exc}"
    else:
        return fast, FastPath(True, how)
    _log.debug("model %r signature %r: ordinary call: %s", model, signature, reason)
    return None, FastPath(False, reason)


def _markers(spec: SignatureSpec) -> dict[str, np.ndarray]:
    """One input per name: zeros of the declared dtype and shape, ``None`` dims as 1."""
    markers: dict[str, np.ndarray] = {}
    size = 0
    for name, tensor in spec.inputs.items():
        dtype = tf.as_dtype(tensor.dtype)
        shape = tuple(1 if d is None else d for d in tensor.shape or ())
        if dtype == tf.string:
            value = np.full(shape, b"", dtype=object)
        elif dtype.is_bool or dtype.is_floating or dtype.is_integer or dtype.is_complex:
            if dtype.is_quantized:
                raise _NoFastPath(f"input {name!r} is {tensor.dtype}: no marker to bind with")
            value = np.zeros(shape, dtype.as_numpy_dtype)
        else:
            raise _NoFastPath(f"input {name!r} is {tensor.dtype}: no marker to bind with")
        size += value.size * value.itemsize
        if size > MARKER_LIMIT_BYTES:
            raise _NoFastPath(f"the inputs take over {MARKER_LIMIT_BYTES >> 20} MiB at batch 1")
        markers[name] = value
    return markers


def _flat_input_order(entry: Entry, markers: Mapping[str, np.ndarray]) -> list[str]:
    """The input names in the order of the function's flat arguments, as TensorFlow's own
    binding puts them: one distinct tensor per name, bound through ``function_type`` the way
    ``ConcreteFunction.__call__`` binds a call, then found again by identity."""
    from tensorflow.python.eager.polymorphic_function import function_type_utils

    function_type = entry.function.function_type
    if function_type is None:
        raise _NoFastPath("the function has no function_type")
    marks = {name: tf.convert_to_tensor(value) for name, value in markers.items()}
    args, kwargs = entry.arguments(marks)
    bound = function_type_utils.canonicalize_function_inputs(args, kwargs, function_type)
    flat = function_type.unpack_inputs(bound)
    by_identity = {id(mark): name for name, mark in marks.items()}
    order = [by_identity.get(id(tensor)) for tensor in flat]
    names = [n for n in order if n is not None]
    if len(names) != len(order) or sorted(names) != sorted(markers):
        raise _NoFastPath("binding a call does not pass each input once, as itself")
    return names


def _fast_call(entry: Entry, markers: Mapping[str, np.ndarray]) -> _FastCall:
    from tensorflow.python.eager import context
    from tensorflow.python.eager.polymorphic_function.atomic_function import (
        InterpolateRuntimeError,
    )
    from tensorflow.python.framework.ops import EagerTensor

    function = entry.function
    inference = function.inference_fn
    fn_name = inference.name
    if not isinstance(fn_name, bytes):
        raise _NoFastPath(f"the function's name is a {type(fn_name).__name__}, not bytes")
    flat_outputs = len(inference.function_type.flat_outputs)
    if flat_outputs != len(function.outputs):
        raise _NoFastPath("the function's flat outputs and its graph's outputs differ in number")

    order = _flat_input_order(entry, markers)

    captures: tuple[Any, ...] | None = _static_captures(function)
    n_captures = len(captures if captures is not None else function.captured_inputs)
    definition = getattr(inference, "cached_definition", None)
    if definition is not None and len(definition.signature.input_arg) != len(order) + n_captures:
        raise _NoFastPath("the function takes a different number of arguments than resolved")

    packed = inference.function_type.pack_output(list(range(flat_outputs)))
    if not isinstance(packed, Mapping) or set(packed) != set(entry.spec.outputs):
        raise _NoFastPath("the function's outputs are not the signature's named tensors")
    if sorted(packed.values()) != list(range(flat_outputs)):
        raise _NoFastPath("the function's outputs are not one flat tensor each")
    outputs = tuple((str(key), int(index)) for key, index in packed.items())

    # Per input, in flat order: name, numpy dtype, TensorFlow dtype enum, rank (-1:
    # unknown) and the (axis, size) pairs the shape fixes.
    plan = []
    for name in order:
        spec = entry.spec.inputs[name]
        dtype = markers[name].dtype
        enum = tf.as_dtype(spec.dtype).as_datatype_enum
        rank = -1 if spec.shape is None else len(spec.shape)
        fixed = tuple((i, d) for i, d in enumerate(spec.shape or ()) if d is not None)
        plan.append((name, dtype, enum, rank, fixed))
    interpolate = InterpolateRuntimeError(inference)
    get_context = context.context
    ndarray = np.ndarray

    def call(inputs: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
        ctx = get_context()
        device = ctx.device_name
        args = []
        for name, dtype, enum, rank, fixed in plan:
            value = inputs.get(name)
            if not isinstance(value, ndarray) or value.dtype != dtype:
                return None
            if rank >= 0:
                shape = value.shape
                if len(shape) != rank:
                    return None
                for axis, size in fixed:
                    if shape[axis] != size:
                        return None
            # As TensorFlow converts an array: a copy, so the tensor never shares the
            # caller's memory (TensorFlow may keep an input's buffer).
            try:
                args.append(EagerTensor(value.copy(), device, enum))
            except (TypeError, ValueError):
                return None  # the ordinary call converts it or says why not, as before
        args.extend(captures if captures is not None else function.captured_inputs)
        try:
            # Errors read as the ordinary call's: where the failing node was defined.
            with interpolate:
                flat = ctx.call_function(fn_name, args, flat_outputs) or ()
        except tf.errors.OpError:
            raise
        except Exception as exc:  # refused before running: TensorFlow's internals differ
            raise _Broken(exc) from exc
        return {key: flat[index].numpy() for key, index in outputs}

    return call


def _static_captures(function: Any) -> tuple[Any, ...] | None:
    """The captured inputs, resolved once, when they cannot change: every capture is a
    tensor held by the function (a variable's handle stays the same tensor for the
    variable's life). None when some capture is resolved per call (a deferred capture)
    or is not a plain eager tensor: then each call asks ``function.captured_inputs``."""
    from tensorflow.python.framework.ops import EagerTensor

    held = getattr(function, "_captured_inputs", None)
    if not isinstance(held, (list, tuple)) or any(callable(c) for c in held):
        return None
    resolved = tuple(function.captured_inputs)
    if len(resolved) != len(held) or any(a is not b for a, b in zip(resolved, held, strict=True)):
        return None
    if not all(isinstance(c, EagerTensor) for c in resolved):
        return None
    return resolved
