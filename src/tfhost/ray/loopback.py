"""Run Ray where it can reach nothing but loopback: a network namespace whose only
interface is ``lo``.

Ray's own settings do not keep a local cluster on loopback (measured with Ray 2.60:
``_node_ip_address="127.0.0.1"`` gives way to the machine's interface address unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set; with the dashboard off its agent still asks
the cloud-metadata address 169.254.169.254 and makes DNS look-ups; every Serve replica
binds its inter-deployment gRPC server to ``[::]:0``, every interface). The tests, the
benchmark and the examples that start Ray on a machine that must stay off the network
therefore run it inside a namespace of its own:

    command = in_namespace([sys.executable, "bench/ray_serve.py"])  # unshare ... sh -c ...
    problems = namespace_problems()   # inside: [] when lo is the only interface
    stray = stray_sockets()           # inside: sockets bound or connected off loopback

The namespace is also a PID namespace with its own ``/proc``: when the command ends, every
process it left behind (a Ray cluster included) is killed by the kernel. Nothing here
imports Ray.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
from collections.abc import Sequence

import psutil

ENV = "TFHOST_LOOPBACK_NAMESPACE"  # set to "1" in the command in_namespace runs

# ``sh`` is the namespace's first process: it brings lo up, runs the command and hands
# back its exit status; when it exits the kernel ends everything else in the namespace.
_SCRIPT = 'ip link set lo up && "$0" "$@"'


class NamespaceError(RuntimeError):
    """The loopback-only namespace cannot be made, or is not what it should be."""


def in_namespace(argv: Sequence[str]) -> list[str]:
    """The command line that runs ``argv`` in a new network and PID namespace, ``lo`` up
    and nothing else; run it with ``ENV`` set (``namespace_env()``). Raises
    NamespaceError when ``unshare`` or ``ip`` is missing: never a fallback to the host's
    network."""
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    if missing:
        raise NamespaceError(f"cannot make a loopback-only namespace: {missing} not found")
    return [
        "unshare",
        "--net",
        "--pid",
        "--mount-proc",
        "--fork",
        "--kill-child",
        "sh",
        "-c",
        _SCRIPT,
        *argv,
    ]


def namespace_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with ``ENV`` set."""
    return {**(dict(os.environ) if base is None else base), ENV: "1"}


def inside() -> bool:
    """Whether this process was started by ``in_namespace`` (it says so in ``ENV``)."""
    return os.environ.get(ENV) == "1"


def namespace_problems() -> list[str]:
    """What keeps this network namespace from being loopback-only: each interface but
    ``lo``, each address of ``lo`` that is not loopback, ``lo`` down. Empty: Ray may start."""
    problems = []
    interfaces = psutil.net_if_addrs()
    for name in sorted(interfaces):
        if name != "lo":
            problems.append(f"interface {name} is present")
    for address in interfaces.get("lo", []):
        if address.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address.address):
            problems.append(f"lo has the address {address.address}")
    stats = psutil.net_if_stats().get("lo")
    if stats is None or not stats.isup:
        problems.append("lo is down")
    return problems


def require_namespace() -> None:
    """Raise NamespaceError unless this process runs in a loopback-only namespace."""
    if not inside():
        raise NamespaceError(f"not started in a loopback-only namespace ({ENV} is not set)")
    problems = namespace_problems()
    if problems:
        raise NamespaceError("this network namespace is not loopback-only: " + "; ".join(problems))


def stray_sockets() -> list[str]:
    """Every socket of this namespace bound to or connected to an address off loopback.

    A socket bound to the wildcard address (``0.0.0.0``, ``::``) and connected nowhere is
    not counted: it is bound to every interface, and in a namespace that passes
    ``namespace_problems`` the only interface is ``lo`` (Ray Serve's replicas bind their
    gRPC server so; ``stray_sockets`` is only meaningful there)."""
    stray = []
    for conn in psutil.net_connections(kind="inet"):
        local, remote = conn.laddr, conn.raddr
        where = f"pid {conn.pid} {conn.status}"
        if local and not _loopback(local.ip) and not (_wildcard(local.ip) and not remote):
            stray.append(f"bound to {local.ip}:{local.port} ({where})")
        if remote and not _loopback(remote.ip):
            stray.append(f"connected to {remote.ip}:{remote.port} ({where})")
    return stray


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _loopback(text: str) -> bool:
    try:
        return _address(text).is_loopback
    except ValueError:
        return False


def _wildcard(text: str) -> bool:
    try:
        return _address(text).is_unspecified
    except ValueError:
        return False
