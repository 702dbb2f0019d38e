"""Running this collection's modules (and community.postgresql's) as Ansible runs them: the
arguments as JSON in a file, a process of its own, the JSON result read back.

The ``run_module`` fixture (tests/support/fixtures.py) is ``run_module`` below. Each run is a
new process. By default it is forked from a fork server (tests/support/forkserver.py, one per
test process) that has already imported what every module imports from outside this collection
(``ansible.module_utils.basic``, psycopg2), and runs the module file as ``__main__`` with the
arguments file as its one argument, as ``python plugins/modules/NAME.py ARGS_FILE`` does: the
collection's own code is imported afresh in each run. That saves about 0.15 CPU-s of imports per
run (the integration suite runs modules a few thousand times). Two differences from a new
interpreter, neither visible to a module: the children of one server share its hash seed (string
hashing, hence set order, is the same in each run of a test session), and they start with the
preloaded modules in ``sys.modules``. ``DATAPLANE_TEST_MODULE_FORK=0`` runs a new interpreter
(``python NAME.py ARGS_FILE``) per module run instead.
"""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.support import REPO

FORK_SERVER = Path(__file__).resolve().parent / "forkserver.py"


def module_path(name):
    """plugins/modules/NAME.py of this collection, or for "namespace.collection.module" that
    module from the venv's ansible_collections (e.g. community.postgresql.postgresql_membership)."""
    if "." not in name:
        return REPO / "plugins" / "modules" / (name + ".py")
    namespace, collection, module = name.split(".")
    import ansible_collections
    for root in ansible_collections.__path__:
        path = Path(root) / namespace / collection / "plugins" / "modules" / (module + ".py")
        if path.is_file():
            return path
    raise AssertionError("module %s is not installed in this venv" % name)


def forking():
    """Whether module runs fork from the fork server (the default) or start a new interpreter."""
    return os.environ.get("DATAPLANE_TEST_MODULE_FORK", "1") != "0"


class ForkServer(object):
    """The fork server of this process, started on first use, stopped when this process exits
    (it also stops by itself when this process goes away: it watches the pipe on its stdin)."""

    _lock = threading.Lock()
    _instance = None

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="dataplane-modules-")
        self.socket_path = os.path.join(self.folder, "socket")
        self.proc = subprocess.Popen([sys.executable, str(FORK_SERVER), self.socket_path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, cwd=str(REPO))
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.stop()
            raise RuntimeError("the module fork server did not start (%r)" % line)
        atexit.register(self.stop)

    @classmethod
    def get(cls):
        with cls._lock:
            if cls._instance is None or cls._instance.proc.poll() is not None:
                cls._instance = cls()
            return cls._instance

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def run(self, path, args_file, timeout):
        """Run the module file PATH with ARGS_FILE in a forked child: (exit status, stdout, stderr);
        subprocess.TimeoutExpired (the child killed) after TIMEOUT seconds, as subprocess.run."""
        with tempfile.TemporaryDirectory(prefix="dataplane-module-") as folder:
            out, err = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
            request = {"module": str(path), "args": args_file, "cwd": os.getcwd(), "env": dict(os.environ),
                       "stdout": out, "stderr": err}
            deadline = time.monotonic() + timeout
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(self.socket_path)
                conn.sendall((json.dumps(request) + "\n").encode("utf-8"))
                answers, pid, rc = b"", None, None
                while rc is None:
                    conn.settimeout(max(deadline - time.monotonic(), 0.001))
                    try:
                        chunk = conn.recv(4096)
                    except socket.timeout:
                        if pid is not None:
                            try:
                                os.kill(pid, signal.SIGKILL)
                            except ProcessLookupError:
                                pass
                        raise subprocess.TimeoutExpired([sys.executable, str(path), args_file], timeout)
                    if not chunk:
                        raise RuntimeError("the module process of %s ended without a status:\n%s"
                                           % (path, _read(err)))
                    answers += chunk
                    while b"\n" in answers:
                        line, answers = answers.split(b"\n", 1)
                        word, value = line.decode("ascii").split()
                        if word == "pid":
                            pid = int(value)
                        elif word == "rc":
                            rc = int(value)
            finally:
                conn.close()
            return rc, _read(out), _read(err)


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def run_module(name, args, check=False, diff=False, timeout=120):
    """Run module NAME with ARGS (``check``/``diff`` as Ansible passes them) with the collection
    importable through the venv's ansible_collections link; return its JSON result, with
    ``failed`` set from the exit status when the module did not say."""
    payload = dict(args)
    payload["_ansible_check_mode"] = check
    payload["_ansible_diff"] = diff
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": payload}, handle)
    path = module_path(name)
    try:
        if forking():
            returncode, stdout, stderr = ForkServer.get().run(path, handle.name, timeout)
        else:
            proc = subprocess.run([sys.executable, str(path), handle.name], capture_output=True, text=True,
                                  timeout=timeout, check=False)
            returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    finally:
        os.unlink(handle.name)
    try:
        result = json.loads(stdout)
    except ValueError:
        raise AssertionError("module %s printed no JSON (rc=%s):\n%s\n%s" % (name, returncode, stdout, stderr))
    result.setdefault("failed", returncode != 0 and not result.get("failed") is False)
    return result
