"""Runs doctor's steps as child processes: fresh, bounded in number, bounded in time.

A child is ``python -m tfhost.diagnosis.child JOB.json``, never a fork (TensorFlow is not
fork-safe once imported). It reports through an events file (see ``child``); a crash,
a signal or a timeout becomes a :class:`StepResult` that says so, never an exception
and never a hang: a child that runs past its timeout is killed with its process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfhost.cells.lifeline import describe_exit, is_startup_noise

_LOG_TAIL_CHARS = 4000


@dataclass(frozen=True)
class Job:
    """One step for one child: ``step`` is alone, a naive way, or tfhost."""

    step: str
    models: Sequence[Mapping[str, Any]]
    tag: str = ""  # tells apart the files of jobs with the same step (one alone per model)

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(str(m["name"]) for m in self.models)


@dataclass
class StepResult:
    job: Job
    events: list[dict[str, Any]]
    returncode: int | None  # None: killed at the timeout
    timed_out: bool
    wall_s: float
    log_tail: str
    timeout_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """The child reached its end: every model has its own result in ``events``."""
        return self.returncode == 0 and any(e["event"] == "done" for e in self.events)

    @property
    def import_s(self) -> float | None:
        for event in self.events:
            if event["event"] == "start":
                return float(event["import_s"])
        return None

    def start_info(self) -> dict[str, Any]:
        return next((e for e in self.events if e["event"] == "start"), {})

    def how_it_ended(self) -> str:
        """How an unfinished child ended, in words."""
        if self.timed_out or self.returncode is None:
            return f"was killed after running past its {self.timeout_s:g} s timeout"
        if self.returncode == 0:
            return "exited before reporting every model"
        how, why = describe_exit(self.returncode)
        return how + why

    def in_flight(self) -> tuple[str, str] | None:
        """(model, stage) the child was busy with when it ended, if it ended early."""
        busy: dict[str, str] = {}
        for event in self.events:
            kind, model = event["event"], event.get("model")
            if model is None:
                continue
            if kind in ("loading", "running"):
                busy[model] = "loading" if kind == "loading" else "running"
            elif kind in ("loaded", "ran", "error"):
                busy.pop(model, None)
        if not busy:
            return None
        model = list(busy)[-1]
        return model, busy[model]

    def for_model(self, model: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("model") == model]


def child_environment(extra_paths: Sequence[str] = ()) -> dict[str, str]:
    """The parent's environment, plus: quiet TensorFlow, and this process's import path.

    Modules the caller can import (its working directory, a test folder, a project not
    installed) are importable in the child too, so ``--preload`` and ``--custom-objects``
    name the same modules in both.
    """
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONUNBUFFERED"] = "1"
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths: list[str] = [*extra_paths, os.getcwd()]
    for entry in sys.path:
        real = os.path.realpath(entry or os.getcwd())
        if os.path.isdir(real) and not any(real.startswith(p + os.sep) for p in prefixes):
            paths.append(real)
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def _read_events(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a crash: everything before it stands
    return events


def _tail(path: Path) -> str:
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = [line for line in text.splitlines() if not is_startup_noise(line)]
    return "\n".join(lines)[-_LOG_TAIL_CHARS:]


class Runner:
    """Runs jobs in child processes, at most ``jobs`` at a time, each within ``timeout_s``.

    Thread-safe: ``run_all`` may be called from one thread while children run on pool
    threads. ``close`` kills whatever is still running and starts nothing more (used
    when the caller is interrupted, and once doctor is done).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        jobs: int,
        timeout_s: float,
        env: Mapping[str, str],
        env_for: Callable[[Job], Mapping[str, str]] | None = None,
    ) -> None:
        self.workdir = workdir
        self.jobs = max(1, jobs)
        self.timeout_s = timeout_s
        self.env = dict(env)
        self._env_for = env_for
        self._lock = threading.Lock()
        self._live: set[subprocess.Popen[bytes]] = set()  # guarded by _lock
        self._closed = False  # guarded by _lock

    def run_all(
        self,
        jobs: Sequence[Job],
        common: Mapping[str, Any],
        *,
        parallel: int | None = None,
        done: Callable[[StepResult], None] | None = None,
    ) -> list[StepResult]:
        """Run every job (``common`` fields go into each job file); results in job order."""
        width = max(1, min(parallel or self.jobs, len(jobs) or 1))

        def one(job: Job) -> StepResult:
            result = self.run(job, common)
            if done is not None:
                done(result)
            return result

        pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="tfhost-doctor")
        try:
            return list(pool.map(one, jobs))
        except BaseException:
            # Interrupted (Ctrl-C) or failed: start nothing more, kill what runs, and do
            # not wait for children to reach their timeouts.
            pool.shutdown(wait=False, cancel_futures=True)
            self.close()
            raise
        finally:
            pool.shutdown(wait=True)

    def run(self, job: Job, common: Mapping[str, Any]) -> StepResult:
        stem = f"{job.step}{'-' + job.tag if job.tag else ''}"
        job_file = self.workdir / f"{stem}.json"
        events_file = self.workdir / f"{stem}.events.jsonl"
        log_file = self.workdir / f"{stem}.log"
        job_file.write_text(
            json.dumps(
                {
                    **common,
                    "step": job.step,
                    "models": list(job.models),
                    "events": str(events_file),
                    "dir": str(self.workdir),
                    "parent": os.getpid(),
                }
            )
        )
        env = dict(self.env)
        if self._env_for is not None:
            env.update(self._env_for(job))
        command = [
            sys.executable,
            "-X",
            "faulthandler",
            "-m",
            "tfhost.diagnosis.child",
            str(job_file),
        ]
        started = time.monotonic()
        timed_out = False
        with log_file.open("wb") as log:
            # A new session: the whole group can be killed at the timeout, and a Ctrl-C
            # meant for doctor is handled by doctor, which then kills its children.
            with self._lock:
                if self._closed:
                    raise RuntimeError("the runner was closed; no new child starts")
                process = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
                self._live.add(process)
            try:
                returncode: int | None = process.wait(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                returncode = None
                _kill(process)
            finally:
                if process.poll() is None:
                    _kill(process)
                with self._lock:
                    self._live.discard(process)
        return StepResult(
            job=job,
            events=_read_events(events_file),
            returncode=returncode,
            timed_out=timed_out,
            wall_s=time.monotonic() - started,
            log_tail=_tail(log_file),
            timeout_s=self.timeout_s,
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            live = list(self._live)
        for process in live:
            _kill(process)


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
