"""One doctor step in a fresh process: ``python -m tfhost.diagnosis.child JOB.json``.

The job file names the step (``alone``, a naive way, or ``tfhost``), the models, and
where inputs and outputs live (``.npz`` files). The child reports as it goes, one JSON
object per line appended to the job's events file and flushed at once, so when the
process crashes or is killed the parent still knows which model it was working on and
keeps every result reached before.

Events: ``start`` (import time, versions), ``detected`` (alone only), ``loading``,
``loaded``, ``inputs`` (alone only), ``running``, ``ran``, ``error`` (with ``stage`` and a
described ``error``), ``gpu``, ``done``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from tfhost.cells.lifeline import die_with_parent
from tfhost.diagnosis.core import resolve_custom_object
from tfhost.diagnosis.inputs import (
    load_arrays,
    make_inputs,
    read_user_file,
    save_arrays,
    user_inputs,
)
from tfhost.diagnosis.verdicts import CauseKind
from tfhost.errors import (
    InputError,
    LoadError,
    MissingCustomObject,
    MissingOp,
    ModelError,
    ResourceExhausted,
    TfhostError,
)
from tfhost.specs import DEFAULT_SIGNATURE

# What TensorFlow and Keras say (never tfhost: its errors say what they are by class).
_OUT_OF_SCOPE = "is out of scope and cannot be used here"
_OUT_OF_SCOPE_TENSOR = re.compile(r"<tf\.Tensor '([^']+)'")
_KERAS3_LEGACY = ("legacy SavedModel format is not supported", "File format not supported")
_OOM = ("OOM when allocating", "CUDA_ERROR_OUT_OF_MEMORY", "out of memory")


class Events:
    """The append-only report of a step. Every line is flushed before work goes on."""

    def __init__(self, path: Path) -> None:
        self._file: TextIO = path.open("a", encoding="utf-8", buffering=1)
        self._started = time.perf_counter()

    def emit(self, event: str, **fields: Any) -> None:
        # ``t``: seconds since the child began to report, for timing each stage.
        line = {"event": event, "t": round(time.perf_counter() - self._started, 4), **fields}
        self._file.write(json.dumps(line, default=str) + "\n")
        self._file.flush()


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def recognise(
    exc: BaseException, *, gpus: int = 0, earlier_loads: int = 0
) -> tuple[CauseKind, list[str]]:
    """The kind of cause doctor recognises in ``exc``, and the names involved.

    A tfhost error says what it is by its class and fields (``MissingOp.op``,
    ``MissingCustomObject.object_name``, ``ModelError.type_name``). Only TensorFlow's and
    Keras' own exceptions are read for their words: what the naive ways raise, and what a
    tfhost error was raised from (a load that failed in TensorFlow).
    """
    from tfhost.formats.common import missing_object, missing_op

    out_of_memory = CauseKind.GPU_PREALLOCATED if gpus and earlier_loads else CauseKind.ERROR
    if isinstance(exc, MissingOp):
        return CauseKind.MISSING_OP, [exc.op]
    if isinstance(exc, MissingCustomObject):
        return CauseKind.MISSING_CUSTOM_OBJECT, [exc.object_name]
    if isinstance(exc, InputError):
        return CauseKind.BAD_INPUTS, []
    if isinstance(exc, ResourceExhausted) or (
        isinstance(exc, ModelError) and exc.type_name == "ResourceExhaustedError"
    ):
        return out_of_memory, []
    foreign = [e for e in _chain(exc) if not isinstance(e, TfhostError)]
    text = "\n".join(str(e) for e in foreign)
    if op := missing_op(text):
        return CauseKind.MISSING_OP, [op]
    if _OUT_OF_SCOPE in text:
        tensor = _OUT_OF_SCOPE_TENSOR.search(text)
        return CauseKind.OUT_OF_SCOPE, [tensor.group(1)] if tensor else []
    if any(marker in text for marker in _KERAS3_LEGACY):
        return CauseKind.UNREADABLE_FORMAT, []
    if name := missing_object(text):
        return CauseKind.MISSING_CUSTOM_OBJECT, [name]
    if any(marker in text for marker in _OOM) or any(
        type(e).__name__ == "ResourceExhaustedError" for e in foreign
    ):
        return out_of_memory, []
    # formats/keras.py's "install tf_keras" LoadError has no field of its own yet: the one
    # tfhost message still read for a word.
    if isinstance(exc, LoadError) and "tf_keras" in exc.message:
        return CauseKind.UNREADABLE_FORMAT, []
    return CauseKind.ERROR, []


def describe(exc: BaseException, *, gpus: int = 0, earlier_loads: int = 0) -> dict[str, Any]:
    """An exception as JSON: its class, its tfhost ``code`` (None for a foreign exception),
    its message, and the kind of cause doctor recognises with the names involved."""
    from tfhost.formats.common import first_line

    kind, names = recognise(exc, gpus=gpus, earlier_loads=earlier_loads)
    if isinstance(exc, TfhostError):
        code: str | None = exc.code.value
        message = exc.message
    else:
        code, message = None, f"{type(exc).__name__}: {first_line(str(exc))}"
    return {
        "type": type(exc).__name__,
        "code": code,
        "message": message[:2000],
        "kind": kind.value,
        "names": names,
    }


def gpu_memory_mib() -> tuple[int, int] | None:
    """(MiB this process holds on the GPUs, MiB they have), from nvidia-smi; None if unknown."""
    import subprocess

    try:
        apps = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        total = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    used = sum(
        int(fields[1])
        for line in apps.splitlines()
        if len(fields := [f.strip() for f in line.split(",")]) == 2
        and fields[0] == str(os.getpid())
        and fields[1].isdigit()
    )
    capacity = sum(int(v) for v in total.split() if v.strip().isdigit())
    return used, capacity


class Step:
    """What every step shares: the job, its events, custom objects, inputs and outputs."""

    def __init__(self, job: Mapping[str, Any], events: Events, gpus: int) -> None:
        self.job = job
        self.events = events
        self.gpus = gpus
        self.dir = Path(job["dir"])
        self.models: list[dict[str, Any]] = list(job["models"])
        self.preload: tuple[str, ...] = tuple(job.get("preload", ()))
        self.custom_object_specs: dict[str, str] = dict(job.get("custom_objects", {}))
        self.custom_objects: dict[str, Any] = {}
        self.loads = 0  # models loaded so far in this process

    def prepare(self) -> bool:
        """Import the user's modules and custom objects; on failure every model fails."""
        try:
            if self.preload:
                from tfhost.formats.common import preload

                preload("doctor", self.preload)
            self.custom_objects = {
                name: resolve_custom_object(spec) for name, spec in self.custom_object_specs.items()
            }
        except Exception as exc:
            for model in self.models:
                self.fail(model["name"], "preload", exc)
            return False
        return True

    def fail(self, model: str, stage: str, exc: BaseException) -> None:
        self.events.emit(
            "error",
            model=model,
            stage=stage,
            error=describe(exc, gpus=self.gpus, earlier_loads=self.loads),
        )

    def loaded(self, model: str, **fields: Any) -> None:
        self.loads += 1
        self.events.emit("loaded", model=model, **fields)
        if self.gpus and self.loads == 1 and (memory := gpu_memory_mib()) is not None:
            self.events.emit("gpu", model=model, used_mib=memory[0], total_mib=memory[1])

    def inputs(self, model: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return load_arrays(Path(model["inputs"]))

    def ran(self, model: str, outputs: Mapping[str, Any]) -> None:
        path = self.dir / f"{self.job['step']}-{model}.npz"
        save_arrays(path, {k: np.asarray(v) for k, v in outputs.items()})
        self.events.emit("ran", model=model, outputs=str(path))

    def each(
        self, stage: str, work: Callable[[dict[str, Any]], None], only: set[str] | None = None
    ) -> set[str]:
        """Run ``work`` per model, reporting each failure; the models that succeeded."""
        succeeded = set()
        for model in self.models:
            name = model["name"]
            if only is not None and name not in only:
                continue
            self.events.emit("loading" if stage == "load" else "running", model=name)
            try:
                work(model)
            except Exception as exc:
                self.fail(name, stage, exc)
            else:
                succeeded.add(name)
        return succeeded


def run_alone(step: Step) -> None:
    """Detect, describe, load and run one model: the reference every other way is held to."""
    from tfhost import formats
    from tfhost.inspection import graph_names, needs, written_by
    from tfhost.specs import LoadOptions
    from tfhost.validation import check_inputs

    (model,) = step.models
    name = model["name"]
    try:
        artifact = formats.detect(model["path"], model.get("version"))
    except Exception as exc:
        step.fail(name, "detect", exc)
        return
    facts: dict[str, Any] = {}
    for key, read in (("written_by", written_by), ("needs", lambda a: needs(a).to_dict())):
        try:
            facts[key] = read(artifact)
        except Exception:  # a fact that cannot be read is left out, never fatal
            facts[key] = {}
    try:
        names = graph_names(artifact)
    except Exception:
        names = None
    step.events.emit(
        "detected",
        model=name,
        format=artifact.format.value,
        version=artifact.version,
        versions=list(artifact.versions),
        path=str(artifact.path),
        variables=[] if names is None else list(names.variables),
        ops=[] if names is None else list(names.ops),
        signature_ops=[] if names is None else list(names.signature_ops),
        **facts,
    )
    if not step.prepare():
        return
    step.events.emit("loading", model=name)
    try:
        servable = formats.load(name, artifact, LoadOptions(step.custom_objects, step.preload, {}))
    except Exception as exc:
        step.fail(name, "load", exc)
        return
    signatures = {k: v.to_dict() for k, v in servable.signatures.items()}
    step.loaded(name, signatures=signatures)
    try:
        methods = _methods(artifact.path)
        signature = choose_signature(servable.signatures, model.get("signature"), methods)
        spec = servable.signatures[signature]
        provided = None
        if model.get("user_inputs"):
            source = str(model["user_inputs"])
            provided = user_inputs(name, spec, read_user_file(Path(source)), source)
        if provided is None:
            source, provided = "generated", make_inputs(spec)
        checked = check_inputs(name, signature, spec, provided, check_shapes=servable.static_shapes)
        path = step.dir / f"inputs-{name}.npz"
        save_arrays(path, checked)
    except Exception as exc:
        step.fail(name, "inputs", exc)
        return
    step.events.emit(
        "inputs",
        model=name,
        signature=signature,
        file=str(path),
        source=source,
        outputs=list(spec.outputs),
    )
    step.events.emit("running", model=name)
    try:
        outputs = servable.run(signature, checked)
    except Exception as exc:
        step.fail(name, "run", exc)
        return
    step.ran(name, outputs)


# Signatures that take serialized tf.Example protos, which doctor cannot make up.
_EXAMPLE_METHODS = frozenset({"tensorflow/serving/classify", "tensorflow/serving/regress"})


def choose_signature(
    signatures: Mapping[str, Any], requested: str | None, methods: Mapping[str, str] | None = None
) -> str:
    """The requested signature, else ``serving_default``, else the first by name, a
    classify or regress one (``methods``: each signature's SignatureDef method) last."""
    if requested is not None:
        if requested not in signatures:
            raise InputError(f"no signature {requested!r}; the model has {sorted(signatures)}")
        return requested
    if DEFAULT_SIGNATURE in signatures:
        return DEFAULT_SIGNATURE
    if not signatures:
        raise InputError("the model has no signature to run")
    known = methods or {}
    return min(signatures, key=lambda name: (known.get(name) in _EXAMPLE_METHODS, name))


def _methods(path: Path) -> dict[str, str]:
    """A SavedModel's SignatureDef methods by signature; empty for other formats."""
    if not path.is_dir():
        return {}
    from tfhost.serve.signature_defs import saved_signature_defs

    try:
        defs = saved_signature_defs(path)
    except Exception:  # an unreadable saved_model.pb: its load already said why
        return {}
    return {} if defs is None else {name: d.method_name for name, d in defs.items()}


def run_tfhost(step: Step) -> None:
    """Every model in one tfhost Host (inline cells, the default), then every prediction."""
    from tfhost.host import Host

    if not step.prepare():
        return
    with Host() as host:

        def load(model: dict[str, Any]) -> None:
            host.load(
                model["name"],
                model["path"],
                version=model.get("version"),
                custom_objects=step.custom_objects,
                preload=step.preload,
            )
            step.loaded(model["name"])

        def predict(model: dict[str, Any]) -> None:
            outputs = host.predict(model["name"], step.inputs(model), signature=model["signature"])
            step.ran(model["name"], outputs)

        loaded = step.each("load", load)
        step.each("run", predict, loaded)


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    # End this child when doctor ends, however it ends (even SIGKILL): no orphans. The
    # runner starts each child from a pool thread that waits for it, so the thread that
    # started it outlives it, as die_with_parent requires.
    die_with_parent(int(job["parent"]))
    events = Events(Path(job["events"]))
    started = time.perf_counter()
    import tensorflow as tf

    import_s = time.perf_counter() - started
    gpus = len(tf.config.list_physical_devices("GPU"))
    keras_version = None
    try:
        from importlib.metadata import version

        keras_version = version("keras")
    except Exception:
        pass
    events.emit(
        "start",
        import_s=import_s,
        tensorflow=tf.__version__,
        keras=keras_version,
        gpus=gpus,
        pid=os.getpid(),
    )
    step = Step(job, events, gpus)
    name = job["step"]
    if name == "alone":
        run_alone(step)
    elif name == "tfhost":
        run_tfhost(step)
    else:
        from tfhost.diagnosis import naive

        naive.run(name, step)
    events.emit("done")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    status = main(sys.argv[1:])
    # Every result is on disk and flushed by now. TensorFlow's teardown at interpreter
    # exit costs about a second per child, a quarter of a child's life: skip it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
