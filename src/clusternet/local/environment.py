"""A parent and child Kubernetes clusters on one machine: ``clusternet local up``.

Every cluster is a real kube-apiserver (plus kube-controller-manager; children also get
kube-scheduler and kwok with fake Nodes) on 127.0.0.1, all sharing one etcd with a key prefix
per cluster.  The parent has bootstrap-token authentication and the aggregation-layer flags
that clusternet-hub needs.  The state of a running environment (ports, pids) is kept in
``<run-dir>/state.json`` so that ``local status`` and ``local down`` work from any process.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from clusternet.local import components, processes
from clusternet.local._rest import APIError, RestClient
from clusternet.local.binaries import Toolbox
from clusternet.local.pki import PKI, write_private

PARENT = "parent"
HUB_PROCESS = f"{PARENT}/clusternet-hub"
STATE_FILE = "state.json"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
# Kubernetes quantities as accepted on the command line (e.g. 8, 500m, 32Gi, 1e3).
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e[0-9]+)?$")


class LocalEnvironmentError(RuntimeError):
    """A clear, user-facing error of the local environment."""


def default_run_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "clusternet" / "local"


def default_kubeconfig() -> Path:
    return Path.home() / ".kube" / "clusternet.config"


@dataclass
class Options:
    children: int = 2
    nodes_per_child: int = 1
    node_cpu: str = "8"
    node_memory: str = "32Gi"
    node_pods: str = "110"
    parent_port: int = 0  # 0: pick a free port
    timeout: float = 180.0
    # Install Clusternet and run its controller-manager and one agent per child.
    clusternet: bool = True
    # --cluster-sync-mode of each child's agent, in order (Push, Pull or Dual); children
    # past the end of the tuple use Dual.
    sync_modes: tuple[str, ...] = ()
    # Flags appended to a Clusternet process's command line, by process name (e.g.
    # "parent/clusternet-scheduler", "child2/clusternet-agent"); a repeated flag overrides
    # the default.  For tests that need shorter leases or a relay in front of the parent.
    extra_args: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def validate(self) -> None:
        if self.children < 1:
            raise LocalEnvironmentError(
                f"--children must be at least 1 (got {self.children}): Clusternet manages "
                "child clusters from a parent, so a local environment needs one or more children"
            )
        if self.children > 20:
            raise LocalEnvironmentError(
                f"--children {self.children} is more than one machine can run (at most 20)"
            )
        if self.nodes_per_child < 1:
            raise LocalEnvironmentError(
                f"--nodes-per-child must be at least 1 (got {self.nodes_per_child})"
            )
        for flag, value in (
            ("--node-cpu", self.node_cpu),
            ("--node-memory", self.node_memory),
            ("--node-pods", self.node_pods),
        ):
            if not _QUANTITY.match(value):
                raise LocalEnvironmentError(
                    f"{flag} {value!r} is not a Kubernetes quantity (examples: 8, 500m, 32Gi)"
                )
        for mode in self.sync_modes:
            if mode not in ("Push", "Pull", "Dual"):
                raise LocalEnvironmentError(f"sync mode {mode!r} is not Push, Pull or Dual")
        if not 0 <= self.parent_port <= 65535:
            raise LocalEnvironmentError(f"--parent-port {self.parent_port} is not a TCP port")


@dataclass
class ClusterState:
    name: str
    role: str  # "parent" or "child"
    port: int
    kubeconfig: str  # admin kubeconfig of this cluster alone
    scheduler_port: int | None = None
    nodes: list[str] = field(default_factory=list)
    fixed_port: bool = False  # chosen by the user: never swapped for another on a clash

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@dataclass
class State:
    run_dir: str
    kubeconfig: str
    etcd_port: int
    clusters: list[ClusterState]
    processes: list[processes.ProcessRecord]
    options: dict[str, Any]
    started_at: float
    timings: dict[str, float] = field(default_factory=dict)
    bootstrap_token: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["processes"] = [p.to_json() for p in self.processes]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        data = dict(data)
        data["clusters"] = [ClusterState(**c) for c in data["clusters"]]
        data["processes"] = [processes.ProcessRecord.from_json(p) for p in data["processes"]]
        return cls(**data)

    def cluster(self, name: str) -> ClusterState:
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise KeyError(name)

    @property
    def children(self) -> list[ClusterState]:
        return [c for c in self.clusters if c.role == "child"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class LocalEnvironment:
    """One parent and N children, started and stopped as a unit."""

    def __init__(
        self,
        run_dir: Path | None = None,
        kubeconfig: Path | None = None,
        toolbox: Toolbox | None = None,
        log: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self.run_dir = (run_dir or default_run_dir()).expanduser().absolute()
        self.kubeconfig = (kubeconfig or default_kubeconfig()).expanduser().absolute()
        self.log = log
        self.toolbox = toolbox or Toolbox(log=log)
        self.state: State | None = None

    # ------------------------------------------------------------------ state

    @property
    def state_file(self) -> Path:
        return self.run_dir / STATE_FILE

    def load_state(self) -> State | None:
        try:
            return State.from_json(json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError) as err:
            raise LocalEnvironmentError(
                f"{self.state_file} is not a state file of clusternet local ({err}); "
                "remove the folder or pass another --run-dir"
            ) from err

    def _save_state(self) -> None:
        assert self.state is not None
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state.to_json(), indent=2))
        tmp.replace(self.state_file)

    def running(self) -> bool:
        state = self.load_state()
        return state is not None and any(p.alive() for p in state.processes)

    # ------------------------------------------------------------------ up

    def up(self, options: Options) -> State:
        options.validate()
        self._prepare_run_dir()
        if options.parent_port and port_in_use(options.parent_port):
            raise LocalEnvironmentError(
                f"--parent-port {options.parent_port}: 127.0.0.1:{options.parent_port} is "
                "already in use by another process; choose another port or 0 for a free one"
            )
        timings: dict[str, float] = {}
        started = time.monotonic()
        binaries = self.toolbox.ensure()
        stages = self.toolbox.kwok_stages()
        timings["binaries"] = time.monotonic() - started

        self.run_dir.mkdir(parents=True, exist_ok=True)
        pki = PKI.generate(self.run_dir / "pki")
        names = [PARENT] + [f"child{i}" for i in range(1, options.children + 1)]
        clusters = []
        for name in names:
            role = "parent" if name == PARENT else "child"
            port = options.parent_port if (role == "parent" and options.parent_port) else 0
            clusters.append(
                ClusterState(
                    name=name,
                    role=role,
                    port=port or free_port(),
                    kubeconfig=str(self.run_dir / name / "admin.kubeconfig"),
                    scheduler_port=free_port() if role == "child" else None,
                    fixed_port=bool(port),
                )
            )
        self.state = State(
            run_dir=str(self.run_dir),
            kubeconfig=str(self.kubeconfig),
            etcd_port=free_port(),
            clusters=clusters,
            processes=[],
            options=asdict(options),
            started_at=time.time(),
            timings=timings,
        )
        self._save_state()
        try:
            phase = time.monotonic()
            self._start_etcd(binaries["etcd"])
            timings["etcd"] = time.monotonic() - phase

            phase = time.monotonic()
            for cluster in clusters:
                self._write_cluster_kubeconfig(cluster, pki)
                self._start_apiserver(cluster, pki, binaries["kube-apiserver"])
            self._save_state()
            self._parallel(lambda c: self._wait_apiserver(c, options.timeout), clusters)
            timings["apiservers"] = time.monotonic() - phase

            phase = time.monotonic()
            for cluster in clusters:
                self._start_controller_manager(cluster, pki, binaries["kube-controller-manager"])
                if cluster.role == "child":
                    self._start_scheduler(cluster, binaries["kube-scheduler"])
                    self._start_kwok(cluster, binaries["kwok"], stages)
                    self._create_nodes(cluster, options)
            self._save_state()
            self._parallel(lambda c: self._wait_cluster_ready(c, options.timeout), clusters)
            timings["controllers_and_nodes"] = time.monotonic() - phase

            if options.clusternet:
                phase = time.monotonic()
                self._start_clusternet(pki, options.timeout, options.sync_modes, options.extra_args)
                timings["clusternet"] = time.monotonic() - phase

            self._write_merged_kubeconfig(pki)
            timings["total"] = time.monotonic() - started
            self._save_state()
        except BaseException:
            self.log("start-up failed: stopping what was started")
            self.down()
            raise
        return self.state

    def _prepare_run_dir(self) -> None:
        state = self.load_state()
        if state is not None:
            alive = [p for p in state.processes if p.alive()]
            if alive:
                raise LocalEnvironmentError(
                    f"a local environment is already running from {self.run_dir} "
                    f"({len(alive)} processes, e.g. {alive[0].name} pid {alive[0].pid}); "
                    "run `clusternet local down` first, or pass another --run-dir"
                )
            self.log(f"removing stale run folder {self.run_dir} (its processes are gone)")
            shutil.rmtree(self.run_dir)
        elif self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise LocalEnvironmentError(
                f"run folder {self.run_dir} exists and is not empty, but holds no "
                f"{STATE_FILE}: not removing a folder clusternet did not create; "
                "remove it yourself or pass another --run-dir"
            )

    def _parallel(self, fn: Callable[[ClusterState], None], clusters: list[ClusterState]) -> None:
        with ThreadPoolExecutor(max_workers=len(clusters)) as pool:
            for future in [pool.submit(fn, c) for c in clusters]:
                future.result()

    def _record(self, record: processes.ProcessRecord) -> processes.ProcessRecord:
        assert self.state is not None
        self.state.processes.append(record)
        return record

    def _process(self, name: str) -> processes.ProcessRecord:
        assert self.state is not None
        for record in reversed(self.state.processes):
            if record.name == name:
                return record
        raise KeyError(name)

    def _logs(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name.replace('/', '-')}.log"

    # etcd ---------------------------------------------------------------

    def _start_etcd(self, binary: Path) -> None:
        assert self.state is not None
        for attempt in range(3):
            peer = free_port()
            client = self.state.etcd_port
            argv = [
                str(binary),
                "--name",
                "local",
                "--data-dir",
                str(self.run_dir / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{client}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{client}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"local=http://127.0.0.1:{peer}",
                "--listen-metrics-urls",
                "",
                # Throwaway data: no fsync; the quota the kubernetes integration tests use.
                "--unsafe-no-fsync",
                "--quota-backend-bytes",
                "8589934592",
                "--log-level",
                "warn",
            ]
            self.log(f"starting etcd on 127.0.0.1:{client}")
            record = self._record(processes.start("etcd", argv, self._logs("etcd")))
            try:
                _wait(partial(_etcd_healthy, client), 30, record, "etcd to become healthy")
                return
            except processes.ProcessExitedError:
                if attempt < 2 and "address already in use" in record.log_tail():
                    self.state.etcd_port = free_port()
                    shutil.rmtree(self.run_dir / "etcd", ignore_errors=True)
                    continue
                raise

    # kube-apiserver -------------------------------------------------------

    def _apiserver_argv(self, cluster: ClusterState, pki: PKI, binary: Path) -> list[str]:
        assert self.state is not None
        argv = [
            str(binary),
            f"--etcd-servers=http://127.0.0.1:{self.state.etcd_port}",
            f"--etcd-prefix=/{cluster.name}/registry",
            "--bind-address=127.0.0.1",
            # Pinned, or the apiserver advertises the default-route interface.
            "--advertise-address=127.0.0.1",
            f"--secure-port={cluster.port}",
            f"--tls-cert-file={pki.apiserver_cert}",
            f"--tls-private-key-file={pki.apiserver_key}",
            f"--cert-dir={self.run_dir / cluster.name / 'certs'}",
            f"--client-ca-file={pki.ca_cert}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=Node,RBAC",
            # Loopback endpoints are invalid in Endpoints/EndpointSlices.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            f"--requestheader-client-ca-file={pki.front_proxy_ca_cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki.front_proxy_client_cert}",
            f"--proxy-client-key-file={pki.front_proxy_client_key}",
            "--profiling=false",
        ]
        if cluster.role == "parent":
            # Clusternet agents register with bootstrap tokens.
            argv.append("--enable-bootstrap-token-auth=true")
        return argv

    def _start_apiserver(self, cluster: ClusterState, pki: PKI, binary: Path) -> None:
        name = f"{cluster.name}/kube-apiserver"
        self.log(f"starting kube-apiserver of {cluster.name} on 127.0.0.1:{cluster.port}")
        self._record(
            processes.start(name, self._apiserver_argv(cluster, pki, binary), self._logs(name))
        )

    def _wait_apiserver(self, cluster: ClusterState, timeout: float) -> None:
        client = self.client(cluster)
        name = f"{cluster.name}/kube-apiserver"
        for attempt in range(3):
            record = self._process(name)
            try:
                _wait(partial(_readyz, client), timeout, record, f"{name} /readyz")
                break
            except processes.ProcessExitedError as err:
                if "address already in use" not in record.log_tail(60):
                    raise
                if cluster.fixed_port or attempt == 2:
                    raise LocalEnvironmentError(
                        f"127.0.0.1:{cluster.port} is already in use: {name} cannot listen"
                    ) from err
                # Lost a race for the picked port to another process: take another one.
                cluster.port = free_port()
                self._write_cluster_kubeconfig(cluster, PKI(self.run_dir / "pki"))
                client = self.client(cluster)
                argv = [
                    f"--secure-port={cluster.port}" if a.startswith("--secure-port=") else a
                    for a in record.argv
                ]
                self._record(processes.start(name, argv, self._logs(name)))
        # The bootstrap controllers create these right after /readyz turns ok.
        for namespace in ("default", "kube-system"):
            _wait(
                partial(_exists, client, f"/api/v1/namespaces/{namespace}"),
                timeout,
                self._process(name),
                f"namespace {namespace} in {cluster.name}",
            )

    # controllers ----------------------------------------------------------

    def _start_controller_manager(self, cluster: ClusterState, pki: PKI, binary: Path) -> None:
        controllers = "*"
        if cluster.role == "parent":
            # Bootstrap-token housekeeping is off by default in kube-controller-manager.
            controllers = "*,bootstrapsigner,tokencleaner"
        argv = [
            str(binary),
            f"--kubeconfig={cluster.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            f"--controllers={controllers}",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            "--profiling=false",
        ]
        name = f"{cluster.name}/kube-controller-manager"
        self.log(f"starting kube-controller-manager of {cluster.name}")
        self._record(processes.start(name, argv, self._logs(name)))

    def _start_scheduler(self, cluster: ClusterState, binary: Path) -> None:
        argv = [
            str(binary),
            f"--kubeconfig={cluster.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            # Each scheduler needs a port of its own (the default 10259 would collide).
            f"--secure-port={cluster.scheduler_port}",
            "--profiling=false",
        ]
        name = f"{cluster.name}/kube-scheduler"
        self.log(f"starting kube-scheduler of {cluster.name}")
        self._record(processes.start(name, argv, self._logs(name)))

    def _start_kwok(self, cluster: ClusterState, binary: Path, stages: Path) -> None:
        argv = [
            str(binary),
            f"--kubeconfig={cluster.kubeconfig}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-ip=127.0.0.1",
            "--cidr=10.244.0.0/16",
            "--node-lease-duration-seconds=40",
        ]
        for stage in (
            "node/fast/node-initialize.yaml",
            "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
            "pod/fast/pod-ready.yaml",
            "pod/fast/pod-complete.yaml",
            "pod/fast/pod-delete.yaml",
        ):
            argv.append(f"--config={stages / stage}")
        name = f"{cluster.name}/kwok"
        self.log(f"starting kwok of {cluster.name}")
        self._record(processes.start(name, argv, self._logs(name)))

    def _create_nodes(self, cluster: ClusterState, options: Options) -> None:
        client = self.client(cluster)
        resources = {
            "cpu": options.node_cpu,
            "memory": options.node_memory,
            "pods": options.node_pods,
        }
        for index in range(1, options.nodes_per_child + 1):
            name = f"{cluster.name}-node-{index}"
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {
                        "type": "kwok",
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "node.kubernetes.io/instance-type": "kwok",
                    },
                },
                "status": {
                    "capacity": resources,
                    "allocatable": resources,
                    # Never a routable address: nothing may dial anything but loopback.
                    "addresses": [
                        {"type": "InternalIP", "address": "127.0.0.1"},
                        {"type": "Hostname", "address": name},
                    ],
                },
            }
            client.create_or_get("/api/v1/nodes", node)
            # Node creation may drop status: make sure capacity is what was asked for.
            client.patch(f"/api/v1/nodes/{name}/status", {"status": node["status"]})
            cluster.nodes.append(name)

    def _wait_cluster_ready(self, cluster: ClusterState, timeout: float) -> None:
        client = self.client(cluster)
        apiserver = self._process(f"{cluster.name}/kube-apiserver")
        kcm = self._process(f"{cluster.name}/kube-controller-manager")
        # The ServiceAccount controller of kube-controller-manager creates these; pods
        # cannot be created before.
        _wait(
            lambda: _exists(client, "/api/v1/namespaces/default/serviceaccounts/default"),
            timeout,
            kcm,
            f"ServiceAccount default/default in {cluster.name}",
        )
        if cluster.role == "child":
            kwok = self._process(f"{cluster.name}/kwok")
            _wait(
                lambda: _nodes_ready(client, cluster.nodes),
                timeout,
                kwok,
                f"nodes of {cluster.name} to become Ready and untainted",
            )
        else:
            _wait(
                lambda: _exists(
                    client,
                    "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication",
                ),
                timeout,
                apiserver,
                "the aggregation-layer configmap in the parent",
            )

    # clusternet -------------------------------------------------------------

    def _start_clusternet(
        self,
        pki: PKI,
        timeout: float,
        sync_modes: tuple[str, ...] = (),
        extra_args: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        state = self._require_state()

        def start(name: str, argv: list[str]) -> processes.ProcessRecord:
            argv = [*argv, *(extra_args or {}).get(name, ())]
            # restarted when they exit (a lost Lease), as their Deployments would be
            return self._record(processes.start(name, argv, self._logs(name), supervised=True))

        parent = state.cluster(PARENT)
        self.log("installing clusternet (CRDs, namespaces, RBAC)")
        self._parallel(
            lambda c: components.install(Path(c.kubeconfig), child=c.role == "child"),
            state.clusters,
        )
        state.bootstrap_token = components.new_bootstrap_token()
        parent_client = self.client(parent)
        components.create_objects(
            parent_client,
            components.bootstrap_manifests(
                state.bootstrap_token, parent.server, pki.ca_cert.read_bytes()
            ),
        )
        hub = self._start_hub(pki, parent, timeout, (extra_args or {}).get(HUB_PROCESS, ()))
        name = f"{PARENT}/clusternet-controller-manager"
        self.log("starting clusternet-controller-manager")
        # helm installs HelmReleases (pushed and pulled); built by `clusternet local build`.
        helm_path = self.toolbox.locate("helm")
        helm_binary = str(helm_path) if helm_path else None
        argv = components.controller_manager_argv(parent.kubeconfig, free_port(), helm_binary)
        watched = [hub, start(name, argv)]
        name = f"{PARENT}/clusternet-scheduler"
        self.log("starting clusternet-scheduler")
        argv = components.scheduler_argv(parent.kubeconfig, free_port())
        watched.append(start(name, argv))
        for index, child in enumerate(state.children):
            name = f"{child.name}/clusternet-agent"
            self.log(f"starting clusternet-agent of {child.name}")
            argv = components.agent_argv(
                child.kubeconfig,
                child.name,
                parent.server,
                components.write_token_file(Path(child.kubeconfig).parent, state.bootstrap_token),
                free_port(),
                sync_mode=sync_modes[index] if index < len(sync_modes) else "Dual",
                helm_binary=helm_binary,
            )
            watched.append(start(name, argv))
        self._save_state()
        wanted = {c.name for c in state.children}

        def registered() -> bool:
            for record in watched:  # fail fast, with its log, if any component dies
                processes.check_running(record)
            return wanted <= components.ready_clusters(parent_client)

        _wait(registered, timeout, watched[1], "every child to register and become Ready")
        ids = components.cluster_ids(parent_client)

        def connected() -> bool:
            for record in watched:
                processes.check_running(record)
            return all(components.tunnel_works(parent_client, ids[c]) for c in wanted)

        _wait(connected, timeout, hub, "every agent's tunnel to reach its child through the hub")

    def _start_hub(
        self, pki: PKI, parent: ClusterState, timeout: float, extra_args: Sequence[str] = ()
    ) -> processes.ProcessRecord:
        """clusternet-hub on a free port, registered with the parent's aggregator."""
        name = HUB_PROCESS
        cert, key = pki.serving_cert_for_service(
            pki.root, components.HUB_SERVICE, components.HUB_SERVICE, "clusternet-system"
        )
        port = free_port()
        self.log(f"starting clusternet-hub on 127.0.0.1:{port}")
        argv = [*components.hub_argv(parent.kubeconfig, port, cert, key), *extra_args]
        record = self._record(processes.start(name, argv, self._logs(name), supervised=True))
        self._save_state()
        client = self.client(parent)
        components.register_hub(client, port, pki.ca_cert.read_bytes())
        _wait(
            partial(components.hub_apiservices_available, client),
            timeout,
            record,
            f"APIServices {', '.join(components.HUB_APISERVICES)} to become Available",
        )
        return record

    # kubeconfigs ------------------------------------------------------------

    def _write_cluster_kubeconfig(self, cluster: ClusterState, pki: PKI) -> None:
        path = Path(cluster.kubeconfig)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, yaml.safe_dump(_kubeconfig(pki, [cluster], cluster.name)).encode())

    def _write_merged_kubeconfig(self, pki: PKI) -> None:
        assert self.state is not None
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        data = _kubeconfig(pki, self.state.clusters, PARENT)
        write_private(self.kubeconfig, yaml.safe_dump(data).encode())
        self.log(
            f"kubeconfig with contexts {', '.join(c.name for c in self.state.clusters)}: "
            f"{self.kubeconfig}"
        )

    def client(self, cluster: ClusterState | str) -> RestClient:
        if isinstance(cluster, str):
            state = self.state or self.load_state()
            if state is None:
                raise LocalEnvironmentError("no local environment is running")
            cluster = state.cluster(cluster)
        pki = PKI(self.run_dir / "pki")
        return RestClient(cluster.server, pki.ca_cert, pki.admin_cert, pki.admin_key)

    # ------------------------------------------------------------------ faults

    def stop_process(self, name: str) -> None:
        """Stop one process (e.g. ``child1/kube-apiserver``) to simulate an outage."""
        processes.stop([self._live_state_process(name)])

    def kill_process(self, name: str) -> None:
        """SIGKILL one process: no shutdown code runs (no Lease released, nothing flushed)."""
        processes.kill(self._live_state_process(name))

    def process_running(self, name: str) -> bool:
        return self._live_state_process(name).alive()

    def start_process(
        self, name: str, timeout: float = 120.0, argv: Sequence[str] | None = None
    ) -> None:
        """Start a stopped process again with the same flags (and port), or with ``argv``
        (kept for later restarts), and wait for it."""
        state = self._require_state()
        record = self._live_state_process(name)
        if record.alive():
            raise LocalEnvironmentError(f"{name} is already running (pid {record.pid})")
        command = list(argv) if argv is not None else record.argv
        state.processes.append(
            processes.start(name, command, Path(record.log), supervised=record.supervised)
        )
        self._save_state()
        if name.endswith("/kube-apiserver"):
            cluster = state.cluster(name.split("/")[0])
            _wait(
                partial(_readyz, self.client(cluster)),
                timeout,
                self._process(name),
                f"{name} /readyz",
            )
        elif name == "etcd":
            _wait(
                partial(_etcd_healthy, state.etcd_port),
                timeout,
                self._process(name),
                "etcd to become healthy",
            )

    def restart_process(self, name: str, timeout: float = 120.0) -> None:
        self.stop_process(name)
        self.start_process(name, timeout)

    def compact_etcd(self) -> int:
        """Compact etcd to its current revision; watchers from older versions then get 410.

        Returns the revision compacted to.
        """
        state = self._require_state()
        base = f"http://127.0.0.1:{state.etcd_port}/v3/kv"
        header = _etcd_post(f"{base}/range", {"key": base64.b64encode(b"/").decode()})["header"]
        revision = int(header["revision"])
        _etcd_post(f"{base}/compaction", {"revision": revision, "physical": True})
        return revision

    def _require_state(self) -> State:
        if self.state is None:
            self.state = self.load_state()
        if self.state is None:
            raise LocalEnvironmentError(f"no local environment in {self.run_dir}")
        return self.state

    def _live_state_process(self, name: str) -> processes.ProcessRecord:
        self._require_state()
        try:
            return self._process(name)
        except KeyError:
            raise LocalEnvironmentError(f"no process named {name!r} in this environment") from None

    # ------------------------------------------------------------------ down

    def down(self) -> list[str]:
        """Stop every process of the environment, by pid, and remove its run folder.

        Returns the names of the processes that were running.
        """
        state = self.state or self.load_state()
        if state is None:
            return []
        self._unregister_hub(state)
        # Stop clients first, then the apiservers, etcd last: an apiserver whose etcd is gone
        # hangs in its graceful shutdown until killed.
        stopped: list[str] = []
        for tier in (0, 1, 2):
            stopped += processes.stop([p for p in state.processes if _tier(p.name) == tier])
        survivors = [p for p in state.processes if p.alive()]
        if survivors:
            raise LocalEnvironmentError(
                "could not stop: " + ", ".join(f"{p.name} (pid {p.pid})" for p in survivors)
            )
        kubeconfig = Path(state.kubeconfig)
        with suppress(FileNotFoundError):
            if _kubeconfig_points_to(kubeconfig, state):
                kubeconfig.unlink()
        shutil.rmtree(state.run_dir, ignore_errors=True)
        self.state = None
        return stopped

    def _unregister_hub(self, state: State) -> None:
        """Delete the hub's APIServices while the parent still runs, before the hub stops:
        an aggregated group without a backend breaks discovery in the parent."""
        apiserver = [p for p in state.processes if p.name == f"{PARENT}/kube-apiserver"]
        if not apiserver or not apiserver[-1].alive():
            return
        try:
            client = self.client(state.cluster(PARENT))
            client.timeout = 5
            components.delete_hub_apiservices(client)
        except (OSError, APIError) as err:
            self.log(f"could not delete the hub's APIServices: {err}")

    # ------------------------------------------------------------------ status

    def status(self) -> list[dict[str, Any]]:
        """One row per cluster: its URL, process liveness and API health."""
        state = self.state or self.load_state()
        if state is None:
            return []
        rows = []
        for cluster in state.clusters:
            procs = [p for p in state.processes if p.name.startswith(f"{cluster.name}/")]
            latest = {p.name: p for p in procs}
            alive = sum(p.alive() for p in latest.values())
            ready = "-"
            nodes = "-"
            if (
                latest.get(f"{cluster.name}/kube-apiserver")
                and latest[f"{cluster.name}/kube-apiserver"].alive()
            ):
                client = self.client(cluster)
                client.timeout = 3
                ready = "ok" if _readyz(client) else "not ready"
                if cluster.role == "child":
                    with suppress(Exception):
                        listed = client.get("/api/v1/nodes")["items"]
                        nodes = f"{sum(_node_ready(n) for n in listed)}/{len(listed)}"
            rows.append(
                {
                    "cluster": cluster.name,
                    "role": cluster.role,
                    "server": cluster.server,
                    "processes": f"{alive}/{len(latest)}",
                    "readyz": ready,
                    "nodes ready": nodes,
                }
            )
        return rows


# ---------------------------------------------------------------------- helpers


def _tier(process_name: str) -> int:
    """Shutdown order: 0 clients of the apiservers, 1 the apiservers, 2 etcd."""
    if process_name == "etcd":
        return 2
    return 1 if process_name.endswith("/kube-apiserver") else 0


def _wait(
    condition: Callable[[], bool], timeout: float, process: processes.ProcessRecord, what: str
) -> None:
    """Wait for a condition, failing fast (with its log) if the process behind it dies."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        processes.check_running(process)
        if condition():
            return
        if time.monotonic() > deadline:
            raise LocalEnvironmentError(
                f"timed out after {timeout:.0f}s waiting for {what}; last lines of "
                f"{process.log}:\n{process.log_tail()}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _etcd_healthy(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            health: Any = json.loads(resp.read())
            return isinstance(health, dict) and health.get("health") == "true"
    except (OSError, ValueError):
        return False


def _etcd_post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """A call to etcd's JSON gateway of its v3 API (no etcdctl needed)."""
    import urllib.request

    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        result: dict[str, Any] = json.loads(resp.read())
    return result


def _readyz(client: RestClient) -> bool:
    try:
        return bool(client.get("/readyz", timeout=3) == "ok")
    except (OSError, APIError):
        return False


def _exists(client: RestClient, path: str) -> bool:
    try:
        client.get(path)
        return True
    except APIError as err:
        if err.status in (404, 403, 401, 500, 503):
            return False
        raise
    except OSError:
        return False


def _node_ready(node: dict[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    tainted = any(t.get("key") == NOT_READY_TAINT for t in node.get("spec", {}).get("taints") or [])
    return ready and not tainted


def _nodes_ready(client: RestClient, names: list[str]) -> bool:
    try:
        items = client.get("/api/v1/nodes")["items"]
    except (OSError, APIError):
        return False
    ready = {n["metadata"]["name"] for n in items if _node_ready(n)}
    return set(names) <= ready


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _kubeconfig(pki: PKI, clusters: list[ClusterState], current: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": c.name,
                "cluster": {
                    "server": c.server,
                    "certificate-authority-data": _b64(pki.ca_cert),
                },
            }
            for c in clusters
        ],
        "users": [
            {
                "name": "clusternet-local-admin",
                "user": {
                    "client-certificate-data": _b64(pki.admin_cert),
                    "client-key-data": _b64(pki.admin_key),
                },
            }
        ],
        "contexts": [
            {"name": c.name, "context": {"cluster": c.name, "user": "clusternet-local-admin"}}
            for c in clusters
        ],
        "current-context": current,
    }


def _kubeconfig_points_to(path: Path, state: State) -> bool:
    """True if the kubeconfig file is the one this environment wrote (not a newer one)."""
    try:
        data = yaml.safe_load(path.read_text())
        servers = {c["cluster"]["server"] for c in data.get("clusters", [])}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return False
    return servers == {c.server for c in state.clusters}
