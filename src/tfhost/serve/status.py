"""The one place a tfhost error becomes an HTTP status or a gRPC code."""

from __future__ import annotations

from typing import Final

import grpc

from tfhost.errors import Code, InputError, ModelError, ResourceExhausted, TfhostError

# As TensorFlow Serving's http_server.cc maps its codes.
_HTTP: Final = {
    Code.INVALID_ARGUMENT: 400,
    Code.FAILED_PRECONDITION: 400,
    Code.NOT_FOUND: 404,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.DEADLINE_EXCEEDED: 504,
    Code.UNAVAILABLE: 503,
    Code.INTERNAL: 500,
}

_GRPC: Final = {code: getattr(grpc.StatusCode, code.value) for code in Code}

# A model that raised one of TensorFlow's errors failed for that error's reason: a shape
# its graph refuses is the request's fault, as TensorFlow Serving reports it.
_TF_ERRORS: Final = {
    "InvalidArgumentError": Code.INVALID_ARGUMENT,
    "OutOfRangeError": Code.INVALID_ARGUMENT,
    "FailedPreconditionError": Code.FAILED_PRECONDITION,
    "ResourceExhaustedError": Code.RESOURCE_EXHAUSTED,
    "DeadlineExceededError": Code.DEADLINE_EXCEEDED,
    "UnavailableError": Code.UNAVAILABLE,
}


class BodyTooLarge(ResourceExhausted):
    """A request body over ``ServeSettings.max_body_bytes`` (HTTP 413)."""


class BodyTimeout(InputError):
    """A request body that stopped arriving for ``ServeSettings.body_timeout_s`` (HTTP 408)."""


class ResponseTooLarge(ResourceExhausted):
    """A model's answer over ``ServeSettings.max_response_bytes``: the server's limit, not
    the request's fault (HTTP 500; gRPC RESOURCE_EXHAUSTED, as grpcio says of a message
    over its limit)."""


def code_of(error: TfhostError) -> Code:
    if isinstance(error, ModelError):
        return _TF_ERRORS.get(error.type_name, error.code)
    return error.code


def http_status(error: TfhostError) -> int:
    if isinstance(error, BodyTooLarge):
        return 413
    if isinstance(error, BodyTimeout):
        return 408
    if isinstance(error, ResponseTooLarge):
        return 500
    return _HTTP[code_of(error)]


def grpc_code(error: TfhostError) -> grpc.StatusCode:
    return _GRPC[code_of(error)]
