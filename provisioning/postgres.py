"""Local PostgreSQL servers, each in a folder of its own on a free port: for the tests,
`make demo-ha` and the bench. A primary, streaming replicas of it, switchovers (stop the
primary, promote a replica) and crashes, all with the machine's own PostgreSQL binaries.

A server's folder holds everything it has: `data/` (the cluster), `server.log`, and its
unix socket. It listens on 127.0.0.1 only and trusts every login there (and on its
socket, which only the folder's owner can reach): a throwaway server for one machine,
never a deployment (docs/postgresql.md).

initdb and the server refuse to run as root; as root they run as the `postgres` system
user, in a folder made under a place that user can reach (/tmp) and handed to it.
Each server dies with the process that started it, like the broker (processes.py)."""

import functools
import glob
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from .processes import die_with_parent, free_port

INSTALL_HINT = "install it with: apt-get install postgresql  (Debian's package)"
SUPERUSER = "postgres"  # the cluster's superuser, whoever runs it
SYSTEM_USER = "postgres"  # the system user the binaries run as when we are root
SOCKET_PATH_MAX = 107  # sun_path, less its terminating NUL
DEBIAN_BINDIRS = "/usr/lib/postgresql/*/bin"  # one per major version

# Fast to make, quick to switch over; fsync stays on so a crash test means something.
SETTINGS = {
    "wal_level": "replica",
    "max_wal_senders": 10,
    "wal_keep_size": "64MB",  # a replica that falls behind for a moment catches up
    "hot_standby": "on",
    "fsync": "on",
    "shared_buffers": "32MB",
    "max_connections": 100,
    "logging_collector": "off",  # stderr, to server.log
}
INITDB_FLAGS = ["-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions", "--auth=trust"]
# -R: a standby that follows its source; -X stream: the WAL of the copy's own time too;
# -c fast: an immediate checkpoint instead of a spread one.
BASEBACKUP_FLAGS = ["-R", "-X", "stream", "-c", "fast", "--no-sync"]
HBA = """\
# A local throwaway server: trust on its own socket (in a folder only its owner reaches)
# and on 127.0.0.1, nothing else.
local all         all              trust
host  all         all 127.0.0.1/32 trust
host  replication all 127.0.0.1/32 trust
"""


@functools.cache
def postgres_bindir():
    """The folder of initdb, pg_ctl and postgres: the newest /usr/lib/postgresql/*/bin
    (Debian), else `pg_config --bindir`, else the PATH."""
    versions = sorted(glob.glob(DEBIAN_BINDIRS), key=_version_key, reverse=True)
    candidates = [Path(p) for p in versions]
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        candidates.append(Path(out.stdout.strip()))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise FileNotFoundError(
        "PostgreSQL's server binaries (initdb, pg_ctl) are not installed; " + INSTALL_HINT
    )


def _version_key(path):
    version = Path(path).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _as_root():
    return os.geteuid() == 0


def _run_as():
    """subprocess keywords that run a binary as the user PostgreSQL accepts."""
    if not _as_root():
        return {}
    return {"user": SYSTEM_USER, "group": pwd.getpwnam(SYSTEM_USER).pw_gid, "extra_groups": []}


def _environment():
    """Our environment without PG* variables, so no PGHOST or PGDATA of the caller's
    reaches initdb, pg_basebackup or the server."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _world_traversable(path):
    """Whether others may pass through every folder from `path` up (those not made yet
    will be, by us, with the usual umask)."""
    return all(not p.exists() or os.stat(p).st_mode & 0o001 for p in (path, *path.parents))


def make_folder(folder=None):
    """The server's folder: `folder` (made if missing), or a new temporary one. As root,
    handed to the postgres user, which must be able to reach it."""
    if folder is None:
        parent = Path(tempfile.gettempdir())
        if _as_root() and not _world_traversable(parent):
            parent = Path("/tmp")
        folder = tempfile.mkdtemp(prefix="siaga-pg-", dir=parent)
    folder = Path(folder).resolve()
    if len(str(folder / ".s.PGSQL.65535")) > SOCKET_PATH_MAX:
        raise ValueError(f"{folder}: too long a path for the server's unix socket; choose a shorter one")
    if _as_root() and not _world_traversable(folder.parent):
        raise ValueError(
            f"{folder}: the {SYSTEM_USER} user cannot reach it (a parent folder is closed to others); "
            "choose one under /tmp, or let a temporary folder be made"
        )
    folder.mkdir(parents=True, exist_ok=True)
    if _as_root():
        account = pwd.getpwnam(SYSTEM_USER)
        os.chown(folder, account.pw_uid, account.pw_gid)
    os.chmod(folder, 0o700)
    return folder


class LocalPostgres:
    """One PostgreSQL server (a cluster) in a folder of its own: `folder/data`,
    `folder/server.log`, its unix socket in `folder`; TCP on `host`:`port` only.
    Made by `start_primary` or `start_replica`; `start()` starts it again after `stop()`
    or `kill()`, and `LocalPostgres(folder).start()` one made earlier (on a new port)."""

    host = "127.0.0.1"

    def __init__(self, folder, port=None):
        self.folder = Path(folder)
        self.port = port or free_port(self.host)
        self.proc = None

    @property
    def data(self):
        return self.folder / "data"

    @property
    def log_path(self):
        return self.folder / "server.log"

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def url(self, db="siaga"):
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{db}"

    def _run(self, *args, timeout=60):
        """Run one of PostgreSQL's binaries (as the postgres user when we are root)."""
        command = [str(postgres_bindir() / args[0]), *map(str, args[1:])]
        done = subprocess.run(
            command,
            cwd=self.folder,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            **_run_as(),
        )
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def write_settings(self):
        """This server's own settings (port, address, socket folder) in data/siaga.conf,
        which postgresql.conf includes: written at each start (a replica's copy of its
        primary's, too)."""
        lines = [
            f"port = {self.port}",
            f"listen_addresses = '{self.host}'",
            f"unix_socket_directories = '{self.folder}'",
        ]
        path = self.data / "siaga.conf"
        path.write_text(
            "# Written by provisioning/postgres.py for this server only\n" + "\n".join(lines) + "\n"
        )
        shutil.copystat(self.data / "postgresql.conf", path)
        if _as_root():
            shutil.chown(path, SYSTEM_USER, SYSTEM_USER)

    def start(self, timeout=30):
        """Start the server and return once it accepts connections (a primary, or a
        replica that is a hot standby ready for reads). It is sent SIGINT (fast shutdown)
        when the thread that started it ends: start it from one that lives as long."""
        if self.running:
            return self
        self.write_settings()
        with open(self.log_path, "ab") as log:
            if _as_root():
                shutil.chown(self.log_path, SYSTEM_USER, SYSTEM_USER)
            self.proc = subprocess.Popen(
                [str(postgres_bindir() / "postgres"), "-D", str(self.data)],
                cwd=self.folder,
                env=_environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # Ctrl-C in a terminal goes to the caller, not to the database
                preexec_fn=lambda: die_with_parent(signal.SIGINT),  # fast shutdown
                **_run_as(),
            )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout):
        """Wait as pg_ctl -w does: for postmaster.pid to name this process and say
        "ready" (a primary) or "standby" (a hot standby taking connections)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited with {self.proc.returncode}: {self.log_tail()}")
            if self._status() in ("ready", "standby"):
                return
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"PostgreSQL not ready after {timeout} s: {self.log_tail()}")

    def _status(self):
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        if len(lines) < 8 or lines[0].strip() != str(self.proc.pid):
            return None
        return lines[7].strip()

    def log_tail(self, lines=15):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no server.log)"

    def stop(self, mode="fast", timeout=30):
        """Shut the server down: "smart" waits for the clients to leave, "fast" ends
        their sessions, "immediate" quits without a checkpoint (recovery at the next start)."""
        if not self.running:
            return
        self._run("pg_ctl", "stop", "-D", self.data, "-m", mode, "-w", "-t", timeout, timeout=timeout + 5)
        self.proc.wait(timeout)

    def kill(self):
        """Crash it: SIGKILL the postmaster and every process it started, at once, as if
        the host died. Whatever was committed is recovered at the next start."""
        if not self.running:
            return
        os.kill(self.proc.pid, signal.SIGSTOP)  # no new children while they are listed
        pids = [self.proc.pid, *_children(self.proc.pid)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        _wait_gone(pids[1:])

    def promote(self, timeout=30):
        """Make this replica a primary: it leaves recovery and takes writes."""
        self._run("pg_ctl", "promote", "-D", self.data, "-w", "-t", timeout, timeout=timeout + 5)

    def is_primary(self):
        """Whether it takes writes (is not in recovery), asked of the server itself."""
        with psycopg.connect(self.url("postgres"), connect_timeout=5) as conn:
            return not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]

    def remove(self):
        """Stop the server if it runs and delete its folder."""
        try:
            self.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __repr__(self):
        return f"<LocalPostgres {self.host}:{self.port} {self.folder}>"


def _children(pid):
    """The processes whose parent is `pid` (the postmaster's: backends, walsenders, ...)."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if fields[1] == str(pid):
            found.append(int(Path(stat).parent.name))
    return found


def _alive(pid):
    """Whether `pid` runs (a zombie no longer holds memory or ports)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _wait_gone(pids, timeout=10):
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)


def start_primary(db="siaga", folder=None, port=None):
    """A new primary: initdb (trust on 127.0.0.1 and the folder's socket, replication
    allowed from 127.0.0.1), started, with an empty database `db` (None: only the
    `postgres` database initdb makes)."""
    server = LocalPostgres(make_folder(folder), port)
    try:
        server._run("initdb", "-D", server.data, *INITDB_FLAGS)
        (server.data / "pg_hba.conf").write_text(HBA)
        settings = "\n".join(f"{k} = {_conf_value(v)}" for k, v in SETTINGS.items())
        with open(server.data / "postgresql.conf", "a") as conf:
            conf.write(f"\n# provisioning/postgres.py\n{settings}\ninclude = 'siaga.conf'\n")
        server.start()
        if db and db != "postgres":
            _create_database(server, db)
    except BaseException:
        server.remove()
        raise
    return server


def _conf_value(value):
    return str(value) if isinstance(value, int) else f"'{value}'"


def _create_database(server, db):
    with psycopg.connect(server.url("postgres"), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))


def start_replica(primary, folder=None, port=None):
    """A new streaming replica of `primary` (a hot standby): pg_basebackup -R -X stream,
    then started; it follows the primary until it is promoted."""
    server = LocalPostgres(make_folder(folder), port)
    try:
        source = f"host={primary.host} port={primary.port} user={SUPERUSER}"
        server._run("pg_basebackup", "-D", server.data, "-d", source, *BASEBACKUP_FLAGS)
        server.start()
    except BaseException:
        server.remove()
        raise
    return server


def multi_host_url(servers, db="siaga"):
    """A libpq URL naming every server, which connects to whichever one takes writes:
    after a switchover the same URL finds the promoted replica."""
    hosts = ",".join(f"{s.host}:{s.port}" for s in servers)
    return f"postgresql://{SUPERUSER}@{hosts}/{db}?target_session_attrs=read-write&connect_timeout=2"
