"""Test support shared by the pytest suites, Molecule, scripts/demo.py and benchmarks/.

- ``tests.support.server``: throw-away PostgreSQL servers started and stopped through
  scripts/pg.py (``PgServer``, ``scratch_server``), the one ``free_port``, connection helpers;
- ``tests.support.sessions``: ``Sessions``, live sessions held open in the states a fence must
  deal with (idle, idle in transaction, active, holding a lock), also as a command line for
  Molecule (``python -m tests.support.sessions``);
- ``tests.support.reference``: the vendor's reference SQL for one Deployment, derived from the
  text of the vendor's page as the collection sets it up.

Import it as ``tests.support`` with the repository root on ``sys.path``: pytest gets it from
``pythonpath = .`` in pytest.ini, scripts/demo.py and benchmarks/benchlib.py put the
repository root first on ``sys.path`` themselves, Molecule runs ``python -m
tests.support.sessions`` from the repository root. It needs only the standard library and psycopg2.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PG_SCRIPT = REPO / "scripts" / "pg.py"
