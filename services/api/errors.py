"""One error body for every failure, and the handlers that produce it."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger(__name__)


class ErrorCode(StrEnum):
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INVALID = "invalid"
    UNAVAILABLE = "unavailable"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    TOO_LARGE = "too_large"
    INTERNAL = "internal"


class FieldProblem(BaseModel):
    """What is wrong with one field of the request."""

    field: str = Field(description="Where: `account_id`, `limit`, `body`, ...")
    reason: str = Field(description="Why it was refused, in words.")


class ErrorBody(BaseModel):
    """The body of every error answer."""

    code: ErrorCode = Field(description="A stable, machine-readable error code.")
    message: str = Field(description="What went wrong, for a person.")
    fields: list[FieldProblem] = Field(
        default_factory=list, description="The refused fields, on `invalid`."
    )


class ApiError(Exception):
    """An error answered as `ErrorBody` with an HTTP status."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        fields: list[FieldProblem] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or []

    def body(self) -> ErrorBody:
        return ErrorBody(code=self.code, message=self.message, fields=self.fields)


def invalid(field: str, reason: str) -> ApiError:
    """A 422 naming one field."""
    return ApiError(
        422,
        ErrorCode.INVALID,
        f"invalid {field}: {reason}",
        [FieldProblem(field=field, reason=reason)],
    )


def not_found(what: str) -> ApiError:
    return ApiError(404, ErrorCode.NOT_FOUND, f"{what} not found")


Responses = dict[int | str, dict[str, Any]]
"""Extra answers of a route, for the OpenAPI document."""


def _described(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


UNAUTHORIZED: Responses = {
    401: _described("No token, or one that is unknown or revoked.")
}
FORBIDDEN: Responses = {
    403: _described("The token's role may not do this (readers only read).")
}
NOT_FOUND: Responses = {404: _described("Nothing has this id or address.")}
CONFLICT: Responses = {409: _described("It exists already, or the change conflicts.")}
INVALID: Responses = {
    422: _described(
        "Malformed id, unknown or bad filter, bad cursor, invalid address or body; "
        "`fields` names each refused field with the reason."
    )
}
MAX_BODY_BYTES = 64 * 1024
"""The largest request body read; an account or a token is a few hundred bytes."""

TOO_LARGE: Responses = {
    413: _described(f"The body is larger than {MAX_BODY_BYTES // 1024} KiB.")
}
UNAVAILABLE: Responses = {
    503: _described(
        "The service that commits writes did not answer in time; the outcome is "
        "unknown, check before repeating."
    )
}
READ_ERRORS: Responses = {**UNAUTHORIZED, **INVALID}
WRITE_ERRORS: Responses = {
    **UNAUTHORIZED,
    **FORBIDDEN,
    **INVALID,
    **TOO_LARGE,
    **UNAVAILABLE,
}


def _field_name(location: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in location]
    if len(parts) > 1 and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    return ".".join(parts) or "request"


def _problem(item: dict[str, Any]) -> FieldProblem:
    if item.get("type") == "json_invalid":
        # FastAPI places a JSON syntax error at ("body", character offset).
        position = item["loc"][-1]
        cause = item.get("ctx", {}).get("error", "JSON decode error")
        return FieldProblem(
            field="body", reason=f"not valid JSON: {cause} at character {position}"
        )
    return FieldProblem(field=_field_name(item["loc"]), reason=item["msg"])


def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = [_problem(item) for item in error.errors()]
    summary = "; ".join(f"{p.field}: {p.reason}" for p in problems[:5])
    api_error = ApiError(
        422, ErrorCode.INVALID, f"invalid request: {summary}", problems
    )
    return _answer(api_error)


def _api_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return _answer(error)


def _http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    codes = {
        401: ErrorCode.UNAUTHORIZED,
        403: ErrorCode.FORBIDDEN,
        404: ErrorCode.NOT_FOUND,
        405: ErrorCode.METHOD_NOT_ALLOWED,
    }
    if error.status_code == 400:
        # A body that is not JSON is bad input like any other: 422, as documented.
        return _answer(invalid("body", str(error.detail)))
    code = codes.get(error.status_code, ErrorCode.INVALID)
    body = ErrorBody(code=code, message=str(error.detail))
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=error.status_code,
        headers=error.headers,
    )


def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.error("request_failed", path=request.url.path, exc_info=error)
    body = ErrorBody(code=ErrorCode.INTERNAL, message="internal error; see the logs")
    return JSONResponse(body.model_dump(mode="json"), status_code=500)


def _database_error(request: Request, error: Exception) -> JSONResponse:
    """A lost or refused database connection is a 503 to retry, not a 500."""
    lost = isinstance(error, OSError | OperationalError | InterfaceError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )
    if not lost:
        return _unexpected(request, error)
    log.warning(
        "database_unavailable", path=request.url.path, reason=type(error).__name__
    )
    return _answer(
        ApiError(503, ErrorCode.UNAVAILABLE, "the database is unavailable; retry")
    )


def too_large() -> JSONResponse:
    """The answer to a body over `MAX_BODY_BYTES`, sent before it is read on."""
    limit = f"{MAX_BODY_BYTES // 1024} KiB"
    return _answer(
        ApiError(
            413,
            ErrorCode.TOO_LARGE,
            f"the request body is larger than {limit}",
            [FieldProblem(field="body", reason=f"at most {limit}")],
        )
    )


def _answer(error: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(
        error.body().model_dump(mode="json"), status_code=error.status, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    """Answer every failure with `ErrorBody`, and never leak a traceback."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(OSError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
