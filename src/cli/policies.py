"""``pstream policies`` and ``pstream keys purge``: retention and legal grounds, and expired keys.

    pstream policies create marketing --retention-days 730 --legal-grounds "consent, GDPR 6(1)(a)"
    pstream policies list --output out
    pstream keys purge --output out                       # prints: purged 12 expired keys
    pstream keys purge --output out --now 2030-01-01      # as if it were that moment (UTC)

A policy lives in the key store beside the keys; a data contract names it with ``retention:
{policy: marketing}`` (privacy.policies), and the keys of its events record its id (``policyId``)
and their ``expiresAt`` (their day's start plus the policy's retention; 2556 days by default). ``keys
purge`` deletes keys whose ``expiresAt`` is at or before now, then removes every copy of them
from the files under the output root (key rows, privacy-stream rows, key exports, temp files)
and from --key_export files, as ``subjects forget`` does; --compact then rewrites the key store's
files (PostgreSQL keeps deleted rows in them until then).
"""
from __future__ import annotations

import sys
import time
from datetime import datetime, timezone

from cli.key_store import report_residue, store_files
from cli.main import summary
from cli.store_options import RequestAudit, add_audit_options, add_store_options, local_output, open_store, removed_counts
from privacy.keyring import DEFAULT_RETENTION_DAYS
from privacy.keystore import KeyStoreError
from privacy.policies import Policy


def register(subparsers) -> None:
    policies = subparsers.add_parser("policies", help=summary("policies"))
    actions = policies.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    create = actions.add_parser("create", help="create or update a policy in the key store")
    create.add_argument("policy_id", help="policy id (letters, digits, '.', '_', '-')")
    create.add_argument("--name", default="", help="a readable name")
    create.add_argument("--retention-days", type=int, default=DEFAULT_RETENTION_DAYS,
                        help="days a key is kept after its day (default %(default)s)")
    create.add_argument("--legal-grounds", default="", help="why the data may be processed, e.g. 'consent'")
    create.add_argument("--description", default="")
    add_store_options(create)
    create.set_defaults(func=_create)
    listing = actions.add_parser("list", help="the policies in the key store")
    add_store_options(listing)
    listing.set_defaults(func=_list)


def register_purge(key_actions) -> None:
    """Adds ``purge`` to the ``pstream keys`` sub-commands (called by cli.keys)."""
    purge = key_actions.add_parser(
        "purge", help="delete keys whose expiresAt has passed, and their rows in exported key and stream files")
    purge.add_argument("--now", default=None,
                       help="the moment to purge at: ISO date/time (UTC unless it says) or epoch ms; default now")
    purge.add_argument("--key-export", action="append", default=[], metavar="FILE",
                       help="a key-export file to remove the purged keys from; repeatable")
    purge.add_argument("--compact", action="store_true",
                       help="then rewrite the key store's files (PostgreSQL: VACUUM FULL), as `pstream keys compact`")
    add_store_options(purge)
    add_audit_options(purge)
    purge.set_defaults(func=_purge)


def parse_moment(text: str | None, clock=time.time) -> int:
    """Epoch ms of an ISO date/time (naive = UTC) or of an epoch-ms number; now if None."""
    if text is None:
        return int(clock() * 1000)
    if text.isdigit():
        return int(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def _create(args) -> int:
    try:
        policy = Policy(args.policy_id, args.name, args.retention_days, args.legal_grounds, args.description)
        store = open_store(args)
        store.save_policy(policy)
    except (KeyStoreError, ValueError) as exc:
        print(f"pstream policies create: {exc}", file=sys.stderr)
        return 2
    print(f"saved policy {policy.policy_id}: {policy.retention_days} days, legal grounds: {policy.legal_grounds or '-'}")
    return 0


def _list(args) -> int:
    try:
        policies = open_store(args).policies()
    except KeyStoreError as exc:
        print(f"pstream policies list: {exc}", file=sys.stderr)
        return 2
    for policy in policies:
        print(f"{policy.policy_id}\t{policy.retention_days}\t{policy.legal_grounds}\t{policy.name}")
    return 0


def _purge(args) -> int:
    try:
        now_ms = parse_moment(args.now)
        store = open_store(args)
        audit = RequestAudit(args, store, "keys", "purge")   # a log that cannot take the entry: nothing done
        deleted = store.purge_expired(now_ms)
    except (KeyStoreError, ValueError) as exc:
        print(f"pstream keys purge: {exc}", file=sys.stderr)
        return 2
    from cli.export_files import scrub_output   # Beam's file systems: not imported for --help
    report = scrub_output(local_output(args), set(deleted), extra=args.key_export,
                          skip=store_files(store) + audit.files())
    if args.compact:
        store.compact()
    print(f"purged {len(deleted)} expired keys")
    if not audit.done("keys purge", {"keysPurged": len(deleted), "filesRead": report.files,
                                          **removed_counts(report),
                                          "filesLeft": len(report.left)}, now=now_ms, compact=bool(args.compact)):
        return 1
    print(report.summary(), file=sys.stderr)
    report_residue(store, "keys purge")
    if report.left:
        print(f"pstream keys purge: INCOMPLETE: {len(report.left)} files under the output still hold purged keys "
              "in a form purge cannot rewrite:\n  " + "\n  ".join(report.left), file=sys.stderr)
        return 1
    return 0
