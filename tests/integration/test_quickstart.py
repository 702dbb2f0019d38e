"""The README's quick start, run as written, against a server that asks for passwords.

The section between the ``quickstart: begin`` and ``quickstart: end`` markers of README.md is
taken apart here: each ``yaml`` block whose first line is ``# <file name>`` becomes that file,
the ``sh`` blocks become one bash script (``set -euo pipefail``). Only two values are replaced:
the inventory's example host and port, by the test server's. The server uses scram-sha-256
for every connection, and its superuser ``postgres`` has the password that the README's admin
vault file holds. The collection comes from the built tarball, installed with
ansible-galaxy (not from this checkout), so the test also covers the README's install path.

Everything runs with ANSIBLE_VERBOSITY=3 (``-vvv``), and no password may appear in the output.
When the README changes, this test reads the new text: it breaks when the quick start does.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest
import yaml

from tests.support.server import PgServer, free_port, scratch_dir

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BEGIN = "<!-- quickstart: begin"
END = "<!-- quickstart: end -->"
VAULT_PASSWORD = "quickstart vault passphrase 7c1e"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def quickstart_section():
    text = (REPO / "README.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "README.md must mark its quick start once"
    return text[text.index(BEGIN):text.index(END)]


def parse_quickstart(section, expected=None):
    """Return ({file name: text}, script) from the quick start's fenced blocks; the ``text``
    blocks (expected output) are appended to EXPECTED when it is given."""
    files, script = {}, []
    for lang, body in BLOCK.findall(section):
        if lang == "yaml":
            first = body.splitlines()[0]
            match = re.match(r"#\s*([\w./-]+\.ya?ml)\b", first)
            assert match, "a yaml block of the quick start must start with '# <file name>': %r" % first
            files[match.group(1)] = body
        elif lang == "sh":
            script.append(body)
        elif lang == "text" and expected is not None:
            expected.append(body)
        else:
            raise AssertionError("unexpected %s block in the quick start" % lang)
    assert files and script, "the quick start has no files or no commands"
    return files, "\n".join(script)


def normalised(line):
    """A line of output with every number as N (run ids, times and counts differ between runs)."""
    return re.sub(r"\d+", "N", line.strip().rstrip(","))


def summary_lines_of(expected):
    """The summary lines (quoted strings) of an expected-output block."""
    return [line.strip().rstrip(",") for line in expected.splitlines() if line.strip().startswith('"')
            and not line.strip().startswith('"msg"')]


@pytest.fixture
def scram_server():
    """Start a PostgreSQL 16 that asks every client for a password; yield a starter."""
    started = []
    # Under /tmp: as root the server runs as another user, which cannot enter pytest's tmp_path.
    base = scratch_dir("dataplane-qs-")

    def start(password):
        pwfile = base / "superuser-password"
        pwfile.write_text(password + "\n")
        server = PgServer(16, base / ("pg-%d" % len(started)), auth="scram-sha-256", password_file=pwfile).start()
        started.append(server)
        return server.port

    yield start
    for server in started:
        server.stop()
    shutil.rmtree(base, ignore_errors=True)


def connect(port, user, password, dbname="postgres"):
    return psycopg2.connect(host="127.0.0.1", port=port, user=user, password=password, dbname=dbname,
                            connect_timeout=10)


def login_result(port, user, password, dbname):
    try:
        connect(port, user, password, dbname).close()
        return "admitted"
    except psycopg2.OperationalError as exc:
        return str(exc).strip()


def install_built_collection(tmp_path):
    """Build the tarball and install it (and nothing else) into a collections path."""
    build = tmp_path / "build"
    proc = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(build),
                           str(REPO)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tarball = next(build.glob("dataplane-postgresql-*.tar.gz"))
    collections = tmp_path / "collections"
    proc = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "--no-deps", "--force",
                           "-p", str(collections), str(tarball)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = collections / "ansible_collections" / "dataplane" / "postgresql"
    assert (installed / "MANIFEST.json").exists() and not (installed / "tests").exists()
    return collections, installed


def test_readme_quickstart_as_written_with_passwords(tmp_path, scram_server):
    expected = []
    files, script = parse_quickstart(quickstart_section(), expected)
    assert expected, "the quick start shows no expected output"
    assert {"inventory.yml", "vars.yml", "admin-vault.yml", "commander-vault.yml"} <= set(files), sorted(files)
    admin_vault = yaml.safe_load(files["admin-vault.yml"])
    commander_vault = yaml.safe_load(files["commander-vault.yml"])
    secrets = set(admin_vault.values()) | set(commander_vault.values()) | {VAULT_PASSWORD}

    port = scram_server(admin_vault["vault_pg_admin_password"])
    inventory = files["inventory.yml"]
    assert inventory.count("db.example.internal") == 1 and inventory.count("5432") == 1, inventory
    files["inventory.yml"] = inventory.replace("db.example.internal", "127.0.0.1").replace("5432", str(port))

    work = tmp_path / "quickstart"
    work.mkdir()
    for name, body in files.items():
        (work / name).write_text(body)
    (work / "vault-pass.txt").write_text(VAULT_PASSWORD + "\n")
    (work / "quickstart.sh").write_text("set -euo pipefail\n" + script)

    collections, installed = install_built_collection(tmp_path)
    env = dict(os.environ, PATH="%s:%s" % (BIN, os.environ.get("PATH", "")), LC_ALL="C.UTF-8",
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_VERBOSITY="3",
               ANSIBLE_COLLECTIONS_PATH=str(collections))
    proc = subprocess.run(["bash", str(work / "quickstart.sh")], cwd=str(work), env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    output = proc.stdout + proc.stderr
    (tmp_path / "quickstart.log").write_text(output)
    assert proc.returncode == 0, output[-6000:]

    # It ran the installed tarball, verbosely, and each playbook did its job.
    assert str(installed) in output, "the playbooks did not come from the installed tarball"
    assert "<127.0.0.1>" in output or "ESTABLISH LOCAL CONNECTION" in output, "not run with -vvv"
    assert "Vault password" not in output
    for text in ("$ANSIBLE_VAULT;", ):
        for name in ("admin-vault.yml", "commander-vault.yml"):
            assert (work / name).read_text().startswith(text), "%s was not encrypted" % name
    assert "sales: OK, fence capable" in output and "ml-platform: OK, fence capable" in output, output[-4000:]
    assert "is undefined" not in output

    # The expected output the README shows is what the run printed (numbers aside), verdict first.
    printed = set(normalised(line) for line in output.splitlines())
    for block in expected:
        lines = summary_lines_of(block)
        assert lines, block
        missing = [line for line in lines if normalised(line) not in printed]
        assert not missing, "the README's expected output was not printed: %s" % missing
    assert re.search(r'"SAFE to start dp2 on pg-main: 2 of 2 Deployments fenced and verified \(dp1 refused, 0 dp1 '
                     r'sessions, dp2 admitted\); run \S+",?$', output, re.M), output[-4000:]
    # the report directory, one file for the failover run, and the dp2 check
    reports = sorted((work / "reports").glob("failover-pg-main-*.json"))
    assert len(reports) == 1, reports
    report = yaml.safe_load(reports[0].read_text())
    assert report["safe_to_start_destination"] is True and report["verdict"].startswith("SAFE to start dp2")
    assert report["run_id"] in reports[0].name
    assert '"is_available": true' in output, output[-3000:]

    # No password anywhere in the -vvv output.
    leaked = sorted(s for s in secrets if s in output)
    assert not leaked, "passwords in the -vvv output: %s" % leaked

    # The server's state, with the passwords from the vault: dp1 fenced, dp2 admitted.
    for dep_id, key in (("sales", "sales"), ("ml-platform", "ml")):
        database = "airflow_db_%s" % dep_id
        refused = login_result(port, "dp1_user_%s" % dep_id, admin_vault["vault_%s_dp1" % key], database)
        assert "permission denied for database" in refused, refused
        assert login_result(port, "dp2_user_%s" % dep_id, admin_vault["vault_%s_dp2" % key], database) == "admitted"
    # commander_user has exactly the password of the orchestrator's vault, and needs it.
    assert login_result(port, "commander_user", commander_vault["vault_commander_password"], "postgres") == "admitted"
    assert "password authentication failed" in login_result(port, "commander_user", "wrong", "postgres")


def test_quickstart_parser_rejects_a_block_without_file_name():
    section = BEGIN + "\n```yaml\nfoo: 1\n```\n```sh\ntrue\n```\n" + END
    with pytest.raises(AssertionError, match="must start with"):
        parse_quickstart(section)


def test_failover_reports_a_connection_error_once(ansible_playbook, tmp_path):
    """A failed connection is one failed task (the module's failure is not reported again)."""
    port = free_port()  # nothing listens there
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"dataplane_postgresql": {"hosts": {"pg": {
        "ansible_connection": "local", "dataplane_pg_host": "127.0.0.1", "dataplane_pg_port": port}}}}))
    proc = ansible_playbook("dataplane.postgresql.failover", inventory=inventory, extra_vars={
        "dataplane_deployments": [{"id": "sales", "passwords": {"dp1": "{{ undefined_vault_value }}"}}],
        "dataplane_failover_from": "dp1", "dataplane_failover_to": "dp2"})
    assert proc.returncode != 0
    failed = [line for line in proc.stdout.splitlines() if "FAILED!" in line]
    assert len(failed) == 1 and "Connection refused" in failed[0], proc.stdout
    assert "is undefined" not in proc.stdout, proc.stdout
