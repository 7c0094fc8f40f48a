"""A number of bytes as a person reads it (``parse_bytes`` in ``tfhost.fleet.config`` reads
one back)."""

from __future__ import annotations


def format_bytes(n: int) -> str:
    """``512 B``, ``1.5 KiB``, ``3.0 MiB``, ``2.0 GiB`` (powers of 1024, GiB at most)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
