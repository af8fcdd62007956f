"""Entry point of the ``pstream`` command (also ``python -m cli``).

    pstream --help                 # the commands, without importing any of them
    pstream create stream --help   # imports cli.resources only

``COMMANDS`` names every top-level command, the module that registers it (its
``register(subparsers)`` adds it with ``help=summary(name)``) and its one-line help. ``main``
imports only the module of the command given, and command modules import what they need
(Beam, aiohttp, websockets, uvicorn, Google clients) inside the functions that run a command,
so that every ``--help`` answers in a fraction of a second (tests/test_cli_speed.py).
Flags are kebab-case (``--project-dir``); Beam's own options keep Beam's spelling, and only
``python -m pipelines.run`` takes them.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "generate": ("cli.generate", "generate example data"),
    "create": ("cli.resources", "create a stream, data connector or batch exporter"),
    "list": ("cli.resources", "list streams, data connectors or batch exporters"),
    "get": ("cli.resources", "show a stream, data connector, batch exporter, or a contract's schema code"),
    "delete": ("cli.resources", "delete a stream, data connector or batch exporter"),
    "rotate-credentials": ("cli.resources",
                           "give a pipeline a new client secret (printed once); earlier tokens are refused"),
    "simulate": ("cli.simulate", "send simulated events"),
    "listen": ("cli.listen", "print events of a stream as they are produced"),
    "ddl": ("cli.ddl", "external-table DDL (Athena, BigQuery, DuckDB) for exported JSONL"),
    "local": ("cli.local", "run gateway, pipeline and exporters together on this machine"),
    "gateway": ("cli.local", "run only the event gateway (python -m gateway)"),
    "keys": ("cli.keys", "export the keys of a run (plaintext, for warehouses)"),
    "decrypt": ("cli.keys", "decrypt the PII fields of encrypted JSONL events with exported keys"),
    "subjects": ("cli.subjects", "data subjects: list, keyLinks, forget, access requests"),
    "policies": ("cli.policies", "retention and legal grounds of keys"),
    "report": ("cli.report", "show the report of the last batch run into an output (counts, dead letters, charts)"),
    "contracts": ("cli.contracts", "data contracts: lifecycle (create, submit, approve, activate, ...), propose one "
                  "from sample data (init), compare versions (diff), ODCS v3 (export, import)"),
    "purposes": ("cli.purposes", "names for the project's purpose levels (analytics, marketing, ...)"),
    "audit": ("cli.audit", "the audit log of contract transitions and data-subject requests: list, verify"),
}
COMMAND_MODULES = sorted({module for module, _ in COMMANDS.values()})


def summary(command: str) -> str:
    """The one-line help of a top-level command."""
    return COMMANDS[command][1]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command (``command`` None), or of one command in full and the others
    by name only (their modules are not imported)."""
    parser = argparse.ArgumentParser(
        prog="pstream",
        description="Privacy streams on Apache Beam: the project's streams and exporters, the local gateway "
        "and pipeline, example data, keys, data subjects. Run the pipeline itself with `python -m pipelines.run`.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    modules = set(COMMAND_MODULES) if command is None else {COMMANDS[command][0]} if command in COMMANDS else set()
    for name, (module, help_text) in COMMANDS.items():
        if module in modules:
            importlib.import_module(module).register(subparsers)   # all of its commands, in full
            modules.discard(module)
        if name not in subparsers.choices:
            subparsers.add_parser(name, help=help_text, add_help=False)   # by name only
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and not argv[0].startswith("-") else ""
    args = build_parser(command).parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `pstream decrypt ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
