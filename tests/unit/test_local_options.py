"""Validation of `clusternet local up` options: clear messages for bad input."""

import pytest

from clusternet.local.environment import LocalEnvironmentError, Options


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (Options(children=0), "--children must be at least 1"),
        (Options(children=-3), "--children must be at least 1"),
        (Options(children=21), "more than one machine can run"),
        (Options(nodes_per_child=0), "--nodes-per-child must be at least 1"),
        (Options(node_cpu="eight"), "--node-cpu 'eight' is not a Kubernetes quantity"),
        (Options(node_memory="32 GB"), "--node-memory '32 GB' is not a Kubernetes quantity"),
        (Options(node_pods="-1"), "--node-pods '-1' is not a Kubernetes quantity"),
        (Options(parent_port=70000), "--parent-port 70000 is not a TCP port"),
    ],
)
def test_bad_options_are_rejected_with_a_clear_message(options: Options, message: str) -> None:
    with pytest.raises(LocalEnvironmentError, match=message):
        options.validate()


@pytest.mark.parametrize(
    "options",
    [
        Options(),
        Options(children=3, nodes_per_child=5),
        Options(node_cpu="500m", node_memory="1.5Gi", node_pods="1k"),
        Options(node_memory="1e9", parent_port=6443),
    ],
)
def test_good_options_pass(options: Options) -> None:
    options.validate()
