"""The shared result shapes: timings and the refusal message."""

import time

from ansible_collections.dataplane.postgresql.plugins.module_utils.base import results


def test_timings_phases_and_total():
    t = results.Timings()
    time.sleep(0.02)
    first = t.mark("preflight")
    time.sleep(0.01)
    t.mark("signal")
    out = t.as_dict()
    assert set(out) == {"preflight_ms", "signal_ms", "total_ms"}
    assert first >= 15
    assert out["total_ms"] >= out["preflight_ms"] + out["signal_ms"] - 1
    assert all(isinstance(v, int) for v in out.values())


def test_timings_same_phase_adds_up():
    t = results.Timings()
    time.sleep(0.01)
    t.mark("wait")
    time.sleep(0.01)
    assert t.mark("wait") >= 15


def test_refusal_message_one_sentence_per_problem():
    msg = results.refusal_message("fence request", ["database x does not exist", "mode is odd."])
    assert msg == ("fence request refused, nothing was changed: database x does not exist. mode is odd.")
