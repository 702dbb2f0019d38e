# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which plane of a Deployment is fenced and which admitted: one reading, shared by
provision (deployment_setup) and audit (deployment_audit).

The fence state record (``model/fence_record.py``) names login roles; this file maps them to the
Deployment's planes and, when there is no record (a fence made by version 0.1, or by hand),
infers the state from the catalog. Pure: callers pass what they read.

``fence_view(login_roles, exists, record, error, holders, public_connect)`` returns::

    {"state": "new" | "open" | "fenced" | "unknown" | "damaged" | "interrupted",
     "source": "record" | "inferred" | None,
     "fenced": [planes], "admitted": [planes],            # by plane name, sorted
     "fenced_roles": [roles], "admitted_roles": [roles],
     "withhold": bool,     # provision must not grant CONNECT to any login role of it
     "phase", "generation", "by", "at", "run": from the record (None without one),
     "error": why the record cannot be read (state "damaged"),
     "notes": [where the record and the catalog disagree],
     "text": "fenced: dp1, admitted: dp2 (recorded ...)"}

States:

``new``          the database does not exist (yet): the reference set-up admits every plane
``open``         no plane is fenced: the reference set-up applies (both planes admitted)
``fenced``       a plane is fenced, from the record or inferred (exactly one plane lacks the
                 owner's CONNECT while another holds it, and PUBLIC has no CONNECT)
``unknown``      no record, PUBLIC has no CONNECT and no plane holds it: neither plane is
                 admitted, which an interrupted 0.1-era failover leaves behind; nothing is granted
``damaged``      a record line is there but cannot be read: the Deployment is refused
``interrupted``  the record is in phase ``fencing``: a failover stopped (or is running) after its
                 REVOKE; nothing is granted until a failover completes it

``withhold`` is true for every state but ``new`` and ``open``: then provision changes nothing
about the CONNECT of the login roles unless re-admitting is asked for explicitly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from .fence_record import new_record

WITHHOLDING_STATES = ("fenced", "unknown", "damaged", "interrupted")


def _planes_of(login_roles, roles):
    by_role = dict((role, plane) for plane, role in login_roles.items())
    return sorted(by_role.get(role, role) for role in roles)


def _record_meta(record):
    if not record:
        return dict(phase=None, generation=None, by=None, at=None, run=None)
    return dict(phase=record.get("phase"), generation=record.get("generation"), by=record.get("by"),
                at=record.get("at"), run=record.get("run"))


def fence_view(login_roles, exists, record=None, error=None, holders=(), public_connect=False):
    """The fence state of one Deployment. Pure.

    login_roles:     {plane: login role}
    exists:          whether the database exists
    record, error:   fence_record.read_states()'s "record" and "error" for the database
    holders:         login roles that hold CONNECT on the database now
    public_connect:  whether PUBLIC holds CONNECT on it now
    """
    logins = sorted(login_roles.values())
    holders = set(holders) & set(logins)
    lacking = [r for r in logins if r not in holders]
    view = dict(_record_meta(record), state=None, source=None, fenced_roles=[], admitted_roles=[],
                error=None, notes=[])
    if not exists:
        view.update(state="new", admitted_roles=logins)
    elif error:
        view.update(state="damaged", error=error, admitted_roles=sorted(holders))
    elif record is not None:
        fenced = sorted(set(record["fenced"]) & set(logins))
        admitted = sorted(set(record["admitted"]) & set(logins))
        strangers = sorted((set(record["fenced"]) | set(record["admitted"])) - set(logins))
        if strangers:
            view["notes"].append("the record names login roles that are not this Deployment's: %s"
                                 % ", ".join(strangers))
        for role in fenced:
            if role in holders:
                view["notes"].append("%s is recorded as fenced but holds CONNECT" % role)
        for role in admitted:
            if role not in holders:
                view["notes"].append("%s is recorded as admitted but holds no CONNECT" % role)
        if not fenced and not admitted:
            admitted = sorted(holders)
        view.update(source="record", fenced_roles=fenced, admitted_roles=admitted)
        if record.get("phase") == "fencing":
            view["state"] = "interrupted"
            view["notes"].append("the record is in phase 'fencing': a failover stopped (or is still "
                                 "running) after revoking CONNECT; rerun it to complete it")
        elif fenced:
            view["state"] = "fenced"
        elif len(lacking) == 1 and holders and not public_connect:
            # a record that says "nobody fenced" while the catalog shows one plane shut out
            view.update(state="fenced", source="inferred", fenced_roles=lacking, admitted_roles=sorted(holders))
            view["notes"].append("the record fences nobody, but %s holds no CONNECT" % lacking[0])
        else:
            view["state"] = "open"
    elif public_connect:
        view.update(state="open", admitted_roles=logins)
    elif len(lacking) == 1 and holders:
        view.update(state="fenced", source="inferred", fenced_roles=lacking, admitted_roles=sorted(holders))
    elif not holders:
        view.update(state="unknown", source="inferred")
    else:
        view.update(state="open", admitted_roles=logins)
    view["fenced"] = _planes_of(login_roles, view["fenced_roles"])
    view["admitted"] = _planes_of(login_roles, view["admitted_roles"])
    view["withhold"] = view["state"] in WITHHOLDING_STATES
    view["text"] = describe(view)
    return view


def describe(view):
    """One line: 'fenced: dp1, admitted: dp2 (recorded by ... at ..., run ...)'. Pure."""
    admitted = ", ".join(view["admitted"]) or "none"
    state = view["state"]
    if state == "new":
        return "new, admitted: %s" % admitted
    if state == "damaged":
        return "fence state record DAMAGED (%s)" % view["error"]
    if state == "unknown":
        return "no plane admitted, no fence recorded (an interrupted failover?)"
    if state == "open":
        head = "admitted: %s" % admitted
    else:
        head = "fenced: %s, admitted: %s" % (", ".join(view["fenced"]) or "none", admitted)
    if view["source"] == "inferred":
        return head + " (inferred, no record)" if view.get("generation") is None else \
            head + " (inferred from the catalog; the record disagrees)"
    if view["source"] == "record":
        tail = "recorded by %s at %s" % (view.get("by") or "?", view.get("at") or "?")
        if view.get("run"):
            tail += ", run %s" % view["run"]
        if state == "interrupted":
            tail = "phase fencing: an interrupted failover; " + tail
        return "%s (%s)" % (head, tail)
    return head


def readmit_record(previous, login_roles, by, at, run, application=None):
    """The record an explicit re-admission writes: every login role admitted, none fenced."""
    return new_record(previous, [], sorted(login_roles.values()), "complete", run, by, at, application)


def provision_policy(rec, view, previous, readmit, writer):
    """What provisioning does about the CONNECT of one existing Deployment. Pure.

    Returns (withhold, problem, record): WITHHOLD true means no CONNECT is granted to its
    login roles; PROBLEM (a message) refuses the Deployment before any change; RECORD is the
    fence state record to write with the grants (an explicit re-admission), else None.
    WRITER: {"by", "at", "application", "run"} of this run.
    """
    if not view["withhold"]:
        return False, None, None
    if not readmit:
        if view["state"] == "damaged":
            return True, ("Deployment %r: the fence state record in the comment of database %r cannot be "
                          "read (%s), so it is unknown which plane is fenced; nothing changed. Repair the "
                          "comment (COMMENT ON DATABASE), or re-admit every plane explicitly "
                          "(dataplane_readmit_fenced_planes: true), which replaces the record"
                          % (rec["id"], rec["database"], view["error"])), None
        return True, None, None
    record = readmit_record(previous, rec["login_roles"], writer.get("by"), writer.get("at"),
                            writer.get("run"), writer.get("application"))
    return False, None, record
