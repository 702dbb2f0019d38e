#!/usr/bin/env python
"""What each module of the collection ships to the managed host: the AnsiballZ payload.

Runs every module once on localhost with bad arguments (it fails before doing anything), keeps
the AnsiballZ wrapper Ansible built for it, and opens the zip inside: files and bytes in all,
and how much of it is this collection's module_utils.

    .venv/bin/python scripts/payload_sizes.py [--json]
"""

from __future__ import annotations

import argparse
import base64
import glob
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py"))
                 if not os.path.basename(p).startswith("_"))
OWN = "ansible_collections/dataplane/postgresql/plugins/module_utils/"


def payload(module, tmp):
    remote = os.path.join(tmp, module)
    env = dict(os.environ, ANSIBLE_KEEP_REMOTE_FILES="1", ANSIBLE_REMOTE_TMP=remote, ANSIBLE_NOCOLOR="1")
    ansible = os.path.join(os.path.dirname(sys.executable), "ansible")
    subprocess.run([ansible, "localhost", "-c", "local", "-m", "dataplane.postgresql." + module,
                    "-a", "payload_probe=1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)
    wrappers = glob.glob(os.path.join(remote, "*", "AnsiballZ_%s.py" % module))
    if not wrappers:
        raise SystemExit("no AnsiballZ wrapper kept for %s under %s" % (module, remote))
    with open(wrappers[0]) as handle:
        match = re.search(r"zip_data='([A-Za-z0-9+/=]+)'", handle.read())
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(match.group(1))))
    infos = archive.infolist()
    own = [i for i in infos if i.filename.startswith(OWN)]
    own_lines = sum(archive.read(i).count(b"\n") for i in own)
    return {"module": module, "files": len(infos), "bytes": sum(i.file_size for i in infos),
            "own_files": len(own), "own_bytes": sum(i.file_size for i in own), "own_lines": own_lines}


def module_utils_lines():
    total = 0
    for path in glob.glob(os.path.join(ROOT, "plugins", "module_utils", "**", "*.py"), recursive=True):
        with open(path, "rb") as handle:
            total += handle.read().count(b"\n")
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="payload-")
    try:
        rows = [payload(m, tmp) for m in MODULES]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = module_utils_lines()
    if args.json:
        print(json.dumps({"module_utils_lines": total, "modules": rows}, indent=2))
        return
    print("%-20s %6s %9s   %s" % ("module", "files", "bytes", "of which dataplane module_utils"))
    for r in rows:
        print("%-20s %6d %9d   %d files, %d bytes, %d lines (%.0f%% of module_utils' %d lines)" % (
            r["module"], r["files"], r["bytes"], r["own_files"], r["own_bytes"], r["own_lines"],
            100.0 * r["own_lines"] / total, total))


if __name__ == "__main__":
    main()
