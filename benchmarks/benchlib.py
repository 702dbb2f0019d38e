# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers shared by the benchmark scripts in this folder (not a test, not part of the collection API).

The scripts run as ``.venv/bin/python benchmarks/X.py``, so this folder is first on ``sys.path``
and ``import benchlib`` works. What lives here:

- ``make_work_dir`` / ``free_port``: a scratch directory under /tmp and a free TCP port;
- ``start_postgresql`` / ``stop_postgresql`` / ``scratch_postgresql``: a throw-away server
  through scripts/pg.py;
- ``connect``: a psycopg2 connection to such a server;

all of these come from tests/support/ (the test suites' server, session holder and reference
SQL), which this module makes importable as ``tests.support`` by putting the repository root
on ``sys.path``; and
- ``run_module``: run plugins/modules/NAME.py as Ansible does (ANSIBLE_MODULE_ARGS in a JSON
  file, a fresh Python process) and time it;
- ``run_playbook``: run the venv's ansible-playbook with the venv's python as interpreter and time it;
- ``one_task_playbook``: time a one-task ``ansible-playbook`` (one ``debug`` task, no facts) on an
  inventory, the floor that every playbook pays before it does any work;
- ``connect_each``: time one connection (and ``SELECT 1``) to each of some databases in turn;
- ``Figure`` / ``versus_floor``: a measured figure next to its floor, as min and median over the
  runs, with the ratio and its target.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # tests/support is shared with the tests, the demo and Molecule

from tests.support import PG_SCRIPT  # noqa: E402
from tests.support.server import PgServer, ServerError, free_port, scratch_server  # noqa: E402
from tests.support.server import connect as _connect  # noqa: E402
from tests.support.server import scratch_dir as make_work_dir  # noqa: E402

__all__ = ["REPO", "PG_SCRIPT", "MODULES_DIR", "PYTHON", "VENV_BIN", "PgServer", "ServerError", "free_port",
           "scratch_server", "make_work_dir", "start_postgresql", "stop_postgresql", "discard_work_dir", "scratch_postgresql", "connect",
           "run_module", "run_playbook", "one_task_playbook", "connect_each", "Figure", "versus_floor"]

MODULES_DIR = REPO / "plugins" / "modules"
PYTHON = sys.executable
VENV_BIN = Path(PYTHON).parent


def start_postgresql(version, data_dir, port=None, settings=(), attempts=1):
    """Start PostgreSQL VERSION in the empty directory DATA_DIR with scripts/pg.py.

    ``settings`` are ``NAME=VALUE`` strings passed as ``--set``. Without ``port`` a free port
    is picked for each attempt; after a failed attempt DATA_DIR is removed and the start
    retried, up to ``attempts`` times. Returns pg.py's JSON line (host, port, user, version,
    bin_dir, ...); exits with a message when the server cannot be started.
    """
    try:
        return PgServer(version, data_dir, settings, port=port).start(attempts).info
    except ServerError as exc:
        raise SystemExit(str(exc))


def stop_postgresql(data_dir, check=False):
    """Stop the server scripts/pg.py started in DATA_DIR; with ``check``, exit if that fails."""
    server = PgServer(None, data_dir)
    server.info = {}
    try:
        return server.stop(check=check)
    except ServerError as exc:
        raise SystemExit(str(exc))


def discard_work_dir(work_dir, data_dir):
    """Stop the server in DATA_DIR (exit if that fails), then remove WORK_DIR in any case."""
    try:
        stop_postgresql(data_dir, check=True)
    finally:
        shutil.rmtree(str(work_dir), ignore_errors=True)


def scratch_postgresql(version, settings=(), prefix="dataplane-bench-"):
    """Start a server in a new /tmp scratch directory; yield ``(info, work_dir)``.

    The server's files are in ``work_dir / "pg"``; the rest of ``work_dir`` is free for the
    caller. On exit the server is stopped and the whole directory removed.
    """
    return _Scratch(version, settings, prefix)


class _Scratch(object):
    def __init__(self, version, settings, prefix):
        self._cm = scratch_server(version, settings, prefix)

    def __enter__(self):
        try:
            server, work = self._cm.__enter__()
        except ServerError as exc:
            raise SystemExit(str(exc))
        return server.info, work

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def connect(port, user="postgres", dbname="postgres", **kwargs):
    """Connect with psycopg2 to a benchmark server on 127.0.0.1 (trust authentication)."""
    return _connect(port, user, dbname, **kwargs)


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


ONE_TASK_PLAYBOOK = """\
# The floor of any playbook: ansible-playbook's start-up, one play on the inventory's hosts,
# one task that runs no module.
- name: One task
  hosts: "{{ dataplane_hosts | default('dataplane_postgresql') }}"
  gather_facts: false
  tasks:
    - name: One task
      ansible.builtin.debug:
        msg: one task
"""


def one_task_playbook(inventory, work_dir):
    """Time a one-task ``ansible-playbook`` (a ``debug`` task, no facts) on INVENTORY; seconds.

    The same environment as ``run_playbook``; the playbook file is written into WORK_DIR.
    """
    path = Path(work_dir) / "one-task.yml"
    if not path.exists():
        path.write_text(ONE_TASK_PLAYBOOK)
    return run_playbook([path, "-i", inventory])[0]


def connect_each(port, databases, user="postgres"):
    """Open one connection to each of DATABASES in turn, run ``SELECT 1``, close it; seconds."""
    started = time.perf_counter()
    for name in databases:
        conn = connect(port, user=user, dbname=name)
        try:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            cur.fetchone()
        finally:
            conn.close()
    return time.perf_counter() - started


def _median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


class Figure(object):
    """Wall seconds of several runs: ``min`` and ``median``."""

    def __init__(self, values=()):
        self.values = [float(v) for v in values]

    def add(self, value):
        self.values.append(float(value))

    @property
    def min(self):
        return min(self.values) if self.values else None

    @property
    def median(self):
        return _median(self.values) if self.values else None

    def as_dict(self):
        return {"runs_s": [round(v, 3) for v in self.values],
                "min_s": None if self.min is None else round(self.min, 3),
                "median_s": None if self.median is None else round(self.median, 3)}


def versus_floor(label, figure, floor, floor_label, target_ratio=None, target_s=None):
    """Print FIGURE next to FLOOR (both ``Figure``) with their ratio; return a dict of the figures.

    The ratio is given for the minimums and for the medians; a target is met when the median
    ratio is within TARGET_RATIO (and, with TARGET_S, the median figure within TARGET_S seconds).
    """
    ratio_min = figure.min / floor.min if figure.values and floor.values and floor.min else None
    ratio_median = figure.median / floor.median if figure.values and floor.values and floor.median else None
    met = True
    targets = []
    if target_ratio is not None:
        targets.append("ratio <= %.1f x" % target_ratio)
        met = met and ratio_median is not None and ratio_median <= target_ratio
    if target_s is not None:
        targets.append("wall <= %.1f s" % target_s)
        met = met and figure.median is not None and figure.median <= target_s
    print("%s: %s s (min / median of %d), floor %s s (%s), ratio %s x / %s x%s"
          % (label, _pair(figure), len(figure.values), _pair(floor), floor_label,
             "-" if ratio_min is None else "%.2f" % ratio_min,
             "-" if ratio_median is None else "%.2f" % ratio_median,
             "; target %s: %s" % (" and ".join(targets), "met" if met else "NOT MET") if targets else ""))
    out = {"figure": figure.as_dict(), "floor": dict(floor.as_dict(), what=floor_label),
           "ratio_min": None if ratio_min is None else round(ratio_min, 2),
           "ratio_median": None if ratio_median is None else round(ratio_median, 2)}
    if targets:
        out.update(target_ratio=target_ratio, target_s=target_s, met=bool(met))
    return out


def _pair(figure):
    if not figure.values:
        return "-"
    return "%.2f / %.2f" % (figure.min, figure.median)
