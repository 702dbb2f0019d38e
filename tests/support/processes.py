"""Process trees read from /proc, for tests that kill what they started as a crash would."""

import os
import signal


def children_table():
    """{parent pid: [child pids]} of every process now."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            table.setdefault(ppid, []).append(int(entry))
    return table


def process_tree(root):
    """ROOT and all its descendants, parents first."""
    table, order, todo = children_table(), [], [root]
    while todo:
        pid = todo.pop()
        order.append(pid)
        todo.extend(table.get(pid, []))
    return order


def kill_tree(root):
    """SIGKILL a process and every descendant, children first, as a crash would: Ansible runs
    modules in their own sessions, so killing the process group would leave the module running.
    Every process is stopped first (three rounds) so that none can fork a new child meanwhile."""
    for _round in range(3):
        for pid in reversed(process_tree(root)):
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
    for pid in reversed(process_tree(root)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
