"""Benchmarks of the privacy pipeline (not part of the installed package): see benchmarks/README.md.

    python -m benchmarks.pipeline                    # 200,000 events: plain loop vs Beam
    python -m benchmarks.pipeline --scaling          # 100k..800k events: time, memory, slope
"""
