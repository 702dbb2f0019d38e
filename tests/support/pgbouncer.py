"""A real PgBouncer in front of a test server (tests/integration/test_pgbouncer.py).

The binary comes from the machine (``pgbouncer`` on PATH) or, failing that, from Debian's
package: ``apt-get download pgbouncer libc-ares2`` (``apt-get update`` first if the package
lists are missing) unpacked with ``dpkg -x`` next to the PostgreSQL binaries (scripts/pg.py's
cache folder), once, under a file lock. PgBouncer refuses to run as root: as root it runs as
the server user of scripts/pg.py, like PostgreSQL.
"""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.support.server import HOST, free_port, pg_script_module, scratch_dir

PACKAGES = ("pgbouncer", "libc-ares2")


class PgBouncerError(RuntimeError):
    """PgBouncer could not be installed or started."""


def _apt_download(folder):
    def download():
        return subprocess.run(["apt-get", "download"] + list(PACKAGES), cwd=str(folder), capture_output=True,
                              text=True, check=False)
    proc = download()
    if proc.returncode != 0 and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, check=False)
        proc = download()
    if proc.returncode != 0:
        raise PgBouncerError("cannot download %s with apt-get: %s" % (" ".join(PACKAGES), proc.stderr.strip()))


def binary():
    """(command, environment) that run PgBouncer."""
    found = shutil.which("pgbouncer") or (Path("/usr/sbin/pgbouncer") if Path("/usr/sbin/pgbouncer").exists() else None)
    if found:
        return [str(found)], dict(os.environ)
    pg = pg_script_module()
    root = pg.cache_root()
    target = root / "pgbouncer"
    exe = target / "usr" / "sbin" / "pgbouncer"
    with pg.file_lock(root / ".install-pgbouncer.lock"):
        if not exe.exists():
            shutil.rmtree(str(target), ignore_errors=True)
            downloads = target.with_name("pgbouncer-debs")
            shutil.rmtree(str(downloads), ignore_errors=True)
            downloads.mkdir(parents=True)
            _apt_download(downloads)
            for deb in sorted(downloads.glob("*.deb")):
                subprocess.run(["dpkg", "-x", str(deb), str(target)], check=True, capture_output=True)
            shutil.rmtree(str(downloads), ignore_errors=True)
            for path in [target, *target.rglob("*")]:  # the server user runs it
                if not path.is_symlink():
                    mode = path.stat().st_mode
                    path.chmod(mode | 0o044 | (0o011 if path.is_dir() or mode & 0o100 else 0))
            if not exe.exists():
                raise PgBouncerError("the pgbouncer package holds no usr/sbin/pgbouncer")
    env = dict(os.environ)
    libs = [str(p) for p in sorted(target.glob("usr/lib/*-linux-gnu"))]
    env["LD_LIBRARY_PATH"] = ":".join(libs + [env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else libs)
    return [str(exe)], env


class PgBouncer(object):
    """PgBouncer on a free port of 127.0.0.1 for every database of SERVER (``* = host=...``),
    in POOL_MODE, trusting the USERS it is given (the server trusts them too). It retries a
    failed server login every second; a client waits at most QUERY_WAIT_TIMEOUT seconds
    (PgBouncer's default: 120) for a server connection."""

    def __init__(self, server, users, pool_mode="transaction", query_wait_timeout=120):
        self.server, self.users, self.pool_mode = server, list(users), pool_mode
        self.query_wait_timeout = query_wait_timeout
        self.base = scratch_dir("dataplane-pgbouncer-")
        self.port = None
        self.proc = None

    def start(self, timeout=20):
        command, env = binary()
        pg = pg_script_module()
        name, uid, gid = pg.server_user()
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
            "admin_users = postgres",
            ""]))
        for path in self.base.iterdir():
            os.chown(str(path), uid, gid)
        os.chown(str(self.base), uid, gid)
        if os.geteuid() == 0:
            command = ["runuser", "-u", name, "--"] + command
        self.proc = subprocess.Popen(command + [str(self.base / "pgbouncer.ini")], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PgBouncerError("pgbouncer exited (%s): %s\n%s" % (self.proc.returncode, self.proc.stderr.read(),
                                                                         self.log()))
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise PgBouncerError("pgbouncer did not listen on port %d within %ss:\n%s" % (self.port, timeout, self.log()))

    def log(self):
        path = self.base / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(str(self.base), ignore_errors=True)
