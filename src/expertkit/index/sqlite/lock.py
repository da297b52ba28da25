"""The workspace write lock: an ``flock`` on ``<database>.lock``, shared by every SQLiteIndex of one process
on one database and waited for by any other process, which is told who holds it."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from expertkit.errors import WorkspaceError
from expertkit.private import FILE_MODE

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: SQLite's own locking still orders the writers
    fcntl = None


class _WriteLocks:
    """Exclusive ``flock``s on ``<database>.lock`` files, one per file per process: every SQLiteIndex of
    this process on one database shares it (SQLite orders their transactions), and another process waits
    for it. The holder writes its pid and command line into the file, so a waiter can name it.

    Not filelock (which the key store uses): a forked child must not inherit its parent's hold (it takes its
    own when it writes), and a waiter that gives up names the holder; filelock does neither."""

    def __init__(self) -> None:
        self._after_fork()

    def _after_fork(self) -> None:
        # a forked child shares its parent's open lock but is not the writer: it takes its own when it writes
        self._mutex = threading.Lock()
        self._gates: dict[str, threading.Lock] = {}
        self._held: dict[str, list[int]] = {}  # lock file → [descriptor, holders in this process]

    def acquire(self, lock_path: Path, timeout: float, index_path: Path) -> str:
        key = os.path.realpath(lock_path)
        with self._mutex:
            gate = self._gates.setdefault(key, threading.Lock())
        with gate:  # one thread of this process waits for the file; the others then share what it got
            with self._mutex:
                if key in self._held:
                    self._held[key][1] += 1
                    return key
            fd = self._lock_file(key, timeout, index_path) if fcntl is not None else -1
            with self._mutex:
                self._held[key] = [fd, 1]
        return key

    def _lock_file(self, key: str, timeout: float, index_path: Path) -> int:
        try:
            fd = os.open(key, os.O_RDWR | os.O_CREAT, FILE_MODE)  # not inherited by child processes
        except OSError as exc:
            raise WorkspaceError(f"cannot open the index's lock file {key}: {exc.strerror or exc}") from None
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
                if time.monotonic() >= deadline:
                    raise WorkspaceError(
                        f"another expertkit process ({_lock_holder(fd)}) is writing to the index {index_path};"
                        f" wait for it to finish or stop it (waited {timeout:g} s, index.lock_timeout_s)"
                    )
                time.sleep(min(0.05, max(deadline - time.monotonic(), 0.001)))
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n{_command_line()}\n".encode(), 0)
            return fd
        except BaseException:
            os.close(fd)
            raise

    def release(self, key: str) -> None:
        with self._mutex:
            held = self._held.get(key)
            if held is None:
                return
            held[1] -= 1
            if held[1] > 0:
                return
            del self._held[key]
        fd = held[0]
        if fd >= 0:
            try:
                os.ftruncate(fd, 0)  # no stale holder named once it is free
                fcntl.flock(fd, fcntl.LOCK_UN)  # explicit: a forked child's copy of the descriptor must not keep it
            finally:
                os.close(fd)


WRITE_LOCKS = _WriteLocks()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=WRITE_LOCKS._after_fork)


def _lock_holder(fd: int) -> str:
    try:
        pid, _, command = os.pread(fd, 4096, 0).decode("utf-8", "replace").partition("\n")
    except OSError:
        return "pid unknown"
    pid, command = pid.strip(), command.strip()
    if not pid.isdigit():
        return "pid unknown"
    return f"pid {pid}: {command}" if command else f"pid {pid}"


def _command_line() -> str:
    argv = list(sys.argv) or ["python"]
    if argv[0] == "-c":
        argv[0] = "python -c"
    elif argv[0].endswith("__main__.py"):  # python -m package
        argv[0] = "python -m " + Path(argv[0]).parent.name
    else:
        argv[0] = Path(argv[0]).name or "python"
    return " ".join(argv).replace("\n", " ")[:200]
