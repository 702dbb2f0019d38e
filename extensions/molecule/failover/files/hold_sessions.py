# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hold live PostgreSQL sessions open until killed (Molecule prepare for the failover role).

    python hold_sessions.py --host H --port P --ready FILE USER:DB:STATE [USER:DB:STATE ...]

STATE is idle, idle_in_transaction or active (a long pg_sleep). Writes FILE once every
session is open, then sleeps; sessions that the fence terminates simply end.
"""
import argparse
import sys
import threading
import time

import psycopg2


def open_session(args, user, dbname, state):
    conn = psycopg2.connect(host=args.host, port=args.port, user=user, dbname=dbname,
                            application_name="molecule-%s" % state)
    cur = conn.cursor()
    if state == "idle":
        conn.autocommit = True
        cur.execute("SELECT 1")
    elif state == "idle_in_transaction":
        cur.execute("SELECT pg_catalog.txid_current()")
    elif state == "active":
        conn.autocommit = True

        def sleeper():
            try:
                cur.execute("SELECT pg_catalog.pg_sleep(3600)")
            except psycopg2.Error:
                pass  # terminated by the fence
        threading.Thread(target=sleeper, daemon=True).start()
    else:
        raise SystemExit("unknown state %r" % state)
    return conn


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ready", required=True)
    parser.add_argument("sessions", nargs="+")
    args = parser.parse_args()
    conns = []
    for spec in args.sessions:
        user, dbname, state = spec.split(":")
        conns.append(open_session(args, user, dbname, state))
    time.sleep(0.3)  # let the active ones reach pg_sleep
    with open(args.ready, "w") as handle:
        handle.write("%d\n" % len(conns))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
