"""The --output, --key-store and --kek options shared by the key and data-subject commands.

    from cli.store_options import add_store_options, open_store, open_kek
    add_store_options(parser, kek=True)
    store = open_store(args)        # KeyStoreError if the default SQLite file does not exist

Defaults follow the pipeline's: the key store ``<output>/keystore.sqlite`` and the KEK
``local://<output>/kek.json`` of a local output root (default ``out``). A default that does not
exist is an error rather than a new empty store, so a typo in --output cannot report
"0 keys deleted" for a subject whose keys are elsewhere.
"""
from __future__ import annotations

import os


def add_store_options(parser, kek: bool = False) -> None:
    parser.add_argument("--output", default="out",
                        help="the pipeline's output root: its keys/, streams/ and encrypted/ (default %(default)s)")
    parser.add_argument("--key-store", default=None,
                        help="key store URI (sqlite:///path, postgresql://...); default <output>/keystore.sqlite")
    if kek:
        parser.add_argument("--kek", default=None,
                            help="KEK URI (local://path, aws-kms://..., gcp-kms://...); default local://<output>/kek.json")


def open_store(args, migrating: bool = False):
    from privacy.keystore import KeyStoreError, open_key_store

    uri = args.key_store
    if not uri:
        path = os.path.join(args.output, "keystore.sqlite")
        if "://" in args.output or not os.path.exists(path):
            raise KeyStoreError(f"no key store at {path}: give --output (the run's output root) or --key-store")
        uri = "sqlite://" + os.path.abspath(path)
    return open_key_store(uri, migrating)


def open_kek(args):
    from privacy.kek import KekError, kek_from_uri

    uri = args.kek
    if not uri:
        path = os.path.join(args.output, "kek.json")
        if "://" in args.output or not os.path.exists(path):
            raise KekError(f"no KEK at {path}: give --kek")
        uri = "local://" + os.path.abspath(path)
    return kek_from_uri(uri)


def local_output(args) -> str | None:
    """The output root to scrub, if it exists (remote roots are used as given)."""
    if "://" in args.output:
        return args.output
    return args.output if os.path.isdir(args.output) else None
