"""The Generic deployer shared by the controller-manager (push) and the agent (pull,
Recovery), spec §4.7/§4.8: prepare a Description's objects, server-side apply them to a child,
prune what the Description no longer lists, offload on deletion, report status.

May import only :mod:`clusternet.apis`, :mod:`clusternet.kube` and :mod:`clusternet.runtime`.
"""

from clusternet.deployer.objects import (
    FIELD_MANAGER,
    ObjectRef,
    ObjectResult,
    PushDecision,
    agent_pulls,
    apply_waves,
    build_status,
    cluster_lost,
    decode_raw,
    drifted,
    is_deleting,
    is_generic,
    owner_key,
    owner_value,
    prepare,
    previous_refs,
    push_decision,
    ref_of,
    refreshed_statuses,
    stale_refs,
    status_patch,
)
from clusternet.deployer.operations import DeployOutcome, apply_description, offload, prune
from clusternet.deployer.sync import DeployFailed, DescriptionSync, needs_offload

__all__ = [
    "FIELD_MANAGER",
    "DeployFailed",
    "DeployOutcome",
    "DescriptionSync",
    "ObjectRef",
    "ObjectResult",
    "PushDecision",
    "agent_pulls",
    "apply_description",
    "apply_waves",
    "build_status",
    "cluster_lost",
    "decode_raw",
    "drifted",
    "is_deleting",
    "is_generic",
    "needs_offload",
    "offload",
    "owner_key",
    "owner_value",
    "prepare",
    "previous_refs",
    "prune",
    "push_decision",
    "ref_of",
    "refreshed_statuses",
    "stale_refs",
    "status_patch",
]
