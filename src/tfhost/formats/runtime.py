"""TensorFlow, imported once, by one thread, before anything uses it.

Python's import machinery can hand a partly initialised module to a second thread when
two imports wait on each other (seen: concurrent first loads failing with "partially
initialized module 'tensorflow.core.protobuf.meta_graph_pb2'"). Every path in tfhost that
needs TensorFlow or its protos calls :func:`import_tensorflow` first, so the first import
runs whole under one lock and every later one finds it finished.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_done = False


def import_tensorflow() -> None:
    """Import TensorFlow and the protos tfhost reads; cheap once done. Any thread."""
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        import tensorflow  # noqa: F401
        from tensorflow.core.framework import graph_pb2  # noqa: F401
        from tensorflow.core.protobuf import (  # noqa: F401
            config_pb2,
            meta_graph_pb2,
            saved_model_pb2,
        )

        _done = True
