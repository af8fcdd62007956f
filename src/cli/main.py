"""Entry point of the ``pstream`` command (also ``python -m cli``)."""
from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = [
    "cli.generate",
    "cli.resources",
    "cli.simulate",
    "cli.listen",
    "cli.ddl",
    "cli.local",
    "cli.keys",
    "cli.subjects",
    "cli.policies",
    "cli.contracts",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pstream",
        description="Privacy streams on Apache Beam: example data, keys, decryption and more. "
        "Run the pipeline itself with `python -m pipelines.run`.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `pstream decrypt ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
