"""Privacy streams on Apache Beam: contracts, per-subject encryption, consent-filtered streams.

Install for the workshop and the CLI:   pip install '.[workshop]'     (pstream, gateway, driver, example data)
Install for development:                pip install -e '.[test]'
Dataflow / Flink workers install only ``install_requires`` (the graph's needs) through
``--setup_file ./setup.py``: no gateway, web-socket, HTTP-client or faker packages. Extras by role:

- ``gateway``: the event gateway (``python -m gateway``): uvicorn, uvloop, httptools, websockets, Pub/Sub publisher
- ``workshop``: everything ``pstream`` runs: the gateway, the Python driver (aiohttp), web-socket
  listening, faker for the example data; the flex template image installs it (Dockerfile)
- ``kafka``: the gateway's Kafka publisher; ``analytics``: on-the-fly decryption in DuckDB
- ``notebook``: what the workshop notebook's cells import (pandas, faker, arrow), so that its data
  generator cell runs unchanged
- ``test``: the workshop and the test tools (``.ci/run``)
- ``bench``: benchmark-only dependencies: pyspark for ``benchmarks/pipeline.py``'s PySpark variant
"""
from setuptools import find_packages, setup

GATEWAY = [                             # python -m gateway, pstream gateway / local
    "uvicorn>=0.35,<0.60",
    "uvloop>=0.19,<0.30; sys_platform != 'win32'",
    "httptools>=0.6,<0.10",
    "websockets>=13,<18",
    "google-cloud-pubsub>=2.18,<3",     # the gateway's Pub/Sub publisher (also in apache-beam[gcp])
]
WORKSHOP = [                            # everything pstream runs
    *GATEWAY,
    "aiohttp>=3.9,<4",                  # the Python driver (SyncSender, AsyncSender), pstream simulate
    "faker>=20,<41",                    # the example data (pstream generate, python -m pipelines.run without input)
    # the contract tools: pstream contracts init / export / import (the wizard, ODCS v3)
    "open-data-contract-standard>=3.1,<4",  # the ODCS model and JSON Schema (contracts.odcs)
    "phonenumbers>=8.13,<10",           # phone numbers in samples (contracts.classify)
    "python-stdnum>=1.19,<3",           # IBANs in samples (contracts.classify)
]
NOTEBOOK = [                            # what the workshop notebook's own cells import (its requirements.txt),
    "faker>=20,<41",                    # so that its generator cell runs unchanged (tests/test_readme.py)
    "arrow>=1.2,<2",
    "pandas>=2,<4",
]

setup(
    name="beam-privacy-streams",
    version="0.1.0",
    description="Data contracts, field-level encryption per data subject and day, and "
    "consent-filtered privacy streams, as an Apache Beam pipeline.",
    python_requires=">=3.11,<3.14",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={
        "contracts": ["**/*.yaml"],
        "pipelines": ["*.yaml"],
        "schemas": ["*.schema.json"],
    },
    include_package_data=True,
    install_requires=[                  # what the Beam graph needs, on the launcher and on every worker
        "apache-beam[gcp,aws,azure]>=2.70,<2.78",
        "cryptography>=42,<51",
        "fastavro>=1.9,<2",
        "pyyaml>=6,<7",
        "jsonschema>=4.18,<5",         # every file format is a published JSON Schema (src/schemas/)
        "google-re2>=1.1,<2",           # contract regexes in linear time (contracts/regex.py)
        "mmh3>=4,<6",
        "orjson>=3.9,<4",
        "psycopg[binary]>=3.2,<4",      # the PostgreSQL key store and tables as batch input (libpq, C adaptation)
        "numpy>=1.24,<3",               # micro-aggregation (MDAV) in privacy.kanonymity
        "google-cloud-kms>=2.20,<4",    # gcp-kms:// KEKs (boto3 for aws-kms:// comes with apache-beam[aws])
        "rich>=13,<16",                 # progress lines and pstream report (pipelines.progress, pipelines.run_report)
    ],
    extras_require={
        "gateway": GATEWAY,
        "workshop": WORKSHOP,
        "test": [
            *WORKSHOP,
            *NOTEBOOK,                  # the README test runs the notebook's generator cell
            "pexpect>=4.8,<5",          # the contract wizard driven through a pseudo-terminal
            "pytest>=8,<10",
            "pytest-xdist>=3.5,<4",
            "hypothesis>=6.100,<7",
            "tink>=1.10,<2",
            "moto[server]>=5,<6",
            "gcp-storage-emulator>=2024.1,<2028",
            "duckdb>=1.3,<3",
            "sqlglot>=25,<31",
            "httpx>=0.27,<0.29",
            "confluent-kafka>=2.3,<3",  # gateway.publish_kafka's tests (no broker: URIs, timeouts)
            "pycanon>=1.3,<2",          # an independent k-anonymity check of micro-aggregated output
        ],
        "notebook": NOTEBOOK,
        "analytics": [                  # on-the-fly decryption in DuckDB (privacy.onthefly_duckdb)
            "duckdb>=1.3,<3",
        ],
        "bench": [                      # benchmarks/pipeline.py's variant (d), a PySpark local[2] job
            "pyspark>=3.5,<5",
        ],
        "kafka": [                      # the gateway's Kafka publisher (gateway.publish_kafka)
            "confluent-kafka>=2.3,<3",
        ],
    },
    entry_points={"console_scripts": ["pstream=cli.main:main"]},
)
