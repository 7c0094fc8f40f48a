"""tfhost on Ray Serve (``pip install 'tfhost[ray]'``): the same fleet in every replica,
requests routed to a replica that holds their model, capacity counted in bytes.

- ``tfhost serve REPO --ray --replicas N`` (``launch.run_on_ray``) starts it, on the
  cluster ``RAY_ADDRESS`` names or on a local one it starts and stops;
- ``import_path: tfhost.ray:app`` in a Ray Serve config (``config.app``) deploys it with
  ``serve run`` / ``serve deploy``;
- ``build(options)`` (``deployments.build``) is the application, for ``serve.run``.

See docs/scale-out.md. Importing ``tfhost.ray`` does not import Ray: its names load on
first use, so ``tfhost.ray.loopback`` works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tfhost.ray.config import app as app
    from tfhost.ray.deployments import build as build

__all__ = ["app", "build"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from tfhost.ray.config import app

        return app
    if name == "build":
        from tfhost.ray.deployments import build

        return build
    raise AttributeError(f"module 'tfhost.ray' has no attribute {name!r}")
