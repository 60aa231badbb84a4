"""``--config``: the SchedulerConfiguration file (spec §1.5), merged over the default profile.

Keys may be camelCase (the documented form) or snake_case; upstream silently ignored the
camelCase percentage keys (spec §12 item 20), here both spellings work everywhere.  Merging
follows kube-scheduler: per extension point, ``disabled: [{name: "*"}]`` drops every default,
other disabled names drop one, an enabled plugin that is a default replaces it in place (new
weight), and the remaining enabled plugins are appended in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from clusternet.apis import known
from clusternet.scheduler.framework import ExtensionPoint, PluginRef, Profile, Registry
from clusternet.scheduler.plugins import DEFAULT_PLUGINS


class ConfigError(ValueError):
    """The configuration file is invalid; the message says where."""


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid"
    )


class PluginEntry(_Model):
    name: str
    weight: Annotated[int, Field(ge=0)] | None = None


class PluginSet(_Model):
    enabled: list[PluginEntry] = Field(default_factory=list)
    disabled: list[PluginEntry] = Field(default_factory=list)


class Plugins(_Model):
    pre_filter: PluginSet | None = None
    filter: PluginSet | None = None
    post_filter: PluginSet | None = None
    pre_predict: PluginSet | None = None
    predict: PluginSet | None = None
    pre_score: PluginSet | None = None
    score: PluginSet | None = None
    pre_assign: PluginSet | None = None
    assign: PluginSet | None = None
    reserve: PluginSet | None = None
    permit: PluginSet | None = None
    pre_bind: PluginSet | None = None
    bind: PluginSet | None = None
    post_bind: PluginSet | None = None


class PluginConfig(_Model):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class ProfileConfig(_Model):
    scheduler_name: str = known.DEFAULT_SCHEDULER_NAME
    plugins: Plugins | None = None
    plugin_config: list[PluginConfig] = Field(default_factory=list)


class SchedulerConfiguration(_Model):
    # Accepted and not checked, like kube-scheduler's file the group is informational here.
    api_version: str | None = None
    kind: str | None = None
    profiles: list[ProfileConfig] = Field(default_factory=lambda: [ProfileConfig()])
    percentage_of_clusters_to_score: Annotated[int, Field(ge=0, le=100)] = 0
    percentage_of_clusters_to_tolerate: Annotated[int, Field(ge=0, le=100)] = 10

    @model_validator(mode="after")
    def _unique_names(self) -> SchedulerConfiguration:
        if not self.profiles:
            raise ValueError("at least one profile is required")
        names = [p.scheduler_name for p in self.profiles]
        if any(not n for n in names):
            raise ValueError("every profile needs a non-empty schedulerName")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate schedulerName(s): {', '.join(duplicates)}")
        return self


def merge_plugins(
    defaults: tuple[PluginRef, ...], custom: PluginSet | None
) -> tuple[PluginRef, ...]:
    """kube-scheduler's mergePluginSet for one extension point."""
    if custom is None:
        return defaults
    disabled = {p.name for p in custom.disabled}
    enabled = {p.name: PluginRef(p.name, p.weight) for p in custom.enabled}
    merged: list[PluginRef] = []
    replaced: set[str] = set()
    if "*" not in disabled:
        for ref in defaults:
            if ref.name in disabled:
                continue
            if ref.name in enabled:
                custom_ref = enabled[ref.name]
                # Re-listing a default keeps its weight unless a new one is given.
                merged.append(PluginRef(ref.name, custom_ref.weight or ref.weight))
                replaced.add(ref.name)
            else:
                merged.append(ref)
    merged.extend(enabled[p.name] for p in custom.enabled if p.name not in replaced)
    return tuple(merged)


def build_profiles(
    config: SchedulerConfiguration,
    registry: Registry,
    defaults: Mapping[ExtensionPoint, tuple[PluginRef, ...]] = DEFAULT_PLUGINS,
) -> list[Profile]:
    profiles = []
    for item in config.profiles:
        plugins: dict[ExtensionPoint, tuple[PluginRef, ...]] = {}
        for point in ExtensionPoint:
            custom: PluginSet | None = None
            if item.plugins is not None:
                custom = getattr(item.plugins, _attribute(point))
            refs = merge_plugins(defaults.get(point, ()), custom)
            for ref in refs:
                if ref.name not in registry:
                    raise ConfigError(
                        f"profile {item.scheduler_name!r}: {point.value} plugin {ref.name!r} is "
                        f"not registered (known: {', '.join(registry.names())})"
                    )
            if refs:
                plugins[point] = refs
        profiles.append(
            Profile(
                scheduler_name=item.scheduler_name,
                plugins=plugins,
                plugin_config={c.name: c.args for c in item.plugin_config},
                percentage_of_clusters_to_score=config.percentage_of_clusters_to_score,
                percentage_of_clusters_to_tolerate=config.percentage_of_clusters_to_tolerate,
            )
        )
    return profiles


def _attribute(point: ExtensionPoint) -> str:
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in point.value)


def parse_configuration(text: str) -> SchedulerConfiguration:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"not YAML: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a mapping")
    try:
        return SchedulerConfiguration.model_validate(data)
    except ValidationError as err:
        raise ConfigError(str(err)) from None


def load_profiles(path: str | Path | None, registry: Registry) -> list[Profile]:
    """The profiles of ``path``, or the default profile when no file is given."""
    config = (
        SchedulerConfiguration()
        if path is None
        else parse_configuration(Path(path).read_text(encoding="utf-8"))
    )
    return build_profiles(config, registry)
