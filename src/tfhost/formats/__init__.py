"""Opening artifacts: ``detect`` names the format, ``load`` returns a Servable.

Each format has exactly one loader; nothing here knows about hosts, versions or
processes. TensorFlow is imported on the first ``load`` or SavedModel ``detect``, not on import,
so the host side of a process-isolated model never pays for it.
"""

from __future__ import annotations

import threading

from tfhost.errors import InputError
from tfhost.formats.detect import detect
from tfhost.formats.options import checked
from tfhost.formats.runtime import import_tensorflow
from tfhost.servable import Servable
from tfhost.specs import Artifact, Format, LoadOptions

__all__ = ["detect", "load", "loading_lock"]

# Formats that run in a TF1 graph and session, not as TF2 functions.
_SESSION_FORMATS = frozenset({Format.TF1_SAVED_MODEL, Format.FROZEN_GRAPH})


def loading_lock() -> threading.RLock:
    """The lock every load holds (re-entrant): hold it to make a load and what is measured
    around it one step."""
    import_tensorflow()
    from tfhost.formats.common import LOAD_LOCK

    return LOAD_LOCK


def load(name: str, artifact: Artifact, options: LoadOptions) -> Servable:
    """Open ``artifact`` the way its format needs, and replay its warm-up requests (TF
    Serving's ``assets.extra``) unless ``options.warmup`` is off. Raises FormatError or
    LoadError, and InputError for a format option the format does not take
    (formats/options.py) or ``jit_compile`` for a graph-mode format."""
    servable = _open(name, artifact, options)
    if options.warmup and (artifact.path.is_dir() or options.warmup == "synthetic"):
        from tfhost.formats.warmup import warm_up

        try:
            warm_up(name, artifact.path, servable, options.warmup)
        except BaseException:
            servable.close()
            raise
    return servable


def _open(name: str, artifact: Artifact, options: LoadOptions) -> Servable:
    extra = checked(name, artifact.format, options.format_options)
    if options.jit_compile and artifact.format in _SESSION_FORMATS:
        raise InputError(
            f"model {name!r}: jit_compile compiles TF2 functions (TF2 SavedModels, Keras); "
            f"a {artifact.format.value} runs in a TF1 session, where XLA is TensorFlow's "
            f"process-wide auto-clustering (TF_XLA_FLAGS='--tf_xla_auto_jit=2 "
            f"--tf_xla_cpu_global_jit'); load it without jit_compile"
        )
    import_tensorflow()
    from tfhost.formats.common import preload

    preload(name, options.preload)
    fmt, path = artifact.format, artifact.path
    if fmt is Format.TF1_SAVED_MODEL:
        from tfhost.formats.graph import load_tf1_saved_model

        return load_tf1_saved_model(name, path, extra)
    if fmt is Format.FROZEN_GRAPH:
        from tfhost.formats.graph import load_frozen_graph

        return load_frozen_graph(name, path, extra)
    if fmt in (Format.KERAS, Format.KERAS_H5):
        from tfhost.formats.keras import load_keras

        return load_keras(
            name, path, fmt, options.custom_objects, extra, jit_compile=options.jit_compile
        )
    from tfhost.formats.eager import load_saved_model

    return load_saved_model(name, path, fmt, extra, jit_compile=options.jit_compile)
