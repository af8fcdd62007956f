"""``pstream purposes``: names for the project's purpose levels.

    pstream purposes create 1 analytics --description "product analytics"
    pstream purposes create 2 marketing --description "newsletters and offers"
    pstream purposes list                     # LEVEL NAME DESCRIPTION
    pstream create stream --derived-from demo --purposes analytics,marketing   # = --levels 1,2

Events (``strmMeta.consentLevels``) and contracts (``purposeLevel``) keep the levels: they are
the wire format. The names are the project's (``project.yaml``, ``purposes:``), for people:
privacy streams take them (``--purposes``), ``list streams``, ``get stream`` and the DDL comments
(``pstream ddl``) show them. Each name is recorded in the project's audit log.
"""
from __future__ import annotations

import sys

from cli.main import summary


def register(subparsers) -> None:
    purposes = subparsers.add_parser("purposes", help=summary("purposes"), description=__doc__.split("\n\n")[0])
    actions = purposes.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    create = actions.add_parser("create", help="name a purpose level (e.g. 1 analytics)",
                                description="Names purpose LEVEL in this project. Privacy streams then take the name "
                                "(--purposes NAME,...), and listings, summaries and DDL comments show it; events and "
                                "contracts keep the level.")
    create.add_argument("level", type=_level, metavar="LEVEL", help="the purpose level, a whole number from 0")
    create.add_argument("name", metavar="NAME", help="1-63 lowercase letters, digits and '-', e.g. analytics")
    create.add_argument("--description", default="", help="what consent to this purpose allows")
    _options(create)
    create.set_defaults(func=_create)
    listing = actions.add_parser("list", help="the project's purpose names, by level")
    listing.add_argument("-o", "--output", choices=["table", "json"], default="table", help="format (default %(default)s)")
    _options(listing)
    listing.set_defaults(func=_list)


def _options(parser) -> None:
    parser.add_argument("--project-dir", dest="project_dir", default=None,
                        help="project directory (default: $PSTREAM_PROJECT_DIR or ~/.config/pstream)")
    parser.add_argument("--user", default=None, help="who is acting, for the audit log (default: $PSTREAM_USER, "
                        "else the OS user)")


def _level(text: str) -> int:
    import argparse
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"'{text}' is not a purpose level (a whole number from 0)")
    return int(text)


def _create(args) -> int:
    from controlplane.audit import AuditError, log_for_project
    from controlplane.lifecycle import LifecycleError, current_user
    from controlplane.project import Project, ProjectError

    try:
        user = current_user(args.user)
        project = Project.open(args.project_dir)
        purpose = project.create_purpose(args.level, args.name, args.description)
        log = log_for_project(project.directory)
        log.check()
        project.save()
        log.append("purpose", "create", user, target=purpose.name, details={"level": purpose.level})
    except (ProjectError, LifecycleError, AuditError, OSError) as exc:
        print(f"pstream purposes create: {exc}", file=sys.stderr)
        return 2
    print(f"purpose {purpose.level} is '{purpose.name}'" + (f": {purpose.description}" if purpose.description else ""))
    return 0


def _list(args) -> int:
    import json

    from controlplane.project import Project, ProjectError

    try:
        project = Project.open(args.project_dir)
    except ProjectError as exc:
        print(f"pstream purposes list: {exc}", file=sys.stderr)
        return 2
    rows = sorted(project.purposes.values(), key=lambda p: p.level)
    if args.output == "json":
        print(json.dumps([{"level": p.level, "name": p.name, "description": p.description} for p in rows], indent=2))
        return 0
    for purpose in rows:
        print(f"{purpose.level}\t{purpose.name}\t{purpose.description}")
    if not rows:
        print("no purpose names yet: pstream purposes create LEVEL NAME --description TEXT", file=sys.stderr)
    return 0
