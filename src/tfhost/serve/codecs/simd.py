"""simdjson with one parser per thread, reused.

A new ``simdjson.Parser`` per body allocates its buffers afresh, and where other large
arrays came and went since the last one (a request's tensors do), the allocator maps new
pages for them: an 8 x 2048 body took 375 µs to parse so against 255 µs on a parser kept
from the last body. A parser keeps buffers as large as the largest body it read, so only
bodies up to ``REUSE_UP_TO`` go to the kept one.

simdjson refuses to parse again while objects of the last document live: callers keep
none past their own call (a REST body is decoded without awaiting anything, so no other
body is parsed on the thread meanwhile). Where one does live, a new parser reads the body.
"""

from __future__ import annotations

import threading
from typing import Any, Final

import simdjson

REUSE_UP_TO: Final = 1 << 20

_local = threading.local()


def parse(body: bytes) -> Any:
    """simdjson's document of ``body``; raises as ``simdjson.Parser.parse`` does."""
    if len(body) > REUSE_UP_TO:
        return simdjson.Parser().parse(body)
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    try:
        return parser.parse(body)
    except Exception:  # a document of the last body still lives, or this body is bad
        return simdjson.Parser().parse(body)
