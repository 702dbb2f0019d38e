# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shapes every dataplane.postgresql module shares in its results.

Timings: one dict, ``timings``, with ``total_ms`` (the module's whole run) and one
``<phase>_ms`` entry per phase it went through, all whole milliseconds.

Refusals: a module that refuses its input fails with one message format, names every
problem (one sentence each) in ``problems`` and says that nothing was changed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time


class Timings(object):
    """Phase timer: ``mark(phase)`` closes the phase that ran since the last mark."""

    def __init__(self):
        self.start = time.monotonic()
        self._last = self.start
        self.phases = {}

    def mark(self, phase):
        now = time.monotonic()
        key = phase + "_ms"
        self.phases[key] = self.phases.get(key, 0) + int(round((now - self._last) * 1000))
        self._last = now
        return self.phases[key]

    def total_ms(self):
        return int(round((time.monotonic() - self.start) * 1000))

    def as_dict(self):
        """The ``timings`` return value: the phases so far plus ``total_ms``."""
        out = dict(self.phases)
        out["total_ms"] = self.total_ms()
        return out


def refusal_message(subject, problems):
    """``<subject> refused, nothing was changed: <problem> <problem>``.

    SUBJECT names what was refused ("fence request", "membership request", ...); each
    problem is one sentence.
    """
    sentences = []
    for problem in problems:
        text = str(problem).strip()
        sentences.append(text if text.endswith((".", "!", "?")) else text + ".")
    return "%s refused, nothing was changed: %s" % (subject, " ".join(sentences))


def refuse(module, subject, problems, **extra):
    """Fail MODULE with the shared refusal format; ``problems`` and ``queries`` are returned."""
    extra.setdefault("queries", [])
    module.fail_json(msg=refusal_message(subject, problems), problems=list(problems), **extra)
