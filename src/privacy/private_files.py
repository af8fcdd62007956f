"""Owner-only files: files created 0600 and directories 0700, the mode given at creation.

    from privacy.private_files import open_private, private_dirs, private_file
    with open_private("out/keys.csv", "w", newline="") as handle:   # 0600 from the first byte
        handle.write(text)
    private_dirs("out/streams/webshop-1")        # each directory it creates is 0700
    private_file("out/keystore.sqlite")          # exists, 0600, content untouched (SQLite opens it next)

Every local file that holds plaintext personal data or key material is made here: the writer's
JSONL outputs and temp files (encrypted/, streams/, keys/, dead_letter/, exporters' local
directories), run records, the local KEK, the SQLite key store (its -wal and -shm files take the
database file's mode), key exports (``pstream keys export -o``), ``pstream decrypt -o`` output,
access-request reports (``pstream subjects export -o``), generated example input.

The mode is passed to ``os.open`` / ``os.mkdir``, so the file never exists with a wider mode, as
it would between a create and a later ``chmod`` (the process umask can only narrow it). A file
that already exists with a wider mode (written by an older version) is narrowed to 0600 through
its descriptor before anything is written into it. Existing directories are left as they are:
their files are private whatever the directory's mode. Local paths only: object stores
(gs://, s3://, azfs://) have no file modes; their access is the bucket's.
"""
from __future__ import annotations

import os
import stat

FILE_MODE = 0o600
DIR_MODE = 0o700
_FLAGS = {"w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
          "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND}


def private_dirs(path: str | os.PathLike) -> None:
    """Create ``path`` and its missing parents, each new directory 0700 (existing ones kept)."""
    path = os.path.abspath(os.fspath(path))
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise


def _narrow(fd: int) -> None:
    if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
        os.fchmod(fd, FILE_MODE)


def open_private(path: str | os.PathLike, mode: str = "w", **kwargs):
    """``open()`` for a file only its owner may read: ``w``, ``x`` or ``a``, text or ``b``inary."""
    kind = mode.replace("b", "").replace("t", "")
    if kind not in _FLAGS:
        raise ValueError(f"open_private writes files: mode '{mode}' is not w, x or a (with b or t)")
    path = os.fspath(path)
    private_dirs(os.path.dirname(os.path.abspath(path)))
    fd = os.open(path, _FLAGS[kind] | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        _narrow(fd)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def private_file(path: str | os.PathLike) -> None:
    """Make sure ``path`` exists and is 0600, without changing its content (for files that a
    library opens itself, such as an SQLite database)."""
    path = os.fspath(path)
    private_dirs(os.path.dirname(os.path.abspath(path)))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        _narrow(fd)
    finally:
        os.close(fd)


def replace_private(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and owner-only: a 0600 temp file in the same
    directory, written, fsynced and renamed over ``path`` (a reader sees the old file or the new
    one, never half of one, also after a crash: the directory is fsynced too); the temp file is
    removed if anything fails.

        replace_private("project/contracts/acme/Shop/1.0.0.lifecycle.json", b"{...}")
    """
    import secrets

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    private_dirs(directory)
    temp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    _fsync_dir(directory)   # the rename itself survives a crash


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
