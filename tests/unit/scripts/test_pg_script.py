"""scripts/pg.py: where the binaries are cached, and the --auth options (no server needed)."""

import importlib.util
from pathlib import Path

import pytest

PG_SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "pg.py"


@pytest.fixture
def pg():
    spec = importlib.util.spec_from_file_location("dataplane_pg_script", PG_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cache_outside_the_checkout_as_root(pg, monkeypatch):
    monkeypatch.delenv("DATAPLANE_PG_CACHE", raising=False)
    monkeypatch.setattr(pg.os, "geteuid", lambda: 0)
    assert pg.cache_root() == Path("/var/cache/dataplane-postgresql")


def test_cache_of_a_normal_user(pg, monkeypatch, tmp_path):
    monkeypatch.delenv("DATAPLANE_PG_CACHE", raising=False)
    monkeypatch.setattr(pg.os, "geteuid", lambda: 4242)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert pg.cache_root() == (tmp_path / "xdg" / "dataplane-postgresql").resolve()
    # a home folder that cannot be written: a folder of that user under the temporary directory
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert pg.cache_root().name == "dataplane-postgresql-4242"


def test_cache_from_the_environment(pg, monkeypatch, tmp_path):
    monkeypatch.setenv("DATAPLANE_PG_CACHE", str(tmp_path / "mine"))
    assert pg.cache_root() == (tmp_path / "mine").resolve()


@pytest.mark.parametrize("argv, message", [
    (["--auth", "scram-sha-256"], "needs --password-file"),
    (["--password-file", "/dev/null"], "only makes sense with --auth scram-sha-256"),
    (["--auth", "scram-sha-256", "--password-file", "/nonexistent/pw"], "cannot read --password-file"),
    (["--auth", "scram-sha-256", "--password-file", "/dev/null"], "holds no password"),
])
def test_password_options_are_checked_before_anything_starts(pg, monkeypatch, tmp_path, capsys, argv, message):
    monkeypatch.setattr(pg, "install", lambda major: tmp_path / "bin")  # no download for a refused request
    target = tmp_path / "data"
    rc = pg.main(["start", "--version", "16", "--dir", str(target), "--port", "1"] + argv)
    assert rc == 2 and message in capsys.readouterr().err
    assert not target.exists()


def test_auth_choices(pg, capsys):
    with pytest.raises(SystemExit):
        pg.main(["start", "--version", "16", "--dir", "/tmp/x", "--port", "1", "--auth", "md5"])
    assert "invalid choice" in capsys.readouterr().err
