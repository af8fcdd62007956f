"""``pstream create|list|get|delete``: pipelines, privacy streams, data connectors, batch exporters.

    pstream create stream demo                                   # a pipeline, with credentials
    pstream create stream --derived-from demo --levels 1 --cumulative --masked-fields userId
    pstream create stream demo-marketing --derived-from demo --levels 1,2   # granular
    pstream create stream --derived-from demo --purposes analytics,marketing  # names of `pstream purposes`
    pstream create stream demo-groups --derived-from demo --levels 1 --cumulative \
        --generalise age=bucket:0,18,30,45,65 --generalise date=truncate:month   # privacy/generalise.py
    pstream list streams
    pstream get stream demo -o json                              # its id, clientId, output directory
    pstream rotate-credentials demo                              # a new client secret; old tokens refused
    pstream delete stream demo --recursive
    pstream create data-connector local my-dir --path /tmp/exports
    pstream create data-connector s3 my-s3 --bucket-name b --credentials-file key.json [--endpoint URL]
    pstream create data-connector azure-blob-storage blob --storage-account-uri https://acct.blob.core.windows.net \
        --container-name events --credentials-env AZURE_STORAGE_CONNECTION_STRING
    pstream create batch-exporter demo --data-connector my-dir --interval 60 --path-prefix events
    pstream list batch-exporters
    pstream get schema-code strmprivacy/PrivacyEngineeringWorkshop/1.0.0 --language python

A data connector is stored as a pipeline config's ``connectors:`` entry (pipelines.connectors:
kinds s3, gcs, azure, local; ``azure-blob-storage`` is the reference's name for azure) and
checked by the same ``parse_connector``; credentials are kept by reference (a file or a
variable), except a service principal given as flags, kept in ``<project>/credentials/`` (0600).
A database connector (postgresql, bigquery; ``jdbc`` with a ``jdbc:postgresql://`` URI is the
reference's name for postgresql) is a batch job's source and cannot be a batch exporter target.

A pipeline's client secret is printed once, by ``create stream`` and by ``rotate-credentials``
(the project keeps only its hash); rotating or deleting a pipeline refuses every token issued
before. A data connector is probed when it is created (its credentials read, an empty file
written and deleted at its root; ``--no-probe`` skips that).

Everything lives in the project file (``--project-dir``, default ``$PSTREAM_PROJECT_DIR`` or
``~/.config/pstream``); the gateway and ``pstream local`` pick changes up while running.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from urllib.parse import urlparse

from cli.main import summary
from cli.project_args import ProjectError, add_project_arg, fail, project_of
from privacy.masking import DEFAULT_MASK_HASH, MASK_HASHES

_CREDENTIALS = [("--credentials-file", "file holding the credentials (kept by reference, never copied)"),
                ("--credentials-env", "environment variable holding the credentials")]
CONNECTOR_FLAGS = {
    "local": [("--path", "directory to write into (default <project>/exports/<name>)")],
    "s3": [("--bucket-name", "S3 bucket"), ("--region", "bucket region (optional)"),
           ("--endpoint", "S3-compatible store or emulator, e.g. http://127.0.0.1:9000 (optional)"),
           (_CREDENTIALS[0][0], "JSON of an access key, as `aws iam create-access-key` prints it"),
           (_CREDENTIALS[1][0], "variable holding that JSON"),
           ("--assume-role-arn", "not supported: give an access key of the role's user")],
    "gcs": [("--bucket-name", "GCS bucket"), ("--endpoint", "GCS emulator URL (optional)"),
            (_CREDENTIALS[0][0], "service account JSON file"), (_CREDENTIALS[1][0], "variable holding that JSON")],
    "azure-blob-storage": [("--storage-account-uri", "https://<account>.blob.core.windows.net"),
                           ("--container-name", "blob container"),
                           (_CREDENTIALS[0][0], "connection string, or JSON with tenant_id, client_id, client_secret"),
                           (_CREDENTIALS[1][0], "variable holding a connection string or that JSON"),
                           ("--tenant-id", "Azure AD tenant"), ("--client-id", "app client id"),
                           ("--client-secret", "app client secret (kept in <project>/credentials/, mode 0600)")],
    "postgresql": [("--uri", "postgresql://[user@]host[:port]/database (no password)"),
                   (_CREDENTIALS[0][0], "file holding the password"), (_CREDENTIALS[1][0], "variable holding the password")],
    "jdbc": [("--uri", "jdbc:postgresql://host[:port]/database[?user=NAME] (no password)"),
             ("--database-type", "POSTGRES (MYSQL, BIGQUERY and SNOWFLAKE are not supported)"),
             (_CREDENTIALS[0][0], "file holding the password"), (_CREDENTIALS[1][0], "variable holding the password")],
    "bigquery": [("--project", "project billed for reads (optional)"),
                 (_CREDENTIALS[0][0], "service account JSON file"), (_CREDENTIALS[1][0], "variable holding that JSON")],
}
# the reference CLI's connector types -> the kinds of pipelines.connectors (and jdbc, a batch-job source)
CONNECTOR_KINDS = {"local": "local", "s3": "s3", "gcs": "gcs", "azure-blob-storage": "azure",
                   "postgresql": "postgresql", "jdbc": "postgresql", "bigquery": "bigquery"}
CONNECTOR_ALIASES = {"azure-blob-storage": ["azure"]}
_REQUIRED = {"s3": ["bucket_name"], "gcs": ["bucket_name"], "azure-blob-storage": ["storage_account_uri", "container_name"],
             "jdbc": ["uri"], "postgresql": ["uri"]}


def register(subparsers) -> None:
    create = subparsers.add_parser("create", help=summary("create"))
    kinds = create.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True

    stream = kinds.add_parser("stream", help="a pipeline (source stream), or a privacy stream with --derived-from",
                              description="Without --derived-from: a pipeline with a client id and secret. "
                              "With it: a privacy stream that admits events whose consent covers --levels (or "
                              "--purposes, the project's names of levels: pstream purposes list) and decrypts the "
                              "fields of those purpose levels.")
    stream.add_argument("name", nargs="?", help="stream name (a privacy stream defaults to <source>-<levels>)")
    stream.add_argument("--derived-from", dest="derived_from", help="source pipeline of a privacy stream")
    stream.add_argument("--levels", help="purpose levels, comma separated, e.g. 1,2")
    stream.add_argument("--purposes", metavar="NAMES",
                        help="instead of --levels: purpose names of the project, comma separated, e.g. "
                        "analytics,marketing (pstream purposes create LEVEL NAME; events keep the levels)")
    mode = stream.add_mutually_exclusive_group()
    mode.add_argument("--cumulative", dest="mode", action="store_const", const="CUMULATIVE",
                      help="levels 0..N are decrypted for events with a highest consent >= N (one level)")
    mode.add_argument("--granular", dest="mode", action="store_const", const="GRANULAR",
                      help="exactly the given levels; events must consent to all of them (default)")
    mode.add_argument("--consent-type", dest="mode", type=str.upper, choices=["CUMULATIVE", "GRANULAR"],
                      help="the same as --cumulative / --granular")
    stream.add_argument("--masked-fields", dest="masked_fields", default="",
                        help="fields replaced by a keyed hash of their value (HMAC-SHA-256 under the stream's "
                        "masking key), comma separated")
    stream.add_argument("--mask-hash", dest="mask_hash", choices=MASK_HASHES, default=DEFAULT_MASK_HASH,
                        help="the masking hash: %(default)s (default, keyed) or murmur3 (the reference's, unkeyed)")
    stream.add_argument("--mask-seed", dest="mask_seed", type=int, default=None,
                        help="seed of murmur3 masking (random when not given)")
    stream.add_argument("--generalise", "--generalize", dest="generalise", action="append", default=[],
                        metavar="FIELD=RULE",
                        help="replace a field's value in the stream by a coarser one; repeatable. RULE: "
                        "bucket:0,18,30,45,65 (age groups '18-29', '65+'), round:10, prefix:4 (first characters), "
                        "truncate:day|month|year (dates), group:small=XS|S,large=L|XL; end with ';default=TEXT' "
                        "for values a rule cannot place (else null), or give the config's form as JSON: "
                        "'age={\"bucket\": [0, 65], \"labels\": [\"adult\", \"senior\"]}'")
    stream.add_argument("--description", default="", help="free text")
    add_project_arg(stream)
    stream.set_defaults(func=_create_stream)

    connector = kinds.add_parser("data-connector", help="a named storage location for batch exporters")
    types = connector.add_subparsers(dest="connector_type", metavar="TYPE")
    types.required = True
    for type_, flags in CONNECTOR_FLAGS.items():
        parser = types.add_parser(type_, aliases=CONNECTOR_ALIASES.get(type_, []), help=f"{type_} data connector"
                                  + ("" if CONNECTOR_KINDS[type_] not in ("postgresql", "bigquery")
                                     else " (a batch job's source; not an exporter target)"))
        parser.add_argument("name", help="data connector name (1-63 lowercase letters, digits and '-')")
        for flag, help_text in flags:
            parser.add_argument(flag, help=help_text)
        if CONNECTOR_KINDS[type_] not in ("postgresql", "bigquery"):   # sources are read, not written
            parser.add_argument("--no-probe", dest="probe", action="store_false",
                                help="do not check now that the credentials can be read and the location written")
        add_project_arg(parser)
        parser.set_defaults(func=_create_connector, connector_type=type_)

    exporter = kinds.add_parser("batch-exporter", help="export a stream to a data connector every interval")
    exporter.add_argument("stream", help="pipeline or privacy stream to export")
    exporter.add_argument("--data-connector", dest="data_connector", required=True, help="target data connector")
    exporter.add_argument("--name", help="exporter name, 1-63 lowercase letters, digits and '-' "
                          "(default <stream>-<data connector>)")
    exporter.add_argument("--interval", type=int, default=60, help="seconds between exports, 30-3600 (default 60)")
    exporter.add_argument("--path-prefix", dest="path_prefix", default="", help="folder inside the connector")
    exporter.add_argument("--include-existing-events", dest="include_existing_events", action="store_true",
                          help="export what the stream already holds first")
    add_project_arg(exporter)
    exporter.set_defaults(func=_create_exporter)

    listing = subparsers.add_parser("list", help=summary("list"))
    what = listing.add_subparsers(dest="kind", metavar="KIND")
    what.required = True
    for kind in ("streams", "data-connectors", "batch-exporters"):
        parser = what.add_parser(kind, help=f"list {kind}")
        parser.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
        add_project_arg(parser)
        parser.set_defaults(func=_list, list_kind=kind)

    get = subparsers.add_parser("get", help=summary("get"))
    what = get.add_subparsers(dest="kind", metavar="KIND")
    what.required = True
    for kind in ("stream", "data-connector", "batch-exporter"):
        parser = what.add_parser(kind, help=f"show one {kind}")
        parser.add_argument("name")
        parser.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
        add_project_arg(parser)
        parser.set_defaults(func=_get, get_kind=kind)
    code = what.add_parser("schema-code", help="download generated event classes for a contract as a zip")
    code.add_argument("ref", help="contract reference handle/name/version")
    code.add_argument("--language", default="python", help="only python (default)")
    code.add_argument("--output-dir", dest="output_dir", default=".", help="where to save the zip (default .)")
    add_project_arg(code)
    code.set_defaults(func=_schema_code)

    delete = subparsers.add_parser("delete", help=summary("delete"))
    what = delete.add_subparsers(dest="kind", metavar="KIND")
    what.required = True
    for kind in ("stream", "data-connector", "batch-exporter"):
        parser = what.add_parser(kind, help=f"delete a {kind}")
        parser.add_argument("name")
        if kind == "stream":
            parser.add_argument("--recursive", action="store_true", help="also delete its privacy streams")
            parser.add_argument("--purge", action="store_true",
                                help="also remove a pipeline's spool (unprocessed events, in plaintext), its "
                                     "outputs and its key store and KEK (what it encrypted stays unreadable)")
        add_project_arg(parser)
        parser.set_defaults(func=_delete, delete_kind=kind)

    rotate = subparsers.add_parser(
        "rotate-credentials", help=summary("rotate-credentials"),
        description="Makes a new client secret for the pipeline and raises its credential generation: every "
        "token issued before is refused by the gateway from the moment it reads the project (within a second). "
        "The new secret is printed once; the project keeps only its hash.")
    rotate.add_argument("pipeline", help="pipeline (stream) name")
    rotate.add_argument("-o", "--output", choices=["table", "json"], default="json", help="output format")
    add_project_arg(rotate)
    rotate.set_defaults(func=_rotate)


def _schema_code(args) -> int:
    from cli import schema_code   # contracts and Avro: only when code is made

    return schema_code.run(args)


# ------------------------------------------------------------------ views
def pipeline_view(project, pipeline) -> dict:
    """The pipeline as `get stream` shows it; the client secret only right after it was made."""
    credentials = {"clientId": pipeline.client_id}
    if pipeline.client_secret:
        credentials["clientSecret"] = pipeline.client_secret
    return {
        "ref": {"name": pipeline.name},
        "id": pipeline.id,
        "enabled": pipeline.enabled,
        "description": pipeline.description,
        "createdAt": pipeline.created_at,
        "credentials": [credentials],
        "credentialGeneration": pipeline.credential_generation,
        "gatewayUrl": project.gateway_url(),
        "outputDir": str(project.output_dir(pipeline.name)),
        "derived": sorted(s.name for s in project.privacy_streams.values() if s.source == pipeline.name),
    }


_SECRET_ONCE = ("the client secret is shown only now: the project keeps only its hash "
                "(`pstream rotate-credentials {name}` makes a new one)")


def privacy_stream_view(stream, project=None) -> dict:
    return {
        "ref": {"name": stream.name},
        "linkedStream": stream.source,
        "consentLevelType": stream.mode,
        "consentLevels": stream.levels,
        "purposes": [project.purpose_label(level) for level in stream.levels] if project is not None else None,
        "maskedFields": {"fieldPatterns": stream.masked_fields, "hash": stream.mask_hash} if stream.masked_fields
        else None,
        "generalise": stream.generalise or None,
        "createdAt": stream.created_at,
    }


def _connector_view(connector) -> dict:
    entry = {k: v for k, v in connector.entry.items() if k != "name"}
    return {"ref": {"name": connector.name}, **entry}


def _connector_row(project, connector) -> dict:
    try:
        location = connector.connector(str(project.path)).base_uri
    except ProjectError as exc:
        location = f"invalid: {exc}"
    credentials = connector.entry.get("credentials", "default")
    return {"name": connector.name, "kind": connector.kind, "location": location, "credentials": credentials}


def _print(data, output: str, columns: list[str] | None = None) -> None:
    if output == "json":
        print(json.dumps(data, indent=2))
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        return
    columns = columns or list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


# ---------------------------------------------------------------- actions
def _stream_levels(args, project) -> list[int]:
    """--levels, or the levels of --purposes' names (one of the two)."""
    if args.purposes and args.levels:
        raise ProjectError("give --levels or --purposes, not both")
    if args.purposes:
        return project.purpose_levels([n.strip() for n in args.purposes.split(",") if n.strip()])
    return _levels(args.levels)


def _levels(text: str | None) -> list[int]:
    if not text:
        raise ProjectError("--levels (or --purposes) is required for a privacy stream, e.g. --levels 1,2")
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ProjectError(f"--levels '{text}': give integers separated by commas") from None


def _generalise(texts: list[str]) -> dict:
    """field path -> rule from the --generalise FIELD=RULE texts (privacy.generalise.parse_rule_text)."""
    from privacy.generalise import parse_rule_text

    rules = {}
    for text in texts:
        try:
            path, rule = parse_rule_text(text)
        except ValueError as exc:
            raise ProjectError(str(exc)) from None
        if path in rules:
            raise ProjectError(f"--generalise {path}: given twice")
        rules[path] = rule
    return rules


def _create_stream(args) -> int:
    try:
        project = project_of(args)
        if args.derived_from:
            stream = project.create_privacy_stream(
                args.name, args.derived_from, args.mode or "GRANULAR", _stream_levels(args, project),
                [f for f in args.masked_fields.split(",") if f], args.mask_seed, args.mask_hash,
                _generalise(args.generalise))
            view = privacy_stream_view(stream, project)
        else:
            if not args.name:
                raise ProjectError("give a stream name")
            if args.levels or args.purposes or args.mode or args.masked_fields or args.generalise:
                raise ProjectError("--levels, --purposes, --cumulative/--granular, --masked-fields and --generalise need "
                                   "--derived-from")
            view = pipeline_view(project, project.create_pipeline(args.name, args.description))
        project.save()
    except ProjectError as exc:
        return fail("create stream", exc)
    _print(view, "json")
    if not args.derived_from:
        print(_SECRET_ONCE.format(name=args.name), file=sys.stderr)
    return 0


def _rotate(args) -> int:
    try:
        project = project_of(args)
        pipeline = project.rotate_credentials(args.pipeline)
        project.save()
    except ProjectError as exc:
        return fail("rotate-credentials", exc)
    view = {"ref": {"name": pipeline.name}, "credentialGeneration": pipeline.credential_generation,
            "credentials": [{"clientId": pipeline.client_id, "clientSecret": pipeline.client_secret}]}
    if args.output == "table":
        view = {"name": pipeline.name, "clientId": pipeline.client_id, "clientSecret": pipeline.client_secret,
                "credentialGeneration": pipeline.credential_generation}
    _print(view, args.output)
    print(f"tokens issued before are refused from now on; {_SECRET_ONCE.format(name=pipeline.name)}",
          file=sys.stderr)
    return 0


def _probe(project, connector) -> None:
    """Credentials readable and location writable, or ProjectError with the probe's one line."""
    from controlplane.connectors import probe_data_connector
    from pipelines.connectors import ConnectorError

    try:
        probe_data_connector(connector.connector(str(project.path)))
    except ConnectorError as exc:
        raise ProjectError(f"{exc} (nothing was created; --no-probe creates it without this check)") from None


def _create_connector(args) -> int:
    kept = connector = None
    try:
        absent = [m for m in _REQUIRED.get(args.connector_type, []) if not getattr(args, m)]
        if absent:
            raise ProjectError(f"missing {', '.join('--' + m.replace('_', '-') for m in absent)}")
        project = project_of(args)
        entry, kept = _connector_entry(args, project)
        connector = project.create_data_connector(entry)   # pipelines.connectors.parse_connector checks it
        if kept is not None:
            project.keep_credentials(connector.name, kept)
        if getattr(args, "probe", False):
            _probe(project, connector)
        project.save()
    except ProjectError as exc:
        if kept is not None and connector is not None:
            project.delete_data_connector(connector.name)   # the credentials file written above
        return fail("create data-connector", exc)
    _print(_connector_view(connector), "json")
    return 0


def _connector_entry(args, project) -> tuple[dict, str | None]:
    """The ``connectors:`` entry of pipelines.connectors for the flags, and credentials to keep."""
    kind = CONNECTOR_KINDS[args.connector_type]
    entry = {"name": args.name, "kind": kind}
    if kind == "postgresql":
        entry["uri"] = _postgresql_uri(args.uri) if args.connector_type == "jdbc" else args.uri
        if args.connector_type == "jdbc" and (args.database_type or "POSTGRES").upper() not in ("POSTGRES", "POSTGRESQL"):
            raise ProjectError(f"--database-type {args.database_type}: only POSTGRES databases can be read (and "
                               "BigQuery, with `pstream create data-connector bigquery`)")
    elif kind == "bigquery" and args.project:
        entry["project"] = args.project
    if kind == "local":
        return {**entry, "path": args.path or str(project.directory / "exports" / args.name)}, None
    if kind in ("postgresql", "bigquery"):
        pass
    elif kind in ("s3", "gcs"):
        entry["bucket"] = args.bucket_name
        if kind == "s3":
            if args.assume_role_arn:
                raise ProjectError("--assume-role-arn is not supported (Beam's S3 file system takes an access key): "
                                   "give the key of a user allowed to write the bucket with --credentials-file")
            entry["region"] = args.region
    else:
        entry.update(_azure_location(args.storage_account_uri), container=args.container_name)
    if getattr(args, "endpoint", None):
        entry["endpoint"] = args.endpoint
    principal = [getattr(args, f, None) for f in ("tenant_id", "client_id", "client_secret")]
    given = [flag for flag, value in (("--credentials-file", args.credentials_file),
                                      ("--credentials-env", args.credentials_env),
                                      ("--tenant-id/--client-id/--client-secret", any(principal))) if value]
    if len(given) > 1:
        raise ProjectError(f"give one of {', '.join(given)}")
    kept = None
    if args.credentials_file:
        entry["credentials"] = {"file": os.path.abspath(os.path.expanduser(args.credentials_file))}
    elif args.credentials_env:
        entry["credentials"] = {"env": args.credentials_env}
    elif any(principal):
        if not all(principal):
            raise ProjectError("a service principal needs --tenant-id, --client-id and --client-secret")
        kept = json.dumps(dict(zip(("tenant_id", "client_id", "client_secret"), principal)))
        entry["credentials"] = {"file": str(project.credentials_dir() / f"{args.name}.json")}
    return entry, kept


def _postgresql_uri(jdbc_uri: str) -> str:
    """``jdbc:postgresql://host:5432/db?user=u`` -> ``postgresql://u@host:5432/db``; a password is refused."""
    if not jdbc_uri.startswith("jdbc:postgresql://"):
        raise ProjectError("--uri must be a PostgreSQL JDBC URI (jdbc:postgresql://host[:port]/database)")
    parsed = urlparse(jdbc_uri[len("jdbc:"):])
    query = dict(part.split("=", 1) for part in parsed.query.split("&") if "=" in part)
    if "password" in {k.lower() for k in query} or parsed.password:
        raise ProjectError("--uri holds a password: give it with --credentials-file or --credentials-env")
    user = query.pop("user", None) or parsed.username
    rest = "&".join(f"{k}={v}" for k, v in query.items())
    host = parsed.netloc.rsplit("@", 1)[-1]
    return f"postgresql://{user + '@' if user else ''}{host}{parsed.path}{'?' + rest if rest else ''}"


def _azure_location(uri: str) -> dict:
    """account (and endpoint, unless it is Azure's own) from --storage-account-uri."""
    parsed = urlparse(uri if "://" in uri else f"https://{uri}")
    host = parsed.hostname or ""
    if host.endswith(".blob.core.windows.net"):
        account = host.split(".", 1)[0]
        own = parsed.scheme == "https" and parsed.port is None and parsed.path.strip("/") == ""
        return {"account": account} if own else {"account": account, "endpoint": uri.rstrip("/")}
    account = parsed.path.strip("/").split("/", 1)[0]   # an emulator: http://127.0.0.1:10000/<account>
    if not account:
        raise ProjectError(f"--storage-account-uri '{uri}': give https://<account>.blob.core.windows.net, "
                           "or an emulator's http://HOST:PORT/<account>")
    return {"account": account, "endpoint": uri.rstrip("/")}


def _create_exporter(args) -> int:
    try:
        project = project_of(args)
        exporter = project.create_batch_exporter(args.stream, args.data_connector, args.name, args.interval,
                                                 args.path_prefix, args.include_existing_events)
        project.save()
    except ProjectError as exc:
        return fail("create batch-exporter", exc)
    _print(asdict(exporter), "json")
    return 0


def _list(args) -> int:
    try:
        project = project_of(args)
    except ProjectError as exc:
        return fail("list", exc)
    if args.list_kind == "streams":
        rows = []
        for pipeline in project.pipelines.values():
            rows.append({"name": pipeline.name, "type": "pipeline", "source": "", "consent": "",
                         "levels": [], "purposes": [], "enabled": pipeline.enabled})
        for stream in project.privacy_streams.values():
            rows.append({"name": stream.name, "type": "privacy stream", "source": stream.source,
                         "consent": stream.mode, "levels": stream.levels,
                         "purposes": [project.purpose_name(v) or "-" for v in stream.levels], "enabled": True})
        _print(rows, args.output, ["name", "type", "source", "consent", "levels", "purposes", "enabled"])
    elif args.list_kind == "data-connectors":
        if args.output == "json":
            _print([_connector_view(c) for c in project.data_connectors.values()], "json")
        else:
            _print([_connector_row(project, c) for c in project.data_connectors.values()], "table")
    else:
        _print([asdict(e) for e in project.batch_exporters.values()], args.output,
               ["name", "stream", "data_connector", "interval", "path_prefix", "include_existing_events"])
    return 0


def _get(args) -> int:
    try:
        project = project_of(args)
        if args.get_kind == "stream":
            if args.name in project.pipelines:
                view = pipeline_view(project, project.pipelines[args.name])
            elif args.name in project.privacy_streams:
                view = privacy_stream_view(project.privacy_streams[args.name], project)
            else:
                raise ProjectError(f"no stream named '{args.name}'")
        elif args.get_kind == "data-connector":
            if args.name not in project.data_connectors:
                raise ProjectError(f"no data connector named '{args.name}'")
            view = _connector_view(project.data_connectors[args.name])
        else:
            if args.name not in project.batch_exporters:
                raise ProjectError(f"no batch exporter named '{args.name}'")
            view = asdict(project.batch_exporters[args.name])
    except ProjectError as exc:
        return fail(f"get {args.get_kind}", exc)
    if args.output == "table" and "credentials" in view:
        view = {**{k: v for k, v in view.items() if k != "credentials"}, **view["credentials"][0]}
    _print(view, args.output)
    return 0


def _delete(args) -> int:
    try:
        project = project_of(args)
        if args.delete_kind == "stream":
            data = project.pipeline_data(args.name) if args.name in project.pipelines else []
            deleted = project.delete_stream(args.name, args.recursive)
        elif args.delete_kind == "data-connector":
            project.delete_data_connector(args.name)
            deleted = [args.name]
        else:
            project.delete_batch_exporter(args.name)
            deleted = [args.name]
        project.save()
    except ProjectError as exc:
        return fail(f"delete {args.delete_kind}", exc)
    for name in deleted:
        print(f"deleted {args.delete_kind} {name}", file=sys.stderr)
    if args.delete_kind == "stream":
        _pipeline_data_left(args, [path for path in data if path.exists()])
    return 0


def _pipeline_data_left(args, paths) -> None:
    """Remove a deleted pipeline's spool, outputs and state (--purge), or say where they are."""
    import shutil

    if not paths:
        return
    if args.purge:
        for path in paths:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        print(f"removed {', '.join(map(str, paths))}", file=sys.stderr)
    else:
        print(f"kept {', '.join(map(str, paths))}: no new stream uses them, whatever its name "
              "(`delete stream --purge` removes them)", file=sys.stderr)
