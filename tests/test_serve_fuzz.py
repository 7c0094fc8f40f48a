"""``tfhost serve`` under fuzzing: thousands of malformed and random requests to both
protocols (TensorFlow Serving REST and gRPC, KServe V2 REST and gRPC), on 127.0.0.1 only,
bounded in count and time and deterministic (seeded ``random.Random``).

REST (httpx, a few in flight): random bytes; truncated, deeply nested, huge-number, NaN,
wrong-type JSON; byte flips, truncations and insertions in valid :predict (row and
columnar, b64 strings), :classify, :regress and V2 infer bodies; V2's binary tensor
extension with lies in Inference-Header-Content-Length, binary_data_size, datatype and
shape; random paths (``../``, percent-escapes, unicode, very long names, versions such as
-1, 99999999999999999999, "abc", "²"); wrong methods; random headers. Beside it, hand-written
HTTP/1.1 on a socket for what httpx will not send: Content-Length lies, broken chunking,
raw bytes in the target, a client hanging up mid-body.

gRPC (a generic ``channel.unary_unary`` that sends bytes): random bytes as the request of
every method of PredictionService, ModelService and GRPCInferenceService, valid requests'
bytes mutated, and valid requests with a lie in a field (shapes, dtypes, versions, names).

What must hold, request by request:

* REST: the status is one of ALLOWED_STATUSES and never a 5xx (see the comment there);
  an error is JSON with an ``error`` string.
* gRPC: the code is never INTERNAL or UNKNOWN (a malformed request is INVALID_ARGUMENT, an
  unknown model NOT_FOUND, an unknown method UNIMPLEMENTED ...), and never a hang.

and once it is over: the server process is alive, its stderr has no Python traceback, and a
known-good request to each protocol answers the exact expected values.

The generators never call ``counter`` (stateful) nor the toolbox's ``sleep``, ``fail`` and
``abort`` signatures (``abort`` SIGABRTs the process), never unload or load a model that
exists and never send ModelService/HandleReloadConfigRequest a request that parses (it
would replace the server's configuration): every case passes ``_safe_*`` first.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import functools
import json
import random
import re
import struct
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import message as pb_message
from google.protobuf import message_factory, text_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2,
    predict_pb2,
    prediction_service_pb2,
    regression_pb2,
)
from tritonclient.grpc import service_pb2

from tests.serve_support import ServerProcess

SEED = 20240611
REST_CASES = 3000  # through httpx
RAW_CASES = 200  # hand-written HTTP/1.1 on a socket: framing lies httpx refuses to send
GRPC_CASES = 1500
# A few requests in flight per protocol: far below the server's max_in_flight (256), so
# the in-flight limit never refuses one of these and a 503 is a bug.
REST_IN_FLIGHT = 4
RAW_IN_FLIGHT = 2
GRPC_IN_FLIGHT = 4
CALL_TIMEOUT_S = 20.0  # one request: past this it hung
BUDGET_S = 240.0  # all of it; the cases take ~30-60 s on 2 cores
SHOWN = 40  # distinct findings spelled out in a failure

# REST statuses a fuzzed request may get. The server's only 5xx are 503 (the in-flight
# limit, --max-in-flight: a refusal at once rather than a queue) and 504 (a request past
# its timeout): anything else >= 500 is a bug. These requests stay far below the in-flight
# limit and never call a slow signature, so neither 503 nor 504 is expected here either:
# ``_check_rest`` reports those as findings of their own.
ALLOWED_STATUSES = frozenset({200, 400, 401, 404, 405, 413, 429, 503, 504})
OVERLOAD_STATUSES = frozenset({503, 504})

GRPC_ALLOWED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)

# uvicorn's own answer to bytes its HTTP parser refuses, before any route sees them: the
# one error that is not the app's JSON (it cannot be: the request never reached the app).
UVICORN_PARSE_ERRORS = (b"Invalid HTTP request received.", b"Unsupported upgrade request.")

MODELS = (
    "half_plus_two",
    "half_plus_two_tf2",
    "half_plus_two_2_versions",
    "half_plus_three",
    "counter",
    "toolbox",
)
SAFE_MODELS = tuple(m for m in MODELS if m != "counter")
# Never in a request: counter's model, its incr signatures, the toolbox's dangerous ones.
FORBIDDEN = ("counter", "incr", "abort", "sleep", "fail")

TOOLBOX_IMAGE = np.arange(2 * 2 * 2 * 3, dtype=np.float32).reshape(2, 2, 2, 3)

Json = Any


# -- vocabulary -----------------------------------------------------------------------------

# fmt: off
JUNK_NAMES = (
    "", ".", "..", "...", "%2e%2e", "..%2F..%2Fetc", "..%2f..%2fetc%2fpasswd", "%2F", "%2Ftmp",
    "a%00b", "%00", "%", "%zz", "%ff%fe", "%C0%AE%C0%AE", "nope", "HALF_PLUS_TWO",
    "Half_Plus_Two", "half_plus_two%20", "%20half_plus_two", "half_plus_two;", "half_plus_two.",
    "toolbox:predict", "a:b", "ünïcødé", "模型", "\u202etoolbox", "\U0001f600", "\ufeff",
    "half\u200bplus", "~", "$(id)", "`id`", "'; DROP TABLE models; --",
    "<script>alert(1)</script>", "{name}", "%n%s%x", "x" * 300, "x" * 4096, "y" * 20000,
)
JUNK_VERSIONS = (
    "-1", "0", "-0", "+1", "1.5", "1e3", "0x7b", "123abc", "abc", "", " 123", "%31%32%33",
    "00000000000000000123", "99999999999999999999", "18446744073709551615",
    "9223372036854775807", "9223372036854775808", "-9223372036854775809", "9" * 400,
    "\u00b2",  # SUPERSCRIPT TWO: str.isdigit() says yes, int() says no
    "\u2460",  # CIRCLED DIGIT ONE: the same
    "\u0661\u0662\u0663",  # ARABIC-INDIC 123: int() takes it
    "\U0001d7cf",  # MATHEMATICAL BOLD DIGIT ONE
    "1\u0000", "NaN", "null",
)
REAL_VERSIONS = ("123", "124", "1")
LABELS = ("stable", "canary", "nope", "", "STABLE", "%00", "l" * 5000, "123", "-1", "\u00e9")
SUFFIXES = (
    ":predict", ":classify", ":regress", ":PREDICT", ":Predict", ":explain", ":", "::predict",
    ":predict:predict", ":predict/", ":predict/extra", ":%70redict", "%3Apredict",
    ":predict%00", ":predict;x", "", "/metadata", "/metadata/extra", "/METADATA",
)
SIGNATURE_NAMES = (
    "serving_default", "classify_x_to_y", "regress_x_to_y", "echo", "nope", "", " ",
    "serving_default\u0000", "\u00e9cho", "s" * 3000, "tensorflow/serving/predict",
)
# Numbers past what the wire types hold, and literals strict JSON refuses.
WEIRD_NUMBERS = (
    b"0", b"-0", b"-0.0", b"1e999", b"-1e999", b"1e-999", b"4.9e-324",
    b"1.7976931348623157e308", b"1.7976931348623159e308", b"123456789012345678901234567890",
    b"-123456789012345678901234567890", b"2147483648", b"-2147483649", b"4294967296",
    b"9007199254740993", b"9223372036854775807", b"9223372036854775808",
    b"-9223372036854775808", b"-9223372036854775809", b"18446744073709551615",
    b"18446744073709551616", b"1" * 400, b"1" * 5000, b"0." + b"0" * 3000 + b"1",
    b"NaN", b"nan", b"Infinity", b"-Infinity", b"inf", b"+1", b".5", b"5.", b"01", b"0x10",
    b"1_000", b"1e", b"1e+", b"--1", b"1.2.3",
)
JSON_TOKENS = (
    b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"null", b"true", b"false", b'"b64"',
    b'{"b64": "!!!"}', b'"\\ud800"', b'"\\u0000"', b'"\\uZZZZ"', b"\x00", b"\xff\xfe",
    b"\xef\xbb\xbf", b"\xc0\xaf", b"//", b"/*", b"\n", b"\t", *WEIRD_NUMBERS[:20],
)
CONTENT_TYPES = (
    "application/json", "application/json; charset=utf-8", "application/json; charset=utf-16",
    "application/octet-stream", "text/plain", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz", "application/grpc", "application/json; boundary",
    ";;;", "*/*", "x" * 2000,
)
IHCL_LIES = (
    "-1", "0", "-0", "1", "99999999999999999999", "18446744073709551615", "9223372036854775807",
    "-9223372036854775808", "abc", "1.5", "1e3", "0x10", "+12", "١٢", "12abc", "", "nan",
)
STRING_PIECES = (
    "a", "Z", "0", " ", "\u00e9", "\u6a21", "\u202e", "\U0001f600", "\x00", "\x7f", "\ud800",
    "\ufffd", '"', "\\", "/", "\n", "b64", "=",
)
# fmt: on


# -- random values --------------------------------------------------------------------------


def _junk_string(rng: random.Random, longest: int = 24) -> str:
    if rng.random() < 0.02:
        return rng.choice(STRING_PIECES) * rng.choice((1000, 70000))
    return "".join(rng.choice(STRING_PIECES) for _ in range(rng.randint(0, longest)))


def _b64(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.4:
        return base64.b64encode(rng.randbytes(rng.randint(0, 40))).decode()
    if roll < 0.6:
        return base64.urlsafe_b64encode(rng.randbytes(rng.randint(1, 40))).decode().rstrip("=")
    return rng.choice(("!!!", "a", "ab=", "====", "YWI", "YW=I", "\u00e9", "", " YWI= ", "YWI=\n"))


def _json_value(rng: random.Random, depth: int = 0) -> Json:
    roll = rng.random()
    if depth > 4 or roll < 0.45:
        return rng.choice(
            (
                None,
                True,
                False,
                0,
                -1,
                1,
                2**31,
                2**53 + 1,
                2**63 - 1,
                2**63,
                2**64 - 1,
                2**64,
                -(2**63) - 1,
                10**30,
                0.5,
                -0.0,
                5e-324,
                1.7976931348623157e308,
                float("nan"),
                float("inf"),
                float("-inf"),
                "",
                "x",
                "1.0",
                _junk_string(rng),
                {"b64": _b64(rng)},
            )
        )
    if roll < 0.75:
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    keys = ("x", "y", "text", "b64", "name", "shape", "datatype", "data", "", _junk_string(rng))
    return {rng.choice(keys): _json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _dumps(rng: random.Random, value: Json) -> bytes:
    """JSON as a careless client writes it: NaN and Infinity literals, lone surrogates."""
    text = json.dumps(value, ensure_ascii=rng.random() < 0.5, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


def _replace_somewhere(rng: random.Random, value: Json, new: Json) -> Json:
    """``value`` with one node, picked at random, replaced by ``new``."""
    if not isinstance(value, (dict, list)) or not value or rng.random() < 0.25:
        return new
    out = copy.copy(value)
    if isinstance(out, dict):
        key = rng.choice(list(out))
        out[key] = _replace_somewhere(rng, out[key], new)
    else:
        index = rng.randrange(len(out))
        out[index] = _replace_somewhere(rng, out[index], new)
    return out


_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _mutate(rng: random.Random, data: bytes) -> bytes:
    """Byte flips, truncation, insertion, deletion, duplication, a number swapped."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not out:
            out += rng.randbytes(rng.randint(1, 8))
            continue
        i = rng.randrange(len(out))
        op = rng.randrange(9)
        if op == 0:
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            out[i] = rng.randrange(256)
        elif op == 2:
            del out[i:]
        elif op == 3:
            out[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 4:
            out[i:i] = rng.choice(JSON_TOKENS)
        elif op == 5:
            del out[i : i + rng.randint(1, 16)]
        elif op == 6:
            j = min(len(out), i + rng.randint(1, 64))
            out[i:i] = bytes(out[i:j]) * rng.randint(1, 8)
        elif op == 7:
            numbers = list(_NUMBER.finditer(bytes(out)))
            if numbers:
                m = rng.choice(numbers)
                out[m.start() : m.end()] = rng.choice(WEIRD_NUMBERS)
        else:
            out[i : i + 1] = b""  # one byte gone
    return bytes(out)


def _safe_text(text: str) -> bool:
    lowered = text.lower()
    return not any(word in lowered for word in FORBIDDEN)


# -- REST requests --------------------------------------------------------------------------


@dataclass(frozen=True)
class RestCase:
    kind: str
    method: str
    target: str  # the request target as sent: printable ASCII
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def describe(self) -> str:
        headers = "".join(f"\n    {k}: {v[:200]}" for k, v in self.headers)
        body = self.body if len(self.body) <= 400 else self.body[:400] + b"..."
        return (
            f"[{self.kind}] {self.method} {self.target[:300]}"
            f"{' ...' if len(self.target) > 300 else ''}{headers}\n    body "
            f"({len(self.body)} bytes): {body!r}"
        )


def _tfs_bodies() -> list[tuple[str, Json]]:
    image = TOOLBOX_IMAGE[:1].tolist()
    return [
        ("/v1/models/half_plus_two:predict", {"instances": [1.0, 2.0, 5.0]}),
        ("/v1/models/half_plus_two:predict", {"inputs": [1.0, 2.0]}),
        (
            "/v1/models/half_plus_two:predict",
            {"signature_name": "serving_default", "inputs": {"x": [[1.0], [2.0]]}},
        ),
        ("/v1/models/half_plus_two:predict", {"instances": [{"x": [1.0]}, {"x": [2.0]}]}),
        ("/v1/models/half_plus_two_tf2:predict", {"instances": [[1.0], [2.0]]}),
        ("/v1/models/half_plus_two_2_versions/versions/123:predict", {"instances": [2.0]}),
        ("/v1/models/half_plus_two_2_versions/labels/canary:predict", {"instances": [2.0]}),
        ("/v1/models/half_plus_three:predict", {"instances": [1.0]}),
        ("/v1/models/toolbox:predict", {"instances": image}),
        ("/v1/models/toolbox:predict", {"inputs": {"x": image}}),
        (
            "/v1/models/toolbox:predict",
            {"signature_name": "echo", "instances": [{"b64": "YWI="}, {"b64": "Yw=="}]},
        ),
        (
            "/v1/models/toolbox:predict",
            {"signature_name": "echo", "inputs": {"text": [{"b64": "YWI="}, "c"]}},
        ),
        (
            "/v1/models/half_plus_two:classify",
            {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]},
        ),
        (
            "/v1/models/half_plus_two:classify",
            {"signature_name": "classify_x_to_y", "context": {"x": 1.0}, "examples": [{}]},
        ),
        (
            "/v1/models/half_plus_two:regress",
            {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}, {"x": [3.0]}]},
        ),
        (
            "/v1/models/half_plus_two:regress",
            {"signature_name": "regress_x_to_y", "examples": [{"x": {"b64": "YWI="}}]},
        ),
    ]


def _v2_bodies() -> list[tuple[str, Json]]:
    image = TOOLBOX_IMAGE[:1]
    x = {
        "name": "x",
        "shape": list(image.shape),
        "datatype": "FP32",
        "data": image.ravel().tolist(),
    }
    return [
        ("/v2/models/toolbox/infer", {"inputs": [x], "outputs": [{"name": "y"}]}),
        ("/v2/models/toolbox/versions/1/infer", {"id": "fuzz", "inputs": [x]}),
        (
            "/v2/models/toolbox/infer",
            {
                "inputs": [
                    {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["ab", "c"]}
                ],
                "parameters": {"signature_name": "echo"},
            },
        ),
        (
            "/v2/models/half_plus_two/infer",
            {"inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP32", "data": [1.0, 2.0]}]},
        ),
        (
            "/v2/models/half_plus_two_2_versions/versions/124/infer",
            {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [[1.0]]}]},
        ),
        ("/v2/repository/index", {"ready": True}),
    ]


TFS_BODIES = _tfs_bodies()
V2_BODIES = _v2_bodies()
JSON_BODIES = TFS_BODIES + V2_BODIES
GET_PATHS = (
    "/v1/models/half_plus_two",
    "/v1/models/half_plus_two/metadata",
    "/v1/models/half_plus_two_2_versions/labels/canary",
    "/v1/models/half_plus_two_2_versions/versions/124/metadata",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/toolbox",
    "/v2/models/toolbox/versions/1",
    "/v2/models/toolbox/ready",
    "/v2/models/toolbox/config",
    "/v2/models/toolbox/stats",
    "/v2/models/stats",
    "/metrics",
    "/",
)
PATH_TEMPLATES = (
    "/v1/models/{name}",
    "/v1/models/{name}/versions/{version}",
    "/v1/models/{name}/labels/{label}",
    "/v1/models/{name}{suffix}",
    "/v1/models/{name}/versions/{version}{suffix}",
    "/v1/models/{name}/labels/{label}{suffix}",
    "/v1/models/{name}/version/{version}{suffix}",
    "/v1/models{suffix}",
    "/v1/{junk}",
    "/v1",
    "/v2",
    "/v2/",
    "/v2/health/{junk}",
    "/v2/models/{name}",
    "/v2/models/{name}/versions/{version}",
    "/v2/models/{name}/ready",
    "/v2/models/{name}/versions/{version}/ready",
    "/v2/models/{name}/config",
    "/v2/models/{name}/versions/{version}/config",
    "/v2/models/{name}/stats",
    "/v2/models/{name}/versions/{version}/stats",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
    "/v2/models/{name}/{junk}",
    "/v2/repository/index",
    "/v2/repository/models/{junk_name}/load",
    "/v2/repository/models/{junk_name}/unload",
    "/v2/repository/{junk}",
    "/metrics",
    "/monitoring/prometheus/metrics",
    "/{junk}",
)
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "FOO", "get")


def _quote_target(text: str) -> str:
    """Printable ASCII as httpx sends it: anything else percent-encoded, '%' kept."""
    return _pct(text, "/:%?&=;+!$'()*,@~[]#")


def _pct(text: str, safe: str) -> str:
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe=safe)


def _path(rng: random.Random) -> str:
    template = rng.choice(PATH_TEMPLATES)
    name = rng.choice(SAFE_MODELS) if rng.random() < 0.6 else rng.choice(JUNK_NAMES)
    path = template.format(
        name=name,
        version=rng.choice(REAL_VERSIONS) if rng.random() < 0.4 else rng.choice(JUNK_VERSIONS),
        label=rng.choice(LABELS),
        suffix=rng.choice(SUFFIXES),
        junk=_junk_string(rng, 12).replace("/", "%2F"),
        junk_name=rng.choice(JUNK_NAMES),
    )
    for _ in range(rng.choice((0, 0, 1, 2))):
        op = rng.randrange(8)
        at = rng.randrange(len(path) + 1)
        if op == 0:
            path = path[:at] + rng.choice(("/../", "/./", "/..", "%2e%2e/", "%2F..%2F")) + path[at:]
        elif op == 1:
            path = path.replace("/", "//", 1)
        elif op == 2:
            path += "/"
        elif op == 3 and path:
            path = path[:at] + _pct(path[at : at + 3], "") + path[at + 3 :]
        elif op == 4:
            path = path.upper() if rng.random() < 0.5 else path.swapcase()
        elif op == 5:
            path += "?" + rng.choice(("x=1", "%zz", "&&==", "signature_name=echo", "a" * 3000))
        elif op == 6:
            path += "#" + _junk_string(rng, 6)
        else:
            path = path[:at] + "%" + rng.choice(("", "0", "zz", "00", "2", "ff", "C0")) + path[at:]
    target = _quote_target(path)
    return target if target.startswith("/") else "/" + target


_VISIBLE = [chr(c) for c in range(0x21, 0x7F)]


def _header_value(rng: random.Random, longest: int = 40) -> str:
    return "".join(rng.choices(_VISIBLE, k=rng.randint(1, longest)))


def _random_headers(rng: random.Random) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for _ in range(rng.choice((0, 1, 1, 2, 3, 8))):
        roll = rng.randrange(9)
        if roll == 0:
            headers.append(("content-type", rng.choice(CONTENT_TYPES)))
        elif roll == 1:
            headers.append(("accept", rng.choice(("*/*", "text/html", "application/xml", "x"))))
        elif roll == 2:
            headers.append(("content-encoding", rng.choice(("gzip", "br", "deflate", "x"))))
        elif roll == 3:
            headers.append(("inference-header-content-length", rng.choice(IHCL_LIES)))
        elif roll == 4:
            headers.append(("authorization", rng.choice(("Bearer x", "Basic Zm9v", "x" * 3000))))
        elif roll == 5:
            headers.append(
                ("host", rng.choice(("evil.example", "127.0.0.1:1", "[::1]", "a" * 300)))
            )
        elif roll == 6:
            headers.append(("accept-encoding", rng.choice(("gzip", "br", "identity;q=0", "*"))))
        elif roll == 7:
            headers.append(("x-forwarded-for", _header_value(rng)))
        else:
            name = "x-fuzz-" + "".join(rng.choice("abcdefghij-_0123") for _ in range(6))
            headers.append((name, _header_value(rng, rng.choice((10, 100, 4000)))))
    return headers


def _json_headers(rng: random.Random) -> list[tuple[str, str]]:
    return [("content-type", "application/json")] if rng.random() < 0.8 else []


# Many rows of one float (for half_plus_two: fine, only big).
_MANY_ROWS = tuple(
    json.dumps({key: [1.0] * size}).encode()
    for key in ("instances", "inputs")
    for size in (10_000, 100_000)
)


def _junk_json(rng: random.Random) -> bytes:
    """Truncated, deeply nested, huge-number, NaN, wrong-type, not-quite JSON."""
    _, valid = rng.choice(JSON_BODIES)
    encoded = json.dumps(valid).encode()
    roll = rng.randrange(12)
    if roll == 0:
        return encoded[: rng.randrange(len(encoded))]
    if roll == 1:
        depth = rng.choice((10, 64, 200, 512, 1023, 1024, 1025, 5000, 100000))
        inner = b"[" * depth + b"1.0" + b"]" * (depth if rng.random() < 0.7 else 0)
        key = rng.choice((b"instances", b"inputs", b"examples", b"data"))
        return b'{"' + key + b'": ' + inner + b"}" if rng.random() < 0.8 else inner
    if roll == 2:
        depth = rng.choice((10, 200, 1025, 20000))
        return b'{"a":' * depth + b"1" + b"}" * depth
    if roll == 3:
        number = rng.choice(WEIRD_NUMBERS)
        key = rng.choice((b"instances", b"inputs"))
        return b'{"' + key + b'": [' + number + b"]}"
    if roll == 4:
        return _dumps(rng, _replace_somewhere(rng, valid, _json_value(rng)))
    if roll == 5:
        return _dumps(rng, _json_value(rng))
    if roll == 6:
        return rng.choice((b"", b" ", b"\n\t ", b"null", b"[]", b"{}", b'""', b"0", b"true"))
    if roll == 7:
        return b"\xef\xbb\xbf" + encoded  # a byte-order mark
    if roll == 8:
        return json.dumps(valid).encode(rng.choice(("utf-16", "utf-32", "utf-16-le")))
    if roll == 9:
        return encoded + rng.choice((b"garbage", encoded, b"\x00", b"}", b",", b"\n{}"))
    if roll == 10:
        return rng.choice(_MANY_ROWS)
    # duplicate keys, the later one of the wrong type
    return (
        encoded[:-1]
        + b', "'
        + rng.choice(list(valid)).encode()
        + b'": '
        + _dumps(rng, _json_value(rng))
        + b"}"
    )


DATATYPE_LIES: tuple[Json, ...] = (
    *("FP64", "FP16", "BF16", "INT64", "INT8", "UINT64", "BOOL", "BYTES", "FP32", "fp32"),
    *("FP99", "", 5, None, ["FP32"]),
)


def _v2_binary(rng: random.Random) -> tuple[str, list[tuple[str, str]], bytes]:
    """KServe V2's binary tensor extension, with lies in the header length, the sizes, the
    datatypes and the shapes."""
    roll = rng.randrange(3)
    if roll == 0:
        path = "/v2/models/toolbox/infer"
        raw = TOOLBOX_IMAGE[:1].tobytes()
        tensor: dict[str, Json] = {"name": "x", "shape": [1, 2, 2, 3], "datatype": "FP32"}
        request: dict[str, Json] = {"outputs": [{"name": "y", "parameters": {"binary_data": True}}]}
    elif roll == 1:
        path = "/v2/models/toolbox/infer"
        raw = b"".join(struct.pack("<I", len(s)) + s for s in (b"ab", b"c"))
        tensor = {"name": "text", "shape": [2], "datatype": "BYTES"}
        request = {"parameters": {"signature_name": "echo"}}
    else:
        path = "/v2/models/half_plus_two/infer"
        raw = np.array([[1.0], [2.0]], np.float32).tobytes()
        tensor = {"name": "x", "shape": [2, 1], "datatype": "FP32"}
        request = {"parameters": {"binary_data_output": True}}
    size: Json = len(raw)
    lies = rng.sample(range(9), rng.randint(1, 3))
    if 0 in lies:
        size = rng.choice(
            (len(raw) + 1, len(raw) - 1, 0, -1, 2**31, 2**63 - 1, 2**64, "12", 1.5, None, True)
        )
    if 1 in lies:
        tensor["datatype"] = rng.choice(DATATYPE_LIES)
    if 2 in lies:
        tensor["shape"] = rng.choice(
            (
                [1, 1, 1, 4],
                [-1, 3],
                [0, 2, 2, 3],
                [],
                [2**40, 1, 1, 3],
                [2**31, 2**31, 2**31, 3],
                [2**62, 2**62, 1, 3],
                [-(2**63), 1],
                [2**64],
                [1.5, 2],
                ["1", "2"],
                "abc",
                None,
                [1] * 300,
                [3, -4],
            )
        )
    if 3 in lies:
        raw = rng.choice((raw[: rng.randrange(len(raw))], raw + rng.randbytes(9), rng.randbytes(7)))
    if 4 in lies and tensor["datatype"] == "BYTES":
        raw = struct.pack("<I", rng.choice((2**32 - 1, 2**31, 100))) + raw[4:]
    if 5 in lies:
        tensor["data"] = rng.choice(([1.0, 2.0], "x", None, [[1.0]]))
    if 6 in lies:
        tensor["name"] = rng.choice(("nope", "", None, 5, "x" * 5000))
    tensor["parameters"] = {"binary_data_size": size}
    if 7 in lies:
        tensor["parameters"] = rng.choice(([], None, "x", {"binary_data_size": size, "x": {}}))
    request["inputs"] = [tensor] if 8 not in lies else [tensor, dict(tensor)]
    header = json.dumps(request).encode()
    body = header + raw
    length: Json = len(header)
    if rng.random() < 0.5:
        length = rng.choice(
            (len(header) + 1, len(header) - 1, len(body), len(body) + 1, len(body) * 1000)
        )
        length = rng.choice((length, rng.choice(IHCL_LIES)))
    headers = [("inference-header-content-length", str(length))]
    if rng.random() < 0.5:
        headers.append(("content-type", rng.choice(("application/octet-stream", *CONTENT_TYPES))))
    return path, headers, body


def _rest_case(rng: random.Random) -> RestCase:
    roll = rng.random()
    if roll < 0.12:  # random bytes to a real endpoint
        path, _ = rng.choice(JSON_BODIES)
        size = rng.choice((0, 1, 7, 64, 512, 4096, 65536))
        headers = [("content-type", rng.choice(CONTENT_TYPES))]
        if path.startswith("/v2/") and rng.random() < 0.5:
            headers.append(("inference-header-content-length", str(rng.randint(-5, size + 5))))
        return RestCase("random-bytes", "POST", path, tuple(headers), rng.randbytes(size))
    if roll < 0.30:
        path, _ = rng.choice(JSON_BODIES)
        return RestCase("junk-json", "POST", path, tuple(_json_headers(rng)), _junk_json(rng))
    if roll < 0.55:  # a valid body, mutated
        path, valid = rng.choice(JSON_BODIES)
        body = _mutate(rng, json.dumps(valid).encode())
        return RestCase("mutated", "POST", path, tuple(_json_headers(rng)), body)
    if roll < 0.65:  # a valid body with one value of the wrong type
        path, valid = rng.choice(JSON_BODIES)
        body = _dumps(rng, _replace_somewhere(rng, valid, _json_value(rng)))
        return RestCase("wrong-type", "POST", path, tuple(_json_headers(rng)), body)
    if roll < 0.77:
        path, headers, body = _v2_binary(rng)
        if rng.random() < 0.3:
            body = _mutate(rng, body)
        return RestCase("v2-binary", "POST", path, tuple(headers), body)
    if roll < 0.90:  # random paths
        method = rng.choice(("GET", "GET", "POST", "POST", *METHODS))
        body = b""
        if method not in ("GET", "HEAD") and rng.random() < 0.7:
            body = json.dumps(rng.choice(JSON_BODIES)[1]).encode()
        return RestCase("path", method, _path(rng), tuple(_json_headers(rng)), body)
    if roll < 0.95:  # wrong methods on real routes
        if rng.random() < 0.5:
            path, valid = rng.choice(JSON_BODIES)
            method = rng.choice(("GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "FOO"))
            body = json.dumps(valid).encode() if rng.random() < 0.5 else b""
        else:
            path, method, body = rng.choice(GET_PATHS), rng.choice(METHODS[1:]), b""
        return RestCase("method", method, path, (), body)
    # random headers on a valid request
    path, valid = rng.choice(JSON_BODIES)
    headers = _json_headers(rng) + _random_headers(rng)
    return RestCase("headers", "POST", path, tuple(headers), json.dumps(valid).encode())


def _safe_rest(case: RestCase) -> bool:
    decoded = urllib.parse.unquote(case.target, errors="replace")
    if not _safe_text(decoded) or not _safe_text(case.body.decode("latin-1")):
        return False
    if not all(_safe_text(v) for _, v in case.headers):
        return False
    if "repository" in decoded.lower():
        segments = set(re.split(r"[/?#;]", decoded))
        if segments & set(MODELS):
            return False  # never unload (or reload) a model other tests use
    return True


def rest_cases(count: int, seed: int) -> list[RestCase]:
    rng = random.Random(seed)
    cases: list[RestCase] = []
    while len(cases) < count:
        case = _rest_case(rng)
        if _safe_rest(case):
            cases.append(case)
    return cases


# -- raw HTTP/1.1 ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RawCase:
    kind: str
    data: bytes
    half_close: bool  # shut our side down after sending: the server sees EOF

    def describe(self) -> str:
        data = self.data if len(self.data) <= 600 else self.data[:600] + b"..."
        return f"[raw {self.kind}] {len(self.data)} bytes on a socket: {data!r}"


def _raw_case(rng: random.Random) -> RawCase:
    path, valid = rng.choice(JSON_BODIES)
    body = json.dumps(valid).encode()
    target = path.encode()
    version = b"HTTP/1.1"
    lines = [b"Host: 127.0.0.1", b"Connection: close", b"Content-Type: application/json"]
    length: bytes | None = str(len(body)).encode()
    half_close = False
    kind = rng.choice(
        (
            "short-body",
            "long-body",
            "length-junk",
            "length-twice",
            "chunked",
            "chunked-junk",
            "chunked-and-length",
            "target",
            "version",
            "header-junk",
            "ihcl",
            "pipelined",
            "expect",
        )
    )
    if kind == "short-body":  # Content-Length says more than comes, then EOF
        length = str(len(body) + rng.choice((1, 100, 10**6, 10**12))).encode()
        body = body[: rng.randrange(len(body) + 1)]
        half_close = True
    elif kind == "long-body":  # Content-Length says less: the route reads a prefix
        length = str(rng.randrange(len(body))).encode()
    elif kind == "length-junk":
        length = rng.choice(
            (b"-1", b"-0", b"abc", b"1e3", b"0x10", b"+5", b" 5", b"", b"9" * 30, b"\xff5")
        )
    elif kind == "length-twice":
        lines.append(b"Content-Length: " + str(len(body) + rng.choice((-1, 1, 7))).encode())
    elif kind in ("chunked", "chunked-junk", "chunked-and-length"):
        if kind != "chunked-and-length":
            length = None
        lines.append(b"Transfer-Encoding: chunked")
        pieces = [body[i : i + 13] for i in range(0, len(body), 13)]
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
        if kind == "chunked-junk":
            junk = rng.choice(
                (b"zz\r\n", b"ffffffffffffffffffff\r\n", b"-1\r\n", b"5\r\nab\r\n", b"5;x\r\n")
            )
            at = rng.randrange(len(chunks) + 1)
            chunks = chunks[:at] + junk + chunks[at:]
            half_close = rng.random() < 0.5
        body = chunks + (b"0\r\n\r\n" if kind != "chunked-junk" or rng.random() < 0.5 else b"")
    elif kind == "target":
        target = rng.choice(
            (
                "/v1/models/模型:predict".encode(),
                "/v2/models/ünï/infer".encode(),
                b"/v1/models/half_plus_two\x00:predict",
                b"/v1/models/half plus two:predict",
                b"/v1/models/half_plus_two\t:predict",
                b"/v1/models/\xff\xfe:predict",
                b"*",
                b"http://evil.example/v1/models/half_plus_two:predict",
                b"//v1/models/half_plus_two:predict",
                b"v1/models/half_plus_two:predict",
                b"/v1/models/" + b"n" * 70000 + b":predict",
                b"",
            )
        )
    elif kind == "version":
        version = rng.choice((b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.2", b"HTTX/1.1", b"HTTP/9", b""))
    elif kind == "header-junk":
        lines.append(
            rng.choice(
                (
                    b"NoColonHere",
                    b"Foo : bar",
                    b" folded: continuation",
                    b"X-Null: a\x00b",
                    b"X-High: \xff\xfe",
                    b"X-Big: " + b"v" * 100_000,
                    b": empty-name",
                    b"Content-Type: \xff",
                    b"Inference-Header-Content-Length: \xff\xfe",
                )
            )
        )
        if rng.random() < 0.2:
            lines += [b"X-Many-%d: v" % i for i in range(rng.choice((200, 2000)))]
    elif kind == "ihcl":
        target = b"/v2/models/toolbox/infer"
        lines.append(b"Inference-Header-Content-Length: " + rng.choice(IHCL_LIES).encode())
    elif kind == "pipelined":
        lines[1] = b"Connection: keep-alive"
        body += rng.choice((b"GET / HTTP/1.1\r\n\r\n", b"\x00\xff garbage", rng.randbytes(64)))
    else:
        lines.append(b"Expect: 100-continue")
    if length is not None:
        lines.append(b"Content-Length: " + length)
    head = rng.choice((b"POST", b"POST", b"GET", b"PUT")) + b" " + target + b" " + version
    data = b"\r\n".join([head, *lines]) + b"\r\n\r\n" + body
    return RawCase(kind, data, half_close)


def raw_cases(count: int, seed: int) -> list[RawCase]:
    rng = random.Random(seed)
    cases: list[RawCase] = []
    while len(cases) < count:
        case = _raw_case(rng)
        if _safe_text(case.data.decode("latin-1")):
            cases.append(case)
    return cases


# -- gRPC requests --------------------------------------------------------------------------

_SERVICES = (
    prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"],
    model_service_pb2.DESCRIPTOR.services_by_name["ModelService"],
    service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"],
)
# Every unary method of the three services, with its request and response classes.
GRPC_METHODS: dict[str, tuple[type[pb_message.Message], type[pb_message.Message]]] = {
    f"/{service.full_name}/{method.name}": (
        message_factory.GetMessageClass(method.input_type),
        message_factory.GetMessageClass(method.output_type),
    )
    for service in _SERVICES
    for method in service.methods
    if not method.client_streaming and not method.server_streaming
}
# Names no service has: UNIMPLEMENTED.
JUNK_METHODS = (
    "/tensorflow.serving.PredictionService/Nope",
    "/tensorflow.serving.PredictionService/predict",
    "/inference.GRPCInferenceService/ModelStreamInfer",  # a stream called as unary
    "/nope.Service/Predict",
    "/inference.GRPCInferenceService/",
    "/x",
)
RELOAD = "/tensorflow.serving.ModelService/HandleReloadConfigRequest"
REPOSITORY_CHANGES = (
    "/inference.GRPCInferenceService/RepositoryModelLoad",
    "/inference.GRPCInferenceService/RepositoryModelUnload",
)


@dataclass(frozen=True)
class GrpcCase:
    kind: str
    method: str
    payload: bytes
    metadata: tuple[tuple[str, str | bytes], ...] = ()

    def describe(self) -> str:
        payload = self.payload if len(self.payload) <= 400 else self.payload[:400] + b"..."
        parsed = ""
        classes = GRPC_METHODS.get(self.method)
        if classes is not None:
            try:
                message = classes[0].FromString(self.payload)
                text = text_format.MessageToString(message, as_one_line=True)
                parsed = f"\n    parses as: {text[:400]}"
            except pb_message.DecodeError:
                parsed = "\n    (does not parse as the method's request)"
        meta = f"\n    metadata {list(self.metadata)!r}"[:300] if self.metadata else ""
        return (
            f"[grpc {self.kind}] {self.method}{meta}\n    request ({len(self.payload)} bytes): "
            f"{payload!r}{parsed}"
        )


def _tensor(values: np.ndarray, dtype: int = 1) -> Any:
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

    return tensor_pb2.TensorProto(
        dtype=dtype,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in values.shape]
        ),
        tensor_content=values.tobytes(),
    )


def _examples(values: Sequence[float]) -> Any:
    from tensorflow.core.example import example_pb2, feature_pb2

    return [
        example_pb2.Example(
            features=feature_pb2.Features(
                feature={"x": feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[v]))}
            )
        )
        for v in values
    ]


def _valid_grpc() -> list[tuple[str, pb_message.Message]]:
    tfs = "/tensorflow.serving.PredictionService/"
    v2 = "/inference.GRPCInferenceService/"
    out: list[tuple[str, pb_message.Message]] = []

    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "half_plus_two"
    predict.inputs["x"].CopyFrom(_tensor(np.array([[1.0], [2.0]], np.float32)))
    out.append((tfs + "Predict", predict))
    floats = predict_pb2.PredictRequest()
    floats.model_spec.name = "half_plus_two_2_versions"
    floats.model_spec.version_label = "canary"
    floats.inputs["x"].dtype = 1
    floats.inputs["x"].tensor_shape.dim.add().size = 3
    floats.inputs["x"].float_val.extend([1.0, 2.0, 3.0])
    floats.output_filter.append("y")
    out.append((tfs + "Predict", floats))
    image = predict_pb2.PredictRequest()
    image.model_spec.name = "toolbox"
    image.model_spec.version.value = 1
    image.inputs["x"].CopyFrom(_tensor(TOOLBOX_IMAGE[:1]))
    out.append((tfs + "Predict", image))
    echo = predict_pb2.PredictRequest()
    echo.model_spec.name = "toolbox"
    echo.model_spec.signature_name = "echo"
    echo.inputs["text"].dtype = 7  # DT_STRING
    echo.inputs["text"].tensor_shape.dim.add().size = 2
    echo.inputs["text"].string_val.extend([b"ab", b"c"])
    out.append((tfs + "Predict", echo))

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "half_plus_two"
    classify.model_spec.signature_name = "classify_x_to_y"
    classify.input.example_list.examples.extend(_examples([2.0, 4.0]))
    out.append((tfs + "Classify", classify))
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "half_plus_two"
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.example_list_with_context.examples.extend(_examples([2.0]))
    regress.input.example_list_with_context.context.CopyFrom(_examples([1.0])[0])
    out.append((tfs + "Regress", regress))
    multi = inference_pb2.MultiInferenceRequest()
    for method, signature in (("regress", "regress_x_to_y"), ("classify", "classify_x_to_y")):
        task = multi.tasks.add()
        task.model_spec.name = "half_plus_two"
        task.model_spec.signature_name = signature
        task.method_name = f"tensorflow/serving/{method}"
    multi.input.example_list.examples.extend(_examples([2.0]))
    out.append((tfs + "MultiInference", multi))
    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name = "half_plus_two"
    metadata.metadata_field.append("signature_def")
    out.append((tfs + "GetModelMetadata", metadata))
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "half_plus_two_2_versions"
    status.model_spec.version.value = 124
    out.append(("/tensorflow.serving.ModelService/GetModelStatus", status))

    out.append((v2 + "ServerLive", service_pb2.ServerLiveRequest()))
    out.append((v2 + "ServerReady", service_pb2.ServerReadyRequest()))
    out.append((v2 + "ServerMetadata", service_pb2.ServerMetadataRequest()))
    out.append((v2 + "ModelReady", service_pb2.ModelReadyRequest(name="toolbox", version="1")))
    out.append((v2 + "ModelMetadata", service_pb2.ModelMetadataRequest(name="toolbox")))
    out.append((v2 + "ModelConfig", service_pb2.ModelConfigRequest(name="half_plus_two")))
    out.append((v2 + "ModelStatistics", service_pb2.ModelStatisticsRequest(name="toolbox")))
    out.append((v2 + "RepositoryIndex", service_pb2.RepositoryIndexRequest(ready=True)))
    out.append((v2 + "RepositoryModelLoad", service_pb2.RepositoryModelLoadRequest(model_name="n")))
    out.append(
        (v2 + "RepositoryModelUnload", service_pb2.RepositoryModelUnloadRequest(model_name="n"))
    )
    infer = service_pb2.ModelInferRequest(model_name="toolbox", id="fuzz")
    x = infer.inputs.add(name="x", datatype="FP32", shape=[1, 2, 2, 3])
    x.contents.fp32_contents.extend(TOOLBOX_IMAGE[:1].ravel().tolist())
    infer.outputs.add(name="y")
    out.append((v2 + "ModelInfer", infer))
    raw = service_pb2.ModelInferRequest(model_name="half_plus_two", model_version="123")
    raw.inputs.add(name="x", datatype="FP32", shape=[2, 1])
    raw.raw_input_contents.append(np.array([1.0, 2.0], np.float32).tobytes())
    out.append((v2 + "ModelInfer", raw))
    text = service_pb2.ModelInferRequest(model_name="toolbox")
    text.parameters["signature_name"].string_param = "echo"
    t = text.inputs.add(name="text", datatype="BYTES", shape=[2])
    t.contents.bytes_contents.extend([b"ab", b"c"])
    out.append((v2 + "ModelInfer", text))
    return out


VALID_GRPC = _valid_grpc()


def _proto_string(rng: random.Random, longest: int = 24) -> str:
    """A junk string a proto string field holds (valid UTF-8: no lone surrogates)."""
    return _junk_string(rng, longest).encode("utf-8", "ignore").decode()


def _junk_name(rng: random.Random) -> str:
    return urllib.parse.unquote(rng.choice(JUNK_NAMES))


def _lie_tensor(rng: random.Random, tensor: Any) -> None:
    roll = rng.randrange(8)
    if roll == 0:
        tensor.dtype = rng.choice((0, 2, 3, 7, 9, 10, 14, 19, 20, 21, 23, 30, 101, 999))
    elif roll == 1:
        del tensor.tensor_shape.dim[:]
        # No size whose array could be allocated: a TensorProto with fewer values than
        # its shape repeats the last one, so [2**31] with one float_val is 8 GiB filled
        # (the server trying it is one of the findings; 2**40 fails at once).
        for _ in range(rng.choice((0, 1, 4, 64, 300))):
            tensor.tensor_shape.dim.add().size = rng.choice(
                (-1, 0, 1, 3, 2**40, 2**62, -(2**62), 2**63 - 1)
            )
    elif roll == 2:
        tensor.tensor_content = rng.randbytes(rng.choice((0, 1, 3, 7, 13, 4096)))
    elif roll == 3:
        tensor.float_val.extend([float("nan"), float("inf"), 1e38] * rng.randint(1, 50))
    elif roll == 4:
        tensor.string_val.extend([rng.randbytes(5), b""])
    elif roll == 5:
        tensor.tensor_shape.unknown_rank = True
    elif roll == 6:
        tensor.int64_val.extend([2**63 - 1, -(2**63)])
        tensor.half_val.extend([0xFFFF, 2**31 - 1])
    else:
        dim = tensor.tensor_shape.dim.add()
        dim.size = 1
        dim.name = _proto_string(rng)


def _lie_structured(rng: random.Random, method: str, request: pb_message.Message) -> None:
    """One lie at the protocol level: a field set to what the server must refuse."""
    name = method.rsplit("/", 1)[1]
    if hasattr(request, "model_spec") and rng.random() < 0.4:
        spec = request.model_spec
        roll = rng.randrange(4)
        if roll == 0:
            spec.name = _junk_name(rng) if rng.random() < 0.7 else rng.choice(SAFE_MODELS).upper()
        elif roll == 1:
            spec.version.value = rng.choice((-1, 0, 99, 2**63 - 1, -(2**63)))
        elif roll == 2:
            spec.version_label = rng.choice(LABELS)
        else:
            spec.signature_name = rng.choice(SIGNATURE_NAMES)
        return
    if name == "Predict":
        roll = rng.random()
        if roll < 0.5 and request.inputs:
            _lie_tensor(rng, request.inputs[rng.choice(list(request.inputs))])
        elif roll < 0.65:
            request.inputs[_proto_string(rng, 8)].CopyFrom(_tensor(np.zeros(2, np.float32)))
        elif roll < 0.8:
            request.output_filter.append(rng.choice(("nope", "", "y", "x")))
        else:
            request.ClearField("inputs")
    elif name in ("Classify", "Regress", "MultiInference"):
        examples = request.input.example_list.examples or (
            request.input.example_list_with_context.examples
        )
        roll = rng.random()
        if roll < 0.3 and examples:
            feature = examples[0].features.feature["x"]
            choice = rng.randrange(4)
            if choice == 0:
                feature.bytes_list.value.append(rng.randbytes(4))
            elif choice == 1:
                feature.int64_list.value.extend([2**63 - 1, -1])
            elif choice == 2:
                feature.float_list.value.extend([float("nan")] * rng.choice((2, 1000)))
            else:
                feature.Clear()
        elif roll < 0.5:
            request.input.Clear()
        elif roll < 0.65:
            examples.extend(_examples([1.0] * rng.choice((0, 100, 2000))))
        elif roll < 0.8:
            request.input.example_list.examples.add().features.feature[_proto_string(rng, 6)]
        elif name == "MultiInference":
            task = request.tasks.add()
            task.model_spec.name = rng.choice(("half_plus_two", "half_plus_three", "nope"))
            task.method_name = rng.choice(
                ("tensorflow/serving/predict", "nope", "", "tensorflow/serving/regress")
            )
        else:
            request.input.example_list.examples.add()
    elif name == "ModelInfer":
        roll = rng.randrange(10)
        inputs = request.inputs
        if roll == 0 and inputs:
            inputs[0].datatype = rng.choice(
                ("FP64", "INT64", "INT8", "BOOL", "BYTES", "FP16", "BF16", "fp32", "FP99", "")
            )
        elif roll == 1 and inputs:
            del inputs[0].shape[:]
            inputs[0].shape.extend(
                rng.choice(([], [-1], [0], [2**31, 2**31, 2**31], [2**62, 4], [1] * 300, [-5, 3]))
            )
        elif roll == 2:
            request.raw_input_contents.append(rng.randbytes(rng.choice((0, 3, 12, 99))))
        elif roll == 3 and inputs:
            inputs[0].contents.bytes_contents.append(rng.randbytes(6))
            inputs[0].contents.int64_contents.append(2**63 - 1)
        elif roll == 4:
            request.model_version = rng.choice(JUNK_VERSIONS).replace("\x00", "")
        elif roll == 5:
            parameter = request.parameters["signature_name"]
            if rng.random() < 0.5:
                parameter.int64_param = 5
            else:
                parameter.string_param = rng.choice(SIGNATURE_NAMES)
        elif roll == 6:
            request.outputs.add(name=rng.choice(("nope", "", "y", "x")))
            request.outputs[-1].parameters["binary_data"].bool_param = True
        elif roll == 7 and inputs:
            inputs.add().CopyFrom(inputs[0])
        elif roll == 8:
            request.ClearField("inputs")
        else:
            request.id = _proto_string(rng, 100)
    elif name in ("ModelReady", "ModelMetadata", "ModelConfig", "ModelStatistics"):
        if rng.random() < 0.5:
            request.name = _junk_name(rng)
        else:
            request.version = rng.choice(JUNK_VERSIONS).replace("\x00", "")
    elif name == "GetModelMetadata":
        request.metadata_field.append(rng.choice(("nope", "", "signature_def", "x" * 1000)))
    elif name in ("RepositoryModelLoad", "RepositoryModelUnload"):
        request.model_name = _junk_name(rng)
        if rng.random() < 0.5:
            request.parameters["config"].string_param = rng.choice(("{}", "x", '{"backend": 1}'))
    elif name == "RepositoryIndex":
        request.repository_name = _proto_string(rng)
    else:
        request.ParseFromString(rng.randbytes(0))


def _random_metadata(rng: random.Random) -> tuple[tuple[str, str | bytes], ...]:
    out: list[tuple[str, str | bytes]] = []
    for _ in range(rng.randint(1, 4)):
        key = "".join(rng.choice("abcxyz019-_.") for _ in range(rng.randint(1, 12)))
        key = "x" + key.lower()
        if rng.random() < 0.3:
            out.append((key + "-bin", rng.randbytes(rng.randint(0, 64))))
        else:
            out.append((key, _header_value(rng, rng.choice((8, 200, 4000)))))
    if rng.random() < 0.3:
        out.append(("authorization", rng.choice(("Bearer x", "Basic Zm9v", ""))))
    if rng.random() < 0.2:
        out.append(("grpc-timeout", rng.choice(("1n", "99999999H", "x"))))
    return tuple(out)


def _grpc_case(rng: random.Random) -> GrpcCase:
    roll = rng.random()
    if roll < 0.03:
        method = rng.choice(JUNK_METHODS)
        return GrpcCase("junk-method", method, rng.randbytes(rng.randint(0, 64)))
    methods = sorted(GRPC_METHODS)
    if roll < 0.25:  # random bytes as the request of each method
        method = rng.choice(methods)
        size = rng.choice((0, 1, 2, 5, 16, 64, 256, 1024, 65536))
        kind = "random-bytes"
        payload = rng.randbytes(size)
        if rng.random() < 0.3:  # a plausible first tag, then garbage
            payload = bytes([rng.choice((0x0A, 0x12, 0x1A, 0x22, 0x08, 0x10))]) + payload
        case = GrpcCase(kind, method, payload)
    elif roll < 0.55:  # a valid request's bytes, mutated
        method, valid = rng.choice(VALID_GRPC)
        case = GrpcCase("mutated", method, _mutate(rng, valid.SerializeToString()))
    else:  # a valid request with a lie a parser lets through
        method, valid = rng.choice(VALID_GRPC)
        request = copy.deepcopy(valid)
        for _ in range(rng.randint(1, 2)):
            _lie_structured(rng, method, request)
        case = GrpcCase("structured", method, request.SerializeToString())
    if rng.random() < 0.15:
        case = GrpcCase(case.kind, case.method, case.payload, _random_metadata(rng))
    return case


def _safe_grpc(case: GrpcCase) -> bool:
    # A proto's strings are bytes of its serialization as they are: checking the bytes
    # checks every string field of whatever they parse as.
    if not _safe_text(case.payload.decode("latin-1")):
        return False
    classes = GRPC_METHODS.get(case.method)
    if classes is None:
        return True
    try:
        message = classes[0].FromString(case.payload)
    except pb_message.DecodeError:
        return True
    if case.method == RELOAD:
        return False  # a request that parses would replace the server's configuration
    return not (case.method in REPOSITORY_CHANGES and message.model_name in MODELS)


def grpc_cases(count: int, seed: int) -> list[GrpcCase]:
    rng = random.Random(seed)
    cases: list[GrpcCase] = []
    # Every method once with no bytes and once with bytes that cannot parse (a
    # length-delimited field longer than the message).
    for method in sorted(GRPC_METHODS):
        cases.append(GrpcCase("empty", method, b""))
        cases.append(GrpcCase("unparseable", method, b"\x0a\x7fabc"))
    while len(cases) < count:
        case = _grpc_case(rng)
        if _safe_grpc(case):
            cases.append(case)
    return [c for c in cases if _safe_grpc(c)]


# -- findings -------------------------------------------------------------------------------


@dataclass
class Finding:
    reproducer: str  # the shortest seen
    count: int = 0
    where: set[str] = field(default_factory=set)  # the routes or methods it happened on


@dataclass
class Findings:
    """Each rule broken, by the shape of what was answered: the shortest reproducer, how
    often, and where."""

    seen: dict[tuple[str, str], Finding] = field(default_factory=dict)
    client_refused: int = 0  # cases the client library would not send
    answered: int = 0
    http_layer: int = 0  # refused by uvicorn's HTTP parser, before the app
    outcomes: Counter[str] = field(default_factory=Counter)  # status or code: how many

    def add(self, rule: str, shape: str, reproducer: str, where: str) -> None:
        finding = self.seen.setdefault((rule, shape), Finding(reproducer))
        if len(reproducer) < len(finding.reproducer):
            finding.reproducer = reproducer
        finding.count += 1
        finding.where.add(where)

    def report(self) -> str:
        lines = [f"{len(self.seen)} distinct findings:"]
        ordered = sorted(self.seen.items(), key=lambda item: (item[0][0], -item[1].count))
        for (rule, shape), finding in ordered[:SHOWN]:
            where = sorted(finding.where)
            places = ", ".join(where[:6]) + (
                f" and {len(where) - 6} more" if len(where) > 6 else ""
            )
            lines.append(
                f"- {rule}: {shape}\n    {finding.count}x, on {places}\n    {finding.reproducer}"
            )
        if len(ordered) > SHOWN:
            lines.append(f"... and {len(ordered) - SHOWN} more")
        return "\n".join(lines)


def _not_a_json_error(content: bytes) -> str | None:
    """Why ``content`` is not a JSON error body with an ``error`` string; None if it is."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not UTF-8 (so not JSON)"
    try:
        parsed = json.loads(text)
    except ValueError:
        return "the body is not JSON"
    if not isinstance(parsed, dict) or not isinstance(parsed.get("error"), str):
        return "the JSON has no 'error' string"
    return None


def _shape(text: str, limit: int = 70) -> str:
    """A message with its particulars (quoted values, numbers, methods) blanked, for
    grouping."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "Q", text)
    text = re.sub(r"\[/[^\]]*\]", "[METHOD]", text)
    return re.sub(r"\d+", "N", text)[:limit]


def _check_status(
    findings: Findings, status: int, content: bytes, method: str, reproducer: str, where: str
) -> None:
    snippet = content[:300].decode("utf-8", "replace")
    shown = f"{reproducer}\n    -> {status} {snippet}"
    if status == 400 and content.strip() in UVICORN_PARSE_ERRORS:
        # Refused by the HTTP parser before any route saw it (an unknown method such as
        # FOO, broken framing): see UVICORN_PARSE_ERRORS.
        findings.http_layer += 1
        return
    if status >= 500 and status not in OVERLOAD_STATUSES:
        findings.add(f"REST answered {status}", _shape(snippet), shown, where)
    elif status in OVERLOAD_STATUSES:
        rule = (
            f"REST answered {status} with {REST_IN_FLIGHT + RAW_IN_FLIGHT} in flight at most "
            "and no slow signature"
        )
        findings.add(rule, _shape(snippet), shown, where)
    elif status not in ALLOWED_STATUSES:
        rule = f"REST status {status} is not one of {sorted(ALLOWED_STATUSES)}"
        findings.add(rule, _shape(snippet), shown, where)
    if status >= 400 and method != "HEAD":
        why = _not_a_json_error(content)
        if why is not None:
            findings.add("REST error is not JSON with an 'error' string", why, shown, where)


def _where(target: str) -> str:
    """The route a target aims at, for grouping findings."""
    path = urllib.parse.unquote(target.split("?")[0], errors="replace")
    parts = path.split("/")
    if len(parts) > 3 and parts[1] in ("v1", "v2") and parts[2] in ("models", "repository"):
        tail = ":" + path.rsplit(":", 1)[1][:12] if ":" in parts[-1] else ""
        return f"/{parts[1]}/{parts[2]}/*/{parts[-1][-10:] if len(parts) > 4 else ''}{tail}"
    return path[:30]


async def _send_rest(client: httpx.AsyncClient, case: RestCase, findings: Findings) -> None:
    request = client.build_request(
        case.method,
        "/",
        headers=[(k, v.encode()) for k, v in case.headers],
        content=case.body,
        extensions={"target": case.target.encode("ascii")},
    )
    try:
        response = await client.send(request)
    except httpx.LocalProtocolError:
        findings.client_refused += 1  # httpx would not send it: not the server's doing
        return
    except httpx.TimeoutException:
        rule = f"REST no answer within {CALL_TIMEOUT_S:g} s (a hang)"
        findings.add(rule, "", case.describe(), _where(case.target))
        return
    except httpx.TransportError as exc:
        findings.add(
            "REST connection dropped without an answer",
            type(exc).__name__,
            f"{case.describe()}\n    -> {type(exc).__name__}: {exc}",
            _where(case.target),
        )
        return
    findings.answered += 1
    findings.outcomes[str(response.status_code)] += 1
    _check_status(
        findings,
        response.status_code,
        response.content,
        case.method,
        case.describe(),
        f"{case.method} {_where(case.target)}",
    )


def _first_response(data: bytes) -> tuple[int, bytes] | None:
    """The status and body of the first final response in ``data``."""
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return None
        status_line, *header_lines = head.split(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return None
        status = int(parts[1])
        length = None
        for line in header_lines:
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value.strip())
        if 100 <= status < 200:
            data = rest
            continue
        return status, rest if length is None else rest[:length]
    return None


async def _send_raw(host: str, port: int, case: RawCase, findings: Findings) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        findings.add("REST port refused a connection", type(exc).__name__, case.describe(), "")
        return
    received = b""
    try:
        writer.write(case.data)
        await writer.drain()
        if case.half_close:
            writer.write_eof()

        async def read_all() -> bytes:
            chunks = []
            while chunk := await reader.read(65536):
                chunks.append(chunk)
            return b"".join(chunks)

        received = await asyncio.wait_for(read_all(), CALL_TIMEOUT_S)
    except TimeoutError:
        # The server may wait for the rest of a body that was promised and never came.
        if not case.half_close and case.kind not in ("short-body", "chunked-junk", "expect"):
            rule = f"REST raw request not answered within {CALL_TIMEOUT_S:g} s (a hang)"
            findings.add(rule, "", case.describe(), case.kind)
        return
    except (ConnectionError, OSError):
        pass  # the server hung up on a request it could not parse: fine
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    findings.answered += 1
    answer = _first_response(received)
    if answer is None:
        return  # no response: the server closed the connection, allowed for broken framing
    status, content = answer
    findings.outcomes[f"raw {status}"] += 1
    _check_status(findings, status, content, "RAW", case.describe(), f"raw {case.kind}")


async def _send_grpc(channel: grpc.aio.Channel, case: GrpcCase, findings: Findings) -> None:
    call = channel.unary_unary(case.method)  # bytes in, bytes out
    try:
        answer = await call(case.payload, timeout=CALL_TIMEOUT_S, metadata=case.metadata or None)
    except grpc.aio.AioRpcError as exc:
        findings.answered += 1
        code = exc.code()
        findings.outcomes[code.name] += 1
        if code in GRPC_ALLOWED:
            return
        details = (exc.details() or "")[:160]
        rule = {
            grpc.StatusCode.INTERNAL: "gRPC answered INTERNAL",
            grpc.StatusCode.UNKNOWN: "gRPC answered UNKNOWN",
            grpc.StatusCode.DEADLINE_EXCEEDED: f"gRPC no answer within {CALL_TIMEOUT_S:g} s",
        }.get(code, f"gRPC answered {code.name}")
        shown = f"{case.describe()}\n    -> {code.name}: {details}"
        findings.add(rule, _shape(details), shown, case.method.rsplit("/", 1)[-1])
        return
    except (ValueError, TypeError):
        findings.client_refused += 1  # metadata grpcio will not send
        return
    findings.answered += 1
    findings.outcomes["OK"] += 1
    classes = GRPC_METHODS.get(case.method)
    if classes is not None:
        try:
            classes[1].FromString(answer)
        except pb_message.DecodeError:
            rule = "gRPC OK answer does not parse as the method's response"
            findings.add(rule, "", case.describe(), case.method)


async def _pool(
    cases: Iterable[Any],
    concurrency: int,
    send: Callable[[Any], Awaitable[None]],
    deadline: float,
) -> int:
    """Run ``send`` over ``cases``, ``concurrency`` at a time, until ``deadline``; how many ran."""
    pending: Iterator[Any] = iter(cases)
    ran = 0

    async def worker() -> None:
        nonlocal ran
        for case in pending:
            if time.monotonic() > deadline:
                return
            await send(case)
            ran += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ran


# -- known-good answers ---------------------------------------------------------------------


def _known_good_rest(base: str) -> list[str]:
    wrong: list[str] = []
    with httpx.Client(base_url=base, timeout=60) as client:
        expected: list[tuple[str, Json, Json]] = [
            ("/v1/models/half_plus_two:predict", {"instances": [1.0, 2.0, 5.0]},
             {"predictions": [2.5, 3.0, 4.5]}),
            ("/v1/models/half_plus_two:predict", {"inputs": [1.0, 2.0]}, {"outputs": [2.5, 3.0]}),
            ("/v1/models/half_plus_two_2_versions/labels/canary:predict", {"instances": [2.0]},
             {"predictions": [3.0]}),
            ("/v1/models/half_plus_three:predict", {"instances": [1.0]}, {"predictions": [3.5]}),
            ("/v1/models/half_plus_two:classify",
             {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]},
             {"results": [[["", 3.0]]]}),
            ("/v1/models/half_plus_two:regress",
             {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}, {"results": [3.0]}),
        ]  # fmt: skip
        for path, body, want in expected:
            answer = client.post(path, json=body)
            if answer.status_code != 200 or answer.json() != want:
                wrong.append(f"POST {path} {body} -> {answer.status_code} {answer.text[:300]}")
        x = {"name": "x", "shape": [2, 2, 2, 3], "datatype": "FP32"}
        answer = client.post(
            "/v2/models/toolbox/infer",
            json={"inputs": [{**x, "data": TOOLBOX_IMAGE.ravel().tolist()}]},
        )
        got = answer.json() if answer.status_code == 200 else {}
        outputs = got.get("outputs") or [{}]
        if (
            got.get("model_version") != "1"
            or outputs[0].get("name") != "y"
            or outputs[0].get("shape") != [2, 2, 2, 3]
            or outputs[0].get("data") != (TOOLBOX_IMAGE * 2).ravel().tolist()
        ):
            wrong.append(f"V2 JSON infer toolbox -> {answer.status_code} {answer.text[:300]}")
        header = json.dumps(
            {
                "inputs": [{**x, "parameters": {"binary_data_size": TOOLBOX_IMAGE.nbytes}}],
                "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
            }
        ).encode()
        answer = client.post(
            "/v2/models/toolbox/infer",
            content=header + TOOLBOX_IMAGE.tobytes(),
            headers={
                "Inference-Header-Content-Length": str(len(header)),
                "Content-Type": "application/octet-stream",
            },
        )
        try:
            length = int(answer.headers["inference-header-content-length"])
            meta = json.loads(answer.content[:length])
            size = meta["outputs"][0]["parameters"]["binary_data_size"]
            y = np.frombuffer(answer.content[length : length + size], np.float32)
            ok = answer.status_code == 200 and np.array_equal(
                y.reshape(meta["outputs"][0]["shape"]), TOOLBOX_IMAGE * 2
            )
        except (KeyError, ValueError, IndexError, TypeError):
            ok = False
        if not ok:
            wrong.append(
                f"V2 binary infer toolbox -> {answer.status_code} {answer.content[:300]!r}"
            )
    return wrong


def _known_good_grpc(target: str) -> list[str]:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    from tritonclient.grpc import service_pb2_grpc

    wrong: list[str] = []
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        (_, predict), *_ = VALID_GRPC
        try:
            response = stub.Predict(predict, timeout=60)
            y = tf.make_ndarray(response.outputs["y"])
            if response.model_spec.version.value != 123 or y.tolist() != [[2.5], [3.0]]:
                wrong.append(f"TFS gRPC Predict half_plus_two -> {response}")
        except grpc.RpcError as exc:
            wrong.append(f"TFS gRPC Predict half_plus_two -> {exc}")
        regress = regression_pb2.RegressionRequest()
        regress.model_spec.name = "half_plus_two"
        regress.model_spec.signature_name = "regress_x_to_y"
        regress.input.example_list.examples.extend(_examples([2.0]))
        try:
            result = stub.Regress(regress, timeout=60)
            if [r.value for r in result.result.regressions] != [3.0]:
                wrong.append(f"TFS gRPC Regress half_plus_two -> {result}")
        except grpc.RpcError as exc:
            wrong.append(f"TFS gRPC Regress half_plus_two -> {exc}")

        v2 = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        infer = service_pb2.ModelInferRequest(model_name="toolbox")
        x = infer.inputs.add(name="x", datatype="FP32", shape=list(TOOLBOX_IMAGE.shape))
        x.contents.fp32_contents.extend(TOOLBOX_IMAGE.ravel().tolist())
        try:
            answer = v2.ModelInfer(infer, timeout=60)
            (output,) = answer.outputs
            if answer.raw_output_contents:
                values = np.frombuffer(answer.raw_output_contents[0], np.float32)
            else:
                values = np.array(output.contents.fp32_contents, np.float32)
            if (
                output.name != "y"
                or list(output.shape) != [2, 2, 2, 3]
                or not np.array_equal(values.reshape(2, 2, 2, 3), TOOLBOX_IMAGE * 2)
            ):
                wrong.append(f"V2 gRPC ModelInfer toolbox -> {answer}")
        except (grpc.RpcError, ValueError) as exc:
            wrong.append(f"V2 gRPC ModelInfer toolbox -> {exc}")
    return wrong


TRACEBACK = "Traceback (most recent call last)"


def _tracebacks(log: Sequence[str]) -> Counter[str]:
    """The tracebacks in ``log`` by kind: the line that logged it and the exception."""
    kinds: Counter[str] = Counter()
    for i, line in enumerate(log):
        if TRACEBACK not in line:
            continue
        said = _shape(log[i - 1].split(": ", 1)[-1].strip(), 120) if i else ""
        raised = next(
            (x for x in log[i + 1 : i + 200] if x.strip() and not x.startswith((" ", "\t"))), "?"
        )
        kinds[f"{said} -> {_shape(raised.strip(), 120)}"] += 1
    return kinds


# -- the test -------------------------------------------------------------------------------


def test_generators_are_deterministic_and_safe() -> None:
    """Same seed, same cases; none of them touches counter, sleep, fail or abort."""
    assert rest_cases(200, SEED) == rest_cases(200, SEED)
    assert grpc_cases(200, SEED) == grpc_cases(200, SEED)
    assert raw_cases(50, SEED) == raw_cases(50, SEED)
    rest = rest_cases(REST_CASES, SEED)
    assert len({c.kind for c in rest}) == 8
    for case in rest:
        assert case.target.isascii() and case.target.startswith("/")
        assert _safe_rest(case)
    for grpc_case in grpc_cases(GRPC_CASES, SEED + 1):
        assert _safe_grpc(grpc_case)


Fuzzer = Callable[[Findings, float], Awaitable[list[int]]]


def _fuzz_and_check(server: ServerProcess, what: str, fuzz: Fuzzer, planned: list[int]) -> None:
    """Known-good answers, then ``fuzz`` (which returns how many cases of each kind ran),
    then every check: findings, the process alive, no traceback, known-good answers."""
    assert server.rest is not None and server.grpc is not None
    assert _known_good_rest(server.rest) == [], "wrong answers before any fuzzing"
    assert _known_good_grpc(server.grpc) == [], "wrong answers before any fuzzing"
    log_start = len(server.stderr)
    findings = Findings()
    started = time.monotonic()
    ran = asyncio.run(fuzz(findings, started + BUDGET_S))
    took = time.monotonic() - started
    print(
        f"\n{what} fuzz: {' + '.join(map(str, ran))} requests in {took:.1f} s "
        f"({findings.answered} answered, {findings.http_layer} refused by uvicorn's HTTP "
        f"parser, {findings.client_refused} refused by the client)\n  answers: "
        + ", ".join(f"{k}: {n}" for k, n in sorted(findings.outcomes.items()))
    )

    alive = server.process.poll() is None
    server.log()  # lets the reader thread catch up
    log = server.stderr[log_start:]
    problems: list[str] = []
    if not alive:
        problems.append(
            f"the server died (exit {server.process.returncode}):\n{''.join(log[-60:])}"
        )
    tracebacks = _tracebacks(log)
    if tracebacks:
        kinds = "".join(f"\n  {n}x {kind}" for kind, n in tracebacks.most_common())
        first = next(i for i, line in enumerate(log) if TRACEBACK in line)
        problems.append(
            f"{sum(tracebacks.values())} tracebacks on the server's stderr, of these kinds:"
            f"{kinds}\nthe first:\n{''.join(log[max(0, first - 1) : first + 25])}"
        )
    if findings.seen:
        problems.append(findings.report())
    if ran != planned:
        problems.append(f"only {ran} of {planned} requests ran in {BUDGET_S:g} s")
    if alive:
        problems += [f"after fuzzing: {w}" for w in _known_good_rest(server.rest)]
        problems += [f"after fuzzing: {w}" for w in _known_good_grpc(server.grpc)]
    report = "\n\n".join(problems)
    print(report)  # all of it: pytest shortens a long assertion message
    assert not problems, report


@pytest.mark.timeout(int(BUDGET_S) + 300)
def test_rest_fuzz_no_5xx_no_crash_right_answers_after(server: ServerProcess) -> None:
    """TF Serving's and KServe V2's REST APIs: httpx and hand-written HTTP/1.1 at once."""
    rest = rest_cases(REST_CASES, SEED)
    raw = raw_cases(RAW_CASES, SEED + 2)
    assert server.rest is not None
    base = server.rest
    parsed = urllib.parse.urlsplit(base)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80

    async def fuzz(findings: Findings, deadline: float) -> list[int]:
        limits = httpx.Limits(
            max_connections=REST_IN_FLIGHT, max_keepalive_connections=REST_IN_FLIGHT
        )
        async with httpx.AsyncClient(base_url=base, timeout=CALL_TIMEOUT_S, limits=limits) as c:
            return list(
                await asyncio.gather(
                    _pool(rest, REST_IN_FLIGHT, lambda x: _send_rest(c, x, findings), deadline),
                    _pool(
                        raw, RAW_IN_FLIGHT, lambda x: _send_raw(host, port, x, findings), deadline
                    ),
                )
            )

    _fuzz_and_check(server, "REST", fuzz, [len(rest), len(raw)])


@pytest.mark.timeout(int(BUDGET_S) + 300)
def test_grpc_fuzz_no_internal_no_crash_right_answers_after(server: ServerProcess) -> None:
    """TF Serving's PredictionService and ModelService, KServe V2's GRPCInferenceService:
    raw bytes through a generic channel."""
    cases = grpc_cases(GRPC_CASES, SEED + 1)
    assert server.grpc is not None
    target = server.grpc

    async def fuzz(findings: Findings, deadline: float) -> list[int]:
        options = [("grpc.max_receive_message_length", -1), ("grpc.enable_retries", 0)]
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            send = functools.partial(_send_grpc, channel, findings=findings)
            return [await _pool(cases, GRPC_IN_FLIGHT, send, deadline)]

    _fuzz_and_check(server, "gRPC", fuzz, [len(cases)])
