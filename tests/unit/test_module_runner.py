"""The module runner of the tests (tests/support/modules.py): a module run forked from the fork
server gives what a new interpreter gives (exit status, stdout, stderr, the module's result),
sees the caller's working folder and environment, and is killed at its timeout."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tests.support import modules


def both(path, args_file, timeout=60):
    """(rc, stdout, stderr) of PATH run by the fork server and by a new interpreter."""
    forked = modules.ForkServer.get().run(path, args_file, timeout)
    proc = subprocess.run([sys.executable, str(path), args_file], capture_output=True, text=True, timeout=timeout,
                          check=False)
    return forked, (proc.returncode, proc.stdout, proc.stderr)


def script(tmp_path, body):
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.mark.parametrize("name, args", [
    ("fence", {"login_port": 1, "deployments": []}),
    ("membership", {"login_port": 1, "groups": ["a"], "target_roles": ["b"]}),
    ("deployment_audit", {"login_port": 1, "deployments": [{"id": "b"}]}),
])
def test_a_module_gives_the_same_result_forked_and_in_a_new_interpreter(monkeypatch, name, args):
    monkeypatch.setenv("DATAPLANE_TEST_MODULE_FORK", "1")
    forked = modules.run_module(name, args)
    monkeypatch.setenv("DATAPLANE_TEST_MODULE_FORK", "0")
    fresh = modules.run_module(name, args)
    assert forked == fresh and forked["failed"], (forked, fresh)


def test_exit_status_output_and_argv_are_those_of_a_new_interpreter(tmp_path):
    path = script(tmp_path, """
        import sys
        print("out", sys.argv[1:], __name__)
        print("err", file=sys.stderr)
        sys.exit(3)
        """)
    forked, fresh = both(path, "the-args-file")
    assert forked == fresh == (3, "out ['the-args-file'] __main__\n", "err\n")


def test_an_exception_and_a_message_exit_as_python_does(tmp_path):
    raising = script(tmp_path, "raise ValueError('broken module')\n")
    forked, fresh = both(raising, "x")
    assert forked[0] == fresh[0] == 1
    assert "ValueError: broken module" in forked[2] and "ValueError: broken module" in fresh[2]
    message = tmp_path / "message.py"
    message.write_text("import sys\nsys.exit('said no')\n")
    forked, fresh = both(message, "x")
    assert forked == fresh == (1, "", "said no\n")


def test_the_caller_s_folder_and_environment_reach_the_module(tmp_path, monkeypatch):
    path = script(tmp_path, """
        import atexit, os
        atexit.register(lambda: print("atexit ran"))
        print(os.getcwd(), os.environ.get("DATAPLANE_PROBE"))
        """)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATAPLANE_PROBE", "seen")
    forked, fresh = both(path, "x")
    assert forked == fresh == (0, "%s seen\natexit ran\n" % tmp_path, "")


def test_a_run_past_its_timeout_is_killed(tmp_path):
    marker = tmp_path / "still-running"
    path = script(tmp_path, """
        import time
        time.sleep(1.5)
        open(%r, "w").close()
        """ % str(marker))
    with pytest.raises(subprocess.TimeoutExpired):
        modules.ForkServer.get().run(path, "x", timeout=0.3)
    time.sleep(2)
    assert not marker.exists(), "the timed-out module kept running"


def test_concurrent_runs_overlap(tmp_path):
    """Runs started together run together (the fence tests run two fences at once)."""
    path = script(tmp_path, "import time\ntime.sleep(1)\nprint('done')\n")
    results = []
    threads = [threading.Thread(target=lambda: results.append(modules.ForkServer.get().run(path, "x", 30)))
               for dummy in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [(0, "done\n", "")] * 4
    assert time.monotonic() - started < 3.5, "the runs did not overlap"


def test_the_fork_server_goes_away_with_its_client():
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import sys
        sys.path.insert(0, %r)
        from tests.support import modules
        print(modules.ForkServer.get().proc.pid)
        """) % str(modules.REPO)], capture_output=True, text=True, timeout=60, check=True)
    pid = int(proc.stdout.strip().splitlines()[-1])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists("/proc/%d" % pid):
        time.sleep(0.05)
    assert not os.path.exists("/proc/%d" % pid), "the fork server outlived its client"
