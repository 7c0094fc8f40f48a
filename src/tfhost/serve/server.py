"""Both ports of ``tfhost serve``: REST (``rest.build_app`` on uvicorn) on the main
thread's event loop, gRPC (grpcio's server) on its pool of threads, one plane under both;
SIGTERM drains."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import uvicorn
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc
from tritonclient.grpc import service_pb2_grpc

from tfhost.fleet import Fleet
from tfhost.serve import workers
from tfhost.serve.grpc_tfs import ModelService, PredictionService
from tfhost.serve.grpc_v2 import InferenceService
from tfhost.serve.plane import Plane
from tfhost.serve.rest import bearer_matches, build_app
from tfhost.serve.settings import ServeSettings

_log = logging.getLogger("tfhost.serve")


@dataclass(frozen=True)
class Bound:
    """Where the server listens (the ports a port of 0 picked)."""

    host: str
    rest_port: int | None
    grpc_port: int | None

    def describe(self) -> str:
        parts = []
        if self.rest_port is not None:
            parts.append(f"REST on http://{_url_host(self.host)}:{self.rest_port}")
        if self.grpc_port is not None:
            parts.append(f"gRPC on {_url_host(self.host)}:{self.grpc_port}")
        return ", ".join(parts)


class Server:
    """``Server(fleet, settings).run()`` serves until SIGTERM or SIGINT, then lets the
    requests in flight finish (``drain_timeout_s``) and returns."""

    def __init__(self, fleet: Fleet, settings: ServeSettings | None = None) -> None:
        self.settings = settings or ServeSettings()
        self.plane = Plane(fleet, self.settings)
        self._grpc_server: grpc.Server | None = None
        self._grpc_pool: workers.Pool | None = None
        self._stop = threading.Event()
        self._uvicorn: uvicorn.Server | None = None

    def run(self, on_ready: Callable[[Bound], None] | None = None) -> None:
        settings = self.settings
        rest_socket = (
            None if settings.rest_port is None else _listen(settings.host, settings.rest_port)
        )
        try:
            grpc_port = None if settings.grpc_port is None else self._start_grpc()
            bound = Bound(
                settings.host,
                None if rest_socket is None else rest_socket.getsockname()[1],
                grpc_port,
            )
            _log.info("tfhost serve: %s", bound.describe())
            # The handlers are in place before anyone hears that the server is ready: a
            # SIGTERM right after the ready line drains and exits 0, as any other does.
            with self._signals():
                if on_ready is not None:
                    on_ready(bound)
                if rest_socket is not None:
                    self._serve_rest(rest_socket)
                else:
                    self._stop.wait()
        finally:
            self._stop_grpc()
            if rest_socket is not None:
                rest_socket.close()

    # -- REST ---------------------------------------------------------------------------------

    def _serve_rest(self, sock: socket.socket) -> None:
        config = uvicorn.Config(
            build_app(self.plane),
            loop="uvloop",
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=int(self.settings.drain_timeout_s),
            # Every connection would otherwise be held to uvicorn's default limit only.
            backlog=2048,
        )
        server = uvicorn.Server(config)
        self._uvicorn = server
        if self._stop.is_set():  # stopped before uvicorn took the signals over
            return
        # uvicorn installs its own SIGTERM/SIGINT handlers: it stops accepting, lets the
        # requests in flight finish, then returns here.
        server.run(sockets=[sock])

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT stop the server. uvicorn takes them over while it runs and
        raises them again once it has drained: this handler is the one that hears that,
        so gRPC still drains and the fleet still closes."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum: int, frame: Any) -> None:
            self.stop()

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        """Stop serving (from another thread): as SIGTERM does."""
        self._stop.set()
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True

    # -- gRPC ---------------------------------------------------------------------------------

    def _start_grpc(self) -> int:
        settings = self.settings
        guards: list[grpc.ServerInterceptor] = [MalformedInterceptor()]
        if settings.token is not None:
            guards.insert(0, BearerInterceptor(settings.token))
        pool = workers.Pool(settings.grpc_threads, settings.grpc_running_calls)
        server = grpc.server(
            pool,
            interceptors=guards,
            options=[
                ("grpc.max_receive_message_length", settings.max_body_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
            ],
            # Calls past this wait for no thread: RESOURCE_EXHAUSTED at once, so a flood
            # costs a refusal each rather than memory.
            maximum_concurrent_rpcs=settings.max_in_flight,
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(self.plane), server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(self.plane), server)
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceService(self.plane), server
        )
        try:
            # grpcio raises RuntimeError for an address it cannot bind (in use, not local).
            port: int = server.add_insecure_port(f"{_url_host(settings.host)}:{settings.grpc_port}")
        except RuntimeError:
            pool.shutdown()
            raise OSError(
                f"cannot listen for gRPC on {settings.host}:{settings.grpc_port}: address in "
                f"use or not this machine's"
            ) from None
        server.start()
        self._grpc_server, self._grpc_pool = server, pool
        return port

    def _stop_grpc(self) -> None:
        server, pool = self._grpc_server, self._grpc_pool
        if server is not None:
            # Refuses new calls at once, lets the ones in flight finish for the grace.
            server.stop(self.settings.drain_timeout_s).wait()
        if pool is not None:
            pool.shutdown()


# Health answers without the token (V2's ServerLive / ServerReady), as on REST.
_OPEN_METHODS = frozenset(
    {"/inference.GRPCInferenceService/ServerLive", "/inference.GRPCInferenceService/ServerReady"}
)


class BearerInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """``authorization: Bearer TOKEN`` metadata on every call but health."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

        def refuse(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        self._refusal = grpc.unary_unary_rpc_method_handler(refuse)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        if details.method not in _OPEN_METHODS:
            given = dict(details.invocation_metadata or ()).get("authorization", "")
            if not bearer_matches(str(given).encode(), self._token):
                return self._refusal
        return continuation(details)


class _Malformed:
    """What a request that does not parse as its message becomes, for the call to refuse."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class MalformedInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """A request whose bytes are not its message is INVALID_ARGUMENT, as TF Serving and
    Triton answer it (grpcio itself answers INTERNAL, "Exception deserializing request!")."""

    def __init__(self) -> None:
        self._handlers: dict[str, Any] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = self._handlers.get(details.method)
        if handler is not None:
            return handler
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        guarded = _guarded(handler)
        self._handlers[details.method] = guarded
        return guarded


def _guarded(handler: Any) -> Any:
    parse = handler.request_deserializer
    behaviour = handler.unary_unary

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as exc:  # DecodeError, or any parser's surprise
            return _Malformed(f"{type(exc).__name__}: {exc}")

    def call(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, _Malformed):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {request.reason}")
        return behaviour(request, context)

    return grpc.unary_unary_rpc_method_handler(
        call, request_deserializer=deserialize, response_serializer=handler.response_serializer
    )


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen for REST on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
