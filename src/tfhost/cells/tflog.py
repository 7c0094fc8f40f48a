"""TensorFlow's own log lines: how loud each one is, and which ones to pass on.

TensorFlow 2.21 writes its C++ log through absl, one line per message:
``I1201 08:11:21.123456    4602 port.cc:153] text`` (severity I, W, E or F, then MMDD;
``0000 00:00:<epoch>`` before ``absl::InitializeLog()`` is called). Older releases wrote
``2025-09-17 14:44:05.157831: I path/file.cc:32] text``. ``TF_CPP_MIN_LOG_LEVEL`` (0 all,
1 no INFO, 2 no WARNING either, 3 no ERROR either) filters the lines written after
initialisation, but not the ones written while TensorFlow is imported: "oneDNN custom
operations are on", "Could not find cuda drivers", each once per copy of absl
(tensorflow#100442). Those are filtered here, by their prefix: in the host for a worker's
stderr (:mod:`tfhost.cells.process`), and around the import itself for the CLI
(:func:`import_tensorflow_quietly`).

Nothing here imports TensorFlow at import time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Mapping

ENV = "TF_CPP_MIN_LOG_LEVEL"

# absl's C++ format, and TensorFlow's own before it moved to absl.
_CPP_LINE = re.compile(
    r"^(?:([IWEF])\d{4} [\d:.]+\s+\d+ |\d{4}-\d\d-\d\d [\d:.]+: ([IWEF]) )[^\s\]]+:\d+\] "
)
# Python's logging.basicConfig format, as TensorFlow's Python logger writes it.
_PYTHON_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):[\w.]+:")
# absl writes this once, before its first line before initialisation: it goes with them.
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called"

# The Python logging level of each C++ severity, INFO to FATAL.
_SEVERITY_LEVEL = (logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
_NUMBER = re.compile(r"\s*([+-]?\d+)")
_IMPORT_COPY_GRACE_S = 5.0  # how long the import waits for its filtered lines to be out


def parse_min_log_level(text: str) -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as TensorFlow reads it: its leading integer, else 0."""
    found = _NUMBER.match(text)
    return max(int(found.group(1)), 0) if found else 0


def min_log_level_for(level: int) -> int:
    """The ``TF_CPP_MIN_LOG_LEVEL`` that keeps what a Python logging ``level`` shows."""
    if level <= logging.INFO:
        return 0
    if level <= logging.WARNING:
        return 1
    if level <= logging.ERROR:
        return 2
    return 3


def min_log_level(environ: Mapping[str, str], logger: logging.Logger) -> int:
    """The user's ``TF_CPP_MIN_LOG_LEVEL`` if they set one, else what ``logger`` shows."""
    text = environ.get(ENV)
    if text is not None:
        return parse_min_log_level(text)
    return min_log_level_for(logger.getEffectiveLevel())


def cpp_severity(line: str) -> int | None:
    """0-3 (INFO to FATAL) for a line of TensorFlow's C++ log, None for any other line."""
    if line.startswith(_ABSL_NOTICE):
        return 0
    found = _CPP_LINE.match(line)
    if found is None:
        return None
    return "IWEF".index(found.group(1) or found.group(2))


def forward_level(line: str, min_level: int) -> int | None:
    """The Python logging level to pass ``line`` on at, or None to drop it.

    A C++ line below ``min_level`` (a ``TF_CPP_MIN_LOG_LEVEL``) is dropped; any other line
    keeps the level its prefix names. A line with no known prefix (a model's own print, a
    Python traceback or warning) is a WARNING, so the default logging configuration
    shows it.
    """
    severity = cpp_severity(line)
    if severity is not None:
        if severity < min_level:
            return None
        return _SEVERITY_LEVEL[severity]
    found = _PYTHON_LINE.match(line)
    if found is not None:
        return logging.getLevelNamesMapping()[found.group(1)]
    return logging.WARNING


def import_tensorflow_quietly() -> None:
    """Import TensorFlow, dropping the C++ lines it writes meanwhile that the
    ``TF_CPP_MIN_LOG_LEVEL`` in this process's environment excludes (TensorFlow itself
    excludes the later ones).

    For a process that owns its stderr (the CLI): for the length of the import, file
    descriptor 2 is a pipe whose lines a thread copies to the real stderr, all but the
    dropped ones, as they come. It does nothing once TensorFlow is imported.
    """
    min_level = parse_min_log_level(os.environ.get(ENV, "0"))
    if "tensorflow" in sys.modules:
        return
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    try:
        real = os.dup(2)
    except OSError:  # no stderr at all: nothing to keep quiet
        import tensorflow

        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    copier = threading.Thread(
        target=_copy_lines, args=(read_end, real, min_level), name="tfhost-tf-import-log"
    )
    copier.daemon = True
    copier.start()
    try:
        import tensorflow  # noqa: F401
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(real, 2)  # closes the pipe's last write end: the copier reads to its end
        copier.join(_IMPORT_COPY_GRACE_S)
        if not copier.is_alive():  # else a process TensorFlow started still holds the pipe
            os.close(real)


def _copy_lines(read_end: int, real: int, min_level: int) -> None:
    with open(read_end, "rb") as lines:
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            severity = cpp_severity(line)
            if severity is not None and severity < min_level:
                continue
            with contextlib.suppress(OSError):
                view = memoryview(raw)
                while view:
                    view = view[os.write(real, view) :]
