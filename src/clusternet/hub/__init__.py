"""clusternet-hub: the aggregated API server behind ``proxies.clusternet.io`` (docs/hub.md).

It terminates the agents' websocket tunnels (``sockets/<clusterID>``) and reverse-proxies
requests through them to the child clusters (``sockets/<clusterID>/proxy/...``).
"""
