"""Files only their owner can read. The workspace's ``.expertkit`` holds the documents' text (the index, its
caches, chats, API keys, the runtime's record and log), which access groups guard from callers: another
local user must not read it around them. So what expertkit makes there is made 0700 (folders) and 0600
(files), whatever the umask; a folder that already exists is left as it is, and ``exposed`` names what
another user could read, for ``doctor`` and ``status`` to warn about.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
OTHERS_RW = 0o066  # group or other may read or write
OTHERS_X = 0o011  # group or other may enter (a folder)


def private_dir(path: Path | str) -> Path:
    """``path`` made (``mkdir -p``), each folder made here 0700; folders that exist are left as they are."""
    path = Path(path)
    missing = []
    folder = path
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first
            folder.mkdir(mode=DIR_MODE)
    return path


def private_file(path: Path | str) -> Path:
    """``path`` (a file expertkit just wrote, e.g. a temporary one before its rename) made 0600."""
    os.chmod(path, FILE_MODE)
    return Path(path)


def open_private(path: Path | str, flags: int = os.O_WRONLY | os.O_TRUNC) -> int:
    """``os.open`` that creates a missing file 0600 (an existing one keeps its mode)."""
    return os.open(path, flags | os.O_CREAT, FILE_MODE)


def create_private(path: Path | str) -> None:
    """An empty 0600 file at ``path`` unless one exists: a file that a library then opens (SQLite makes
    its database, and the -wal and -shm files beside it, with the umask's mode, but keeps an existing one's).
    A file that cannot be made here is left to that library to report."""
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))


def exposed(folder: Path | str, skip: tuple[str, ...] = ()) -> list[Path]:
    """What under ``folder`` another local user could list, read or write: files and folders with group or
    other read/write bits, where every folder above them lets others in. Folders named in ``skip`` are
    checked but not entered (a PostgreSQL data folder: its server keeps it 0700 itself)."""
    out: list[Path] = []

    def visit(path: Path, top: bool) -> None:
        try:
            st = path.lstat()
        except OSError:
            return
        if stat.S_ISLNK(st.st_mode):
            return
        if st.st_mode & OTHERS_RW:
            out.append(path)
        if not stat.S_ISDIR(st.st_mode) or not st.st_mode & OTHERS_X or (not top and path.name in skip):
            return  # nothing below a folder others cannot enter is theirs to read
        try:
            children = sorted(path.iterdir())
        except OSError:
            return
        for child in children:
            visit(child, False)

    visit(Path(folder), True)
    return out


def fix_command(folder: Path | str) -> str:
    return f"chmod -R go-rwx {shlex.quote(str(folder))}"


def describe(folder: Path | str, wide: list[Path]) -> str:
    """One line on what ``exposed`` found in ``folder``, for doctor and status."""
    folder = Path(folder)
    names = [str(p.relative_to(folder.parent)) if p.is_relative_to(folder.parent) else str(p) for p in wide]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (
        f"other local users can read or write {shown}: the index holds the documents' text, "
        "whatever their access groups"
    )
