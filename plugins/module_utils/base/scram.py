# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SCRAM-SHA-256 secrets computed on the managed node, so no clear-text password reaches the
server (or its logs): what ``CREATE ROLE ... PASSWORD '<secret>'`` stores as ``rolpassword``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import hmac
import os
import stringprep
import unicodedata


def saslprep(password):
    """PostgreSQL's pg_saslprep(): ASCII is kept as is; otherwise RFC 4013, or the raw
    password when the result would be prohibited (PostgreSQL then uses the raw bytes)."""
    if all(ord(ch) < 128 for ch in password):
        return password
    mapped = []
    for ch in password:
        if stringprep.in_table_c12(ch):
            mapped.append(" ")
        elif not stringprep.in_table_b1(ch):
            mapped.append(ch)
    prepared = unicodedata.normalize("NFKC", "".join(mapped))
    if not prepared:
        return password
    prohibited = (stringprep.in_table_c12, stringprep.in_table_c21, stringprep.in_table_c22,
                  stringprep.in_table_c3, stringprep.in_table_c4, stringprep.in_table_c5,
                  stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8,
                  stringprep.in_table_c9, stringprep.in_table_a1)
    if any(check(ch) for ch in prepared for check in prohibited):
        return password
    if any(stringprep.in_table_d1(ch) for ch in prepared):
        if (any(stringprep.in_table_d2(ch) for ch in prepared)
                or not stringprep.in_table_d1(prepared[0]) or not stringprep.in_table_d1(prepared[-1])):
            return password
    return prepared


def scram_secret(password, salt=None, iterations=4096):
    """The rolpassword value PostgreSQL would store for PASSWORD under scram-sha-256."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data):
        return base64.b64encode(data).decode("ascii")
    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, b64(salt), b64(stored_key), b64(server_key))


def password_matches(stored, password, role):
    """Whether the stored rolpassword is PASSWORD (None when it cannot be told)."""
    if stored is None:
        return False
    if stored.startswith("SCRAM-SHA-256$"):
        try:
            head = stored.split("$")[1]
            iterations, salt = head.split(":")
            return hmac.compare_digest(scram_secret(password, base64.b64decode(salt), int(iterations)), stored)
        except (IndexError, ValueError, TypeError):
            return None
    if stored.startswith("md5") and len(stored) == 35:
        return hmac.compare_digest("md5" + hashlib.md5((password + role).encode("utf-8")).hexdigest(), stored)
    return None
