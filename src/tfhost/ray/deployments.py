"""tfhost on Ray Serve: an ingress that routes by model, replicas that each run a fleet.

```
client -HTTP-> Ray Serve proxy -> Ingress -> Replica 1..N
                (each node, or    (NAME from the path,  (a lazy Fleet over the repository, and
                 the head)         as serve/rest.py      the Plane and Starlette app of
                                   reads it; then        tfhost serve, called in process)
                                   handle.options(multiplexed_model_id=NAME))
```

- ``Replica`` builds the fleet ``tfhost serve`` builds from the same ``ServeOptions``, every
  model lazy (a replica loads only the models routed to it), and the same ``Plane`` and
  REST app; a request runs through that app as an ASGI call, so status, headers and body
  are those ``tfhost serve`` answers. Its memory budget, in bytes, decides what it evicts:
  the least recently used idle model, never one a request holds (the fleet's policy).
- ``@serve.multiplexed`` is used only to tell Ray which models a replica holds, so Ray
  routes their requests there; its count limit is off (-1), Ray never evicts. When the
  fleet unloads a model (evicted, failed, gone from the repository) the replica takes it
  out of that list again (``_Replica.reconcile``).
- ``BudgetRouter`` (router.py) sends a model no replica holds to the replica with the most
  budget free, as each replica reports in ``record_routing_stats``.
- ``Ingress`` reads the request from Ray's proxy, finds the model in the path
  (``serve.rest.model_name``) and forwards it; a request that names no model (health,
  server metadata, metrics, the status page) goes to any replica.

What a replica answers for the whole server (``/metrics``, the status page,
``/v2/models/stats``, ``/v2/repository/index``) is that replica's own view.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import ray
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError, RayError
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

from tfhost.errors import InputError
from tfhost.ray import asgi
from tfhost.ray.router import FREE_BYTES, BudgetRouter
from tfhost.serve.codecs import tfs_json
from tfhost.serve.rest import JSON, model_name, v2_error
from tfhost.state import Event, State

if TYPE_CHECKING:
    from ray.serve import Application

    from tfhost.fleet import Fleet
    from tfhost.serve.command import ServeOptions

APP_NAME = "tfhost"
# Which replica answered: its id, pid and node, and how many times it has reported its
# free budget to the router.
REPLICA_HEADER = b"x-tfhost-replica"

# Where ``@serve.multiplexed`` keeps its wrapper on the instance (ray/serve/api.py), and
# the wrapper's OrderedDict of the models it lists for this replica (ray/serve/multiplex.py).
_MULTIPLEX_ATTR = "__serve_multiplex_wrapper"

_HOLDING = (State.LOADING, State.AVAILABLE)
_COUNTED = (State.LOADING, State.AVAILABLE, State.UNLOADING)

_log = logging.getLogger("tfhost.ray")


def held(fleet: Fleet) -> set[str]:
    """The models and pipelines a replica's fleet serves or is loading now."""
    names = {m.name for m in fleet.models() if m.state in _HOLDING}
    names |= {p for p, config in fleet.pipelines().items() if set(config.steps) <= names}
    return names


def memory_stats(fleet: Fleet) -> dict[str, Any]:
    """What a replica reports to the router: its budget, the bytes its versions hold
    (measured at load) and what is free (None: no budget)."""
    budget = fleet.memory_budget
    used = sum(m.memory_bytes or 0 for m in fleet.models() if m.state in _COUNTED)
    return {
        "budget_bytes": budget,
        "used_bytes": used,
        FREE_BYTES: None if budget is None else max(0, budget - used),
        "models": sorted(held(fleet)),
    }


class _Replica:
    """One replica: a lazy fleet, the plane and the REST app of ``tfhost serve``."""

    def __init__(self, options: ServeOptions) -> None:
        from tfhost.cells.tflog import ENV, import_tensorflow_quietly

        os.environ.setdefault(ENV, "3")
        logger = logging.getLogger("tfhost")
        logger.setLevel(logging.INFO)
        if not logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)
        import_tensorflow_quietly()  # now, not on the first request

        from tfhost.serve.command import build_fleet, serve_settings
        from tfhost.serve.plane import Plane
        from tfhost.serve.rest import build_app

        self._fleet = build_fleet(options, lazy=True)
        self._fleet.start(wait=False)
        self._plane = Plane(self._fleet, serve_settings(options))
        self._app = build_app(self._plane)
        context = serve.get_replica_context()
        node = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        self._where = f"id={context.replica_tag}; pid={os.getpid()}; node={node}"
        self._reports = 0  # budget reports to the router so far
        self._in_flight: collections.Counter[str] = collections.Counter()
        self._stale = False
        self._unsubscribe = self._fleet.host.subscribe(self._heard)
        self._closed = False
        _log.info("replica %s: serving %s", context.replica_tag, self._fleet.repository)

    @serve.multiplexed(max_num_models_per_replica=-1)  # type: ignore[untyped-decorator]
    async def hold(self, model: str) -> str:
        """Lists ``model`` as held here (Ray routes its requests here), without a limit:
        tfhost's budget decides what stays."""
        return model

    async def forward(self, request: asgi.Forwarded) -> asgi.Answer:
        """Answer one HTTP request with ``tfhost serve``'s app."""
        model = serve.get_multiplexed_model_id()
        if not model:
            answer = await asgi.call(self._app, request)
        else:
            self._in_flight[model] += 1
            try:
                await self.hold(model)
                answer = await asgi.call(self._app, request)
            finally:
                self._in_flight[model] -= 1
                if not self._in_flight[model]:
                    del self._in_flight[model]
            if self._stale or answer.status >= 400:
                self.reconcile()
        header = f"{self._where}; reports={self._reports}".encode()
        return asgi.Answer(answer.status, [*answer.headers, (REPLICA_HEADER, header)], answer.body)

    async def record_routing_stats(self) -> dict[str, Any]:
        """Polled by Ray Serve's controller for the router (``request_routing_stats_period_s``)."""
        self.reconcile()
        stats = memory_stats(self._fleet)
        self._reports += 1
        return stats

    def reconcile(self) -> None:
        """Take the models the fleet no longer holds out of Ray's list for this replica.

        Ray Serve has no public call for this: the list is the ``models`` OrderedDict of
        the wrapper ``@serve.multiplexed`` keeps on the instance, pushed to the controller
        when ``_push_multiplexed_replica_info`` is set (Ray 2.60). Runs on the replica's
        event loop, where Ray's wrapper runs."""
        self._stale = False
        wrapper = getattr(self, _MULTIPLEX_ATTR, None)
        listed = getattr(wrapper, "models", None)
        if not isinstance(listed, MutableMapping):
            return
        holding = held(self._fleet)
        gone = [m for m in listed if m not in holding and m not in self._in_flight]
        for name in gone:
            del listed[name]
        if gone:
            wrapper._push_multiplexed_replica_info = True  # type: ignore[union-attr]
            _log.info("replica no longer holds %s", ", ".join(sorted(gone)))

    def _heard(self, event: Event) -> None:
        # A fleet thread: only a flag; the next request or stats poll reconciles.
        if event.state in (State.UNLOADING, State.END, State.FAILED):
            self._stale = True

    def __del__(self) -> None:
        # Ray Serve calls it when it stops the replica; the garbage collector may again.
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._unsubscribe()
        self._fleet.close()


class _Ingress:
    """Ray Serve's HTTP entry: the model from the path, the request to a replica."""

    def __init__(self, replica: DeploymentHandle[Any], max_body_bytes: int) -> None:
        self._replica = replica
        self._limit = max_body_bytes

    async def __call__(self, request: Request) -> Response:
        forwarded = await asgi.read(request, self._limit)
        model = model_name(forwarded.method, forwarded.path)
        handle = (
            self._replica if model is None else self._replica.options(multiplexed_model_id=model)
        )
        try:
            answer: asgi.Answer = await handle.forward.remote(forwarded)
        except (RayActorError, ActorUnavailableError) as exc:
            message = f"the replica answering went away: {type(exc).__name__}; try again"
            return error_response(forwarded.path, message, 503)
        except RayError as exc:
            _log.exception("forwarding %s %s failed", forwarded.method, forwarded.path)
            return error_response(forwarded.path, f"internal error: {type(exc).__name__}", 500)
        return answer.response()


def error_response(path: str, message: str, status: int) -> Response:
    """An error in the JSON of the protocol the path belongs to, as tfhost serve's."""
    if path[:4].lower() == "/v1/":
        return Response(tfs_json.encode_error(message), status, media_type=JSON)
    return v2_error(message, status)


Replica = serve.deployment(name="Replica")(_Replica)
Ingress = serve.deployment(name="Ingress")(_Ingress)


def build(
    options: ServeOptions,
    *,
    replica_cpus: float = 1.0,
    max_ongoing_requests: int = 32,
    ingress_replicas: int = 1,
    stats_period_s: float = 1.0,
) -> Application:
    """The Ray Serve application for ``options`` (``options.replicas`` replicas).

    ``replica_cpus``: the CPUs Ray reserves for each replica (it places replicas by them);
    ``max_ongoing_requests``: requests a replica takes at once before Ray tries another
    (the model's other holders, then the replica with the most budget free, which loads
    it); ``stats_period_s``: how often replicas report their free budget to the router."""
    from tfhost.serve.command import serve_settings

    if options.replicas < 1:
        raise InputError(f"--replicas must be at least 1, got {options.replicas}")
    settings = serve_settings(options)  # checked here, before any replica starts
    quiet = {"enable_access_log": False}
    replica = Replica.options(
        num_replicas=options.replicas,
        max_ongoing_requests=max_ongoing_requests,
        ray_actor_options={"num_cpus": replica_cpus},
        request_router_config={
            "request_router_class": BudgetRouter,
            "request_routing_stats_period_s": stats_period_s,
            "request_routing_stats_timeout_s": max(10.0, 5 * stats_period_s),
        },
        logging_config=quiet,
        max_constructor_retry_count=3,
    ).bind(options)
    ingress = Ingress.options(
        num_replicas=ingress_replicas,
        max_ongoing_requests=settings.max_in_flight * options.replicas,
        ray_actor_options={"num_cpus": 0},
        logging_config=quiet,
    )
    return ingress.bind(replica, settings.max_body_bytes)
