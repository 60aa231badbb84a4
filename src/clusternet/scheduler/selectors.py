"""Label selectors and taint tolerations, compiled once per cycle and evaluated per cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from clusternet.apis.core import Taint, Toleration
from clusternet.apis.meta import LabelSelector

LabelMatcher = Callable[[Mapping[str, str]], bool]


def compile_selector(selector: LabelSelector | None) -> LabelMatcher:
    """A function telling whether labels match ``selector`` (metav1.LabelSelectorAsSelector).

    An empty selector matches everything, as the apiserver's; every requirement must hold.
    """
    checks: list[LabelMatcher] = []
    if selector is not None:
        for key, value in (selector.match_labels or {}).items():
            checks.append(_equals(key, value))
        for req in selector.match_expressions or ():
            checks.append(_requirement(req.key, req.operator, frozenset(req.values or ())))
    if not checks:
        return lambda _labels: True
    if len(checks) == 1:
        return checks[0]
    return lambda labels: all(check(labels) for check in checks)


def _equals(key: str, value: str) -> LabelMatcher:
    def match(labels: Mapping[str, str]) -> bool:
        return labels.get(key) == value

    return match


def _requirement(key: str, operator: str, values: frozenset[str]) -> LabelMatcher:
    def is_in(labels: Mapping[str, str]) -> bool:
        return labels.get(key) in values

    def not_in(labels: Mapping[str, str]) -> bool:
        # NotIn matches a missing key, as in Kubernetes.
        return labels.get(key) not in values

    def exists(labels: Mapping[str, str]) -> bool:
        return key in labels

    def does_not_exist(labels: Mapping[str, str]) -> bool:
        return key not in labels

    operators = {"In": is_in, "NotIn": not_in, "Exists": exists, "DoesNotExist": does_not_exist}
    return operators[operator]


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    """core/v1 ``Toleration.ToleratesTaint``."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    operator = toleration.operator or "Equal"
    if operator == "Exists":
        return True
    # An empty key with Equal tolerates nothing: only Exists may omit the key.
    return bool(toleration.key) and (toleration.value or "") == (taint.value or "")


def untolerated(
    taints: Iterable[Taint], tolerations: Iterable[Toleration], effects: frozenset[str]
) -> list[Taint]:
    """The taints with one of ``effects`` that no toleration tolerates."""
    tolerations = list(tolerations)
    return [
        taint
        for taint in taints
        if taint.effect in effects and not any(tolerates(t, taint) for t in tolerations)
    ]


def describe_taint(taint: Taint) -> str:
    return f"{{{taint.key}: {taint.value or ''}}}"
