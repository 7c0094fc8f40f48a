"""The fleet's policy as table tests: snapshots in, actions out, no TensorFlow, no disk.

Each row names the guarantee of ``tfhost.fleet.policy`` it shows (g1 ... g7). A small
simulator below applies plans to a snapshot (LOADING -> AVAILABLE, UNLOADING -> gone) and
checks that planning converges and keeps every wanted model serving on the way.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tfhost.cells import Isolation
from tfhost.fleet.policy import (
    Action,
    Demand,
    Evict,
    Load,
    Refuse,
    Retry,
    Route,
    Unload,
    Want,
    plan,
)
from tfhost.host import ModelInfo
from tfhost.state import State

MiB = 2**20
AV, LOADING, FAILED, UNLOADING = State.AVAILABLE, State.LOADING, State.FAILED, State.UNLOADING


def info(
    name: str,
    version: int,
    state: State = AV,
    *,
    handles: int = 0,
    last_used: float | None = None,
    memory: int | None = None,
    error: str | None = None,
) -> ModelInfo:
    return ModelInfo(
        name,
        version,
        state,
        Isolation.INLINE,
        Path("/x"),
        error=error,
        handles=handles,
        last_used=last_used,
        memory_bytes=memory,
    )


def want(
    name: str,
    *versions: int,
    labels: Mapping[str, int] | None = None,
    lazy: bool = False,
    pinned: bool = False,
    est: Mapping[int, int] | int | None = None,
) -> Want:
    if isinstance(est, int):
        est = dict.fromkeys(versions, est)
    return Want(name, frozenset(versions), dict(labels or {}), lazy, pinned, dict(est or {}))


def wants(*items: Want) -> dict[str, Want]:
    return {w.model: w for w in items}


@dataclass(frozen=True)
class Case:
    wants: dict[str, Want]
    loaded: Sequence[ModelInfo]
    expected: list[Action]
    routes: Mapping[str, int | None] = field(default_factory=dict)
    demands: Sequence[Demand] = ()
    retries: Mapping[tuple[str, int], Retry] = field(default_factory=dict)
    budget: int | None = None
    now: float = 1000.0
    pipelines: frozenset[str] = frozenset()

    def plan(self) -> list[Action]:
        return plan(
            self.wants,
            self.loaded,
            routes=self.routes,
            demands=self.demands,
            retries=self.retries,
            budget=self.budget,
            now=self.now,
            backoff_s=1.0,
            max_retries=5,
            in_use_by_pipelines=self.pipelines,
        )


REFUSE_HELD = (
    "model 'n' version 1 needs 50.0 MiB (52428800 bytes), but the memory budget is "
    "100.0 MiB (104857600 bytes) with 100.0 MiB (104857600 bytes) in use; evicting every "
    "idle version it may evict would free 10.0 MiB; pinned: p:1 (40.0 MiB); held by "
    "handles: h:1 (30.0 MiB); used by a pipeline: e:1 (20.0 MiB)"
)
REFUSE_FIRST = (
    "model 'n' version 1 needs 30.0 MiB (31457280 bytes), but the memory budget is "
    "100.0 MiB (104857600 bytes) with 90.0 MiB (94371840 bytes) in use; a first load takes "
    "free room only and evicts nothing; idle, evicted only for a request or a hot swap: "
    "e:1 (60.0 MiB), l:1 (30.0 MiB)"
)


def first_refusal(model: str, need_mib: int, in_use_mib: int, rest: str = "") -> str:
    """The Refuse of a first load on a 100 MiB budget."""
    return (
        f"model {model!r} version 1 needs {need_mib}.0 MiB ({need_mib * MiB} bytes), but the "
        f"memory budget is 100.0 MiB (104857600 bytes) with {in_use_mib}.0 MiB "
        f"({in_use_mib * MiB} bytes) in use; a first load takes free room only and evicts "
        f"nothing{rest}"
    )


CASES = {
    # g1: hot swap, step by step
    "g1 first load": Case(wants(want("a", 1)), [], [Load("a", 1, "wanted, not loaded")]),
    "g1 first load, every version of policy all": Case(
        wants(want("a", 1, 2, 3)),
        [],
        [Load("a", v, "wanted, not loaded") for v in (1, 2, 3)],
    ),
    "g1 swap 1: new version loads, old keeps serving": Case(
        wants(want("a", 2)), [info("a", 1)], [Load("a", 2, "new version on disk")]
    ),
    "g1 swap 2: new version LOADING, nothing moves": Case(
        wants(want("a", 2)), [info("a", 1), info("a", 2, LOADING)], []
    ),
    "g1 swap 3: new version AVAILABLE, old unloads (default route follows)": Case(
        wants(want("a", 2)),
        [info("a", 1), info("a", 2)],
        [Unload("a", 1, "replaced by version 2")],
    ),
    "g1 swap 3 with an explicit route: route moves before the unload": Case(
        wants(want("a", 2)),
        [info("a", 1), info("a", 2)],
        [
            Route(
                "a",
                None,
                "routed version 1 is unloading; "
                "the default: version 2, the highest AVAILABLE, is wanted",
            ),
            Unload("a", 1, "replaced by version 2"),
        ],
        routes={"a": 1},
    ),
    "g1 swap 4: old UNLOADING, nothing more": Case(
        wants(want("a", 2)), [info("a", 1, UNLOADING), info("a", 2)], []
    ),
    "g1 a FAILED new version keeps the old serving": Case(
        wants(want("a", 2)), [info("a", 1), info("a", 2, FAILED, error="corrupt")], []
    ),
    "g1 rollback: the lower wanted version loads first": Case(
        wants(want("a", 1)), [info("a", 2)], [Load("a", 1, "new version on disk")]
    ),
    "g1 rollback: the newer one leaves once the older is AVAILABLE": Case(
        wants(want("a", 1)), [info("a", 1), info("a", 2)], [Unload("a", 2, "replaced by version 1")]
    ),
    "g1 two unwanted serving: the serving one (highest) stays": Case(
        wants(want("a", 3)),
        [info("a", 1), info("a", 2)],
        [
            Unload("a", 1, "no longer wanted; version 2 serves until a wanted one is AVAILABLE"),
            Load("a", 3, "new version on disk"),
        ],
    ),
    "g1 two unwanted serving: the routed one stays": Case(
        wants(want("a", 3)),
        [info("a", 1), info("a", 2)],
        [
            Unload("a", 2, "no longer wanted; version 1 serves until a wanted one is AVAILABLE"),
            Load("a", 3, "new version on disk"),
        ],
        routes={"a": 1},
    ),
    "g1 no version wanted (left the disk): every version unloads": Case(
        wants(want("a")), [info("a", 1)], [Unload("a", 1, "no version of it is wanted")]
    ),
    "g1 lazy model already loaded gets its swap replacement": Case(
        wants(want("l", 2, lazy=True)), [info("l", 1)], [Load("l", 2, "new version on disk")]
    ),
    # g2: idempotent, never a duplicate move
    "g2 LOADING is not loaded again": Case(wants(want("a", 1)), [info("a", 1, LOADING)], []),
    "g2 AVAILABLE and wanted: nothing": Case(wants(want("a", 1)), [info("a", 1)], []),
    "g2 UNLOADING is not unloaded again": Case({}, [info("a", 1, UNLOADING)], []),
    "g2 wanted but UNLOADING: loaded again once gone": Case(
        wants(want("a", 1)), [info("a", 1, UNLOADING)], []
    ),
    "g2 END versions are gone": Case(
        wants(want("a", 1)), [info("a", 1, State.END)], [Load("a", 1, "wanted, not loaded")]
    ),
    # g3: routes and labels
    "g3 a label protects its version": Case(
        wants(want("a", 3, labels={"stable": 2})), [info("a", 2), info("a", 3)], []
    ),
    "g3 a label-only higher version: route the default to the wanted one": Case(
        wants(want("a", 3, labels={"canary": 4})),
        [info("a", 3), info("a", 4)],
        [
            Route(
                "a",
                3,
                "version 3 is the highest wanted AVAILABLE version; "
                "version 4 is AVAILABLE for its label only",
            )
        ],
    ),
    "g3 policy all with a canary label: default stays the highest": Case(
        wants(want("a", 3, 4, labels={"stable": 3, "canary": 4})),
        [info("a", 3), info("a", 4)],
        [],
    ),
    "g3 a route to a version no longer AVAILABLE goes back to the default": Case(
        wants(want("a", 1, 2)),
        [info("a", 1), info("a", 2, FAILED, error="died")],
        [
            Route(
                "a",
                None,
                "routed version 2 is not AVAILABLE; "
                "the default: version 1, the highest AVAILABLE, is wanted",
            )
        ],
        routes={"a": 2},
    ),
    "g3 while no wanted version is AVAILABLE the route stays": Case(
        wants(want("a", 3)),
        [info("a", 1), info("a", 2)],
        [
            Unload("a", 2, "no longer wanted; version 1 serves until a wanted one is AVAILABLE"),
            Load("a", 3, "new version on disk"),
        ],
        routes={"a": 1},
    ),
    "g3 a label never loads by itself": Case(
        wants(want("a", 3, labels={"stable": 2})), [info("a", 3)], []
    ),
    "g3 a FAILED version only a label holds is unloaded": Case(
        wants(want("a", 3, labels={"stable": 2})),
        [info("a", 2, FAILED), info("a", 3)],
        [Unload("a", 2, "FAILED and no longer wanted")],
    ),
    # g4: unwanted versions and models
    "g4 a model no longer wanted: routes reset, settled versions unload": Case(
        {},
        [info("b", 1), info("b", 2, FAILED), info("b", 3, LOADING)],
        [
            Route("b", None, "model no longer wanted"),
            Unload("b", 1, "model no longer wanted"),
            Unload("b", 2, "model no longer wanted"),
        ],
        routes={"b": 1},
    ),
    "g4 a FAILED unwanted version unloads at once": Case(
        wants(want("a", 2)),
        [info("a", 1, FAILED), info("a", 2)],
        [Unload("a", 1, "FAILED and no longer wanted")],
    ),
    "g4 an unwanted version held by handles still unloads (the Host drains it)": Case(
        wants(want("a", 2)),
        [info("a", 1, handles=3), info("a", 2)],
        [Unload("a", 1, "replaced by version 2")],
    ),
    # g5: retries with backoff
    "g5 FAILED without a record: not retried": Case(
        wants(want("a", 1)), [info("a", 1, FAILED, error="boom")], []
    ),
    "g5 retry 1 due one backoff after the failure": Case(
        wants(want("a", 1)),
        [info("a", 1, FAILED, error="boom\ntraceback")],
        [Load("a", 1, "retry 1 after FAILED: boom")],
        retries={("a", 1): Retry(1, 999.0)},
    ),
    "g5 retry 2 not yet (due at 102)": Case(
        wants(want("a", 1)),
        [info("a", 1, FAILED, error="boom")],
        [],
        retries={("a", 1): Retry(2, 100.0)},
        now=101.99,
    ),
    "g5 retry 2 due at last failure + 2 s": Case(
        wants(want("a", 1)),
        [info("a", 1, FAILED, error="boom")],
        [Load("a", 1, "retry 2 after FAILED: boom")],
        retries={("a", 1): Retry(2, 100.0)},
        now=102.0,
    ),
    "g5 retry 5 (the last) due at + 16 s": Case(
        wants(want("a", 1)),
        [info("a", 1, FAILED, error="boom")],
        [Load("a", 1, "retry 5 after FAILED: boom")],
        retries={("a", 1): Retry(5, 100.0)},
        now=116.0,
    ),
    "g5 out of retries: stays FAILED": Case(
        wants(want("a", 1)),
        [info("a", 1, FAILED, error="boom")],
        [],
        retries={("a", 1): Retry(6, 0.0)},
        now=1e9,
    ),
    "g5 a swap's FAILED new version retried while the old serves": Case(
        wants(want("a", 2)),
        [info("a", 1), info("a", 2, FAILED, error="corrupt")],
        [Load("a", 2, "retry 1 after FAILED: corrupt")],
        retries={("a", 2): Retry(1, 10.0)},
    ),
    "g5 an idle lazy model's FAILED version is not retried": Case(
        wants(want("l", 1, lazy=True)),
        [info("l", 1, FAILED, error="boom")],
        [],
        retries={("l", 1): Retry(1, 0.0)},
    ),
    "g5 a demand waits for the backoff": Case(
        wants(want("l", 1, lazy=True)),
        [info("l", 1, FAILED, error="boom")],
        [],
        demands=[Demand("l")],
        retries={("l", 1): Retry(1, 999.5)},
    ),
    "g5 a demand once the backoff is over": Case(
        wants(want("l", 1, lazy=True)),
        [info("l", 1, FAILED, error="boom")],
        [Load("l", 1, "requested; retry 1 after FAILED: boom")],
        demands=[Demand("l")],
        retries={("l", 1): Retry(1, 999.0)},
    ),
    # g6: memory budget, eviction, lazy loading
    "g6 without a budget nothing is weighed": Case(
        wants(want("a", 1, est=10**12)), [], [Load("a", 1, "wanted, not loaded")]
    ),
    "g6 fits": Case(
        wants(want("a", 1, est=40 * MiB), want("b", 1)),
        [info("b", 1, memory=60 * MiB)],
        [Load("a", 1, "wanted, not loaded")],
        budget=100 * MiB,
    ),
    "g6 LRU order: never used first, then oldest, until it fits": Case(
        wants(want("a", 1, lazy=True, est=50 * MiB), want("b", 1), want("c", 1), want("d", 1)),
        [
            info("b", 1, last_used=5.0, memory=40 * MiB),
            info("c", 1, last_used=3.0, memory=40 * MiB),
            info("d", 1, memory=10 * MiB),
        ],
        [
            Evict("c", 1, "least recently used (997.0 s ago), 40.0 MiB; frees room for a:1"),
            Evict("d", 1, "least recently used (never used), 10.0 MiB; frees room for a:1"),
            Load("a", 1, "requested"),
        ],
        demands=[Demand("a")],
        budget=100 * MiB,
    ),
    "g6 pinned, held and pipeline versions are skipped for a newer idle one": Case(
        wants(
            want("n", 1, lazy=True, est=30 * MiB),
            want("p", 1, pinned=True),
            want("h", 1),
            want("e", 1),
            want("x", 1),
        ),
        [
            info("p", 1, last_used=1.0, memory=20 * MiB),
            info("h", 1, last_used=1.0, handles=1, memory=20 * MiB),
            info("e", 1, last_used=1.0, memory=20 * MiB),
            info("x", 1, last_used=9.0, memory=30 * MiB),
        ],
        [
            Evict("x", 1, "least recently used (991.0 s ago), 30.0 MiB; frees room for n:1"),
            Load("n", 1, "requested"),
        ],
        demands=[Demand("n")],
        budget=100 * MiB,
        pipelines=frozenset({"e"}),
    ),
    "g6 nothing can free enough: Refuse with the numbers, nothing evicted": Case(
        wants(
            want("n", 1, lazy=True, est=50 * MiB),
            want("p", 1, pinned=True),
            want("h", 1),
            want("e", 1),
            want("x", 1),
        ),
        [
            info("p", 1, memory=40 * MiB),
            info("h", 1, handles=1, memory=30 * MiB),
            info("e", 1, memory=20 * MiB),
            info("x", 1, memory=10 * MiB),
        ],
        [Refuse("n", 1, REFUSE_HELD)],
        demands=[Demand("n")],
        budget=100 * MiB,
        pipelines=frozenset({"e"}),
    ),
    "g6 a first load evicts nothing, not even a lazy model: Refuse": Case(
        wants(want("n", 1, est=30 * MiB), want("e", 1), want("l", 1, lazy=True)),
        [info("e", 1, memory=60 * MiB), info("l", 1, memory=30 * MiB)],
        [Refuse("n", 1, REFUSE_FIRST)],
        budget=100 * MiB,
    ),
    "g6 a request may evict an eager model": Case(
        wants(want("n", 1, est=30 * MiB), want("e", 1), want("l", 1, lazy=True)),
        [info("e", 1, memory=80 * MiB), info("l", 1, last_used=1.0, memory=10 * MiB)],
        [
            Evict("e", 1, "least recently used (never used), 80.0 MiB; frees room for n:1"),
            Load("n", 1, "requested"),
        ],
        demands=[Demand("n", 1)],
        budget=100 * MiB,
    ),
    "g6 a hot swap evicts another model, never its own old version": Case(
        wants(want("a", 2, est=50 * MiB), want("b", 1)),
        [info("a", 1, memory=40 * MiB), info("b", 1, last_used=999.0, memory=40 * MiB)],
        [
            Evict("b", 1, "least recently used (1.0 s ago), 40.0 MiB; frees room for a:2"),
            Load("a", 2, "new version on disk"),
        ],
        budget=100 * MiB,
    ),
    "g6 this plan's unloads make room for its loads": Case(
        wants(want("n", 1, est=50 * MiB)),
        [info("old", 1, memory=60 * MiB)],
        [Unload("old", 1, "model no longer wanted"), Load("n", 1, "wanted, not loaded")],
        budget=100 * MiB,
    ),
    "g6 versions already UNLOADING make room: the load waits": Case(
        wants(want("a", 1, est=30 * MiB), want("c", 1)),
        [info("b", 1, UNLOADING, memory=50 * MiB), info("c", 1, memory=40 * MiB)],
        [],
        budget=100 * MiB,
    ),
    "g6 a LOADING version counts by its estimate": Case(
        wants(want("a", 1, est=70 * MiB), want("b", 1, est=40 * MiB)),
        [info("a", 1, LOADING)],
        [Refuse("b", 1, first_refusal("b", 40, 70))],
        budget=100 * MiB,
    ),
    "g6 loads weighed in order: pinned first loads before others": Case(
        wants(want("a", 1, est=60 * MiB), want("p", 1, pinned=True, est=60 * MiB)),
        [],
        [
            Load("p", 1, "wanted, not loaded"),
            Refuse("a", 1, first_refusal("a", 60, 60)),
        ],
        budget=100 * MiB,
    ),
    "g6 a demanded model is not evicted for another load": Case(
        wants(want("a", 1, lazy=True, est=50 * MiB), want("c", 1), want("d", 1)),
        [info("c", 1, memory=40 * MiB), info("d", 1, last_used=900.0, memory=40 * MiB)],
        [
            Evict("d", 1, "least recently used (100.0 s ago), 40.0 MiB; frees room for a:1"),
            Load("a", 1, "requested"),
        ],
        demands=[Demand("a"), Demand("c")],
        budget=100 * MiB,
    ),
    "g6 lazy: not loaded without a request": Case(wants(want("l", 1, lazy=True)), [], []),
    "g6 lazy: a request loads the highest wanted version": Case(
        wants(want("l", 1, 2, lazy=True)), [], [Load("l", 2, "requested")], demands=[Demand("l")]
    ),
    "g6 lazy: a request by label loads its version": Case(
        wants(want("l", 3, labels={"old": 2}, lazy=True)),
        [],
        [Load("l", 2, "requested")],
        demands=[Demand("l", 2)],
    ),
    "g6 a request met by an AVAILABLE version: nothing": Case(
        wants(want("l", 1, lazy=True)), [info("l", 1)], [], demands=[Demand("l")]
    ),
    "g6 a request for an unknown model or version is ignored": Case(
        wants(want("l", 1, lazy=True)), [], [], demands=[Demand("zz"), Demand("l", 7)]
    ),
    "g6 a request for an evicted eager model reloads it": Case(
        wants(want("a", 1, est=10 * MiB)),
        [],
        [Load("a", 1, "requested")],
        demands=[Demand("a")],
        budget=100 * MiB,
    ),
    # g7: deterministic order across kinds and models
    "g7 order: Route, Unload, Evict, Load, Refuse; then model, version": Case(
        wants(
            want("a", 2, est=10 * MiB),
            want("b", 1, lazy=True, est=50 * MiB),
            want("c", 1),
            want("z", 1, est=90 * MiB),
        ),
        [
            info("a", 1, memory=10 * MiB),
            info("a", 2, last_used=999.0, memory=10 * MiB),
            info("c", 1, memory=50 * MiB),
            info("gone", 3),
        ],
        [
            Route("gone", None, "model no longer wanted"),
            Unload("a", 1, "replaced by version 2"),
            Unload("gone", 3, "model no longer wanted"),
            Evict("c", 1, "least recently used (never used), 50.0 MiB; frees room for b:1"),
            Load("b", 1, "requested"),
            Refuse(
                "z",
                1,
                first_refusal(
                    "z", 90, 60, "; idle, evicted only for a request or a hot swap: a:2 (10.0 MiB)"
                ),
            ),
        ],
        routes={"gone": 3},
        demands=[Demand("b")],
        budget=100 * MiB,
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_plan(case: Case) -> None:
    assert case.plan() == case.expected


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_plan_is_idempotent_and_never_repeats_a_move(case: Case) -> None:
    """g2: the same inputs give the same actions, and none repeats a move in progress."""
    first = case.plan()
    assert case.plan() == first
    states = {(i.name, i.version): i.state for i in case.loaded if i.state is not State.END}
    for action in first:
        state = states.get((action.model, action.version)) if action.version is not None else None
        if isinstance(action, Load):
            assert state in (None, FAILED), action
        if isinstance(action, Unload | Evict):
            assert state in (AV, FAILED), action


# ---------------------------------------------------------------------------------------
# A tiny simulator: applies a plan the way the fleet would, then lets the Host move on.


@dataclass
class World:
    wants: dict[str, Want]
    versions: dict[tuple[str, int], ModelInfo] = field(default_factory=dict)
    routes: dict[str, int] = field(default_factory=dict)
    broken: set[tuple[str, int]] = field(default_factory=set)  # loads that fail
    retries: dict[tuple[str, int], Retry] = field(default_factory=dict)
    budget: int | None = None
    demands: list[Demand] = field(default_factory=list)
    now: float = 0.0
    refused: list[Refuse] = field(default_factory=list)

    def snapshot(self) -> list[ModelInfo]:
        return [self.versions[k] for k in sorted(self.versions)]

    def plan(self) -> list[Action]:
        return plan(
            self.wants,
            self.snapshot(),
            routes=self.routes,
            demands=self.demands,
            retries=self.retries,
            budget=self.budget,
            now=self.now,
        )

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            key = (action.model, action.version) if action.version is not None else None
            if isinstance(action, Route):
                if action.version is None:
                    self.routes.pop(action.model, None)
                else:
                    self.routes[action.model] = action.version
            elif isinstance(action, Unload | Evict):
                assert key is not None
                self.versions[key] = dataclasses.replace(self.versions[key], state=UNLOADING)
            elif isinstance(action, Load):
                assert key is not None
                self.versions[key] = info(action.model, action.version, LOADING)
            else:
                self.refused.append(action)
        self.check_serving()

    def tick(self) -> None:
        """The Host moves on: loads end, unloads end, time passes."""
        self.now += 10.0
        for key, version in list(self.versions.items()):
            if version.state is UNLOADING:
                del self.versions[key]
            elif version.state is LOADING and key in self.broken:
                self.versions[key] = dataclasses.replace(version, state=FAILED, error="corrupt")
                old = self.retries.get(key)
                self.retries[key] = Retry(1 if old is None else old.failures + 1, self.now)
            elif version.state is LOADING:
                size = self.wants[key[0]].estimate_bytes.get(key[1])
                self.versions[key] = dataclasses.replace(version, state=AV, memory_bytes=size)
        self.demands = [d for d in self.demands if not self.serves(d)]

    def serves(self, demand: Demand) -> bool:
        return any(
            i.state is AV and (demand.version in (None, i.version))
            for (m, _), i in self.versions.items()
            if m == demand.model
        )

    def available(self, model: str) -> set[int]:
        return {v for (m, v), i in self.versions.items() if m == model and i.state is AV}

    def check_serving(self) -> None:
        """Routes point at AVAILABLE versions; the budget holds (estimates included)."""
        for model, version in self.routes.items():
            assert version in self.available(model), (model, version, self.versions)
        if self.budget is not None:
            used = sum(
                i.memory_bytes or self.wants[i.name].estimate_bytes.get(i.version, 0)
                for i in self.versions.values()
                if i.state in (LOADING, AV)
            )
            assert used <= self.budget

    def run(self, rounds: int = 20) -> list[list[Action]]:
        """Plan, apply, plan again on the same snapshot (nothing new may come), tick; until
        everything has settled and a plan is empty or only repeats its Refuses."""
        history: list[list[Action]] = []
        for _ in range(rounds):
            actions = self.plan()
            history.append(actions)
            self.apply(actions)
            again = self.plan()
            assert all(isinstance(a, Refuse) for a in again), again
            self.tick()
            settled = all(i.state in (AV, FAILED) for i in self.versions.values())
            quiet = all(isinstance(a, Refuse) for a in actions)
            if settled and quiet and self.plan() == actions:
                return history
        raise AssertionError(f"no convergence: {history}")


def test_converges_to_the_wanted_versions() -> None:
    world = World(wants(want("a", 1), want("b", 1, 2), want("l", 1, lazy=True)))
    world.run()
    assert set(world.versions) == {("a", 1), ("b", 1), ("b", 2)}
    assert world.routes == {}


def test_hot_swap_keeps_a_version_serving_at_every_step() -> None:
    world = World(wants(want("a", 1)))
    world.run()
    for new in (2, 3, 4):
        world.wants = wants(want("a", new))
        for actions in world.run():
            assert world.available("a"), actions
        assert world.available("a") == {new}


def test_a_corrupt_new_version_keeps_the_old_serving_until_out_of_retries() -> None:
    world = World(wants(want("a", 1)))
    world.run()
    world.wants = wants(want("a", 2))
    world.broken.add(("a", 2))
    for _ in range(10):  # converged while a retry waits: let its backoff pass
        for actions in world.run():
            assert world.available("a") == {1}, actions
        world.now += 100.0
    assert world.versions["a", 2].state is FAILED
    assert world.retries["a", 2].failures == 6  # the first load and 5 retries
    assert world.plan() == []
    world.broken.clear()
    world.retries["a", 2] = Retry(1, world.now)  # the fleet starts over for a new artifact
    world.now += 1.0
    world.run()
    assert world.available("a") == {2}


def test_label_rollback_and_removal_converge() -> None:
    world = World(wants(want("a", 3, 4, labels={"stable": 3, "canary": 4})))
    world.run()
    world.wants = wants(want("a", 3, labels={"canary": 4}))
    world.run()
    assert world.available("a") == {3, 4} and world.routes == {"a": 3}
    world.wants = wants(want("a", 3))
    world.run()
    assert world.available("a") == {3} and world.routes == {}
    world.wants = {}
    world.run()
    assert world.versions == {}


def test_budget_with_lazy_models_converges_and_stays_under_budget() -> None:
    est = 40 * MiB
    world = World(
        wants(
            want("a", 1, est=est),
            want("b", 1, est=est),
            want("c", 1, est=est),
            want("l", 1, lazy=True, est=est),
        ),
        budget=100 * MiB,
    )
    world.run()  # a and b fit; c is refused, the same Refuse every plan
    assert set(world.versions) == {("a", 1), ("b", 1)}
    assert {r.model for r in world.refused} == {"c"}
    world.versions["a", 1] = dataclasses.replace(world.versions["a", 1], last_used=world.now)
    world.demands = [Demand("l")]
    world.run()  # the request evicts b (never used); c is still refused, l stays
    assert set(world.versions) == {("a", 1), ("l", 1)}
    world.demands = [Demand("c")]
    world.run()  # a request for c evicts the least recently used: l (never used since)
    assert set(world.versions) == {("a", 1), ("c", 1)}
    world.wants = wants(want("a", 1, est=est), want("c", 1, est=est), want("l", 1, lazy=True))
    world.run()  # b leaves the config: nothing to do, and the lazy l is not loaded
    assert set(world.versions) == {("a", 1), ("c", 1)}
    assert world.plan() == []


def test_two_eager_models_that_cannot_both_fit_do_not_evict_each_other() -> None:
    world = World(wants(want("a", 1, est=60 * MiB), want("b", 1, est=60 * MiB)), budget=100 * MiB)
    history = world.run()
    assert set(world.versions) == {("a", 1)}
    assert history[-1] == [Refuse("b", 1, history[-1][0].error)]  # type: ignore[union-attr]


def test_the_policy_imports_no_tensorflow() -> None:
    """Practice 1: policy code is fast to import and test."""
    code = "import sys, tfhost.fleet.policy; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
