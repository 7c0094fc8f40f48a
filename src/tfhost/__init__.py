"""tfhost: many TensorFlow and Keras models in one host, each correct and isolated.

Importing tfhost does not import TensorFlow; loading the first inline model does.
"""

from typing import TYPE_CHECKING, Any

from tfhost.cells import Isolation
from tfhost.errors import (
    AlreadyExists,
    Code,
    DeadlineExceeded,
    FormatError,
    InputError,
    InternalError,
    LoadError,
    ModelError,
    NotFound,
    ResourceExhausted,
    TfhostError,
    Unavailable,
    WorkerDied,
)
from tfhost.host import Checked, Handle, Host, ModelInfo
from tfhost.settings import HostSettings, WorkerSettings
from tfhost.specs import Artifact, Format, SignatureSpec, TensorSpec
from tfhost.state import Event, State, VersionId

__version__ = "0.1.0"

if TYPE_CHECKING:
    from tfhost.diagnosis import Diagnosis as Diagnosis
    from tfhost.diagnosis import doctor as doctor


def __getattr__(name: str) -> Any:
    # doctor lives apart (tfhost.diagnosis) and loads on first use: it spawns processes
    # and is not needed to serve.
    if name in ("doctor", "Diagnosis"):
        from tfhost import diagnosis

        return getattr(diagnosis, name)
    raise AttributeError(f"module 'tfhost' has no attribute {name!r}")


__all__ = [
    "AlreadyExists",
    "Artifact",
    "Checked",
    "Code",
    "DeadlineExceeded",
    "Diagnosis",
    "Event",
    "Format",
    "FormatError",
    "Handle",
    "Host",
    "HostSettings",
    "InputError",
    "InternalError",
    "Isolation",
    "LoadError",
    "ModelError",
    "ModelInfo",
    "NotFound",
    "ResourceExhausted",
    "SignatureSpec",
    "State",
    "TensorSpec",
    "TfhostError",
    "Unavailable",
    "VersionId",
    "WorkerDied",
    "WorkerSettings",
]
