"""RFC 9457 problem documents: the only way the manager reports an error over HTTP.

One handler maps every :class:`~sanctum.errors.SanctumError` (status from
:func:`sanctum.manager.errors.http_status_for`), request validation failures
(``request.invalid``, 422), Starlette's own HTTP errors (unknown route, wrong method) and any
unexpected exception (``internal.error``, 500, with no stack trace or message in the response).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sanctum.errors import SanctumError
from sanctum.manager.errors import RateLimitedError, http_status_for

__all__ = ["PROBLEM_MEDIA_TYPE", "install_problem_handlers", "problem_response"]

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
_log = logging.getLogger(__name__)


def problem_response(
    request: Request,
    status: int,
    code: str,
    detail: str,
    *,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Return an ``application/problem+json`` response.

    The ``type`` is a stable URN built from the dotted code; ``instance`` is the request id.
    """
    body: dict[str, Any] = {
        "type": f"urn:sanctum:error:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["instance"] = f"urn:sanctum:request:{request_id}"
        body["request_id"] = request_id
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _sanctum_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, SanctumError)
    status = http_status_for(error)
    extra: dict[str, Any] = {}
    if error.hint:
        extra["hint"] = error.hint
    if error.details:
        extra["details"] = dict(error.details)
    headers: dict[str, str] = {}
    if isinstance(error, RateLimitedError):
        headers["Retry-After"] = str(error.retry_after_seconds)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status >= 500:
        _log.error("request failed: %s", error)
    return problem_response(
        request, status, error.code, error.message, extra=extra, headers=headers
    )


def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    # Only the location, message and type: the offending input may be a secret.
    errors = [
        {
            "loc": [str(part) for part in item.get("loc", ())],
            "msg": item.get("msg", ""),
            "type": item.get("type", ""),
        }
        for item in error.errors()
    ]
    return problem_response(
        request, 422, "request.invalid", "the request is not valid", extra={"errors": errors}
    )


def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = {404: "request.not_found", 405: "request.method_not_allowed"}.get(
        error.status_code, "request.failed"
    )
    detail = error.detail or HTTPStatus(error.status_code).phrase
    headers = dict(error.headers) if error.headers else None
    return problem_response(request, error.status_code, code, detail, headers=headers)


def _unexpected(request: Request, error: Exception) -> JSONResponse:
    # The type name only: exception messages and tracebacks may carry secrets.
    _log.error("unexpected %s while serving %s", type(error).__name__, request.url.path)
    return problem_response(request, 500, "internal.error", "internal error")


def install_problem_handlers(app: FastAPI) -> None:
    """Register the problem+json handlers on ``app``."""
    app.add_exception_handler(SanctumError, _sanctum_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
