"""API group package; the versions are submodules."""
