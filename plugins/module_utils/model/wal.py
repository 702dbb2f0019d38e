# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""WAL positions and standbys as values, without a server: shared by the fence, the audit and the
controller's report filters (which must import nothing that needs a database driver)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def lsn_int(text):
    """'16/B374D848' -> an int; None for None or text that is no WAL position."""
    if not text or "/" not in str(text):
        return None
    high, low = str(text).split("/", 1)
    try:
        return (int(high, 16) << 32) + int(low, 16)
    except ValueError:
        return None


def lsn_text(value):
    """An int -> '16/B374D848' (as PostgreSQL prints it)."""
    if value is None:
        return None
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


def standby_label(entry):
    """How a message names a standby. Pure."""
    if entry["source"] == "listed":
        where = "listed, %s:%s" % (entry.get("host"), entry.get("port"))
    elif entry["source"] == "slot":
        where = "replication slot, %s" % ("in use" if entry.get("active") else "no standby connected")
    else:
        where = "connected%s%s" % (", %s" % entry["sync_state"] if entry.get("sync_state") else "",
                                   ", slot %s" % entry["slot"] if entry.get("slot") else "")
    return "standby %s (%s)" % (entry["name"], where)
