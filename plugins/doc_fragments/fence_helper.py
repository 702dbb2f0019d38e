# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options that the modules using the fence helper share (fence, terminate_sessions, ...).

``DOCUMENTATION`` documents ``helper_schema``, the name of the helper's schema in every module but
M(dataplane.postgresql.fence_helper), where the contract names the option ``schema`` (and
``helper_schema`` is its alias; that module documents the option itself, since there it is where the
helper is installed). ``RUN_ID``
documents ``run_id``, the writer id a module stores in the fence state records it writes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  helper_schema:
    description:
      - Schema of the fence helper (M(dataplane.postgresql.fence_helper), where it is
        O(dataplane.postgresql.fence_helper#module:schema)) in the database the module connects to
        (O(login_db)). Used for the roles the login cannot terminate directly.
    type: str
    default: dataplane_fence
"""

    RUN_ID = r"""
options:
  run_id:
    description:
      - An identifier of this run (for example the AWX job id), stored in the fence state record
        (C(COMMENT ON DATABASE)) of every database whose record this run writes, and named in the
        message of a fence that finds the record changed.
      - When omitted, M(dataplane.postgresql.fence) makes up a random hex string.
    version_added: 0.2.0
    type: str
"""
