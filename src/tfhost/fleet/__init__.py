"""The fleet: a model repository that runs itself over a ``Host``.

``config`` reads what should be served (``tfhost.toml`` or TensorFlow Serving's
``models.config``), ``repository`` reads what is on disk, poll after poll. Both are pure:
they read files and load nothing. ``pipeline`` runs a model made of steps over the steps'
own handles. Nothing here imports TensorFlow.
"""

from tfhost.fleet.config import (
    ConfigError,
    FleetConfig,
    ModelConfig,
    PipelineConfig,
    VersionPolicy,
    models_config_from_proto,
    parse_bytes,
    read_config,
)
from tfhost.fleet.fleet import Fleet, FleetSettings, MustWait
from tfhost.fleet.pipeline import PipelineHandle
from tfhost.fleet.repository import Scanner, Versions

__all__ = [
    "ConfigError",
    "Fleet",
    "FleetConfig",
    "FleetSettings",
    "ModelConfig",
    "MustWait",
    "PipelineConfig",
    "PipelineHandle",
    "Scanner",
    "VersionPolicy",
    "Versions",
    "models_config_from_proto",
    "parse_bytes",
    "read_config",
]
