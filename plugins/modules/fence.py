#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: fence
short_description: Fence the source data plane of Airflow Deployments and admit the destination
description:
  - For each Deployment (any database with a source and a destination login role; no naming
    scheme is assumed), in one call over one connection, revokes C(CONNECT) on its database from
    the source role, terminates the source role's sessions, verifies that the source can no
    longer connect and that none of its sessions remain, and makes sure the destination holds
    C(CONNECT).
  - B(Preflight.) Before anything changes, every Deployment is checked (the server version; that
    the login has the owner role's privileges, to switch C(CONNECT); that it can terminate the
    source role's sessions (directly, or through the fence helper as the Deployment's
    O(deployments[].killer_role)); that the source role is neither a superuser nor a member of
    the owner role; that no other path (C(PUBLIC), a group role, another grantor) would keep
    C(CONNECT) for the source; that the fence state record is readable; plane parity as
    O(parity_policy) says). Any problem fails the module with RV(preflight), naming the Deployment and
    what is missing, and nothing is changed. A real run does exactly the checks of a check-mode
    run, after taking the lock and before its first change, so on one server a separate
    check-mode call adds nothing (it is needed only to preflight several servers before any of
    them changes).
  - B(Order.) All C(REVOKE)s are committed together before any session is signalled (an
    uncommitted C(REVOKE) does not stop new connections). Then every source session is signalled
    at once, and C(pg_stat_activity) is polled until no session of a source role remains in any
    database. Then C(has_database_privilege(source, database, 'CONNECT')) must be false; when it
    is not, RV(deployments[].connect_still_via) says why and the module fails without admitting
    the destination. Finally C(CONNECT) is granted to the destination roles and checked (a failed
    C(GRANT) or C(REVOKE) is only a warning in PostgreSQL, so the privileges are always re-read).
  - Everything is batched across Deployments (one statement for all C(REVOKE)s, one for all
    terminations, one poll query per interval, one verification).
  - Fences of the same database are serialized with a session advisory lock on
    (1685087843, C(hashtext(database))), held for the whole call; a second fence waits up to
    O(lock_timeout) seconds for it.
  - B(Fence state.) The module records the fence state of each Deployment in the comment of its
    database (C(COMMENT ON DATABASE), one line; see RV(deployments[].state_after) and the
    collection's docs/fence-guarantees.md). The C(REVOKE) transaction writes a record with the source
    fenced, nobody admitted and phase V(fencing); the destination's C(GRANT) transaction writes the same
    with the destination admitted and phase V(complete). When the fence does not hold, the record
    stays in phase V(fencing) and the destination is not admitted. A record that cannot be read
    fails the preflight of its Deployment.
  - B(Two fences at once.) The records are read before waiting for the advisory lock and again
    after getting it. When a record changed in between (another fence ran), the module fails,
    naming the other run (run id, login, time, what it fenced and admitted), and changes nothing,
    unless O(on_state_change=proceed).
  - B(Durability.) The session raises C(synchronous_commit) V(off) or V(local) to V(on), so every
    change is flushed (and sent to synchronous standbys) before the module reports it.
  - B(Replication.) Right after the C(REVOKE)s commit, one query reads the fence's WAL position
    (C(pg_current_wal_lsn())), the timeline, the system identifier, the standbys streaming from the
    server (C(pg_stat_replication), through the fence helper's C(standby_positions()) for a login
    without C(pg_read_all_stats)) and its physical replication slots; RV(wal) and RV(standbys)
    report them. With no standby that is all the fence does for replication.
  - B(The standby gate.) Before any destination is admitted, the module waits up to
    O(standby_timeout) seconds until every standby has flushed the C(REVOKE)'s position - every
    connected one, every physical slot (a slot no standby uses, behind the position, is a lagging
    standby) and every one in O(standbys). O(standby_policy) says what happens when one has not
    (a standby promoted without the C(REVOKE) would admit both planes). After the C(GRANT)s, it
    waits for what is left of O(standby_timeout) until the standbys have flushed them too, and
    warns about one that has not.
  - B(Hot standbys.) For every standby in O(standbys), in parallel, the module connects to it with
    the same login options, waits until it has replayed the C(REVOKE) (before that it still admits
    the source), terminates the source roles' sessions there (by the same route as on the primary;
    the fence helper works on a hot standby) and waits until none remains.
  - B(Synchronous standbys.) A commit of the fence that waits for a synchronous standby (wait event
    C(SyncRep)) is watched from a second connection; when it has waited O(standby_timeout)
    seconds, the module fails and says so. The commit is never cancelled (a cancelled wait leaves
    the transaction committed locally although no synchronous standby has it); it completes when a
    synchronous standby confirms it, and until then no other session sees it.
  - Idempotent; a Deployment that is already fenced in this direction, with a complete record, no
    source session and the destination admitted, reports C(changed=false) and nothing is written.
  - Needs PostgreSQL 16 or newer; on 14 and 15 it fails before any change (the helper relies on
    C(INHERIT FALSE, SET FALSE) memberships, which do not exist there).
version_added: 0.1.0
author:
  - dataplane.postgresql contributors (@dataplane)
extends_documentation_fragment:
  - dataplane.postgresql.connection
  - dataplane.postgresql.fence_helper
  - dataplane.postgresql.fence_helper.run_id
attributes:
  check_mode:
    support: full
options:
  deployments:
    description:
      - The Deployments to fence.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Name of the Deployment (used in results and messages; unique).
        type: str
        required: true
      database:
        description:
          - The Deployment's metadata database.
        type: str
        required: true
      source_role:
        description:
          - Login role of the plane being fenced.
        type: str
        required: true
      destination_role:
        description:
          - Login role of the plane being admitted.
        type: str
        required: true
      killer_role:
        description:
          - The Deployment's connection-terminator role. Used through the fence helper when the
            login cannot terminate the source role's sessions directly.
        type: str
      schema_role:
        description:
          - The Deployment's shared schema role (owner of Airflow's objects), for O(parity_policy); the
            destination must then start as this role in the database.
        type: str
  mode:
    description:
      - V(forced) terminates the source sessions at once.
      - V(controlled) first waits up to O(drain_timeout) seconds for them to end on their own,
        then terminates what is left.
    type: str
    choices: [forced, controlled]
    default: forced
  drain_timeout:
    description:
      - Seconds to wait for sessions to end on their own in V(controlled) mode.
    type: float
    default: 60
  wait_timeout:
    description:
      - Seconds to wait, after signalling, for terminated sessions to disappear.
    type: float
    default: 10
  parity_policy:
    description:
      - Plane parity in the preflight, read from shared catalogs in the same connection (one
        query per catalog for all Deployments).
      - V(refuse) fails the preflight, changing nothing, when the destination could not use or
        migrate what the source could - the source owns objects in the database, holds privileges
        on objects or memberships the destination lacks, or the destination would not start as
        the schema role (or as the same role as the source).
      - V(warn) reports the same as warnings and fences anyway; V(ignore) does not look.
      - The failover role sets it from C(dataplane_failover_parity_policy) (default V(refuse)).
      - The alias C(parity) is deprecated and will be removed in version 1.0.0 (in
        M(dataplane.postgresql.deployment_audit), O(dataplane.postgresql.deployment_audit#module:parity)
        is a boolean, whether to run the parity checks at all).
    version_added: 0.2.0
    type: str
    choices: [ignore, warn, refuse]
    default: ignore
    aliases: [parity]
  lock_timeout:
    description:
      - Seconds to wait for another fence of the same database (which holds the advisory lock)
        to finish. When it does not finish in time the module fails, naming the process that
        holds the lock, and changes nothing. V(0) waits without limit.
    type: float
    default: 120
  on_state_change:
    description:
      - What to do when the fence state of a database changed while this fence waited for the
        advisory lock (another fence ran in between).
      - V(fail) changes nothing and fails, naming the other run.
      - V(proceed) fences from the new state (and lists the changes in RV(state_changes)).
    version_added: 0.2.0
    type: str
    choices: [fail, proceed]
    default: fail
  standbys:
    description:
      - Hot standbys of the server, whose source sessions the fence terminates too (see
        B(Hot standbys) above). The module connects to each with the login options of the
        primary, O(login_host) and O(login_port) replaced.
      - Standbys the primary knows of are waited for whether or not they are listed here.
    version_added: 0.2.0
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: A name for messages and results (unique).
        type: str
        required: true
      host:
        description: Host name or address of the standby.
        type: str
        required: true
      port:
        description: Its port.
        type: int
        default: 5432
  standby_policy:
    description:
      - What the fence does when a standby does not have its C(REVOKE) within O(standby_timeout) -
        it has not flushed it, its position cannot be read, or (a standby in O(standbys)) it has not
        replayed it, cannot be reached, or still has source sessions.
      - V(require) does not admit the destination, leaves the fence state in phase V(fencing) and
        fails, naming every such standby with its gap in bytes; a rerun finishes the fence.
      - V(warn) admits the destination anyway and warns.
      - V(ignore) does not wait and does not connect to the standbys in O(standbys); RV(standbys)
        shows what the primary saw once.
      - A commit waiting for a synchronous standby fails the module after O(standby_timeout) with
        every policy (the fence is not in effect until the commit completes).
    version_added: 0.2.0
    type: str
    choices: [require, warn, ignore]
    default: require
  standby_timeout:
    description:
      - Seconds to wait for the standbys (the gate, and each standby in O(standbys) replaying the
        C(REVOKE)), and the longest a commit of the fence may wait for a synchronous standby.
    version_added: 0.2.0
    type: float
    default: 30
  expected_generations:
    description:
      - The fence state the caller saw earlier, a dictionary that maps a database name to the record
        generation it saw there (null for "no record"),
        for example the RV(deployments[].state_before) generations of a check-mode run (the
        failover role's preflight).
      - For the databases listed, the module compares the record it finds once it holds the lock
        with these instead of with its own read before the lock, so a fence that ran between the
        caller's read and this run is caught as well; O(on_state_change) decides what happens.
    version_added: 0.2.0
    type: dict
notes:
  - Supports check mode; nothing is changed or signalled, and the result says what would be.
  - Terminating a session rolls back its open transaction, but a transaction that already
    committed locally (for example one waiting for a synchronous standby) stays committed.
  - C(CONNECT) never fences superusers or members of the owner role; the preflight refuses such
    source roles.
seealso:
  - module: dataplane.postgresql.fence_helper
  - module: dataplane.postgresql.terminate_sessions
"""

EXAMPLES = r"""
- name: Fail over two Deployments from dp1 to dp2 as commander_user
  dataplane.postgresql.fence:
    login_user: commander_user
    deployments:
      - name: a
        database: airflow_db_a
        source_role: dp1_user_a
        destination_role: dp2_user_a
        killer_role: airflow_conn_killer_a
      - name: b
        database: airflow_db_b
        source_role: dp1_user_b
        destination_role: dp2_user_b
        killer_role: airflow_conn_killer_b

- name: Controlled fence, waiting up to 2 minutes for sessions to end
  dataplane.postgresql.fence:
    login_user: commander_user
    mode: controlled
    drain_timeout: 120
    deployments: "{{ fence_requests }}"
"""

RETURN = r"""
changed:
  description: Whether anything was (or in check mode would be) changed or signalled.
  returned: always
  type: bool
lock_holders:
  description: The sessions holding the advisory lock of another fence of the same database.
  returned: when O(lock_timeout) ran out
  type: list
  elements: dict
  contains:
    pid:
      description: Backend process id of the other fence.
      type: int
    usename:
      description: Its login role.
      type: str
    application_name:
      description: Its C(application_name).
      type: str
deployments:
  description: One entry per Deployment, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The Deployment's name.
      type: str
    database:
      description: Its database.
      type: str
    source_role:
      description: The fenced login role.
      type: str
    destination_role:
      description: The admitted login role.
      type: str
    killer_role:
      description: The killer role given.
      type: str
    changed:
      description: Whether anything was done for this Deployment.
      type: bool
    revoked:
      description: Whether C(CONNECT) was revoked from the source role.
      type: bool
    granted:
      description: Whether C(CONNECT) was granted to the destination role.
      type: bool
    route:
      description: How sessions were terminated, V(direct) or V(helper).
      type: str
    parity:
      description:
        - With O(parity_policy) V(warn) or V(refuse), why the destination could not use or migrate what
          the source could (empty when it can).
      returned: when O(parity_policy) is not V(ignore)
      type: list
      elements: str
    sessions_terminated:
      description: The source sessions that were signalled (listed, in check mode).
      type: list
      elements: dict
      contains:
        pid:
          description: Backend process id.
          type: int
        role:
          description: Role of the session.
          type: str
        database:
          description: Database of the session.
          type: str
        application:
          description: C(application_name).
          type: str
        client_addr:
          description: Client address (null for Unix sockets).
          type: str
        backend_start:
          description: When the session started (ISO 8601).
          type: str
    sessions_drained:
      description: In V(controlled) mode, sessions that ended on their own.
      type: list
      elements: dict
    remaining_sessions:
      description: Source sessions still present at the end (empty when the fence held).
      type: list
      elements: dict
    time_to_fence_ms:
      description: Milliseconds from the first C(REVOKE) until no session of the source role
        remained (null in check mode).
      type: int
    verified:
      description: The source cannot connect, none of its sessions remain, and the destination
        holds C(CONNECT).
      type: bool
    destination_admitted:
      description:
        - Whether the destination role holds C(CONNECT) on the database at the end (in check mode -
          now, before any change). RV(deployments[].granted) says whether this run granted it.
      returned: when the fence got past its preflight
      type: bool
      version_added: 0.2.0
    connect_still_via:
      description: Why the source role can still connect (C(PUBLIC), group roles, other grantors).
      type: list
      elements: str
    state_before:
      description:
        - The fence state record of the database when the fence began (after the lock), null when
          there was none. Keys V(v), V(fenced), V(admitted), V(phase), V(generation), V(run), V(by),
          V(at), V(application).
      type: dict
    state_after:
      description:
        - The record the database holds afterwards (in check mode, the record that would be written).
      type: dict
    state_written:
      description: Whether a record was (or in check mode would be) written.
      type: bool
    held_for_standbys:
      description:
        - True when the destination was not admitted (and the record left in phase V(fencing))
          because a standby does not have the C(REVOKE) (O(standby_policy=require)).
      returned: when the standby gate held the Deployment back
      type: bool
      version_added: 0.2.0
wal:
  description:
    - Where the fence is in the server's write-ahead log.
  returned: when the fence got past its preflight
  type: dict
  version_added: 0.2.0
  contains:
    revoke_lsn:
      description:
        - C(pg_current_wal_lsn()) read right after the C(REVOKE)s and the V(fencing) records committed
          (when nothing was revoked or written, the position when the fence looked). In check mode,
          null.
      type: str
    final_lsn:
      description: C(pg_current_wal_lsn()) after the last commit of the fence (null in check mode).
      type: str
    timeline:
      description:
        - The timeline of the WAL at that position (from C(pg_walfile_name()); C(pg_control_checkpoint())
          still shows the previous timeline after a promotion until the next checkpoint).
      type: int
    system_identifier:
      description: C(pg_control_system()).system_identifier, as text (the cluster's identity).
      type: str
standbys:
  description:
    - One entry per standby - the WAL senders the server has (V(replication)), its physical
      replication slots that no WAL sender uses (V(slot)), and the standbys in O(standbys)
      (V(listed), as each sees itself).
  returned: when the fence got past its preflight
  type: list
  elements: dict
  version_added: 0.2.0
  contains:
    name:
      description: The WAL sender's C(application_name), the slot's name, or the name given.
      type: str
    source:
      description: V(replication), V(slot) or V(listed).
      type: str
    flush_lsn:
      description:
        - The position the standby has flushed (the slot's C(restart_lsn); a listed standby's
          C(pg_last_wal_receive_lsn())); null when unknown.
      type: str
    replay_lsn:
      description: The position it has replayed (null for a slot, or when unknown).
      type: str
    gap_bytes:
      description: How many bytes its flushed position is behind the C(REVOKE)'s (0 when it has it).
      type: int
    state:
      description: V(caught_up), V(lagging) or V(unknown) (no position could be read).
      type: str
    sessions_terminated:
      description: For a listed standby, how many source sessions were terminated there (null otherwise).
      type: int
    sessions_left:
      description: For a listed standby, how many source sessions remain there (null otherwise, or not reached).
      type: int
    problem:
      description: Why the standby's state is what it is, when something went wrong (null otherwise).
      type: str
    replayed:
      description: For a listed standby, whether it has replayed the C(REVOKE) (it refuses the source only then).
      type: bool
    host:
      description: For a listed standby, its host.
      type: str
    port:
      description: For a listed standby, its port.
      type: int
    time_ms:
      description: For a listed standby, milliseconds from the start of its thread until it was done.
      type: int
    slot:
      description: The replication slot (for a connected standby, the one it streams through, if any).
      type: str
    sync_state:
      description: For a connected standby, C(async), C(potential), C(sync) or C(quorum).
      type: str
standby_policy:
  description: The O(standby_policy) the fence ran with.
  returned: always
  type: str
  version_added: 0.2.0
standby_problems:
  description:
    - One line per standby that does not have the fence (empty when every one has it); with
      O(standby_policy=require) the module then fails.
  returned: always
  type: list
  elements: str
  version_added: 0.2.0
commit_waits:
  description:
    - The commits of the fence that waited for a synchronous standby (wait event C(SyncRep)), as
      a second connection saw them.
  returned: always
  type: list
  elements: dict
  version_added: 0.2.0
  contains:
    what:
      description: Which commit.
      type: str
    waited_ms:
      description: How long it waited.
      type: int
    wait_event:
      description: The wait event last seen.
      type: str
    synchronous_standby_names:
      description: The server's C(synchronous_standby_names).
      type: str
    synchronous_standbys:
      description: The synchronous standbys connected then (C(name), C(sync_state), C(flush_lsn)).
      type: list
      elements: dict
run_id:
  description: The run id stored in the records this run wrote.
  returned: always
  type: str
signals_received:
  description:
    - Signals (V(SIGINT), V(SIGTERM), V(SIGHUP)) that arrived after the first C(REVOKE). From that
      point the module finishes the fence instead of stopping half-way (a signal only cuts a
      V(controlled) drain short); before it, a signal stops the module with nothing changed.
  returned: always
  type: list
  elements: str
primary:
  description:
    - When the server is a standby (in recovery), the fence is refused before any change; this is
      where its WAL receiver streams from (C(sender_host), C(sender_port), C(status)), or null when
      the login may not read C(pg_stat_wal_receiver) (it needs C(pg_read_all_stats)).
  returned: when the server is a standby
  type: dict
standby:
  description: True when the fence was refused because the server is a standby (in recovery).
  returned: when the server is a standby
  type: bool
state_changes:
  description: One message per database whose fence state changed while this run waited for the lock.
  returned: always
  type: list
  elements: str
time_total_ms:
  description: The same as RV(timings.total_ms) (the older name, kept as an alias).
  returned: always
  type: int
preflight:
  description: On a preflight failure, the problems per Deployment (nothing was changed).
  returned: failure
  type: list
  elements: dict
timings:
  description:
    - Whole milliseconds per phase (V(connect_ms), V(lock_ms), V(preflight_ms), V(list_ms) in check mode,
      V(revoke_ms), V(drain_ms), V(signal_ms), V(wait_ms), V(standbys_ms), V(verify_and_grant_ms)), for tuning, and
      V(total_ms), the module's run from before it connects until it returns.
  returned: always
  type: dict
  contains:
    total_ms:
      description: Milliseconds of the whole run.
      type: int
server_version:
  description: The server version.
  returned: always
  type: str
queries:
  description: The statements that changed something or signalled sessions (in check mode, those
    that would run).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dataplane.postgresql.plugins.module_utils.fence.run import (  # this module's entry point
    DEFAULT_SCHEMA,
    ON_STATE_CHANGE,
    STANDBY_POLICIES,
    connection_argument_spec,
    run_fence,
)


def argument_spec():
    """The module's options; C(parity) is the deprecated name of C(parity_policy)."""
    spec = connection_argument_spec()
    spec.update(
        deployments=dict(type="list", elements="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            database=dict(type="str", required=True),
            source_role=dict(type="str", required=True),
            destination_role=dict(type="str", required=True),
            killer_role=dict(type="str"),
            schema_role=dict(type="str"),
        )),
        parity_policy=dict(type="str", choices=["ignore", "warn", "refuse"], default="ignore", aliases=["parity"],
                           deprecated_aliases=[dict(name="parity", version="1.0.0",
                                                    collection_name="dataplane.postgresql")]),
        mode=dict(type="str", choices=["forced", "controlled"], default="forced"),
        drain_timeout=dict(type="float", default=60),
        wait_timeout=dict(type="float", default=10),
        helper_schema=dict(type="str", default=DEFAULT_SCHEMA),
        lock_timeout=dict(type="float", default=120),
        run_id=dict(type="str"),
        on_state_change=dict(type="str", choices=list(ON_STATE_CHANGE), default="fail"),
        expected_generations=dict(type="dict"),
        standbys=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            host=dict(type="str", required=True),
            port=dict(type="int", default=5432),
        )),
        standby_policy=dict(type="str", choices=list(STANDBY_POLICIES), default="require"),
        standby_timeout=dict(type="float", default=30),
    )
    return spec


def main():
    run_fence(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True))


if __name__ == "__main__":
    main()
