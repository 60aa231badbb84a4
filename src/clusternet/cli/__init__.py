"""Command-line entry points: ``clusternet`` and the kubectl plugin ``kubectl-clusternet``."""
