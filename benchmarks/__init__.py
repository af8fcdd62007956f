"""Benchmarks of the privacy pipeline (not part of the installed package): see benchmarks/README.md.

    python -m benchmarks.pipeline                                   # 200,000 rows: plain loop, graph, 2 workers, PySpark
    python -m benchmarks.pipeline --rows 100000,1000000 --rounds 1  # 1M figures and the time slope
"""
