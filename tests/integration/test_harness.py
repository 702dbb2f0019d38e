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
    from tests.support import PG_SCRIPT
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


@pytest.mark.parametrize("version", [16, 18])
def test_streaming_standby_promote_and_crash(version):
    """scripts/pg.py's replication verbs: a hot standby streaming through a slot replays what the
    primary commits; `stop --mode immediate` stops the primary as a crash would; `promote`
    returns once the standby accepts writes."""
    from tests.support.server import PgServer, remove, scratch_dir
    root = scratch_dir("dataplane-ha-")
    primary = PgServer(version, root / "primary").start()
    standby = None
    try:
        standby = PgServer(version, root / "standby", standby_of=primary, slot="standby_slot").start()
        assert standby.info["standby_of"] == str((root / "primary").resolve())
        assert standby.info["application_name"] == "standby"
        primary.sql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        # the insert position: this scratch server commits asynchronously, its write position lags
        lsn = primary.sql("SELECT pg_catalog.pg_current_wal_insert_lsn()::text")[0][0]
        assert standby.replayed(lsn)
        assert standby.sql("SELECT pg_catalog.pg_is_in_recovery(), (SELECT count(*) FROM t)")[0] == (True, 1)
        assert primary.sql("SELECT slot_name::text, active FROM pg_catalog.pg_replication_slots") == [
            ("standby_slot", True)]
        assert primary.sql("SELECT application_name::text FROM pg_catalog.pg_stat_replication") == [("standby",)]
        assert primary.stop(check=True, mode="immediate")
        assert (root / "primary" / "data" / "postmaster.pid").exists() is False
        assert standby.promote()["promoted"] == str((root / "standby").resolve())
        standby.sql("INSERT INTO t VALUES (2)")
        assert standby.sql("SELECT pg_catalog.pg_is_in_recovery(), (SELECT count(*) FROM t)")[0] == (False, 2)
    finally:
        if standby is not None:
            standby.stop()
        primary.stop()
        remove(root)
