"""The per-database job pool (workers.run_jobs) and the worker-thread stand-in for the module."""

import threading

import pytest

from ansible_collections.dataplane.postgresql.plugins.module_utils.base import database
from ansible_collections.dataplane.postgresql.plugins.module_utils.base import workers


def test_thread_count():
    assert workers.thread_count(0, 4) == 1
    assert workers.thread_count(3, 4) == 3
    assert workers.thread_count(200, 4) == 4
    assert workers.thread_count(9, 3, per_thread=4) == 3
    assert workers.thread_count(5, 3, per_thread=4) == 2
    assert workers.thread_count(4, 3, per_thread=4) == 1


def test_outcomes_in_job_order_each_job_on_its_strided_thread():
    seen = []
    lock = threading.Lock()

    def job(i):
        def run(context):
            with lock:
                seen.append((context, i, threading.current_thread().name))
            return i * 10
        return run

    outcomes = workers.run_jobs([job(i) for i in range(10)], ["a", "b", "c"])
    assert [o.result for o in outcomes] == [i * 10 for i in range(10)]
    assert all(o.ok and o.ran and o.error is None for o in outcomes)
    contexts = dict((i, context) for context, i, dummy in seen)
    assert contexts == dict((i, "abc"[i % 3]) for i in range(10))
    # Each thread runs its own jobs in list order.
    for context in "abc":
        mine = [i for c, i, dummy in seen if c == context]
        assert mine == sorted(mine)
    # Three threads other than the caller's ran them.
    names = set(name for dummy, dummy2, name in seen)
    assert len(names) == 3 and threading.current_thread().name not in names


def test_one_context_runs_in_the_calling_thread():
    names = []
    outcomes = workers.run_jobs([lambda c: names.append(threading.current_thread().name)] * 3, [None])
    assert names == [threading.current_thread().name] * 3
    assert [o.ok for o in outcomes] == [True] * 3


def test_an_error_stays_with_its_job_and_the_others_run():
    def job(i):
        def run(dummy):
            if i in (1, 4):
                raise ValueError("job %d broke" % i)
            return i
        return run

    outcomes = workers.run_jobs([job(i) for i in range(7)], [None, None])
    assert [o.ran for o in outcomes] == [True] * 7
    assert [str(o.error) if o.error else None for o in outcomes] == [
        None, "job 1 broke", None, None, "job 4 broke", None, None]
    assert [o.result for o in outcomes] == [0, None, 2, 3, None, 5, 6]
    assert [o.ok for o in outcomes] == [True, False, True, True, False, True, True]


def test_stop_after_error_stops_only_that_thread():
    def job(i):
        def run(dummy):
            if i == 1:
                raise RuntimeError("no")
            return i
        return run

    # Thread 1 has jobs 1, 3, 5; thread 0 has jobs 0, 2, 4.
    outcomes = workers.run_jobs([job(i) for i in range(6)], [None, None], stop_after_error=True)
    assert [o.ran for o in outcomes] == [True, True, True, False, True, False]
    assert [o.ok for o in outcomes] == [True, False, True, False, True, False]
    assert isinstance(outcomes[1].error, RuntimeError)


def test_no_jobs():
    assert workers.run_jobs([], [None]) == []


class FakeModule(object):
    params = {"login_host": "h"}
    check_mode = True

    def fail_json(self, **kwargs):  # pragma: no cover - must never be reached
        raise AssertionError("fail_json from a worker thread")


def test_thread_module_raises_instead_of_failing_and_keeps_warnings():
    stand_in = database.ThreadModule(FakeModule())
    assert stand_in.params == {"login_host": "h"} and stand_in.check_mode is True
    stand_in.warn("careful")
    assert stand_in.warnings == ["careful"]
    with pytest.raises(RuntimeError, match="unable to connect to database: boom"):
        stand_in.fail_json(msg="unable to connect to database: boom")
