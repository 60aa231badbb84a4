"""Clusternet's benchmark harness (``python -m bench``) and its standalone scripts.

The ``bench_*.py`` modules still run on their own (``python bench/bench_proxy.py``); the
harness imports them for the measuring and adds the report (``report``), process figures
(``usage``) and plots (``plots``).
"""
