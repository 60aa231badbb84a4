"""clusternet-agent: registers a child cluster with its parent and reports its status.

Modules: :mod:`~clusternet.agent.options` (flags), :mod:`~clusternet.agent.bootstrap`
(trusting the parent), :mod:`~clusternet.agent.registration` (cluster ID, registration,
credentials), :mod:`~clusternet.agent.status` and :mod:`~clusternet.apis.quantity` (pure
status computation), :mod:`~clusternet.agent.reporter` (the heartbeat loop) and
:mod:`~clusternet.agent.app` (the process).
"""
