"""--config: parsing (camelCase and snake_case), validation, merging over the defaults."""

from __future__ import annotations

import pytest

from clusternet.scheduler.config import (
    ConfigError,
    PluginEntry,
    PluginSet,
    build_profiles,
    merge_plugins,
    parse_configuration,
)
from clusternet.scheduler.framework import ExtensionPoint, PluginRef
from clusternet.scheduler.plugins import DEFAULT_PLUGINS, in_tree_registry

DEFAULTS = (PluginRef("A"), PluginRef("B", 3), PluginRef("C"))


def plugin_set(enabled: list[tuple[str, int | None]] = (), disabled: list[str] = ()) -> PluginSet:  # type: ignore[assignment]
    return PluginSet(
        enabled=[PluginEntry(name=n, weight=w) for n, w in enabled],
        disabled=[PluginEntry(name=n) for n in disabled],
    )


@pytest.mark.parametrize(
    ("custom", "expected"),
    [
        (None, DEFAULTS),
        (plugin_set(disabled=["B"]), (PluginRef("A"), PluginRef("C"))),
        (plugin_set(disabled=["*"], enabled=[("X", None)]), (PluginRef("X"),)),
        # Re-listing a default replaces it in place with the new weight.
        (plugin_set(enabled=[("B", 7)]), (PluginRef("A"), PluginRef("B", 7), PluginRef("C"))),
        (plugin_set(enabled=[("B", None)]), DEFAULTS),
        (plugin_set(enabled=[("X", 2)]), (*DEFAULTS, PluginRef("X", 2))),
        # Disabled then re-enabled: it moves to the end, as in kube-scheduler.
        (
            plugin_set(disabled=["A"], enabled=[("A", None)]),
            (PluginRef("B", 3), PluginRef("C"), PluginRef("A")),
        ),
    ],
)
def test_merge_plugins(custom: PluginSet | None, expected: tuple[PluginRef, ...]) -> None:
    assert merge_plugins(DEFAULTS, custom) == expected


CAMEL = """
apiVersion: scheduler.config.clusternet.io/v1alpha1
kind: SchedulerConfiguration
percentageOfClustersToScore: 30
percentageOfClustersToTolerate: 20
profiles:
  - schedulerName: default
  - schedulerName: no-taints
    plugins:
      filter: {disabled: [{name: TaintToleration}]}
      score: {enabled: [{name: TaintToleration, weight: 5}]}
    pluginConfig:
      - {name: Predictor, args: {directAccess: true}}
"""

SNAKE = """
percentage_of_clusters_to_score: 30
percentage_of_clusters_to_tolerate: 20
profiles:
  - scheduler_name: default
  - scheduler_name: no-taints
    plugins:
      filter: {disabled: [{name: TaintToleration}]}
      score: {enabled: [{name: TaintToleration, weight: 5}]}
    plugin_config:
      - {name: Predictor, args: {directAccess: true}}
"""


@pytest.mark.parametrize("text", [CAMEL, SNAKE], ids=["camelCase", "snake_case"])
def test_both_key_spellings_mean_the_same(text: str) -> None:
    profiles = build_profiles(parse_configuration(text), in_tree_registry())
    default, custom = profiles
    assert default.plugins == {p: r for p, r in DEFAULT_PLUGINS.items()}
    assert default.percentage_of_clusters_to_score == 30
    assert custom.percentage_of_clusters_to_tolerate == 20
    assert [r.name for r in custom.plugins[ExtensionPoint.FILTER]] == [
        "ClusterAffinity",
        "ClusterReady",
    ]
    assert custom.plugins[ExtensionPoint.SCORE] == (PluginRef("TaintToleration", 5),)
    assert custom.plugin_config == {"Predictor": {"directAccess": True}}


def test_empty_file_is_the_default_profile() -> None:
    (profile,) = build_profiles(parse_configuration(""), in_tree_registry())
    assert profile.scheduler_name == "default"
    assert profile.percentage_of_clusters_to_tolerate == 10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("profiles: []", "at least one profile"),
        ("profiles: [{schedulerName: a}, {schedulerName: a}]", "duplicate schedulerName"),
        ("profiles: [{schedulerName: ''}]", "non-empty schedulerName"),
        ("percentageOfClustersToScore: 101", "less than or equal to 100"),
        ("profile: []", "Extra inputs are not permitted"),
        ("- a", "must be a mapping"),
        ("a: [", "not YAML"),
    ],
)
def test_invalid_configurations(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_configuration(text)


def test_unknown_plugin_names_are_reported() -> None:
    config = parse_configuration("profiles: [{plugins: {filter: {enabled: [{name: Nope}]}}}]")
    with pytest.raises(ConfigError, match="filter plugin 'Nope' is not registered"):
        build_profiles(config, in_tree_registry())
