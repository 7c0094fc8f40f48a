"""The one exception tree of tfhost.

Every error tfhost raises is a :class:`TfhostError` carrying a :class:`Code`.
Frontends map the code to HTTP or gRPC status in exactly one place; nothing
else looks at the class to decide a status.

    TfhostError
    ├── FormatError         INVALID_ARGUMENT   artifact unknown, corrupt or unreadable
    ├── LoadError           FAILED_PRECONDITION artifact readable but needs something
    │   │                                       (a custom object, an op library, tf_keras)
    │   ├── MissingOp                           an op type not registered: ``op``
    │   └── MissingCustomObject                 a Keras object not given: ``object_name``
    ├── InputError          INVALID_ARGUMENT   request inputs do not fit the signature
    ├── NotFound            NOT_FOUND          model, version or signature unknown
    ├── AlreadyExists       FAILED_PRECONDITION the model version is already loaded
    ├── Unavailable         UNAVAILABLE        the version exists but cannot serve now
    │   └── WorkerDied      UNAVAILABLE        its worker process exited
    ├── DeadlineExceeded    DEADLINE_EXCEEDED  a request ran past its deadline
    ├── ResourceExhausted   RESOURCE_EXHAUSTED
    └── InternalError       INTERNAL           a bug or an unexpected model failure
"""

from __future__ import annotations

import enum


class Code(enum.Enum):
    """Canonical error codes (the gRPC / TensorFlow Serving vocabulary)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAVAILABLE = "UNAVAILABLE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"


class TfhostError(Exception):
    """Root of every tfhost error. ``code`` says what kind of failure it is."""

    code: Code = Code.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FormatError(TfhostError):
    """The artifact is of an unknown format, corrupt, or not a model."""

    code = Code.INVALID_ARGUMENT


class LoadError(TfhostError):
    """The artifact is readable but loading it needs something that is missing."""

    code = Code.FAILED_PRECONDITION


class MissingOp(LoadError):
    """The graph uses an op type (``op``) that is not registered in this process."""

    def __init__(self, message: str, op: str) -> None:
        super().__init__(message)
        self.op = op


class MissingCustomObject(LoadError):
    """The model names a Keras class or function (``object_name``) that was not given."""

    def __init__(self, message: str, object_name: str) -> None:
        super().__init__(message)
        self.object_name = object_name


class InputError(TfhostError):
    """Request inputs do not match the signature (names, dtypes or shapes)."""

    code = Code.INVALID_ARGUMENT


class NotFound(TfhostError):
    code = Code.NOT_FOUND


class AlreadyExists(TfhostError):
    code = Code.FAILED_PRECONDITION


class Unavailable(TfhostError):
    code = Code.UNAVAILABLE


class WorkerDied(Unavailable):
    """The worker process serving a model exited; ``exitcode`` says how.

    ``recycled`` is True when tfhost killed it on purpose (a call in it ran past its
    deadline): not the model's fault, so its models restart at once and the restart
    does not count against ``WorkerSettings.max_restarts``.
    """

    def __init__(
        self, message: str, exitcode: int | None = None, *, recycled: bool = False
    ) -> None:
        super().__init__(message)
        self.exitcode = exitcode
        self.recycled = recycled


class DeadlineExceeded(TfhostError):
    code = Code.DEADLINE_EXCEEDED


class ResourceExhausted(TfhostError):
    code = Code.RESOURCE_EXHAUSTED


class InternalError(TfhostError):
    code = Code.INTERNAL


class ModelError(InternalError):
    """The model itself raised while running; ``type_name`` is the original type."""

    def __init__(self, message: str, type_name: str) -> None:
        super().__init__(message)
        self.type_name = type_name
