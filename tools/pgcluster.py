"""A private PostgreSQL cluster from the system's binaries, started as a user would.

For the tests and `ledgerctl bench replicate`: `initdb` a data directory in a
fresh temporary directory, start it with `pg_ctl` listening on a unix socket
in that directory only (no TCP port), and stop it afterwards. `initdb`
refuses to run as root, so when this process is root every server command
runs as the `postgres` system user (which owns the directory). A streaming
replica is `pg_basebackup -R` of a running primary, started the same way.

Binaries: `initdb` on PATH, else Debian's `/usr/lib/postgresql/<version>/bin`
(the newest version there), which Debian does not put on PATH.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ledger.errors import StoreError
from ledger.process import pid_alive

#: The system user server commands run as when this process is root.
PG_USER = "postgres"
_DEBIAN = Path("/usr/lib/postgresql")


def find_bindir() -> Path | None:
    """The directory of the system's PostgreSQL server binaries, or None."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    if _DEBIAN.is_dir():
        versions = sorted((p for p in _DEBIAN.iterdir() if (p / "bin" / "initdb").exists()),
                          key=lambda p: int(p.name) if p.name.isdigit() else 0)
        if versions:
            return versions[-1] / "bin"
    return None


def _free_port() -> int:
    """A port number nobody listens on now (names the socket file; no TCP listener)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """One private PostgreSQL server: data directory, unix socket, log (see module doc)."""

    def __init__(self, root: Path, bindir: Path, port: int, *, standby: bool = False) -> None:
        self.root = root
        self.bindir = bindir
        self.port = port
        self.standby = standby
        self.data = root / "data"
        self.sockdir = root / "sock"
        self.log = root / "server.log"

    # -- creating --------------------------------------------------------------------

    @classmethod
    def create(cls, *, settings: dict[str, str] | None = None,
               bindir: Path | None = None) -> PgCluster:
        """`initdb` a new cluster in a fresh temporary directory (not started).

        Raises `StoreError` if the binaries or the `postgres` user are missing.
        """
        bindir = bindir or find_bindir()
        if bindir is None:
            raise StoreError("PostgreSQL's server binaries (initdb, pg_ctl) are not installed; "
                             "install Debian's postgresql package")
        root = Path(tempfile.mkdtemp(prefix="perpledger-pg-"))
        cluster = cls(root, bindir, _free_port())
        try:
            cluster._prepare_dirs()
            cluster._run(["initdb", "-D", str(cluster.data), "-U", PG_USER, "-A", "trust",
                          "-E", "UTF8", "--locale=C", "--no-instructions"])
            conf = {"listen_addresses": "''", "unix_socket_directories": f"'{cluster.sockdir}'",
                    "port": str(cluster.port), "max_wal_senders": "10", "wal_level": "replica",
                    "hot_standby": "on", **(settings or {})}
            with (cluster.data / "postgresql.conf").open("a") as fh:
                fh.write("\n# perpledger private cluster\n")
                fh.writelines(f"{k} = {v}\n" for k, v in conf.items())
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cluster

    def _prepare_dirs(self) -> None:
        self.sockdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            uid, gid = _pg_ids()
            for p in (self.root, self.sockdir):
                os.chown(p, uid, gid)
            os.chmod(self.root, 0o700)

    def replica(self, *, settings: dict[str, str] | None = None) -> PgCluster:
        """A streaming replica of this (running) primary: `pg_basebackup -R`, not started."""
        root = Path(tempfile.mkdtemp(prefix="perpledger-pg-replica-"))
        rep = PgCluster(root, self.bindir, _free_port(), standby=True)
        try:
            rep._prepare_dirs()
            rep._run(["pg_basebackup", "-D", str(rep.data), "-R", "-X", "stream", "-c", "fast",
                      "-h", str(self.sockdir), "-p", str(self.port), "-U", PG_USER])
            conf = {"unix_socket_directories": f"'{rep.sockdir}'", "port": str(rep.port),
                    "hot_standby": "on", **(settings or {})}
            with (rep.data / "postgresql.auto.conf").open("a") as fh:
                fh.writelines(f"{k} = {v}\n" for k, v in conf.items())
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return rep

    # -- running ---------------------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        """Start the server and wait until it accepts connections."""
        self._run(["pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t",
                   str(int(timeout)), "start"], timeout=timeout + 10)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`pg_ctl stop -m fast`); nothing if it is not running."""
        if (self.data / "postmaster.pid").exists():
            self._run(["pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop"], check=False)

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash); its children exit once it is gone."""
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and pid_alive(pid):
                time.sleep(0.05)

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def destroy(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- clients ---------------------------------------------------------------------

    def dsn(self, dbname: str = "postgres", user: str = PG_USER) -> str:
        """A libpq URL for a database of this server over its unix socket."""
        return f"postgresql://{user}@/{dbname}?host={self.sockdir}&port={self.port}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL through the system's `psql` (as the postgres user); its output."""
        out = self._run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h",
                         str(self.sockdir), "-p", str(self.port), "-U", PG_USER, "-d", dbname,
                         "-c", sql])
        return out.strip()

    def create_database(self, name: str) -> str:
        """Create a database; its DSN."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def _run(self, cmd: list[str], *, check: bool = True, timeout: float = 120) -> str:
        exe = self.bindir / cmd[0]
        argv = [str(exe if exe.exists() else cmd[0]), *cmd[1:]]
        kw: dict[str, Any] = {}
        if os.geteuid() == 0:
            kw.update(user=PG_USER, group=PG_USER, extra_groups=[])
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              cwd=str(self.root), check=False, **kw)
        if check and proc.returncode != 0:
            raise StoreError(f"{cmd[0]} failed (exit {proc.returncode}): "
                             f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
        return str(proc.stdout)


def _pg_ids() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam(PG_USER)
    except KeyError:
        raise StoreError(f"initdb refuses to run as root and there is no {PG_USER!r} user to "
                         "run it as; install Debian's postgresql package (it creates one)"
                         ) from None
    return pw.pw_uid, pw.pw_gid


