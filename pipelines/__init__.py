"""Pipeline assembly: options, config, the graph, the example data, and ``python -m pipelines.run``.

    python -m pipelines.run --help
"""
