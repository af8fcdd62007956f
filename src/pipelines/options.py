"""The pipeline's own options, declared once for the command line, Dataflow templates and Flink.

    from apache_beam.options.pipeline_options import PipelineOptions
    from pipelines.options import PrivacyPipelineOptions
    options = PipelineOptions(["--input", "data.csv", "--output", "gs://bucket/out"])
    options.view_as(PrivacyPipelineOptions).input      # 'data.csv'

Every option defaults to None so that a value from ``--config`` is only overridden by a flag the
user gave. ``templates/metadata.json`` lists the same parameters (a test keeps them in step).
"""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions


class PrivacyPipelineOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("privacy pipeline")
        group.add_argument("--config", default=None,
                           help="Pipeline config YAML: contract, input options, privacy streams, export. "
                                "Default: the embedded web shop example (pipelines/webshop.yaml).")
        group.add_argument("--input", default=None,
                           help="Input file or glob (CSV with a header, or JSONL); local, gs://, s3://, azfs://.")
        group.add_argument("--input_format", default=None, choices=["csv", "jsonl"],
                           help="Input format; default: from the file suffix (.jsonl/.json -> jsonl, else csv).")
        group.add_argument("--contract", default=None,
                           help="Data contract: a reference handle/name/version or a YAML file path.")
        group.add_argument("--output", default=None,
                           help="Output root (directory or URI); holds encrypted/, streams/<name>/, keys/, dead_letter/.")
        group.add_argument("--key_store", default=None,
                           help="Key store URI: sqlite:///path or postgresql://...; default: sqlite file "
                                "<output>/keystore.sqlite (local output only).")
        group.add_argument("--kek", default=None,
                           help="Key-encryption key URI, e.g. local://path/kek.json, gcp-kms://..., aws-kms://...; "
                                "default: local://<output>/kek.json (local output only).")
        group.add_argument("--retention_days", default=None, type=int,
                           help="Days a key is kept after its day (expiresAt); default 2556 (7 years).")
        group.add_argument("--partition_by_day", default=None, type=_bool,
                           help="true: write Hive-style date=YYYY-MM-DD/ folders; default false.")
        group.add_argument("--export_interval", default=None, type=int,
                           help="Seconds per export window in streaming runs (30-3600); default 60.")
        group.add_argument("--max_file_bytes", default=None, type=int,
                           help="Roll output files at this size; default 134217728 (128 MiB).")
        group.add_argument("--job", default=None, choices=["encryption", "micro_aggregation"],
                           help="Batch job kind: encryption (default: encrypted events and privacy streams) or "
                                "micro_aggregation (k-anonymous quasi-identifiers, PII encrypted).")
        group.add_argument("--k", default=None, type=int,
                           help="micro_aggregation: each quasi-identifier combination is shared by at least k "
                                "records (k >= 2).")
        group.add_argument("--quasi_identifiers", default=None,
                           help="micro_aggregation: comma-separated fields; default: the contract's isQuasiId fields.")
        group.add_argument("--allow_draft_contract", default=None, nargs="?", const=True, type=_bool,
                           help="Run on a contract whose lifecycle state accepts no events (DRAFT, IN_REVIEW, APPROVED), to try it out; without it such a run is refused (exit 2). ARCHIVED contracts are refused even so.")
        group.add_argument("--write_mode", default=None, choices=["replace", "append", "fail"],
                           help="What a batch run does with an output that already holds runs: replace (default: "
                                "when this run commits, its files replace the earlier ones, so a rerun never "
                                "duplicates), append (add this run's files), fail (refuse to write).")


def _bool(text: str) -> bool:
    lowered = str(text).lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got '{text}'")
