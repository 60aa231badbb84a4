"""Typed errors for responses of Kubernetes API servers.

Every non-2xx answer becomes an :class:`ApiError` subclass chosen like client-go's
``apierrors.IsXxx`` helpers do: by the ``reason`` of the returned ``Status`` first (it is
what tells AlreadyExists from Conflict, both 409) and by the HTTP code when the body is not
a Status (e.g. a proxy in between answered).
"""

from __future__ import annotations

import json
from typing import Any


class ApiError(Exception):
    """An API server answered with an error; ``status`` is its ``meta/v1 Status`` object.

    Raised as is for codes with no subclass below.
    """

    def __init__(self, code: int, status: dict[str, Any]) -> None:
        self.code = code
        self.status = status
        super().__init__(f"{code} {self.reason}: {self.message}")

    @property
    def reason(self) -> str:
        return str(self.status.get("reason") or "")

    @property
    def message(self) -> str:
        return str(self.status.get("message") or "")

    @property
    def details(self) -> dict[str, Any]:
        details = self.status.get("details")
        return details if isinstance(details, dict) else {}


class BadRequest(ApiError):
    """400."""


class Unauthorized(ApiError):
    """401: the credentials were not accepted."""


class Forbidden(ApiError):
    """403: authenticated, but RBAC (or an admission plugin) denied the request."""


class NotFound(ApiError):
    """404."""


class Conflict(ApiError):
    """409 Conflict: stale resourceVersion on update, or server-side apply field conflicts."""


class AlreadyExists(ApiError):
    """409 AlreadyExists: create of a name that is taken."""


class Gone(ApiError):
    """410 Gone / Expired: the resourceVersion or continue token was compacted away.

    Watchers and paginated lists must start over with a fresh list.
    """


class Invalid(ApiError):
    """422: the object failed validation; ``causes`` says which fields and why."""

    @property
    def causes(self) -> list[dict[str, Any]]:
        causes = self.details.get("causes")
        return causes if isinstance(causes, list) else []

    @property
    def failed_patch_test(self) -> bool:
        """Whether this is a JSON patch whose ``test`` op failed: the object changed since
        the patch was made (retry after the newer one).  kube-apiserver says no more than
        "the server rejected our request due to an error in our request" and names no
        field; a validation error of the patched object names its fields in ``causes``."""
        return not self.causes and "rejected our request" in self.message


class TooManyRequests(ApiError):
    """429: API Priority and Fairness rejected the request; retry after ``retry_after``."""

    def __init__(self, code: int, status: dict[str, Any], retry_after: float | None) -> None:
        super().__init__(code, status)
        self.retry_after = retry_after


class ServerTimeout(ApiError):
    """500 ServerTimeout or 504 Timeout: the server could not finish in time; retryable."""


class ServiceUnavailable(ApiError):
    """503: e.g. an aggregated API server behind the kube-apiserver is down."""


class ClusterUnreachable(ConnectionError):
    """No HTTP answer from the cluster: connect or TLS failure, timeout, dropped connection.

    Not an :class:`ApiError`: there is no Status, and the request may or may not have been
    applied.
    """


_BY_REASON: dict[str, type[ApiError]] = {
    "BadRequest": BadRequest,
    "Unauthorized": Unauthorized,
    "Forbidden": Forbidden,
    "NotFound": NotFound,
    "Conflict": Conflict,
    "AlreadyExists": AlreadyExists,
    "Gone": Gone,
    "Expired": Gone,
    "Invalid": Invalid,
    "TooManyRequests": TooManyRequests,
    "ServerTimeout": ServerTimeout,
    "Timeout": ServerTimeout,
    "ServiceUnavailable": ServiceUnavailable,
}

_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
    504: ServerTimeout,
    503: ServiceUnavailable,
}


def error_from_status(
    code: int, status: dict[str, Any], retry_after_header: str | None = None
) -> ApiError:
    """The typed error for a Status (from a response body or a watch ERROR event)."""
    cls = _BY_REASON.get(str(status.get("reason") or "")) or _BY_CODE.get(code, ApiError)
    if cls is TooManyRequests:
        return TooManyRequests(code, status, _retry_after(status, retry_after_header))
    return cls(code, status)


def error_from_response(code: int, body: bytes, retry_after_header: str | None = None) -> ApiError:
    """The typed error for an HTTP error response, whatever its body holds."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status":
        status = parsed
    else:
        # Not from the API machinery (a proxy, a load balancer): keep the text as message.
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": code,
            "message": body.decode(errors="replace").strip()[:1000],
        }
    return error_from_status(code, status, retry_after_header)


def _retry_after(status: dict[str, Any], header: str | None) -> float | None:
    if header:
        try:
            return float(header)
        except ValueError:
            pass  # an HTTP date; the API server itself always sends seconds
    details = status.get("details")
    seconds = details.get("retryAfterSeconds") if isinstance(details, dict) else None
    return float(seconds) if isinstance(seconds, int | float) else None
