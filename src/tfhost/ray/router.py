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
from the model's name and the replica's id: Ray hears that a replica holds a model only
after its first request, and until then the requests behind it must go to the same
replica, not load a second copy elsewhere.

``rank`` is the policy, a pure function; ``BudgetRouter`` plugs it into Ray Serve
(``RequestRouterConfig(request_router_class=BudgetRouter)``).
"""

from __future__ import annotations

import hashlib
import math
import random
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


def rank(replicas: Sequence[C], model: str, *, sample: int = 2) -> list[list[C]]:
    """Replicas in the order to try them for a request for ``model``.

    First those that hold ``model``, as one rank; then the others, one rank each, from
    the most free bytes to the least (equal room: fewer models first, then the order
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
    return ([holding] if holding else []) + [[r] for r in others]


def _draw(model: str, replica: Candidate) -> bytes:
    """The same for a model and a replica in every router (rendezvous hashing)."""
    replica_id = getattr(replica.replica_id, "unique_id", replica.replica_id)
    return hashlib.blake2b(f"{model}\0{replica_id}".encode(), digest_size=8).digest()


class BudgetRouter(FIFOMixin, MultiplexMixin, RequestRouter):
    """Ray Serve's request router for tfhost's replicas: ``rank`` on what they report."""

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
        return rank(candidate_replicas, model)
