"""The ``--project_dir`` option that every project command shares, and opening the project.

    add_project_arg(parser)
    project = project_of(args)       # controlplane.project.Project
"""
from __future__ import annotations

import sys

from controlplane.project import PROJECT_DIR_ENV, Project, ProjectError


def add_project_arg(parser) -> None:
    parser.add_argument("--project_dir", "--project-dir", default=None,
                        help=f"project directory (default: ${PROJECT_DIR_ENV} or ~/.config/pstream)")


def project_of(args) -> Project:
    return Project.open(getattr(args, "project_dir", None))


def fail(command: str, error: Exception) -> int:
    print(f"pstream {command}: {error}", file=sys.stderr)
    return 2


__all__ = ["Project", "ProjectError", "add_project_arg", "fail", "project_of"]
