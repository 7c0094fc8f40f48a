"""``doctor``: load models alone, together the naive ways, and in tfhost; explain the gaps.

Two phases of child processes, each phase in parallel up to ``jobs`` children:

1. alone: one fresh process per model detects it, reads its names and needs, loads it
   with tfhost's loader, builds (or takes) inputs and records its outputs: the reference.
2. together: one fresh process per naive way and one for a tfhost ``Host``, each loading
   every model that runs alone, then calling each with the same inputs.

The parent never imports TensorFlow: it writes job files, reads events and ``.npz``
outputs, compares, and explains.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfhost.diagnosis import causes
from tfhost.diagnosis.inputs import load_arrays
from tfhost.diagnosis.runner import Job, Runner, StepResult, child_environment
from tfhost.diagnosis.verdicts import (
    FLOAT_ATOL,
    FLOAT_RTOL,
    NAIVE_WAYS,
    Cause,
    CauseKind,
    Collision,
    Diagnosis,
    ModelReport,
    Outcome,
    StepRun,
    Verdict,
    Way,
)
from tfhost.errors import InputError, LoadError, NotFound
from tfhost.specs import Format

DEFAULT_TIMEOUT_S = 300.0
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
# Which formats each naive way opens; for the others it is "n/a".
_APPLIES: dict[Way, frozenset[Format]] = {
    Way.SHARED_GRAPH: frozenset({Format.TF1_SAVED_MODEL, Format.FROZEN_GRAPH}),
    Way.LOAD_MODEL: frozenset(Format) - {Format.FROZEN_GRAPH},
    Way.GRAPH_RECIPE: frozenset(
        {
            Format.TF1_SAVED_MODEL,
            Format.TF2_SAVED_MODEL,
            Format.KERAS_SAVED_MODEL,
            Format.KERAS_EXPORT,
        }
    ),
}

Progress = Callable[[str, int, int], None]  # (phase description, done, total)


# -- names and options ------------------------------------------------------------------


def expand_repositories(paths: Sequence[Path]) -> list[Path]:
    """Each path that is a model repository (a folder ``tfhost serve`` takes, not a model
    itself) stands for its models, as its config or its folders name them."""
    from tfhost.errors import FormatError
    from tfhost.fleet.config import ConfigError, read_config
    from tfhost.formats.detect import detect, versions_in

    out: list[Path] = []
    for path in paths:
        if path.is_dir() and not versions_in(path):  # a model's versions are not models
            try:
                detect(path)
            except FormatError:
                try:
                    models = read_config(path).models
                except ConfigError:
                    models = {}
                if models:
                    out.extend(models[name].path for name in sorted(models))
                    continue
        out.append(path)
    return out


def model_names(paths: Sequence[Path]) -> list[str]:
    """Short, unique, Host-valid names: the artifact's name, else its folder's, else both.
    A version folder (``NAME/1``) or the one file in one (``NAME/1/model.keras``) is named
    for its model, ``NAME``."""

    def clean(text: str) -> str:
        text = _NAME_CHARS.sub("_", text).strip("._-") or "model"
        return text[:100]

    def stem(path: Path) -> str:
        return path.name if path.is_dir() else path.stem

    def own(path: Path) -> str:
        version = path if path.is_dir() else path.parent
        return version.parent.name if version.name.isdigit() else stem(path)

    resolved = [p.resolve() for p in paths]
    candidates = [
        [clean(own(p)) for p in resolved],
        [clean(p.parent.name) for p in resolved],
        [clean(f"{p.parent.name}-{stem(p)}") for p in resolved],
    ]
    for names in candidates:
        if len(set(names)) == len(names):
            return names
    names = candidates[-1]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique


def custom_object_specs(custom_objects: Mapping[str, Any] | Iterable[str] | None) -> dict[str, str]:
    """Custom objects as ``{name: "module:qualname"}``, which a child process can import.

    Accepts ``{"Scale": Scale}``, ``{"Scale": "my_layers:Scale"}`` or ``["my_layers:Scale"]``.
    """
    if custom_objects is None:
        return {}
    if not isinstance(custom_objects, Mapping):
        specs: dict[str, str] = {}
        for spec in custom_objects:
            module, _, attribute = spec.partition(":")
            if not module or not attribute:
                raise InputError(
                    f"custom object {spec!r}: expected MODULE:NAME, e.g. my_layers:Scale"
                )
            specs[attribute.split(".")[-1]] = spec
        return specs
    named: dict[str, str] = {}
    for name, value in custom_objects.items():
        if isinstance(value, str):
            named[name] = value
            continue
        home: str | None = getattr(value, "__module__", None)
        qualname: str | None = getattr(value, "__qualname__", None)
        if not home or not qualname or home == "__main__" or "<locals>" in qualname:
            raise InputError(
                f"custom object {name!r}: doctor loads models in fresh processes, which must "
                f"import it; define it in an importable module (not __main__ or a function) "
                f"or pass 'module:Name'"
            )
        named[name] = f"{home}:{qualname}"
    return named


def resolve_custom_object(spec: str) -> Any:
    """``module:Name`` (or ``module:Outer.Name``) to the object it names."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise LoadError(f"custom object {spec!r}: expected MODULE:NAME, e.g. my_layers:Scale")
    try:
        value: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as exc:
        raise LoadError(f"custom object {spec!r}: {type(exc).__name__}: {exc}") from None
    return value


# -- comparing outputs ------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    equal: bool
    max_abs_diff: float | None
    detail: str


def compare(expected: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray]) -> Comparison:
    """Whether ``got`` matches ``expected``: floats within FLOAT_RTOL/ATOL, the rest exactly."""
    if set(expected) != set(got):
        return Comparison(False, None, f"outputs {sorted(got)} instead of {sorted(expected)}")
    worst: float | None = None
    for key, want in expected.items():
        have = np.asarray(got[key])
        if have.shape != want.shape:
            return Comparison(
                False, None, f"output {key!r} has shape {have.shape}, alone {want.shape}"
            )
        numeric = want.dtype.kind in "biufc" and have.dtype.kind in "biufc"
        if numeric and want.dtype.kind in "fc":
            a, b = want.astype(np.complex128), have.astype(np.complex128)
            finite = np.isfinite(a) & np.isfinite(b)
            diff = float(np.max(np.abs(a - b)[finite])) if finite.any() else 0.0
            worst = diff if worst is None else max(worst, diff)
            if not np.allclose(b, a, rtol=FLOAT_RTOL, atol=FLOAT_ATOL, equal_nan=True):
                return Comparison(False, worst, f"output {key!r} differs from its alone value")
        elif not np.array_equal(want, have):
            return Comparison(False, worst, f"output {key!r} differs from its alone value")
    return Comparison(True, worst, "")


# -- the run ----------------------------------------------------------------------------


@dataclass
class _Model:
    """What the parent knows about one model as the steps come back."""

    name: str
    path: Path
    report: ModelReport
    alone: Verdict | None = None
    format: Format | None = None
    artifact_path: str | None = None
    version: int | None = None
    signature: str | None = None
    inputs_file: str | None = None
    output_names: list[str] = field(default_factory=list)
    outputs: dict[str, np.ndarray] | None = None
    variables: tuple[str, ...] = ()
    ops: tuple[str, ...] = ()
    signature_ops: tuple[str, ...] = ()


def doctor(
    paths: Sequence[str | Path],
    *,
    inputs: str | Path | None = None,
    custom_objects: Mapping[str, Any] | Iterable[str] | None = None,
    preload: Iterable[str] = (),
    signature: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> Diagnosis:
    """Explain how the models at ``paths`` behave alone, together the naive ways, and in tfhost.

    ``inputs`` is an ``.npz`` file (keys ``INPUT`` or ``MODEL/INPUT``); without it every
    model gets deterministic inputs built from its signature. ``custom_objects`` and
    ``preload`` are given to every way that can use them, as a user who knows about them
    would. ``signature`` picks the signature to run (default ``serving_default``, else the
    first). Each child process gets ``timeout_s``; at most ``jobs`` (default: the CPU
    count) run at once. ``progress(phase, done, total)`` is called as steps finish.

    Never raises for a model that fails, crashes or hangs: that is a verdict. Raises
    ``NotFound`` for a path that does not exist and ``InputError`` for bad options.
    """
    started = time.monotonic()
    if not paths:
        raise InputError("doctor needs at least one model path")
    resolved = [Path(p) for p in paths]
    for path in resolved:
        if not path.exists():
            raise NotFound(f"no artifact at {path}")
    resolved = expand_repositories(resolved)
    user_inputs = None if inputs is None else str(Path(inputs).resolve())
    if user_inputs is not None and not Path(user_inputs).is_file():
        raise InputError(f"--inputs: no file at {inputs}")
    preload = tuple(str(Path(p).resolve()) if p.endswith(".so") else p for p in preload)
    common = {"custom_objects": custom_object_specs(custom_objects), "preload": list(preload)}
    names = model_names(resolved)
    models = [
        _Model(name, path, ModelReport(name, str(path), inputs=user_inputs or "generated"))
        for name, path in zip(names, resolved, strict=True)
    ]
    width = jobs or os.cpu_count() or 1
    env = child_environment()
    user_growth = os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH")

    def env_for(job: Job) -> dict[str, str]:
        # Doctor's own reference and tfhost children share a GPU without starving each
        # other; naive children keep TensorFlow's default so pre-allocation shows.
        if job.step in (Way.ALONE.value, Way.TFHOST.value) and user_growth is None:
            return {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}
        return {}

    with tempfile.TemporaryDirectory(prefix="tfhost-doctor-") as tmp:
        runner = Runner(Path(tmp), jobs=width, timeout_s=timeout_s, env=env, env_for=env_for)
        try:
            return _run(models, runner, common, user_inputs, signature, progress, started)
        finally:
            runner.close()


def _counter(progress: Progress | None, phase: str, total: int) -> Callable[[StepResult], None]:
    done = 0

    def advance(_: StepResult) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(phase, done, total)

    if progress is not None:
        progress(phase, 0, total)
    return advance


def _run(
    models: list[_Model],
    runner: Runner,
    common: Mapping[str, Any],
    user_inputs: str | None,
    signature: str | None,
    progress: Progress | None,
    started: float,
) -> Diagnosis:
    alone_jobs = [
        Job(
            Way.ALONE.value,
            [
                {
                    "name": m.name,
                    "path": str(m.path),
                    "version": None,
                    "signature": signature,
                    "user_inputs": user_inputs,
                }
            ],
            tag=m.name,
        )
        for m in models
    ]
    alone_results = runner.run_all(
        alone_jobs, common, done=_counter(progress, "loading each model alone", len(models))
    )
    for model, result in zip(models, alone_results, strict=True):
        _read_alone(model, result)
    gpus = max((int(r.start_info().get("gpus", 0)) for r in alone_results), default=0)

    ready = [m for m in models if m.outputs is not None]
    together: list[tuple[Way, Job]] = []
    for way in (*NAIVE_WAYS, Way.TFHOST):
        members = [m for m in ready if way is Way.TFHOST or m.format in _APPLIES[way]]
        if members:
            together.append((way, Job(way.value, [_together_entry(m, way) for m in members])))
    # On a GPU, a naive child keeps TensorFlow's default pre-allocation: it would starve
    # any child running beside it, so the together phase runs one child at a time there.
    together_results = runner.run_all(
        [job for _, job in together],
        common,
        parallel=1 if gpus else None,
        done=_counter(progress, "loading the models together", len(together)),
    )
    results = {way: result for (way, _), result in zip(together, together_results, strict=True)}

    collisions = _collisions(models)
    verdicts: list[Verdict] = []
    for model in models:
        assert model.alone is not None
        verdicts.append(model.alone)
        for way in (*NAIVE_WAYS, Way.TFHOST):
            verdicts.append(_verdict(model, way, results.get(way), models, collisions))
    exit_code = _exit_code(verdicts)
    steps = [
        StepRun(r.job.step, r.job.model_names, r.wall_s, r.import_s, r.returncode)
        for r in [*alone_results, *together_results]
    ]
    return Diagnosis(
        models=[m.report for m in models],
        verdicts=verdicts,
        collisions=collisions,
        summary=_summary(verdicts, exit_code, len(models)),
        recommendations=causes.recommendations(verdicts, exit_code),
        notes=_notes(verdicts, together_results),
        exit_code=exit_code,
        environment=_environment(alone_results, runner.jobs, gpus),
        steps=steps,
        elapsed_s=time.monotonic() - started,
    )


def _together_entry(model: _Model, way: Way) -> dict[str, Any]:
    entry = {
        "name": model.name,
        "format": None if model.format is None else model.format.value,
        "signature": model.signature,
        "inputs": model.inputs_file,
        "outputs": model.output_names,
    }
    if way is Way.TFHOST:
        # tfhost gets what the user would give it: the path and the version found there.
        return {**entry, "path": str(model.path), "version": model.version}
    return {**entry, "path": model.artifact_path}


def _error_of(events: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return next((e for e in events if e["event"] == "error"), None)


def _read_alone(model: _Model, result: StepResult) -> None:
    events = result.for_model(model.name)
    detected = next((e for e in events if e["event"] == "detected"), None)
    loaded = next((e for e in events if e["event"] == "loaded"), None)
    chosen = next((e for e in events if e["event"] == "inputs"), None)
    ran = next((e for e in events if e["event"] == "ran"), None)
    if detected is not None:
        model.format = Format(detected["format"])
        model.artifact_path = detected["path"]
        model.version = detected["version"]
        model.variables = tuple(detected.get("variables", ()))
        model.ops = tuple(detected.get("ops", ()))
        model.signature_ops = tuple(detected.get("signature_ops", ()))
    if chosen is not None:
        model.signature = chosen["signature"]
        model.inputs_file = chosen["file"]
        model.output_names = list(chosen["outputs"])
    model.report = ModelReport(
        name=model.name,
        path=str(model.path),
        format=None if detected is None else detected["format"],
        version=None if detected is None else detected["version"],
        versions=() if detected is None else tuple(detected["versions"]),
        written_by={} if detected is None else dict(detected.get("written_by", {})),
        signature=model.signature,
        signatures={} if loaded is None else dict(loaded.get("signatures", {})),
        inputs=model.report.inputs if chosen is None else str(chosen["source"]),
        needs={"custom_objects": [], "ops": []}
        if detected is None
        else {"custom_objects": [], "ops": [], **detected.get("needs", {})},
    )
    if ran is not None:
        model.outputs = load_arrays(Path(ran["outputs"]))
        model.alone = Verdict(model.name, Way.ALONE, Outcome.OK)
        return
    error = _error_of(events)
    if error is not None:
        cause = _error_cause(error, Way.ALONE, model.format)
        model.alone = Verdict(
            model.name, Way.ALONE, Outcome.ERROR, cause, error["error"]["message"]
        )
        return
    model.alone = Verdict(model.name, Way.ALONE, Outcome.ERROR, *_ended_early(result, model.name))


def _error_cause(event: Mapping[str, Any], way: Way, fmt: Format | None) -> Cause:
    error = event["error"]
    return causes.error(
        CauseKind(error["kind"]), error.get("names", ()), error["message"], way=way, fmt=fmt
    )


def _ended_early(result: StepResult, model: str) -> tuple[Cause, str]:
    """Why ``model`` has no result from a child that did not finish."""
    how = result.how_it_ended()
    busy = result.in_flight()
    detail = result.log_tail.strip().splitlines()[-12:] if result.log_tail.strip() else []
    text = "\n".join(detail)
    if busy is None or busy[0] == model:
        stage = busy[1] if busy else "starting up for"
        return causes.ended_early(how, stage, result.timed_out), text
    culprit, stage = busy
    return causes.not_reached(how, culprit, stage, result.timed_out), text


def _verdict(
    model: _Model,
    way: Way,
    result: StepResult | None,
    models: Sequence[_Model],
    collisions: Sequence[Collision],
) -> Verdict:
    name = model.name
    if way is not Way.TFHOST and model.format is not None and model.format not in _APPLIES[way]:
        return Verdict(
            name,
            way,
            Outcome.NOT_APPLICABLE,
            Cause(CauseKind.NOT_APPLICABLE, causes.NOT_APPLICABLE_WHY[way]),
        )
    if model.outputs is None:
        alone = None if model.alone is None else model.alone.cause
        if way is Way.TFHOST:
            return Verdict(name, way, Outcome.ERROR, causes.tfhost_cannot(alone))
        return Verdict(name, way, Outcome.NOT_RUN, causes.fails_alone(alone))
    assert result is not None  # a model that ran alone is in every applicable step
    events = result.for_model(name)
    ran = next((e for e in events if e["event"] == "ran"), None)
    if ran is None:
        error = _error_of(events)
        if error is None:
            cause, detail = _ended_early(result, name)
            return Verdict(name, way, Outcome.ERROR, cause, detail)
        cause = _error_cause(error, way, model.format)
        counts = not (way is Way.GRAPH_RECIPE and cause.kind is CauseKind.OUT_OF_SCOPE)
        return Verdict(name, way, Outcome.ERROR, cause, error["error"]["message"], counts=counts)
    got = load_arrays(Path(ran["outputs"]))
    match = compare(model.outputs, got)
    if match.equal:
        return Verdict(name, way, Outcome.OK, max_abs_diff=match.max_abs_diff)
    same_as = next(
        (
            other.name
            for other in models
            if other is not model
            and other.outputs is not None
            and compare(other.outputs, got).equal
        ),
        None,
    )
    explained = None
    if way is Way.SHARED_GRAPH and model.format is not None:
        explained = causes.collision(name, collisions, model.format, same_as)
    cause = explained or causes.mismatch(match.max_abs_diff, match.detail, same_as)
    return Verdict(name, way, Outcome.WRONG, cause, match.detail, same_as, match.max_abs_diff)


def _collisions(models: Sequence[_Model]) -> list[Collision]:
    """Variable and op names found in more than one graph-mode artifact."""
    owners: dict[str, list[str]] = {}
    variables: set[str] = set()
    fed: set[str] = set()
    for model in models:
        if model.format is None or not model.format.graph_mode:
            continue
        variables.update(model.variables)
        fed.update(model.signature_ops)
        for node in {*model.variables, *model.ops}:
            owners.setdefault(node, []).append(model.name)
    shared = [(n, m) for n, m in owners.items() if len(m) > 1]

    def rank(name: str) -> tuple[int, str]:
        # What explains the wrong answers first: variables, then the tensors fed and
        # fetched by name, then top-level ops, then the rest (save/restore plumbing).
        order = 0 if name in variables else 1 if name in fed else 2 if "/" not in name else 3
        return order, name

    shared.sort(key=lambda item: rank(item[0]))
    return [Collision(n, "variable" if n in variables else "op", tuple(m)) for n, m in shared]


def _exit_code(verdicts: Sequence[Verdict]) -> int:
    if any(v.way is Way.TFHOST and v.outcome is not Outcome.OK for v in verdicts):
        return 2
    if any(
        v.way.naive and v.counts and v.outcome in (Outcome.WRONG, Outcome.ERROR) for v in verdicts
    ):
        return 1
    return 0


def _summary(verdicts: Sequence[Verdict], exit_code: int, count: int) -> str:
    if exit_code == 2:
        failing = [v for v in verdicts if v.way is Way.TFHOST and v.outcome is not Outcome.OK]
        reasons = "; ".join(
            f"{v.model}: {v.cause.summary if v.cause else v.outcome.value}" for v in failing
        )
        return f"tfhost cannot load or match {_count(len(failing), 'model')} of {count}. {reasons}"
    if exit_code == 1:
        bad = [
            v
            for v in verdicts
            if v.way.naive and v.counts and v.outcome in (Outcome.WRONG, Outcome.ERROR)
        ]
        wrong = sum(v.outcome is Outcome.WRONG for v in bad)
        errors = len(bad) - wrong
        hit = len({v.model for v in bad})
        return (
            f"Loading together the naive ways fails for {_count(hit, 'model')} of {count} "
            f"({_count(wrong, 'wrong answer')}, {_count(errors, 'error')}); tfhost loads "
            f"every model and matches every alone answer."
        )
    return (
        f"Loaded together the naive ways, {'the' if count == 1 else f'all {count}'} "
        f"{'model returns its' if count == 1 else 'models return their'} alone answers; "
        f"tfhost serves {'it' if count == 1 else 'them'} correctly too."
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _notes(verdicts: Sequence[Verdict], results: Sequence[StepResult]) -> list[str]:
    notes = []
    if any(not v.counts for v in verdicts):
        notes.append(
            "Way (iii) is the popular fix, not a way of loading together: its 'out of scope' "
            "error happens to every SavedModel with variables, alone or not, so it is reported but "
            "does not change the exit status."
        )
    for result in results:
        for event in result.events:
            if event["event"] == "gpu" and event["total_mib"]:
                used, total = int(event["used_mib"]), int(event["total_mib"])
                if used > total // 2:
                    notes.append(
                        f"GPU: in {result.job.step}, loading the first model "
                        f"({event['model']}) made TensorFlow reserve {used} of {total} MiB of "
                        f"GPU memory; a second process on this GPU would run out of memory."
                    )
    return notes


def _package_version(*names: str) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _environment(results: Sequence[StepResult], jobs: int, gpus: int) -> dict[str, Any]:
    start = next((r.start_info() for r in results if r.start_info()), {})
    return {
        "tfhost": _package_version("tfhost"),
        "tensorflow": start.get("tensorflow") or _package_version("tensorflow", "tensorflow-cpu"),
        "keras": start.get("keras") or _package_version("keras"),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "jobs": jobs,
        "gpus": gpus,
    }
