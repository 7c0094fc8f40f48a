"""What the fleet does next: a pure function from what is wanted and what is loaded to actions.

TensorFlow Serving's split (``aspired_version_policy.h``): the repository says which versions
should be loaded (a ``Want`` per model), the Host says what is loaded (its ``ModelInfo``
snapshot), and ``plan`` says what to do next. ``plan`` is stateless and idempotent: no
clock (``now`` is an argument), no threads, no I/O, no Host calls. The fleet's loop calls
it after every change (and when a retry falls due), applies its actions, and calls it
again; each guarantee below is a row of the table tests in ``tests/test_fleet_policy.py``.

How the fleet applies a plan: the actions come in the order Route, Unload, Evict, Load,
Refuse. Routes first, so traffic leaves a version before it drains; the releases (Unload,
Evict) are done -- ``Host.unload`` has returned -- before the Loads, which may count on the
memory they free; a Refuse fails the requests waiting for that version with
``ResourceExhausted`` and its message, and is what status shows for a version the budget
keeps out.

Guarantees:

1. Availability-preserving hot swap (TF Serving's AvailabilityPreservingPolicy). A wanted
   version that is not loaded is loaded while the model's other versions keep serving. An
   AVAILABLE version no longer wanted is unloaded only once a wanted version of its model is
   AVAILABLE; until then the one that serves unversioned requests (the routed version, else
   the highest AVAILABLE) stays, and any other unwanted ones go. So a wanted version that is
   LOADING, FAILED or refused for memory keeps the old one serving. Traffic moves by the
   Host's default (the highest AVAILABLE version) or by a Route listed before the Unload.
   A model whose ``Want`` holds no version at all (its versions left the disk) has every
   version that no label holds unloaded, as TF Serving does for a servable stream with no
   aspired version.
2. Stateless and idempotent. The same inputs give the same actions. There is never a Load
   for a version that is LOADING, AVAILABLE or UNLOADING (one UNLOADING is loaded again once
   it has gone), nor an Unload or Evict for one LOADING or UNLOADING: a LOADING version is
   left to settle, then judged. Applying a plan's actions and planning again on the new
   snapshot converges: once loads and unloads have settled, the plan is empty, or repeats
   only its Refuses (which change nothing).
3. Routing. A Route is emitted only when it differs from ``routes``. The route of a wanted
   model is None (the Host's default: its highest AVAILABLE version) when its highest
   wanted AVAILABLE version is also its highest AVAILABLE one; that wanted version, by
   number, when a higher version is AVAILABLE only because a label holds it; while no wanted
   version is AVAILABLE, the current route if it is AVAILABLE, else None. A route never
   points to a version that is not AVAILABLE or that this plan unloads or evicts; a model no
   longer wanted goes back to None. Labels (TF Serving's: a label may only point to a loaded
   version) are resolved by the fleet at request time from ``Want.labels``; here, an
   AVAILABLE version a label points to is never unloaded as unwanted, and a request by label
   is a ``Demand`` for its version. A label never causes a Load by itself.
4. Versions no longer wanted (nor labelled) are unloaded under rule 1 -- FAILED ones at
   once, as they serve nothing; every version of a model no longer in ``wants`` is
   unloaded (a LOADING one once it settles).
5. Retries with bounded exponential backoff. A FAILED wanted version with a ``Retry`` record
   is loaded again once ``now >= last_failure + backoff_s * 2**(failures - 1)``, as long as
   ``failures <= max_retries`` (at most ``max_retries`` retries after the first failure);
   then it stays FAILED and gets no action. A FAILED version without a record is not
   retried: the fleet records every failure it sees, and the Host restarts its own dead
   workers. A lazy model's FAILED version is retried only when a request asks for it, or
   as the replacement in a hot swap.
6. Memory budget (bytes; only when ``budget`` is not None).
   a. In use: the sum over LOADING, AVAILABLE and UNLOADING versions of ``memory_bytes``,
      or their ``Want.estimate_bytes`` while unmeasured (else 0). FAILED versions hold none.
      A Load needs its estimate (0 when unknown).
   b. This plan's Unloads and Evicts count as freed for its Loads; versions already
      UNLOADING count until they are gone, and a Load that fits once they are gone waits
      (no action).
   c. Loads are weighed in this order, each one's estimate counting against the next:
      requested (a ``Demand``), hot swaps (the model has an AVAILABLE version), then first
      loads (pinned models first); within each, by model and version.
   d. A Load that does not fit first evicts idle versions, least recently used first
      (``last_used``; a version never used counts as the oldest; ties by model, version),
      until it fits. Evictable: AVAILABLE, no handles, its model not pinned, not in
      ``in_use_by_pipelines``, not named by a ``Demand``, and not of the model being loaded
      (that would be a swap that drops availability). Only a requested or hot-swap Load
      evicts, and it may evict any evictable version, even the only one of an eager model,
      which comes back when a request asks for it or when the budget has room. A first load
      or a retry that no request asks for, of a model with nothing AVAILABLE, evicts
      nothing: it takes free room or is refused (the message lists what a request could
      evict). Otherwise two eager models that cannot both fit would evict each other on
      every plan, and a lazy model that a request just loaded would be evicted by the next
      plan for an eager model that did not fit.
   e. If evicting every version it may evict is not enough, nothing is evicted and the
      Load becomes a Refuse whose message gives the budget, what is in use, what the load
      needs, what eviction could free, and what is pinned, held by handles or used by a
      pipeline.
   f. Eviction happens only to make room for a Load, never to get back under a budget that
      measured figures exceed. Without a budget nothing is evicted or refused.
   g. Lazy models load only on demand -- and a lazy model already loaded gets its hot swap
      replacement as in rule 1 -- and are evicted like any idle version. ``Demand(model,
      None)`` is met by any AVAILABLE version of the model, else loads its highest wanted
      version; ``Demand(model, v)`` loads ``v`` if it is wanted or labelled. A demand for a
      model or version not wanted is ignored (the fleet answers NotFound); one for a version
      LOADING waits for it; one for a FAILED version follows rule 5's backoff.
7. Deterministic order: actions sorted by kind (Route, Unload, Evict, Load, Refuse), then
   model, then version (a Route to None first).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeAlias

from tfhost.sizes import format_bytes
from tfhost.state import State

if TYPE_CHECKING:
    from tfhost.host import ModelInfo

__all__ = [
    "Action",
    "Demand",
    "Evict",
    "Load",
    "Refuse",
    "Retry",
    "Route",
    "Unload",
    "Want",
    "plan",
]


@dataclass(frozen=True)
class Want:
    """What the repository and its config say about one model.

    ``versions``: the versions that should be loaded, as the version policy chose them
    (settled folders only). ``labels``: label -> version. ``lazy``: loaded only when a
    request asks for it. ``pinned``: never evicted. ``estimate_bytes``: version -> memory
    expected before it is loaded (the artifact's size).
    """

    model: str
    versions: frozenset[int]
    labels: Mapping[str, int] = field(default_factory=dict)
    lazy: bool = False
    pinned: bool = False
    estimate_bytes: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "versions", frozenset(self.versions))
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        object.__setattr__(self, "estimate_bytes", MappingProxyType(dict(self.estimate_bytes)))


@dataclass(frozen=True)
class Demand:
    """A request for a model that is not loaded (lazy or evicted): load it.

    ``version`` None: the model's serving version.
    """

    model: str
    version: int | None = None


@dataclass(frozen=True)
class Retry:
    """The fleet's bookkeeping for one FAILED version: how many loads failed in a row and
    when the last one did (``time.monotonic()``)."""

    failures: int
    last_failure: float

    def __post_init__(self) -> None:
        if self.failures < 1:
            raise ValueError(f"a Retry records at least one failure, got {self.failures}")


@dataclass(frozen=True)
class Load:
    model: str
    version: int
    reason: str


@dataclass(frozen=True)
class Unload:
    """Unload a version (``Host.unload`` drains its handles first)."""

    model: str
    version: int
    reason: str


@dataclass(frozen=True)
class Route:
    """``Host.route(model, version)``: where requests that name no version go."""

    model: str
    version: int | None
    reason: str


@dataclass(frozen=True)
class Evict:
    """An Unload made to free memory for a Load (kept apart for logs and metrics)."""

    model: str
    version: int
    reason: str


@dataclass(frozen=True)
class Refuse:
    """A Load that cannot fit the budget: the fleet fails it with ResourceExhausted(error)."""

    model: str
    version: int
    error: str


Action: TypeAlias = Route | Unload | Evict | Load | Refuse

_KIND_ORDER: dict[type, int] = {Route: 0, Unload: 1, Evict: 2, Load: 3, Refuse: 4}
_NO_RETRIES: Mapping[tuple[str, int], Retry] = MappingProxyType({})
_BUSY = (State.START, State.LOADING)  # a load in progress: left to settle
_HOLDS_MEMORY = (State.START, State.LOADING, State.AVAILABLE, State.UNLOADING)

# Load kinds, in the order the budget weighs them (guarantee 6c).
_REQUESTED, _SWAP, _FIRST = 0, 1, 2


@dataclass(frozen=True)
class _Candidate:
    model: str
    version: int
    kind: int
    pinned: bool
    reason: str


def plan(
    wants: Mapping[str, Want],
    loaded: Sequence[ModelInfo],
    *,
    routes: Mapping[str, int | None],
    demands: Sequence[Demand] = (),
    retries: Mapping[tuple[str, int], Retry] = _NO_RETRIES,
    budget: int | None = None,
    now: float,
    backoff_s: float = 1.0,
    max_retries: int = 5,
    in_use_by_pipelines: frozenset[str] = frozenset(),
) -> list[Action]:
    """The actions that move the Host from ``loaded`` toward ``wants``; see the guarantees
    in this module's docstring.

    ``loaded`` is the Host's snapshot (``Host.models()``), every state included; ``routes``
    the Host's current routes (a model absent: None); ``demands`` the requests waiting for
    a model that is not loaded; ``retries`` the fleet's record of FAILED versions;
    ``in_use_by_pipelines`` the models that a running pipeline uses (never evicted).
    """
    snapshot = _by_model(loaded)
    demanded = {d.model for d in demands}
    releases: dict[tuple[str, int], Unload | Evict] = {}
    candidates: dict[tuple[str, int], _Candidate] = {}

    def load_reason(info: ModelInfo | None, fresh: str, prefix: str) -> str | None:
        """Why to load this version now: ``fresh`` if it is not there, a retry (guarantee 5)
        if it is FAILED and due; None if it is LOADING, AVAILABLE, UNLOADING, or FAILED and
        waiting for its backoff or out of tries."""
        if info is None:
            return fresh
        if info.state is not State.FAILED:
            return None
        record = retries.get((info.name, info.version))
        if record is None or record.failures > max_retries:
            return None
        if now < record.last_failure + backoff_s * 2 ** (record.failures - 1):
            return None
        error = (info.error or "no error recorded").strip().splitlines()
        return f"{prefix}retry {record.failures} after FAILED: {error[0] if error else ''}"

    # Guarantees 1, 4, 5: per model, what to unload and what to load.
    for name in sorted(set(wants) | set(snapshot)):
        present = snapshot.get(name, {})
        want = wants.get(name)
        if want is None:
            for version, info in sorted(present.items()):
                if info.state in (State.AVAILABLE, State.FAILED):
                    releases[name, version] = Unload(name, version, "model no longer wanted")
            continue
        available = {v for v, i in present.items() if i.state is State.AVAILABLE}
        labelled = set(want.labels.values())
        unwanted: list[int] = []
        for version, info in sorted(present.items()):
            if info.state is State.FAILED and version not in want.versions:
                releases[name, version] = Unload(name, version, "FAILED and no longer wanted")
            elif info.state is State.AVAILABLE and version not in want.versions | labelled:
                unwanted.append(version)
        ready = available & want.versions
        if not want.versions or ready:
            reason = f"replaced by version {max(ready)}" if ready else "no version of it is wanted"
            keep = None
        else:  # rule 1: the one serving stays until a wanted version is AVAILABLE
            routed = routes.get(name)
            keep = routed if routed in available else max(available, default=None)
            reason = f"no longer wanted; version {keep} serves until a wanted one is AVAILABLE"
        for version in unwanted:
            if version != keep:
                releases[name, version] = Unload(name, version, reason)

        kind = _SWAP if available else _FIRST
        if want.lazy:  # only a hot swap's replacement loads without a request (6g)
            swapping = bool(unwanted) and not ready and bool(want.versions)
            targets = [max(want.versions)] if swapping else []
        else:
            targets = sorted(want.versions)
        fresh = "new version on disk" if available else "wanted, not loaded"
        for version in targets:
            why = load_reason(present.get(version), fresh, "")
            if why is not None:
                candidates[name, version] = _Candidate(name, version, kind, want.pinned, why)

    # Guarantee 6g: requests for models that are not loaded.
    for demand in sorted(set(demands), key=lambda d: (d.model, _version_key(d.version))):
        want = wants.get(demand.model)
        if want is None:
            continue
        present = snapshot.get(demand.model, {})
        if demand.version is None:
            if any(i.state is State.AVAILABLE for i in present.values()) or not want.versions:
                continue
            version = max(want.versions)
        elif demand.version in want.versions or demand.version in want.labels.values():
            version = demand.version
        else:
            continue
        if (demand.model, version) in releases:
            continue  # a FAILED version only a label holds: unloaded now, loaded next plan
        why = load_reason(present.get(version), "requested", "requested; ")
        if why is not None:
            candidates[demand.model, version] = _Candidate(
                demand.model, version, _REQUESTED, want.pinned, why
            )

    actions: list[Action] = list(releases.values())
    gone = set(releases)
    ordered = sorted(candidates.values(), key=lambda c: (c.kind, not c.pinned, c.model, c.version))
    if budget is None:
        actions.extend(Load(c.model, c.version, c.reason) for c in ordered)
    else:
        budgeted = _Budget(budget, snapshot, wants, gone, demanded, in_use_by_pipelines, now)
        for candidate in ordered:
            actions.extend(budgeted.admit(candidate))
        gone |= {(a.model, a.version) for a in actions if isinstance(a, Evict)}

    actions.extend(_routes(wants, snapshot, routes, gone))
    return sorted(actions, key=_action_key)


def _by_model(loaded: Sequence[ModelInfo]) -> dict[str, dict[int, ModelInfo]]:
    snapshot: dict[str, dict[int, ModelInfo]] = {}
    for info in loaded:
        if info.state is State.END:
            continue
        versions = snapshot.setdefault(info.name, {})
        if info.version in versions:
            raise ValueError(f"the snapshot holds {info.name}:{info.version} twice")
        versions[info.version] = info
    return snapshot


def _version_key(version: int | None) -> int:
    return -1 if version is None else version


def _action_key(action: Action) -> tuple[int, str, int]:
    return (_KIND_ORDER[type(action)], action.model, _version_key(action.version))


class _Budget:
    """Guarantee 6: weighs Loads against the budget, one after another, evicting for them."""

    def __init__(
        self,
        budget: int,
        snapshot: Mapping[str, Mapping[int, ModelInfo]],
        wants: Mapping[str, Want],
        gone: set[tuple[str, int]],
        demanded: set[str],
        in_use_by_pipelines: frozenset[str],
        now: float,
    ) -> None:
        self.budget = budget
        self.wants = wants
        self.now = now
        infos = [i for versions in snapshot.values() for i in versions.values()]
        holding = [i for i in infos if i.state in _HOLDS_MEMORY]
        # In use after this plan's releases (6b): they are done before its loads.
        self.used = sum(self.size(i) for i in holding if (i.name, i.version) not in gone)
        self.pending = sum(self.size(i) for i in holding if i.state is State.UNLOADING)
        self.pinned: list[ModelInfo] = []
        self.held: list[ModelInfo] = []
        self.piped: list[ModelInfo] = []
        self.idle: list[ModelInfo] = []  # evictable, least recently used first
        for info in infos:
            want = wants.get(info.name)
            if info.state is not State.AVAILABLE or (info.name, info.version) in gone:
                continue
            if want is None or info.name in demanded:
                continue
            if want.pinned:
                self.pinned.append(info)
            elif info.handles > 0:
                self.held.append(info)
            elif info.name in in_use_by_pipelines:
                self.piped.append(info)
            else:
                self.idle.append(info)
        self.idle.sort(key=_lru_key)

    def size(self, info: ModelInfo) -> int:
        if info.memory_bytes is not None:
            return info.memory_bytes
        return self.estimate(info.name, info.version)

    def estimate(self, model: str, version: int) -> int:
        want = self.wants.get(model)
        return 0 if want is None else want.estimate_bytes.get(version, 0)

    def admit(self, candidate: _Candidate) -> list[Action]:
        model, version = candidate.model, candidate.version
        need = self.estimate(model, version)
        free = self.budget - self.used
        if need <= free:
            self.used += need
            return [Load(model, version, candidate.reason)]
        if need <= free + self.pending:
            return []  # versions already unloading make room (6b)
        allowed = [] if candidate.kind == _FIRST else [i for i in self.idle if i.name != model]
        victims: list[ModelInfo] = []
        freed = 0
        for info in allowed:
            if need <= free + self.pending + freed:
                break
            victims.append(info)
            freed += self.size(info)
        if need > free + self.pending + freed:
            return [Refuse(model, version, self.refusal(candidate, need, allowed))]
        target = f"{model}:{version}"
        actions: list[Action] = []
        for info in victims:
            self.idle.remove(info)
            self.used -= self.size(info)
            actions.append(
                Evict(info.name, info.version, f"{self._lru(info)}; frees room for {target}")
            )
        if need <= self.budget - self.used:
            self.used += need
            actions.append(Load(model, version, candidate.reason))
        return actions  # else the Load waits for the versions already unloading

    def _lru(self, info: ModelInfo) -> str:
        if info.last_used is None:
            return f"least recently used (never used), {format_bytes(self.size(info))}"
        ago = max(0.0, self.now - info.last_used)
        return f"least recently used ({ago:.1f} s ago), {format_bytes(self.size(info))}"

    def refusal(self, candidate: _Candidate, need: int, allowed: list[ModelInfo]) -> str:
        head = (
            f"model {candidate.model!r} version {candidate.version} needs {_exact(need)}, "
            f"but the memory budget is {_exact(self.budget)} with {_exact(self.used)} in use"
            + (f" ({format_bytes(self.pending)} of it unloading)" if self.pending else "")
        )
        if candidate.kind == _FIRST:
            head += "; a first load takes free room only and evicts nothing"
        else:
            could = sum(self.size(i) for i in allowed)
            head += f"; evicting every idle version it may evict would free {format_bytes(could)}"
        parts = [head]
        spared = [] if allowed else [i for i in self.idle if i.name != candidate.model]
        for what, infos in (
            ("pinned", self.pinned),
            ("held by handles", self.held),
            ("used by a pipeline", self.piped),
            ("idle, evicted only for a request or a hot swap", spared),
        ):
            if infos:
                listed = ", ".join(
                    f"{i.name}:{i.version} ({format_bytes(self.size(i))})"
                    for i in sorted(infos, key=lambda i: (i.name, i.version))
                )
                parts.append(f"{what}: {listed}")
        return "; ".join(parts)


def _lru_key(info: ModelInfo) -> tuple[float, str, int]:
    return (-math.inf if info.last_used is None else info.last_used, info.name, info.version)


def _routes(
    wants: Mapping[str, Want],
    snapshot: Mapping[str, Mapping[int, ModelInfo]],
    routes: Mapping[str, int | None],
    gone: set[tuple[str, int]],
) -> list[Route]:
    """Guarantee 3, on the versions that stay AVAILABLE after this plan."""
    actions = []
    for name in sorted(set(wants) | set(routes) | set(snapshot)):
        current = routes.get(name)
        after = {
            v
            for v, i in snapshot.get(name, {}).items()
            if i.state is State.AVAILABLE and (name, v) not in gone
        }
        want = wants.get(name)
        desired: int | None
        if want is None:
            desired, reason = None, "model no longer wanted"
        elif after & want.versions:
            best = max(after & want.versions)
            if best == max(after):
                desired = None
                reason = f"the default: version {best}, the highest AVAILABLE, is wanted"
            else:
                desired = best
                reason = (
                    f"version {best} is the highest wanted AVAILABLE version; "
                    f"version {max(after)} is AVAILABLE for its label only"
                )
        elif current in after:
            desired, reason = current, ""
        else:
            desired, reason = None, "no wanted version is AVAILABLE: the default"
        if desired != current:
            if want is not None and current is not None and current not in after:
                why = "is unloading" if (name, current) in gone else "is not AVAILABLE"
                reason = f"routed version {current} {why}; {reason}"
            actions.append(Route(name, desired, reason))
    return actions


def _exact(n: int) -> str:
    return format_bytes(n) if abs(n) < 1024 else f"{format_bytes(n)} ({n} bytes)"
