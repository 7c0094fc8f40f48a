"""Causes in words: what went wrong, the names involved, and how to fix it.

Pure functions from what a child reported (a recognised kind, names, a message) to a
:class:`Cause`, and from the causes found to the recommendations. The words live here
and only here, so the table, the JSON and the Markdown say the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tfhost.diagnosis.verdicts import Cause, CauseKind, Collision, Verdict, Way
from tfhost.specs import Format

_TFHOST_GRAPH = (
    "give each graph-mode model its own tf.Graph and tf.compat.v1.Session; tfhost does "
    "this for every TF1 SavedModel and frozen graph: Host.load(name, path), no option needed"
)


def shorten(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def collision(
    model: str, collisions: Iterable[Collision], fmt: Format, same_as: str | None
) -> Cause | None:
    """The cause of a wrong answer in the shared graph, if ``model`` shares names there."""
    mine = [c for c in collisions if model in c.models]
    if not mine:
        return None
    variables = [c.name for c in mine if c.kind == "variable"]
    ops = [c.name for c in mine if c.kind == "op"]
    others = sorted({m for c in mine for m in c.models if m != model})
    parts = []
    if variables:
        parts.append(f"variables {shorten(variables)}")
    if ops:
        parts.append(f"ops {shorten(ops)}")
    if fmt is Format.TF1_SAVED_MODEL:
        how = (
            "the later import was renamed (w becomes w_1), but signatures and checkpoint "
            "restores still use the original names, so the models read and overwrite "
            "each other's variables"
        )
    else:
        how = (
            "the later import was renamed (x becomes x_1), but feeding and fetching by "
            "the original tensor names runs the first model's ops"
        )
    answer = f"; it returns {same_as}'s answer" if same_as else ""
    return Cause(
        CauseKind.NAME_COLLISION,
        f"silent wrong answer: it shares {' and '.join(parts)} with {', '.join(others)} in "
        f"the one default graph; {how}{answer}",
        _TFHOST_GRAPH,
        tuple(variables + ops),
    )


def mismatch(max_abs_diff: float | None, detail: str, same_as: str | None) -> Cause:
    answer = f"; it returns {same_as}'s answer" if same_as else ""
    diff = "" if max_abs_diff is None else f" (max |difference| {max_abs_diff:.6g})"
    return Cause(
        CauseKind.MISMATCH,
        f"silent wrong answer{diff}: {detail}{answer}",
        "load the model alone or with tfhost, which matches its alone answer",
    )


def _unreadable(way: Way, fmt: Format | None, message: str) -> Cause:
    if way is Way.LOAD_MODEL and fmt is Format.KERAS_SAVED_MODEL:
        return Cause(
            CauseKind.UNREADABLE_FORMAT,
            "Keras 3's keras.models.load_model cannot read a tf.keras 2 SavedModel directory",
            "load it with tf.saved_model.load (or keras.layers.TFSMLayer), or with "
            "tf_keras.models.load_model after pip install 'tfhost[legacy]'; tfhost serves it "
            "through its SavedModel signatures with no option",
        )
    return Cause(
        CauseKind.UNREADABLE_FORMAT,
        f"the loader cannot read this artifact: {message}",
        "a tf.keras 2 file needs tf_keras: pip install 'tfhost[legacy]'",
    )


def error(
    kind: CauseKind, names: Sequence[str], message: str, *, way: Way, fmt: Format | None
) -> Cause:
    """The cause of a load or run failure the child recognised as ``kind``."""
    names = tuple(names)
    if kind is CauseKind.UNREADABLE_FORMAT:
        return _unreadable(way, fmt, message)
    if kind is CauseKind.MISSING_CUSTOM_OBJECT:
        name = names[0] if names else "?"
        short = name.split(">")[-1]
        return Cause(
            kind,
            f"needs the custom object {name!r}, which was not given",
            f"tfhost doctor --custom-objects your_module:{short} (or --preload your_module "
            f"when it registers {short} with @keras.saving.register_keras_serializable); in "
            f"Python: Host.load(name, path, custom_objects={{{short!r}: {short}}}) or "
            f"preload=['your_module']",
            names,
        )
    if kind is CauseKind.MISSING_OP:
        return Cause(
            kind,
            f"the graph uses op {shorten(names)}, which is not registered in this TensorFlow",
            "load the library that defines it first: tfhost doctor --preload "
            "path/to/ops.so; in Python: Host.load(name, path, preload=['path/to/ops.so'])",
            names,
        )
    if kind is CauseKind.OUT_OF_SCOPE:
        return Cause(
            kind,
            "TensorFlow 'out of scope' error: `with tf.Graph().as_default()` created the "
            f"model's variables ({shorten(names) or 'its tensors'}) in a graph that is no "
            "longer the default when the model is called after the block",
            "drop the recipe: tf.saved_model.load in eager mode keeps TF2 models apart on its "
            "own, and tfhost gives graph-mode models their own graph and session",
            names,
        )
    if kind is CauseKind.GPU_PREALLOCATED:
        return Cause(
            kind,
            "out of GPU memory: an earlier model made TensorFlow pre-allocate the GPU",
            "set TF_FORCE_GPU_ALLOW_GROWTH=true (or tf.config.experimental.set_memory_growth),"
            " or give each model its own worker with a cap: Host(HostSettings(worker="
            "WorkerSettings(gpu_memory_limit_mib=...))) and Host.load(..., "
            "isolation='process')",
        )
    if kind is CauseKind.BAD_INPUTS:
        return Cause(
            kind,
            f"the inputs do not suit this model: {message}",
            "pass your own inputs: --inputs FILE.npz with one array per input name "
            "(or MODEL/INPUT for one model)",
        )
    return Cause(CauseKind.ERROR, message)


def ended_early(how: str, stage: str, timeout: bool) -> Cause:
    """This model's process crashed or hung while it was being loaded or run."""
    kind = CauseKind.TIMEOUT if timeout else CauseKind.CRASH
    return Cause(
        kind,
        f"the process {how} while {stage} this model",
        "serve it with isolation='process' so a crash or a hang takes down only its worker:"
        " Host.load(name, path, isolation='process')"
        + ("; raise doctor's --timeout if it is only slow" if timeout else ""),
    )


def not_reached(how: str, culprit: str, stage: str, timeout: bool) -> Cause:
    """Another model took the shared process down before this one got its turn."""
    return Cause(
        CauseKind.TIMEOUT if timeout else CauseKind.CRASH,
        f"not reached: the shared process {how} while {stage} model {culprit!r}",
        f"fix or isolate {culprit!r} (isolation='process') and this model runs",
        (culprit,),
    )


def fails_alone(alone: Cause | None) -> Cause:
    what = alone.summary if alone else "it fails when loaded alone"
    return Cause(CauseKind.FAILS_ALONE, f"not loaded together: it fails alone ({what})")


def tfhost_cannot(alone: Cause | None) -> Cause:
    """tfhost's verdict for a model that fails even alone: the same cause, said plainly."""
    if alone is None:
        return Cause(CauseKind.ERROR, "fails alone, so tfhost cannot serve it either")
    return Cause(
        alone.kind,
        f"fails alone, so tfhost cannot serve it either: {alone.summary}",
        alone.fix,
        alone.names,
    )


NOT_APPLICABLE_WHY = {
    Way.SHARED_GRAPH: "only graph-mode formats (TF1 SavedModel, frozen GraphDef) load into a "
    "default graph",
    Way.LOAD_MODEL: "neither keras load_model nor tf.saved_model.load reads a frozen GraphDef",
    Way.GRAPH_RECIPE: "the recipe calls tf.saved_model.load, which reads SavedModel "
    "directories only",
}


def recommendations(verdicts: Sequence[Verdict], exit_code: int) -> list[str]:
    """What to do, one line per cause found, most important first."""
    kinds: dict[CauseKind, list[Verdict]] = {}
    for verdict in verdicts:
        if verdict.cause is not None:
            kinds.setdefault(verdict.cause.kind, []).append(verdict)
    advice: list[str] = []

    def models(kind: CauseKind) -> str:
        return ", ".join(sorted({v.model for v in kinds[kind]}))

    if CauseKind.MISSING_CUSTOM_OBJECT in kinds:
        names = sorted(
            {
                n
                for v in kinds[CauseKind.MISSING_CUSTOM_OBJECT]
                for n in (v.cause.names if v.cause else ())
            }
        )
        short = [n.split(">")[-1] for n in names]
        advice.append(
            f"Custom objects: pass {', '.join(names)} (needed by "
            f"{models(CauseKind.MISSING_CUSTOM_OBJECT)}): `tfhost doctor --custom-objects "
            f"your_module:{short[0]} ...`, `Host.load(name, path, custom_objects="
            f"{{{short[0]!r}: {short[0]}}})`, or `--preload your_module` / "
            f"`preload=['your_module']` when the module registers them."
        )
    if CauseKind.MISSING_OP in kinds:
        advice.append(
            f"Custom ops: load the library that registers the ops "
            f"{models(CauseKind.MISSING_OP)} use, first: `--preload path/to/ops.so`, "
            f"`Host.load(..., preload=['path/to/ops.so'])`."
        )
    if CauseKind.CRASH in kinds or CauseKind.TIMEOUT in kinds:
        culprits = sorted(
            {
                v.model
                for k in (CauseKind.CRASH, CauseKind.TIMEOUT)
                for v in kinds.get(k, [])
                if v.way is Way.ALONE
            }
        )
        if culprits:
            advice.append(
                f"Isolation: {', '.join(culprits)} take their process down even alone. "
                f"Serve such a model with `Host.load(name, path, isolation='process')`, so "
                f"only its worker goes down, and fix the model."
            )
    if CauseKind.BAD_INPUTS in kinds:
        advice.append(
            f"Inputs: the inputs doctor made up do not suit {models(CauseKind.BAD_INPUTS)}. "
            f"Pass real ones: `--inputs FILE.npz` (keys INPUT, or MODEL/INPUT)."
        )
    if CauseKind.NAME_COLLISION in kinds:
        advice.append(
            f"Name collisions: in one default graph, wrong answers without an error "
            f"({models(CauseKind.NAME_COLLISION)}). Give each graph-mode model its own graph and "
            f"session; tfhost does: `Host.load(name, path)` with the default inline "
            f"isolation, no option needed."
        )
    if CauseKind.UNREADABLE_FORMAT in kinds:
        advice.append(
            f"Loaders: Keras 3's keras.models.load_model cannot read "
            f"{models(CauseKind.UNREADABLE_FORMAT)}. tfhost serves a tf.keras 2 SavedModel "
            f"through its signatures with no option; for tf.keras 2 `.h5` files Keras 3 "
            f"cannot read, install `tfhost[legacy]` (tf_keras)."
        )
    if CauseKind.OUT_OF_SCOPE in kinds:
        advice.append(
            "Do not use the `with tf.Graph().as_default(): tf.saved_model.load(...)` recipe: "
            "the model cannot be called after the block. Load in eager mode, or with tfhost."
        )
    if CauseKind.GPU_PREALLOCATED in kinds:
        advice.append(
            "GPU memory: TensorFlow reserves nearly the whole GPU for the first model. Set "
            "TF_FORCE_GPU_ALLOW_GROWTH=true, or run models in workers with a cap: "
            "`WorkerSettings(gpu_memory_limit_mib=...)` and `isolation='process'`."
        )
    if exit_code < 2:
        advice.append(
            "Isolation: inline (the default) is enough for these models; choose "
            "`isolation='process'` when a model's memory must return to the system on "
            "unload or a crash must be contained."
        )
    return advice
