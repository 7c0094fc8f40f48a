"""An HTTP request carried from the Ray ingress to a replica, and the replica's answer.

The ingress reads the request Ray Serve's proxy hands it into a ``Forwarded`` (plain
bytes, so it crosses processes and machines as one pickled object); the replica runs it
through the very Starlette app ``tfhost serve`` runs (``serve.rest.build_app``), in
process, as an ASGI call, and sends back the ``Answer``: status, headers and body exactly
as that app wrote them. Nothing here imports Ray or TensorFlow.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Forwarded:
    """What the ingress read of one HTTP request."""

    method: str
    path: str
    raw_path: bytes
    query_string: bytes
    headers: Headers
    body: bytes
    scheme: str = "http"
    client: tuple[str, int] | None = None
    server: tuple[str, int | None] | None = None


@dataclass(frozen=True)
class Answer:
    """What the app answered: its status, its headers and its body, byte for byte."""

    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""

    def response(self, extra: Headers | None = None) -> Response:
        """As a Starlette response, with the app's own headers (Content-Length included)."""
        response = Response(self.body, self.status)
        response.raw_headers = [*self.headers, *(extra or [])]
        return response


async def read(request: Request, limit: int) -> Forwarded:
    """The request, its body read to at most ``limit + 1`` bytes.

    A body over ``limit`` is not carried: one whose Content-Length says so is sent on
    empty, one without a Content-Length is cut at ``limit + 1`` bytes. The replica's app
    then refuses it (413) with the same words ``tfhost serve`` uses, having read the
    same headers.
    """
    scope = request.scope
    length = request.headers.get("content-length")
    declared: int | None
    try:
        declared = None if length is None else int(length)
    except ValueError:
        declared = None
    body = b""
    if declared is None or declared <= limit:
        chunks: list[bytes] = []
        total = 0
        try:
            async for chunk in request.stream():
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    break
        except ClientDisconnect:
            pass  # the app hears a short body; nobody reads its answer
        body = b"".join(chunks)
    client = scope.get("client")
    server = scope.get("server")
    return Forwarded(
        method=scope["method"],
        path=scope["path"],
        raw_path=scope.get("raw_path") or scope["path"].encode(),
        query_string=scope.get("query_string", b""),
        headers=[(bytes(k), bytes(v)) for k, v in scope["headers"]],
        body=body,
        scheme=scope.get("scheme", "http"),
        client=None if client is None else (str(client[0]), int(client[1])),
        server=None if server is None else (str(server[0]), server[1]),
    )


async def call(app: ASGIApp, request: Forwarded) -> Answer:
    """Run ``request`` through ``app`` in this process and collect what it sends."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path,
        "root_path": "",
        "query_string": request.query_string,
        "headers": list(request.headers),
        "client": request.client,
        "server": request.server,
        "state": {},
    }
    done = asyncio.Event()
    delivered = False
    status = 500
    headers: Headers = []
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await done.wait()  # the client "leaves" once the answer is complete
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                done.set()

    try:
        await app(scope, receive, send)
    finally:
        done.set()
    return Answer(status, headers, b"".join(chunks))
