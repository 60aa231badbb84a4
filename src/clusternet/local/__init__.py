"""Real Kubernetes control planes on one machine, for demos, development and tests."""
