"""A real PgBouncer in front of a test server (tests/integration/test_pgbouncer.py).

The binary comes from the machine (``pgbouncer`` on PATH or in /usr/sbin) or, failing that,
from Debian's packages: ``apt-get download`` of pgbouncer and the libraries it needs that the
machine may lack (``apt-get update`` first if the package lists are missing), unpacked with
``dpkg -x`` next to the PostgreSQL binaries (scripts/pg.py's cache folder), once, under a file
lock; ``ldd`` then checks that every library is found. PgBouncer refuses to run as root: as
root it runs as the server user of scripts/pg.py, like PostgreSQL.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

from tests.support.server import HOST, free_port, pg_script_module, scratch_dir

# pgbouncer itself, then libraries it links that a slim Debian image may not have (the names
# differ between releases: a name the package lists do not know is skipped).
PACKAGES = ("pgbouncer",)
LIBRARY_PACKAGES = ("libc-ares2", "libevent-2.1-7", "libevent-2.1-7t64")


class PgBouncerError(RuntimeError):
    """PgBouncer could not be installed or started."""


def _apt_download(folder, package):
    def download():
        return subprocess.run(["apt-get", "download", package], cwd=str(folder), capture_output=True, text=True,
                              check=False)
    proc = download()
    if proc.returncode != 0 and os.geteuid() == 0 and not (folder / ".updated").exists():
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, check=False)
        (folder / ".updated").touch()
        proc = download()
    return proc


def _library_path(target):
    return [str(p) for p in sorted(target.glob("usr/lib/*-linux-gnu"))]


def _missing_libraries(exe, env):
    proc = subprocess.run(["ldd", str(exe)], capture_output=True, text=True, env=env, check=False)
    return re.findall(r"^\s*(\S+) => not found", proc.stdout, re.M)


def binary():
    """(command, environment) that run PgBouncer."""
    found = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
    if found:
        return [found], dict(os.environ)
    pg = pg_script_module()
    root = pg.cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / "pgbouncer"
    exe = target / "usr" / "sbin" / "pgbouncer"
    env = dict(os.environ)
    with pg.file_lock(root / ".install-pgbouncer.lock"):
        if not exe.exists():
            shutil.rmtree(str(target), ignore_errors=True)
            downloads = root / "pgbouncer-debs"
            shutil.rmtree(str(downloads), ignore_errors=True)
            downloads.mkdir(parents=True)
            for package in PACKAGES + LIBRARY_PACKAGES:
                proc = _apt_download(downloads, package)
                if proc.returncode != 0 and package in PACKAGES:
                    raise PgBouncerError("cannot download %s with apt-get: %s" % (package, proc.stderr.strip()))
            for deb in sorted(downloads.glob("*.deb")):
                subprocess.run(["dpkg", "-x", str(deb), str(target)], check=True, capture_output=True)
            shutil.rmtree(str(downloads), ignore_errors=True)
            for path in [target, *target.rglob("*")]:  # the server user runs it
                if not path.is_symlink():
                    mode = path.stat().st_mode
                    path.chmod(mode | 0o044 | (0o011 if path.is_dir() or mode & 0o100 else 0))
            if not exe.exists():
                raise PgBouncerError("the pgbouncer package holds no usr/sbin/pgbouncer")
    libs = _library_path(target)
    env["LD_LIBRARY_PATH"] = ":".join(libs + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else []))
    missing = _missing_libraries(exe, env)
    if missing:
        raise PgBouncerError("pgbouncer from Debian's package needs libraries this machine lacks: %s"
                             % ", ".join(missing))
    return [str(exe)], env


class PgBouncer(object):
    """PgBouncer on a free port of 127.0.0.1 for every database of SERVER (``* = host=...``),
    in POOL_MODE, trusting the USERS it is given (the server trusts them too). It retries a
    failed server login every second (PgBouncer's default: 15 s); a client waits at most
    QUERY_WAIT_TIMEOUT seconds (default 120, as PgBouncer's) for a server connection."""

    def __init__(self, server, users, pool_mode="transaction", query_wait_timeout=120):
        self.server, self.users, self.pool_mode = server, list(users), pool_mode
        self.query_wait_timeout = query_wait_timeout
        self.base = self.port = self.proc = None
        self.version = None

    def start(self, timeout=20, attempts=3):
        command, env = binary()
        self.version = (subprocess.run(command + ["--version"], capture_output=True, text=True, env=env,
                                       check=False).stdout.splitlines() or [""])[0]
        for attempt in range(attempts):
            try:
                return self._start(command, env, timeout)
            except PgBouncerError:
                self.stop()
                if attempt == attempts - 1:
                    raise

    def _start(self, command, env, timeout):
        pg = pg_script_module()
        name, uid, gid = pg.server_user()
        self.base = scratch_dir("dataplane-pgbouncer-")
        self.port = free_port()
        (self.base / "users.txt").write_text("".join('"%s" ""\n' % u.replace('"', '""') for u in self.users))
        (self.base / "pgbouncer.ini").write_text("\n".join([
            "[databases]",
            "* = host=%s port=%d" % (self.server.host, self.server.port),
            "[pgbouncer]",
            "listen_addr = %s" % HOST,
            "listen_port = %d" % self.port,
            "unix_socket_dir =",
            "auth_type = trust",
            "auth_file = %s" % (self.base / "users.txt"),
            "pool_mode = %s" % self.pool_mode,
            "server_reset_query = DISCARD ALL",
            "max_client_conn = 100",
            "default_pool_size = 5",
            "server_login_retry = 1",
            "query_wait_timeout = %d" % self.query_wait_timeout,
            "logfile = %s" % (self.base / "pgbouncer.log"),
            ""]))
        for path in [self.base, *self.base.iterdir()]:
            os.chown(str(path), uid, gid)
        if os.geteuid() == 0:
            command = ["runuser", "-u", name, "--"] + command
        # -q: nothing on stderr (the log file has it); its own session, so stop() ends runuser and
        # PgBouncer together.
        self.proc = subprocess.Popen(command + ["-q", str(self.base / "pgbouncer.ini")], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        listening = "listening on %s:%d" % (HOST, self.port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PgBouncerError("pgbouncer exited (%s):\n%s" % (self.proc.returncode, self.log()[-3000:]))
            if listening in self.log():  # PgBouncer, not whatever else took the port
                try:
                    socket.create_connection((HOST, self.port), timeout=0.5).close()
                    return self
                except OSError:
                    pass
            time.sleep(0.05)
        raise PgBouncerError("pgbouncer did not listen on port %d within %ss:\n%s"
                             % (self.port, timeout, self.log()[-3000:]))

    def log(self):
        path = self.base / "pgbouncer.log" if self.base else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.proc = None
        if self.base is not None:
            shutil.rmtree(str(self.base), ignore_errors=True)
            self.base = None
