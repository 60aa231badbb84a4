"""The parent API server's request mix over a window, from its own ``/metrics``.

``apiserver_request_total`` counts every request the API server handled, by verb, resource,
subresource and code.  Two readings, before and after the burst, tell what the burst cost
the parent per Subscription: the figure to compare when the API server is the bottleneck.
Requests the aggregator proxies to the hub (the shadow API, ``proxies.clusternet.io``) are
counted there too, as the group the client asked for.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from clusternet.kube import KubeClient

METRIC = "apiserver_request_total"


@dataclass(frozen=True, order=True)
class RequestKind:
    verb: str
    resource: str  # "group/resource[/subresource]", core resources without a group
    code: str

    def __str__(self) -> str:
        return f"{self.verb} {self.resource} {self.code}"


def parse(text: str) -> Counter[RequestKind]:
    """Counts of ``apiserver_request_total`` in a Prometheus text exposition, summed over
    the labels not kept (scope, version, component, dry_run)."""
    counts: Counter[RequestKind] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != METRIC.removesuffix("_total"):
            continue
        for sample in family.samples:
            if sample.name != METRIC:
                continue
            labels = sample.labels
            resource = labels.get("resource", "")
            if not resource:
                continue  # non-resource URLs: /healthz, /metrics, discovery
            if labels.get("subresource"):
                resource = f"{resource}/{labels['subresource']}"
            if labels.get("group"):
                resource = f"{labels['group']}/{resource}"
            if labels.get("dry_run"):
                resource += " (dry run)"
            counts[RequestKind(labels.get("verb", ""), resource, labels.get("code", ""))] += int(
                sample.value
            )
    return counts


def difference(before: Counter[RequestKind], after: Counter[RequestKind]) -> Counter[RequestKind]:
    """What happened between two readings (counters only grow; a restart would show as
    negative and is dropped)."""
    return Counter({kind: n - before[kind] for kind, n in after.items() if n > before[kind]})


async def read(client: KubeClient) -> Counter[RequestKind]:
    text = await client.request("GET", "/metrics", accept="text/plain")
    return parse(str(text))


def rows(mix: Counter[RequestKind], per: int, top: int = 15) -> list[tuple[str, str, str]]:
    """The ``top`` kinds of request, most frequent first: (request, count, per unit), and a
    last row for the rest and the total."""
    total = sum(mix.values())
    result = [
        (f"`{kind}`", f"{count:,}", f"{count / per:.2f}") for kind, count in mix.most_common(top)
    ]
    rest = total - sum(count for _, count in mix.most_common(top))
    if rest:
        result.append(("all others", f"{rest:,}", f"{rest / per:.2f}"))
    result.append(("**total**", f"{total:,}", f"{total / per:.2f}"))
    return result
