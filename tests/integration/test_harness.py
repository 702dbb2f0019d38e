"""The harness itself: every supported version, and 15, really run and answer."""

import pytest


def test_supported_server_answers(pg):
    version = pg.sql("SELECT current_setting('server_version_num')::int")[0][0]
    assert version // 10000 == pg.major
    assert pg.info["version"].startswith(str(pg.major) + ".")


def test_too_old_server_answers(pg15):
    version = pg15.sql("SELECT current_setting('server_version_num')::int")[0][0]
    assert version // 10000 == 15


def test_names_are_unique_and_cleaned(pg16, names):
    role = names("harness_role")
    pg16.sql('CREATE ROLE "%s" LOGIN' % role)
    assert pg16.sql("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,))[0][0] == 1


@pytest.mark.parametrize("bad", ["port", "dirty"])
def test_pg_script_refuses_bad_start(pg16, tmp_path, bad):
    import subprocess
    import sys
    from conftest import PG_SCRIPT
    target = tmp_path / "srv"
    port = pg16.port if bad == "port" else 1
    if bad == "dirty":
        target.mkdir()
        (target / "leftover").write_text("x")
        port = 0
    proc = subprocess.run([sys.executable, str(PG_SCRIPT), "start", "--version", "16", "--dir", str(target),
                           "--port", str(port)], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert ("already in use" if bad == "port" else "is not empty") in proc.stderr
