# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fence_helper module's action: check the request, then install, check or remove the helper.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..base.database import Session, connect
from ..base.results import Timings, refuse
from ..server.helper import helper_problems, helper_status
from ..server.helper_install import ensure_helper

# What plugins/modules/ takes from this entry point (a module imports its action's entry point
# only; see docs/architecture.md).
from ..base.database import connection_argument_spec
from ..server.helper import DEFAULT_OWNER_ROLE, DEFAULT_SCHEMA

__all__ = ["run_fence_helper", "connection_argument_spec", "DEFAULT_OWNER_ROLE", "DEFAULT_SCHEMA"]


def run_fence_helper(module):
    """The fence_helper module's main(): check the options, converge the helper, exit the module."""
    timings = Timings()
    params = module.params
    schema = params["schema"]
    problems = helper_problems(schema, params["owner_role"], params["killer_roles"])
    if problems:
        refuse(module, "fence helper request", problems, timings=timings.as_dict())

    session = Session(module, connect(module, autocommit=False))
    timings.mark("connect")
    try:
        result = ensure_helper(session, schema, params["owner_role"], params["killer_roles"],
                               params["state"], module.check_mode, exact=params["exact_killer_roles"])
        timings.mark("ensure")
        status = helper_status(session, schema, params["killer_roles"], params["owner_role"])
        if module.check_mode:
            session.conn.rollback()
        else:
            session.conn.commit()
        timings.mark("status_and_commit")
    except Exception as exc:  # report the database's words, roll back everything
        session.fail("fence helper: %s" % exc, timings=timings.as_dict())
    session.close()
    module.exit_json(changed=result["changed"], statements=result["statements"], queries=session.queries,
                     version=result["version"], status=status, missing_roles=result["missing_roles"],
                     unregistered=result["unregistered"], timings=timings.as_dict())
