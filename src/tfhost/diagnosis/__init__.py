"""tfhost doctor: why models that load alone fail together, shown on the user's own models.

``doctor(paths) -> Diagnosis`` loads each model alone in a fresh process, then all of
them together the ways people naively do (each way in its own fresh process), then in one
tfhost ``Host``, and explains every difference. Importing this package does not import
TensorFlow; only the child processes do.
"""

from tfhost.diagnosis.core import (
    DEFAULT_TIMEOUT_S,
    compare,
    doctor,
    expand_repositories,
    model_names,
)
from tfhost.diagnosis.verdicts import (
    DIAGNOSIS_SCHEMA,
    Cause,
    CauseKind,
    Collision,
    Diagnosis,
    ModelReport,
    Outcome,
    Verdict,
    Way,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DIAGNOSIS_SCHEMA",
    "Cause",
    "CauseKind",
    "Collision",
    "Diagnosis",
    "ModelReport",
    "Outcome",
    "Verdict",
    "Way",
    "compare",
    "doctor",
    "expand_repositories",
    "model_names",
]
