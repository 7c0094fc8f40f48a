"""What a fleet should serve, read from a repository and its config file. Pure: reads disk,
loads nothing, starts nothing.

``read_config(repo)`` gives a :class:`FleetConfig`: one :class:`ModelConfig` per model, the
pipelines, the memory budget. The config comes from one of two files, checked when read:

- ``REPO/tfhost.toml`` (``tomllib``): a ``[host]`` table (``memory_budget``,
  ``poll_interval_s`` and the defaults for every model), ``[models.NAME]`` tables (keys as
  :class:`ModelConfig`'s fields, plus the format options ``tags``, ``safe_mode``, ``inputs``
  and ``outputs`` written directly) and ``[pipelines.NAME]`` tables. Every folder and
  single-file artifact directly in REPO is a model, with or without a table.
- TensorFlow Serving's ``models.config`` (a text-format ``ModelServerConfig``): only the
  models it lists are models, as in TensorFlow Serving.

Contract:

1. Every mistake is a :class:`ConfigError` naming the file, the line where the parser gives
   one, the key (dotted, e.g. ``models.ranker.version_policy``) and what is wrong; an unknown
   key says which keys the table takes (and the nearest one). Nothing is silently ignored
   except what ``FleetConfig.notes`` lists.
2. Paths in a config are absolute once read; a relative one is relative to the config file's
   folder (TensorFlow Serving resolves ``base_path`` against its working directory; a
   config that moves with its repository is what users mean).
3. A key in ``[models.NAME]`` replaces the ``[host]`` default of the same key, as a whole
   (a model's ``worker`` table is not merged with the host's).
4. Reading the same files twice gives equal configs, so a caller can tell what changed by
   comparing :class:`ModelConfig`\\ s.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, cast

from tfhost.batching import BatchingSettings
from tfhost.errors import InputError
from tfhost.formats.options import FORMAT_OPTIONS
from tfhost.host import check_model_name
from tfhost.settings import WorkerSettings
from tfhost.specs import Warmup

TOML_FILE = "tfhost.toml"
MODELS_CONFIG_FILE = "models.config"
# Single-file artifacts that are models when they lie directly in a repository.
ARTIFACT_SUFFIXES = (".keras", ".h5", ".hdf5", ".pb")
ISOLATIONS = ("inline", "process")
# Every format option some loader takes (formats/options.py); which one a model's format
# takes is checked when it loads, because the format is known only then.
FORMAT_OPTION_NAMES: frozenset[str] = frozenset().union(*FORMAT_OPTIONS.values())

_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_LINE = re.compile(r"\s*\(at line (\d+)\)\s*$")
_PROTO_POSITION = re.compile(r"^(\d+):(\d+)\s*:\s*")
_INT64_MAX = 2**63 - 1


class ConfigError(InputError):
    """A config file (or a config built in code) says something tfhost cannot do.

    ``file``, ``line``, ``column`` and ``key`` are where (each None when unknown), ``what``
    is what is wrong; the message is all of them: ``FILE:LINE:COLUMN: KEY: WHAT``.
    """

    def __init__(
        self,
        what: str,
        *,
        file: Path | None = None,
        line: int | None = None,
        column: int | None = None,
        key: str | None = None,
    ) -> None:
        self.what = what
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        where = ""
        if file is not None:
            where = str(file)
            if line is not None:
                where += f":{line}"
                if column is not None:
                    where += f":{column}"
        parts = [p for p in (where, key) if p]
        super().__init__(": ".join([*parts, what]))

    def at(self, file: Path | None, key: str | None = None) -> ConfigError:
        """This error, placed in ``file`` (keeps a file, line or key it already names)."""
        return ConfigError(
            self.what,
            file=self.file or file,
            line=self.line,
            column=self.column,
            key=self.key or key,
        )


# -- the configuration, as data ---------------------------------------------------------


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions on disk should be loaded (TensorFlow Serving's ServableVersionPolicy).

    ``latest``: the ``latest`` highest versions (default 1); ``all``: every version;
    ``specific``: those of ``specific`` that are on disk (the others are waited for).
    """

    kind: Literal["latest", "all", "specific"] = "latest"
    latest: int = 1
    specific: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("latest", "all", "specific"):
            raise ConfigError(
                f"version policy kind must be 'latest', 'all' or 'specific', got {self.kind!r}",
                key="version_policy",
            )
        if not _is_int(self.latest) or self.latest < 1:
            raise ConfigError(
                f"latest takes how many of the highest versions to load, at least 1, "
                f"got {self.latest!r}",
                key="version_policy.latest",
            )
        versions = tuple(self.specific)
        for v in versions:
            if not _is_int(v) or v < 0 or v > _INT64_MAX:
                raise ConfigError(
                    f"specific takes version numbers (non-negative ints), got {v!r}",
                    key="version_policy.specific",
                )
        object.__setattr__(self, "specific", tuple(sorted(set(versions))))

    def choose(self, versions: Iterable[int]) -> frozenset[int]:
        """The versions of ``versions`` (those on disk) that should be loaded."""
        present = set(versions)
        if self.kind == "all":
            return frozenset(present)
        if self.kind == "specific":
            return frozenset(present.intersection(self.specific))
        return frozenset(sorted(present)[-self.latest :])

    def describe(self) -> str:
        if self.kind == "all":
            return "all"
        if self.kind == "specific":
            return f"specific {list(self.specific)}"
        return f"latest {self.latest}"


@dataclass(frozen=True)
class ModelConfig:
    """One model of a fleet: where it is and how to serve it.

    ``custom_objects`` names Keras objects as ``"module:attr"`` (resolved by
    :meth:`resolve_custom_objects` when the model loads, not when the config is read);
    ``format_options`` go to ``Host.load(**format_options)``; ``worker`` is None to use the
    host's worker settings, and ``isolation`` None for the host's default
    (``HostSettings.default_isolation``, ``tfhost serve --isolation``). ``batching`` is None
    when the config does not say (the fleet's default then applies, TF Serving's
    ``--enable_batching``), False for none. ``labels`` may name a version that is not on
    disk (yet): the fleet decides when a label can route.
    """

    name: str
    path: Path
    isolation: str | None = None
    group: str | None = None
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    labels: Mapping[str, int] = field(default_factory=dict)
    custom_objects: Mapping[str, str] = field(default_factory=dict)
    preload: tuple[str, ...] = ()
    format_options: Mapping[str, Any] = field(default_factory=dict)
    lazy: bool = False
    pinned: bool = False
    warmup: Warmup = True
    jit_compile: bool = False
    worker: WorkerSettings | None = None
    batching: BatchingSettings | Literal[False] | None = None

    def __post_init__(self) -> None:
        try:
            check_model_name(self.name)
        except InputError as exc:
            raise ConfigError(exc.message, key="name") from None
        if not isinstance(self.path, Path):
            raise ConfigError(f"must be a pathlib.Path, got {self.path!r}", key="path")
        if not self.path.is_absolute():
            raise ConfigError(f"must be absolute, got {str(self.path)!r}", key="path")
        if self.isolation is not None and self.isolation not in ISOLATIONS:
            raise ConfigError(
                f"must be 'inline' or 'process', got {self.isolation!r}", key="isolation"
            )
        if self.group is not None:
            if not isinstance(self.group, str) or not self.group:
                raise ConfigError(f"must be a non-empty name, got {self.group!r}", key="group")
            if self.isolation != "process":
                raise ConfigError(
                    f"model {self.name!r} names group {self.group!r}, a shared worker "
                    f"process, but its isolation is "
                    f"{'not set' if self.isolation is None else repr(self.isolation)}; set "
                    f"isolation = 'process'",
                    key="group",
                )
        if not isinstance(self.version_policy, VersionPolicy):
            raise ConfigError(
                f"must be a VersionPolicy, got {self.version_policy!r}", key="version_policy"
            )
        for label, version in self.labels.items():
            _check_label(label, version, "labels")
        for name, spec in self.custom_objects.items():
            _check_custom_object(name, spec, "custom_objects")
        object.__setattr__(self, "preload", tuple(self.preload))
        for item in self.preload:
            if not isinstance(item, str) or not item:
                raise ConfigError(
                    f"takes module names or op library paths, got {item!r}", key="preload"
                )
        for option in self.format_options:
            if option not in FORMAT_OPTION_NAMES:
                raise ConfigError(_unknown(option, FORMAT_OPTION_NAMES), key="format_options")
        if self.warmup not in (True, False, "synthetic"):
            raise ConfigError(
                f'must be true, false or "synthetic", got {self.warmup!r}', key="warmup"
            )
        for flag in ("lazy", "pinned", "jit_compile"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"must be true or false, got {getattr(self, flag)!r}", key=flag)
        if self.worker is not None and not isinstance(self.worker, WorkerSettings):
            raise ConfigError(f"must be a WorkerSettings, got {self.worker!r}", key="worker")
        if self.batching not in (None, False) and not isinstance(self.batching, BatchingSettings):
            raise ConfigError(
                f"must be a BatchingSettings, False or None, got {self.batching!r}",
                key="batching",
            )

    def resolve_custom_objects(self) -> dict[str, Any]:
        """``custom_objects`` imported: name -> the object ``"module:attr"`` names.

        A module that fails to import or an attribute that is not there is a ConfigError
        naming the model, the custom object and why.
        """
        resolved: dict[str, Any] = {}
        for name, spec in self.custom_objects.items():
            module_name, _, attribute = spec.partition(":")
            try:
                value: Any = importlib.import_module(module_name)
                for part in attribute.split("."):
                    value = getattr(value, part)
            except Exception as exc:
                raise ConfigError(
                    f"model {self.name!r}: custom object {name!r} = {spec!r} does not "
                    f"resolve: {type(exc).__name__}: {exc}",
                    key=f"custom_objects.{name}",
                ) from None
            resolved[name] = value
        return resolved


@dataclass(frozen=True)
class PipelineConfig:
    """A model made of steps: each step's outputs feed the next step's inputs by name.

    ``map[step][input] = output`` feeds ``step``'s ``input`` with the previous step's
    ``output`` instead (a step's inputs that ``map`` does not name take the previous step's
    output of the same name).
    """

    name: str
    steps: tuple[str, ...]
    map: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            check_model_name(self.name)
        except InputError as exc:
            raise ConfigError(exc.message, key="name") from None
        object.__setattr__(self, "steps", tuple(self.steps))
        if len(self.steps) < 2:
            raise ConfigError(
                f"a pipeline takes at least two steps (model names), got {list(self.steps)}",
                key="steps",
            )
        for step in self.steps:
            if not isinstance(step, str):
                raise ConfigError(f"takes model names, got {step!r}", key="steps")
        repeated = sorted({s for s in self.steps if self.steps.count(s) > 1})
        if repeated:
            raise ConfigError(f"names {repeated} more than once; a step is one model", key="steps")
        for step, inputs in self.map.items():
            if step not in self.steps:
                raise ConfigError(
                    f"names {step!r}, which is not a step of this pipeline "
                    f"(steps: {list(self.steps)})",
                    key=f"map.{step}",
                )
            if step == self.steps[0]:
                raise ConfigError(
                    f"{step!r} is the first step: its inputs are the pipeline's own, no "
                    f"step comes before it",
                    key=f"map.{step}",
                )
            if not isinstance(inputs, Mapping):
                raise ConfigError(
                    f"takes a table input = previous step's output, got {inputs!r}",
                    key=f"map.{step}",
                )
            for name, output in inputs.items():
                if not isinstance(name, str) or not isinstance(output, str) or not output:
                    raise ConfigError(
                        f"takes output names (strings), got {output!r}",
                        key=f"map.{step}.{name}",
                    )


@dataclass(frozen=True)
class FleetConfig:
    """Everything a fleet serves: every model of the repository, the pipelines, the budget.

    ``source`` is the config file read (None: no config file, defaults only). ``notes`` are
    what was read and deliberately not applied (an entry in the repository that is not a
    model, a TensorFlow Serving field tfhost does not use), for the caller to log.
    ``poll_interval_s`` is the config's say on how often to look at disk (None: the
    caller's default).
    """

    models: Mapping[str, ModelConfig]
    pipelines: Mapping[str, PipelineConfig] = field(default_factory=dict)
    memory_budget: int | None = None
    source: Path | None = None
    repo: Path | None = None
    poll_interval_s: float | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.memory_budget is not None and (
            not _is_int(self.memory_budget) or self.memory_budget <= 0
        ):
            raise ConfigError(
                f"must be a positive number of bytes, got {self.memory_budget!r}",
                key="memory_budget",
            )
        if self.poll_interval_s is not None and (
            isinstance(self.poll_interval_s, bool)
            or not isinstance(self.poll_interval_s, (int, float))
            or not self.poll_interval_s > 0
        ):
            raise ConfigError(
                f"must be a positive number of seconds, got {self.poll_interval_s!r}",
                key="poll_interval_s",
            )
        for name, model in self.models.items():
            if name != model.name:
                raise ConfigError(f"key {name!r} holds model {model.name!r}", key="models")
        for name, pipeline in self.pipelines.items():
            if name != pipeline.name:
                raise ConfigError(f"key {name!r} holds pipeline {pipeline.name!r}", key="pipelines")
            if name in self.models:
                raise ConfigError(
                    f"pipeline {name!r} has the name of a model; a pipeline is served as a "
                    f"model, so the names must differ",
                    key=f"pipelines.{name}",
                )
            for step in pipeline.steps:
                if step not in self.models:
                    raise ConfigError(
                        f"pipeline {name!r}: step {step!r} is not a model of this fleet "
                        f"(models: {sorted(self.models)})",
                        key=f"pipelines.{name}.steps",
                    )


# -- sizes ----------------------------------------------------------------------------

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*")


def parse_bytes(value: int | float | str) -> int:
    """A size in bytes: an int, or a string with a unit.

    ``"512MiB"``, ``"8GiB"``, ``"8Gi"`` are powers of 1024; ``"1.5GB"``, ``"8G"``, ``"8k"``
    are powers of 1000 (as Kubernetes reads them). Units ignore case; a fraction of a byte
    is dropped. Anything else, or a negative size, is a ConfigError.
    """
    if isinstance(value, bool):
        raise ConfigError(f"expected a size such as 1073741824 or '8GiB', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"a size cannot be negative, got {value}")
        return value
    if isinstance(value, float):
        if not value.is_integer() or value < 0:
            raise ConfigError(
                f"expected a whole, non-negative number of bytes or a string such as "
                f"'1.5GB', got {value!r}"
            )
        return int(value)
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise ConfigError(
                f"expected a size such as 1073741824, '512MiB', '8GiB' or '1.5GB' "
                f"(units B, KB/MB/GB/TB = 1000^n, KiB/MiB/GiB/TiB = 1024^n), got {value!r}"
            )
        try:
            number = Decimal(match.group(1))
        except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
            raise ConfigError(f"expected a number before the unit, got {value!r}") from None
        return int(number * _UNITS[unit])
    raise ConfigError(
        f"expected a size (an int or a string such as '8GiB'), got {type(value).__name__}"
    )


# -- reading --------------------------------------------------------------------------


def read_config(repo: Path, config_file: Path | None = None) -> FleetConfig:
    """The fleet that ``repo`` (and its config file) describes.

    ``config_file`` None: ``REPO/tfhost.toml`` if present, else ``REPO/models.config`` if
    present, else every model in REPO with the defaults. A path ending ``.toml`` is read as
    tfhost.toml, anything else as TensorFlow Serving's models.config. Raises ConfigError.
    """
    repo = Path(os.path.abspath(Path(repo).expanduser()))
    if not repo.is_dir():
        raise ConfigError(f"the model repository {str(repo)!r} is not a folder")
    if config_file is None:
        for name in (TOML_FILE, MODELS_CONFIG_FILE):
            if (repo / name).is_file():
                config_file = repo / name
                break
    else:
        config_file = Path(os.path.abspath(Path(config_file).expanduser()))
        if not config_file.is_file():
            raise ConfigError("no such config file", file=config_file)
    if config_file is None:
        found = _discover(repo)
        found.check()
        return FleetConfig(
            models={name: ModelConfig(name, path) for name, path in sorted(found.paths.items())},
            repo=repo,
            notes=tuple(found.notes),
        )
    if config_file.suffix == ".toml":
        return _read_toml(repo, config_file)
    return _read_models_config(repo, config_file)


@dataclass
class _Found:
    """The models lying directly in a repository, and what was passed over."""

    paths: dict[str, Path] = field(default_factory=dict)
    # A name that is both a folder and a file (or two files): an error unless a table
    # gives the model its path.
    ambiguous: dict[str, list[Path]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def check(self, explicit: Iterable[str] = ()) -> None:
        for name, candidates in self.ambiguous.items():
            if name not in explicit:
                raise ConfigError(
                    f"model {name!r} is each of {[str(c) for c in candidates]}; keep one, or "
                    f"give [models.{name}] a path in tfhost.toml",
                    key=name,
                )


def _discover(repo: Path) -> _Found:
    found = _Found()
    if any((repo / name).is_file() for name in ("saved_model.pb", "saved_model.pbtxt")):
        raise ConfigError(
            f"{str(repo)!r} is a SavedModel, not a repository of models: point at the "
            f"folder that holds it (each model a folder of version folders, or one artifact)"
        )
    try:
        entries = sorted(repo.iterdir())
    except OSError as exc:
        raise ConfigError(f"cannot list the model repository {str(repo)!r}: {exc}") from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            name = entry.name
        elif entry.is_file() and entry.suffix.lower() in ARTIFACT_SUFFIXES:
            name = entry.stem
        else:
            continue
        try:
            check_model_name(name)
        except InputError:
            found.notes.append(
                f"{entry}: not a model (its name {name!r} is not a valid model name: letters, "
                f"digits, '.', '_' or '-', starting with a letter or digit)"
            )
            continue
        if name in found.paths:
            found.ambiguous.setdefault(name, [found.paths[name]]).append(entry)
        else:
            found.paths[name] = entry
    return found


def _local_path(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return Path(os.path.abspath(path if path.is_absolute() else base / path))


# -- tfhost.toml ----------------------------------------------------------------------

# Keys of [host] that are defaults for every model. Not group, labels or path (one
# model's own), nor format options (each format takes its own; Host.load refuses others).
_DEFAULT_KEYS = frozenset(
    {"isolation", "version_policy", "lazy", "pinned", "warmup", "worker", "custom_objects"}
    | {"preload", "batching", "jit_compile"}
)
# Keys of [models.NAME], besides the format options, which may also be written directly.
_MODEL_KEYS = _DEFAULT_KEYS | {"path", "group", "labels", "format_options"}
_HOST_KEYS = _DEFAULT_KEYS | {"memory_budget", "poll_interval_s"}
_PIPELINE_KEYS = frozenset({"steps", "map"})
_WORKER_KEYS = frozenset(f.name for f in fields(WorkerSettings))
_BATCHING_KEYS = frozenset(f.name for f in fields(BatchingSettings))


class _Toml:
    """One tfhost.toml being read: where errors point, and the checks every value gets."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.base = file.parent

    def error(self, key: str, what: str) -> ConfigError:
        return ConfigError(what, file=self.file, key=key)

    def table(
        self, value: Any, key: str, allowed: Iterable[str] | None = None, kind: str = ""
    ) -> dict[str, Any]:
        """``value`` as a table; with ``allowed``, a ConfigError for a key not in it."""
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table, got {_toml_type(value)}")
        if allowed is not None:
            valid = frozenset(allowed)
            for name in value:
                if name not in valid:
                    raise self.error(
                        f"{key}.{name}" if key else name,
                        f"{_unknown(name, valid)}; {kind} takes {', '.join(sorted(valid))}",
                    )
        return cast(dict[str, Any], value)

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_toml_type(value)} {value!r}")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(key, f"expected a non-empty string, got {_toml_type(value)} {value!r}")
        return value

    def strings(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.error(key, f"expected an array of strings, got {_toml_type(value)}")
        return tuple(self.string(item, f"{key}[{i}]") for i, item in enumerate(value))

    def version_policy(self, value: Any, key: str) -> VersionPolicy:
        if value in ("latest", "all"):
            return VersionPolicy(kind=value)
        if isinstance(value, dict) and len(value) == 1:
            kind, arg = next(iter(value.items()))
            if kind == "latest":
                if not _is_int(arg) or arg < 1:
                    raise self.error(
                        f"{key}.latest",
                        f"takes how many of the highest versions to load (an int, at least "
                        f"1), got {arg!r}",
                    )
                return VersionPolicy("latest", latest=arg)
            if kind == "specific":
                if not isinstance(arg, list) or not all(
                    _is_int(v) and 0 <= v <= _INT64_MAX for v in arg
                ):
                    raise self.error(
                        f"{key}.specific",
                        f"takes an array of version numbers (non-negative ints), got {arg!r}",
                    )
                return VersionPolicy("specific", specific=tuple(arg))
            if kind == "all" and arg is True:
                return VersionPolicy("all")
        raise self.error(
            key,
            f'expected {{ latest = N }}, "all" or {{ specific = [N, ...] }}, got {value!r}',
        )

    def labels(self, value: Any, key: str) -> dict[str, int]:
        table = self.table(value, key)
        for label, version in table.items():
            try:
                _check_label(label, version, key)
            except ConfigError as exc:
                raise exc.at(self.file) from None
        return dict(table)

    def custom_objects(self, value: Any, key: str) -> dict[str, str]:
        table = self.table(value, key)
        for name, spec in table.items():
            try:
                _check_custom_object(name, spec, key)
            except ConfigError as exc:
                raise exc.at(self.file) from None
        return dict(table)

    def preload(self, value: Any, key: str) -> tuple[str, ...]:
        items = self.strings(value, key)
        # An op library named by a relative path is relative to this file, like every path.
        return tuple(
            str(_local_path(self.base, item)) if item.endswith(".so") or os.sep in item else item
            for item in items
        )

    def worker(self, value: Any, key: str) -> dict[str, Any]:
        table = self.table(value, key, _WORKER_KEYS, "a worker table")
        try:
            WorkerSettings(**table)
        except InputError as exc:
            raise self.error(key, exc.message) from None
        return dict(table)

    def batching(self, value: Any, key: str) -> BatchingSettings | Literal[False]:
        """``false``, ``true`` (TF Serving's defaults) or a table of BatchingSettings."""
        if value is False:
            return False
        if value is True:
            return BatchingSettings()
        if not isinstance(value, dict):
            raise self.error(
                key, f"expected true, false or a table of batching settings, got {value!r}"
            )
        table = dict(self.table(value, key, _BATCHING_KEYS, "a batching table"))
        if isinstance(table.get("allowed_batch_sizes"), list):
            table["allowed_batch_sizes"] = tuple(table["allowed_batch_sizes"])
        try:
            return BatchingSettings(**table)
        except InputError as exc:
            raise self.error(key, re.sub(r"^BatchingSettings[.:]\s*", "", exc.message)) from None

    def format_option(self, name: str, value: Any, key: str) -> Any:
        if name in ("tags", "inputs", "outputs"):
            return self.strings(value, key)
        if name == "safe_mode":
            return self.boolean(value, key)
        return value  # pragma: no cover - an option added to formats/options.py

    def model_values(self, table: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        """``table``'s values for ModelConfig (host defaults or one model's table), checked."""
        values: dict[str, Any] = {}
        options: dict[str, Any] = {}
        for name, value in table.items():
            key = f"{prefix}.{name}"
            if name == "path":
                values["path"] = _local_path(self.base, self.string(value, key))
            elif name == "isolation":
                isolation = self.string(value, key)
                if isolation not in ISOLATIONS:
                    raise self.error(key, f"expected 'inline' or 'process', got {isolation!r}")
                values[name] = isolation
            elif name == "group":
                values[name] = self.string(value, key)
            elif name == "version_policy":
                values[name] = self.version_policy(value, key)
            elif name == "labels":
                values[name] = self.labels(value, key)
            elif name == "custom_objects":
                values[name] = self.custom_objects(value, key)
            elif name == "preload":
                values[name] = self.preload(value, key)
            elif name == "warmup" and value == "synthetic":
                values[name] = value
            elif name in ("lazy", "pinned", "warmup", "jit_compile"):
                values[name] = self.boolean(value, key)
            elif name == "worker":
                values[name] = self.worker(value, key)
            elif name == "batching":
                values[name] = self.batching(value, key)
            elif name == "format_options":
                given = self.table(value, key, FORMAT_OPTION_NAMES, "format_options")
                for option, v in given.items():
                    options[option] = self.format_option(option, v, f"{key}.{option}")
            elif name in FORMAT_OPTION_NAMES:
                if name in table.get("format_options", {}):
                    raise self.error(
                        key, f"given twice: here and in {prefix}.format_options; keep one"
                    )
                options[name] = self.format_option(name, value, key)
        if options:
            values["format_options"] = options
        return values


def _read_toml(repo: Path, file: Path) -> FleetConfig:
    try:
        with file.open("rb") as f:
            document = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        text = str(exc)
        line = column = None
        if match := _TOML_POSITION.search(text):
            line, column = int(match.group(1)), int(match.group(2))
            text = text[: match.start()]
        elif match := _TOML_LINE.search(text):
            line = int(match.group(1))
            text = text[: match.start()]
        raise ConfigError(f"not valid TOML: {text}", file=file, line=line, column=column) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=file) from None
    toml = _Toml(file)
    toml.table(document, "", ("host", "models", "pipelines"), "tfhost.toml")

    host = toml.table(document.get("host", {}), "host", _HOST_KEYS, "[host]")
    defaults = toml.model_values({k: v for k, v in host.items() if k in _DEFAULT_KEYS}, "host")
    memory_budget = None
    if "memory_budget" in host:
        try:
            memory_budget = parse_bytes(host["memory_budget"])
        except ConfigError as exc:
            raise toml.error("host.memory_budget", exc.what) from None
        if memory_budget == 0:
            raise toml.error("host.memory_budget", "must be more than 0 bytes")
    poll = host.get("poll_interval_s")
    if poll is not None and (
        isinstance(poll, bool) or not isinstance(poll, (int, float)) or not poll > 0
    ):
        raise toml.error("host.poll_interval_s", f"expected a positive number, got {poll!r}")

    models_table = document.get("models", {})
    if not isinstance(models_table, dict):
        raise toml.error("models", f"expected [models.NAME] tables, got {_toml_type(models_table)}")
    found = _discover(repo)
    paths: dict[str, Path] = dict(found.paths)
    tables: dict[str, dict[str, Any]] = {}
    for name, table in models_table.items():
        key = f"models.{name}"
        try:
            check_model_name(name)
        except InputError as exc:
            raise toml.error(key, exc.message) from None
        given = toml.table(table, key, _MODEL_KEYS | FORMAT_OPTION_NAMES, f"[{key}]")
        values = toml.model_values(given, key)
        if "path" in values:
            if not values["path"].exists():
                raise toml.error(f"{key}.path", f"no folder or artifact at {str(values['path'])!r}")
            paths[name] = values["path"]
        elif name not in found.paths:
            raise toml.error(
                key,
                f"no folder or artifact at {str(repo / name)!r} (nor {name}.keras, .h5, "
                f".hdf5 or .pb); give a path, or put the model there",
            )
        tables[name] = values
    try:
        found.check(explicit={name for name, values in tables.items() if "path" in values})
    except ConfigError as exc:
        raise exc.at(file) from None

    models: dict[str, ModelConfig] = {}
    for name in sorted(paths):
        values = {**defaults, **tables.get(name, {})}
        path = values.pop("path", paths[name])
        worker = values.pop("worker", None)
        key = f"models.{name}" if name in tables else "host"
        try:
            models[name] = ModelConfig(
                name,
                path,
                worker=None if worker is None else WorkerSettings(**worker),
                **values,
            )
        except ConfigError as exc:
            raise ConfigError(
                exc.what, file=file, key=f"{key}.{exc.key}" if exc.key else key
            ) from None
        except InputError as exc:  # WorkerSettings, whose own checks ran on the table
            raise toml.error(f"{key}.worker", exc.message) from None

    pipelines_table = document.get("pipelines", {})
    if not isinstance(pipelines_table, dict):
        raise toml.error(
            "pipelines", f"expected [pipelines.NAME] tables, got {_toml_type(pipelines_table)}"
        )
    pipelines: dict[str, PipelineConfig] = {}
    for name, table in pipelines_table.items():
        key = f"pipelines.{name}"
        given = toml.table(table, key, _PIPELINE_KEYS, f"[{key}]")
        if "steps" not in given:
            raise toml.error(f"{key}.steps", "missing: a pipeline needs its steps (model names)")
        steps = toml.strings(given["steps"], f"{key}.steps")
        mapping: dict[str, dict[str, str]] = {}
        for step, inputs in toml.table(given.get("map", {}), f"{key}.map").items():
            mapping[step] = {
                k: toml.string(v, f"{key}.map.{step}.{k}")
                for k, v in toml.table(inputs, f"{key}.map.{step}").items()
            }
        try:
            pipelines[name] = PipelineConfig(name, steps, mapping)
        except ConfigError as exc:
            raise ConfigError(
                exc.what, file=file, key=f"{key}.{exc.key}" if exc.key else key
            ) from None
    try:
        return FleetConfig(
            models=models,
            pipelines=pipelines,
            memory_budget=memory_budget,
            source=file,
            repo=repo,
            poll_interval_s=None if poll is None else float(poll),
            notes=tuple(found.notes),
        )
    except ConfigError as exc:
        raise exc.at(file) from None


# -- models.config (TensorFlow Serving) -----------------------------------------------


def _read_models_config(repo: Path, file: Path) -> FleetConfig:
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=file) from None
    try:
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ConfigError(
            f"reading TensorFlow Serving's models.config needs tensorflow-serving-api "
            f"(pip install tensorflow-serving-api): {exc}",
            file=file,
        ) from None
    proto = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        message = str(exc)
        line, column = exc.GetLine(), exc.GetColumn()
        if match := _PROTO_POSITION.match(message):
            message = message[match.end() :]
            line, column = int(match.group(1)), int(match.group(2))
        raise ConfigError(
            f"not a valid ModelServerConfig: {message}", file=file, line=line, column=column
        ) from None
    return models_config_from_proto(repo, proto, file, text)


def models_config_from_proto(
    repo: Path, proto: Any, file: Path | None = None, text: str = ""
) -> FleetConfig:
    """The fleet a TensorFlow Serving ``ModelServerConfig`` describes (from a models.config
    file, or from ModelService.HandleReloadConfigRequest, where relative base paths are
    taken from ``repo``). Raises ConfigError."""
    base = repo if file is None else file.parent
    choice = proto.WhichOneof("config")
    if choice == "custom_model_config":
        raise ConfigError(
            "custom_model_config is not supported; list the models in model_config_list",
            file=file,
            key="custom_model_config",
        )
    notes: list[str] = []
    models: dict[str, ModelConfig] = {}
    for index, entry in enumerate(proto.model_config_list.config):
        where = f"model_config_list.config[{index}]"
        line = _line_of_name(text, entry.name)

        def error(key: str, what: str, line: int | None = line, where: str = where) -> ConfigError:
            return ConfigError(what, file=file, line=line, key=f"{where}.{key}")

        try:
            check_model_name(entry.name)
        except InputError as exc:
            raise error("name", exc.message) from None
        if entry.name in models:
            raise error("name", f"model {entry.name!r} is listed twice")
        if entry.model_platform not in ("", "tensorflow"):
            raise error(
                "model_platform",
                f"model {entry.name!r}: platform {entry.model_platform!r} is not served; "
                f"tfhost serves 'tensorflow' models",
            )
        if entry.model_type:
            raise error(
                "model_type",
                f"model {entry.name!r}: model_type is deprecated in TensorFlow Serving and "
                f'not served; remove it (model_platform: "tensorflow")',
            )
        if entry.HasField("logging_config"):
            notes.append(
                f"{file or 'config'}: model {entry.name!r}: logging_config is not used by tfhost"
            )
        if not entry.base_path:
            raise error("base_path", f"model {entry.name!r}: base_path is empty")
        path = _local_path(base, entry.base_path)
        if not path.exists():
            raise error(
                "base_path", f"model {entry.name!r}: no folder or artifact at {str(path)!r}"
            )
        policy = _proto_policy(entry.model_version_policy)
        labels = dict(entry.version_labels)
        try:
            models[entry.name] = ModelConfig(entry.name, path, version_policy=policy, labels=labels)
        except ConfigError as exc:
            field_name = (exc.key or "name").split(".")[0]
            raise error(_PROTO_FIELDS.get(field_name, field_name), exc.what) from None
    return FleetConfig(
        models=dict(sorted(models.items())), source=file, repo=repo, notes=tuple(notes)
    )


# ModelConfig's fields by the names models.config gives them.
_PROTO_FIELDS = {"labels": "version_labels", "version_policy": "model_version_policy"}


def _proto_policy(policy: Any) -> VersionPolicy:
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy("all")
    if choice == "specific":
        return VersionPolicy("specific", specific=tuple(policy.specific.versions))
    if choice == "latest":
        # TensorFlow Serving serves at least one: `latest {}` is the latest one.
        return VersionPolicy("latest", latest=max(1, policy.latest.num_versions))
    return VersionPolicy()


def _line_of_name(text: str, name: str) -> int | None:
    """The line of ``name: "NAME"`` in a models.config: where a model's entry is."""
    pattern = re.compile(r"\bname\s*:\s*(['\"])" + re.escape(name) + r"\1")
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


# -- small checks ---------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_label(label: object, version: object, key: str) -> None:
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise ConfigError(
            f"label {label!r} is not a name: letters, digits, '.', '_' or '-', starting with "
            f"a letter or digit",
            key=key,
        )
    if not _is_int(version) or not 0 <= cast(int, version) <= _INT64_MAX:
        raise ConfigError(
            f"label {label!r} must name a version (a non-negative int), got {version!r}",
            key=f"{key}.{label}",
        )


def _check_custom_object(name: object, spec: object, key: str) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"custom object names must be strings, got {name!r}", key=key)
    module, _, attribute = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not module or not attribute:
        raise ConfigError(
            f"expected 'module:attr' (e.g. 'my_layers:Scale'), got {spec!r}",
            key=f"{key}.{name}",
        )


def _unknown(name: str, valid: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, sorted(valid), n=1)
    return f"unknown key {name!r}" + (f" (did you mean {match[0]!r}?)" if match else "")


def _toml_type(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)
