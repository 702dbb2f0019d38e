# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the connection options every dataplane.postgresql module takes.

The options themselves (and the connection code) come from community.postgresql's
``postgres_common_argument_spec()``, plus ``login_db``; see module_utils/base/database.py. They are
documented here, in this collection, so that the module documentation renders with only this
collection installed (Galaxy's importer runs ansible-doc that way). Keep it in step with
``connection_argument_spec()``: ansible-test sanity (validate-modules) compares the two.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  login_user:
    description:
      - The role to log in as.
      - Defaults to the environment variable E(PGUSER) when set on the host that runs the
        module, else C(postgres).
    type: str
    default: postgres
    aliases: [login]
  login_password:
    description:
      - The password of O(login_user). Never logged.
      - Keep it in Ansible Vault or an AWX credential, not in plain text.
    type: str
    default: ''
  login_host:
    description:
      - Host name or address of the PostgreSQL server.
      - Empty (the default) connects through the Unix socket of O(login_unix_socket), or libpq's
        default socket.
    type: str
    default: ''
    aliases: [host]
  login_port:
    description:
      - TCP port of the server (also the number in the Unix socket's file name).
      - Defaults to the environment variable E(PGPORT) when set, else 5432.
    type: int
    default: 5432
    aliases: [port]
  login_unix_socket:
    description:
      - Directory of the server's Unix domain socket, for a local connection without TCP.
    type: str
    default: ''
    aliases: [unix_socket]
  login_db:
    description:
      - The database to connect to. The fence helper lives in this database.
    type: str
    default: postgres
  ssl_mode:
    description:
      - The libpq C(sslmode) of the connection; C(prefer) is libpq's own default.
      - C(verify-ca) and C(verify-full) check the server's certificate against O(ca_cert).
    type: str
    default: prefer
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - File with the certificate authorities that may have signed the server's certificate
        (libpq C(sslrootcert)).
    type: str
    aliases: [ssl_rootcert]
  ssl_cert:
    description:
      - File with the client's TLS certificate (libpq C(sslcert)).
    type: path
  ssl_key:
    description:
      - File with the secret key of O(ssl_cert) (libpq C(sslkey)).
    type: path
  connect_params:
    description:
      - Further libpq connection parameters, for example C(connect_timeout) or
        C(application_name). They take precedence over the options above.
      - Every session pins C(search_path) to C(pg_catalog, pg_temp) through libpq C(options),
        after any C(options) given here, so that no function or operator that another role
        created in a database can run in the module's session.
    type: dict
    default: {}

attributes:
  check_mode:
    description: Can run in check mode and report what would change without changing it.

notes:
  - The connection options and connection handling are those of the C(community.postgresql)
    collection, which must be installed next to this one (it is a dependency in C(galaxy.yml)).
  - The host that runs the module (usually the controller, with C(ansible_connection=local))
    needs the Python library C(psycopg2) (or C(psycopg) 3).

requirements:
  - psycopg2 >= 2.5.1 (or psycopg >= 3.1.8)
"""
