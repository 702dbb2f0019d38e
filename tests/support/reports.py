"""The playbooks' JSON report files: one per run and host, ``<playbook>-<host>-<run id>.json``
in ``dataplane_report_dir`` (an earlier run's file is never overwritten)."""

import json
from pathlib import Path


def report_files(directory, playbook, host="pg"):
    """The report files of PLAYBOOK for HOST in DIRECTORY, oldest first."""
    files = Path(directory).glob("%s-%s-*.json" % (playbook, host))
    return sorted(files, key=lambda path: (path.stat().st_mtime_ns, path.name))


def latest_report(directory, playbook, host="pg"):
    """The newest report of PLAYBOOK for HOST in DIRECTORY, as data (the last run's)."""
    files = report_files(directory, playbook, host)
    assert files, "no %s report of %s in %s" % (playbook, host, directory)
    return json.loads(files[-1].read_text())


def only_report(report_dir, host="pg", playbook="failover"):
    """The one report file of PLAYBOOK for HOST in REPORT_DIR (named after the run); fails the
    test when there is none or more than one."""
    files = sorted(Path(report_dir).glob("%s-%s-*.json" % (playbook, host)))
    assert len(files) == 1, files
    return files[0]
