"""A fork server for module runs (tests/support/modules.py): a process of the test venv's Python
that has imported what every module imports from outside this collection, listening on a UNIX
socket; each request gets a child forked from it that runs one module file as ``__main__``,
the way ``python plugins/modules/NAME.py ARGS_FILE`` would, and reports its exit status.

    python tests/support/forkserver.py SOCKET_PATH      # prints "ready" once it listens

Run as a script (not imported): it imports nothing of the tests or of this collection, so every
child imports the collection's code afresh. Standard library only, plus the preloads.

A request is one JSON line: {"module": path, "args": path, "cwd": dir, "env": {...},
"stdout": path, "stderr": path}. The child answers "pid N" at once and "rc N" when the module
has ended (its output in the two files), then exits with that status.
"""

import atexit
import io
import json
import os
import runpy
import select
import signal
import socket
import sys
import traceback

# What every module run imports from outside this collection (about 0.12 CPU-s per run when
# imported afresh). Nothing of the collection: its code is what the tests test.
PRELOAD = ("ansible.module_utils.basic", "psycopg2", "psycopg2.extensions", "psycopg2.extras", "psycopg2.sql")


def _read_line(conn):
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError("the client went away")
        data += chunk
    return data.decode("utf-8")


def _exit_code(code):
    """The exit status Python gives SystemExit(CODE) (a message is printed, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _child(conn):
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)   # the module may wait for its own children
        request = json.loads(_read_line(conn))
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(target, fd)
            os.close(target)
        encoding = sys.stdout.encoding
        sys.stdin = io.open(0, "r", encoding=encoding, closefd=False)
        sys.stdout = io.open(1, "w", encoding=encoding, errors=sys.stdout.errors, closefd=False)
        sys.stderr = io.open(2, "w", encoding=encoding, errors="backslashreplace", closefd=False)
        conn.sendall(b"pid %d\n" % os.getpid())
        sys.argv = [request["module"], request["args"]]
        sys.path[0] = os.path.dirname(os.path.abspath(request["module"]))
        try:
            runpy.run_path(request["module"], run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except BaseException:  # pylint: disable=broad-except
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()  # pylint: disable=protected-access
        sys.stdout.flush()
        sys.stderr.flush()
        conn.sendall(b"rc %d\n" % code)
    except BaseException:  # pylint: disable=broad-except
        traceback.print_exc()
    finally:
        os._exit(code)  # pylint: disable=protected-access


def main(path):
    for name in PRELOAD:
        __import__(name)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(128)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # the children are reaped by the kernel
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        # the client holds our stdin: when it goes away (EOF), so does the server
        ready, dummy, dummy = select.select([server, sys.stdin], [], [])
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
            return
        if server not in ready:
            continue
        conn, dummy = server.accept()
        if os.fork() == 0:
            server.close()
            _child(conn)
        conn.close()


if __name__ == "__main__":
    main(sys.argv[1])
