"""``pstream contracts``: propose a contract from sample data, compare versions, ODCS v3 files.

    pstream contracts init --from example_input.csv --ref acme/Shop/1.0.0 -o shop.yaml    # asks
    pstream contracts init --from events.jsonl --ref acme/Shop/1.0.0 --yes --key-field userId \\
        --pii email=2,address=none -o shop.yaml                                          # asks nothing
    pstream contracts diff acme/Shop/1.0.0 shop-1.1.0.yaml     # each change and the bump it needs
    pstream contracts export acme/Shop/1.0.0 --format odcs -o shop.odcs.yaml
    pstream contracts import shop.odcs.yaml -o shop.yaml       # a DRAFT contract file, for review
    pstream contracts create shop.yaml --user ann              # into the project, as DRAFT
    pstream contracts submit acme/Shop/1.0.0 --user ann        # IN_REVIEW
    pstream contracts approve acme/Shop/1.0.0 --user bob       # APPROVED (not by the author)
    pstream contracts activate acme/Shop/1.0.0                 # ACTIVE: accepts events
    pstream contracts deprecate acme/Shop/1.0.0                # still accepts, with a warning
    pstream contracts archive acme/Shop/1.0.0                  # ARCHIVED: no more events
    pstream contracts list; pstream contracts show acme/Shop/1.0.0

``init`` reads the first rows of a CSV or JSONL file (``--max-rows``), proposes types, the key
field, PII fields with purpose levels, quasi-identifiers and regexes for small enumerations
(``contracts.infer``, ``contracts.classify``), asks about each (Enter keeps a proposal) unless
``--yes``, checks that the result accepts the sampled rows, and writes the YAML (state DRAFT) to
``-o`` or standard output. Questions and explanations go to standard error; no sampled value
is ever printed. ``diff`` exits 1 when the second version's number is too small for its
changes (``contracts.compat``), so a CI job can run it. ``import`` writes a DRAFT whatever the
file's status: an imported contract is reviewed before it accepts events.

The lifecycle commands (``create`` ... ``archive``, ``list``, ``show``) work on the project's
contract registry (``controlplane.contracts``, states and rules in ``controlplane.lifecycle``);
each transition is one entry of the project's audit log (``controlplane.audit``, `pstream audit`)
and is written before the files change, so a transition the log cannot record does not happen.
The acting user is ``--user``, else ``$PSTREAM_USER``, else the OS user; an illegal transition
(wrong state, self-approval, a reject without ``--reason``) exits 2 and changes nothing.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cli.main import summary

HELP = summary("contracts")


class _Aborted(Exception):
    pass


def register(subparsers) -> None:
    contracts = subparsers.add_parser("contracts", help=HELP, description=HELP + ".")
    actions = contracts.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    init = actions.add_parser(
        "init", help="propose a contract from a CSV or JSONL sample, ask about each proposal, write the YAML",
        description="Reads the first rows of a sample and proposes a contract: types (STRING, INTEGER, LONG, "
        "FLOAT, BOOLEAN, repeated and nested fields), the key field, PII fields with purpose levels (1 "
        "identifiers, 2 contact data, 3 financial/birth data), quasi-identifiers and regexes for small "
        "enumerations. Asks about each proposal (Enter keeps it) unless --yes. Writes the contract (state DRAFT) "
        "for review to -o, or to standard output. Sample values are never printed.")
    init.add_argument("--from", dest="sample", required=True, metavar="SAMPLE",
                      help="a .csv file (with a header) or a .jsonl file (one JSON object a line)")
    init.add_argument("--ref", required=True, help="the new contract's reference, handle/name/1.0.0")
    _output_options(init, "the contract YAML")
    init.add_argument("--yes", "-y", action="store_true",
                      help="accept the proposals (after the changes other flags make) without asking")
    init.add_argument("--key-field", metavar="FIELD", help="the key field (instead of the proposed one)")
    init.add_argument("--pii", metavar="FIELD=LEVEL,...", default="",
                      help="PII fields and their purpose levels, added to or replacing the proposals; "
                      "FIELD=none: not PII")
    init.add_argument("--quasi-ids", metavar="FIELD,...",
                      help="the quasi-identifiers (instead of the proposed ones); '-' for none")
    init.add_argument("--types", metavar="FIELD=TYPE,...", default="",
                      help="types instead of the inferred ones (STRING, INTEGER, LONG, FLOAT, BOOLEAN)")
    init.add_argument("--max-rows", type=_positive, default=1000, metavar="N",
                      help="read at most N rows of the sample (default %(default)s)")
    init.add_argument("--phone-region", default="US", metavar="CC",
                      help="the region of phone numbers written without +country code (default %(default)s)")
    init.add_argument("--quiet", action="store_true", help="no progress line (shown only on a terminal)")
    init.set_defaults(func=_init)

    diff = actions.add_parser(
        "diff", help="the changes between two contract versions and the version bump each needs",
        description="Compares contract B with A: each change (removed or retyped fields, required fields, "
        "regexes, key field, purpose levels, ...) and the version bump it needs (major, minor or patch). "
        "Exit status 1 when B is a version of A whose number is too small for its changes, 0 otherwise.")
    diff.add_argument("previous", metavar="A", help="a contract reference (handle/name/1.0.0) or a YAML file")
    diff.add_argument("new", metavar="B", help="a contract reference or a YAML file")
    diff.add_argument("--format", choices=["text", "json"], default="text", help="report format (default %(default)s)")
    _contracts_dir_option(diff)
    diff.set_defaults(func=_diff)

    export = actions.add_parser(
        "export", help="write a contract as an Open Data Contract Standard (ODCS v3) YAML file",
        description="Writes the contract as ODCS v3 YAML (validated with the open-data-contract-standard "
        "package's model and JSON Schema): fields as schema properties, regexes as patterns, PII, purpose "
        "levels, key and data subject fields as classification and pstream.* custom properties.")
    export.add_argument("ref", metavar="REF", help="a contract reference (handle/name/1.0.0) or a YAML file")
    export.add_argument("--format", choices=["odcs"], default="odcs", help="the file format (default %(default)s)")
    _output_options(export, "the ODCS YAML")
    _contracts_dir_option(export)
    export.set_defaults(func=_export)

    imp = actions.add_parser(
        "import", help="read an ODCS v3 file as a contract (a DRAFT, for review)",
        description="Reads an ODCS v3 YAML file. One exported by pstream comes back exactly; any other one gets "
        "the key field, PII fields, purpose levels and quasi-identifiers proposed by the wizard's rules. "
        "What the file says that a contract cannot carry is listed. Writes the contract as state DRAFT.")
    imp.add_argument("file", metavar="FILE", help="an ODCS v3 YAML file")
    _output_options(imp, "the contract YAML")
    imp.add_argument("--ref", help="the contract's reference (default: the file's tenant/name/version)")
    imp.add_argument("--key-field", metavar="FIELD", help="the key field (instead of the file's or the proposed one)")
    imp.add_argument("--schema", metavar="NAME", help="the schema object to import, when the file has several")
    imp.set_defaults(func=_import)
    register_lifecycle(actions)


LIFECYCLE_HELP = {
    "submit": ("submit a DRAFT for review (IN_REVIEW)", None),
    "approve": ("approve a contract IN_REVIEW (APPROVED); not by its author", None),
    "reject": ("send a contract IN_REVIEW back to DRAFT, with a reason; not by its author", None),
    "activate": ("let an APPROVED contract accept events (ACTIVE)", None),
    "deprecate": ("mark an ACTIVE contract DEPRECATED: events still accepted, with a warning", None),
    "archive": ("retire a DRAFT, APPROVED or DEPRECATED contract (ARCHIVED: no events, final)", None),
}


def register_lifecycle(actions) -> None:
    """The lifecycle sub-commands: create, submit, approve, reject, activate, deprecate, archive, list, show."""
    create = actions.add_parser(
        "create", help="store a contract file in the project as a DRAFT (validated; version number checked)",
        description="Validates FILE with the strict contract loader, checks its version number against the latest "
        "earlier version of the same handle/name (each change and the bump it needs, as `contracts diff`; a number "
        "too small is refused), and stores it in the project as <project>/contracts/<handle>/<name>/<version>.yaml, "
        "state DRAFT, with a lifecycle record (author, history). Then: submit, approve (by another user), activate. "
        "Only ACTIVE and DEPRECATED contracts accept events.")
    create.add_argument("file", metavar="FILE", help="a contract YAML file (e.g. written by `contracts init`)")
    _people_options(create)
    create.set_defaults(func=_create)
    for action, (text, _) in LIFECYCLE_HELP.items():
        parser = actions.add_parser(action, help=text, description=text[0].upper() + text[1:] + ". "
                                    "The transition is written to the project's audit log (pstream audit list).")
        parser.add_argument("ref", metavar="REF", help="the contract's reference, handle/name/1.2.3")
        parser.add_argument("--reason", metavar="TEXT", required=action == "reject",
                            help="why (required for reject; kept in the lifecycle record and the audit log)")
        _people_options(parser)
        parser.set_defaults(func=_transition, lifecycle_action=action)
    listing = actions.add_parser("list", help="the project's and the shipped contracts with their states",
                                 description="One line per contract: reference, state, where it comes from "
                                 "(project, CONTRACTS_PATH, shipped), author and last change.")
    listing.add_argument("--state", metavar="STATE", help="only contracts in this state (e.g. DRAFT)")
    listing.add_argument("--format", choices=["text", "json"], default="text", help="output format (default %(default)s)")
    _project_option(listing)
    listing.set_defaults(func=_list)
    show = actions.add_parser("show", help="a contract's state, author, history, fields and purpose levels",
                              description="The contract's state (from its lifecycle record), file, author, every "
                              "transition (who, when, reason), its fields with PII purpose levels, and its key field.")
    show.add_argument("ref", metavar="REF", help="the contract's reference, handle/name/1.2.3")
    show.add_argument("--format", choices=["text", "json"], default="text", help="output format (default %(default)s)")
    _project_option(show)
    show.set_defaults(func=_show)


def _project_option(parser):
    parser.add_argument("--project-dir", dest="project_dir", default=None,
                        help="project directory (default: $PSTREAM_PROJECT_DIR or ~/.config/pstream)")


def _people_options(parser):
    _project_option(parser)
    parser.add_argument("--user", default=None,
                        help="who is acting (default: $PSTREAM_USER, else the OS user); a reviewer must not be the author")


def _output_options(parser, what: str):
    parser.add_argument("-o", "--output", metavar="FILE", help=f"write {what} to FILE (default: standard output)")
    parser.add_argument("--force", action="store_true", help="overwrite FILE if it exists")


def _contracts_dir_option(parser):
    parser.add_argument("--contracts-dir", action="append", default=[], metavar="DIR",
                        help="also look for contract references in DIR (<handle>/<name>/<version>.yaml); repeatable")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _err(command: str, message) -> int:
    print(f"pstream contracts {command}: {message}", file=sys.stderr)
    return 2


def _say(*lines: str):
    for line in lines:
        print(line, file=sys.stderr)


def _pairs(text: str, what: str) -> dict[str, str]:
    """'a=1,b=none' -> {'a': '1', 'b': 'none'}; ValueError naming a malformed entry."""
    out = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        name, sep, value = entry.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"'{entry}' is not {what}")
        out[name.strip()] = value.strip()
    return out


def _level(text: str) -> int | None:
    if text.lower() in ("none", "no", "n", "-"):
        return None
    try:
        level = int(text)
    except ValueError:
        raise ValueError(f"'{text}' is not a purpose level (a whole number >= 0, or none)") from None
    if level < 0:
        raise ValueError(f"'{text}' is not a purpose level (a whole number >= 0, or none)")
    return level


def _write(path: str | None, text: str, force: bool, command: str) -> int:
    if path in (None, "-"):
        sys.stdout.write(text)
        return 0
    target = Path(path)
    if target.exists() and not force:
        return _err(command, f"{target} exists (--force overwrites it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    _say(f"wrote {target}")
    return 0


# -- init --------------------------------------------------------------------------------------
def _init(args) -> int:
    from contracts.infer import SampleError, check_sample, profile_rows, propose, read_sample
    from contracts.loader import REF_PATTERN, ContractError
    from contracts.writer import contract_yaml
    from pipelines.progress import Progress

    if not REF_PATTERN.match(args.ref):
        return _err("init", f"--ref '{args.ref}' is not of the form handle/name/1.2.3")
    import phonenumbers
    args.phone_region = args.phone_region.upper()
    if args.phone_region not in phonenumbers.SUPPORTED_REGIONS:
        return _err("init", f"--phone-region '{args.phone_region}' is not a region code such as US, NL or DE")
    try:
        pii_flags = {field: _level(value) for field, value in _pairs(args.pii, "FIELD=LEVEL").items()}
        type_flags = {field: value.upper() for field, value in _pairs(args.types, "FIELD=TYPE").items()}
        with Progress(f"reading and profiling {args.sample}", enabled=not args.quiet, counts=False):
            sample = read_sample(args.sample, max_rows=args.max_rows)
            profiles = profile_rows(sample.rows, text=sample.text, phone_region=args.phone_region) if sample.rows else []
        if not sample.rows:
            return _err("init", f"{args.sample}: no rows to learn from")
        proposal = propose(profiles, args.ref, key_field=args.key_field)
        for field, type_name in type_flags.items():
            proposal.set_type(field, type_name)
        for field, level in pii_flags.items():
            proposal.set_pii(field, level)
        if args.quasi_ids is not None:
            proposal.quasi_ids = [] if args.quasi_ids.strip() == "-" else _fields(proposal, args.quasi_ids)
    except (SampleError, ContractError, ValueError) as exc:
        return _err("init", exc)

    rows = f"{len(sample.rows)} rows"
    _say(f"read {rows} of {args.sample}" + (" (the file has more: --max-rows reads more)" if sample.more else ""),
         *(f"skipped {n} line(s): {why}" for why, n in sample.skipped.items()))
    try:
        if not args.yes:
            _ask_all(proposal)
        contract = proposal.contract()
        with Progress("checking the sample against the contract", enabled=not args.quiet, counts=False):
            accepted, refused = check_sample(contract, sample.rows, text=sample.text)
        verdict = f"The proposed contract accepts {accepted} of the {len(sample.rows)} sampled rows."
        _say("", *proposal.summary(), verdict, *(f"  {n} refused: {why}" for why, n in refused.most_common(5)))
        if not args.yes and _ask(f"Write it to {args.output or 'standard output'}? (y/n)", "y").lower() \
                not in ("y", "yes"):
            raise _Aborted("")
    except _Aborted as exc:
        _say(f"pstream contracts init: aborted{': ' + str(exc) if str(exc) else ''}; nothing written "
             "(--yes accepts the proposals without asking)")
        return 1
    except ContractError as exc:
        return _err("init", exc)
    comments = [f"Proposed by `pstream contracts init` from {Path(args.sample).name} ({rows} read): "
                "review it before use.", *proposal.summary(), verdict]
    return _write(args.output, contract_yaml(contract, comments=comments), args.force, "init")


def _fields(proposal, text: str) -> list[str]:
    from contracts.loader import ContractError
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if proposal.profile(n) is None]
    if unknown:
        raise ContractError(f"not in the sample: {', '.join(unknown)}")
    return names


def _ask(question: str, default: str = "") -> str:
    """One question on standard error, one line from standard input; EOF aborts."""
    shown = f" [{default}]" if default else ""
    sys.stderr.write(f"{question}{shown}: ")
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        sys.stderr.write("\n")
        raise _Aborted("no answer (end of input)")
    answer = line.strip()
    if answer.lower() in ("q", "quit"):
        raise _Aborted("")
    return answer or default


def _retry(question: str, default: str, apply) -> None:
    """Ask until ``apply(answer)`` takes the answer (it raises ValueError or ContractError)."""
    from contracts.loader import ContractError
    while True:
        answer = _ask(question, default)
        try:
            apply(answer)
            return
        except (ValueError, ContractError) as exc:
            _say(f"  {exc}")


def _ask_all(proposal) -> None:
    _say("", "Proposed fields:", *(f"  {line}" for line in proposal.summary()), "",
         "Enter keeps a proposal; type a change instead; q quits without writing.")

    def types(answer):
        for field, type_name in _pairs(answer, "FIELD=TYPE").items():
            proposal.set_type(field, type_name.upper())
    _retry("Types to change (FIELD=TYPE,...)", "", types)
    _retry("Key field (identifies the data subject; events with the same value share keys)",
           proposal.key_field or "", lambda answer: proposal.set_key_field(answer) if answer else _no_key())
    _say("PII fields are encrypted; a privacy stream decrypts one for consent to its purpose level "
         "(1 identifiers, 2 contact data, 3 financial/birth data). 'n': not PII.")
    for path in list(proposal.pii):
        why = "; ".join(r for r in proposal.reasons.get(path, []) if not r.startswith("key field"))
        _retry(f"  {path} ({why}): purpose level", str(proposal.pii[path]),
               lambda answer, path=path: proposal.set_pii(path, _level(answer)))

    def more(answer):
        for field, value in _pairs(answer, "FIELD=LEVEL").items():
            proposal.set_pii(field, _level(value))
    _retry("More PII fields (FIELD=LEVEL,...)", "", more)

    def quasi(answer):
        proposal.quasi_ids = [] if answer == "-" else [p for p in _fields(proposal, answer) if p not in proposal.pii]
    _retry("Quasi-identifiers (FIELD,...; '-' for none)", ",".join(proposal.quasi_ids) or "-", quasi)
    for path in list(proposal.validations):
        _retry(f"  {path}: regex ('-' for none)", proposal.validations[path],
               lambda answer, path=path: _set_regex(proposal, path, answer))


def _no_key():
    raise ValueError("a contract needs a key field")


def _set_regex(proposal, path: str, answer: str):
    from contracts.regex import RegexError, compile_regex
    if answer == "-":
        proposal.validations.pop(path, None)
        return
    try:
        compile_regex(answer)
    except RegexError as exc:
        raise ValueError(f"not a regex RE2 can use: {exc}") from None
    proposal.validations[path] = answer


# -- diff, export, import ----------------------------------------------------------------------
def _diff(args) -> int:
    import json

    from contracts import ContractError, load_contract
    from contracts.compat import check_version_bump, diff_contracts
    try:
        previous = load_contract(args.previous, args.contracts_dir)
        new = load_contract(args.new, args.contracts_dir)
    except ContractError as exc:
        return _err("diff", exc)
    same = (previous.handle, previous.name) == (new.handle, new.name)
    report = check_version_bump(previous, new) if same else diff_contracts(previous, new)
    if args.format == "json":
        print(json.dumps({"previous": report.previous, "new": report.new, "required": report.required,
                          "actual": report.actual if same else None, "ok": report.ok if same else None,
                          "changes": [{"field": c.field, "what": c.what, "bump": c.bump} for c in report.changes]},
                         indent=2))
    else:
        print(report.text())
    return 0 if not same or report.ok else 1


def _export(args) -> int:
    from contracts import ContractError, load_contract
    from contracts.odcs import export_odcs
    try:
        text = export_odcs(load_contract(args.ref, args.contracts_dir))
    except ContractError as exc:
        return _err("export", exc)
    return _write(args.output, text, args.force, "export")


def _import(args) -> int:
    from contracts.loader import ContractError, parse_contract
    from contracts.odcs import import_odcs
    from contracts.writer import contract_yaml
    try:
        with open(args.file, "rb") as handle:
            text = handle.read(8 << 20)
        result = import_odcs(text, source=args.file, ref=args.ref, key_field=args.key_field, schema_name=args.schema)
        data = dict(result.data, state="DRAFT")
        contract = parse_contract(data, source=args.file)
    except OSError as exc:
        return _err("import", f"{args.file}: cannot be read: {exc.strerror}")
    except ContractError as exc:
        return _err("import", exc)
    origin = "exported by pstream: classification as written" if result.ours else \
        "no pstream.* properties: key field and classification proposed by the wizard's rules, review them"
    lines = [f"{path}: {'; '.join(why)}" for path, why in result.reasons.items()] + result.notes
    _say(f"imported {contract.ref} from {args.file} ({origin}); state DRAFT", *(f"  {line}" for line in lines))
    comments = [f"Imported by `pstream contracts import` from {os.path.basename(args.file)} ({origin}).",
                "State DRAFT: review it before use.", *lines]
    return _write(args.output, contract_yaml(contract, comments=comments), args.force, "import")


# -- lifecycle ---------------------------------------------------------------------------------
def _registry(args):
    from controlplane.contracts import ContractRegistry
    from controlplane.project import default_project_dir

    return ContractRegistry(args.project_dir or default_project_dir())


def _audit(args):
    from controlplane.audit import log_for_project
    from controlplane.project import default_project_dir

    return log_for_project(args.project_dir or default_project_dir())


def _create(args) -> int:
    from contracts.loader import ContractError
    from controlplane.audit import AuditError
    from controlplane.contracts import VersionError
    from controlplane.lifecycle import LifecycleError, current_user

    registry, log = _registry(args), _audit(args)

    def audit(contract, report):
        details = {"to": "DRAFT"}
        if report is not None:
            details.update(previous=report.previous, bump=report.required)
        log.append("contract", "create", user, target=contract.ref, details=details)

    try:
        user = current_user(args.user)
        contract, report = registry.create(args.file, user, before_write=audit)
    except VersionError as exc:
        print(exc.report.text(), file=sys.stderr)
        return _err("create", f"{exc.report.new}: the version number is too small for these changes; nothing stored")
    except (ContractError, LifecycleError, AuditError, OSError) as exc:
        return _err("create", exc)
    if report is not None:
        print(report.text(), file=sys.stderr)
    print(f"created {contract.ref} as DRAFT (author {user}) in {contract.source}")
    _say(f"next: pstream contracts submit {contract.ref}; a reviewer other than {user} approves it; then activate")
    return 0


def _transition(args) -> int:
    from contracts.loader import ContractError
    from controlplane.audit import AuditError
    from controlplane.lifecycle import LifecycleError, current_user

    action = args.lifecycle_action
    registry, log = _registry(args), _audit(args)

    def audit(record, entry, contract):
        log.append("contract", action, user, target=contract.ref, reason=entry.get("reason"),
                   details={"from": entry["from"], "to": entry["to"]})

    try:
        user = current_user(args.user)
        record, entry, contract = registry.transition(args.ref, action, user, args.reason, before_write=audit)
    except (ContractError, LifecycleError, AuditError, OSError) as exc:
        return _err(action, exc)
    print(f"{contract.ref}: {entry['from']} -> {entry['to']} ({action} by {user})")
    if entry["to"] == "DEPRECATED":
        _say("its events are still accepted, with a warning (gateway header Strm-Contract-State: DEPRECATED)")
    elif entry["to"] == "ACTIVE":
        _say("it accepts events now (the gateway sees it within --contract-cache-seconds)")
    return 0


def _row(registry, ref):
    from contracts.loader import ContractError
    from controlplane.lifecycle import LifecycleError

    where = registry.where(ref)
    try:
        record = registry.record(ref) if where == "project" else None
        state = registry.get(ref).state
    except (ContractError, LifecycleError, OSError) as exc:
        return {"ref": ref, "state": "INVALID", "where": where, "author": None, "updated": None, "problem": str(exc)}
    last = record.history[-1]["at"] if record and record.history else None
    return {"ref": ref, "state": state, "where": where, "author": record.author if record else None,
            "updated": last, "managed": record is not None}


def _list(args) -> int:
    import json

    from controlplane.audit import iso_ms
    from controlplane.lifecycle import shown

    registry = _registry(args)
    rows = [_row(registry, ref) for ref in registry.refs()]
    if args.state:
        rows = [r for r in rows if r["state"] == args.state.upper()]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        updated = iso_ms(row["updated"])[:19] + "Z" if row.get("updated") else "-"
        print(f"{row['ref']}\t{row['state']}\t{row['where']}\t{shown(row.get('author') or '-')}\t{updated}")
    _say(f"{len(rows)} contracts" + (f" in state {args.state.upper()}" if args.state else ""))
    return 0


def _show(args) -> int:
    import json

    from contracts.loader import ContractError
    from controlplane.audit import iso_ms
    from controlplane.lifecycle import LifecycleError, shown

    registry = _registry(args)
    try:
        contract = registry.get(args.ref)
        record = registry.record(args.ref) if registry.where(args.ref) == "project" else None
    except (ContractError, LifecycleError) as exc:
        return _err("show", exc)
    data = {"ref": contract.ref, "state": contract.state, "where": registry.where(args.ref),
            "file": str(registry.path(args.ref)), "author": record.author if record else None,
            "history": record.history if record else [], "keyField": contract.key_field,
            "fields": contract.field_paths(), "pii": contract.pii}
    if args.format == "json":
        print(json.dumps(data, indent=2))
        return 0
    print(f"{contract.ref}: {contract.state} ({data['where']}, {data['file']})")
    print(f"  accepts events: {'yes' if contract.accepts_events else 'no'}"
          f"{' (DEPRECATED: with a warning)' if contract.state == 'DEPRECATED' else ''}")
    if record is None:
        print("  no lifecycle record (shipped, or not created with `pstream contracts create`)")
    else:
        print(f"  author: {shown(record.author)}")
        for entry in record.history:
            reason = f": {shown(entry['reason'])}" if entry.get("reason") else ""
            print(f"  {iso_ms(entry['at'])[:19]}Z  {entry['action']:<9} {entry['from'] or '-'} -> {entry['to']}"
                  f"  by {shown(entry['user'])}{reason}")
    print(f"  key field: {contract.key_field}")
    from controlplane.project import Project, ProjectError
    try:
        names = {p.level: p.name for p in Project.open(registry.project_dir).purposes.values()}
    except ProjectError:
        names = {}
    for path in contract.field_paths():
        level = contract.pii.get(path)
        purpose = f"{level} ({names[level]})" if level in names else str(level)
        print(f"  {path}" + (f"  (PII, purpose level {purpose})" if level is not None else ""))
    return 0
