# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make galaxy`: build the collection tarball and check it the way Ansible Galaxy would.

    .venv/bin/python scripts/galaxy_check.py [--output-dir DIR]

1. builds the tarball with ``ansible-galaxy collection build`` (galaxy.yml's build_ignore);
2. checks what it ships: every file a user needs, none of the development material;
3. runs ``galaxy-importer`` (what Galaxy runs on upload) on it, offline: the importer lives in
   its own virtualenv in scripts/pg.py's machine-wide cache (``galaxy-importer-<version>``,
   installed from PyPI once per machine, shared by every checkout), with a config that turns off what needs containers (ansible-test) and keeps
   ansible-lint; ansible-doc runs with only this collection installed, as on Galaxy;
4. fails on any error or warning of the importer, on a module or filter whose documentation
   did not render, and on a role without a README.

Exit status 0 only when all of that holds. The tarball stays in the output directory
(default ``.cache/galaxy/``).
"""

import argparse
import fcntl
import glob
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMPORTER_VERSION = "0.4.44"


def _cache_root():
    """scripts/pg.py's machine-wide cache folder (its cache_root())."""
    import runpy
    return Path(runpy.run_path(str(REPO / "scripts" / "pg.py"))["cache_root"]())


# One importer venv per machine and version, shared by every checkout (like the PostgreSQL binaries).
IMPORTER_VENV = _cache_root() / ("galaxy-importer-%s" % IMPORTER_VERSION)
IMPORTER_CONFIG = "[galaxy-importer]\nRUN_ANSIBLE_TEST = False\nRUN_ANSIBLE_LINT = True\nCHECK_CHANGELOG = True\n"

# Paths (or path prefixes) that must never be in the tarball: development material.
FORBIDDEN = ("Makefile", "scripts/", "tests/", "benchmarks/", "extensions/", "examples/",
             "requirements-dev.txt", "pytest.ini", ".ansible-lint", ".ci/", ".gitignore",
             "docs/CONTRIBUTING-helpers.md", "docs/testing.md", ".cache/", ".venv/",
             "changelogs/fragments/", "changelogs/.plugin-cache.yaml")
# Files a user needs, beyond every plugin and role found in the checkout.
REQUIRED = ("README.md", "LICENSE", "CHANGELOG.rst", "changelogs/changelog.yaml", "meta/runtime.yml",
            "meta/execution-environment.yml", "requirements.txt", "bindep.txt",
            "playbooks/provision.yml", "playbooks/failover.yml", "playbooks/audit.yml")


def say(text):
    print("galaxy_check: %s" % text, flush=True)


def run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)


def ensure_importer():
    """The importer's own virtualenv (created once per machine; a rerun does nothing), under a
    file lock: another checkout may be asking for it at the same time."""
    IMPORTER_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(str(IMPORTER_VENV) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_importer()


def _ensure_importer():
    python = IMPORTER_VENV / "bin" / "python"
    stamp = IMPORTER_VENV / ".galaxy-importer-version"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == IMPORTER_VERSION:
        return IMPORTER_VENV / "bin"
    say("installing galaxy-importer==%s into %s" % (IMPORTER_VERSION, IMPORTER_VENV))
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    proc = run([base_python, "-m", "venv", "--clear", str(IMPORTER_VENV)])
    if proc.returncode != 0:
        raise SystemExit("galaxy_check: error: cannot create %s:\n%s" % (IMPORTER_VENV, proc.stderr))
    proc = run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                "galaxy-importer==%s" % IMPORTER_VERSION])
    if proc.returncode != 0:
        raise SystemExit("galaxy_check: error: cannot install galaxy-importer:\n%s" % proc.stderr[-3000:])
    stamp.write_text(IMPORTER_VERSION + "\n")
    return IMPORTER_VENV / "bin"


def build(outdir):
    for old in outdir.glob("dataplane-postgresql-*.tar.gz"):
        old.unlink()
    ansible_galaxy = Path(sys.executable).parent / "ansible-galaxy"
    proc = run([str(ansible_galaxy), "collection", "build", "--force", "--output-path", str(outdir), str(REPO)])
    if proc.returncode != 0:
        raise SystemExit("galaxy_check: error: ansible-galaxy collection build failed:\n%s%s"
                         % (proc.stdout, proc.stderr))
    tarballs = sorted(outdir.glob("dataplane-postgresql-*.tar.gz"))
    if len(tarballs) != 1:
        raise SystemExit("galaxy_check: error: expected one tarball in %s, found %d" % (outdir, len(tarballs)))
    return tarballs[0]


def content_problems(tarball):
    with tarfile.open(tarball) as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
    problems = []
    for name in sorted(names):
        for bad in FORBIDDEN:
            if name == bad or (bad.endswith("/") and name.startswith(bad)):
                problems.append("ships development material: %s" % name)
    expected = set(REQUIRED)
    for pattern in ("plugins/*/*.py", "roles/*/*/*.yml", "roles/*/README.md", "docs/*.md"):
        expected.update(os.path.relpath(p, REPO) for p in glob.glob(str(REPO / pattern)))
    expected -= {n for n in expected if any(n == b or n.startswith(b) for b in FORBIDDEN)}
    problems += ["does not ship %s" % name for name in sorted(expected - names)]
    return problems, len(names)


def import_problems(tarball, bindir, workdir):
    config = workdir / "galaxy-importer.cfg"
    config.write_text(IMPORTER_CONFIG)
    env = dict(os.environ, GALAXY_IMPORTER_CONFIG=str(config),
               PATH="%s:%s" % (bindir, os.environ.get("PATH", "")))
    result_file = workdir / "importer_result.json"
    if result_file.exists():
        result_file.unlink()
    proc = run([str(bindir / "python"), "-m", "galaxy_importer.main", str(tarball)], cwd=str(workdir), env=env)
    log = proc.stdout + proc.stderr
    (workdir / "importer.log").write_text(log)
    problems = []
    if proc.returncode != 0:
        problems.append("galaxy-importer exited %d" % proc.returncode)
    for line in log.splitlines():
        if line.startswith(("ERROR", "WARNING", "CRITICAL")) or "Traceback" in line:
            problems.append("importer: %s" % line.strip())
    if not result_file.exists():
        problems.append("galaxy-importer wrote no importer_result.json")
        return problems, log
    result = json.loads(result_file.read_text())
    documented = 0
    for item in result["docs_blob"]["contents"]:
        kind, name = item["content_type"], item["content_name"]
        if kind in ("module", "filter"):
            doc = (item.get("doc_strings") or {}).get("doc") or {}
            if not doc.get("short_description"):
                problems.append("%s %s: no documentation rendered" % (kind, name))
                continue
            options = doc.get("options") or []
            names = set(options) if isinstance(options, dict) else {o.get("name") for o in options}
            if kind == "module" and not {"login_host", "login_password", "login_db"} <= names:
                problems.append("module %s: the connection options are not documented" % name)
                continue
            documented += 1
        elif kind == "role" and not item.get("readme_html"):
            problems.append("role %s: no README rendered" % name)
    if documented == 0:
        problems.append("no module documentation rendered at all")
    return problems, log


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--output-dir", default=str(REPO / ".cache" / "galaxy"),
                        help="where the tarball and the importer's log go (default: .cache/galaxy)")
    args = parser.parse_args(argv)
    outdir = Path(args.output_dir).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    bindir = ensure_importer()
    tarball = build(outdir)
    problems, count = content_problems(tarball)
    say("built %s (%d files)" % (tarball, count))
    more, log = import_problems(tarball, bindir, outdir)
    problems += more
    if problems:
        say("FAILED:\n  - " + "\n  - ".join(problems))
        say("importer log: %s" % (outdir / "importer.log"))
        return 1
    say("galaxy-importer passed with no error and no warning (%s); %.1f s"
        % (log.strip().splitlines()[-1] if log.strip() else "", time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
