"""What a Base's Descriptions should be (spec §4.5, §4.6), as pure functions: the Base
controller (:mod:`.base`) gathers the inputs from its caches and writes the result.

For each feed of the Base, in order, the template is the feed's Manifest in the reserved
namespace (or, for a HelmChart feed, the HelmChart itself); the overrides are the
Globalizations of that feed whose ``clusterAffinity`` selects the cluster's ManagedCluster,
then the Localizations of that feed in the Base's namespace, each ordered by priority then
full creation timestamp (:func:`.overrides.ordered_overrides`; ones being deleted are skipped).

* ``<base>-generic`` (deployer Generic): ``spec.raw`` is every rendered object as JSON.
* ``<base>-helm`` (deployer Helm): ``spec.charts`` the chart references, ``spec.chartRaw`` the
  HelmChart objects after chart overrides, ``spec.raw`` one values document per chart.

Bad input stays local to its feed.  In ``<base>-generic``, a feed whose template is missing or
whose overrides fail keeps the objects it was last rendered to (from the current Description,
matched by apiVersion, kind, namespace and name; none if it never rendered) while the other
feeds are rendered as usual; a JSON patch on a missing path is skipped and reported
(:func:`.overrides.render`).  In ``<base>-helm`` a missing chart or failed override stops the
Description from being written (the last good one stays).  Either way the other Description of
the Base is unaffected, so a HelmChart that is missing or ``NotFound`` no longer holds up
generic feeds (spec §12 item 8).  :attr:`Rendered.problems` says all of it in one line per
problem, for the Base's ``apps.clusternet.io/render-error`` annotation.

Labels are those of :func:`clusternet.apis.naming.description_labels`, which keep
``config.name`` and ``subs.name`` (spec §12 item 1).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from clusternet.apis import known, naming
from clusternet.controllermanager.feedinventory import feed_identity
from clusternet.controllermanager.overrides import (
    OverrideError,
    OverrideSource,
    ordered_overrides,
    render,
    render_helm,
)

Object = dict[str, Any]

APPS_API_VERSION: Final = f"{known.APPS_GROUP}/v1alpha1"
GENERIC: Final = "Generic"
HELM: Final = "Helm"


def identity_of(feed: Mapping[str, Any]) -> str:
    """A feed's identity, as the Manifest ``config.*`` labels give it (see feedinventory)."""
    return feed_identity(
        str(feed.get("apiVersion", "")),
        str(feed.get("kind", "")),
        feed.get("namespace"),
        str(feed.get("name", "")),
    )


def is_helm_feed(feed: Mapping[str, Any]) -> bool:
    return feed.get("apiVersion") == APPS_API_VERSION and feed.get("kind") == "HelmChart"


# --- override selection ------------------------------------------------------------------------


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics on the wire form; empty or absent selects everything."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for req in selector.get("matchExpressions") or ():
        key, op, values = req.get("key"), req.get("operator"), set(req.get("values") or ())
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False  # an unknown operator selects nothing, as the apiserver's parser
    return True


def override_sources(
    feed: Mapping[str, Any],
    namespace: str,
    cluster_labels: Mapping[str, str] | None,
    localizations: Iterable[Mapping[str, Any]],
    globalizations: Iterable[Mapping[str, Any]],
) -> list[OverrideSource]:
    """The Globalizations and Localizations that apply to ``feed`` in the cluster whose
    dedicated namespace is ``namespace`` (``cluster_labels``: its ManagedCluster's labels;
    None if there is none, then only affinity-less Globalizations apply)."""
    identity = identity_of(feed)
    sources = []
    for glob in globalizations:
        spec = glob.get("spec") or {}
        if identity_of(spec.get("feed") or {}) != identity:
            continue
        affinity = spec.get("clusterAffinity")
        if cluster_labels is None and affinity:
            continue
        if selector_matches(affinity, cluster_labels or {}):
            sources.append(OverrideSource.from_object(glob))
    for loc in localizations:
        spec = loc.get("spec") or {}
        if loc["metadata"].get("namespace") != namespace:
            continue
        if identity_of(spec.get("feed") or {}) == identity:
            sources.append(OverrideSource.from_object(loc))
    return sources


# --- rendering -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedInput:
    """One feed of a Base with what it is rendered from."""

    feed: Mapping[str, Any]
    template: Mapping[str, Any] | None  # Manifest template, or the HelmChart; None if missing
    sources: Sequence[OverrideSource] = ()


@dataclass
class Rendered:
    """One Description to write (``description``; None: leave the current one alone), what
    was wrong with the input (``missing`` templates, override ``errors``, JSON patches on
    missing paths in ``warnings``, charts ``skipped``), or ``unused`` when the Base has no feed
    of its deployer."""

    name: str
    description: Object | None = None
    missing: list[Mapping[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # overrides skipped, with the reason
    skipped: list[str] = field(default_factory=list)  # feeds left out, with the reason
    unused: bool = False

    @property
    def problems(self) -> list[str]:
        """Every problem of the input, one line each (empty when the render was clean)."""
        missing = [
            f"template {f.get('kind')} {f.get('namespace') or ''}/{f.get('name')} does not exist"
            for f in self.missing
        ]
        return [*missing, *self.errors, *self.warnings, *self.skipped]


def encode(obj: Any) -> str:
    """A ``[]byte`` field's wire form: base64 of compact JSON with sorted keys (Go's
    ``json.Marshal`` of a map sorts keys too), so equal objects give equal strings."""
    text = json.dumps(obj, separators=(",", ":"), sort_keys=True)
    return base64.b64encode(text.encode()).decode("ascii")


def decode(raw: str) -> Any:
    return json.loads(base64.b64decode(raw))


def description_object(base: Mapping[str, Any], deployer: str, spec: Object) -> Object:
    meta = base["metadata"]
    return {
        "apiVersion": APPS_API_VERSION,
        "kind": "Description",
        "metadata": {
            "name": naming.description_name(meta["name"], helm=deployer == HELM),
            "namespace": meta["namespace"],
            "labels": naming.description_labels(base),
            "finalizers": [known.APP_FINALIZER],
            "ownerReferences": [
                {
                    "apiVersion": APPS_API_VERSION,
                    "kind": "Base",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"deployer": deployer, **spec},
    }


def rendered_objects(description: Mapping[str, Any] | None) -> list[Object]:
    """The objects of a Generic Description's ``spec.raw`` (entries that do not decode to an
    object are left out)."""
    objects = []
    for raw in ((description or {}).get("spec") or {}).get("raw") or ():
        try:
            obj = decode(raw)
        except (ValueError, TypeError):
            continue
        if isinstance(obj, dict):
            objects.append(obj)
    return objects


def _of_feed(obj: Mapping[str, Any], feed: Mapping[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    return (
        obj.get("apiVersion") == feed.get("apiVersion")
        and obj.get("kind") == feed.get("kind")
        and (meta.get("namespace") or "") == (feed.get("namespace") or "")
        and meta.get("name") == feed.get("name")
    )


def render_generic(
    base: Mapping[str, Any], inputs: Sequence[FeedInput], previous: Sequence[Object] = ()
) -> Rendered:
    """``<base>-generic``; ``previous``: the objects the current Description carries
    (:func:`rendered_objects`), kept for feeds that cannot be rendered now."""
    result = Rendered(naming.description_name(base["metadata"]["name"], helm=False))
    generic = [i for i in inputs if not is_helm_feed(i.feed)]
    if not generic:
        result.unused = True
        return result
    raw = []
    for item in generic:
        if item.template is None:
            result.missing.append(item.feed)
        else:
            try:
                obj = render(
                    dict(item.template), ordered_overrides(item.sources), skipped=result.warnings
                )
            except OverrideError as err:
                result.errors.append(f"feed {naming.feed_key(item.feed)}: {err}")
            else:
                raw.append(encode(obj))
                continue
        raw += [encode(obj) for obj in previous if _of_feed(obj, item.feed)]
    if raw or not (result.missing or result.errors):
        result.description = description_object(base, GENERIC, {"raw": raw})
    return result


# Chart metadata that says who uses the chart, not what to install: left out of chartRaw so
# that it changes only when the chart does.
_CHART_METADATA: Final = ("name", "namespace", "labels", "annotations")
_NOT_COPIED_ANNOTATIONS: Final = (
    known.FEED_PROTECTION_ANNOTATION,
    "kubectl.kubernetes.io/last-applied-configuration",
)


def chart_object(chart: Mapping[str, Any]) -> Object:
    """The HelmChart as a Description carries it: identity, labels, annotations and spec."""
    meta = chart.get("metadata") or {}
    labels = {
        k: v for k, v in (meta.get("labels") or {}).items() if v not in ("Base", "Subscription")
    }
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in _NOT_COPIED_ANNOTATIONS
    }
    metadata = {k: meta[k] for k in _CHART_METADATA[:2] if k in meta}
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": chart.get("apiVersion", APPS_API_VERSION),
        "kind": "HelmChart",
        "metadata": metadata,
        "spec": dict(chart.get("spec") or {}),
    }


def render_helm_description(base: Mapping[str, Any], inputs: Sequence[FeedInput]) -> Rendered:
    result = Rendered(naming.description_name(base["metadata"]["name"], helm=True))
    charts = [i for i in inputs if is_helm_feed(i.feed)]
    if not charts:
        result.unused = True
        return result
    refs, chart_raw, raw = [], [], []
    verifying = False
    for item in charts:
        key = naming.feed_key(item.feed)
        if item.template is None:
            result.missing.append(item.feed)
            continue
        if not (item.template.get("status") or {}).get("phase"):
            # Not verified yet (spec §4.5): wait for the HelmChart controller's verdict (its
            # status update re-renders), rather than installing a chart that may not exist.
            verifying = True
            continue
        if ((item.template.get("status") or {}).get("phase")) == "NotFound":
            reason = (item.template.get("status") or {}).get("reason") or "chart not found"
            result.skipped.append(f"HelmChart {key} is NotFound: {reason}")
            continue
        try:
            rendered = render_helm(chart_object(item.template), ordered_overrides(item.sources))
        except OverrideError as err:
            result.errors.append(f"feed {key}: {err}")
            continue
        refs.append({"namespace": item.feed.get("namespace") or "", "name": item.feed["name"]})
        chart_raw.append(encode(rendered.chart))
        raw.append(encode(rendered.values))
    if not result.missing and not result.errors and not verifying:
        if refs:
            spec = {"charts": refs, "chartRaw": chart_raw, "raw": raw}
            result.description = description_object(base, HELM, spec)
        else:
            result.unused = True  # every chart is NotFound: nothing to install yet
    return result


def description_update(current: Mapping[str, Any], desired: Mapping[str, Any]) -> Object | None:
    """``current`` changed to ``desired`` (spec replaced; labels, owner and finalizer
    ensured; other metadata and status kept), or None when nothing differs — no write storms."""
    meta = current["metadata"]
    want = desired["metadata"]
    labels = dict(meta.get("labels") or {})
    finalizers = list(meta.get("finalizers") or [])
    owners = list(meta.get("ownerReferences") or [])
    changed = current.get("spec") != desired["spec"]
    for key, value in want["labels"].items():
        if labels.get(key) != value:
            labels[key] = value
            changed = True
    if known.APP_FINALIZER not in finalizers:
        finalizers.append(known.APP_FINALIZER)
        changed = True
    owner = want["ownerReferences"][0]
    if not any(o.get("uid") == owner["uid"] and o.get("controller") for o in owners):
        owners = [o for o in owners if not o.get("controller")] + [owner]
        changed = True
    if not changed:
        return None
    return {
        **current,
        "metadata": {
            **meta,
            "labels": labels,
            "finalizers": finalizers,
            "ownerReferences": owners,
        },
        "spec": desired["spec"],
    }
