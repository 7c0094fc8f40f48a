"""How ``tfhost serve`` listens and guards itself; checked when made."""

from __future__ import annotations

from dataclasses import dataclass, field

from tfhost.errors import InputError
from tfhost.serve.workers import default_running, default_threads

DEFAULT_REST_PORT = 8501  # TensorFlow Serving's defaults, so existing clients connect
DEFAULT_GRPC_PORT = 8500


@dataclass(frozen=True)
class ServeSettings:
    """``host`` is 127.0.0.1 unless told otherwise. A port of 0 picks a free one; None
    turns that protocol off."""

    host: str = "127.0.0.1"
    rest_port: int | None = DEFAULT_REST_PORT
    grpc_port: int | None = DEFAULT_GRPC_PORT
    max_body_bytes: int = 64 << 20  # a bigger request is refused (413 / RESOURCE_EXHAUSTED)
    # A model's answer bigger than this is refused (500 / RESOURCE_EXHAUSTED) before it is
    # encoded: JSON takes about ten times an answer's bytes, and one answer must not be
    # able to take the server, and every model on it, out of memory.
    max_response_bytes: int = 256 << 20
    # A request body that stops arriving for this long is refused (408): a client that
    # sends a Content-Length and then too little would hold its connection, and its slot
    # in flight, for ever (uvicorn has no body timeout). nginx's client_body_timeout.
    body_timeout_s: float = 30.0
    request_timeout_s: float | None = None  # --rest_api_timeout_in_ms; None: the host's
    # Requests admitted at once, every protocol together; beyond, 503 / UNAVAILABLE at
    # once, so a flood costs a refusal each rather than memory.
    max_in_flight: int = 256
    # Threads gRPC calls run on (--grpc_max_threads); a batched model's batch gathers at
    # most this many gRPC requests. Of them, at most grpc_running_calls run at once (a
    # call waiting for its batch's answer does not count): more contend for the GIL.
    grpc_threads: int = field(default_factory=default_threads)
    grpc_running_calls: int = field(default_factory=default_running)
    token: str | None = None  # a bearer token every endpoint but health asks for
    # A request alone on the server runs on the event loop when its model's calls
    # usually take less than this (a thread hop costs more than it saves when nothing
    # else waits: up to a millisecond on a busy machine); otherwise, and whenever other
    # requests are in flight, on the host's serving threads. The bound is what a health
    # check may wait behind a call.
    inline_under_s: float = 0.1
    drain_timeout_s: float = 30.0  # on SIGTERM: how long in-flight requests may finish
    # Where Prometheus metrics are served besides /metrics and TF Serving's default
    # /monitoring/prometheus/metrics (a --monitoring_config_file path).
    metrics_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("rest_port", "grpc_port"):
            port = getattr(self, name)
            if port is not None and not 0 <= port <= 65535:
                raise InputError(f"{name} must be a port number (0-65535), got {port}")
        if self.rest_port is None and self.grpc_port is None:
            raise InputError("serve needs a REST port, a gRPC port, or both")
        for name in (
            "max_body_bytes",
            "max_response_bytes",
            "max_in_flight",
            "grpc_threads",
            "grpc_running_calls",
            "body_timeout_s",
        ):
            if not getattr(self, name) > 0:  # NaN too
                raise InputError(f"{name} must be positive, got {getattr(self, name)}")
        if self.request_timeout_s is not None and self.request_timeout_s <= 0:
            raise InputError(f"request_timeout_s must be positive, got {self.request_timeout_s}")
        if self.token is not None and not self.token:
            raise InputError("token must not be empty")
