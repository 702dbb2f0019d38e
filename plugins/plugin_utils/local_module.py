# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run one of this collection's modules in a process forked from the Ansible worker.

With ``ansible_connection: local`` and the controller's own Python as the module's interpreter
(the set-up the roles document: ``ansible_python_interpreter: "{{ ansible_playbook_python }}"``),
Ansible runs a module by building its AnsiballZ payload (every module_util it imports, about
80 files, parsed), writing it to a temporary directory, and starting that same Python on it
through ``/bin/sh``, which then compiles ansible-core's module code from the zip (no bytecode
there) before the module's first line runs. For the fence that was a third of a second of the
task on an idle machine, more than the fence of 3 Deployments itself (issue 23).

``run`` gives the same module the same arguments in a child of the worker instead: the same
encoding of the arguments (``_update_module_args`` and the serialization profile's encoder),
the same entry point as the AnsiballZ wrapper (``_loader.run_module``), the same decoding of
what it prints (``_parse_returned_data``). The child is a separate process, as a module is:
its signals start at their defaults, its standard input is empty, its output and errors are
captured, it ends with ``os._exit``; and it imports ansible-core's module code and the
collections' code afresh (from the installed, compiled files), because the worker's copies run
in the controller's context (a module's warnings, for one, would go to the display instead of
into its result). It is used only where the result cannot differ:

- the connection is ``local`` with no become, no async, no task ``environment``, no
  ``keep_remote_files`` and no ``PYTHON_MODULE_RLIMIT_NOFILE``;
- the module's interpreter, as Ansible resolves it (``ansible_python_interpreter`` or
  ``INTERPRETER_PYTHON``), is this very Python (``sys.executable``); with interpreter
  discovery (``auto``) or another Python the module runs as usual;
- ansible-core has the entry points used here (2.21 and later), and ``fork`` exists;
- the environment variable ``DATAPLANE_POSTGRESQL_FORK_MODULES`` is not ``0`` (set it to ``0``
  to run every module the usual way).

Otherwise ``ModuleAction``, the action plugin of these modules, runs the module through the
connection, exactly as Ansible's ``normal`` action does.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib
import io
import json
import os
import signal
import sys
import tempfile
import traceback
import warnings

from ansible import constants as C
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible.plugins.action.normal import ActionModule as NormalAction
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash

display = Display()

try:  # ansible-core 2.21 and later
    from ansible.module_utils._internal._ansiballz import _loader
    from ansible.module_utils.common.json import Direction, get_module_encoder
except ImportError:  # pragma: no cover - older ansible-core: modules run the usual way
    _loader = None

# the serialization profile of this collection's modules (they declare none)
PROFILE = "legacy"
SWITCH = "DATAPLANE_POSTGRESQL_FORK_MODULES"
COLLECTION = "ansible_collections.dataplane.postgresql.plugins.modules."


def usable(action, task_vars):
    """Whether ACTION's module may run in a forked child (see the module docstring)."""
    if _loader is None or not hasattr(os, "fork") or os.environ.get(SWITCH, "1") == "0":
        return False
    task = action._task
    if getattr(action._connection, "transport", None) != "local" or task.async_val or action._play_context.become:
        return False
    if C.DEFAULT_KEEP_REMOTE_FILES or C.config.get_config_value("PYTHON_MODULE_RLIMIT_NOFILE", variables=task_vars):
        return False
    if action._compute_environment_string():
        return False
    interpreter = C.config.get_config_value("INTERPRETER_PYTHON", variables=task_vars)
    interpreter = action._templar.template(interpreter) if isinstance(interpreter, str) else None
    if not isinstance(interpreter, str) or interpreter.strip() in ("", "auto", "auto_silent", "auto_legacy",
                                                                   "auto_legacy_silent"):
        return False
    return os.path.normpath(os.path.expanduser(interpreter.strip())) == os.path.normpath(sys.executable)


def run(action, module, task_vars):
    """The result of this collection's module MODULE (short name) for ACTION's task, run in a
    forked child (the caller checked ``usable``)."""
    display.vvv("dataplane.postgresql.%s: running the module in a process forked from the worker (local "
                "connection, this Python)" % module, host=action._play_context.remote_addr)
    module_args = dict(action._task.args)
    action._update_module_args("dataplane.postgresql." + module, module_args, task_vars)
    encoder = get_module_encoder(PROFILE, Direction.CONTROLLER_TO_MODULE)
    params = json.dumps({"ANSIBLE_MODULE_ARGS": module_args}, cls=encoder).encode()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        with warnings.catch_warnings():
            # the worker may have a queue thread; the child never touches it
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            _child(params, COLLECTION + module, out.fileno(), err.fileno())
        status = os.waitpid(pid, 0)[1]
        out.seek(0)
        err.seek(0)
        res = dict(rc=os.waitstatus_to_exitcode(status),
                   stdout=to_text(out.read(), errors="surrogate_then_replace"),
                   stderr=to_text(err.read(), errors="surrogate_then_replace"))
    res["stdout_lines"] = res["stdout"].splitlines()
    res["stderr_lines"] = res["stderr"].splitlines()
    utr = action._parse_returned_data(res, PROFILE)
    utr.remove_internal_keys()
    return utr.as_result_dict(for_round_trip=True)


def _child(params, module_fqn, out_fd, err_fd):  # pragma: no cover - runs in the forked child
    code = 1
    try:
        # as a module process starts: default signal handling (the worker's own handlers
        # would act for the worker), no standard input, output and errors captured
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8")
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", line_buffering=True)
        # The worker imported ansible-core's module code in its controller context (where, for
        # one, a module's warnings go to the display instead of into its result): import it
        # again, and the collections' modules and module_utils, as a module process has them.
        # The collections' packages stay: they hold each collection's routing metadata, parsed
        # from YAML by the worker already (parsing it again took a quarter of a second).
        for name in [n for n in sys.modules if _module_side(n)]:
            del sys.modules[name]
        loader = importlib.import_module(_loader.__name__)
        loader.run_module(json_params=params, profile=PROFILE, module_fqn=module_fqn, modlib_path="", extensions={})
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # a module's own failures are JSON; anything else is reported as a crash
        try:
            traceback.print_exc()
        except BaseException:
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(code)


def _module_side(name):
    """Whether the module NAME is code a module process imports for itself: ansible-core's
    module_utils, and any collection's modules and module_utils."""
    if name == "ansible.module_utils" or name.startswith("ansible.module_utils."):
        return True
    parts = name.split(".")
    return len(parts) >= 5 and parts[0] == "ansible_collections" and parts[3] == "plugins" \
        and parts[4] in ("module_utils", "modules")


class ModuleAction(NormalAction):
    """The action of one of this collection's modules (``MODULE``, its short name): run in a
    forked child where ``run`` allows it, else exactly as Ansible's ``normal`` action does."""

    MODULE = None

    def run(self, tmp=None, task_vars=None):
        if not usable(self, task_vars or {}):
            return super(ModuleAction, self).run(tmp, task_vars)
        result = ActionBase.run(self, tmp, task_vars)
        del tmp
        return merge_hash(result, run(self, self.MODULE, task_vars or {}))
