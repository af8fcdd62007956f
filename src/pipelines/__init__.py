"""Pipeline assembly: options, config, the graph, the example data, and ``python -m pipelines.run``.

    python -m pipelines.run --help

Streaming (``streaming.py``, ``stream_options.py``) and exporters to S3/GCS/Azure
(``connectors.py``, ``exporting.py``) plug into the same graph.
"""
