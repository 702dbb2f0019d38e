"""A real Patroni cluster on loopback for the ``ha`` suite (tests/ha).

Pieces, all fetched once per machine into scripts/pg.py's cache folder (under file locks, so
concurrent runs and checkouts share them):

- etcd: ``etcd`` on PATH, else Debian's ``etcd-server`` package (``apt-get download``, then
  ``dpkg -x`` into ``<cache>/etcd``; no root needed); one member on free 127.0.0.1 ports.
- Patroni: ``patroni[etcd3]==PATRONI_VERSION`` and ``psycopg2-binary`` from PyPI, in a venv
  built with ``/usr/bin/python3`` (``<cache>/patroni-<version>``): as root the members run as
  the server user of scripts/pg.py, which must be able to read that Python (a pyenv Python under
  root's mode-700 home folder is out of its reach).
- PostgreSQL: the binaries of ``scripts/pg.py install --version N``.

``PatroniCluster(version, members=2)`` starts etcd and the members as the server user (``runuser
-u dataplane-pg`` when root), each with its own REST API and PostgreSQL port on 127.0.0.1, trust
authentication on 127.0.0.1, and keeps every log in its scratch folder; errors quote their tails.
``stop()`` ends every process it started (also those a SIGKILL orphaned) and removes the folder.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg2

from tests.support import PG_SCRIPT
from tests.support.processes import process_tree
from tests.support.server import HOST, PgServer, free_port, pg_script_module, scratch_dir

PATRONI_VERSION = "4.1.5"
PATRONI_REQUIREMENTS = ("patroni[etcd3]==%s" % PATRONI_VERSION, "psycopg2-binary")
SYSTEM_PYTHON = "/usr/bin/python3"
ETCD_PACKAGE = "etcd-server"

# Failover timing (bootstrap.dcs): the leader key lives TTL s; a member's loop runs every
# LOOP_WAIT s; DCS and PostgreSQL calls are retried for RETRY_TIMEOUT s. Patroni wants
# ttl >= loop_wait + 2 * retry_timeout. A replica more than MAX_LAG bytes behind is not promoted.
TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 2, 4
MAX_LAG = 1024 * 1024


class PatroniError(RuntimeError):
    """Patroni, etcd or the cluster did not do what was asked in time."""


# ------------------------------------------------------------------ installation

def _make_readable(root):
    """The server user runs what lies under ROOT: everything readable, directories traversable."""
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            mode = path.stat().st_mode
            path.chmod(mode | 0o044 | (0o011 if path.is_dir() or mode & 0o100 else 0))


def etcd_binary():
    """The path of an ``etcd`` 3.x binary: on PATH, else unpacked from Debian's package."""
    found = shutil.which("etcd")
    if found:
        return found
    pg = pg_script_module()
    root = pg.cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / "etcd"
    exe = target / "usr" / "bin" / "etcd"
    with pg.file_lock(root / ".install-etcd.lock"):
        if exe.exists():
            return str(exe)
        shutil.rmtree(str(target), ignore_errors=True)
        downloads = root / "etcd-debs"
        shutil.rmtree(str(downloads), ignore_errors=True)
        downloads.mkdir(parents=True)
        proc = subprocess.run(["apt-get", "download", ETCD_PACKAGE], cwd=str(downloads), capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0 and os.geteuid() == 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, check=False)
            proc = subprocess.run(["apt-get", "download", ETCD_PACKAGE], cwd=str(downloads), capture_output=True,
                                  text=True, check=False)
        if proc.returncode != 0:
            raise PatroniError("etcd is not on PATH and `apt-get download %s` failed (Debian or Ubuntu "
                               "package lists needed; as a normal user run `sudo apt-get update` first): %s"
                               % (ETCD_PACKAGE, proc.stderr.strip()))
        for deb in sorted(downloads.glob("*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(target)], check=True, capture_output=True)
        shutil.rmtree(str(downloads), ignore_errors=True)
        if not exe.exists():
            shutil.rmtree(str(target), ignore_errors=True)
            raise PatroniError("Debian's %s package holds no usr/bin/etcd" % ETCD_PACKAGE)
        _make_readable(target)
        return str(exe)


def patroni_venv():
    """The bin folder of a venv with Patroni (built once per machine, under a file lock)."""
    pg = pg_script_module()
    root = pg.cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / ("patroni-%s" % PATRONI_VERSION)
    marker = target / ".complete"
    with pg.file_lock(root / (".install-patroni-%s.lock" % PATRONI_VERSION)):
        if marker.exists():
            return target / "bin"
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            raise PatroniError("%s is missing: Patroni runs as the server user from a venv built on the system "
                               "Python (install python3 and python3-venv)" % SYSTEM_PYTHON)
        probe = subprocess.run([SYSTEM_PYTHON, "-c", "import venv, ensurepip"], capture_output=True, text=True,
                               check=False)
        if probe.returncode != 0:
            raise PatroniError("%s cannot build a venv (%s): install Debian's python3-venv package "
                               "(apt-get install python3-venv)" % (SYSTEM_PYTHON, probe.stderr.strip()
                                                                   .splitlines()[-1:]))
        shutil.rmtree(str(target), ignore_errors=True)
        steps = ([SYSTEM_PYTHON, "-m", "venv", str(target)],
                 [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                  *PATRONI_REQUIREMENTS])
        for step in steps:
            proc = subprocess.run(step, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                shutil.rmtree(str(target), ignore_errors=True)
                raise PatroniError("building the Patroni venv failed at `%s`:\n%s"
                                   % (" ".join(step), (proc.stdout + proc.stderr).strip()[-3000:]))
        _make_readable(target)
        marker.touch()
        return target / "bin"


# ------------------------------------------------------------------ processes

def processes_under(folder):
    """Pids of the processes whose working folder or command line lies under FOLDER (PostgreSQL's
    processes all work in their data folder, also the backends a killed postmaster left)."""
    folder = str(folder)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink("/proc/%s/cwd" % entry)
        except OSError:
            cwd = ""
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                cmdline = handle.read().decode(errors="replace")
        except OSError:
            cmdline = ""
        if cwd == folder or cwd.startswith(folder + "/") or folder + "/" in cmdline:
            found.append(int(entry))
    return found


def _kill(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _remove_shared_memory_of(postmasters):
    """Remove the System V shared memory segments that killed POSTMASTERS created and nobody
    uses any more (a postmaster removes its own only when it shuts down)."""
    if not postmasters:
        return
    try:
        rows = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except OSError:
        return
    for row in rows:
        fields = row.split()  # key shmid perms size cpid lpid nattch ...
        if len(fields) > 6 and int(fields[4]) in postmasters and fields[6] == "0":
            subprocess.run(["ipcrm", "-m", fields[1]], capture_output=True, check=False)


def listening_sockets(pids):
    """(address, port) of every TCP socket in LISTEN state held by one of PIDS."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                except OSError:
                    continue
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    out = []
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A = LISTEN
                continue
            addr_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(addr_hex)
            if width == 4:
                address = ".".join(str(b) for b in reversed(raw))
            else:
                words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
                address = ":".join(b"".join(words)[i:i + 2].hex() for i in range(0, 16, 2))
            out.append((address, int(port_hex, 16)))
    return sorted(set(out))


def _tail(path, chars=2500):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no %s)" % path
    return "---- %s (last %d chars)\n%s" % (path, chars, text[-chars:])


def _http_json(port, path, timeout=2):
    with urllib.request.urlopen("http://%s:%d%s" % (HOST, port, path), timeout=timeout) as resp:
        return json.loads(resp.read().decode())


class _Spawned(object):
    """A process started as the server user in its own session, output into LOG."""

    def __init__(self, command, log, cwd, env=None):
        pg = pg_script_module()
        name = pg.server_user()[0]
        if os.geteuid() == 0:
            command = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", name, "--"] + list(command)
        self.log = log
        with open(str(log), "ab") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=str(cwd), env=env, start_new_session=True)

    def pids(self):
        return process_tree(self.proc.pid) if self.proc.poll() is None else []

    def running(self):
        return self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        """SIGNAL to the process and all its descendants (runuser, then the program)."""
        _kill(self.pids(), sig)

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            _kill(self.pids(), signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


# ------------------------------------------------------------------ members

class Member(PgServer):
    """One Patroni member: a PgServer (``host``, ``port``, ``sql``, ``connect``, ``dsn``,
    ``login_args``, ``can_login``, ``pids_of``, ``replayed``) for its PostgreSQL, plus its REST
    API port, folder and processes. Start and stop go through the cluster, never pg.py."""

    def __init__(self, cluster, name, base, port, api_port):
        super().__init__(cluster.version, base, port=port)
        self.cluster = cluster
        self.name = name
        self.api_port = api_port
        self.data_dir = base / "data"
        self.socket_dir = base / "socket"
        self.log_dir = base / "pglog"
        self.config = base / "patroni.yml"
        self.patroni_log = base / "patroni.log"
        self.process = None
        self.info = {"host": HOST, "port": port, "user": "postgres", "data_dir": str(self.data_dir),
                     "bin_dir": str(cluster.bin_dir), "socket_dir": str(self.socket_dir)}

    def start(self, attempts=1):  # pylint: disable=unused-argument
        raise PatroniError("a Patroni member is started by its PatroniCluster")

    def stop(self, check=False, mode="fast"):  # pylint: disable=unused-argument
        raise PatroniError("a Patroni member is stopped by its PatroniCluster")

    def postmaster_pid(self):
        """The pid in postmaster.pid, or None (no file, or that process is gone)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def api(self, path="/patroni", timeout=2):
        return _http_json(self.api_port, path, timeout)

    def in_recovery(self):
        return self.sql("SELECT pg_catalog.pg_is_in_recovery()")[0][0]

    def logs(self, chars=2500):
        parts = [_tail(self.patroni_log, chars)]
        parts += [_tail(p, chars) for p in sorted(self.log_dir.glob("*.log"))]
        return "\n".join(parts)

    def __repr__(self):
        return "<Patroni member %s on %s:%s>" % (self.name, HOST, self.port)


class PatroniCluster(object):
    """etcd plus MEMBERS Patroni members of PostgreSQL VERSION on 127.0.0.1 (see the module's
    docstring). Use as a context manager, or call ``start()`` and, always, ``stop()``."""

    def __init__(self, version, members=2, parameters=None):
        self.version = version
        self.count = members
        self.parameters = dict(parameters or {})
        self.base = None
        self.members = []
        self.etcd = None
        self.etcd_port = None
        self.etcd_data = None  # etcd's data folder when it is on /dev/shm, else None
        self.bin_dir = None
        self.scope = None
        self.started_at = None
        self.killed = []
        self.killed_postmasters = []

    # -------------------------------------------------------------- life cycle

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def start(self, timeout=120, attempts=2):
        """Start etcd and every member, wait for a leader and for every replica to stream. A
        failure (a port taken meanwhile, a slow bootstrap) is retried once from scratch."""
        for attempt in range(attempts):
            try:
                self._start(timeout)
                return self
            except PatroniError as exc:
                report = str(exc)
                self.stop()
                if attempt == attempts - 1:
                    raise PatroniError(report)
            except BaseException:
                self.stop()
                raise
        return self

    def _start(self, timeout):
        pg = pg_script_module()
        proc = subprocess.run([sys.executable, str(PG_SCRIPT), "install",
                               "--version", str(self.version)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PatroniError("scripts/pg.py install --version %s failed: %s" % (self.version, proc.stderr))
        self.bin_dir = Path(json.loads(proc.stdout.strip().splitlines()[-1])["bin_dir"])
        etcd = etcd_binary()
        venv = patroni_venv()
        dummy, uid, gid = pg.server_user()
        self.started_at = time.monotonic()
        self.base = scratch_dir("dataplane-patroni-")
        self.scope = "dataplane-ha-%s" % self.base.name.rsplit("-", 1)[-1]
        os.chown(str(self.base), uid, gid)
        self._start_etcd(etcd, uid, gid)
        for index in range(self.count):
            member = Member(self, "member%d" % index, self.base / ("member%d" % index), free_port(), free_port())
            for path in (member.base, member.socket_dir, member.log_dir):
                path.mkdir(mode=0o755)
                os.chown(str(path), uid, gid)
            member.config.write_text(json.dumps(self._config(member), indent=1) + "\n")
            os.chown(str(member.config), uid, gid)
            self.members.append(member)
        for member in self.members:  # the first one bootstraps; the others clone it
            member.process = _Spawned([str(venv / "patroni"), str(member.config)], member.patroni_log, member.base,
                                      env=self._env())
            if member is self.members[0]:
                self.wait_for_leader(timeout)
        self.wait_replicas_streaming(timeout)
        listeners = [a for a in self.listeners() if a[0] != HOST]
        if listeners:
            raise PatroniError("something listens beyond 127.0.0.1: %s" % listeners)

    def _env(self):
        """Patroni's environment, which its PostgreSQL inherits. The WAL receiver
        (libpqwalreceiver.so) has no RUNPATH and would load the system's libpq, older than the
        options Patroni writes into primary_conninfo for a newer server (PostgreSQL 18 gets
        ``sslnegotiation``, which libpq 15 refuses): the cached binaries' own libpq goes first."""
        return {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "HOME": str(self.base),
                "LD_LIBRARY_PATH": str(self.bin_dir.parent / "lib")}

    def _start_etcd(self, etcd, uid, gid):
        client, peer = free_port(), free_port()
        folder = self.base / "etcd"
        folder.mkdir(mode=0o700)
        os.chown(str(folder), uid, gid)
        # etcd fsyncs every write (3.4 has no switch for it): on a busy disk a slow fsync would
        # stall Patroni's leader-key updates past retry_timeout and demote a healthy leader.
        # A tmpfs, when there is one, takes that out of the test.
        data = folder / "data"
        if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK):
            self.etcd_data = Path(tempfile.mkdtemp(prefix="dataplane-etcd-", dir="/dev/shm"))
            os.chown(str(self.etcd_data), uid, gid)
            data = self.etcd_data / "data"
        self.etcd_port = client
        command = [etcd, "--name", "etcd0", "--data-dir", str(data),
                   "--listen-client-urls", "http://%s:%d" % (HOST, client),
                   "--advertise-client-urls", "http://%s:%d" % (HOST, client),
                   "--listen-peer-urls", "http://%s:%d" % (HOST, peer),
                   "--initial-advertise-peer-urls", "http://%s:%d" % (HOST, peer),
                   "--initial-cluster", "etcd0=http://%s:%d" % (HOST, peer),
                   "--initial-cluster-state", "new", "--initial-cluster-token", self.scope,
                   "--enable-v2=false", "--logger", "zap", "--log-outputs", "stderr"]
        env = {"PATH": "/usr/bin:/bin"}
        if os.uname().machine not in ("x86_64", "aarch64"):  # etcd 3.4 refuses other platforms unless told
            env["ETCD_UNSUPPORTED_ARCH"] = os.uname().machine
        self.etcd = _Spawned(command, self.base / "etcd.log", folder, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not self.etcd.running():
                raise PatroniError("etcd exited (%s)\n%s" % (self.etcd.proc.returncode, self.logs()))
            try:
                if _http_json(client, "/health").get("health") == "true":
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise PatroniError("etcd did not become healthy on port %d within 30 s\n%s" % (client, self.logs()))

    def _config(self, member):
        hba = ["local all all trust", "host all all %s/32 trust" % HOST, "host replication all %s/32 trust" % HOST]
        parameters = {"max_connections": 200, "fsync": "off", "full_page_writes": "off",
                      "wal_keep_size": "128MB", "max_wal_senders": 10, "max_replication_slots": 10,
                      "hot_standby": "on", "wal_sender_timeout": "10s", "wal_receiver_timeout": "10s",
                      # dynamic shared memory as files in the data folder, not /dev/shm: a killed
                      # postmaster's segments then go with the scratch folder
                      "dynamic_shared_memory_type": "mmap"}
        parameters.update(self.parameters)
        return {
            "scope": self.scope,
            "namespace": "/dataplane-tests/",
            "name": member.name,
            "restapi": {"listen": "%s:%d" % (HOST, member.api_port),
                        "connect_address": "%s:%d" % (HOST, member.api_port)},
            "etcd3": {"hosts": ["%s:%d" % (HOST, self.etcd_port)], "protocol": "http"},
            "bootstrap": {
                "dcs": {"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT,
                        "maximum_lag_on_failover": MAX_LAG,
                        "postgresql": {"use_pg_rewind": False, "use_slots": True, "parameters": parameters}},
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "no-sync"],
            },
            "postgresql": {
                "listen": "%s:%d" % (HOST, member.port),
                "connect_address": "%s:%d" % (HOST, member.port),
                "data_dir": str(member.data_dir),
                "bin_dir": str(self.bin_dir),
                "pgpass": str(member.base / "pgpass"),
                "authentication": {"superuser": {"username": "postgres"},
                                   "replication": {"username": "postgres"}},
                "pg_hba": hba,
                "parameters": {"unix_socket_directories": str(member.socket_dir),
                               "logging_collector": "on", "log_directory": str(member.log_dir),
                               "log_filename": "postgresql.log", "log_file_mode": "0644"},
                "basebackup": [{"checkpoint": "fast"}],
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }

    def stop(self):
        """Stop everything (Patroni stops its PostgreSQL), then kill whatever is left under the
        scratch folder, and remove it. Safe to call twice and after a failed start."""
        problems = []
        started = self.all_pids() if self.base is not None else []
        for member in self.members:
            if member.process is not None:
                member.process.stop(timeout=20)
        if self.etcd is not None:
            self.etcd.stop(timeout=10)
        if self.base is not None:
            for _round in range(20):
                left = [p for p in processes_under(self.base) if _alive(p)]
                if not left:
                    break
                _kill(left, signal.SIGKILL)
                time.sleep(0.25)
            else:
                problems.append("processes still running under %s: %s" % (self.base, left))
            # runuser gives up on a slow child and exits: that orphan is reaped by init, wait for it
            deadline = time.monotonic() + 10
            while any(os.path.exists("/proc/%d" % p) for p in started) and time.monotonic() < deadline:
                time.sleep(0.1)
            shutil.rmtree(str(self.base), ignore_errors=True)
        if self.etcd_data is not None:
            shutil.rmtree(str(self.etcd_data), ignore_errors=True)
        _remove_shared_memory_of(self.killed_postmasters)
        self.killed_postmasters = []
        self.members, self.etcd, self.base, self.etcd_data = [], None, None, None
        if problems:
            raise PatroniError("; ".join(problems))

    # -------------------------------------------------------------- state

    def all_pids(self):
        pids = set(self.etcd.pids() if self.etcd else [])
        for member in self.members:
            if member.process is not None:
                pids.update(member.process.pids())
        if self.base is not None:
            pids.update(processes_under(self.base))
        return sorted(p for p in pids if _alive(p))

    def listeners(self):
        """(address, port) of every TCP listening socket of the cluster's processes."""
        return listening_sockets(self.all_pids())

    def logs(self, chars=2500):
        if self.base is None:
            return "(no cluster folder)"
        parts = [_tail(self.base / "etcd.log", chars)]
        for member in self.members:
            parts.append(member.logs(chars))
        return "\n".join(parts)

    def member(self, name):
        for member in self.members:
            if member.name == name:
                return member
        raise KeyError(name)

    def topology(self, exclude=()):
        """Patroni's /cluster answer from the first member that answers (not in EXCLUDE):
        ``{name: {"role", "state", "lag", "timeline", ...}}``; {} when none answers."""
        for member in self.members:
            if member.name in exclude or member.name in self.killed:
                continue
            try:
                return {m["name"]: m for m in member.api("/cluster")["members"]}
            except (OSError, ValueError, KeyError):
                continue
        return {}

    def leader(self):
        """(name, port) of the current leader as Patroni says it, or None."""
        for name, info in self.topology().items():
            if info.get("role") == "leader" and info.get("state") == "running":
                return name, self.member(name).port
        return None

    def leader_member(self):
        found = self.leader()
        return self.member(found[0]) if found else None

    def replicas(self):
        """The members Patroni lists as replicas (any state)."""
        return [self.member(name) for name, info in sorted(self.topology().items())
                if info.get("role") in ("replica", "sync_standby", "quorum_standby")]

    def _wait(self, what, check, timeout):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            for member in self.members:
                if member.name not in self.killed and member.process is not None and not member.process.running():
                    raise PatroniError("Patroni of %s exited (%s) while waiting for %s\n%s"
                                       % (member.name, member.process.proc.returncode, what, self.logs()))
            try:
                result = check()
            except (OSError, ValueError, psycopg2.Error) as exc:
                result, last = None, exc
            if result:
                return result
            time.sleep(0.25)
        raise PatroniError("%s: not within %s s (last error: %s; topology: %s)\n%s"
                           % (what, timeout, last, json.dumps(self.topology()), self.logs()))

    def wait_for_leader(self, timeout=90):
        """Wait until Patroni has a running leader that accepts writes; return its Member."""
        def check():
            member = self.leader_member()
            if member is not None and not member.in_recovery():
                return member
            return None
        return self._wait("a leader that accepts writes", check, timeout)

    def wait_replicas_streaming(self, timeout=90):
        """Wait until every live member but the leader is a replica streaming from it."""
        def check():
            topo = self.topology()
            live = [m.name for m in self.members if m.name not in self.killed]
            leaders = [n for n, i in topo.items() if i.get("role") == "leader" and i.get("state") == "running"]
            if len(leaders) != 1 or sorted(topo) != sorted(live):
                return None
            replicas = [n for n in live if n != leaders[0]]
            if all(topo[n].get("state") == "streaming" for n in replicas):
                return [self.member(n) for n in replicas]
            return None
        return self._wait("every replica streaming", check, timeout)

    def kill_leader(self):
        """SIGKILL the leader's Patroni and its postmaster, as a crashed machine would leave
        them (the backends notice their postmaster's death and exit). Returns the old leader."""
        member = self.leader_member()
        if member is None:
            raise PatroniError("no leader to kill (topology: %s)" % json.dumps(self.topology()))
        postmaster = member.postmaster_pid()
        member.process.kill(signal.SIGKILL)
        if postmaster is not None:
            _kill([postmaster], signal.SIGKILL)
        self.killed.append(member.name)
        if postmaster is not None:
            self.killed_postmasters.append(postmaster)
        return member

    def wait_new_leader(self, old, timeout=90):
        """Wait until a member other than OLD (a Member or a name) leads and accepts writes."""
        old_name = getattr(old, "name", old)

        def check():
            member = self.leader_member()
            if member is not None and member.name != old_name and not member.in_recovery():
                return member
            return None
        return self._wait("a new leader instead of %s" % old_name, check, timeout)

    def wait_replayed(self, leader, replica, timeout=30):
        """Wait until REPLICA has replayed LEADER's current WAL position; return that LSN."""
        lsn = leader.sql("SELECT pg_catalog.pg_current_wal_lsn()::text")[0][0]
        if not replica.replayed(lsn, timeout):
            raise PatroniError("%s did not replay %s within %s s (it is at %s)\n%s"
                               % (replica.name, lsn, timeout,
                                  replica.sql("SELECT pg_catalog.pg_last_wal_replay_lsn()::text")[0][0], self.logs()))
        return lsn
