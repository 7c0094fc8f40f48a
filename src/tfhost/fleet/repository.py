"""What is on disk for a fleet, poll after poll: each model's versions, and which of them
are complete. Pure reading: no loading, no threads, no sleeping (the caller polls).

TensorFlow Serving's layout: a model's path holds numeric version folders (``00000123`` is
version 123; anything else, ``.incoming`` or ``tmp``, is ignored). A model path that is
itself a SavedModel folder, or a single file (``.keras``, ``.h5``, ``.pb``), is version 1.

**Settled versions.** A version being copied into place must not be loaded half-written.
Each scan takes a version's fingerprint: the relative path, size and mtime of every file
and folder under it (``stat`` only, contents never read). A version is *settled* when

1. its fingerprint is the same as at the previous scan (nothing was written between two
   polls), or
2. it is seen for the first time and it was renamed into place: its own change time
   (``ctime``, which a rename sets) is newer than its own modification time and than every
   modification and change time under it, so nothing under it was written after it was
   last moved (or re-timestamped, as ``cp -p``, ``rsync -a`` and ``tar`` do once a copy is
   whole). This reads only the file system's timestamps, never the local clock; or
3. the scan is the first of a ``Scanner(config, trust_first_scan=True)``: what is on disk
   when a fleet starts is taken as complete, as TensorFlow Serving takes it.

Otherwise it is not: a version seen for the first time that was written in place waits one
poll, and a version whose fingerprint changes between scans stays unsettled until it stops
changing. A version that cannot be read through (a file vanished mid-scan, a permission
error) is unsettled and is fingerprinted afresh at the next scan.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tfhost.fleet.config import FleetConfig

_NUMERIC = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit also takes "²"
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_INT64_MAX = 2**63 - 1

# (relative path, size or -1 for a folder, mtime in ns), sorted.
Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class Versions:
    """One model's versions on disk at one scan.

    ``on_disk`` maps each version to its folder (or the single file of a file artifact, as
    version 1); ``settled`` are those whose content is complete (see the module's notes).
    ``problems`` says what was passed over and why (a path that is not there, two folders
    for one version number), for the caller to log.
    """

    model: str
    on_disk: Mapping[int, Path]
    settled: frozenset[int]
    problems: tuple[str, ...] = ()
    sizes: Mapping[int, int] = field(default_factory=dict)  # bytes of its files, as scanned

    @property
    def ready(self) -> frozenset[int]:
        """The versions on disk that are settled (the ones a fleet may load)."""
        return self.settled & frozenset(self.on_disk)


@dataclass(frozen=True)
class _Look:
    """What one stat walk of a version saw: its fingerprint (None: not read through) and
    whether it was renamed into place after its content was last written."""

    fingerprint: Fingerprint | None
    renamed_in: bool = False


class Scanner:
    """Reads what is on disk for a FleetConfig, poll after poll. Pure reading; no threads.

    Not thread-safe: one caller (the fleet's loop) scans. ``trust_first_scan=True`` takes
    every version present at the first ``scan`` as settled (a fleet starting up serves what
    is there); otherwise the first scan settles only versions renamed into place.
    """

    def __init__(self, config: FleetConfig, *, trust_first_scan: bool = False) -> None:
        self._config = config
        self._trust_first = trust_first_scan
        self._scans = 0
        # (model, version, folder) -> its fingerprint at the previous scan.
        self._previous: dict[tuple[str, int, Path], Fingerprint | None] = {}

    @property
    def config(self) -> FleetConfig:
        return self._config

    @property
    def scans(self) -> int:
        """How many scans this scanner has made."""
        return self._scans

    def update(self, config: FleetConfig) -> None:
        """Scan for ``config`` from now on (a config reload). What was seen of a model
        version at the same folder carries over, so a reload does not unsettle it."""
        self._config = config

    def scan(self) -> dict[str, Versions]:
        """Every model of the config: its versions on disk and which are settled."""
        trust = self._trust_first and self._scans == 0
        self._scans += 1
        current: dict[tuple[str, int, Path], Fingerprint | None] = {}
        result: dict[str, Versions] = {}
        for name, model in self._config.models.items():
            on_disk, problems = _versions(model.path)
            settled: set[int] = set()
            sizes: dict[int, int] = {}
            for version, folder in on_disk.items():
                look = _look(folder)
                key = (name, version, folder)
                current[key] = look.fingerprint
                if look.fingerprint is None:
                    problems.append(f"{folder}: changed or unreadable while it was scanned")
                    continue
                sizes[version] = sum(size for _, size, _ in look.fingerprint if size > 0)
                first_seen = key not in self._previous
                unchanged = not first_seen and self._previous[key] == look.fingerprint
                if trust or unchanged or (first_seen and look.renamed_in):
                    settled.add(version)
            result[name] = Versions(name, dict(on_disk), frozenset(settled), tuple(problems), sizes)
        self._previous = current
        return result


def version_number(name: str) -> int | None:
    """The version a folder name stands for (``"00000123"`` is 123), or None."""
    if not _NUMERIC.fullmatch(name):
        return None
    number = int(name)
    return number if number <= _INT64_MAX else None


def _versions(path: Path) -> tuple[dict[int, Path], list[str]]:
    """The version folders (or file) at a model's ``path``, and what was passed over."""
    problems: list[str] = []
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return {}, [f"{path}: no such folder or file"]
    except OSError as exc:
        return {}, [f"{path}: {exc.strerror or exc}"]
    if not stat.S_ISDIR(mode):
        return {1: path}, problems
    if any((path / name).is_file() for name in _SAVED_MODEL_FILES):
        return {1: path}, problems
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as exc:
        return {}, [f"{path}: {exc.strerror or exc}"]
    found: dict[int, Path] = {}
    for entry in entries:
        number = version_number(entry.name)
        if number is None:
            if _NUMERIC.fullmatch(entry.name):
                problems.append(f"{entry.path}: version number beyond int64, ignored")
            continue
        try:
            if not entry.is_dir():
                continue
        except OSError:
            continue
        if number in found:
            # "1" and "001": the canonical spelling wins, else the first in name order.
            kept = Path(entry.path) if entry.name == str(number) else found[number]
            problems.append(
                f"{path}: version {number} is both {found[number].name!r} and "
                f"{entry.name!r}; using {kept.name!r}"
            )
            found[number] = kept
        else:
            found[number] = Path(entry.path)
    return found, problems


def _look(path: Path) -> _Look:
    """Fingerprint ``path`` (a version folder or a single file) with ``stat`` only."""
    try:
        root = os.stat(path)
    except OSError:
        return _Look(None)
    if not stat.S_ISDIR(root.st_mode):
        return _Look(
            (("", root.st_size, root.st_mtime_ns),),
            renamed_in=root.st_ctime_ns > root.st_mtime_ns,
        )
    entries: list[tuple[str, int, int]] = []
    newest = root.st_mtime_ns
    pending = [("", str(path))]
    while pending:
        prefix, folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                for entry in listing:
                    relative = prefix + entry.name
                    info = entry.stat()  # follows links: a linked file counts by its target
                    newest = max(newest, info.st_mtime_ns, info.st_ctime_ns)
                    if stat.S_ISDIR(info.st_mode):
                        entries.append((relative + "/", -1, info.st_mtime_ns))
                        if not entry.is_symlink():  # a linked folder is not walked: no loops
                            pending.append((relative + "/", entry.path))
                    else:
                        entries.append((relative, info.st_size, info.st_mtime_ns))
        except OSError:
            return _Look(None)
    return _Look(tuple(sorted(entries)), renamed_in=root.st_ctime_ns > newest)
