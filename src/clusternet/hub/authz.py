"""May the caller do this: delegated authorization with SubjectAccessReviews to the parent.

Every request that reaches the hub has passed kube-apiserver's own authorization already;
the hub asks again (as every aggregated API server does) because it cannot tell a request
the aggregator proxied from one that reached its port some other way with a front-proxy
certificate, and because a websocket upgrade is authorized per cluster ID here.

Decisions are cached briefly (10 s by default, like kube-apiserver's webhook authorizer and
the generic apiserver's delegated authorizer), so that 100 concurrent proxied requests cost
one review, and identical reviews in flight are shared.  Credentials in user extras
(``clusternet-token`` and friends) are left out of the review: RBAC never reads extras, and a
review body may be written to the parent's audit log.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from clusternet.apis import known
from clusternet.hub.authn import UserInfo
from clusternet.kube import ApiError, ClusterUnreachable, KubeClient

__all__ = [
    "CREDENTIAL_EXTRAS",
    "Attributes",
    "AuthorizationUnavailable",
    "Decision",
    "SubjectAccessReviewer",
    "verb_for_method",
]

log = structlog.get_logger(__name__)

# User extras that carry credentials for the child cluster (spec §6.3).
CREDENTIAL_EXTRAS = frozenset(
    {"clusternet-token", "clusternet-certificate", "clusternet-privatekey"}
)
# As the generic apiserver's delegated authorizer: members of system:masters need no review.
ALWAYS_ALLOW_GROUPS = frozenset({"system:masters"})

_METHOD_VERBS = {
    "GET": "get",
    "HEAD": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


def verb_for_method(method: str) -> str:
    """The verb kube-apiserver derives for a request on a named object (or its subresource)."""
    return _METHOD_VERBS.get(method.upper(), method.lower())


@dataclass(frozen=True)
class Attributes:
    """A resource request (``resource`` set) or a non-resource one (``path`` set)."""

    verb: str
    resource: str = ""
    subresource: str = ""
    name: str = ""
    group: str = known.PROXIES_GROUP
    path: str = ""
    namespace: str = ""  # for namespaced resources (shadow/v1alpha1)

    def describe(self) -> str:
        if self.path:
            return f'{self.verb} path "{self.path}"'
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        named = f' "{self.name}"' if self.name else ""
        where = f' in the namespace "{self.namespace}"' if self.namespace else ""
        return f'{self.verb} resource "{resource}"{named} in API group "{self.group}"{where}'


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


class AuthorizationUnavailable(Exception):
    """The parent could not be asked: neither allow nor deny."""


_Key = tuple[Any, ...]


class SubjectAccessReviewer:
    def __init__(
        self,
        parent: KubeClient,
        *,
        allowed_ttl: float = 10.0,
        denied_ttl: float = 10.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._parent = parent
        self._allowed_ttl = allowed_ttl
        self._denied_ttl = denied_ttl
        self._max_entries = max_entries
        self._clock = clock
        self._cache: OrderedDict[_Key, tuple[float, Decision]] = OrderedDict()
        self._in_flight: dict[_Key, asyncio.Future[Decision]] = {}
        self.reviews_sent = 0

    async def authorize(self, user: UserInfo, attributes: Attributes) -> Decision:
        if ALWAYS_ALLOW_GROUPS.intersection(user.groups):
            return Decision(True, "member of an always-allowed group")
        extra = _reviewable_extra(user)
        key: _Key = (
            user.name,
            user.uid,
            tuple(sorted(user.groups)),
            tuple(sorted(extra.items())),
            attributes,
        )
        cached = self._cache.get(key)
        if cached is not None:
            expires, decision = cached
            if expires > self._clock():
                self._cache.move_to_end(key)
                return decision
            del self._cache[key]
        pending = self._in_flight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            decision = await self._review(user, extra, attributes)
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # retrieved: waiters re-raise it, nobody else must log it
            raise
        else:
            future.set_result(decision)
            ttl = self._allowed_ttl if decision.allowed else self._denied_ttl
            self._cache[key] = (self._clock() + ttl, decision)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
            return decision
        finally:
            del self._in_flight[key]

    async def _review(
        self, user: UserInfo, extra: dict[str, tuple[str, ...]], attributes: Attributes
    ) -> Decision:
        spec: dict[str, Any] = {"user": user.name, "groups": list(user.groups)}
        if user.uid:
            spec["uid"] = user.uid
        if extra:
            spec["extra"] = {k: list(v) for k, v in extra.items()}
        if attributes.path:
            spec["nonResourceAttributes"] = {"path": attributes.path, "verb": attributes.verb}
        else:
            resource: dict[str, Any] = {
                "verb": attributes.verb,
                "group": attributes.group,
                "version": "v1alpha1",
                "resource": attributes.resource,
            }
            if attributes.subresource:
                resource["subresource"] = attributes.subresource
            if attributes.name:
                resource["name"] = attributes.name
            if attributes.namespace:
                resource["namespace"] = attributes.namespace
            spec["resourceAttributes"] = resource
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        }
        self.reviews_sent += 1
        try:
            answer = await self._parent.create(review)
        except (ApiError, ClusterUnreachable) as err:
            log.warning("SubjectAccessReview failed", user=user.name, error=str(err))
            raise AuthorizationUnavailable(str(err)) from err
        status = answer.get("status") or {}
        allowed = bool(status.get("allowed")) and not status.get("denied")
        return Decision(allowed, str(status.get("reason") or status.get("evaluationError") or ""))


def _reviewable_extra(user: UserInfo) -> dict[str, tuple[str, ...]]:
    return {k: v for k, v in user.extra.items() if k not in CREDENTIAL_EXTRAS}
