"""Unit tests of the fence state record format (module_utils/model/fence_record.py)."""

import json

import pytest

from ansible_collections.dataplane.postgresql.plugins.module_utils.model import fence_record as fs


def record(**over):
    rec = fs.new_record(None, ["dp1_user_a"], ["dp2_user_a"], "complete", "run-1", "commander_user",
                        "2026-11-27T17:00:00Z", "ansible")
    rec.update(over)
    return rec


def test_no_comment_means_no_record():
    assert fs.parse_record(None) is None
    assert fs.parse_record("just a note") is None


def test_round_trip_keeps_the_users_comment():
    rec = record()
    text = fs.render_comment("Sales metadata\nowner: team-x", rec)
    assert text.split("\n")[:2] == ["Sales metadata", "owner: team-x"]
    assert fs.parse_record(text) == rec
    # replacing the record keeps one record line and the other lines
    rec2 = fs.new_record(rec, ["dp2_user_a"], ["dp1_user_a"], "complete", "run-2", "commander_user", "t", None)
    text2 = fs.render_comment(text, rec2)
    assert text2.count(fs.RECORD_PREFIX) == 1
    assert fs.parse_record(text2)["generation"] == rec["generation"] + 1 == 2
    assert fs.parse_record(text2)["fenced"] == ["dp2_user_a"]
    assert text2.startswith("Sales metadata\nowner: team-x\n")


def test_removing_the_record_keeps_the_rest():
    text = fs.render_comment("note", record())
    assert fs.render_comment(text, None) == "note"
    assert fs.render_comment(fs.render_comment(None, record()), None) is None


@pytest.mark.parametrize("line", [
    fs.RECORD_PREFIX + "{not json",
    fs.RECORD_PREFIX + json.dumps({"v": 99}),
    fs.RECORD_PREFIX + json.dumps(dict(record(), fenced="dp1_user_a")),
    fs.RECORD_PREFIX + json.dumps(dict(record(), phase="maybe")),
    fs.RECORD_PREFIX + json.dumps(dict(record(), generation="3")),
])
def test_a_damaged_record_is_an_error_not_absence(line):
    with pytest.raises(fs.RecordError):
        fs.parse_record("note\n" + line)


def test_new_record_sorts_and_dedups_and_counts_generations():
    rec = fs.new_record({"generation": 41}, ["b", "a", "a"], [], "fencing", "r", "u", "t")
    assert rec["fenced"] == ["a", "b"] and rec["generation"] == 42 and rec["phase"] == "fencing"
    with pytest.raises(ValueError):
        fs.new_record(None, [], [], "done", "r", "u", "t")
