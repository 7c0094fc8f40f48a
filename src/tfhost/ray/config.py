"""``serve run`` / ``serve deploy``: the application builder a Ray Serve config names.

```yaml
applications:
  - name: tfhost
    route_prefix: /
    import_path: tfhost.ray:app
    args: {repository: /models, memory_budget: 8GiB, replicas: 4}
```

``args`` are ``tfhost serve``'s options under their long names with ``_`` for ``-`` (see
``OPTIONS``), plus the Ray ones of ``deployments.build`` (``replica_cpus``,
``max_ongoing_requests``, ``ingress_replicas``, ``stats_period_s``). An unknown key is
refused with the ones there are.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfhost.errors import InputError

if TYPE_CHECKING:
    from ray.serve import Application

# args key -> (ServeOptions field, type)
OPTIONS: dict[str, tuple[str, type]] = {
    "repository": ("repository", Path),
    "model_config_file": ("model_config_file", Path),
    "model_name": ("model_name", str),
    "model_base_path": ("model_base_path", Path),
    "memory_budget": ("memory_budget", str),
    "isolation": ("isolation", str),
    "token": ("token", str),
    "request_timeout_ms": ("timeout_ms", int),
    "max_body": ("max_body", str),
    "max_response": ("max_response", str),
    "body_timeout_s": ("body_timeout_s", float),
    "max_in_flight": ("max_in_flight", int),
    "poll_seconds": ("poll_seconds", float),
    "max_load_retries": ("max_load_retries", int),
    "replicas": ("replicas", int),
}
RAY_OPTIONS: dict[str, type] = {
    "replica_cpus": float,
    "max_ongoing_requests": int,
    "ingress_replicas": int,
    "stats_period_s": float,
}
BATCHING = ("enable_batching", "batching_parameters_file")


def app(args: dict[str, Any]) -> Application:
    """The tfhost application for a Ray Serve config's ``args``."""
    from tfhost.ray.deployments import build
    from tfhost.serve.command import ServeOptions
    from tfhost.serve.flags import batching_settings

    known = sorted([*OPTIONS, *RAY_OPTIONS, *BATCHING])
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise InputError(f"tfhost.ray:app does not take {unknown}; it takes {known}")
    fields: dict[str, Any] = {"ray": True}
    for key, (field, kind) in OPTIONS.items():
        if args.get(key) is not None:
            fields[field] = _cast(key, args[key], kind)
    parameters = args.get("batching_parameters_file")
    fields["batching"] = batching_settings(
        bool(args.get("enable_batching", False)), Path(parameters) if parameters else None
    )
    ray_args = {
        key: _cast(key, args[key], kind) for key, kind in RAY_OPTIONS.items() if key in args
    }
    fields.setdefault("repository", None)
    return build(ServeOptions(**fields), **ray_args)


def _cast(key: str, value: Any, kind: type) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InputError(
            f"tfhost.ray:app: {key} must be a {kind.__name__}, got {value!r}"
        ) from None
