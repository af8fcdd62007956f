"""Entry point of the Dataflow flex template (``FLEX_TEMPLATE_PYTHON_PY_FILE`` in the Dockerfile).

    python main.py --input=gs://bucket/shop/*.csv --output=gs://bucket/out ...   # what the launcher runs

The same job as ``python -m pipelines.run``: the template's parameters arrive as ``--name=value``
flags (see metadata.json); a Pub/Sub or Kafka parameter makes it a streaming job.
"""
from pipelines.run import main

if __name__ == "__main__":
    main()
