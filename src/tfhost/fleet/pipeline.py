"""Pipelines: a model made of steps, each step a model the fleet serves on its own.

``[pipelines.caption_a] steps = ["encoder", "decoder_a"]`` serves ``caption_a`` like any
model: its one signature, ``serving_default``, takes the first step's inputs and gives the
last step's outputs (each step runs its own ``serving_default``). A step's inputs take the
previous step's outputs of the same name; ``map = { decoder_a = { h = "embedding" } }``
feeds ``decoder_a``'s input ``h`` with the previous step's output ``embedding`` instead.
Only the previous step's outputs feed a step, so a name is never ambiguous; outputs that
no input takes are dropped.

Why each step is its own servable: the shared encoder is loaded once, by the fleet, as its
own model; every pipeline that names it runs that one servable. A decoder exported next to
a stale copy of the encoder's variables (same names, other values) keeps that copy inside
its own servable -- a TF1 graph in its own ``Graph`` and ``Session``, a TF2 object graph of
its own -- where nothing the pipeline runs reads it. Loading the two artifacts into one
session, the usual hand-rolled composition, restores the stale copy over the real one.

Contract:

1. ``open_pipeline`` acquires a handle on every step, in order, before anything runs (a
   lazy or evicted step is loaded by that acquire, as a request for it would be); the
   handles keep every step's servable loaded -- a hot swap or an unload drains them -- until
   ``PipelineHandle.release``. If any acquire or the wiring fails, the handles already
   taken are released before the error propagates.
2. Wiring is checked against the signatures of the versions acquired, so a step swapped to
   a version with other signatures is checked again on the next request. A step input
   that no previous output feeds, or a ``map`` entry naming an input or output that does
   not exist, is a ``ConfigError`` naming the pipeline, the step, the key
   (``pipelines.NAME.map.STEP.INPUT``) and the names there are. Signatures are unknown
   until a step loads, so this cannot be checked when the config is read; the fleet also
   checks each pipeline once its steps are AVAILABLE and logs what is wrong then.
3. ``check`` is the first step's check: a bad request fails there, an ``InputError`` naming
   the first step's model (and the pipeline), before any step runs. ``run`` runs the steps
   in order under one deadline, fixed when it starts (the earlier of ``deadline`` and
   ``timeout``, else ``request_timeout_s``), passed to every step.
4. A handle's calls are safe from any thread until ``release``, which is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfhost.errors import (
    DeadlineExceeded,
    InputError,
    InternalError,
    NotFound,
    ResourceExhausted,
    TfhostError,
    Unavailable,
)
from tfhost.fleet.config import ConfigError, PipelineConfig
from tfhost.host import Checked, Handle, absolute_deadline
from tfhost.specs import DEFAULT_SIGNATURE, SignatureSpec

__all__ = ["PipelineHandle", "open_pipeline", "wire"]

# Feeds of one step: its input name -> the previous step's output name.
Feeds = Mapping[str, str]


def wire(
    pipeline: PipelineConfig,
    signatures: Sequence[SignatureSpec | None],
    *,
    file: Path | None = None,
) -> tuple[Feeds, ...]:
    """Which previous output feeds each input of every step after the first.

    ``signatures[i]`` is step ``i``'s ``serving_default`` (None: it has none). Returns one
    ``Feeds`` per step after the first; raises ``ConfigError`` (in ``file``) saying what is
    missing and which names there are.
    """
    key = f"pipelines.{pipeline.name}"
    specs: list[SignatureSpec] = []
    for step, spec in zip(pipeline.steps, signatures, strict=True):
        if spec is None:
            raise ConfigError(
                f"pipeline {pipeline.name!r}: step {step!r} has no signature "
                f"{DEFAULT_SIGNATURE!r}, the one a pipeline runs",
                file=file,
                key=f"{key}.steps",
            )
        specs.append(spec)
    feeds: list[Feeds] = []
    for index in range(1, len(pipeline.steps)):
        step, previous = pipeline.steps[index], pipeline.steps[index - 1]
        inputs, outputs = specs[index].inputs, specs[index - 1].outputs
        given = pipeline.map.get(step, {})
        for name in sorted(set(given) - set(inputs)):
            raise ConfigError(
                f"pipeline {pipeline.name!r}: step {step!r} has no input {name!r}; its "
                f"inputs: {sorted(inputs)}",
                file=file,
                key=f"{key}.map.{step}.{name}",
            )
        step_feeds: dict[str, str] = {}
        for name in sorted(inputs):
            source = given.get(name, name)
            if source in outputs:
                step_feeds[name] = source
                continue
            if name in given:
                raise ConfigError(
                    f"pipeline {pipeline.name!r}: step {step!r}'s input {name!r} is mapped "
                    f"to output {source!r}, which step {previous!r} does not have; its "
                    f"outputs: {sorted(outputs)}",
                    file=file,
                    key=f"{key}.map.{step}.{name}",
                )
            hint = next(iter(outputs)) if len(outputs) == 1 else "OUTPUT"
            raise ConfigError(
                f"pipeline {pipeline.name!r}: step {step!r}'s input {name!r} takes step "
                f"{previous!r}'s output of the same name, which it does not have (its "
                f"outputs: {sorted(outputs)}); map it: map = {{ {step} = {{ {name} = "
                f'"{hint}" }} }}',
                file=file,
                key=f"{key}.map.{step}",
            )
        feeds.append(step_feeds)
    return tuple(feeds)


def open_pipeline(
    pipeline: PipelineConfig,
    acquire: Callable[[str], Handle],
    *,
    request_timeout_s: float | None = None,
    file: Path | None = None,
) -> PipelineHandle:
    """A handle on every step of ``pipeline`` (contract 1), wired (contract 2).

    ``acquire(model)`` gives a handle on the version of ``model`` that requests for it
    reach (the fleet's: it loads a lazy or evicted model first). ``request_timeout_s`` is
    the deadline of a call that gives none; ``file`` the config file errors name.
    """
    handles: list[Handle] = []
    try:
        for step in pipeline.steps:
            try:
                handles.append(acquire(step))
            except TfhostError as exc:
                raise _in_pipeline(pipeline.name, exc) from exc
        feeds = wire(
            pipeline,
            [h.signatures.get(DEFAULT_SIGNATURE) for h in handles],
            file=file,
        )
    except BaseException:
        for handle in reversed(handles):
            handle.release()
        raise
    return PipelineHandle(pipeline, handles, feeds, request_timeout_s)


class PipelineHandle:
    """A claim on every step of a pipeline; the same calls as ``Handle``.

    ``steps`` are the steps' handles, in order. Use as a context manager.
    """

    __slots__ = ("_feeds", "_released", "_signature", "_timeout", "pipeline", "steps")

    def __init__(
        self,
        pipeline: PipelineConfig,
        steps: Sequence[Handle],
        feeds: Sequence[Feeds],
        request_timeout_s: float | None,
    ) -> None:
        self.pipeline = pipeline
        self.steps = tuple(steps)
        self._feeds = tuple(feeds)
        self._timeout = request_timeout_s
        first = steps[0].signatures[DEFAULT_SIGNATURE]
        last = steps[-1].signatures[DEFAULT_SIGNATURE]
        self._signature = SignatureSpec(inputs=first.inputs, outputs=last.outputs)
        self._released = False

    @property
    def name(self) -> str:
        return self.pipeline.name

    @property
    def signatures(self) -> Mapping[str, SignatureSpec]:
        return {DEFAULT_SIGNATURE: self._signature}

    def check(self, inputs: Mapping[str, Any], signature: str = DEFAULT_SIGNATURE) -> Checked:
        """``inputs`` checked by the first step (contract 3)."""
        self._check_signature(signature)
        try:
            return self.steps[0].check(inputs, DEFAULT_SIGNATURE)
        except TfhostError as exc:
            raise _in_pipeline(self.name, exc) from exc

    def run(
        self, checked: Checked, *, timeout: float | None = None, deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        """Run every step in order, each on the previous one's outputs, under one deadline."""
        self._check_signature(checked.signature)
        end = self._deadline(timeout, deadline)
        outputs = self.steps[0].run(checked, deadline=end)
        for index, handle in enumerate(self.steps[1:], start=1):
            outputs = handle.run(self._next(index, outputs), deadline=end)
        return outputs

    async def run_async(
        self, checked: Checked, *, timeout: float | None = None, deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        """``run`` with every step on the host's serving threads (``Handle.run_async``)."""
        self._check_signature(checked.signature)
        end = self._deadline(timeout, deadline)
        outputs = await self.steps[0].run_async(checked, deadline=end)
        for index, handle in enumerate(self.steps[1:], start=1):
            outputs = await handle.run_async(self._next(index, outputs), deadline=end)
        return outputs

    def predict(
        self,
        inputs: Mapping[str, Any],
        *,
        signature: str = DEFAULT_SIGNATURE,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> dict[str, np.ndarray]:
        """``run(check(inputs, signature))``."""
        return self.run(self.check(inputs, signature), timeout=timeout, deadline=deadline)

    def metadata(self) -> dict[str, Any]:
        """What a frontend shows for the pipeline: its signature and each step's version."""
        return {
            "model": self.name,
            "version": None,
            "pipeline": [
                {
                    "model": handle.id.model,
                    "version": handle.id.version,
                    "feeds": {} if index == 0 else dict(self._feeds[index - 1]),
                }
                for index, handle in enumerate(self.steps)
            ],
            "signatures": {k: v.to_dict() for k, v in self.signatures.items()},
        }

    def release(self) -> None:
        if not self._released:
            self._released = True
            for handle in reversed(self.steps):
                handle.release()

    def __enter__(self) -> PipelineHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _check_signature(self, signature: str) -> None:
        if signature != DEFAULT_SIGNATURE:
            raise NotFound(
                f"pipeline {self.name!r} has no signature {signature!r}; it has "
                f"{[DEFAULT_SIGNATURE]}"
            )

    def _deadline(self, timeout: float | None, deadline: float | None) -> float | None:
        return absolute_deadline(timeout, deadline, self._timeout)

    def _next(self, index: int, outputs: Mapping[str, np.ndarray]) -> Checked:
        """Step ``index``'s inputs from the previous step's ``outputs``, checked by it."""
        step, previous = self.pipeline.steps[index], self.pipeline.steps[index - 1]
        try:
            fed = {name: outputs[source] for name, source in self._feeds[index - 1].items()}
        except KeyError as exc:
            raise InternalError(
                f"pipeline {self.name!r}: step {previous!r} did not return output {exc}, "
                f"which its signature declares; it returned {sorted(outputs)}"
            ) from None
        try:
            return self.steps[index].check(fed, DEFAULT_SIGNATURE)
        except TfhostError as exc:
            raise _in_pipeline(
                self.name, exc, f"step {step!r} cannot take step {previous!r}'s outputs: "
            ) from exc


_PLAIN: tuple[type[TfhostError], ...] = (
    InputError,
    NotFound,
    Unavailable,
    ResourceExhausted,
    DeadlineExceeded,
    InternalError,
)


def _in_pipeline(name: str, exc: TfhostError, what: str = "") -> TfhostError:
    """``exc`` with the pipeline named first; an error with more to it than its message
    (a ``ConfigError``'s key, a ``WorkerDied``'s exit code) is kept as it is."""
    if type(exc) not in _PLAIN:
        return exc
    return type(exc)(f"pipeline {name!r}: {what}{exc.message}")
