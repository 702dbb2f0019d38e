"""Throw-away PostgreSQL servers through scripts/pg.py, and connections to them.

One implementation for the pytest harness (tests/conftest.py), dedicated servers inside tests,
scripts/demo.py and the benchmarks.
"""

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

from tests.support import PG_SCRIPT

HOST = "127.0.0.1"


class ServerError(RuntimeError):
    """scripts/pg.py could not start (or stop) a server."""


def free_port():
    """A TCP port on 127.0.0.1 that is free right now (it may be taken before it is bound:
    ``PgServer.start`` retries with another one)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def scratch_dir(prefix="dataplane-pg-"):
    """A new folder under /tmp, mode 755: as root the server runs as another user, which must
    be able to enter it (pytest's tmp_path and root's home folder are out of its reach)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def pg_script_module():
    """scripts/pg.py as a module (for ``run_as_server_user`` and friends)."""
    spec = importlib.util.spec_from_file_location("dataplane_pg_script", str(PG_SCRIPT))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def connect(port, user="postgres", dbname="postgres", host=HOST, autocommit=False, **extra):
    """A psycopg2 connection to a server on 127.0.0.1 (trust authentication unless a
    ``password`` is passed)."""
    conn = psycopg2.connect(host=host, port=port, user=user, dbname=dbname, **extra)
    if autocommit:  # (an asynchronous connection is always in autocommit and refuses the setter)
        conn.autocommit = True
    return conn


class PgServer(object):
    """A PostgreSQL VERSION in the folder BASE (created by scripts/pg.py; must be empty).

    ``settings`` are NAME=VALUE strings for ``--set``; ``auth``/``password_file`` as pg.py takes
    them. ``start()`` picks a free port (or uses ``port``) and retries up to ``attempts`` times.
    """

    def __init__(self, version, base, settings=(), auth="trust", password_file=None, port=None, host=HOST,
                 standby_of=None, slot=None):
        self.standby_of = standby_of  # a PgServer: start a streaming hot standby of it
        self.slot = slot
        self.version = version
        self.host = host
        self.base = Path(base)
        self.settings = list(settings)
        self.auth = auth
        self.password_file = password_file
        self.port = port
        self.info = None
        self.password = None

    def start(self, attempts=3):
        fixed = self.port
        last = None
        for _attempt in range(attempts):
            self.port = fixed if fixed is not None else free_port()
            cmd = [sys.executable, str(PG_SCRIPT), "start", "--version", str(self.version), "--dir", str(self.base),
                   "--port", str(self.port)]
            for setting in self.settings:
                cmd += ["--set", setting]
            if self.auth != "trust":
                cmd += ["--auth", self.auth, "--password-file", str(self.password_file)]
            if self.standby_of is not None:
                cmd += ["--standby-of", str(self.standby_of.base)] + (["--slot", self.slot] if self.slot else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode == 0:
                self.info = json.loads(proc.stdout.strip().splitlines()[-1])
                return self
            last = proc.stderr.strip()
            shutil.rmtree(str(self.base), ignore_errors=True)
        raise ServerError("could not start PostgreSQL %s: %s" % (self.version, last))

    def stop(self, check=False, mode="fast"):
        """Stop the server (MODE as pg.py takes it: fast, or immediate as a crash would); with
        ``check``, raise when pg.py fails."""
        if self.info is None:
            return True
        proc = subprocess.run([sys.executable, str(PG_SCRIPT), "stop", "--dir", str(self.base), "--mode", mode],
                              capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise ServerError("scripts/pg.py stop failed: %s" % proc.stderr)
        return proc.returncode == 0

    def promote(self):
        """Promote this standby (scripts/pg.py promote): it accepts writes when this returns."""
        proc = subprocess.run([sys.executable, str(PG_SCRIPT), "promote", "--dir", str(self.base)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ServerError("scripts/pg.py promote failed: %s" % proc.stderr)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def replayed(self, lsn, timeout=30):
        """Wait until this standby has replayed LSN (text); True when it has within TIMEOUT s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sql("SELECT pg_catalog.pg_last_wal_replay_lsn() >= %s::pg_catalog.pg_lsn", (lsn,))[0][0]:
                return True
            time.sleep(0.02)
        return False

    @property
    def major(self):
        return self.version

    def dsn(self, user="postgres", dbname="postgres", password=None):
        params = dict(host=self.host, port=self.port, user=user, dbname=dbname)
        if password:
            params["password"] = password
        return params

    def connect(self, user="postgres", dbname="postgres", autocommit=True, **extra):
        return connect(self.port, user, dbname, host=self.host, autocommit=autocommit, **extra)

    def sql(self, statement, params=None, user="postgres", dbname="postgres"):
        """Run one statement (or a script) in autocommit; return its rows, or None."""
        conn = self.connect(user, dbname)
        try:
            cur = conn.cursor()
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def pids_of(self, role):
        """The backend pids of ROLE's sessions, sorted."""
        return sorted(r[0] for r in self.sql("SELECT pid FROM pg_stat_activity WHERE usename = %s", (role,)))

    def version_num(self):
        return self.sql("SELECT current_setting('server_version_num')::int")[0][0]

    def login_args(self, user="postgres", dbname="postgres"):
        """Connection options for this collection's modules."""
        return dict(login_host=self.host, login_port=self.port, login_user=user, login_db=dbname)

    def can_login(self, user, dbname):
        """(True, "admitted") or (False, the first line of the server's refusal)."""
        try:
            self.connect(user, dbname, connect_timeout=5).close()
            return True, "admitted"
        except psycopg2.OperationalError as exc:
            text = str(exc).strip().splitlines()[0]
            return False, text[text.find("FATAL:"):] if "FATAL:" in text else text

    def pg_ctl(self, *args):
        """Run this server's pg_ctl (as the server user) on its data folder; raise on failure."""
        proc = pg_script_module().run_as_server_user(
            [str(Path(self.info["bin_dir"]) / "pg_ctl"), "--pgdata", self.info["data_dir"]] + list(args))
        if proc.returncode != 0:
            raise ServerError("pg_ctl %s failed: %s%s" % (" ".join(args), proc.stdout, proc.stderr))
        return proc

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.sql("SELECT 1")
                return
            except psycopg2.OperationalError:
                time.sleep(0.1)
        raise ServerError("PostgreSQL %s did not come back within %s s" % (self.version, timeout))


@contextlib.contextmanager
def scratch_server(version, settings=(), prefix="dataplane-pg-", **kwargs):
    """Start VERSION in a new /tmp folder (``work / "pg"``); yield ``(server, work)``. The rest of
    ``work`` is free for the caller. On exit the server is stopped and the folder removed."""
    work = scratch_dir(prefix)
    try:
        server = PgServer(version, work / "pg", settings, **kwargs).start()
        try:
            yield server, work
        finally:
            server.stop()
    finally:
        shutil.rmtree(str(work), ignore_errors=True)


def remove(path):
    """Remove a scratch folder (a server in it must be stopped first)."""
    if os.path.exists(str(path)):
        shutil.rmtree(str(path), ignore_errors=True)


def main(argv=None):
    """``python -m tests.support.server start --version N --dir DIR [--set NAME=VALUE]...``: start
    a server on a free port (retried on another port if that one is taken meanwhile) and print
    pg.py's JSON line; for Molecule's create playbooks. Stop it with ``scripts/pg.py stop``."""
    import argparse
    parser = argparse.ArgumentParser(description="Start a throw-away PostgreSQL on a free port.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start")
    p_start.add_argument("--version", type=int, required=True)
    p_start.add_argument("--dir", required=True)
    p_start.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    try:
        server = PgServer(args.version, args.dir, args.set).start()
    except ServerError as exc:
        print("tests.support.server: %s" % exc, file=sys.stderr)
        return 2
    print(json.dumps(server.info), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
