# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers shared by the benchmark scripts in this folder (not a test, not part of the collection API).

The scripts run as ``.venv/bin/python benchmarks/X.py``, so this folder is first on ``sys.path``
and ``import benchlib`` works. What lives here:

- ``make_work_dir`` / ``free_port``: a scratch directory under /tmp and a free TCP port;
- ``start_postgresql`` / ``stop_postgresql`` / ``scratch_postgresql``: a throw-away server
  through scripts/pg.py;
- ``connect``: a psycopg2 connection to such a server;
- ``run_module``: run plugins/modules/NAME.py as Ansible does (ANSIBLE_MODULE_ARGS in a JSON
  file, a fresh Python process) and time it;
- ``run_playbook``: run the venv's ansible-playbook with the venv's python as interpreter and time it.
"""

import contextlib
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

REPO = Path(__file__).resolve().parents[1]
PG_SCRIPT = REPO / "scripts" / "pg.py"
MODULES_DIR = REPO / "plugins" / "modules"
PYTHON = sys.executable
VENV_BIN = Path(PYTHON).parent


def free_port():
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_work_dir(prefix="dataplane-bench-"):
    """Create a scratch directory under /tmp (where scripts/pg.py wants servers), mode 0755."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def start_postgresql(version, data_dir, port=None, settings=(), attempts=1):
    """Start PostgreSQL VERSION in the empty directory DATA_DIR with scripts/pg.py.

    ``settings`` are ``NAME=VALUE`` strings passed as ``--set``. Without ``port`` a free port
    is picked for each attempt; after a failed attempt DATA_DIR is removed and the start
    retried, up to ``attempts`` times. Returns pg.py's JSON line (host, port, user, version,
    bin_dir, ...); exits with a message when the server cannot be started.
    """
    proc = None
    for _attempt in range(attempts):
        cmd = [PYTHON, str(PG_SCRIPT), "start", "--version", str(version), "--dir", str(data_dir),
               "--port", str(port if port is not None else free_port())]
        for setting in settings:
            cmd += ["--set", setting]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        shutil.rmtree(str(data_dir), ignore_errors=True)
    raise SystemExit("could not start PostgreSQL %s: %s" % (version, proc.stderr if proc else "no attempt"))


def stop_postgresql(data_dir, check=False):
    """Stop the server scripts/pg.py started in DATA_DIR; with ``check``, exit if that fails."""
    proc = subprocess.run([PYTHON, str(PG_SCRIPT), "stop", "--dir", str(data_dir)], capture_output=True, text=True,
                          check=False)
    if check and proc.returncode != 0:
        raise SystemExit("scripts/pg.py stop failed: %s" % proc.stderr)
    return proc.returncode == 0


@contextlib.contextmanager
def scratch_postgresql(version, settings=(), prefix="dataplane-bench-"):
    """Start a server in a new /tmp scratch directory; yield ``(info, work_dir)``.

    The server's files are in ``work_dir / "pg"``; the rest of ``work_dir`` is free for the
    caller. On exit the server is stopped and the whole directory removed.
    """
    work_dir = make_work_dir(prefix)
    try:
        info = start_postgresql(version, work_dir / "pg", port=free_port(), settings=settings)
        try:
            yield info, work_dir
        finally:
            stop_postgresql(work_dir / "pg")
    finally:
        shutil.rmtree(str(work_dir), ignore_errors=True)


def connect(port, user="postgres", dbname="postgres", **kwargs):
    """Connect with psycopg2 to a benchmark server on 127.0.0.1 (trust authentication)."""
    return psycopg2.connect(host="127.0.0.1", port=port, user=user, dbname=dbname, **kwargs)


def run_module(name, args, check_mode=False, allow_failure=False):
    """Run plugins/modules/NAME.py as Ansible does; return ``(wall_seconds, result)``.

    The arguments go in a JSON file as ``{"ANSIBLE_MODULE_ARGS": ...}`` (with
    ``_ansible_check_mode`` when ``check_mode``), read by a fresh Python process. The time is
    that process's wall time. Exits when the module prints no JSON, or reports ``failed``
    unless ``allow_failure``.
    """
    payload = dict(args, _ansible_check_mode=True) if check_mode else dict(args)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": payload}, handle)
    try:
        started = time.perf_counter()
        proc = subprocess.run([PYTHON, str(MODULES_DIR / (name + ".py")), handle.name], capture_output=True,
                              text=True, check=False)
        elapsed = time.perf_counter() - started
    finally:
        os.unlink(handle.name)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise SystemExit("module %s printed no JSON:\n%s\n%s" % (name, proc.stdout, proc.stderr))
    if result.get("failed") and not allow_failure:
        raise SystemExit("module %s failed: %s" % (name, result.get("msg")))
    return elapsed, result


def run_playbook(args, cwd=REPO, env=None):
    """Run the venv's ``ansible-playbook ARGS`` and return ``(wall_seconds, stdout)``.

    The environment adds LC_ALL=C.UTF-8, ANSIBLE_NOCOLOR=1 and ANSIBLE_PYTHON_INTERPRETER = this
    (the venv's) python, then ``env``. Exits with the end of the output when the play fails.
    """
    full_env = dict(os.environ, LC_ALL="C.UTF-8", ANSIBLE_NOCOLOR="1", ANSIBLE_PYTHON_INTERPRETER=PYTHON)
    full_env.update(env or {})
    started = time.perf_counter()
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook")] + [str(arg) for arg in args], capture_output=True,
                          text=True, env=full_env, cwd=str(cwd), check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit("ansible-playbook failed:\n%s\n%s" % (proc.stdout[-4000:], proc.stderr[-4000:]))
    return elapsed, proc.stdout
