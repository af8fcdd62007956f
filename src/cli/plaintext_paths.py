"""Where plaintext may be written: not into a git working tree unless git ignores the path.

    from cli.plaintext_paths import refuse_plaintext_path, add_force_option
    add_force_option(parser)                                  # --force
    problem = refuse_plaintext_path(args.output, "plaintext keys", args.force)
    if problem:
        print(f"pstream keys export: {problem}", file=sys.stderr); return 2

Key exports (``keys export -o``), decrypted events (``decrypt -o``) and access reports
(``subjects export -o``) hold plaintext keys or personal data. Written into a repository's
working tree they are one ``git add .`` away from being committed and pushed, so these commands
refuse a path inside a working tree unless ``git check-ignore`` says the path is ignored, or
``--force`` is given. Standard output redirected to such a file (``> decrypted.jsonl``) is
checked the same way (Linux: the file behind descriptor 1). Outside any working tree nothing is
checked. Without a usable ``git`` a path under a directory holding ``.git`` is refused (fail
closed: whether it is ignored cannot be known).

A directory is refused (with or without ``--force``: a file name is needed). The path is
checked where it leads (symbolic links resolved: a link outside the repository to a
file in it is refused), and ``git`` runs without the caller's ``GIT_*`` environment (a
``GIT_DIR`` of another repository would answer for the wrong tree and its ignore rules).
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys


def add_force_option(parser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="write plaintext even inside a git working tree where the path is not git-ignored")


def _existing_dir(path: str) -> str:
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(directory):
        directory = os.path.dirname(directory)
    return directory


def _work_tree_by_walk(directory: str) -> str | None:
    while True:
        if os.path.exists(os.path.join(directory, ".git")):
            return directory
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def _git_env() -> dict[str, str]:
    """The environment for ``git``: the caller's, without GIT_DIR, GIT_WORK_TREE, GIT_INDEX_FILE ..."""
    return {name: value for name, value in os.environ.items() if not name.startswith("GIT_")}


def git_state(path: str) -> tuple[str | None, bool | None]:
    """(the working tree holding ``path`` or None, whether git ignores it: None if unknown);
    ``path`` is taken where it leads (``os.path.realpath``)."""
    path = os.path.realpath(path)
    directory = _existing_dir(path)
    git = shutil.which("git")
    if git is None:
        return _work_tree_by_walk(directory), None
    try:
        top = subprocess.run([git, "-C", directory, "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=20, env=_git_env())
        if top.returncode != 0 or not top.stdout.strip():
            return None, None   # not in a working tree (or a bare repository: no files to commit)
        tree = top.stdout.strip()
        ignored = subprocess.run([git, "-C", tree, "check-ignore", "-q", path],
                                 capture_output=True, timeout=20, env=_git_env())
    except (OSError, subprocess.TimeoutExpired):
        return _work_tree_by_walk(directory), None
    return tree, {0: True, 1: False}.get(ignored.returncode)


def stdout_file() -> str | None:
    """The regular file standard output is redirected to, if any (Linux /proc), else None."""
    try:
        if not stat.S_ISREG(os.fstat(sys.stdout.fileno()).st_mode):
            return None
        target = os.readlink("/proc/self/fd/1")
    except (OSError, ValueError, AttributeError):
        return None
    return target if os.path.isabs(target) and os.path.exists(target) else None


def refuse_plaintext_path(path: str, what: str, force: bool) -> str | None:
    """Why ``path`` (``-``: standard output) must not receive ``what``, or None when it may."""
    if path not in (None, "-") and "://" not in path and os.path.isdir(path):
        return f"{path} is a directory: give the name of a file to write {what} to (e.g. {os.path.join(path, 'out')})"
    if force:
        return None
    shown = path
    if path == "-":
        path = stdout_file()
        if path is None:
            return None
        shown = f"standard output ({path})"
    if "://" in path:
        return None
    tree, ignored = git_state(path)
    if tree is None or ignored:
        return None
    resolved = os.path.realpath(path)
    if resolved != os.path.abspath(path):
        shown = f"{shown} (which leads to {resolved})"
    why = "is not git-ignored" if ignored is False else "may not be git-ignored (git could not tell)"
    return (f"refusing to write {what} to {shown}: it is inside the git working tree {tree} and {why}, so "
            "`git add` would pick it up; add it to .gitignore, write it outside the repository, or give --force")
