"""Errors with TF Serving's status codes; the gRPC and REST front ends map them to their protocol."""

from __future__ import annotations

import grpc

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.INTERNAL: 500,
}


class ServingError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


class NotFound(ServingError):
    code = grpc.StatusCode.NOT_FOUND


class InvalidArgument(ServingError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class Unimplemented(ServingError):
    code = grpc.StatusCode.UNIMPLEMENTED


class ResourceExhausted(ServingError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServingError):
    code = grpc.StatusCode.UNAVAILABLE


def alias_not_found(kind: str, unknown: list[str], expected: list[str]) -> InvalidArgument:
    """TF Serving's wording for a tensor name the signature does not have (kind: 'input' or 'output')."""
    return InvalidArgument(
        f"{kind} tensor alias not found in signature: {', '.join(unknown)}. "
        f"{kind.capitalize()}s expected to be in the set {{{', '.join(sorted(expected))}}}."
    )
