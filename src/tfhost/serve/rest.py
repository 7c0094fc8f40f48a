"""The REST routes: TensorFlow Serving's ``/v1``, KServe V2's ``/v2``, ``/metrics`` and the
status page, over the plane. Routes are thin: decode, plane, encode. The inference routes
run on ASGI itself (``_Inference``), the others in a Starlette app behind them."""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tfhost.errors import InputError, InternalError, TfhostError
from tfhost.serve import page, tfs
from tfhost.serve import v2 as v2_api
from tfhost.serve.codecs import tfs_json
from tfhost.serve.metrics import CONTENT_TYPE
from tfhost.serve.plane import Plane
from tfhost.serve.settings import ServeSettings
from tfhost.serve.status import BodyTimeout, BodyTooLarge, http_status

_log = logging.getLogger("tfhost.serve")

JSON = "application/json"

# TensorFlow Serving's own path patterns (http_rest_api_util.cc), matched as it matches them.
_PREDICT = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)"
)
_STATUS = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?"
)

# KServe V2's per-model routes (below): /v2/models/NAME[/...] and the repository's
# /v2/repository/models/NAME/load|unload; /v2/models/stats is every model's.
_V2_MODEL = re.compile(r"/v2/(?:repository/)?models/([^/]+)(/.*)?")
_V2_INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")


def model_name(method: str, path: str) -> str | None:
    """The model a request names, read from its path as the routes below read it (a Ray
    Serve ingress sends it to a replica that holds that model); None when the request
    names none (health, server metadata, every model's stats or status, or a path no
    route takes): any replica answers it."""
    if path[:4].lower() == "/v1/":
        match = (_PREDICT if method == "POST" else _STATUS).fullmatch(path)
        return None if match is None else match.group(1) or None
    match = _V2_MODEL.fullmatch(path)
    if match is None or (match.group(1) == "stats" and match.group(2) is None):
        return None
    return match.group(1)


# TensorFlow Serving answers a method it does not serve with "Malformed request" (400).
_ANY_METHOD = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]

# Health answers without the token: a load balancer or kubelet probes it.
_OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})


def build_app(plane: Plane) -> ASGIApp:
    tfs_route = Route("/v1/{rest:path}", functools.partial(_tfs, plane), methods=_ANY_METHOD)
    # TensorFlow Serving's kPathRegex is "(?i)/v1/.*": /V1/MODELS/... reaches it too.
    tfs_route.path_regex = re.compile(tfs_route.path_regex.pattern, re.IGNORECASE)
    routes = [
        tfs_route,
        Route("/v2", _v2(plane, v2_api.server_metadata), methods=["GET"]),
        Route("/v2/health/live", _v2(plane, v2_api.live), methods=["GET"]),
        Route("/v2/health/ready", _v2(plane, v2_api.ready_route), methods=["GET"]),
        Route("/v2/models/stats", _v2(plane, v2_api.stats), methods=["GET"]),
        Route("/v2/models/{name}", _v2(plane, v2_api.model_metadata), methods=["GET"]),
        Route(
            "/v2/models/{name}/versions/{version}",
            _v2(plane, v2_api.model_metadata),
            methods=["GET"],
        ),
        Route("/v2/models/{name}/ready", _v2(plane, v2_api.model_ready_route), methods=["GET"]),
        Route(
            "/v2/models/{name}/versions/{version}/ready",
            _v2(plane, v2_api.model_ready_route),
            methods=["GET"],
        ),
        Route("/v2/models/{name}/config", _v2(plane, v2_api.model_config), methods=["GET"]),
        Route(
            "/v2/models/{name}/versions/{version}/config",
            _v2(plane, v2_api.model_config),
            methods=["GET"],
        ),
        Route("/v2/models/{name}/stats", _v2(plane, v2_api.stats), methods=["GET"]),
        Route(
            "/v2/models/{name}/versions/{version}/stats",
            _v2(plane, v2_api.stats),
            methods=["GET"],
        ),
        Route("/v2/repository/index", _v2(plane, v2_api.repository_index_route), methods=["POST"]),
        Route(
            "/v2/repository/models/{name}/load",
            _v2(plane, v2_api.repository_load),
            methods=["POST"],
        ),
        Route(
            "/v2/repository/models/{name}/unload",
            _v2(plane, v2_api.repository_unload),
            methods=["POST"],
        ),
        Route("/metrics", functools.partial(_metrics, plane), methods=["GET"]),
        # TensorFlow Serving's --monitoring_config_file default path.
        Route(
            "/monitoring/prometheus/metrics",
            functools.partial(_metrics, plane),
            methods=["GET"],
        ),
        Route("/", functools.partial(_page, plane), methods=["GET"]),
    ]
    routes += [
        Route(path, functools.partial(_metrics, plane), methods=["GET"])
        for path in plane.settings.metrics_paths
        if path not in ("/metrics", "/monitoring/prometheus/metrics")
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    # A redirect (/v2/ -> /v2) would be an answer without a JSON error, aimed at
    # whatever the Host header says.
    app.router.redirect_slashes = False
    inference = _Inference(app, plane)
    if plane.settings.token is None:
        return inference
    return _Bearer(inference, plane.settings.token)


class _Inference:
    """TensorFlow Serving's ``POST :predict|:classify|:regress`` and KServe V2's infer
    routes straight on ASGI; every other request goes on to ``app``. Starlette's
    middleware, router, Request and Response cost about 50 µs a request here, a quarter
    of what a batched 1-row MLP request costs in-process (16 clients: 188 -> 139 µs of
    CPU each)."""

    def __init__(self, app: ASGIApp, plane: Plane) -> None:
        self._app = app
        self._plane = plane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]  # the app is never mounted: its root_path is ""
            if scope["method"] == "POST":
                match = _PREDICT.fullmatch(path)
                if match is not None:
                    await self._tfs(match, scope, receive, send)
                    return
            match = _V2_INFER.fullmatch(path)
            if match is not None:
                await self._v2(match, scope, receive, send)
                return
        await self._app(scope, receive, send)

    async def _tfs(self, match: re.Match[str], scope: Scope, receive: Receive, send: Send) -> None:
        plane = self._plane
        try:
            name, version, label, method = match.groups()
            body = await read_body(scope, receive, plane.settings)
            spec = tfs.model_spec(name, version, label)
            content = await tfs.METHODS[method.lower()](plane, spec, body)
            status, extra = 200, None
        except Exception as exc:
            content, status = _tfs_failure(exc, f"POST {scope['path']}")
            extra = _CLOSE if _closes(exc) else None
        await _reply(send, status, content, extra=extra)

    async def _v2(self, match: re.Match[str], scope: Scope, receive: Receive, send: Send) -> None:
        plane = self._plane
        method = scope["method"]
        extra: list[tuple[bytes, bytes]] = []
        media_type = _JSON_BYTES
        try:
            if method != "POST":
                content, status = _v2_error_json(_not_allowed_text(method, scope["path"])), 405
            else:
                name, version = match.group(1), v2_api.parse_version(match.group(2))
                body = await read_body(scope, receive, plane.settings)
                header = _header(scope, b"inference-header-content-length")
                content, length = await v2_api.infer_rest(plane, name, version, body, header)
                status = 200
                if length is not None:
                    media_type = b"application/octet-stream"
                    extra.append((b"inference-header-content-length", str(length).encode()))
        except Exception as exc:
            content, status = _v2_failure(exc, f"{method} {scope['path']}")
            extra = _CLOSE if _closes(exc) else []
        await _reply(send, status, content, media_type, extra)


_JSON_BYTES = JSON.encode()


def _closes(exc: Exception) -> bool:
    """Whether the answer to what raised ``exc`` closes the connection: a body that
    stopped arriving may still come, and would be read as the next request (RFC 9110
    15.5.9: a 408 says ``Connection: close``)."""
    return isinstance(exc, BodyTimeout)


_CLOSE = [(b"connection", b"close")]


async def _reply(
    send: Send,
    status: int,
    content: bytes,
    media_type: bytes = _JSON_BYTES,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-length", str(len(content)).encode()), (b"content-type", media_type)]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def read_body(scope: Scope, receive: Receive, settings: ServeSettings) -> bytes:
    """The body, refused past ``settings.max_body_bytes`` before more than that is read,
    and when it stops arriving for ``settings.body_timeout_s``."""
    limit = settings.max_body_bytes
    length = _header(scope, b"content-length")
    if length is not None:
        try:
            size = int(length)
        except ValueError:
            raise InputError(f"Content-Length is not a number: {length!r}") from None
        if size > limit:
            raise BodyTooLarge(f"request body of {size} bytes is over the limit of {limit}")
    chunks: list[bytes] = []
    total = 0
    # One timer, moved on after each chunk: a pause between reads is timed, not the whole
    # body (a big body on a slow link is fine). No task per read: about 7 us a request.
    loop = asyncio.get_running_loop()
    idle = settings.body_timeout_s
    try:
        async with asyncio.timeout(idle) as timer:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    # Nobody will read the answer; an error, so nothing runs or is logged.
                    raise InputError("the client went away before sending the whole body")
                chunk = message.get("body", b"")
                total += len(chunk)
                if total > limit:
                    raise BodyTooLarge(f"request body is over the limit of {limit} bytes")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
                timer.reschedule(loop.time() + idle)
    except TimeoutError:
        announced = "" if length is None else f" of the {length} its Content-Length announced"
        raise BodyTimeout(
            f"the request body stopped arriving: nothing for {idle:g} s after {total} "
            f"bytes{announced}"
        ) from None


# -- TensorFlow Serving ---------------------------------------------------------------------


async def _tfs(plane: Plane, request: Request) -> Response:
    """Every ``/v1`` request ``_Inference`` did not take: status and metadata."""
    path = request.url.path
    try:
        if request.method != "GET":
            raise InputError(f"Malformed request: {request.method} {path}")
        match = _STATUS.fullmatch(path)
        if match is None:
            raise InputError(f"Malformed request: GET {path}")
        name, version, label, metadata = match.groups()
        if not name:
            raise InputError("Missing model name in request.")
        spec = tfs.model_spec(name, version, label)
        if metadata:
            content = await tfs.metadata_json(plane, spec)
        else:
            content = await tfs.status_json(plane, spec)
    except Exception as exc:
        content, status = _tfs_failure(exc, f"{request.method} {path}")
        return Response(content, status, media_type=JSON)
    return Response(content, media_type=JSON)


def _tfs_failure(exc: Exception, what: str) -> tuple[bytes, int]:
    """TF Serving's error body and status for what a route raised. Call it in the
    ``except``: a bug is logged with its traceback, answered 500, never shown."""
    if isinstance(exc, TfhostError):
        return tfs_json.encode_error(exc.message), http_status(exc)
    _log.exception("TF Serving REST %s failed", what)
    error = InternalError(f"{type(exc).__name__}: {exc}")
    return tfs_json.encode_error(error.message), 500


# -- KServe V2 --------------------------------------------------------------------------------

V2Handler = Callable[[Plane, Request], Awaitable[Response]]


def _v2(plane: Plane, handler: V2Handler) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        try:
            return await handler(plane, request)
        except Exception as exc:
            content, status = _v2_failure(exc, f"{request.method} {request.url.path}")
            close = {"connection": "close"} if _closes(exc) else None
            return Response(content, status, close, media_type=JSON)

    return route


def _v2_failure(exc: Exception, what: str) -> tuple[bytes, int]:
    """V2's error body and status for what a route raised (as ``_tfs_failure``)."""
    if isinstance(exc, TfhostError):
        return _v2_error_json(exc.message), http_status(exc)
    _log.exception("V2 REST %s failed", what)
    return _v2_error_json(f"internal error: {type(exc).__name__}: {exc}"), 500


def v2_error(message: str, status: int) -> Response:
    return Response(_v2_error_json(message), status, media_type=JSON)


def _v2_error_json(message: str) -> bytes:
    return orjson.dumps({"error": message})


# -- the rest ---------------------------------------------------------------------------------


async def _metrics(plane: Plane, request: Request) -> Response:
    content = await asyncio.to_thread(plane.metrics.render)
    return Response(content, media_type=CONTENT_TYPE)


async def _page(plane: Plane, request: Request) -> Response:
    return HTMLResponse(await asyncio.to_thread(page.render, plane))


async def _not_found(request: Request, exc: Exception) -> Response:
    message = f"no route for {request.method} {request.url.path}"
    if request.url.path.startswith("/v1/"):
        return Response(tfs_json.encode_error(message), 404, media_type=JSON)
    return v2_error(message, 404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return v2_error(_not_allowed_text(request.method, request.url.path), 405)


def _not_allowed_text(method: str, path: str) -> str:
    return f"{method} is not allowed on {path}"


def bearer_matches(header: bytes, token: bytes) -> bool:
    """An ``Authorization`` value carries ``token`` as a bearer token: the scheme in any
    case (RFC 7235), the token compared in constant time."""
    scheme, _, given = header.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(given.lstrip(b" "), token)


class _Bearer:
    """``Authorization: Bearer TOKEN`` on every endpoint but health."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in _OPEN_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not bearer_matches(given, self._token):
                response = v2_error("missing or wrong bearer token", 401)
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


def json_body(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc}") from None
