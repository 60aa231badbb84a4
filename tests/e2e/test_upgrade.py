"""Upgrading an install: ``clusternet install`` updates the CRDs in place (server-side apply).

The parent starts with an older set of CRDs (``tests/fixtures/crds-919202e.yaml``, the first
generated ones, whose Subscription status has no ``conditions``) and objects made against
them; the current install must keep every object (same uid, same spec) and make the new
fields usable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusternet.local.environment import Options
from clusternet.local.testing import Clusters, start_environment

OLD_CRDS = Path(__file__).resolve().parents[1] / "fixtures" / "crds-919202e.yaml"
NAMESPACE = "upgrade"
CONDITION = {
    "type": "Scheduled", "status": "True", "reason": "Upgraded", "message": "kept",
    "lastTransitionTime": "2026-01-01T00:00:00Z",
}  # fmt: skip

OBJECTS: list[dict[str, Any]] = [
    {
        "apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Subscription",
        "metadata": {"name": "app", "namespace": NAMESPACE},
        "spec": {"subscribers": [{"clusterAffinity": {}}],
                 "feeds": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "app",
                            "namespace": NAMESPACE}]},
    },
    {
        "apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Manifest",
        "metadata": {"name": "configmap-upgrade-app", "namespace": NAMESPACE},
        "template": {"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "app", "namespace": NAMESPACE}, "data": {"k": "v"}},
    },
    {
        "apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Localization",
        "metadata": {"name": "app", "namespace": NAMESPACE},
        "spec": {"priority": 600,
                 "feed": {"apiVersion": "v1", "kind": "ConfigMap", "name": "app",
                          "namespace": NAMESPACE},
                 "overrides": [{"name": "k", "type": "JSONPatch",
                                "value": '[{"op": "replace", "path": "/data/k", "value": "w"}]'}]},
    },
]  # fmt: skip
PLURALS = {
    "Subscription": "subscriptions",
    "Manifest": "manifests",
    "Localization": "localizations",
}


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clusters]:
    options = Options(children=1, clusternet=False)
    with start_environment(tmp_path_factory.mktemp("upgrade"), options) as c:
        yield c


def install(c: Clusters) -> None:
    installed = subprocess.run(
        [sys.executable, "-m", "clusternet.cli.main", "install",
         "--kubeconfig", str(c.kubeconfig), "--context", "parent"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr


def set_condition(c: Clusters) -> list[Any]:
    """Write a Subscription status condition; what the server kept of it."""
    patched = c.kubectl("parent")(
        "patch", "subscription", "app", "-n", NAMESPACE, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": {"conditions": [CONDITION]}}), "-o", "json",
    )  # fmt: skip
    return list(json.loads(patched.stdout).get("status", {}).get("conditions") or [])


def test_install_upgrades_crds_in_place_and_keeps_objects(clusters: Clusters) -> None:
    kc = clusters.kubectl("parent")
    kc("apply", "-f", str(OLD_CRDS))
    for crd in kc.json("get", "crd")["items"]:
        name = crd["metadata"]["name"]
        if name.endswith(("clusternet.io", "x-k8s.io")):
            kc("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    kc("create", "namespace", NAMESPACE)
    for obj in OBJECTS:
        kc("create", "-f", "-", input=json.dumps(obj))
    before = {
        o["kind"]: kc.json("get", PLURALS[o["kind"]], o["metadata"]["name"], "-n", NAMESPACE)
        for o in OBJECTS
    }
    assert set_condition(clusters) == [], "the old schema prunes status.conditions"

    install(clusters)
    kc("wait", "--for=condition=Established", "crd/subscriptions.apps.clusternet.io")

    for kind, old in before.items():
        now = kc.json("get", PLURALS[kind], old["metadata"]["name"], "-n", NAMESPACE)
        assert now["metadata"]["uid"] == old["metadata"]["uid"], f"{kind} was recreated"
        for field in ("spec", "template"):
            assert now.get(field) == old.get(field), f"{kind} {field} changed"
    assert set_condition(clusters) == [CONDITION], "the new field is usable"
    install(clusters)  # idempotent: a second run of the same version changes nothing
    assert set_condition(clusters) == [CONDITION]
