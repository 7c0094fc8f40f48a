"""Which replica a request goes to: one that holds its model, else the one with the most
memory budget free.

Ray Serve's own multiplexing router sends a model no replica holds to the replicas with
the fewest models, counted, not weighed: a replica holding one 4 GiB model looks fuller
than one holding three 10 MiB models. ``BudgetRouter`` ranks instead by the bytes each
replica's fleet has free under its memory budget, as each replica reports them
(``record_routing_stats``: ``free_bytes``, None when it has no budget). Among the replicas
of one rank Ray picks the one with the shortest queue, and moves on to the next rank when
all of a rank's queues are full, so a model that is busy on its replica spreads to a
second one. A replica that holds no copy is a rank of its own, equals in an order drawn
from the model's name and the replica's id.

Ray hears that a replica holds a model only some time after its first request (the
replica pushes its list to the controller, which tells the routers), and until then the
requests behind it must go to the same replica, not load a second copy elsewhere. Free
bytes cannot decide that: the replica's next report, counting the model it is loading,
may rank it below the other. So the router remembers where it sent each model no replica
holds, and sends it there first until a replica reports it (or ``PLACEMENT_S`` passes: the
load failed, or the replica went).

``rank`` is the policy, a pure function; ``BudgetRouter`` plugs it into Ray Serve
(``RequestRouterConfig(request_router_class=BudgetRouter)``).
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Mapping, Sequence, Set
from typing import Any, Protocol, TypeVar

from ray.serve.request_router import (
    FIFOMixin,
    MultiplexMixin,
    PendingRequest,
    RequestRouter,
    RunningReplica,
)

FREE_BYTES = "free_bytes"  # the routing stat each replica reports
# How long a router goes on sending a model to where it sent it while no replica reports
# holding it: Ray hears of a replica's models within a second or so.
PLACEMENT_S = 10.0
_PRUNE_OVER = 1024


class Candidate(Protocol):
    """What ``rank`` reads of a replica (Ray's ``RunningReplica`` has both)."""

    @property
    def multiplexed_model_ids(self) -> Set[str]: ...

    @property
    def routing_stats(self) -> Mapping[str, Any]: ...

    @property
    def replica_id(self) -> Any: ...


C = TypeVar("C", bound=Candidate)


def room(stats: Mapping[str, Any]) -> float:
    """The bytes a replica has free: unbounded without a budget, or before its first
    report (a replica that just started holds nothing)."""
    free = stats.get(FREE_BYTES)
    return float(free) if isinstance(free, int | float) else math.inf


def rank(
    replicas: Sequence[C], model: str, *, placed: Any = None, sample: int = 2
) -> list[list[C]]:
    """Replicas in the order to try them for a request for ``model``.

    First those that hold ``model``, as one rank; if none does, the replica whose id is
    ``placed`` (where this router sent the model last); then the others, one rank each,
    from the most free bytes to the least (equal room: fewer models first, then the order
    ``_draw`` gives). A request that names no model gets ``sample`` replicas drawn at
    random, as one rank (the power of two choices).
    """
    if not model:
        return [random.sample(list(replicas), min(sample, len(replicas)))] if replicas else []
    holding = [r for r in replicas if model in r.multiplexed_model_ids]
    others = sorted(
        (r for r in replicas if model not in r.multiplexed_model_ids),
        key=lambda r: (-room(r.routing_stats), len(r.multiplexed_model_ids), _draw(model, r)),
    )
    if holding:
        return [holding] + [[r] for r in others]
    others.sort(key=lambda r: r.replica_id != placed)  # stable: the rest keep their order
    return [[r] for r in others]


def _draw(model: str, replica: Candidate) -> bytes:
    """The same for a model and a replica in every router (rendezvous hashing)."""
    replica_id = getattr(replica.replica_id, "unique_id", replica.replica_id)
    return hashlib.blake2b(f"{model}\0{replica_id}".encode(), digest_size=8).digest()


class Placements:
    """Where a router sent each model that no replica reported holding, and when."""

    def __init__(self, hold_s: float = PLACEMENT_S) -> None:
        self._hold_s = hold_s
        self._sent: dict[str, tuple[Any, float]] = {}
        self._pruned = -math.inf

    def where(self, model: str) -> Any:
        """The replica id ``model`` was sent to under ``hold_s`` ago, else None."""
        sent = self._sent.get(model)
        if sent is None:
            return None
        if time.monotonic() - sent[1] > self._hold_s:
            del self._sent[model]
            return None
        return sent[0]

    def sent(self, model: str, replica_id: Any) -> None:
        """``model`` went to ``replica_id``: remembered, unless it was there already."""
        if self.where(model) != replica_id:
            now = time.monotonic()
            # Names nothing serves come and go (any request path names one): past a
            # thousand, the expired go, at most once per hold_s.
            if len(self._sent) >= _PRUNE_OVER and now - self._pruned > self._hold_s:
                self._sent = {m: s for m, s in self._sent.items() if now - s[1] <= self._hold_s}
                self._pruned = now
            self._sent[model] = (replica_id, now)

    def forget(self, model: str) -> None:
        """A replica reports ``model``: Ray's list decides from now on."""
        self._sent.pop(model, None)


class BudgetRouter(FIFOMixin, MultiplexMixin, RequestRouter):
    """Ray Serve's request router for tfhost's replicas: ``rank`` on what they report."""

    def initialize_state(self, **kwargs: Any) -> None:
        """Ray's hook for a custom router's state, called once it is made."""
        self._placements = Placements()

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        model = ""
        if pending_request is not None:
            model = pending_request.metadata.multiplexed_model_id or ""
            # Every rank full: wait a little before trying again, as Ray's routers do.
            pending_request.routing_context.should_backoff = True
        if not model:
            return rank(candidate_replicas, model)
        ranks = rank(candidate_replicas, model, placed=self._placements.where(model))
        if not ranks:
            return ranks
        first = ranks[0][0]
        if model in first.multiplexed_model_ids:  # a holder: Ray's list decides now
            self._placements.forget(model)
        else:  # Ray sends it to the first rank unless that replica's queue is full
            self._placements.sent(model, first.replica_id)
        return ranks

    def on_request_routed(
        self, pending_request: PendingRequest, replica_id: Any, result: Any
    ) -> None:
        """Where Ray did send it, when the first rank's queue was full (Ray calls this
        where replicas may refuse a request)."""
        model = pending_request.metadata.multiplexed_model_id
        if model and self._placements.where(model) is not None:
            self._placements.sent(model, replica_id)
