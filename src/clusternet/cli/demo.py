"""``clusternet demo mcs``: the multi-cluster services scenario of
``examples/scheduling-with-mcs-api`` on a local environment, from nothing to what it shows.

The command brings up (or reuses) a parent and children with ``clusternet local up``'s code,
waits for the ManagedClusters to be Ready, applies the templates through the shadow API (as
``kubectl clusternet apply`` does), the Subscription and the ServiceImport to the parent, and
waits — on informers, never by sleeping — until the pods are ready in the children and the
derived Service in the parent lists all of them.  :func:`run_scenario` and
:func:`wait_for_endpoints` are what the command and the acceptance test share.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console
from rich.table import Table

from clusternet.apis import known, mcs
from clusternet.kube import (
    ApiError,
    ClusterConfig,
    ClusterUnreachable,
    ConfigError,
    KubeClient,
    NotFound,
    PatchType,
    load_kubeconfig,
)
from clusternet.local.binaries import BuildError, MissingBinariesError, Toolbox
from clusternet.local.environment import (
    LocalEnvironment,
    LocalEnvironmentError,
    Options,
    State,
    default_kubeconfig,
    default_run_dir,
)
from clusternet.local.processes import ProcessExitedError
from clusternet.runtime import Informer, InformerKey
from clusternet.runtime.logging import configure_logging

T = TypeVar("T")
Object = dict[str, Any]

app = typer.Typer(help="Guided scenarios on a local parent and children.", no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

FIELD_MANAGER = "clusternet-demo"
SHADOW_PREFIX = f"/apis/{known.SHADOW_GROUP}/v1alpha1"
MANAGED_CLUSTER_API_VERSION = f"{known.CLUSTERS_GROUP}/v1beta1"
SUBSCRIPTION_API_VERSION = f"{known.APPS_GROUP}/v1alpha1"
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "scheduling-with-mcs-api"
# Subscriber labels the demo fills in with the clusters it found, in subscriber order.
_FILLED_LABELS = (known.CLUSTER_NAME_LABEL, known.CLUSTER_ID_LABEL)


class DemoError(RuntimeError):
    """The scenario cannot go on; the message says what was expected and what was found."""


class DemoTimeout(DemoError):
    pass


# ---------------------------------------------------------------------- the scenario (pure)


@dataclass(frozen=True)
class Cluster:
    """A registered child: its ManagedCluster's cluster-name label, ID and namespace."""

    name: str
    id: str
    namespace: str
    ready: str


@dataclass
class Scenario:
    templates: list[Object]  # to the shadow API
    subscription: Object  # to the parent
    service_import: Object  # to the parent

    @property
    def deployment(self) -> Object:
        found = [t for t in self.templates if t.get("kind") == "Deployment"]
        if len(found) != 1:
            raise DemoError(f"the scenario needs exactly one Deployment template, not {len(found)}")
        return found[0]

    @property
    def exported(self) -> tuple[str, str]:
        """(namespace, name) of the exported Service the ServiceImport asks for."""
        labels = self.service_import.get("metadata", {}).get("labels") or {}
        return (
            labels.get(known.MCS_SERVICE_NAMESPACE_LABEL, ""),
            labels.get(known.MCS_SERVICE_NAME_LABEL, ""),
        )

    @property
    def derived_service(self) -> str:
        return mcs.derived_name(*self.exported)

    @property
    def import_namespace(self) -> str:
        return str(self.service_import["metadata"].get("namespace") or "default")


def load_scenario(folder: Path) -> Scenario:
    """``scheduling/*.yaml`` (templates and one Subscription) and ``service-import.yaml``."""
    if not (folder / "scheduling").is_dir() or not (folder / "service-import.yaml").is_file():
        raise DemoError(
            f"{folder} is not the scenario folder (scheduling/ and service-import.yaml): pass "
            "--example <path to examples/scheduling-with-mcs-api of a clusternet-py checkout>"
        )
    documents: list[Object] = []
    for path in sorted((folder / "scheduling").glob("*.yaml")):
        documents.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    subscriptions = [d for d in documents if d.get("kind") == "Subscription"]
    if len(subscriptions) != 1:
        raise DemoError(f"{folder}/scheduling must hold one Subscription, not {len(subscriptions)}")
    imports = [d for d in yaml.safe_load_all((folder / "service-import.yaml").read_text()) if d]
    if len(imports) != 1 or imports[0].get("kind") != "ServiceImport":
        raise DemoError(f"{folder}/service-import.yaml must hold one ServiceImport")
    templates = [d for d in documents if d.get("kind") != "Subscription"]
    # Namespaces first, as kubectl apply of a folder would need them anyway.
    templates.sort(key=lambda d: d.get("kind") != "Namespace")
    return Scenario(templates, subscriptions[0], imports[0])


def fill_subscribers(subscription: Object, clusters: Sequence[Cluster]) -> Object:
    """The Subscription with its subscribers pointed at ``clusters``, in order: a subscriber
    that selects by cluster name or ID gets the name or ID of the cluster at its position.
    Anything else (other labels, expressions) is left as written."""
    subscribers = subscription.get("spec", {}).get("subscribers") or []
    if len(subscribers) > len(clusters):
        raise DemoError(
            f"the Subscription has {len(subscribers)} subscribers but only {len(clusters)} "
            "clusters are registered"
        )
    filled = []
    for subscriber, cluster in zip(subscribers, clusters, strict=False):
        affinity = dict(subscriber.get("clusterAffinity") or {})
        labels = dict(affinity.get("matchLabels") or {})
        values = {known.CLUSTER_NAME_LABEL: cluster.name, known.CLUSTER_ID_LABEL: cluster.id}
        for label in _FILLED_LABELS:
            if label in labels:
                labels[label] = values[label]
        if labels:
            affinity["matchLabels"] = labels
        filled.append({**subscriber, "clusterAffinity": affinity})
    return {**subscription, "spec": {**subscription["spec"], "subscribers": filled}}


def subscribed_names(subscription: Object) -> list[str]:
    """The cluster names the subscribers select by name (the demo's clusters)."""
    names = []
    for subscriber in subscription.get("spec", {}).get("subscribers") or []:
        labels = (subscriber.get("clusterAffinity") or {}).get("matchLabels") or {}
        if known.CLUSTER_NAME_LABEL in labels:
            names.append(str(labels[known.CLUSTER_NAME_LABEL]))
    return names


def shadow_path(plural: str, name: str, namespace: str | None) -> str:
    where = f"/namespaces/{namespace}" if namespace else ""
    return f"{SHADOW_PREFIX}{where}/{plural}/{name}"


def condition_status(obj: Object, condition_type: str) -> str:
    for condition in (obj.get("status") or {}).get("conditions") or ():
        if condition.get("type") == condition_type:
            return str(condition.get("status") or "Unknown")
    return "Unknown"


def registered_clusters(managed_clusters: Iterable[Object]) -> list[Cluster]:
    found = [
        Cluster(
            name=(mc["metadata"].get("labels") or {}).get(known.CLUSTER_NAME_LABEL, ""),
            id=str((mc.get("spec") or {}).get("clusterId", "")),
            namespace=mc["metadata"].get("namespace", ""),
            ready=condition_status(mc, "Ready"),
        )
        for mc in managed_clusters
    ]
    return sorted(found, key=lambda c: c.name)


def deployment_ready(deployment: Object | None) -> tuple[int, int] | None:
    """(ready, desired) once the Deployment has rolled out what its spec asks, else None."""
    if deployment is None:
        return None
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    generation = deployment["metadata"].get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return None
    ready = int(status.get("readyReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    if ready == desired and updated == desired and total == desired:
        return ready, desired
    return None


def placement(deployments: Mapping[str, Object | None]) -> dict[str, tuple[int, int]]:
    """Per cluster: (ready, desired) as the Deployment reports it (0/0 when absent)."""
    rows = {}
    for cluster, deployment in sorted(deployments.items()):
        if deployment is None:
            rows[cluster] = (0, 0)
            continue
        ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
        rows[cluster] = (ready, int((deployment.get("spec") or {}).get("replicas", 1)))
    return rows


def endpoints_by_cluster(slices: Iterable[Object], *, ready: bool = True) -> dict[str, list[str]]:
    """Ready (or, with ``ready=False``, all) endpoint addresses of the derived Service's
    slices, per source cluster."""
    found: dict[str, list[str]] = {}
    for item in slices:
        labels = item["metadata"].get("labels") or {}
        cluster = labels.get(known.CLUSTER_NAME_LABEL) or labels.get(
            mcs.SOURCE_CLUSTER_LABEL, "<unknown>"
        )
        addresses = found.setdefault(cluster, [])
        for endpoint in item.get("endpoints") or ():
            if not ready or (endpoint.get("conditions") or {}).get("ready", True):
                addresses.extend(endpoint.get("addresses") or ())
    return {cluster: sorted(addresses) for cluster, addresses in sorted(found.items())}


def settled(
    deployments: Mapping[str, Object | None],
    total: int,
    service: Object | None,
    slices: Iterable[Object],
) -> dict[str, int] | None:
    """Ready endpoints per cluster when every subscribed child runs its share of ``total``
    replicas and the derived Service lists exactly those pods (no endpoint of a pod that is
    going away is left); None while not there yet."""
    shares = {cluster: deployment_ready(d) for cluster, d in deployments.items()}
    if any(share is None for share in shares.values()):
        return None
    ready = {cluster: share[0] for cluster, share in shares.items() if share is not None}
    if sum(ready.values()) != total or service is None:
        return None
    slices = list(slices)
    endpoints = {c: len(a) for c, a in endpoints_by_cluster(slices).items() if a}
    listed = {c: len(a) for c, a in endpoints_by_cluster(slices, ready=False).items() if a}
    wanted = {c: n for c, n in ready.items() if n}
    return endpoints if endpoints == wanted == listed else None


def describe_state(
    deployments: Mapping[str, Object | None], service: Object | None, slices: Iterable[Object]
) -> str:
    """The last state seen, for a timeout message."""
    shares = ", ".join(f"{c} {r}/{d} ready" for c, (r, d) in placement(deployments).items())
    endpoints = endpoints_by_cluster(slices)
    listed = ", ".join(f"{c}: {len(a)}" for c, a in endpoints.items()) or "none"
    return (
        f"Deployments: {shares or 'none'}; derived Service: "
        f"{'present' if service else 'absent'}; ready endpoints per cluster: {listed}"
    )


def reuse_problem(state: State | None, alive: Mapping[str, bool]) -> str | None:
    """Why a local environment cannot host the demo (None: reuse it). ``alive`` maps each
    process name of the state to whether it runs."""
    if state is None:
        return "no local environment"
    if not state.options.get("clusternet", True):
        return "it runs without Clusternet (--no-clusternet)"
    if len(state.children) < 2:
        return f"it has {len(state.children)} child cluster(s), the demo needs 2"
    dead = sorted(name for name, running in alive.items() if not running)
    if dead:
        return f"processes are not running: {', '.join(dead)}"
    wanted = {"parent/clusternet-controller-manager", "parent/clusternet-hub"} | {
        f"{c.name}/clusternet-agent" for c in state.children
    }
    missing = sorted(wanted - set(alive))
    if missing:
        return f"Clusternet processes are missing: {', '.join(missing)}"
    return None


# ---------------------------------------------------------------------- watching


class Watches:
    """Informers over several clusters and a way to wait for a condition on their caches.

    Every cache change wakes :meth:`until`, which re-evaluates its check: no polling.
    """

    def __init__(self) -> None:
        self._informers: dict[str, Informer] = {}
        self._changed = asyncio.Event()

    def watch(
        self,
        name: str,
        client: KubeClient,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Informer:
        key = InformerKey(api_version, kind, namespace, label_selector, field_selector)
        informer = Informer(client, key, registry=None)
        informer.add_event_handler(self._wake, self._wake, self._wake)
        self._informers[name] = informer
        informer.start()
        return informer

    def _wake(self, *_: object) -> None:
        self._changed.set()

    def items(self, name: str) -> list[Object]:
        return self._informers[name].store.list()

    def first(self, name: str) -> Object | None:
        items = self.items(name)
        return items[0] if items else None

    async def until(
        self,
        check: Callable[[], T | None],
        what: str,
        seconds: float,
        describe: Callable[[], str],
    ) -> T:
        """``check()``'s first truthy result, re-evaluated on every cache change; a
        :class:`DemoTimeout` naming ``what`` and ``describe()`` after ``seconds``."""
        deadline = time.monotonic() + seconds
        try:
            async with asyncio.timeout(seconds):
                synced = await asyncio.gather(
                    *(i.wait_for_sync() for i in self._informers.values())
                )
                if not all(synced):
                    raise DemoError(f"a watch stopped while waiting for {what}")
                while True:
                    self._changed.clear()
                    result = check()
                    if result:
                        return result
                    await self._changed.wait()
        except TimeoutError:
            waited = seconds - max(0.0, deadline - time.monotonic())
            raise DemoTimeout(
                f"timed out after {waited:.0f}s waiting for {what}; last state: {describe()}"
            ) from None

    async def close(self) -> None:
        await asyncio.gather(*(i.stop() for i in self._informers.values()))
        self._informers.clear()


# ---------------------------------------------------------------------- the steps


@dataclass
class Outcome:
    """What the demo shows."""

    clusters: list[Cluster]
    placement: dict[str, tuple[int, int]]
    service: Object
    slices: list[Object]
    subscribed: list[str] = field(default_factory=list)


async def wait_for_clusters(
    parent: KubeClient, names: Sequence[str], seconds: float
) -> list[Cluster]:
    """Every child in ``names`` has a ManagedCluster whose Ready condition is True."""
    watches = Watches()
    watches.watch("clusters", parent, MANAGED_CLUSTER_API_VERSION, "ManagedCluster")

    def check() -> list[Cluster] | None:
        found = registered_clusters(watches.items("clusters"))
        ready = {c.name for c in found if c.ready == "True"}
        return found if set(names) <= ready else None

    def describe() -> str:
        found = registered_clusters(watches.items("clusters"))
        return ", ".join(f"{c.name or c.namespace} Ready={c.ready}" for c in found) or "none"

    try:
        return await watches.until(
            check, f"ManagedClusters of {', '.join(names)} to be Ready", seconds, describe
        )
    finally:
        await watches.close()


async def apply_template(parent: KubeClient, template: Object) -> None:
    """Server-side apply of a template through the shadow API (kubectl clusternet apply)."""
    resource = await parent.mapper.resource_for(template["apiVersion"], template["kind"])
    meta = template["metadata"]
    path = shadow_path(
        resource.plural, meta["name"], meta.get("namespace") if resource.namespaced else None
    )
    await parent.request(
        "PATCH",
        path,
        params={"fieldManager": FIELD_MANAGER, "force": True},
        body=template,
        content_type=PatchType.APPLY,
    )


async def apply_scenario(
    parent: KubeClient, scenario: Scenario, clusters: Sequence[Cluster]
) -> Object:
    """Templates to the shadow API, then the Subscription (filled in) and the ServiceImport
    to the parent; returns the Subscription as applied."""
    for template in scenario.templates:
        await apply_template(parent, template)
    subscription = fill_subscribers(scenario.subscription, clusters)
    await parent.apply(subscription, field_manager=FIELD_MANAGER, force=True)
    await parent.apply(scenario.service_import, field_manager=FIELD_MANAGER, force=True)
    return subscription


async def wait_for_endpoints(
    parent: KubeClient,
    children: Mapping[str, KubeClient],
    scenario: Scenario,
    total: int,
    seconds: float,
) -> tuple[dict[str, int], Outcome]:
    """Until every child in ``children`` runs its share of ``total`` ready replicas and the
    derived Service has exactly those endpoints: (endpoints per cluster, what was seen)."""
    deployment = scenario.deployment["metadata"]
    service_name = scenario.derived_service
    watches = Watches()
    for child, client in children.items():
        watches.watch(
            f"deploy/{child}", client, "apps/v1", "Deployment",
            namespace=deployment["namespace"], field_selector=f"metadata.name={deployment['name']}",
        )  # fmt: skip
    namespace = scenario.import_namespace
    watches.watch("service", parent, "v1", "Service", namespace=namespace,
                  field_selector=f"metadata.name={service_name}")  # fmt: skip
    selector = f"{mcs.SERVICE_NAME_LABEL}={service_name}"
    watches.watch("slices", parent, mcs.DISCOVERY_API_VERSION, "EndpointSlice",
                  namespace=namespace, label_selector=selector)  # fmt: skip

    def deployments() -> dict[str, Object | None]:
        return {child: watches.first(f"deploy/{child}") for child in children}

    def check() -> dict[str, int] | None:
        return settled(deployments(), total, watches.first("service"), watches.items("slices"))

    def describe() -> str:
        text = describe_state(deployments(), watches.first("service"), watches.items("slices"))
        if watches.first("service") is not None and not watches.items("slices"):
            name = scenario.service_import["metadata"]["name"]
            text += (
                f" (the ServiceImport's events say why: kubectl -n {namespace} get events "
                f"--field-selector involvedObject.name={name})"
            )
        return text

    what = (
        f"{total} ready replicas of {deployment['namespace']}/{deployment['name']} in "
        f"{', '.join(children)} and as many endpoints behind {namespace}/{service_name}"
    )
    try:
        endpoints = await watches.until(check, what, seconds, describe)
        outcome = Outcome(
            clusters=[],
            placement=placement(deployments()),
            service=watches.first("service") or {},
            slices=watches.items("slices"),
        )
    finally:
        await watches.close()
    return endpoints, outcome


async def run_scenario(
    parent: KubeClient,
    children: Mapping[str, KubeClient],
    scenario: Scenario,
    *,
    seconds: float = 300.0,
    log: Callable[[str], None] = lambda _m: None,
) -> Outcome:
    """The whole demo on running clusters: wait for registration, apply, wait for the pods
    and the endpoints. ``children`` maps cluster names to clients of those children."""
    log(f"waiting for {', '.join(children)} to be registered and Ready")
    clusters = await wait_for_clusters(parent, list(children), seconds)
    ours = [c for c in clusters if c.name in children]
    log("applying the templates (shadow API), the Subscription and the ServiceImport")
    subscription = await apply_scenario(parent, scenario, ours)
    subscribed = subscribed_names(subscription) or list(children)
    total = int(scenario.deployment.get("spec", {}).get("replicas", 1))
    log(
        f"waiting for {total} replicas to be ready in {', '.join(subscribed)} and for "
        f"{scenario.import_namespace}/{scenario.derived_service} to list them"
    )
    _, outcome = await wait_for_endpoints(
        parent, {c: children[c] for c in subscribed}, scenario, total, seconds
    )
    outcome.clusters = clusters
    outcome.subscribed = subscribed
    deployment = scenario.deployment["metadata"]
    for name in sorted(set(children) - set(subscribed)):  # show that the others got nothing
        try:
            found: Object | None = await children[name].get(
                "apps/v1", "Deployment", deployment["name"], namespace=deployment["namespace"]
            )
        except NotFound:
            found = None
        outcome.placement.update(placement({name: found}))
    outcome.placement = dict(sorted(outcome.placement.items()))
    return outcome


# ---------------------------------------------------------------------- printing


def print_outcome(outcome: Outcome, console: Console = out) -> None:
    table = Table(title="Clusters", box=None, header_style="bold", title_justify="left")
    for column in ("NAME", "CLUSTER ID", "NAMESPACE", "READY"):
        table.add_column(column)
    for c in outcome.clusters:
        table.add_row(c.name, c.id, c.namespace, c.ready)
    console.print(table)

    table = Table(title="Replicas (baz/nginx-app)", box=None, header_style="bold",
                  title_justify="left")  # fmt: skip
    table.add_column("CLUSTER")
    table.add_column("READY/DESIRED")
    for cluster, (ready, desired) in outcome.placement.items():
        table.add_row(cluster, f"{ready}/{desired}")
    console.print(table)

    service = outcome.service
    spec = service.get("spec") or {}
    ingress = (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
    ports = ", ".join(
        f"{p.get('name') or '-'}:{p['port']}/{p.get('protocol', 'TCP')}"
        for p in spec.get("ports") or ()
    )
    table = Table(title="Derived Service", box=None, show_header=False, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in (
        ("name", f"{service['metadata']['namespace']}/{service['metadata']['name']}"),
        ("type", str(spec.get("type", ""))),
        ("cluster IP", str(spec.get("clusterIP", ""))),
        ("ingress IP", ", ".join(i.get("ip", "") for i in ingress) or "<none>"),
        ("ports", ports),
    ):
        table.add_row(key, value)
    console.print(table)

    endpoints = endpoints_by_cluster(outcome.slices)
    summary = ", ".join(f"{c} {len(a)}" for c, a in endpoints.items())
    table = Table(
        title=f"EndpointSlices ({sum(len(a) for a in endpoints.values())} ready endpoints: "
        f"{summary or 'none'})",
        box=None,
        header_style="bold",
        title_justify="left",
    )
    for column in ("NAME", "SOURCE CLUSTER", "PORTS"):
        table.add_column(column, no_wrap=True)
    table.add_column("ENDPOINTS", overflow="fold")
    for item in sorted(outcome.slices, key=lambda s: s["metadata"]["name"]):
        labels = item["metadata"].get("labels") or {}
        slice_ports = ", ".join(
            f"{p.get('name') or '-'}:{p.get('port')}" for p in item.get("ports") or ()
        )
        addresses = [
            a if (e.get("conditions") or {}).get("ready", True) else f"{a}(not ready)"
            for e in item.get("endpoints") or ()
            for a in e.get("addresses") or ()
        ]
        table.add_row(
            item["metadata"]["name"],
            labels.get(known.CLUSTER_NAME_LABEL, labels.get(mcs.SOURCE_CLUSTER_LABEL, "")),
            slice_ports,
            " ".join(sorted(addresses)),
        )
    console.print(table)


def explore_hint(
    kubeconfig: str, path: Sequence[str], service: str, kept: bool, teardown: str
) -> str:
    """What to type next: kubectl (and the kubectl-clusternet plugin) on $PATH, and how to
    look at each step of the scenario."""
    if not kept:
        return "\nThe environment was stopped (--down)."
    return "\n".join(
        [
            "",
            "Look around:",
            f"  export KUBECONFIG={kubeconfig}",
            f"  export PATH={':'.join(path)}:$PATH",
            "  kubectl clusternet clusters",
            "  kubectl clusternet get deploy,svc,serviceexport -n baz      # the templates",
            "  kubectl get subscription scheduling-with-mcs-api -o yaml",
            "  kubectl --context child1 -n baz get pods,endpointslices,serviceexports",
            "  kubectl get endpointslices -A -l services.clusternet.io/multi-cluster-service-name"
            "=nginx-svc",
            f"  kubectl -n default get svc {service}",
            f"  kubectl -n default get endpointslices -l kubernetes.io/service-name={service} "
            f"-L {known.CLUSTER_NAME_LABEL}",
            "  kubectl clusternet scale deploy nginx-app -n baz --replicas=9",
            "docs/multi-cluster-services.md walks through the same steps with kubectl.",
            f"Tear down: {teardown}",
        ]
    )


# ---------------------------------------------------------------------- the command


def _elapsed_log() -> Callable[[str], None]:
    started = time.monotonic()

    def log(message: str) -> None:
        err.print(f"[dim]{time.monotonic() - started:6.1f}s[/dim] {message}")

    return log


def ensure_environment(
    env: LocalEnvironment, children: int, timeout: float, log: Callable[[str], None]
) -> tuple[State, bool]:
    """The running environment if it can host the demo, else a new one: (state, started)."""
    state = env.load_state()
    if state is not None:
        alive = {p.name: p.alive() for p in state.processes}
        problem = reuse_problem(state, alive)
        if problem is None:
            log(f"reusing the local environment in {env.run_dir}")
            return state, False
        if any(alive.values()):
            raise LocalEnvironmentError(
                f"a local environment is running from {env.run_dir} but cannot host the demo: "
                f"{problem}; stop it with `clusternet local down` (or pass another --run-dir)"
            )
    log(f"starting a parent and {children} children (clusternet local up)")
    options = Options(children=children, nodes_per_child=2, timeout=timeout)
    return env.up(options), True


async def _run(state: State, scenario: Scenario, seconds: float) -> Outcome:
    kubeconfig = state.kubeconfig
    configs: dict[str, ClusterConfig] = {
        c.name: load_kubeconfig(Path(kubeconfig), c.name) for c in state.clusters
    }
    clients = {name: KubeClient(config, cluster=name) for name, config in configs.items()}
    try:
        children = {c.name: clients[c.name] for c in state.children}
        return await run_scenario(
            clients["parent"], children, scenario, seconds=seconds, log=_elapsed_log()
        )
    finally:
        await asyncio.gather(*(c.aclose() for c in clients.values()))


@app.command("mcs")
def mcs_demo(
    children: Annotated[int, typer.Option(help="Child clusters of a new environment.")] = 3,
    keep: Annotated[
        bool,
        typer.Option("--keep/--down", help="Keep the environment running afterwards, or stop it."),
    ] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each step.")] = 300.0,
    example: Annotated[
        Path, typer.Option(help="The scenario folder (scheduling/ and service-import.yaml).")
    ] = EXAMPLE,
    run_dir: Annotated[
        Path, typer.Option("--run-dir", help="Run folder of the local environment.")
    ] = default_run_dir(),  # noqa: B008
    kubeconfig: Annotated[
        Path, typer.Option("--kubeconfig", help="Kubeconfig of a new environment.")
    ] = default_kubeconfig(),  # noqa: B008
) -> None:
    """Multi-cluster services: 6 nginx replicas divided 1:2 over two children, exported, and
    imported in the parent as one Service (examples/scheduling-with-mcs-api)."""
    log = _elapsed_log()
    env = LocalEnvironment(run_dir=run_dir, kubeconfig=kubeconfig, log=log)
    started = False
    try:
        scenario = load_scenario(example)
        if children < 2:
            raise DemoError("--children must be at least 2 (the replicas are divided over two)")
        configure_logging(level="WARNING")  # the informers' progress lines are not the demo's
        state, started = ensure_environment(env, children, timeout, log)
        outcome = asyncio.run(_run(state, scenario, timeout))
    except (
        DemoError,
        LocalEnvironmentError,
        MissingBinariesError,
        BuildError,
        ProcessExitedError,
        ApiError,
        ClusterUnreachable,
        ConfigError,
        OSError,
    ) as error:
        err.print(f"error: {error}", style="red", highlight=False, markup=False)
        if started and not keep:
            env.down()
        raise typer.Exit(code=1) from None
    print_outcome(outcome)
    teardown = "clusternet local down"
    if env.run_dir != default_run_dir().expanduser().absolute():
        teardown += f" --run-dir {env.run_dir}"
    stop = started and not keep  # an environment that was running before is left alone
    if stop:
        env.down()
    kubectl = Toolbox().locate("kubectl")
    path = [str(Path(sys.executable).parent)] + ([str(kubectl.parent)] if kubectl else [])
    out.print(
        explore_hint(state.kubeconfig, path, scenario.derived_service, not stop, teardown),
        highlight=False,
        markup=False,
    )
