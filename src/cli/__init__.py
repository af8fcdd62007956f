"""The ``pstream`` command line: one entry point, one module per command group.

    pstream --help
    pstream generate webshop --records 10000 --output example_input.csv
    pstream keys export out/keys --kek local://out/kek.json -o keys.csv
    pstream decrypt out/encrypted/*.jsonl --keys keys.csv

Each module listed in ``cli.main.COMMAND_MODULES`` has ``register(subparsers)``, which adds its
sub-commands with ``set_defaults(func=...)``; ``func(args)`` returns the exit code.
"""
