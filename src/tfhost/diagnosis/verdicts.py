"""What doctor found: pure data, no TensorFlow, one JSON shape (``Diagnosis.to_dict``).

A diagnosis is a grid: every model by every way of loading it (alone, the three naive
ways, tfhost), each cell a :class:`Verdict` with an :class:`Outcome` and, when it is not
``ok``, the :class:`Cause` that explains it and the fix.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The JSON document's version: bump when a field changes meaning or disappears.
SCHEMA_VERSION = 1

# A silent mismatch is decided with these tolerances on floating-point outputs; every
# other dtype (integers, booleans, strings) must be equal exactly. Two loaders of the same
# model may fuse ops differently, which moves float results in the last bits only.
FLOAT_RTOL = 1e-5
FLOAT_ATOL = 1e-6


class Way(enum.Enum):
    """How a model is loaded. ``ALONE`` is the reference; ``TFHOST`` is the fix."""

    ALONE = "alone"
    SHARED_GRAPH = "shared_graph"
    LOAD_MODEL = "load_model"
    GRAPH_RECIPE = "graph_recipe"
    TFHOST = "tfhost"

    @property
    def title(self) -> str:
        return _WAY_TITLES[self]

    @property
    def naive(self) -> bool:
        return self in NAIVE_WAYS


_WAY_TITLES = {
    Way.ALONE: "each model alone in a fresh process, with tfhost's loader: the reference",
    Way.SHARED_GRAPH: "(i) TF1 SavedModels and frozen graphs in one default graph and session",
    Way.LOAD_MODEL: "(ii) keras.models.load_model for Keras files, tf.saved_model.load "
    "for the rest",
    Way.GRAPH_RECIPE: "(iii) `with tf.Graph().as_default(): m = tf.saved_model.load(p)`, "
    "m called after the block",
    Way.TFHOST: "all models in one tfhost Host",
}
NAIVE_WAYS = (Way.SHARED_GRAPH, Way.LOAD_MODEL, Way.GRAPH_RECIPE)


class Outcome(enum.Enum):
    OK = "ok"
    WRONG = "wrong answer"  # ran without error but differs from the alone output
    ERROR = "error"  # failed to load or run, crashed, or timed out
    NOT_APPLICABLE = "n/a"  # this way does not open this format
    NOT_RUN = "not run"  # skipped because the model fails alone


class CauseKind(enum.Enum):
    NAME_COLLISION = "name_collision"
    UNREADABLE_FORMAT = "unreadable_format"
    MISSING_CUSTOM_OBJECT = "missing_custom_object"
    MISSING_OP = "missing_op"
    OUT_OF_SCOPE = "out_of_scope"
    GPU_PREALLOCATED = "gpu_preallocated"
    CRASH = "crash"
    TIMEOUT = "timeout"
    BAD_INPUTS = "bad_inputs"
    MISMATCH = "mismatch"
    NOT_APPLICABLE = "not_applicable"
    FAILS_ALONE = "fails_alone"
    ERROR = "error"


@dataclass(frozen=True)
class Cause:
    """Why a verdict is not ``ok``: one line for people, the names involved, the fix."""

    kind: CauseKind
    summary: str
    fix: str = ""
    names: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "summary": self.summary,
            "fix": self.fix,
            "names": list(self.names),
        }


@dataclass(frozen=True)
class Verdict:
    """One model loaded one way.

    ``counts`` says whether this verdict takes part in the exit status: the recipe's
    "out of scope" error does not, because it happens to every SavedModel with variables,
    alone or not.
    ``same_as`` names the model whose alone answer a wrong answer equals.
    """

    model: str
    way: Way
    outcome: Outcome
    cause: Cause | None = None
    detail: str = ""
    same_as: str | None = None
    max_abs_diff: float | None = None
    counts: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "way": self.way.value,
            "outcome": self.outcome.value,
            "cause": None if self.cause is None else self.cause.to_dict(),
            "detail": self.detail,
            "same_as": self.same_as,
            "max_abs_diff": self.max_abs_diff,
            "counts": self.counts,
        }


@dataclass(frozen=True)
class Collision:
    """A variable or op name found in more than one graph-mode artifact."""

    name: str
    kind: str  # "variable" or "op"
    models: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "models": list(self.models)}


@dataclass(frozen=True)
class ModelReport:
    """What detection and the alone run found for one artifact."""

    name: str
    path: str
    format: str | None = None
    version: int | None = None
    versions: tuple[int, ...] = ()
    written_by: Mapping[str, str] = field(default_factory=dict)
    signature: str | None = None
    signatures: Mapping[str, Any] = field(default_factory=dict)  # SignatureSpec.to_dict()
    inputs: str = "generated"  # "generated" or the --inputs file
    needs: Mapping[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "format": self.format,
            "version": self.version,
            "versions": list(self.versions),
            "written_by": dict(self.written_by),
            "signature": self.signature,
            "signatures": dict(self.signatures),
            "inputs": self.inputs,
            "needs": dict(self.needs),
        }


@dataclass(frozen=True)
class StepRun:
    """One child process: which step, for which models, how long, how it ended."""

    step: str
    models: tuple[str, ...]
    wall_s: float
    import_s: float | None  # TensorFlow's own import time inside the child
    returncode: int | None  # None when it was killed for running past its timeout

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "models": list(self.models),
            "wall_s": round(self.wall_s, 3),
            "import_s": None if self.import_s is None else round(self.import_s, 3),
            "returncode": self.returncode,
        }


@dataclass(frozen=True)
class Diagnosis:
    """Everything doctor found, and the exit status it implies (0, 1 or 2)."""

    models: Sequence[ModelReport]
    verdicts: Sequence[Verdict]
    collisions: Sequence[Collision]
    summary: str
    recommendations: Sequence[str]
    notes: Sequence[str]
    exit_code: int
    environment: Mapping[str, Any]
    steps: Sequence[StepRun]
    elapsed_s: float

    def verdict(self, model: str, way: Way) -> Verdict:
        for verdict in self.verdicts:
            if verdict.model == model and verdict.way is way:
                return verdict
        raise KeyError((model, way))

    def ways(self) -> list[Way]:
        """The ways that apply to at least one model, in table order."""
        used = {v.way for v in self.verdicts if v.outcome is not Outcome.NOT_APPLICABLE}
        return [w for w in Way if w in used or w in (Way.ALONE, Way.TFHOST)]

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Diagnosis:
        """The diagnosis a ``to_dict`` document (``--json`` output) describes."""

        def cause(data: Mapping[str, Any] | None) -> Cause | None:
            if data is None:
                return None
            return Cause(
                CauseKind(data["kind"]), data["summary"], data["fix"], tuple(data["names"])
            )

        return cls(
            models=[
                ModelReport(
                    name=m["name"],
                    path=m["path"],
                    format=m["format"],
                    version=m["version"],
                    versions=tuple(m["versions"]),
                    written_by=dict(m["written_by"]),
                    signature=m["signature"],
                    signatures=dict(m["signatures"]),
                    inputs=m["inputs"],
                    needs={k: list(v) for k, v in m["needs"].items()},
                )
                for m in document["models"]
            ],
            verdicts=[
                Verdict(
                    v["model"],
                    Way(v["way"]),
                    Outcome(v["outcome"]),
                    cause(v["cause"]),
                    v["detail"],
                    v["same_as"],
                    v["max_abs_diff"],
                    v["counts"],
                )
                for v in document["verdicts"]
            ],
            collisions=[
                Collision(c["name"], c["kind"], tuple(c["models"])) for c in document["collisions"]
            ],
            summary=document["summary"],
            recommendations=list(document["recommendations"]),
            notes=list(document["notes"]),
            exit_code=int(document["exit_code"]),
            environment=dict(document["environment"]),
            steps=[
                StepRun(s["step"], tuple(s["models"]), s["wall_s"], s["import_s"], s["returncode"])
                for s in document["steps"]
            ],
            elapsed_s=float(document["elapsed_s"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "exit_code": self.exit_code,
            "summary": self.summary,
            "comparison": {
                "float_rtol": FLOAT_RTOL,
                "float_atol": FLOAT_ATOL,
                "exact": "integers, booleans and strings compare exactly; NaN equals NaN",
            },
            "environment": dict(self.environment),
            "models": [m.to_dict() for m in self.models],
            "ways": [{"id": w.value, "title": w.title, "naive": w.naive} for w in Way],
            "verdicts": [v.to_dict() for v in self.verdicts],
            "collisions": [c.to_dict() for c in self.collisions],
            "recommendations": list(self.recommendations),
            "notes": list(self.notes),
            "steps": [s.to_dict() for s in self.steps],
            "elapsed_s": round(self.elapsed_s, 3),
        }


def _obj(properties: dict[str, Any], *, extra: bool = False) -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(properties),
        "properties": properties,
        "additionalProperties": extra,
    }


_STR: dict[str, Any] = {"type": "string"}
_INT: dict[str, Any] = {"type": "integer"}
_NUM: dict[str, Any] = {"type": "number"}
_BOOL: dict[str, Any] = {"type": "boolean"}
_STR_LIST: dict[str, Any] = {"type": "array", "items": _STR}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


_CAUSE = _obj(
    {
        "kind": {"type": "string", "enum": [k.value for k in CauseKind]},
        "summary": _STR,
        "fix": _STR,
        "names": _STR_LIST,
    }
)

# The documented shape of ``tfhost doctor --json`` (JSON Schema, draft 2020-12 subset).
DIAGNOSIS_SCHEMA: dict[str, Any] = _obj(
    {
        "schema_version": {"type": "integer", "enum": [SCHEMA_VERSION]},
        "exit_code": {"type": "integer", "enum": [0, 1, 2]},
        "summary": _STR,
        "comparison": _obj({"float_rtol": _NUM, "float_atol": _NUM, "exact": _STR}),
        "environment": {"type": "object"},
        "models": {
            "type": "array",
            "items": _obj(
                {
                    "name": _STR,
                    "path": _STR,
                    "format": _nullable(_STR),
                    "version": _nullable(_INT),
                    "versions": {"type": "array", "items": _INT},
                    "written_by": {"type": "object", "additionalProperties": _STR},
                    "signature": _nullable(_STR),
                    "signatures": {"type": "object"},
                    "inputs": _STR,
                    "needs": _obj({"custom_objects": _STR_LIST, "ops": _STR_LIST}),
                }
            ),
        },
        "ways": {
            "type": "array",
            "items": _obj(
                {
                    "id": {"type": "string", "enum": [w.value for w in Way]},
                    "title": _STR,
                    "naive": _BOOL,
                }
            ),
        },
        "verdicts": {
            "type": "array",
            "items": _obj(
                {
                    "model": _STR,
                    "way": {"type": "string", "enum": [w.value for w in Way]},
                    "outcome": {"type": "string", "enum": [o.value for o in Outcome]},
                    "cause": {"oneOf": [{"type": "null"}, _CAUSE]},
                    "detail": _STR,
                    "same_as": _nullable(_STR),
                    "max_abs_diff": _nullable(_NUM),
                    "counts": _BOOL,
                }
            ),
        },
        "collisions": {
            "type": "array",
            "items": _obj(
                {
                    "name": _STR,
                    "kind": {"type": "string", "enum": ["variable", "op"]},
                    "models": _STR_LIST,
                }
            ),
        },
        "recommendations": _STR_LIST,
        "notes": _STR_LIST,
        "steps": {
            "type": "array",
            "items": _obj(
                {
                    "step": _STR,
                    "models": _STR_LIST,
                    "wall_s": _NUM,
                    "import_s": _nullable(_NUM),
                    "returncode": _nullable(_INT),
                }
            ),
        },
        "elapsed_s": _NUM,
    }
)
