"""clusternet-py: manage many Kubernetes clusters as one (a Python Clusternet)."""

__version__ = "0.1.0"
