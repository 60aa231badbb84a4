"""clusternet-scheduler: the plugin framework, the algorithm and the process (spec §5)."""
