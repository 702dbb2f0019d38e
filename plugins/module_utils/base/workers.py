# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run independent per-database jobs over a few threads.

Used where the server does the work and the module mostly waits: ``CREATE``/``DROP
DATABASE`` over a few connections (provisioner), and the schema role's short connection to
each metadata database (schema_role). A job never fails the module: its exception is kept
in its ``Outcome`` and the caller, back in the module's thread, decides what to report.
``module.fail_json`` must not be called from a job (it would print a result and end only
the thread): connect with ``database.thread_database_session`` there.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading


class Outcome(object):
    """What one job gave: ``ran`` (False when it was not started), ``result``, ``error``
    (the exception it raised, or None)."""

    __slots__ = ("ran", "result", "error")

    def __init__(self):
        self.ran, self.result, self.error = False, None, None

    @property
    def ok(self):
        return self.ran and self.error is None


def thread_count(jobs, limit, per_thread=1):
    """How many threads for JOBS jobs: at most LIMIT, at least PER_THREAD jobs each, at least 1."""
    return max(1, min(limit, (jobs + per_thread - 1) // per_thread))


def run_jobs(jobs, contexts, stop_after_error=False):
    """Run JOBS (callables taking one argument) over ``len(CONTEXTS)`` threads.

    Job i runs on thread ``i % n`` as ``jobs[i](contexts[i % n])``; each thread runs its
    jobs in list order, so the split is the same on every run. With one context the jobs
    run in the calling thread. STOP_AFTER_ERROR: a thread whose job raised starts no other
    job (the others go on). Returns one ``Outcome`` per job, in the order of JOBS.
    """
    outcomes = [Outcome() for dummy in jobs]
    count = max(1, len(contexts))

    def work(thread):
        for i in range(thread, len(jobs), count):
            outcome = outcomes[i]
            outcome.ran = True
            try:
                outcome.result = jobs[i](contexts[thread] if contexts else None)
            except Exception as exc:  # kept for the caller; a job never ends the module
                outcome.error = exc
                if stop_after_error:
                    return

    if count == 1:
        work(0)
        return outcomes
    threads = [threading.Thread(target=work, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes
