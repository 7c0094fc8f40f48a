"""``tfhost serve REPO --ray``: deploy the tfhost application on Ray Serve and keep it up
until SIGTERM or SIGINT.

With ``RAY_ADDRESS`` set, it joins that cluster and, on exit, deletes its application and
leaves the cluster running. Without it, it starts a local cluster for itself and shuts it
down on exit; that cluster's nodes listen on 127.0.0.1 (``_node_ip_address``, with
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, without which Ray puts the machine's interface
address in its place), usage statistics are off (``RAY_USAGE_STATS_ENABLED=0``), the
dashboard is off, and Serve's HTTP proxy listens on ``--host`` (default 127.0.0.1) at
``--rest-port`` (0: a free port chosen here). Those settings alone do not keep Ray off the
network (see ``loopback``).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from typing import TYPE_CHECKING, Any

from rich.console import Console

from tfhost.errors import InputError

if TYPE_CHECKING:
    from tfhost.serve.command import ServeOptions

# What tfhost sets for a local cluster it starts (inherited by every Ray process).
LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def run_on_ray(options: ServeOptions, console: Console) -> None:
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise InputError(f"--ray needs Ray Serve: pip install 'tfhost[ray]' ({exc})") from None

    from tfhost.ray.deployments import APP_NAME, build
    from tfhost.serve.command import READY_LINE, build_fleet

    if options.rest_port is None:
        raise InputError("--ray serves REST through Ray Serve's proxy; drop --no-rest")
    # The repository and its config are read here first: a mistake stops the start with
    # tfhost serve's own message, before Ray starts or a replica is built.
    check = build_fleet(options, lazy=True)
    try:
        check.start(wait=False)
    finally:
        check.close()
    application = build(options)
    port = options.rest_port or free_port(options.host)
    address = os.environ.get("RAY_ADDRESS") or None
    init: dict[str, Any] = {"namespace": "tfhost", "log_to_driver": True}
    if address is None:
        os.environ.update(LOCAL_ENV)
        init |= {
            "address": "local",
            "_node_ip_address": "127.0.0.1",
            "include_dashboard": False,
            # Ray places each replica by its CPUs (one each): room for all of them.
            "num_cpus": max(os.cpu_count() or 1, options.replicas),
        }
    else:
        init["address"] = address
    where = "a local Ray cluster" if address is None else f"the Ray cluster at {address}"
    console.print(f"tfhost serve: starting {options.replicas} replica(s) on {where}")
    stop = threading.Event()
    try:
        ray.init(**init)
    except ConnectionError as exc:
        if address is None:
            raise
        raise InputError(
            f"cannot join the Ray cluster at {address}: {exc}. A cluster with token "
            f"authentication (what `ray start` makes where a token is found) needs "
            f"RAY_AUTH_MODE=token and its token (~/.ray/auth_token, RAY_AUTH_TOKEN or "
            f"RAY_AUTH_TOKEN_PATH) here, as every Ray client does"
        ) from None
    try:
        previous = {
            sig: signal.signal(sig, lambda signum, frame: stop.set())
            for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            serve.start(http_options={"host": options.host, "port": port})
            serve.run(application, name=APP_NAME, route_prefix="/")
            host = f"[{options.host}]" if ":" in options.host else options.host
            print(
                f"{READY_LINE}REST on http://{host}:{port} (Ray Serve, {options.replicas} "
                f"replica(s) on {where})",
                flush=True,
            )
            while not stop.wait(1.0):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        console.print("tfhost serve: stopping")
        try:
            if address is None:
                serve.shutdown()  # type: ignore[no-untyped-call]
            else:
                serve.delete(APP_NAME)
        finally:
            ray.shutdown()


def free_port(host: str) -> int:
    """A port nothing listens on now (Ray Serve's proxy takes no port 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port
