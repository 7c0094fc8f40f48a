"""XLA compilation of a model's signatures (``jit_compile``): opt-in, per model.

A signature's concrete function is wrapped in ``tf.function(jit_compile=True)``, so XLA
compiles the whole signature for the host's CPU (or GPU) and runs it as one fused program.
That cuts the per-op overhead that dominates small models, but XLA's own kernels can be
slower than TensorFlow's (oneDNN) ones. Measured on 2 CPU cores: ``Host.predict`` on a
64-128-128-10 MLP at batch 1 about 2x the calls/s, on a small convnet at batch 32 about
0.6x (``bench/predict.py``); a model bound by big matrix products gains little.

Opt-in, because of that and because XLA is not TensorFlow's kernels:
- results differ in the last bits of floating point (fused ops round differently);
- XLA compiles once per input shape: the first call with a new batch size waits for it;
- some semantics differ, e.g. an out-of-range ``tf.gather`` index is clamped rather than
  an error;
- some ops have no XLA kernel (strings, lookup tables, ``py_function``);
- compiled code stays in TensorFlow's process-wide XLA cache after an inline model is
  unloaded (about 0.3 MiB per compiled shape of a small MLP here, measured over 30 load,
  predict and unload cycles); a process-isolated model gives it back with its worker.

What XLA cannot take is checked at load, without running the model: a signature taking strings
refuses the load, naming the input; the others are lowered to XLA's HLO on the
signature's markers (the shapes with ``None`` dimensions as 1), and one with an op XLA
cannot compile refuses the load, naming the op. Other lowering failures
(a marker shape the model cannot take) only warn: real inputs may well compile.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from tfhost.errors import LoadError

_log = logging.getLogger(__name__)

# How TensorFlow words an op without an XLA kernel (tf2xla's "Detected unsupported
# operations when trying to compile graph G on XLA_CPU_JIT: OP (No registered 'OP'
# OpKernel ..."), the one failure that no input can fix.
_UNSUPPORTED = "unsupported operations"
_OP = re.compile(r"(\w+) \(No registered '")
# XLA takes tensors of numbers and booleans only.
_NOT_XLA = frozenset({"string", "variant", "resource"})


def jit_compiled(
    model: str,
    signature: str,
    function: Any,
    markers: tuple[tuple[Any, ...], Mapping[str, Any]] | None,
) -> Any:
    """``function`` (a concrete function) compiled by XLA, as a concrete function with the
    same arguments and outputs. ``markers`` (args, kwargs) check it lowers; None skips that."""
    args, kwargs = function.structured_input_signature
    for spec in (*args, *kwargs.values()):
        if spec.dtype.name in _NOT_XLA:
            raise LoadError(
                f"model {model!r} signature {signature!r}: XLA cannot compile it: input "
                f"{spec.name!r} is a {spec.dtype.name} tensor, and XLA takes numbers and "
                f"booleans only; load it without jit_compile"
            )
    compiled = tf.function(function, jit_compile=True, autograph=False)
    concrete = compiled.get_concrete_function(*args, **kwargs)
    if markers is None:
        _log.info(
            "model %r signature %r: not checked for XLA at load (no markers); the first "
            "call says whether it compiles",
            model,
            signature,
        )
        return concrete
    marker_args, marker_kwargs = markers
    try:
        compiled.experimental_get_compiler_ir(*marker_args, **marker_kwargs)(stage="hlo")
    except Exception as exc:  # TensorFlow raises ValueError or an OpError, by version
        text = str(exc).strip().removeprefix("Failed getting HLO text: '")
        reason = text.splitlines()[0][:600] if text else repr(exc)
        if _UNSUPPORTED in reason:
            ops = ", ".join(dict.fromkeys(_OP.findall(reason))) or "an op"
            raise LoadError(
                f"model {model!r} signature {signature!r}: XLA cannot compile it: {ops} "
                f"has no XLA kernel; load it without jit_compile (TensorFlow: {reason})"
            ) from None
        _log.warning(
            "model %r signature %r: XLA could not lower it on inputs shaped by its "
            "signature (None dimensions as 1): %s; real inputs may compile",
            model,
            signature,
            reason,
        )
    return concrete
