"""clusternet-controller-manager: the parent cluster's controllers (spec §1.4).

``crrapprover`` turns ClusterRegistrationRequests into registered clusters (a dedicated
namespace, a ManagedCluster, a least-privilege identity); ``clusterlifecycle`` keeps each
ManagedCluster's Ready condition and scheduling taints in line with its agent's heartbeats.
Run it with ``python -m clusternet.controllermanager``.
"""
