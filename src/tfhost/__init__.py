"""tfhost: many TensorFlow and Keras models in one host, each correct and isolated.

Importing tfhost does not import TensorFlow; loading the first inline model does.
"""

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
from tfhost.host import Handle, Host, ModelInfo
from tfhost.settings import HostSettings, WorkerSettings
from tfhost.specs import Artifact, Format, SignatureSpec, TensorSpec
from tfhost.state import Event, State, VersionId

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "Artifact",
    "Code",
    "DeadlineExceeded",
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
