"""The container image and the Helm charts (deploy/charts, docs/deployment.md).

The charts are linted and rendered by the real helm binary (built by ``clusternet local
build``) with their defaults and with the non-default values in each chart's ``ci/``.  Every
rendered container's arguments are parsed by the component's own command line parser, with
the files its volumes mount written to a simulated pod filesystem, so a chart cannot pass a
flag the component does not have or a value it rejects.  The Dockerfile cannot be built here
(no Docker engine): the facts the charts rely on are checked by reading it.
"""

from __future__ import annotations

import base64
import re
import subprocess
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from clusternet.agent.options import parse_options as agent_options
from clusternet.apis.install import (
    APP_DEPLOYER,
    BOOTSTRAP_GROUP,
    BOOTSTRAPPING_ROLE,
    HUB_PROXY_SERVICE_ACCOUNT,
    SOCKETS_PROXY_ROLE,
    SYSTEM_NAMESPACE,
    child_manifests,
    parent_manifests,
)
from clusternet.controllermanager.app import parse_options as controller_manager_options
from clusternet.hub.app import parse_options as hub_options
from clusternet.local.binaries import Toolbox
from clusternet.local.components import HUB_APISERVICES
from clusternet.scheduler.app import parse_options as scheduler_options
from clusternet.scheduler.config import load_profiles
from clusternet.scheduler.plugins import in_tree_registry

ROOT = Path(__file__).resolve().parents[2]
CHARTS_DIR = ROOT / "deploy" / "charts"
SHARED_HELPERS = CHARTS_DIR / "_shared" / "_helpers.tpl"
CRDS_DIR = ROOT / "manifests" / "crds"
PARENT_CHARTS = ("clusternet-controller-manager", "clusternet-scheduler", "clusternet-hub")
CHARTS = (*PARENT_CHARTS, "clusternet-agent")
NAMESPACE = SYSTEM_NAMESPACE
# The chart, and what parses its container's arguments.
PARSERS: dict[str, Callable[[Sequence[str]], Any]] = {
    "clusternet-controller-manager": controller_manager_options,
    "clusternet-scheduler": scheduler_options,
    "clusternet-hub": hub_options,
    "clusternet-agent": agent_options,
}
IMAGE_BIN = "/opt/clusternet/bin/"
TOKEN = "abcdef.0123456789abcdef"

Doc = dict[str, Any]


def helm_binary() -> Path:
    helm = Toolbox().locate("helm")
    if helm is None:
        pytest.skip("helm is not built: run `clusternet local build`")
    return helm


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def ci_values(chart: str, name: str) -> str:
    return str(CHARTS_DIR / chart / "ci" / f"{name}-values.yaml")


def values_files(chart: str) -> list[Path]:
    return sorted((CHARTS_DIR / chart / "ci").glob("*.yaml"))


def chart_cases() -> Iterator[Any]:
    for chart in CHARTS:
        for values in values_files(chart):
            yield pytest.param(chart, values, id=f"{chart}-{values.stem}")


def render(chart: str, *args: str, release: str | None = None) -> list[Doc]:
    out = helm(
        "template", release or chart, str(CHARTS_DIR / chart), "--namespace", NAMESPACE, *args
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def only(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


# -- the Dockerfile ------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) per stage, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    ))  # fmt: skip
    stages: list[list[tuple[str, str]]] = [[]]
    for line in logical.splitlines():
        if not line.strip():
            continue
        instruction, _, rest = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), rest.strip()))
    return [stage for stage in stages if stage]


def console_scripts() -> dict[str, str]:
    scripts: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "scripts"
    ]
    return scripts


def test_dockerfile_is_multi_stage_and_runs_as_a_numeric_non_root_user() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a build stage and a runtime stage"
    runtime = stages[-1]
    users = [args for instruction, args in runtime if instruction == "USER"]
    assert users, "the runtime stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "a numeric UID (runAsNonRoot can verify it)"
    assert int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)
    instructions = [instruction for stage in stages for instruction, _ in stage]
    assert "ADD" not in instructions, "COPY only: ADD fetches URLs and unpacks archives"
    # The runtime stage gets the built environment, nothing from the build context.
    copies = [args for instruction, args in runtime if instruction == "COPY"]
    assert copies
    assert all(args.startswith("--from=") for args in copies)
    labels = " ".join(args for instruction, args in runtime if instruction == "LABEL")
    for key in ("title", "source", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    cmd = [args for instruction, args in runtime if instruction == "CMD"]
    assert cmd
    assert cmd[-1].startswith("["), "exec form: no shell at run time"


def test_build_context_holds_only_what_the_wheel_is_built_from() -> None:
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", "deny by default: no kubeconfig, key or .venv reaches the build"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "src"}
    copied = " ".join(
        args
        for stage in dockerfile_stages()
        for instruction, args in stage
        if instruction == "COPY"
    )
    for name in ("pyproject.toml", "README.md", "src/"):
        assert name in copied


def test_chart_commands_are_console_scripts_of_the_image() -> None:
    scripts = console_scripts()
    text = (ROOT / "Dockerfile").read_text()
    assert "/opt/clusternet" in text
    assert "PATH=/opt/clusternet/bin" in text
    for chart in CHARTS:
        docs = render(chart, "-f", str(values_files(chart)[0]))
        container = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        (command,) = container["command"]
        assert command == IMAGE_BIN + chart, chart
        assert chart in scripts, f"{chart} is not a console script in pyproject.toml"


# -- lint and render -----------------------------------------------------------------------------


@pytest.mark.parametrize(("chart", "values"), list(chart_cases()))
def test_helm_lint_is_clean(chart: str, values: Path) -> None:
    result = helm(
        "lint", str(CHARTS_DIR / chart), "--strict", "--namespace", NAMESPACE, "-f", str(values)
    )
    assert "[WARNING]" not in result.stdout, result.stdout
    assert "[ERROR]" not in result.stdout, result.stdout


def test_every_chart_has_default_and_non_default_ci_values() -> None:
    for chart in CHARTS:
        names = [v.name for v in values_files(chart)]
        assert {"custom-values.yaml", "default-values.yaml"} <= set(names), chart


def _mounted_files(docs: list[Doc], pod: Doc, root: Path) -> dict[str, Path]:
    """Write what the pod's ConfigMap and Secret volumes hold (when rendered) under ``root``;
    mount path -> folder."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    mounts: dict[str, Path] = {}
    for mount in pod["spec"]["containers"][0].get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        folder = root / mount["mountPath"].lstrip("/")
        folder.mkdir(parents=True, exist_ok=True)
        mounts[mount["mountPath"]] = folder
        if "configMap" in volume:
            source = find(docs, "ConfigMap", volume["configMap"]["name"])
            for cm in source:
                for key, value in (cm.get("data") or {}).items():
                    (folder / key).write_text(value)
        elif "secret" in volume:
            secrets = find(docs, "Secret", volume["secret"]["secretName"])
            for secret in secrets:
                for key, value in (secret.get("data") or {}).items():
                    (folder / key).write_bytes(base64.b64decode(value))
            if not secrets:  # a Secret the user made (existingSecret): stands for a token
                for arg in pod["spec"]["containers"][0].get("args") or []:
                    name, _, path = str(arg).partition("=")
                    if name.endswith("-file") and path.startswith(mount["mountPath"] + "/"):
                        (folder / path.rpartition("/")[2]).write_text(TOKEN)
    return mounts


def _env_values(docs: list[Doc], container: Doc) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        if "fieldRef" in item["valueFrom"]:  # the downward API: a pod IP stands for all
            assert item["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
            env[item["name"]] = "10.0.0.7"
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        secrets = find(docs, "Secret", ref["name"])
        env[item["name"]] = (
            base64.b64decode(secrets[0]["data"][ref["key"]]).decode() if secrets else TOKEN
        )
    return env


def _container_argv(docs: list[Doc], root: Path) -> list[str]:
    pod = only(docs, "Deployment")["spec"]["template"]
    container = pod["spec"]["containers"][0]
    mounts = _mounted_files(docs, pod, root)
    env = _env_values(docs, container)
    argv = []
    for arg in container["args"]:
        # The kubelet's $(VAR) expansion, then paths into the simulated pod filesystem.
        arg = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], str(arg))
        for mount_path, folder in mounts.items():
            arg = arg.replace(f"={mount_path}/", f"={folder}/")
        argv.append(arg)
    return argv


@pytest.mark.parametrize(("chart", "values"), list(chart_cases()))
def test_rendered_arguments_are_accepted_by_the_component(
    chart: str, values: Path, tmp_path: Path
) -> None:
    docs = render(chart, "-f", str(values))
    argv = _container_argv(docs, tmp_path)
    options = PARSERS[chart](argv)  # exits (SystemExit) on an unknown flag or a bad value
    if chart == "clusternet-scheduler":  # read at start-up, not by the parser
        assert load_profiles(options.config, in_tree_registry())


@pytest.mark.parametrize(("chart", "values"), list(chart_cases()))
def test_pods_are_hardened_and_probed(chart: str, values: Path) -> None:
    docs = render(chart, "-f", str(values))
    deployment = only(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    container = pod["containers"][0]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    (port,) = container["ports"]
    args = container["args"]
    assert f"--secure-port={port['containerPort']}" in args
    assert "--bind-address=0.0.0.0" in args, "probes and scrapes come from outside the pod"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in (container["livenessProbe"], container["readinessProbe"]):
        assert probe["httpGet"]["port"] == port["name"]
    scheme = "HTTPS" if chart == "clusternet-hub" else "HTTP"
    assert container["readinessProbe"]["httpGet"]["scheme"] == scheme
    assert deployment["spec"]["selector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])
    assert "serviceAccountName" in pod


@pytest.mark.parametrize(("chart", "values"), list(chart_cases()))
def test_pdb_only_with_more_than_one_replica(chart: str, values: Path) -> None:
    docs = render(chart, "-f", str(values))
    replicas = only(docs, "Deployment")["spec"]["replicas"]
    pdbs = find(docs, "PodDisruptionBudget")
    assert len(pdbs) == (1 if replicas > 1 else 0)
    for pdb in pdbs:
        labels = only(docs, "Deployment")["spec"]["selector"]["matchLabels"]
        assert pdb["spec"]["selector"]["matchLabels"] == labels


@pytest.mark.parametrize("chart", ["clusternet-controller-manager", "clusternet-scheduler"])
def test_leader_election_runs_where_its_lease_role_is(chart: str) -> None:
    docs = render(chart)
    args = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-elect=true" in args
    assert f"--leader-elect-resource-namespace={NAMESPACE}" in args
    role = only(docs, "Role", f"{chart}-leader-election")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "list", "watch", "create", "update", "patch"],
        }
    ]
    off = render(chart, "--set", "leaderElection.enabled=false")
    assert not find(off, "Role")
    assert (
        "--leader-elect=false"
        in only(off, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    )


def test_feature_gates_and_extra_args_reach_the_command_line() -> None:
    docs = render(
        "clusternet-scheduler",
        "--set",
        "featureGates.Predictor=false",
        "--set",
        "featureGates.FailOver=true",
        "--set",
        "extraArgs={--v=5}",
    )
    args = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--feature-gates=FailOver=true,Predictor=false" in args
    assert args[-1] == "--v=5"
    options = scheduler_options(args)
    assert "FailOver" in options.common.feature_gates


def test_service_monitor_is_optional() -> None:
    for chart in CHARTS:
        values = values_files(chart)
        defaults = render(chart, "-f", str(values[-1]))
        assert not find(defaults, "ServiceMonitor"), chart
    docs = render("clusternet-scheduler", "--set", "metrics.serviceMonitor.enabled=true")
    monitor = only(docs, "ServiceMonitor")
    service = only(docs, "Service")
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )


# -- CRDs ----------------------------------------------------------------------------------------


def _crd_files(folder: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(folder.glob("*.yaml"))}


@pytest.mark.parametrize("chart", CHARTS)
def test_chart_crds_are_the_generated_ones(chart: str) -> None:
    """Copies of manifests/crds (what `clusternet install` applies): after changing the API
    types, run `python -m clusternet.apis.crdgen` and copy manifests/crds/*.yaml into each
    chart's crds/ (the agent's gets only multicluster.x-k8s.io_*)."""
    generated = _crd_files(CRDS_DIR)
    in_chart = _crd_files(CHARTS_DIR / chart / "crds")
    install = parent_manifests() if chart in PARENT_CHARTS else child_manifests()
    wanted = {
        f"{crd['spec']['group']}_{crd['spec']['names']['plural']}.yaml"
        for crd in install
        if crd["kind"] == "CustomResourceDefinition"
    }
    assert set(in_chart) == wanted
    stale = [name for name in wanted if in_chart[name] != generated[name]]
    assert not stale, f"{chart}/crds is stale: copy manifests/crds/{{{','.join(stale)}}}"


def test_helper_copies_are_identical() -> None:
    shared = SHARED_HELPERS.read_text()
    for chart in CHARTS:
        assert (CHARTS_DIR / chart / "templates" / "_helpers.tpl").read_text() == shared, chart


# -- RBAC ----------------------------------------------------------------------------------------


def _rules(docs: list[Doc], kind: str) -> list[Doc]:
    return [rule for role in find(docs, kind) for rule in role.get("rules") or []]


@pytest.mark.parametrize("chart", ["clusternet-controller-manager", "clusternet-scheduler"])
def test_parent_components_hold_no_wildcard_resource_rules(chart: str) -> None:
    docs = render(chart)
    for rule in _rules(docs, "ClusterRole") + _rules(docs, "Role"):
        assert "*" not in rule["resources"], rule
        assert "*" not in rule["apiGroups"], rule


def test_scheduler_may_not_read_secrets() -> None:
    rules = _rules(render("clusternet-scheduler"), "ClusterRole")
    assert not any("secrets" in rule["resources"] for rule in rules)
    proxy = [rule for rule in rules if rule["resources"] == ["sockets/proxy"]]
    assert proxy == [{"apiGroups": ["proxies.clusternet.io"], "resources": ["sockets/proxy"],
                      "verbs": ["create"]}]  # fmt: skip


def test_controller_manager_chart_lets_bootstrap_tokens_register() -> None:
    docs = render("clusternet-controller-manager")
    binding = only(docs, "ClusterRoleBinding", BOOTSTRAPPING_ROLE)
    assert binding["subjects"][0]["name"] == BOOTSTRAP_GROUP
    expected = next(m for m in parent_manifests() if m["metadata"]["name"] == BOOTSTRAPPING_ROLE)
    assert only(docs, "ClusterRole", BOOTSTRAPPING_ROLE)["rules"] == expected["rules"]
    reserved = only(docs, "Namespace")
    assert reserved["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_hub_rbac_is_what_an_extension_apiserver_needs() -> None:
    docs = render("clusternet-hub")
    reader = only(docs, "RoleBinding", "clusternet-hub-authentication-reader")
    assert reader["metadata"]["namespace"] == "kube-system"
    assert reader["roleRef"]["name"] == "extension-apiserver-authentication-reader"
    rules = only(docs, "ClusterRole", "clusternet-hub")["rules"]
    wildcard = [rule for rule in rules if "*" in rule["resources"] or "*" in rule["verbs"]]
    assert not wildcard
    assert {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
            "verbs": ["create"]} in rules  # fmt: skip
    # Dry-run validation of shadow templates: any kind, but only in the reserved namespace.
    shadow = only(docs, "Role", "clusternet-hub-shadow")
    assert shadow["metadata"]["namespace"] == "clusternet-reserved"
    socketsproxy = only(docs, "ClusterRole", SOCKETS_PROXY_ROLE)
    expected = next(
        m
        for m in parent_manifests()
        if m["kind"] == "ClusterRole" and m["metadata"]["name"] == SOCKETS_PROXY_ROLE
    )
    assert socketsproxy["rules"] == expected["rules"]
    only(docs, "ServiceAccount", HUB_PROXY_SERVICE_ACCOUNT)
    no_shadow = render("clusternet-hub", "--set", "featureGates.ShadowAPI=false")
    assert not find(no_shadow, "Role")
    assert not find(no_shadow, "CustomResourceDefinition")


def test_hub_replicas_peer() -> None:
    docs = render("clusternet-hub", "-f", ci_values("clusternet-hub", "replicas"))
    container = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert "--peer-advertise-address=$(POD_IP)" in args
    assert "--peer-tls-server-name=clusternet-hub.clusternet-system.svc" in args
    assert "--peer-ca-file=/etc/clusternet/peer-ca/ca.crt" in args
    role = only(docs, "Role", "clusternet-hub-peering")
    assert role["metadata"]["namespace"] == "clusternet-system"  # where tunnel Leases live
    assert role["rules"][0]["resources"] == ["leases"]
    # one replica: no peering unless asked for
    single = render("clusternet-hub")
    assert not [a for a in only(single, "Deployment")["spec"]["template"]["spec"][
        "containers"][0]["args"] if a.startswith("--peer")]  # fmt: skip
    assert not find(single, "Role", "clusternet-hub-peering")
    refused = helm("template", "r", str(CHARTS_DIR / "clusternet-hub"), "--set",
                   "replicaCount=2", check=False)  # fmt: skip
    assert refused.returncode != 0
    assert "needs peering.clientCertSecret" in refused.stderr
    # tls.mode=secret: the peers' CA comes from tls.secret.caBundle
    custom = render("clusternet-hub", "-f", ci_values("clusternet-hub", "custom"), "--set",
                    "replicaCount=2", "--set", "peering.clientCertSecret=peer")  # fmt: skip
    peer_ca = only(custom, "ConfigMap", "clusternet-hub-peer-ca")
    assert peer_ca["data"]["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")


def test_agent_is_the_childs_app_deployer() -> None:
    docs = render("clusternet-agent", "-f", ci_values("clusternet-agent", "default"))
    bindings = {b["metadata"]["name"]: b for b in find(docs, "ClusterRoleBinding")}
    assert bindings["clusternet-agent"]["roleRef"]["name"] == "cluster-admin"
    assert bindings[APP_DEPLOYER]["roleRef"]["name"] == "cluster-admin"
    token = only(docs, "Secret", APP_DEPLOYER)
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["namespace"] == SYSTEM_NAMESPACE


# -- the hub's serving certificate and APIServices -----------------------------------------------


def test_generated_serving_cert_is_trusted_by_the_apiservices() -> None:
    docs = render("clusternet-hub")
    secret = only(docs, "Secret", "clusternet-hub-serving-cert")
    ca_bundle = secret["data"]["ca.crt"]
    apiservices = find(docs, "APIService")
    assert sorted(a["metadata"]["name"] for a in apiservices) == sorted(HUB_APISERVICES)
    service = only(docs, "Service", "clusternet-hub")
    for apiservice in apiservices:
        spec = apiservice["spec"]
        assert spec["caBundle"] == ca_bundle
        assert spec["service"] == {
            "namespace": NAMESPACE,
            "name": "clusternet-hub",
            "port": service["spec"]["ports"][0]["port"],
        }
        assert f"{spec['version']}.{spec['group']}" == apiservice["metadata"]["name"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    ca = x509.load_pem_x509_certificate(base64.b64decode(ca_bundle))
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"clusternet-hub.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)


def test_hub_serving_cert_from_an_existing_secret_or_cert_manager() -> None:
    docs = render("clusternet-hub", "-f", ci_values("clusternet-hub", "custom"))
    assert not find(docs, "Secret")
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    secret_volumes = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
    assert secret_volumes == ["hub-serving-cert"]
    (apiservice,) = find(docs, "APIService")  # ShadowAPI off: proxies only
    assert apiservice["metadata"]["name"] == HUB_APISERVICES[0]
    assert apiservice["spec"]["service"]["port"] == 8443

    docs = render("clusternet-hub", "--set", "tls.mode=certManager")
    certificate = only(docs, "Certificate")
    assert certificate["spec"]["secretName"] == "clusternet-hub-serving-cert"
    assert only(docs, "Issuer")["spec"] == {"selfSigned": {}}
    for apiservice in find(docs, "APIService"):
        assert "caBundle" not in apiservice["spec"]
        assert apiservice["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
            f"{NAMESPACE}/clusternet-hub-serving-cert"
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "tls.mode=secret"], "tls.secret.name"),
        (["--set", "tls.mode=secret", "--set", "tls.secret.name=x"], "tls.secret.caBundle"),
        (["--set", "tls.mode=bogus"], "tls.mode must be"),
    ],
)
def test_hub_rejects_incomplete_tls_settings(args: list[str], message: str) -> None:
    result = helm("template", "clusternet-hub", str(CHARTS_DIR / "clusternet-hub"), *args,
                  check=False)  # fmt: skip
    assert result.returncode != 0
    assert message in result.stderr


# -- the agent's registration settings -----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", f"registrationToken.value={TOKEN}"], "parent.url is required"),
        (["--set", "parent.url=https://p:6443"], "registrationToken.value or"),
        (
            [
                "--set",
                "parent.url=https://p:6443",
                "--set",
                f"registrationToken.value={TOKEN}",
                "--namespace",
                "default",
            ],
            "namespace clusternet-system",
        ),
    ],
)
def test_agent_refuses_to_render_without_what_registration_needs(
    args: list[str], message: str
) -> None:
    result = helm(
        "template",
        "clusternet-agent",
        str(CHARTS_DIR / "clusternet-agent"),
        "--namespace",
        NAMESPACE,
        *args,
        check=False,
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_agent_token_comes_from_a_secret_not_the_pod_spec(tmp_path: Path) -> None:
    docs = render("clusternet-agent", "-f", ci_values("clusternet-agent", "default"))
    container = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert TOKEN not in yaml.safe_dump(only(docs, "Deployment"))
    assert not [a for a in container["args"] if a.startswith("--cluster-reg-token=")]
    assert "--cluster-reg-token-file=/etc/clusternet/registration/token" in container["args"]
    options = agent_options(_container_argv(docs, tmp_path))
    assert options.token == TOKEN


def test_agent_custom_values_reach_the_agent(tmp_path: Path) -> None:
    docs = render("clusternet-agent", "-f", ci_values("clusternet-agent", "custom"))
    args = _container_argv(docs, tmp_path)
    assert (
        "--cluster-labels=clusters.example.com/env=prod,topology.kubernetes.io/region=eu-west"
        in args
    )
    assert "--cluster-sync-mode=Dual" in args
    assert "--cluster-reg-type=EdgeCluster" in args
    ca_arg = next(a for a in args if a.startswith("--cluster-reg-parent-ca-file="))
    assert Path(ca_arg.partition("=")[2]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "registration-token")
    assert volume["secret"]["secretName"] == "clusternet-bootstrap"
    token_arg = "--cluster-reg-token-file=/etc/clusternet/registration/bootstrap-token"
    assert token_arg in pod["containers"][0]["args"]
    assert not find(docs, "Secret", "clusternet-agent-registration")
    image = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/clusternet@sha256:" + "0" * 64


def test_argument_check_catches_a_flag_the_component_lacks(tmp_path: Path) -> None:
    docs = render("clusternet-scheduler", "--set", "extraArgs={--no-such-flag}")
    with pytest.raises(SystemExit):
        scheduler_options(_container_argv(docs, tmp_path))
