"""Process trees read from /proc, for tests that kill what they started as a crash would."""

import os


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
