"""The ``--project-dir`` option that every project command shares, opening the project, and
tokens for the CLI's own commands.

    add_project_arg(parser)
    project = project_of(args)       # controlplane.project.Project
    tokens = ProjectTokens(project, "demo")
    await tokens.token()             # a bearer token of pipeline demo, signed with the project's key
"""
from __future__ import annotations

import argparse
import sys
import time

from controlplane.project import PROJECT_DIR_ENV, Project, ProjectError


def add_project_arg(parser) -> None:
    parser.add_argument("--project-dir", dest="project_dir", default=None,
                        help=f"project directory (default: ${PROJECT_DIR_ENV} or ~/.config/pstream)")
    parser.add_argument("--project_dir", dest="project_dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def project_of(args) -> Project:
    return Project.open(getattr(args, "project_dir", None))


def fail(command: str, error: Exception) -> int:
    print(f"pstream {command}: {error}", file=sys.stderr)
    return 2


class ProjectTokens:
    """Bearer tokens of one pipeline for ``pstream simulate`` and ``pstream listen``.

    The project keeps only the hash of a client secret, so these commands cannot do the
    client-credentials exchange; they sign a token with the project's own key
    (``gateway.auth.TokenIssuer``), which whoever can read the project can do anyway. The
    token is bound to the pipeline's current credential generation, like any other, and only a
    gateway serving this project accepts it. ``invalidate`` (after a 401) re-reads the project.
    """

    def __init__(self, project: Project, pipeline: str, clock=time.monotonic):
        self.project, self.pipeline, self._clock = project, pipeline, clock
        self._token: str | None = None
        self._refresh_at = 0.0

    async def token(self) -> str:
        from gateway.auth import TokenIssuer

        if self._token is None or self._clock() >= self._refresh_at:
            issuer = TokenIssuer.for_project(self.project.directory)
            self._token, lifetime = issuer.issue(self.project.pipeline(self.pipeline))
            self._refresh_at = self._clock() + lifetime * 0.8
        return self._token

    def invalidate(self) -> None:
        self._token = None
        self.project = Project.open(self.project.directory)


__all__ = ["Project", "ProjectError", "ProjectTokens", "add_project_arg", "fail", "project_of"]
