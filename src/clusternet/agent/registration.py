"""Joining the parent (spec §3.2): the cluster ID, a verified bootstrap, the dedicated
credentials, and the ``child-cluster-deployer`` Secret the parent pushes with (§3.4).

Compared with upstream:

* the parent's CA is verified before the registration token is sent (``--cluster-reg-parent-
  ca-file``, or the bootstrap-token signature on ``kube-public/cluster-info``); only a
  ServiceAccount token without a CA file falls back to unverified TLS, with a warning;
* the wait for approval GETs the agent's own request with a short exponential backoff: the
  bootstrap identity can read nothing else, so no other cluster's credentials leak;
* after approval the parent is only ever used with the dedicated credentials.
"""

from __future__ import annotations

import asyncio
import base64
import random
import secrets
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from clusternet.agent.bootstrap import (
    CLUSTER_INFO_NAME,
    CLUSTER_INFO_NAMESPACE,
    BootstrapToken,
    UntrustedParent,
    ca_from_cluster_info,
)
from clusternet.agent.options import AgentOptions
from clusternet.apis import known
from clusternet.kube import (
    AlreadyExists,
    ApiError,
    ClusterConfig,
    ClusterUnreachable,
    Forbidden,
    KubeClient,
    NotFound,
    Object,
    Unauthorized,
)
from clusternet.runtime import Informer

log = structlog.get_logger(__name__)

CRR_API_VERSION = f"{known.CLUSTERS_GROUP}/v1beta1"
CRR_KIND = "ClusterRegistrationRequest"
LEASE_API_VERSION = "coordination.k8s.io/v1"
AGENT_LEASE = known.CLUSTERNET_AGENT_NAME  # its UID is the cluster ID
FIELD_MANAGER = known.CLUSTERNET_AGENT_NAME
SERVICE_ACCOUNT_TOKEN_TYPE = "kubernetes.io/service-account-token"
_NAME_ALPHABET = string.ascii_lowercase + string.digits


class RegistrationRejected(Exception):
    """The parent answered Denied or Failed: retrying the same request cannot succeed."""


@dataclass(frozen=True)
class Registration:
    """An approved cluster and its dedicated identity in the parent."""

    cluster_id: str
    cluster_name: str
    namespace: str  # the dedicated namespace in the parent
    parent: ClusterConfig  # the dedicated credentials: the only ones used from now on


def backoff_delays(initial: float, cap: float) -> Iterator[float]:
    """``initial`` doubling up to ``cap``, each plus up to 20% jitter."""
    delay = initial
    while True:
        yield delay * random.uniform(1.0, 1.2)
        delay = min(cap, delay * 2)


def b64(value: str | bytes) -> str:
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


def decoded(data: Mapping[str, str] | None) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in (data or {}).items()}


# -- cluster ID -------------------------------------------------------------------------------


async def cluster_id(child: KubeClient) -> str:
    """The UID of Lease ``clusternet-system/clusternet-agent`` (created if missing), or its
    ``legacy-cluster-id`` annotation for clusters registered by old agents."""
    try:
        lease = await child.get(
            LEASE_API_VERSION, "Lease", AGENT_LEASE, namespace=known.SYSTEM_NAMESPACE
        )
    except NotFound:
        fresh = {
            "apiVersion": LEASE_API_VERSION,
            "kind": "Lease",
            "metadata": {"name": AGENT_LEASE, "namespace": known.SYSTEM_NAMESPACE},
        }
        try:
            lease = await child.create(fresh)
        except AlreadyExists:  # another replica was faster
            lease = await child.get(
                LEASE_API_VERSION, "Lease", AGENT_LEASE, namespace=known.SYSTEM_NAMESPACE
            )
    metadata = lease["metadata"]
    legacy = (metadata.get("annotations") or {}).get(known.LEGACY_CLUSTER_ID_ANNOTATION)
    return str(legacy or metadata["uid"])


# -- registration -----------------------------------------------------------------------------


async def register(child: KubeClient, options: AgentOptions, cluster_id: str) -> Registration:
    """Register until approved, retrying what may heal (401, network) with backoff.

    Raises :class:`RegistrationRejected` when the parent denies the request.
    """
    delays = backoff_delays(1.0, 60.0)
    while True:
        try:
            registration = await _reuse_stored_credentials(child, options, cluster_id)
            if registration is None:
                registration = await _bootstrap(options, cluster_id)
                await _check_credentials(registration)
            await _store_credentials(child, options, registration)
            return registration
        except RegistrationRejected as err:
            log.error("registration rejected by the parent", reason=str(err))
            raise
        except Unauthorized as err:
            reason = f"the parent rejected the registration token (401): {err}"
        except (ApiError, ClusterUnreachable, UntrustedParent, OSError) as err:
            reason = str(err)
        delay = next(delays)
        log.warning("registration failed, retrying", reason=reason, retry_in=round(delay, 1))
        await asyncio.sleep(delay)


def _request_name(cluster_id: str) -> str:
    return known.registration_request_name(cluster_id)


async def _reuse_stored_credentials(
    child: KubeClient, options: AgentOptions, cluster_id: str
) -> Registration | None:
    """The registration recorded in Secret ``parent-cluster``, if it is for this parent and
    its credentials still read our request; None means: bootstrap again."""
    try:
        secret = await child.get(
            "v1", "Secret", known.PARENT_CLUSTER_SECRET_NAME, namespace=known.SYSTEM_NAMESPACE
        )
    except NotFound:
        return None
    data = decoded(secret.get("data"))
    stored_url = data.get(known.CHILD_CLUSTER_APISERVER_URL_KEY, b"").decode().rstrip("/")
    if stored_url != options.parent_url or not data.get("token"):
        log.info("stored parent credentials are for another parent", parent=stored_url)
        return None
    config = ClusterConfig(
        server=options.parent_url, ca_data=data.get("ca.crt"), token=data["token"].decode()
    )
    async with KubeClient(config, cluster="parent") as parent:
        try:
            request = await parent.get(CRR_API_VERSION, CRR_KIND, _request_name(cluster_id))
        except (Unauthorized, Forbidden, NotFound) as err:
            log.info("stored parent credentials no longer work, registering again", error=str(err))
            return None
    if (request.get("status") or {}).get("result") != "Approved":
        return None
    log.info("reusing stored parent credentials")
    return approved_registration(request, options, cluster_id)


async def _bootstrap(options: AgentOptions, cluster_id: str) -> Registration:
    config = await _bootstrap_config(options)
    name = _request_name(cluster_id)
    async with KubeClient(config, cluster="parent") as parent:
        try:
            existing: Object | None = await parent.get(CRR_API_VERSION, CRR_KIND, name)
        except NotFound:
            existing = None
        if existing is None:
            await _create_request(parent, options, cluster_id)
        if existing is not None and is_decided(existing):
            request = existing
        else:
            request = await _wait_for_result(parent, name)
    return approved_registration(request, options, cluster_id)


async def _bootstrap_config(options: AgentOptions) -> ClusterConfig:
    """The bootstrap identity, with the parent's CA verified whenever the token allows."""
    if options.parent_ca is not None:
        ca: bytes | None = options.parent_ca
    elif (token := BootstrapToken.parse(options.token)) is not None:
        ca = ca_from_cluster_info(await _cluster_info(options.parent_url), token)
        log.info("verified the parent's CA from kube-public/cluster-info", token_id=token.id)
    else:
        log.warning(
            "no --cluster-reg-parent-ca-file: registering WITHOUT verifying the parent's TLS "
            "certificate (a ServiceAccount token cannot prove the parent's CA)"
        )
        return ClusterConfig(
            server=options.parent_url, token=options.token, insecure_skip_tls_verify=True
        )
    return ClusterConfig(server=options.parent_url, ca_data=ca, token=options.token)


async def _cluster_info(parent_url: str) -> Object:
    """``kube-public/cluster-info``, fetched anonymously and without TLS verification: its
    content is trusted only through its signature, and the token is not sent."""
    anonymous = ClusterConfig(server=parent_url, insecure_skip_tls_verify=True)
    async with KubeClient(anonymous, cluster="parent") as client:
        path = f"/api/v1/namespaces/{CLUSTER_INFO_NAMESPACE}/configmaps/{CLUSTER_INFO_NAME}"
        found: Object = await client.request("GET", path)
        return found


async def _create_request(parent: KubeClient, options: AgentOptions, cluster_id: str) -> None:
    cluster_name = options.cluster_name or _random_name(options.cluster_name_prefix)
    spec: Object = {
        "clusterId": cluster_id,
        "clusterName": cluster_name,
        "clusterType": options.cluster_type,
        "syncMode": options.sync_mode.value,
    }
    if options.cluster_namespace:
        spec["clusterNamespace"] = options.cluster_namespace
    if options.cluster_labels:
        spec["ClusterLabels"] = dict(options.cluster_labels)  # upstream's JSON name
    request = {
        "apiVersion": CRR_API_VERSION,
        "kind": CRR_KIND,
        "metadata": {
            "name": _request_name(cluster_id),
            "labels": {
                known.CLUSTER_REGISTERED_BY_LABEL: known.CLUSTERNET_AGENT_NAME,
                known.CLUSTER_ID_LABEL: cluster_id,
                known.CLUSTER_NAME_LABEL: cluster_name,
            },
        },
        "spec": spec,
    }
    try:
        await parent.create(request)
        log.info("created the cluster registration request", cluster_name=cluster_name)
    except AlreadyExists:
        pass  # created by an earlier attempt; its spec stands


def _random_name(prefix: str) -> str:
    suffix = "".join(
        secrets.choice(_NAME_ALPHABET) for _ in range(known.DEFAULT_RANDOM_SUFFIX_LENGTH)
    )
    return f"{prefix}-{suffix}"


def is_decided(request: Object | None) -> bool:
    """Denied or Failed, or Approved with credentials.  An Approved without them is an
    operator's manual approval that the approver has yet to complete."""
    status = (request or {}).get("status") or {}
    if status.get("result") in ("Denied", "Failed"):
        return True
    return status.get("result") == "Approved" and bool(status.get("token"))


async def _wait_for_result(parent: KubeClient, name: str) -> Object:
    """GET our own request until the approver has decided (no list/watch: the bootstrap
    identity must not be able to read other clusters' requests)."""
    log.info("waiting for the parent to approve the registration", request=name)
    loop = asyncio.get_running_loop()
    started = loop.time()
    next_reminder = started + 60
    # Automatic approval takes about a second: ask often at first (at most once a second),
    # then every 10 s, so that agents left pending for an operator cost the parent little.
    quick, patient = backoff_delays(0.1, 1.0), backoff_delays(10.0, 10.0)
    while True:
        request = await parent.get(CRR_API_VERSION, CRR_KIND, name)
        if is_decided(request):
            return request
        now = loop.time()
        if now >= next_reminder:
            log.info("still waiting for the parent to approve the registration", request=name)
            next_reminder += 60
        await asyncio.sleep(next(quick if now - started < 30 else patient))


def approved_registration(request: Object, options: AgentOptions, cluster_id: str) -> Registration:
    status = request.get("status") or {}
    if status.get("result") != "Approved":
        message = status.get("errorMessage") or "no reason given"
        raise RegistrationRejected(f"the parent {status.get('result')} the registration: {message}")
    token = base64.b64decode(status.get("token") or "").decode()
    ca = base64.b64decode(status.get("caCertificate") or "")
    if not token or not status.get("dedicatedNamespace"):
        raise UntrustedParent("the approved request carries no token or dedicated namespace")
    return Registration(
        cluster_id=cluster_id,
        cluster_name=str(status.get("managedClusterName") or ""),
        namespace=str(status["dedicatedNamespace"]),
        parent=ClusterConfig(server=options.parent_url, ca_data=ca or None, token=token),
    )


async def _check_credentials(registration: Registration) -> None:
    """Fail early (and retry) if the dedicated credentials do not work yet."""
    async with KubeClient(registration.parent, cluster="parent") as parent:
        await parent.get(CRR_API_VERSION, CRR_KIND, _request_name(registration.cluster_id))


async def _store_credentials(
    child: KubeClient, options: AgentOptions, registration: Registration
) -> None:
    """Secret ``clusternet-system/parent-cluster`` in the child, so that a restart reuses
    the dedicated identity instead of registering again."""
    config = registration.parent
    data = {
        "ca.crt": b64(config.ca_data or b""),
        "token": b64(config.token or ""),
        "namespace": b64(registration.namespace),
        known.CHILD_CLUSTER_APISERVER_URL_KEY: b64(options.parent_url),
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": known.PARENT_CLUSTER_SECRET_NAME,
            "namespace": known.SYSTEM_NAMESPACE,
            "labels": {
                known.CLUSTER_BOOTSTRAPPING_LABEL: known.CREDENTIALS_AUTO,
                known.CLUSTER_ID_LABEL: registration.cluster_id,
                known.CLUSTER_NAME_LABEL: registration.cluster_name,
            },
        },
        "data": data,
    }
    await child.apply(secret, field_manager=FIELD_MANAGER, force=True)
    log.info(
        "registered with the parent",
        cluster_id=registration.cluster_id,
        cluster_name=registration.cluster_name,
        namespace=registration.namespace,
    )


# -- child-cluster-deployer -------------------------------------------------------------------


def deployer_token_secret(secrets_in_system_namespace: list[Object]) -> Object | None:
    """The populated token Secret of ServiceAccount ``clusternet-app-deployer``, if any."""
    for secret in secrets_in_system_namespace:
        annotations = secret["metadata"].get("annotations") or {}
        data = secret.get("data") or {}
        owner = annotations.get("kubernetes.io/service-account.name")
        if owner == known.CHILD_APP_DEPLOYER_SERVICE_ACCOUNT and data.get("token"):
            return secret
    return None


def child_cluster_deployer(
    token_secret: Object, registration: Registration, child_url: str
) -> Object:
    """Secret ``child-cluster-deployer`` for the dedicated namespace in the parent."""
    data = token_secret.get("data") or {}
    annotations = token_secret["metadata"].get("annotations") or {}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": known.CHILD_CLUSTER_SECRET_NAME,
            "namespace": registration.namespace,
            "labels": {
                known.OBJECT_CREATED_BY_LABEL: known.CLUSTERNET_AGENT_NAME,
                known.CLUSTER_ID_LABEL: registration.cluster_id,
                known.CLUSTER_BOOTSTRAPPING_LABEL: known.CREDENTIALS_AUTO,
            },
            "annotations": {known.AUTO_UPDATE_ANNOTATION: "true"},
            "finalizers": [known.APP_FINALIZER],
        },
        "data": {
            "ca.crt": data.get("ca.crt", ""),
            "token": data["token"],
            "service-account.name": b64(known.CHILD_APP_DEPLOYER_SERVICE_ACCOUNT),
            "service-account.uid": b64(annotations.get("kubernetes.io/service-account.uid", "")),
            known.CHILD_CLUSTER_APISERVER_URL_KEY: b64(child_url),
        },
    }


async def store_child_cluster_deployer(parent: KubeClient, secret: Object) -> bool:
    """Create or refresh the Secret; an existing one not annotated ``autoupdate: "true"``
    was customised by an admin and is left alone.  Whether it was written."""
    metadata: Mapping[str, Any] = secret["metadata"]
    try:
        existing = await parent.get(
            "v1", "Secret", metadata["name"], namespace=metadata["namespace"]
        )
    except NotFound:
        existing = None
    if existing is not None:
        annotations = existing["metadata"].get("annotations") or {}
        if annotations.get(known.AUTO_UPDATE_ANNOTATION) != "true":
            log.info("child-cluster-deployer is not annotated for auto-update, leaving it")
            return False
    await parent.apply(secret, field_manager=FIELD_MANAGER, force=True)
    return True


async def keep_child_cluster_deployer(
    parent: KubeClient, token_secrets: Informer, registration: Registration, child_url: str
) -> None:
    """Mirror the deployer's token Secret (watched in the child) into the parent.

    The Secret may not exist yet (``clusternet install --child`` not run, or the token not
    issued yet): the informer's next event brings it, no polling needed.  Parent errors are
    retried with backoff.
    """
    changed = asyncio.Event()
    token_secrets.add_event_handler(
        on_add=lambda _: changed.set(),
        on_update=lambda _old, _new: changed.set(),
        on_delete=lambda _: changed.set(),
    )
    await token_secrets.wait_for_sync()
    changed.set()
    written: Object | None = None
    warned = False
    while True:
        await changed.wait()
        changed.clear()
        token_secret = deployer_token_secret(token_secrets.store.list())
        if token_secret is None:
            if not warned:
                log.warning(
                    "no token for ServiceAccount clusternet-system/clusternet-app-deployer in "
                    "the child (run `clusternet install --child`); the parent cannot push "
                    "until it exists"
                )
                warned = True
            continue
        desired = child_cluster_deployer(token_secret, registration, child_url)
        if desired == written:
            continue
        stored = False
        for delay in backoff_delays(1.0, 60.0):
            try:
                stored = await store_child_cluster_deployer(parent, desired)
                break
            except (ApiError, ClusterUnreachable) as err:
                log.warning("cannot store child-cluster-deployer", error=str(err))
                await asyncio.sleep(delay)
        written, warned = desired, False
        if stored:
            log.info("stored child-cluster-deployer", namespace=registration.namespace)
